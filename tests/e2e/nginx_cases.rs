//! piku-nginx against the real nginx: every NGINX_* option answered by curl
//! on loopback, and real certificates from Debian's `pebble` ACME test server.

use crate::client::{App, COMMAND_TIMEOUT, expect_text, indent, run, serves, ssh, wait_for};
use crate::server::Server;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What curl got: status (0 when no answer), headers (lower-cased names), body.
struct Resp {
    code: u16,
    headers: String,
    body: String,
    error: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        let want = format!("{}:", name.to_lowercase());
        self.headers.lines().find(|l| l.to_lowercase().starts_with(&want)).map(|l| l[want.len()..].trim().to_string())
    }
    fn describe(&self) -> String {
        format!("status {}\n{}\n{}{}", self.code, indent(&self.headers), indent(&self.body), if self.error.is_empty() { String::new() } else { format!("\ncurl: {}", self.error) })
    }
}

/// curl to `url` with `host` resolved to 127.0.0.1 (port from the URL), extra args first.
fn fetch(s: &Server, scheme: &str, host: &str, path: &str, extra: &[&str]) -> Resp {
    let port = if scheme == "https" { s.https_port } else { s.http_port };
    let url = format!("{scheme}://{host}:{port}{path}");
    let out = run(
        Command::new("curl")
            .args(["-sS", "-i", "--noproxy", "*", "--max-time", "10", "--resolve"])
            .arg(format!("{host}:{port}:127.0.0.1"))
            .args(extra)
            .arg(&url),
        None,
        Duration::from_secs(15),
    );
    let text = out.stdout.replace("\r\n", "\n");
    // Skip interim 1xx responses and the headers of a proxy-less CONNECT.
    let mut rest = text.as_str();
    loop {
        let Some((head, body)) = rest.split_once("\n\n") else {
            return Resp { code: 0, headers: rest.to_string(), body: String::new(), error: format!("exit {}: {}", out.code, out.stderr.trim()) };
        };
        let code = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        if (100..200).contains(&code) {
            rest = body;
            continue;
        }
        return Resp { code, headers: head.to_string(), body: body.to_string(), error: if out.code == 0 { String::new() } else { out.stderr.trim().to_string() } };
    }
}

fn expect(resp: &Resp, code: u16, body_has: &str, what: &str) -> Result<(), String> {
    if resp.code == code && resp.body.contains(body_has) { Ok(()) } else { Err(format!("{what}: expected {code} with {body_has:?}, got:\n{}", resp.describe())) }
}

fn read(s: &Server, rel: &str) -> Result<String, String> {
    std::fs::read_to_string(s.piku_root().join(rel)).map_err(|e| format!("read {rel}: {e}"))
}

/// Append lines to $PIKU_ROOT/settings (the file stays the user's).
fn add_settings(s: &Server, lines: &str) -> Result<(), String> {
    let path = s.piku_root().join("settings");
    let mut text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    text.push_str(lines);
    std::fs::write(&path, text).map_err(|e| e.to_string())
}

/// Remove the settings whose key is in `keys`.
fn drop_settings(s: &Server, keys: &[&str]) -> Result<(), String> {
    let path = s.piku_root().join("settings");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let kept: String = text.lines().filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k}=")))).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).map_err(|e| e.to_string())
}

/// An app that answers every GET with its port and the request headers it got
/// (`/big` adds 4 kB of text, to be gzipped).
fn echo_app<'s>(s: &'s Server, name: &str, env: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "web: python3 echo.py\n").write("ENV", env).write(
        "echo.py",
        "import http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       text = 'port=%s path=%s\\n' % (os.environ['PORT'], self.path)\n\
         \x20       text += ''.join('%s: %s\\n' % (k, v) for k, v in self.headers.items())\n\
         \x20       if self.path.startswith('/big'):\n\
         \x20           text += 'lorem ipsum ' * 400\n\
         \x20       body = text.encode()\n\
         \x20       self.send_response(200)\n\
         \x20       self.send_header('Content-Type', 'text/plain')\n\
         \x20       self.send_header('Content-Length', str(len(body)))\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(body)\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
    );
    app
}

/// A directory on the server, outside any app, readable by nginx.
fn server_dir(s: &Server, name: &str, files: &[(&str, &str)]) -> Result<PathBuf, String> {
    let dir = s.work.join("shared").join(name);
    for (f, text) in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
    }
    let mut d = dir.clone();
    while d.starts_with(&s.work) {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        if !d.pop() {
            break;
        }
    }
    Ok(dir)
}

