//! piku-nginx: rendered server blocks against tests/expected, every NGINX_*
//! option's checks, certificates (self-signed here; ACME against pebble is
//! the end-to-end suite's), renewal, the Cloudflare list, http2 by version.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;

/// Push `files` as `app`; the push must succeed.
fn deploy(s: &Server, app: &str, files: &[(&str, &str)]) -> GitApp {
    let repo = GitApp::new(files);
    let r = s.push(&repo, app, "main").ok();
    assert!(!r.stderr.contains("failed"), "{}", r.stderr);
    repo
}

fn port_of(s: &Server, app: &str) -> String {
    s.read(&format!("envs/{app}/LIVE_ENV")).lines().find_map(|l| l.strip_prefix("PORT=")).unwrap_or("").to_string()
}

/// Compare with tests/expected/<name> after replacing the run's paths and
/// port; `PIKU_BLESS=1` rewrites the file (on purpose, after reading the diff).
fn assert_matches_expected(s: &Server, name: &str, app: &str) {
    let text = s.read(&format!("nginx/{app}.conf"));
    let mut normal = text.replace(&s.root().display().to_string(), "{ROOT}");
    let port = port_of(s, app);
    if !port.is_empty() {
        normal = normal.replace(&format!(":{port};"), ":{PORT};");
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
    if blessing() {
        std::fs::write(&path, &normal).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (PIKU_BLESS=1 writes it)", path.display()));
    assert_eq!(normal, expected, "{name} differs from tests/expected (PIKU_BLESS=1 cargo test regenerates it)");
}

/// A stand-in nginx that reports `version` for -V and accepts every -t.
fn fake_nginx(s: &Server, version: &str) -> String {
    let path = s.dir.path().join(format!("nginx-{version}"));
    std::fs::write(&path, format!("#!/bin/sh\n[ \"$1\" = -V ] && echo 'nginx version: nginx/{version}' >&2\nexit 0\n")).unwrap();
    chmod_x(&path);
    path.display().to_string()
}

#[test]
fn a_web_app_with_every_option_renders_as_expected() {
    let s = Server::new();
    deploy(
        &s,
        "full",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            (
                "ENV",
                "NGINX_SERVER_NAME=full.example.test,www.full.example.test  alt.example.test\nDISABLE_IPV6=1\n\
                 NGINX_STATIC_PATHS=/assets:public/assets/,/media:/srv/media\nNGINX_CATCH_ALL=/index.html\n\
                 NGINX_CACHE_PREFIXES=/api,/static.v2\nNGINX_CACHE_SIZE=2\nNGINX_CACHE_TIME=60\nNGINX_CACHE_REDIRECTS=30\n\
                 NGINX_CACHE_ANY=10\nNGINX_CACHE_CONTROL=120\nNGINX_CACHE_EXPIRY=3600\nNGINX_INCLUDE_FILE=conf/extra.nginx\n",
            ),
            ("conf/extra.nginx", "location = /ping {\n  return 200 \"$APP pong\";\n}\n"),
            ("public/assets/a.css", "x\n"),
        ],
    );
    assert_matches_expected(&s, "nginx-web.conf", "full");
    assert!(s.root().join("cache/full").is_dir(), "the default cache directory is made");
}

#[test]
fn a_wsgi_app_with_https_only_git_allowed_and_cloudflare_renders_as_expected() {
    let s = Server::new();
    deploy(
        &s,
        "py",
        &[
            ("Procfile", "wsgi: app:application\n"),
            ("app.py", "def application(e, s):\n    pass\n"),
            (
                "ENV",
                "NGINX_SERVER_NAME=py.example.test\nDISABLE_IPV6=1\nNGINX_HTTPS_ONLY=yes\nNGINX_ALLOW_GIT_FOLDERS=1\n\
                 NGINX_CLOUDFLARE_ACL=true\nNGINX_CACHE_PREFIXES=/cached\n",
            ),
        ],
    );
    assert_matches_expected(&s, "nginx-wsgi.conf", "py");
}

#[test]
fn a_static_site_renders_as_expected() {
    let s = Server::new();
    deploy(&s, "site", STATIC_APP);
    let conf = s.read("nginx/site.conf");
    // The IPv6 listeners depend on this machine: compared apart.
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| !t.trim().is_empty());
    assert_eq!(conf.contains("listen [::]:80;"), v6, "{conf}");
    assert_eq!(conf.contains("listen [::]:443 ssl;"), v6, "{conf}");
    std::fs::write(s.root().join("nginx/site.conf"), conf.lines().filter(|l| !l.contains("[::]")).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    assert_matches_expected(&s, "nginx-static.conf", "site");
}

#[test]
fn http2_is_spelled_as_the_installed_nginx_wants() {
    let s = Server::new();
    for (version, want, unwanted) in [("1.22.1", "listen 0.0.0.0:443 ssl http2;", "http2 on;"), ("1.25.1", "http2 on;", "ssl http2")] {
        s.write_settings(&format!("NGINX_BIN={}\nNGINX_RELOAD=true\n", fake_nginx(&s, version)));
        let app = format!("h{}", version.replace('.', ""));
        deploy(&s, &app, STATIC_APP);
        let conf = s.read(&format!("nginx/{app}.conf"));
        assert!(conf.contains(want) && !conf.contains(unwanted), "nginx {version}:\n{conf}");
    }
    // No version to go by (NGINX_BIN=true): no http2 at all.
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\n");
    deploy(&s, "plain", STATIC_APP);
    assert!(!s.read("nginx/plain.conf").contains("http2"));
}

#[test]
fn the_https_port_is_a_setting() {
    let s = Server::new();
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nNGINX_HTTP_PORT=8080\nNGINX_HTTPS_PORT=8443\n");
    deploy(&s, "ports", &[("Procfile", "static: public\n"), ("ENV", "NGINX_SERVER_NAME=p.example.test\nDISABLE_IPV6=1\nNGINX_HTTPS_ONLY=1\n"), ("public/i", "x")]);
    let conf = s.read("nginx/ports.conf");
    assert!(conf.contains("listen 0.0.0.0:8080;") && conf.contains("listen 0.0.0.0:8443 ssl;"), "{conf}");
    assert!(conf.contains("return 301 https://$host:8443$request_uri;"), "{conf}");
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nNGINX_HTTPS_PORT=https\n");
    let r = s.tool("piku-nginx", &["publish", "ports"]).fails(1, "NGINX_HTTPS_PORT in");
    assert!(r.stderr.contains("must be a port number"), "{}", r.stderr);
}

/// A good release, then a push of `env` that must fail with `needle` and
/// leave the live release and its nginx block as they were.
fn assert_refused(env: &str, needle: &str) {
    let s = Server::new();
    let repo = deploy(&s, "app", STATIC_APP);
    let conf = s.read("nginx/app.conf");
    let live = s.live_id("app").unwrap();
    repo.commit(&[("ENV", env), ("public/index.html", "bad\n")], "bad");
    let r = s.push(&repo, "app", "main");
    assert!(r.stderr.contains(needle), "no {needle:?} in:\n{}", r.stderr);
    assert!(r.stderr.contains("The release that was live is still serving"), "{}", r.stderr);
    assert_eq!(s.live_id("app").unwrap(), live);
    assert_eq!(s.read("nginx/app.conf"), conf);
}

#[test]
fn a_server_name_that_would_inject_directives_is_refused() {
    assert_refused("NGINX_SERVER_NAME=a.test;include /etc/passwd\n", "NGINX_SERVER_NAME contains ';'");
    assert_refused("NGINX_SERVER_NAME=a.test{\n", "NGINX_SERVER_NAME contains '{'");
    assert_refused("NGINX_SERVER_NAME=a.test}\n", "NGINX_SERVER_NAME contains '}'");
}

#[test]
fn a_newline_in_a_server_name_is_refused_where_it_enters() {
    let s = Server::new();
    deploy(&s, "app", STATIC_APP);
    let r = s.piku(&["config:set", "app", "NGINX_SERVER_NAME=a.test\nlisten 1"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("NGINX_SERVER_NAME"), "{}", r.stderr);
    assert!(!s.read("nginx/app.conf").contains("listen 1"));
}

#[test]
fn static_paths_and_cache_prefixes_that_would_inject_directives_are_refused() {
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_STATIC_PATHS=/x:public;deny all\n", "NGINX_STATIC_PATHS contains ';'");
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_STATIC_PATHS=/x{:public\n", "NGINX_STATIC_PATHS contains '{'");
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_STATIC_PATHS=public\n", "NGINX_STATIC_PATHS entry \"public\" must be /url:path");
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_CACHE_PREFIXES=/api}\n", "NGINX_CACHE_PREFIXES contains '}'");
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_CACHE_PREFIXES=/(a|b)\n", "NGINX_CACHE_PREFIXES entry \"/(a|b)\" contains '('");
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_CATCH_ALL=/x;\n", "NGINX_CATCH_ALL contains ';'");
}

