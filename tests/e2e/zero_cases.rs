//! Zero-downtime releases, proven under load: a bounded load generator
//! (tests/e2e/load.rs: one connection per request, keep-alive, slow senders
//! and slow readers) hits the app through nginx while it is redeployed,
//! rolled back, and handed a release that fails its health check. Every request must get a 200: no 5xx, no connection error.

use crate::client::{App, expect_text, indent, serves, ssh};
use crate::server::Server;
use std::time::Duration;

pub use crate::load::{Load, request, under_load};

/// A threaded Python web app that answers `version=<VERSION>`.
fn versioned_app<'s>(s: &'s Server, name: &str, host: &str, version: &str, extra_env: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "web: python3 app.py\nworker: python3 -c 'import time; time.sleep(100000)'\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n{extra_env}"))
        .write("VERSION", version)
        .write(
            "app.py",
            r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = open("VERSION").read().strip()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path not in ("/", "/healthz"):
            self.send_error(404); return
        body = ("version=%s\n" % VERSION).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["BIND_ADDRESS"], int(os.environ["PORT"])), H).serve_forever()
"#,
        );
    app
}

/// nginx answers from its new workers only: after a reload, old workers
/// with the previous configuration may take a moment to stop accepting.
pub fn settled(s: &Server, host: &str) -> Result<(), String> {
    crate::client::wait_for(Duration::from_secs(30), || {
        for _ in 0..20 {
            match request(s.http_port, host) {
                Ok(200) => {}
                other => return Err(format!("{host} answered {other:?}")),
            }
        }
        Ok(())
    })
}

pub fn check_load(what: &str, load: &Load, samples: &[String]) -> Result<(), String> {
    println!("    {what}: {load}");
    if load.ok == 0 {
        return Err(format!("{what}: the load generator got no answer at all"));
    }
    if load.failed() > 0 {
        return Err(format!("{what}: {load}; first failures:\n{}", indent(&samples.join("\n"))));
    }
    Ok(())
}