/// Upstreams, headers, gzip, static paths (relative and absolute), the
/// include file, .git blocked, the cache (second request a HIT), web=2.
pub fn nginx_options(s: &Server) -> Result<(), String> {
    let host = "options.example.test";
    let abs = server_dir(s, "options", &[("hello.txt", "absolute static\n"), (".git/HEAD", "ref: refs/heads/main\n")])?;
    let app = echo_app(
        s,
        "nginx-options",
        &format!(
            "NGINX_SERVER_NAME={host}, www.{host}\n\
             NGINX_STATIC_PATHS=/assets:assets,/abs:{abs}\n\
             NGINX_CACHE_PREFIXES=/cached,/also-cached\n\
             NGINX_CACHE_TIME=120\nNGINX_CACHE_SIZE=1\nNGINX_CACHE_EXPIRY=600\nNGINX_CACHE_CONTROL=77\n\
             NGINX_INCLUDE_FILE=nginx.inc\n",
            abs = abs.display()
        ),
    );
    app.write("assets/app.css", "body { color: red }\n").write("nginx.inc", "location = /included {\n  return 200 \"included in $APP\\n\";\n}\n");
    app.commit("first")?;
    let push = app.deploy("main")?;
    expect_text(&push.all(), "nginx configuration of 'nginx-options' is live", "the push")?;
    serves(s, host, "/hello", "port=")?;

    // Both names, the upstream's headers, X-Deployed-By.
    let r = fetch(s, "http", &format!("www.{host}"), "/hello", &["-H", "Upgrade: websocket", "-H", "Connection: Upgrade"]);
    expect(&r, 200, "path=/hello", "the second name")?;
    for needle in ["X-Forwarded-Proto: http", "X-Forwarded-For: 127.0.0.1", "X-Remote-Address: 127.0.0.1", "X-Request-Start: ", "X-Forwarded-Port: ", "Upgrade: websocket", "Connection: upgrade", &format!("Host: www.{host}")] {
        expect_text(&r.body, needle, "the headers the app received")?;
    }
    if r.header("X-Deployed-By").as_deref() != Some("Piku") {
        return Err(format!("no X-Deployed-By: Piku\n{}", r.describe()));
    }
    // gzip for large text.
    let r = fetch(s, "http", host, "/big", &["-H", "Accept-Encoding: gzip"]);
    if r.header("Content-Encoding").as_deref() != Some("gzip") {
        return Err(format!("/big was not gzipped:\n{}", r.describe()));
    }
    // Static paths, relative to the app and absolute; .git is refused.
    expect(&fetch(s, "http", host, "/assets/app.css", &[]), 200, "color: red", "the relative static path")?;
    expect(&fetch(s, "http", host, "/abs/hello.txt", &[]), 200, "absolute static", "the absolute static path")?;
    expect(&fetch(s, "http", host, "/abs/.git/HEAD", &[]), 403, "", ".git in a static path")?;
    // The include file, with $APP expanded.
    expect(&fetch(s, "http", host, "/included", &[]), 200, "included in nginx-options", "NGINX_INCLUDE_FILE")?;
    // The cache: MISS, then HIT with the configured Cache-Control; others not cached.
    let first = fetch(s, "http", host, "/cached/page", &[]);
    let second = fetch(s, "http", host, "/cached/page", &[]);
    if first.header("X-Cache").as_deref() != Some("MISS") || second.header("X-Cache").as_deref() != Some("HIT") {
        return Err(format!("expected MISS then HIT:\n{}\n---\n{}", first.describe(), second.describe()));
    }
    if second.header("Cache-Control").as_deref() != Some("public, max-age=77") {
        return Err(format!("NGINX_CACHE_CONTROL not applied:\n{}", second.describe()));
    }
    if fetch(s, "http", host, "/hello", &[]).header("X-Cache").is_some() {
        return Err("a path outside NGINX_CACHE_PREFIXES went through the cache".into());
    }
    let conf = read(s, "nginx/nginx-options.conf")?;
    for needle in ["inactive=600s max_size=1g", "proxy_cache_valid 200 304 120s;", "listen 127.0.0.1:", "ssl"] {
        expect_text(&conf, needle, "nginx-options.conf")?;
    }

    // NGINX_ALLOW_GIT_FOLDERS lets .git through.
    ssh(s, "config:set nginx-options NGINX_ALLOW_GIT_FOLDERS=1", None).ok("config:set NGINX_ALLOW_GIT_FOLDERS")?;
    wait_for(Duration::from_secs(10), || expect(&fetch(s, "http", host, "/abs/.git/HEAD", &[]), 200, "refs/heads/main", "with NGINX_ALLOW_GIT_FOLDERS"))?;

    // web=2: nginx balances both instances, each through its own socket.
    ssh(s, "ps:scale nginx-options web=2", None).ok("ps:scale web=2")?;
    let conf = read(s, "nginx/nginx-options.conf")?;
    let servers = conf.lines().filter(|l| l.trim_start().starts_with("server unix:") && l.contains("nginx-options_web.")).count();
    if servers != 2 {
        return Err(format!("expected 2 upstream servers after web=2:\n{}", indent(&conf)));
    }
    wait_for(Duration::from_secs(30), || {
        let ports: std::collections::BTreeSet<String> =
            (0..8).filter_map(|_| fetch(s, "http", host, "/who", &[]).body.lines().next().and_then(|l| l.split_whitespace().next().map(str::to_string))).collect();
        if ports.len() == 2 { Ok(()) } else { Err(format!("answers came from {ports:?}")) }
    })
}