#[test]
fn a_missing_cache_directory_and_non_numeric_cache_times_are_clear_errors() {
    assert_refused(
        "NGINX_SERVER_NAME=a.test\nNGINX_CACHE_PREFIXES=/api\nNGINX_CACHE_PATH=/nonexistent/piku\n",
        "NGINX_CACHE_PATH \"/nonexistent/piku\" of 'app' is not a directory",
    );
    for key in ["NGINX_CACHE_TIME", "NGINX_CACHE_REDIRECTS", "NGINX_CACHE_ANY", "NGINX_CACHE_CONTROL", "NGINX_CACHE_EXPIRY"] {
        assert_refused(&format!("NGINX_SERVER_NAME=a.test\nNGINX_CACHE_PREFIXES=/api\n{key}=1h\n"), &format!("{key} must be a whole number of seconds, not \"1h\""));
    }
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_CACHE_PREFIXES=/api\nNGINX_CACHE_SIZE=big\n", "NGINX_CACHE_SIZE must be a whole number of gigabytes");
}

#[test]
fn a_missing_include_file_is_a_clear_error() {
    assert_refused("NGINX_SERVER_NAME=a.test\nNGINX_INCLUDE_FILE=nope.conf\n", "NGINX_INCLUDE_FILE \"nope.conf\" of 'app' cannot be read");
}

