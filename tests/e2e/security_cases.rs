//! Issue 19 through the real nginx: what a visitor can read, what the piku
//! user can make root's nginx do, and whether a reload nginx refused is ever
//! reported as live.

use crate::client::{App, expect_text, indent, run, serves, ssh, wait_for, COMMAND_TIMEOUT};
use crate::nginx_cases::{echo_app, expect, fetch};
use crate::server::Server;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Items 1 and 2: `NGINX_STATIC_PATHS=/static:static` serves only that
/// directory (`/static..`, `/static../ENV`, `/static%2e%2e/ENV` with
/// --path-as-is reach no file of the release), and `NGINX_CATCH_ALL` under
/// the prefix is served for a page that does not exist.
pub fn static_alias_traversal(s: &Server) -> Result<(), String> {
    let host = "sec-alias.example.test";
    let canary = format!("canary-{}-secret", std::process::id());
    let app = echo_app(
        s,
        "sec-alias",
        &format!("NGINX_SERVER_NAME={host}\nNGINX_STATIC_PATHS=/static:static\nNGINX_CATCH_ALL=/static/spa.html\nSECRET_CANARY={canary}\n"),
    );
    app.write("static/spa.html", "the single page\n").write("static/app.css", "body { color: blue }\n");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/static/app.css", "color: blue")?;
    let outside = ["/static..", "/static../ENV", "/static%2e%2e/ENV", "/static%2E%2E/ENV", "/static../echo.py", "/static../Procfile", "/static/../ENV", "/static/..%2fENV", "/static/%2e%2e/ENV"];
    let mut leaks = Vec::new();
    for path in outside {
        let r = fetch(s, "http", host, path, &["--path-as-is"]);
        if r.body.contains(&canary) || r.body.contains("import http.server") || r.body.contains("web: python3") {
            leaks.push(format!("GET {path} (--path-as-is) served a file outside static/:\n{}", indent(&r.describe())));
        }
    }
    if !leaks.is_empty() {
        return Err(leaks.join("\n"));
    }
    expect(&fetch(s, "http", host, "/static/no/such/page", &[]), 200, "the single page", "NGINX_CATCH_ALL under /static")?;
    expect(&fetch(s, "http", host, "/static/app.css", &[]), 200, "color: blue", "a file of static/")?;
    println!("    {} requests for paths outside static/ served nothing of the release; the fallback page is served", outside.len());
    Ok(())
}