/// A static worker maps /, NGINX_CATCH_ALL, NGINX_HTTPS_ONLY (301, ACME
/// challenges still on port 80), and unknown names on 443 get no handshake.
pub fn nginx_static_https_only(s: &Server) -> Result<(), String> {
    let host = "spa.example.test";
    let app = App::new(s, "nginx-spa");
    app.write("Procfile", "static: dist\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nNGINX_CATCH_ALL=/index.html\n"))
        .write("dist/index.html", "the single page\n");
    app.commit("first")?;
    let push = app.deploy("main")?;
    expect_text(&push.all(), "self-signed certificate", "the push (Let's Encrypt does not certify .test names)")?;
    serves(s, host, "/", "the single page")?;
    expect(&fetch(s, "http", host, "/some/client/route", &[]), 200, "the single page", "NGINX_CATCH_ALL")?;
    expect(&fetch(s, "https", host, "/", &["-k"]), 200, "the single page", "https with the self-signed certificate")?;

    ssh(s, "config:set nginx-spa NGINX_HTTPS_ONLY=1", None).ok("config:set NGINX_HTTPS_ONLY=1")?;
    let want = format!("https://{host}:{}/deep/link?q=1", s.https_port);
    wait_for(Duration::from_secs(10), || {
        let r = fetch(s, "http", host, "/deep/link?q=1", &[]);
        if r.code == 301 && r.header("Location").as_deref() == Some(want.as_str()) { Ok(()) } else { Err(format!("expected a 301 to {want}:\n{}", r.describe())) }
    })?;
    // The ACME challenge directory still answers on port 80.
    // (written as the piku user, as the ACME client would)
    let dir = s.piku_root().join("acme/.well-known/acme-challenge");
    s.run_as_user(&["sh", "-c", &format!("umask 022 && mkdir -p {0} && echo token > {0}/e2e-probe", dir.display())])?;
    let r = fetch(s, "http", host, "/.well-known/acme-challenge/e2e-probe", &[]);
    let _ = std::fs::remove_file(dir.join("e2e-probe"));
    expect(&r, 200, "token", "the ACME challenge on port 80 with NGINX_HTTPS_ONLY")?;
    expect(&fetch(s, "https", host, "/", &["-k"]), 200, "the single page", "https after NGINX_HTTPS_ONLY")?;
    // An unknown name on 443: the default server refuses the handshake.
    let r = fetch(s, "https", "nobody.example.test", "/", &["-k"]);
    if r.code != 0 {
        return Err(format!("an unknown name got an HTTPS answer:\n{}", r.describe()));
    }
    // Key and certificate are the user's alone.
    for ext in ["crt", "key"] {
        let mode = std::fs::metadata(s.piku_root().join(format!("nginx/nginx-spa.{ext}"))).map_err(|e| e.to_string())?.permissions().mode() & 0o777;
        if mode != 0o600 {
            return Err(format!("nginx/nginx-spa.{ext} has mode {mode:o}, expected 600"));
        }
    }
    Ok(())
}