/// Three redeploys and a rollback under load: not one request fails.
pub fn zero_downtime_redeploys(s: &Server) -> Result<(), String> {
    let host = "zero.example.test";
    let app = versioned_app(s, "zero-app", host, "v1", "");
    app.commit("v1")?;
    app.deploy("main")?;
    serves(s, host, "/", "version=v1")?;
    settled(s, host)?;

    let (result, load, samples) = under_load(s, host, 4, || -> Result<Vec<String>, String> {
        let mut outputs = Vec::new();
        for v in ["v2", "v3", "v4"] {
            app.write("VERSION", v);
            app.commit(v)?;
            let out = app.deploy("main")?;
            serves(s, host, "/", &format!("version={v}")).map_err(|e| format!("{e}\nafter the push:\n{}", indent(&out.all())))?;
            outputs.push(out.all());
        }
        let out = ssh(s, "rollback zero-app", None).ok("ssh rollback zero-app")?;
        serves(s, host, "/", "version=v3").map_err(|e| format!("{e}\nafter rollback:\n{}", indent(&out.all())))?;
        outputs.push(out.all());
        Ok(outputs)
    });
    let outputs = result?;
    check_load("3 redeploys and a rollback", &load, &samples)?;
    let push = &outputs[0];
    for needle in ["beside the live workers", "answers / with HTTP 200", "finish their requests, then stop"] {
        expect_text(push, needle, "a redeploy")?;
    }
    expect_text(&outputs[3], "Rolling 'zero-app' back to release", "rollback")?;
    if outputs[3].contains("Installing") || outputs[3].contains("detected") {
        return Err(format!("rollback rebuilt the release:\n{}", indent(&outputs[3])));
    }

    // releases: newest first, v3 live again, v4 and the others previous.
    let list = ssh(s, "releases zero-app", None).ok("ssh releases zero-app")?.stdout;
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split_whitespace().collect()).collect();
    let statuses: Vec<(&str, &str)> = rows.iter().filter_map(|r| Some((*r.get(3)?, *r.get(4)?))).collect();
    if statuses != [("previous", "v4"), ("live", "v3"), ("previous", "v2"), ("previous", "v1")] {
        return Err(format!("releases lists {statuses:?}, expected v4 previous, v3 live, v2 and v1 previous:\n{}", indent(&list)));
    }
    let json = ssh(s, "releases zero-app --json", None).ok("ssh releases --json")?.stdout;
    expect_text(&json, r#""status":"live","message":"v3""#, "releases --json")?;

    // After the drain, only the live colour's web worker and one background worker remain.
    crate::client::wait_for(Duration::from_secs(40), || {
        let enabled: Vec<String> = std::fs::read_dir(s.piku_root().join("uwsgi-enabled"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("zero-app_"))
            .collect();
        if enabled.len() != 2 || !enabled.iter().any(|n| n == "zero-app_worker.1.ini") {
            return Err(format!("uwsgi-enabled has {enabled:?}, expected one web vassal of the live colour and zero-app_worker.1.ini"));
        }
        Ok(())
    })?;
    let ps = ssh(s, "ps zero-app", None).ok("ssh ps zero-app")?.stdout;
    expect_text(&ps, "web.1 running", "ps after the swaps")?;

    // The live commit pushed again: a no-op that says so.
    let forced = crate::client::run(
        crate::client::git(&app.dir).env("GIT_SSH_COMMAND", s.git_ssh_command()).args([
            "push",
            "-f",
            &format!("{}:zero-app", s.ssh_destination()),
            "HEAD~1:main",
        ]),
        None,
        crate::client::PUSH_TIMEOUT,
    )
    .ok("git push -f of the live commit (v3)")?;
    expect_text(&forced.all(), "already live", "a push of the live commit")?;
    serves(s, host, "/", "version=v3")
}

/// A release that never answers is stopped; the old one serves every request.
pub fn failing_health_check_keeps_live(s: &Server) -> Result<(), String> {
    let host = "zero-fail.example.test";
    let app = versioned_app(s, "zero-fail", host, "good", "PIKU_HEALTHCHECK_TIMEOUT=6\n");
    app.commit("good")?;
    app.deploy("main")?;
    serves(s, host, "/", "version=good")?;
    settled(s, host)?;
    let live_before = std::fs::read_link(s.piku_root().join("apps/zero-fail")).map_err(|e| e.to_string())?;

    let (result, load, samples) = under_load(s, host, 4, || -> Result<(String, crate::client::Out), String> {
        // The new web worker dies at start: it never answers.
        app.write("Procfile", "web: python3 -c 'import sys; sys.exit(\"boom: DATABASE_URL is not set\")'\nworker: sleep 100000\n");
        app.commit("broken")?;
        let push = app.push("main");
        serves(s, host, "/", "version=good")?;
        // config:set that makes the health check fail (the path is 404): the
        // command fails with status 1 and the change is undone.
        let set = ssh(s, "config:set zero-fail PIKU_HEALTHCHECK_PATH=/not-there", None);
        Ok((push.all(), set))
    });
    let (push, set) = result?;
    check_load("a release failing its health check, then a config:set failing it", &load, &samples)?;
    for needle in ["failed its health check", "boom: DATABASE_URL is not set", "rolled back", "still serving"] {
        expect_text(&push, needle, "the push of a release that never answers")?;
    }
    let live_after = std::fs::read_link(s.piku_root().join("apps/zero-fail")).map_err(|e| e.to_string())?;
    if live_after != live_before {
        return Err(format!("apps/zero-fail moved from {} to {}", live_before.display(), live_after.display()));
    }
    if set.code != 1 {
        return Err(format!("config:set with a failing health check exited {}, expected 1:\n{}", set.code, indent(&set.all())));
    }
    for needle in ["HTTP 404", "rolled back", "was undone"] {
        expect_text(&set.all(), needle, "config:set failing the health check")?;
    }
    if ssh(s, "config:get zero-fail PIKU_HEALTHCHECK_PATH", None).code == 0 {
        return Err("PIKU_HEALTHCHECK_PATH is still set after the failed config:set".into());
    }
    let list = ssh(s, "releases zero-fail", None).ok("ssh releases zero-fail")?.stdout;
    let first = list.lines().next().unwrap_or("");
    if !(first.contains("failed") && first.contains("broken")) {
        return Err(format!("releases does not show the broken release as failed:\n{}", indent(&list)));
    }
    serves(s, host, "/", "version=good")
}

/// A wsgi app behind nginx: the switch is the nginx/<app>.sock link, to
/// each release's own socket.
pub fn zero_downtime_wsgi(s: &Server) -> Result<(), String> {
    let host = "zero-wsgi.example.test";
    let app = App::new(s, "zero-wsgi");
    let write = |v: &str| {
        app.write("Procfile", "wsgi: hello:application\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\n")).write(
            "hello.py",
            &format!("def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'wsgi {v}']\n"),
        );
    };
    write("v1");
    app.commit("v1")?;
    app.deploy("main")?;
    serves(s, host, "/", "wsgi v1")?;
    settled(s, host)?;
    let link = s.piku_root().join("nginx/zero-wsgi.sock");
    let first = std::fs::read_link(&link).map_err(|e| format!("{} is not a link: {e}", link.display()))?;
    let (result, load, samples) = under_load(s, host, 4, || -> Result<Vec<std::path::PathBuf>, String> {
        let mut targets = vec![first.clone()];
        for v in ["v2", "v3"] {
            write(v);
            app.commit(v)?;
            let out = app.deploy("main")?;
            serves(s, host, "/", &format!("wsgi {v}")).map_err(|e| format!("{e}\nafter the push:\n{}", indent(&out.all())))?;
            targets.push(std::fs::read_link(&link).map_err(|e| e.to_string())?);
        }
        Ok(targets)
    });
    let targets = result?;
    check_load("2 redeploys of a wsgi app", &load, &samples)?;
    // Each release's workers have a socket of their own, never reused.
    let mut unique = targets.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != targets.len() {
        return Err(format!("the socket link pointed at {targets:?}: a socket was reused"));
    }
    // wsgi=2: nginx balances both workers, each through its own stable socket.
    ssh(s, "ps:scale zero-wsgi wsgi=2", None).ok("ssh ps:scale zero-wsgi wsgi=2")?;
    only_live_workers_of(s, "zero-wsgi", "wsgi", 2)?;
    settled(s, host)?;
    serves(s, host, "/", "wsgi v3")
}