#[test]
fn nginx_rejecting_the_block_keeps_the_previous_one() {
    let s = Server::new();
    let repo = deploy(&s, "app", STATIC_APP);
    let conf = s.read("nginx/app.conf");
    // A stand-in nginx that rejects any block with "bogus" in it, as nginx would.
    let fake = s.dir.path().join("nginx-picky");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -V ] && exit 0\nfor a; do last=$a; done\n\
         if grep -rqs bogus \"$(dirname \"$last\")/apps/\"; then echo 'nginx: [emerg] unknown directive \"bogus\" in /x/apps/app.conf:9' >&2; exit 1; fi\nexit 0\n",
    )
    .unwrap();
    chmod_x(&fake);
    s.write_settings(&format!("NGINX_BIN={}\nNGINX_RELOAD=true\n", fake.display()));
    repo.commit(&[("ENV", "NGINX_SERVER_NAME=static.example.test\nNGINX_INCLUDE_FILE=x.conf\n"), ("x.conf", "bogus on;\n")], "bad include");
    let r = s.push(&repo, "app", "main");
    assert!(r.stderr.contains("nginx rejected the configuration of 'app'"), "{}", r.stderr);
    assert!(r.stderr.contains("[emerg] unknown directive \"bogus\""), "{}", r.stderr);
    assert_eq!(s.read("nginx/app.conf"), conf);
}