/// NGINX_CLOUDFLARE_ACL with ranges refreshed from a file (no internet): a
/// listed address gets in, another gets 403, this host always gets in.
pub fn nginx_cloudflare_acl(s: &Server) -> Result<(), String> {
    let host = "cf.example.test";
    let lists = server_dir(s, "cloudflare", &[("v4", "127.0.0.3/32\n"), ("v6", "2001:db8::/32\n")])?;
    add_settings(s, &format!("CLOUDFLARE_IPV4_URL=file://{0}/v4\nCLOUDFLARE_IPV6_URL=file://{0}/v6\n", lists.display()))?;
    let refreshed = s.run_as_user(&["piku-nginx", "refresh-cloudflare"]);
    drop_settings(s, &["CLOUDFLARE_IPV4_URL", "CLOUDFLARE_IPV6_URL"])?;
    refreshed?;
    let app = App::new(s, "nginx-cf");
    app.write("Procfile", "static: public\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\nNGINX_CLOUDFLARE_ACL=1\n")).write("public/index.html", "behind cloudflare\n");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "behind cloudflare")?;
    expect(&fetch(s, "http", host, "/", &["--interface", "127.0.0.3"]), 200, "behind cloudflare", "from a Cloudflare address")?;
    expect(&fetch(s, "http", host, "/", &["--interface", "127.0.0.2"]), 403, "", "from an address outside the ranges")?;
    let conf = read(s, "nginx/nginx-cf.conf")?;
    expect_text(&conf, "allow 127.0.0.3/32;", "nginx-cf.conf")?;
    if conf.contains("2001:db8::/32") {
        return Err(format!("IPv6 ranges in the ACL although IPv6 is off:\n{}", indent(&conf)));
    }
    let _ = std::fs::remove_file(s.piku_root().join("cache/cloudflare-ips.txt"));
    Ok(())
}

/// Values that would inject nginx syntax, a broken include file, a missing
/// cache directory and non-numeric cache times: each refused, the live
/// release and every other app untouched.
pub fn nginx_bad_input(s: &Server) -> Result<(), String> {
    let host = "bad-input.example.test";
    let app = App::new(s, "nginx-bad");
    app.write("Procfile", "static: public\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\n")).write("public/index.html", "good release\n");
    app.commit("good")?;
    app.deploy("main")?;
    serves(s, host, "/", "good release")?;
    let conf = read(s, "nginx/nginx-bad.conf")?;
    let neighbour = App::new(s, "nginx-bad-neighbour");
    neighbour.write("Procfile", "static: public\n").write("ENV", "NGINX_SERVER_NAME=neighbour.example.test\n").write("public/index.html", "neighbour\n");
    neighbour.commit("first")?;
    neighbour.deploy("main")?;
    serves(s, "neighbour.example.test", "/", "neighbour")?;
    let cases: &[(&str, &str, &str)] = &[
        ("NGINX_SERVER_NAME=a.test;include /etc/passwd", "", "NGINX_SERVER_NAME contains ';'"),
        ("NGINX_STATIC_PATHS=/x:public{", "", "NGINX_STATIC_PATHS contains '{'"),
        ("NGINX_CACHE_PREFIXES=/api}", "", "NGINX_CACHE_PREFIXES contains '}'"),
        ("NGINX_CACHE_PREFIXES=/api\nNGINX_CACHE_PATH=/nonexistent/piku-cache", "", "NGINX_CACHE_PATH \"/nonexistent/piku-cache\" of 'nginx-bad' is not a directory"),
        ("NGINX_CACHE_PREFIXES=/api\nNGINX_CACHE_TIME=1h", "", "NGINX_CACHE_TIME must be a whole number of seconds"),
        ("NGINX_INCLUDE_FILE=broken.inc", "no_such_directive on;\n", "unknown directive \"no_such_directive\""),
    ];
    for (extra, include, needle) in cases {
        app.write("ENV", &format!("NGINX_SERVER_NAME={host}\n{extra}\n")).write("public/index.html", "bad release\n");
        if !include.is_empty() {
            app.write("broken.inc", include);
        }
        app.commit(&format!("bad: {extra}"))?;
        let push = app.push("main");
        let all = push.all();
        expect_text(&all, needle, &format!("the push with {extra:?}"))?;
        expect_text(&all, "still serving", &format!("the push with {extra:?}"))?;
        if read(s, "nginx/nginx-bad.conf")? != conf {
            return Err(format!("the live nginx config changed after the push with {extra:?}"));
        }
        expect(&fetch(s, "http", host, "/", &[]), 200, "good release", &format!("after the push with {extra:?}"))?;
        expect(&fetch(s, "http", "neighbour.example.test", "/", &[]), 200, "neighbour", &format!("another app after the push with {extra:?}"))?;
    }
    Ok(())
}