/// The app's enabled vassals of one kind and its running workers of that kind (process titles).
fn web_workers(s: &Server, app: &str, kind: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let mut enabled: Vec<String> = std::fs::read_dir(s.piku_root().join("uwsgi-enabled"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{app}_{kind}.")))
        .collect();
    enabled.sort();
    let uid = crate::server::passwd_ids().map_or(u32::MAX, |ids| ids.0);
    let running: Vec<String> = piku::vassals::running_workers_of(uid).into_iter().filter(|t| t.starts_with(&format!("{app}:{kind}."))).collect();
    Ok((enabled, running))
}

/// Wait until exactly the live generation's web workers are enabled and
/// running, as `ps` reports them: `count` instances, nothing draining.
fn only_live_workers(s: &Server, app: &str, count: usize) -> Result<(), String> {
    only_live_workers_of(s, app, "web", count)
}

fn only_live_workers_of(s: &Server, app: &str, kind: &str, count: usize) -> Result<(), String> {
    crate::client::wait_for(Duration::from_secs(60), || {
        let live = std::fs::read_to_string(s.piku_root().join(format!("workers/{app}/live"))).map_err(|e| e.to_string())?;
        let want: Vec<String> = (1..=count).map(|n| format!("{app}_{kind}.{n}.g{}.ini", live.trim())).collect();
        let titles: Vec<String> = (1..=count).map(|n| format!("{app}:{kind}.{n}.g{}", live.trim())).collect();
        let (enabled, running) = web_workers(s, app, kind)?;
        if enabled != want || running != titles {
            return Err(format!("enabled {enabled:?} and running {running:?}, expected {want:?} and {titles:?}"));
        }
        let ps = ssh(s, &format!("ps {app}"), None).ok(&format!("ssh ps {app}"))?.stdout;
        let web: Vec<&str> = ps.lines().filter(|l| l.trim_start().starts_with(kind)).collect();
        let expected: Vec<String> = std::iter::once(format!("{kind}:{count}")).chain((1..=count).map(|n| format!("  {kind}.{n} running"))).collect();
        if web != expected {
            return Err(format!("ps says {web:?}, expected {expected:?}"));
        }
        Ok(())
    })
}

/// Five pushes in a row under load while earlier releases still drain
/// (a long drain): each goes live at once, no request fails, several old
/// releases drain at the same time; then only the live release's workers
/// are left, and `ps` says exactly that.
pub fn back_to_back_pushes_while_draining(s: &Server) -> Result<(), String> {
    let host = "zero-b2b.example.test";
    let app = versioned_app(s, "zero-b2b", host, "v1", "PIKU_DRAIN_SECONDS=8\n");
    app.commit("v1")?;
    app.deploy("main")?;
    serves(s, host, "/", "version=v1")?;
    settled(s, host)?;
    let (result, load, samples) = under_load(s, host, 4, || -> Result<usize, String> {
        let mut most_draining = 0;
        for v in ["v2", "v3", "v4", "v5", "v6"] {
            app.write("VERSION", v);
            app.commit(v)?;
            let out = app.deploy("main")?;
            serves(s, host, "/", &format!("version={v}")).map_err(|e| format!("{e}\nafter the push:\n{}", indent(&out.all())))?;
            let ps = ssh(s, "ps zero-b2b", None).ok("ssh ps zero-b2b")?.stdout;
            most_draining = most_draining.max(ps.lines().filter(|l| l.ends_with(" draining")).count());
        }
        Ok(most_draining)
    });
    let most_draining = result?;
    check_load("5 pushes in a row while earlier releases drain", &load, &samples)?;
    if most_draining < 2 {
        return Err(format!("at most {most_draining} older release(s) drained at once; the pushes waited for the drains"));
    }
    let log = ssh(s, "logs zero-b2b deploy --no-follow", None).ok("ssh logs zero-b2b deploy")?.stdout;
    expect_text(&log, "Draining web.1.g", "the deploy log")?;
    only_live_workers(s, "zero-b2b", 1)?;
    serves(s, host, "/", "version=v6")
}

/// Scaling up then down goes through the swap: afterwards the enabled
/// vassals and the running workers are exactly what `ps` reports (before,
/// web.2 stayed enabled and running after `ps:scale web=1`).
pub fn scale_down_leaves_what_ps_reports(s: &Server) -> Result<(), String> {
    let host = "zero-scale.example.test";
    let app = versioned_app(s, "zero-scale", host, "v1", "PIKU_DRAIN_SECONDS=1\n");
    app.commit("v1")?;
    app.deploy("main")?;
    serves(s, host, "/", "version=v1")?;
    let (result, load, samples) = under_load(s, host, 4, || -> Result<(), String> {
        ssh(s, "ps:scale zero-scale web=2", None).ok("ssh ps:scale zero-scale web=2")?;
        only_live_workers(s, "zero-scale", 2)?;
        ssh(s, "ps:scale zero-scale web=1", None).ok("ssh ps:scale zero-scale web=1")?;
        only_live_workers(s, "zero-scale", 1)?;
        ssh(s, "restart zero-scale", None).ok("ssh restart zero-scale")?;
        only_live_workers(s, "zero-scale", 1)
    });
    result?;
    check_load("ps:scale up, down, and restart", &load, &samples)?;
    serves(s, host, "/", "version=v1")
}