/// Every path under `dir` with its owner.
fn owners(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(meta) = std::fs::symlink_metadata(&d) {
            out.push((d.clone(), meta.uid()));
            if meta.is_dir() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    todo.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The server's NGINX_RELOAD, run as the piku user: how piku-nginx reloads.
fn reload_as_user(s: &Server) -> crate::client::Out {
    let settings = std::fs::read_to_string(s.piku_root().join("settings")).unwrap_or_default();
    let command = settings.lines().find_map(|l| l.strip_prefix("NGINX_RELOAD=")).unwrap_or("false").to_string();
    let argv = shell_words::split(&command).unwrap_or_default();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(&mut s.as_user(&argv), None, COMMAND_TIMEOUT)
}

/// Write `text` to `path` as the piku user (as an app's code could).
fn write_as_user(s: &Server, path: &Path, text: &str) -> Result<(), String> {
    s.run_as_user(&["sh", "-c", "printf '%s' \"$1\" > \"$2\"", "sh", text, &path.display().to_string()]).map(|_| ())
}

/// Item 4: a conf the piku user drops into nginx/ with access_log,
/// client_body_temp_path and proxy_cache_path outside ~/.piku, then every
/// way piku reloads nginx: nothing outside is created or changes owner, the
/// conf never serves, and what refused it names it.
pub fn root_nginx_reads_only_checked_confs(s: &Server) -> Result<(), String> {
    let outside = s.work.join("outside");
    std::fs::create_dir_all(outside.join("owned")).map_err(|e| e.to_string())?;
    for d in [&outside, &outside.join("owned")] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let before = owners(&outside);
    let app = App::new(s, "sec-root");
    app.write("Procfile", "static: public\n").write("ENV", "NGINX_SERVER_NAME=sec-root.example.test\n").write("public/index.html", "sec-root page\n");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, "sec-root.example.test", "/", "sec-root page")?;

    let o = outside.display();
    let evil = s.piku_root().join("nginx/evil.conf");
    let text = format!(
        "access_log {o}/access.log;\nproxy_cache_path {o}/owned keys_zone=evil:1m;\n\
         server {{\n  listen 127.0.0.1:{port};\n  server_name evil.example.test;\n  access_log {o}/server.log;\n  client_body_temp_path {o}/body2;\n  return 200 \"evil conf\\n\";\n}}\n",
        port = s.http_port
    );
    write_as_user(s, &evil, &text)?;
    let mut ways = Vec::new();
    // 1. piku-nginx reload; 2. the reload command itself (sudo); 3. a
    // deploy whose block changes (piku-nginx <app>); 4. nginx's own reload
    // through sudo, which the piku user must not be allowed.
    let out = s.as_user(&["piku-nginx", "reload"]).output().map_err(|e| e.to_string())?;
    ways.push(("piku-nginx reload", out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()));
    let out = reload_as_user(s);
    ways.push(("NGINX_RELOAD as the piku user", out.code, out.all()));
    let out = ssh(s, "config:set sec-root NGINX_HTTPS_ONLY=1", None);
    ways.push(("config:set (a deploy)", out.code, out.all()));
    let nginx_conf = s.work.join("nginx/nginx.conf").display().to_string();
    let out = run(&mut s.as_user(&["sudo", "-n", "/usr/sbin/nginx", "-c", &nginx_conf, "-s", "reload"]), None, COMMAND_TIMEOUT);
    let mut problems = Vec::new();
    if out.code == 0 {
        problems.push(format!("the piku user may run 'sudo nginx -s reload' itself:\n{}", indent(&out.all())));
    }
    let after = owners(&outside);
    let served = fetch(s, "http", "evil.example.test", "/", &[]);
    if before != after {
        problems.push(format!("outside ~/.piku, before: {before:?}\nafter: {after:?}"));
    }
    if served.body.contains("evil conf") {
        problems.push(format!("nginx serves the dropped conf:\n{}", served.describe()));
    }
    for (way, code, text) in &ways[..2] {
        if *code == 0 || !text.contains("'evil'") || !text.contains("access_log") {
            problems.push(format!("{way} did not refuse evil.conf by name (exit {code}):\n{}", indent(text)));
        }
    }
    // Cleaned up, the next reload works and the site is served.
    let _ = std::fs::remove_file(&evil);
    let out = reload_as_user(s);
    if out.code != 0 {
        problems.push(format!("the reload after evil.conf was removed failed:\n{}", indent(&out.all())));
    }
    ssh(s, "config:unset sec-root NGINX_HTTPS_ONLY", None).ok("config:unset NGINX_HTTPS_ONLY")?;
    serves(s, "sec-root.example.test", "/", "sec-root page")?;
    // A block that claims another app's name (as two deploys at once could):
    // refused naming the app that serves it, which keeps serving.
    let thief = s.piku_root().join("nginx/sec-root-thief.conf");
    write_as_user(s, &thief, &format!("server {{\n  listen 127.0.0.1:{};\n  server_name sec-root.example.test;\n  return 200 \"stolen\\n\";\n}}\n", s.http_port))?;
    let out = reload_as_user(s);
    let _ = std::fs::remove_file(&thief);
    if out.code == 0 || !out.all().contains("server_name sec-root.example.test, which 'sec-root' serves") {
        problems.push(format!("a block with another app's name was not refused by name (exit {}):\n{}", out.code, indent(&out.all())));
    }
    serves(s, "sec-root.example.test", "/", "sec-root page")?;
    reload_as_user(s).ok("the reload after the thief's block is removed")?;
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    println!("    {} ways of reloading: nothing outside ~/.piku created or handed over; the dropped conf never served", ways.len() + 1);
    Ok(())
}

/// Item 13: an app's cache path changed and back (no reload refused after
/// it; a new app still goes live), and a reload nginx refuses although
/// `nginx -t` passes (a cache zone given another path) fails the reload and
/// the deploy with nginx's message, the previous release still serving.
pub fn nginx_reload_confirmed(s: &Server) -> Result<(), String> {
    let host = "sec-reload.example.test";
    let app = echo_app(s, "sec-reload", &format!("NGINX_SERVER_NAME={host}\nNGINX_CACHE_PREFIXES=/c\n"));
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/x", "port=")?;
    let v2 = s.piku_root().join("cache/sec-reload/v2");
    let _ = s.run_as_user(&["mkdir", "-p", &v2.display().to_string()]);
    let cached = |what: &str| {
        wait_for(Duration::from_secs(10), || {
            let r = fetch(s, "http", host, "/c/1", &[]);
            if r.header("X-Cache").is_some() { Ok(()) } else { Err(format!("no X-Cache {what}:\n{}", r.describe())) }
        })
    };
    ssh(s, &format!("config:set sec-reload NGINX_CACHE_PATH={}", v2.display()), None).ok("config:set NGINX_CACHE_PATH (under cache/<app>)")?;
    let newer = echo_app(s, "sec-reload-new", "NGINX_SERVER_NAME=sec-reload-new.example.test\n");
    newer.commit("first")?;
    newer.deploy("main")?;
    serves(s, "sec-reload-new.example.test", "/", "port=").map_err(|e| format!("a new app after a change of a cache path: {e}"))?;
    cached("after the change of the cache path")?;
    ssh(s, "config:unset sec-reload NGINX_CACHE_PATH", None).ok("config:unset NGINX_CACHE_PATH")?;
    cached("after the cache path is unset")?;

    // A zone that changes its path under the running master: nginx -t
    // passes, the reload does not.
    let zz = s.piku_root().join("nginx/sec-reload-zz.conf");
    let conf = |dir: &str, body: &str| {
        format!(
            "proxy_cache_path {root}/cache/sec-reload-zz/{dir} levels=1:2 keys_zone=zz_zone:1m;\n\
             server {{\n  listen 127.0.0.1:{port};\n  server_name zz.example.test;\n  location / {{\n    return 200 \"{body}\\n\";\n  }}\n}}\n",
            root = s.piku_root().display(),
            port = s.http_port
        )
    };
    for dir in ["a", "b"] {
        s.run_as_user(&["mkdir", "-p", &s.piku_root().join("cache/sec-reload-zz").join(dir).display().to_string()])?;
    }
    write_as_user(s, &zz, &conf("a", "zz a"))?;
    reload_as_user(s).ok("the reload with zz_zone at a")?;
    serves(s, "zz.example.test", "/", "zz a")?;
    write_as_user(s, &zz, &conf("b", "zz b"))?;
    let out = reload_as_user(s);
    let result = (|| {
        if out.code == 0 {
            return Err(format!("a reload nginx refused exited 0:\n{}", indent(&out.all())));
        }
        expect_text(&out.all(), "previously it used", "the refused reload (nginx's own message)")?;
        expect(&fetch(s, "http", "zz.example.test", "/", &[]), 200, "zz a", "the running configuration after the refused reload")?;
        // A deploy that changes the block while nginx refuses: it fails with
        // nginx's message, and nginx keeps serving what it served.
        newer.write("ENV", "NGINX_SERVER_NAME=sec-reload-new.example.test sec-reload-new2.example.test\n");
        newer.commit("second name")?;
        let push = newer.push("main");
        if push.code == 0 && !push.all().contains("failed") {
            return Err(format!("the push while nginx refuses its configuration succeeded:\n{}", indent(&push.all())));
        }
        expect_text(&push.all(), "previously it used", "the push while nginx refuses")?;
        expect(&fetch(s, "http", "sec-reload-new.example.test", "/", &[]), 200, "port=", "the app's name after the refused reload")?;
        if fetch(s, "http", "sec-reload-new2.example.test", "/", &[]).body.contains("port=") {
            return Err("the new name is served although nginx refused the configuration".into());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&zz);
    let cleaned = reload_as_user(s);
    result?;
    cleaned.ok("the reload after the zone's conf is removed")?;
    ssh(s, "deploy sec-reload-new", None).ok("deploy sec-reload-new after nginx accepts again")?;
    serves(s, "sec-reload-new.example.test", "/", "port=")?;
    Ok(())
}