/// Debian's pebble (ACME test server) with pebble-challtestsrv as its DNS, on
/// loopback; stopped by PID when dropped.
struct Pebble {
    dir: PathBuf,
    url: String,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Pebble {
    fn start(s: &Server) -> Result<Pebble, String> {
        for bin in ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv", "/usr/bin/lego", "/usr/bin/openssl"] {
            if !Path::new(bin).exists() {
                return Err(format!("{bin} is missing: apt-get install pebble lego openssl"));
            }
        }
        let dir = s.work.join("pebble");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        // pebble's own HTTPS listener needs a certificate; lego must trust it.
        let out = run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=pebble"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem")),
            None,
            COMMAND_TIMEOUT,
        );
        out.ok("openssl req (pebble's certificate)")?;
        std::fs::set_permissions(dir.join("cert.pem"), std::fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        let (acme, mgmt, dns) = (free_port(), free_port(), free_port());
        let config = format!(
            "{{\"pebble\": {{\"listenAddress\": \"127.0.0.1:{acme}\", \"managementListenAddress\": \"127.0.0.1:{mgmt}\", \
             \"certificate\": \"{d}/cert.pem\", \"privateKey\": \"{d}/key.pem\", \"httpPort\": {http}, \"tlsPort\": {tls}, \
             \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false}}}}\n",
            d = dir.display(),
            http = s.http_port,
            tls = s.https_port,
        );
        std::fs::write(dir.join("config.json"), config).map_err(|e| e.to_string())?;
        let log = |name: &str| std::fs::File::create(dir.join(name)).map(Stdio::from).map_err(|e| e.to_string());
        let mut p = Pebble { dir: dir.clone(), url: format!("https://127.0.0.1:{acme}/dir"), children: Vec::new() };
        // Every name resolves to 127.0.0.1, where nginx answers the challenges.
        p.children.push(
            Command::new("/usr/bin/pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-management", &format!("127.0.0.1:{}", free_port())])
                .stdin(Stdio::null())
                .stdout(log("challtestsrv.log")?)
                .stderr(log("challtestsrv.err")?)
                .spawn()
                .map_err(|e| format!("start pebble-challtestsrv: {e}"))?,
        );
        p.children.push(
            Command::new("/usr/bin/pebble")
                .arg("-config")
                .arg(dir.join("config.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdin(Stdio::null())
                .stdout(log("pebble.log")?)
                .stderr(log("pebble.err")?)
                .spawn()
                .map_err(|e| format!("start pebble: {e}"))?,
        );
        let root = dir.join("root.pem");
        wait_for(Duration::from_secs(10), || {
            let out = run(
                Command::new("curl").args(["-sS", "-f", "--noproxy", "*", "--cacert"]).arg(dir.join("cert.pem")).arg(format!("https://127.0.0.1:{mgmt}/roots/0")).arg("-o").arg(&root),
                None,
                Duration::from_secs(5),
            );
            if out.code == 0 { Ok(()) } else { Err(format!("pebble's root: {}", out.stderr.trim())) }
        })
        .map_err(|e| format!("{e}\n{}", p.logs()))?;
        Ok(p)
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    fn logs(&self) -> String {
        ["pebble.log", "pebble.err"].iter().map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }
}

/// The serial of the certificate nginx presents for `host`.
fn served_serial(s: &Server, host: &str) -> String {
    let out = run(
        Command::new("sh").arg("-c").arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            s.https_port
        )),
        None,
        Duration::from_secs(15),
    );
    out.stdout.trim().to_string()
}

/// A real certificate from pebble by HTTP-01 through nginx, for both names
/// of the app, served over HTTPS (HTTP/2 where nginx has it); renewal renews
/// what is due and reloads; an unreachable CA falls back to self-signed, in bounded time.
pub fn nginx_tls_with_pebble(s: &Server) -> Result<(), String> {
    let pebble = Pebble::start(s)?;
    let result = tls_with(s, &pebble);
    let _ = drop_settings(s, &["ACME_CA_CERTIFICATES", "ACME_RENEW_DAYS", "ACME_TIMEOUT"]);
    result.map_err(|e| format!("{e}\n--- pebble ---\n{}", indent(&pebble.logs())))
}