#[test]
fn reserved_names_get_a_private_self_signed_certificate_for_every_name() {
    let s = Server::new();
    let r = s.push(&GitApp::new(&[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=one.example.test two.example.test\n"), ("p/i", "x")]), "tls", "main").ok();
    assert!(r.stderr.contains("self-signed certificate: Let's Encrypt does not certify reserved names"), "{}", r.stderr);
    for ext in ["crt", "key"] {
        let mode = std::fs::metadata(s.root().join(format!("nginx/tls.{ext}"))).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "nginx/tls.{ext}");
    }
    assert_eq!(s.read("acme/tls/CERT").lines().skip(1).collect::<Vec<_>>(), ["NAMES=one.example.test two.example.test", "CA=self-signed"]);
    let text = std::process::Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName", "-in"]).arg(s.root().join("nginx/tls.crt")).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:one.example.test, DNS:two.example.test"), "{text}");
    // A redeploy keeps the certificate; a new name makes a new one.
    let before = s.read("nginx/tls.crt");
    s.tool("piku-nginx", &["publish", "tls"]).ok();
    assert_eq!(s.read("nginx/tls.crt"), before);
    s.piku(&["config:set", "tls", "NGINX_SERVER_NAME=one.example.test three.example.test"]).ok();
    assert_ne!(s.read("nginx/tls.crt"), before);
    assert!(s.read("acme/tls/CERT").contains("NAMES=one.example.test three.example.test"));
    // certs:renew (the front door) / --renew: nothing to do for a name no CA
    // certifies; a key limited to some apps may not run it.
    s.ssh_as("ana", "tls", "certs:renew").fails(1, "may not run server-wide commands such as 'certs:renew'");
    s.ssh_as("ana", "tls", "certs:renew tls").fails(1, "may not run server-wide commands such as 'certs:renew'");
    let r = s.ssh("certs:renew tls").ok();
    assert!(r.stderr.contains("'tls': self-signed"), "{}", r.stderr);
    let r = s.tool("piku-nginx", &["renew"]).ok();
    assert!(r.stderr.contains("'tls': self-signed (Let's Encrypt does not certify reserved names"), "{}", r.stderr);
    // destroy takes the certificate, the key and the ACME state away.
    s.piku(&["destroy", "tls"]).ok();
    for p in ["nginx/tls.crt", "nginx/tls.key", "acme/tls"] {
        assert!(!s.root().join(p).exists(), "{p} is still there");
    }
}