fn tls_with(s: &Server, pebble: &Pebble) -> Result<(), String> {
    add_settings(s, &format!("ACME_CA_CERTIFICATES={}\n", pebble.dir.join("cert.pem").display()))?;
    let (a, b) = ("tls.example.test", "www.tls.example.test");
    let app = echo_app(s, "nginx-tls", &format!("NGINX_SERVER_NAME={a} {b}\nACME_ROOT_CA={}\n", pebble.url));
    app.commit("first")?;
    let push = app.deploy("main")?;
    let all = push.all();
    expect_text(&all, "certificate installed", "the push")?;
    expect_text(&all, &format!("Live at https://{a}:{}/", s.https_port), "the push")?;
    let cacert = pebble.root().display().to_string();
    // nginx's old workers may finish a request or two with the old certificate.
    for host in [a, b] {
        wait_for(Duration::from_secs(10), || {
            expect(&fetch(s, "https", host, "/hello", &["--cacert", &cacert]), 200, "X-Forwarded-Proto: https", &format!("https://{host}/ verified with pebble's root"))
        })?;
    }
    // HTTP/2 where this nginx has it (Debian's does).
    let r = fetch(s, "https", a, "/", &["--cacert", &cacert, "--http2"]);
    if !r.headers.starts_with("HTTP/2 200") {
        return Err(format!("expected HTTP/2:\n{}", r.describe()));
    }
    for ext in ["crt", "key"] {
        let mode = std::fs::metadata(s.piku_root().join(format!("nginx/nginx-tls.{ext}"))).map_err(|e| e.to_string())?.permissions().mode() & 0o777;
        if mode != 0o600 {
            return Err(format!("nginx/nginx-tls.{ext} has mode {mode:o}, expected 600"));
        }
    }

    // Renewal: nothing due by default; due with a long horizon, then reloaded.
    let before = served_serial(s, a);
    let out = s.run_as_user(&["piku-nginx", "renew"])?;
    expect_text(&out.all(), "'nginx-tls': certificate valid until", "piku-nginx renew")?;
    add_settings(s, "ACME_RENEW_DAYS=36500\n")?;
    let out = ssh(s, "certs:renew nginx-tls", None).ok("ssh certs:renew nginx-tls")?;
    expect_text(&out.all(), "1 certificate(s) renewed; nginx reloaded", "certs:renew")?;
    wait_for(Duration::from_secs(10), || {
        let after = served_serial(s, a);
        if after.starts_with("serial=") && after != before { Ok(()) } else { Err(format!("nginx still serves {before} (now {after})")) }
    })?;
    expect(&fetch(s, "https", b, "/", &["--cacert", &cacert]), 200, "port=", "https after renewal")?;
    drop_settings(s, &["ACME_RENEW_DAYS"])?;

    // A CA that accepts connections and never answers: bounded by ACME_TIMEOUT.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let silent_port = silent.local_addr().map_err(|e| e.to_string())?.port();
    add_settings(s, "ACME_TIMEOUT=5\n")?;
    let stuck = echo_app(s, "nginx-tls-stuck", &format!("NGINX_SERVER_NAME=stuck.example.test\nACME_ROOT_CA=https://127.0.0.1:{silent_port}/dir\n"));
    stuck.commit("first")?;
    let push = stuck.deploy("main")?;
    drop(silent);
    let all = push.all();
    expect_text(&all, "did not answer within 5s", "the push with a silent CA")?;
    expect_text(&all, "self-signed certificate", "the push with a silent CA")?;
    expect(&fetch(s, "https", "stuck.example.test", "/", &["-k"]), 200, "port=", "https with the fallback certificate")?;
    let r = fetch(s, "https", "stuck.example.test", "/", &["--cacert", &cacert]);
    if r.code != 0 {
        return Err(format!("the self-signed certificate passed as pebble's:\n{}", r.describe()));
    }
    Ok(())
}

/// A wsgi app behind the uWSGI socket: the forwarded headers arrive as
/// HTTP_X_* variables, and NGINX_CACHE_PREFIXES caches through uwsgi_cache.
pub fn nginx_wsgi_cache(s: &Server) -> Result<(), String> {
    let host = "wsgi-cache.example.test";
    let app = App::new(s, "nginx-wsgi-cache");
    app.write("Procfile", "wsgi: app:application\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nNGINX_CACHE_PREFIXES=/c\nNGINX_CACHE_TIME=30\n"))
        .write(
            "app.py",
            "def application(environ, start_response):\n\
             \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
             \x20   keys = ['HTTP_X_FORWARDED_PROTO', 'HTTP_X_FORWARDED_FOR', 'HTTP_X_REMOTE_ADDRESS', 'HTTP_X_REQUEST_START', 'PATH_INFO']\n\
             \x20   return [''.join('%s=%s\\n' % (k, environ.get(k, '-')) for k in keys).encode()]\n",
        );
    app.commit("first")?;
    let push = app.deploy("main")?;
    expect_text(&push.all(), "nginx configuration of 'nginx-wsgi-cache' is live", "the push")?;
    serves(s, host, "/x", "PATH_INFO=/x")?;
    let r = fetch(s, "http", host, "/x", &[]);
    for needle in ["HTTP_X_FORWARDED_PROTO=http", "HTTP_X_FORWARDED_FOR=127.0.0.1", "HTTP_X_REMOTE_ADDRESS=127.0.0.1", "HTTP_X_REQUEST_START=1"] {
        expect_text(&r.body, needle, "the wsgi environ")?;
    }
    let first = fetch(s, "http", host, "/c/1", &[]);
    let second = fetch(s, "http", host, "/c/1", &[]);
    if first.header("X-Cache").as_deref() != Some("MISS") || second.header("X-Cache").as_deref() != Some("HIT") {
        return Err(format!("expected MISS then HIT:\n{}\n---\n{}", first.describe(), second.describe()));
    }
    Ok(())
}

/// share/nginx/default-site.conf as install.sh installs it (IPv4 only, on
/// this run's free ports), in an nginx of its own: an unknown name gets the
/// 404 on HTTP and no TLS handshake on HTTPS.
pub fn nginx_default_site(s: &Server) -> Result<(), String> {
    let dir = s.work.join("default-site");
    std::fs::create_dir_all(dir.join("empty")).map_err(|e| e.to_string())?;
    let (http, https) = (free_port(), free_port());
    let site = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/share/nginx/default-site.conf")).map_err(|e| e.to_string())?;
    let site: String = site
        .lines()
        .filter(|l| !l.contains("listen [::]"))
        .map(|l| {
            l.replace("listen 80 ", &format!("listen 127.0.0.1:{http} "))
                .replace("listen 443 ", &format!("listen 127.0.0.1:{https} "))
                .replace("/home/piku/.piku/nginx/*.conf", &format!("{}/empty/*.conf", dir.display()))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("site.conf"), &site).map_err(|e| e.to_string())?;
    let d = dir.display();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).map_err(|e| e.to_string())?;
    let conf = dir.join("nginx.conf");
    run(Command::new("/usr/sbin/nginx").arg("-t").arg("-q").arg("-c").arg(&conf), None, COMMAND_TIMEOUT).ok("nginx -t with the default site")?;
    run(Command::new("/usr/sbin/nginx").arg("-c").arg(&conf), None, COMMAND_TIMEOUT).ok("nginx with the default site")?;
    let result = (|| {
        let curl = |url: String| run(Command::new("curl").args(["-sS", "-k", "--noproxy", "*", "--max-time", "5", "-H", "Host: nobody.example.test"]).arg(url), None, Duration::from_secs(10));
        let out = wait_for(Duration::from_secs(10), || {
            let out = curl(format!("http://127.0.0.1:{http}/"));
            if out.code == 0 { Ok(out) } else { Err(out.stderr) }
        })?;
        expect_text(&out.stdout, "No app is deployed under this name", "http to an unknown name")?;
        let out = run(
            Command::new("curl").args(["-sS", "-k", "--noproxy", "*", "--max-time", "5", "--resolve"]).arg(format!("nobody.example.test:{https}:127.0.0.1")).arg(format!("https://nobody.example.test:{https}/")),
            None,
            Duration::from_secs(10),
        );
        if out.code == 0 {
            return Err(format!("an unknown name got an HTTPS answer:\n{}", indent(&out.all())));
        }
        expect_text(&out.stderr, "unrecognized name", "curl's error for the refused handshake")
    })();
    let pid = std::fs::read_to_string(dir.join("nginx.pid")).unwrap_or_default();
    if let Ok(pid) = pid.trim().parse::<i32>() {
        let _ = Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
    }
    result
}