#[test]
fn an_unreachable_ca_falls_back_to_self_signed_and_renew_fails_clearly() {
    let s = Server::new();
    // A stand-in ACME client that cannot reach its CA.
    let lego = s.dir.path().join("lego");
    std::fs::write(&lego, "#!/bin/sh\necho 'acme: error: dial tcp 127.0.0.1:9: connect: connection refused' >&2\nexit 1\n").unwrap();
    chmod_x(&lego);
    s.write_settings(&format!("NGINX_BIN=true\nNGINX_RELOAD=true\nACME_CLIENT={}\n", lego.display()));
    let r = s
        .push(&GitApp::new(&[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=down.example.com\nACME_ROOT_CA=https://127.0.0.1:9/dir\n"), ("p/i", "x")]), "down", "main")
        .ok();
    assert!(r.stderr.contains("ACME failed for 'down'"), "{}", r.stderr);
    assert!(r.stderr.contains("connection refused"), "{}", r.stderr);
    assert!(r.stderr.contains("served over HTTPS with a self-signed certificate: ACME failed"), "{}", r.stderr);
    assert!(r.stderr.contains("Live at http://down.example.com/"), "{}", r.stderr);
    assert!(s.read("acme/down/CERT").contains("CA=self-signed"));
    for private in ["acme/down", "acme/accounts"] {
        assert_eq!(std::fs::metadata(s.root().join(private)).unwrap().permissions().mode() & 0o777, 0o700, "{private}");
    }
    assert_eq!(std::fs::read_link(s.root().join("acme/down/lego/accounts")).unwrap(), std::path::Path::new("../../accounts"));
    let r = s.ssh("certs:renew").fails(1, "could not renew the certificate of down");
    assert!(r.stderr.contains("renewing the certificate for down.example.com from https://127.0.0.1:9/dir"), "{}", r.stderr);

    // A client that hangs is stopped after ACME_TIMEOUT.
    // (It never ends by itself; the test lets it go when the tool has returned.)
    let hung = s.root().join("hung-client.pid");
    std::fs::write(&lego, format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000000\n", hung.display())).unwrap();
    s.write_settings(&format!("NGINX_BIN=true\nNGINX_RELOAD=true\nACME_CLIENT={}\nACME_TIMEOUT=1\n", lego.display()));
    let r = s.tool("piku-nginx", &["renew", "down"]).fails(1, "did not answer within 1s (ACME_TIMEOUT)");
    // And it is not left running.
    let pid: i32 = std::fs::read_to_string(&hung).unwrap().trim().parse().unwrap();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
    if running {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(!running, "the ACME client (pid {pid}) still runs after the timeout\n{}", r.stderr);
}

#[test]
fn acme_off_means_self_signed_without_asking() {
    let s = Server::new();
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nACME_CLIENT=/nonexistent/lego\n");
    let r = s.push(&GitApp::new(&[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=off.example.com\nACME_ROOT_CA=none\n"), ("p/i", "x")]), "off", "main").ok();
    assert!(r.stderr.contains("self-signed certificate: ACME_ROOT_CA is off"), "{}", r.stderr);
    let r = s.push(&GitApp::new(&[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=odd.example.com\nACME_ROOT_CA=ftp://x\n"), ("p/i", "x")]), "odd", "main").ok();
    assert!(r.stderr.contains("ACME_ROOT_CA \"ftp://x\" is not an https:// ACME directory URL"), "{}", r.stderr);
}

#[test]
fn refresh_cloudflare_saves_checked_ranges_and_keeps_the_old_list_on_garbage() {
    let s = Server::new();
    let (v4, v6) = (s.dir.path().join("v4"), s.dir.path().join("v6"));
    std::fs::write(&v4, "198.51.100.0/24\n203.0.113.7\n").unwrap();
    std::fs::write(&v6, "2001:db8::/32\n").unwrap();
    s.write_settings(&format!("NGINX_BIN=true\nNGINX_RELOAD=true\nCLOUDFLARE_IPV4_URL=file://{}\nCLOUDFLARE_IPV6_URL=file://{}\n", v4.display(), v6.display()));
    s.tool("piku-nginx", &["refresh-cloudflare"]).ok();
    let saved = s.read("cache/cloudflare-ips.txt");
    assert!(saved.ends_with("198.51.100.0/24\n203.0.113.7\n2001:db8::/32\n"), "{saved}");
    std::fs::write(&v4, "198.51.100.0/24\n<html>oops</html>\n").unwrap();
    s.tool("piku-nginx", &["refresh-cloudflare"]).fails(1, "which is not an address range; the previous list stays in use");
    assert_eq!(s.read("cache/cloudflare-ips.txt"), saved);
    // The refreshed list is what an app's ACL allows (IPv6 ranges only with IPv6).
    deploy(&s, "cf", &[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=cf.example.test\nNGINX_CLOUDFLARE_ACL=1\nDISABLE_IPV6=1\n"), ("p/i", "x")]);
    let conf = s.read("nginx/cf.conf");
    assert!(conf.contains("  allow 198.51.100.0/24;\n  allow 203.0.113.7;\n  allow 127.0.0.1;\n  deny all;\n"), "{conf}");
    assert!(!conf.contains("2001:db8"), "{conf}");
    // With IPv6 (where this machine has it), the IPv6 ranges and ::1 too.
    deploy(&s, "cf6", &[("Procfile", "static: p\n"), ("ENV", "NGINX_SERVER_NAME=cf6.example.test\nNGINX_CLOUDFLARE_ACL=1\n"), ("p/i", "x")]);
    let conf = s.read("nginx/cf6.conf");
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| !t.trim().is_empty());
    assert_eq!(conf.contains("  allow 2001:db8::/32;\n") && conf.contains("  allow ::1;\n"), v6, "{conf}");
}
