//! Hardening: hostile input over ssh and git (every input refused with a
//! clear message and a non-zero exit, or passed on byte for byte; nothing
//! written outside the app's own files; every app still served), faults in
//! the middle of a deploy (the chain killed, a full disk, nginx or the
//! emperor down), and the modes of the files under ~/.piku.

use crate::client::{App, COMMAND_TIMEOUT, Out, curl, expect_text, indent, run, serves, serves_now, ssh};
use crate::server::{self, Server};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A web app that answers `<page> KEY=<hex of the value>...` for every
/// variable whose name starts with INJ: the bytes the worker really got.
fn probe_app<'s>(s: &'s Server, name: &str, host: &str, page: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "web: python3 app.py\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nPAGE={page}\n"))
        .write(
            "app.py",
            r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        inj = " ".join("%s=%s" % (k.decode(), v.hex()) for k, v in sorted(os.environb.items()) if k.startswith(b"INJ"))
        body = ("%s %s\n" % (os.environ.get("PAGE", ""), inj)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer((os.environ["BIND_ADDRESS"], int(os.environ["PORT"])), H).serve_forever()
"#,
        );
    app
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// What the corpus did, printed at the end (for the closing note).
#[derive(Default)]
struct Tally {
    tried: usize,
    refused: usize,
    exact: usize,
    ignored: usize,
    failures: Vec<String>,
}

impl Tally {
    /// `out` must be a failure (exit 1 or 2, as ssh or git report it) that says `needle`.
    fn refused(&mut self, what: &str, out: &Out, needle: &str) {
        self.tried += 1;
        let said = out.all().to_lowercase();
        if out.code == 0 {
            self.failures.push(format!("{what}: exit 0, expected a refusal\n{}", indent(&out.all())));
        } else if out.code < 0 {
            self.failures.push(format!("{what}: did not finish\n{}", indent(&out.all())));
        } else if said.contains("panicked") {
            self.failures.push(format!("{what}: a tool panicked\n{}", indent(&out.all())));
        } else if !said.contains(&needle.to_lowercase()) {
            self.failures.push(format!("{what}: refused (exit {}) without saying {needle:?}\n{}", out.code, indent(&out.all())));
        } else {
            self.refused += 1;
        }
    }

    fn fail(&mut self, e: String) {
        self.failures.push(e);
    }
}

/// Every file, link, socket and directory under `dir`: relative path ->
/// (type, mode, content hash or link target). `skip` leaves out what may change.
fn snapshot(dir: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
            if skip(&rel) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let mode = meta.mode() & 0o7777;
            let ft = meta.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default())
            } else if ft.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else if ft.is_file() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap_or_default().hash(&mut h);
                format!("file {mode:o} {:x}", h.finish())
            } else {
                format!("other {mode:o}")
            };
            out.insert(rel, what);
        }
    }
    out
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut changes = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => changes.push(format!("removed {k}")),
            Some(w) if w != v => changes.push(format!("changed {k}: {v} -> {w}")),
            _ => {}
        }
    }
    changes.extend(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("created {k}")));
    changes
}

/// The files of `app` itself, and what changes by itself (logs, caches, app data).
fn owned_or_volatile(rel: &str, app: &str) -> bool {
    let first = rel.split('/').next().unwrap_or("");
    let piku = rel.strip_prefix(".piku/");
    if matches!(first, ".cache" | ".bash_history" | ".python_history" | ".viminfo") {
        return true;
    }
    let Some(p) = piku else { return false };
    let own = [
        format!("envs/{app}"),
        format!("releases/{app}"),
        format!("apps/{app}"),
        format!("repos/{app}"),
        format!("locks/{app}"),
        format!("logs/{app}"),
        format!("workers/{app}"),
    ];
    own.iter().any(|o| p == o || p.starts_with(&format!("{o}/")))
        || p.starts_with(&format!("uwsgi-enabled/{app}_"))
        || p.starts_with(&format!("uwsgi-available/{app}_"))
        || p.starts_with(&format!("nginx/{app}."))
        || p.starts_with(&format!("nginx/{app}_")) && p.ends_with(".sock")
        || p.starts_with("logs/")
        || p.starts_with("data/") && p.matches('/').count() > 1
        || p.starts_with("uwsgi/uwsgi")
        || p.starts_with("tmp/")
}

/// Every app's older generations of web workers have stopped: each
/// workers/<app>/ holds only the live generation's record.
fn drains_done(s: &Server) -> Result<(), String> {
    crate::client::wait_for(std::time::Duration::from_secs(60), || {
        for app in std::fs::read_dir(s.piku_root().join("workers")).into_iter().flatten().flatten() {
            let live = std::fs::read_to_string(app.path().join("live")).unwrap_or_default();
            let records: Vec<String> = std::fs::read_dir(app.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('g') && *n != format!("g{}", live.trim()))
                .collect();
            if !records.is_empty() {
                return Err(format!("{} still drains {records:?}", app.file_name().to_string_lossy()));
            }
        }
        Ok(())
    })
}

pub fn injection_corpus(s: &Server) -> Result<(), String> {
    let host = "inject.example.test";
    let other_host = "inject-other.example.test";
    let app = probe_app(s, "inject", host, "inject one");
    app.commit("first")?;
    app.deploy("main")?;
    let other = probe_app(s, "inject-other", other_host, "bystander");
    other.commit("first")?;
    other.deploy("main")?;
    serves(s, host, "/", "inject one")?;
    serves(s, other_host, "/", "bystander")?;

    let skip = |rel: &str| owned_or_volatile(rel, "inject");
    // Earlier cases' apps may still be draining older workers (in the
    // background, as they should): wait until they are done.
    drains_done(s)?;
    let before = snapshot(&s.home(), &skip);
    let every_app = what_every_app_serves(s, "inject");
    let mut t = Tally::default();
    let marker = format!("/tmp/piku-e2e-injected-{}", std::process::id());
    let _ = std::fs::remove_file(&marker);

    // 1. App names, wherever a command takes one.
    let long = "a".repeat(300);
    let names: Vec<&str> = vec!["..", "../x", "-x", "a b", "a;b", "ünïcødé", &long, ".", "a/b", "$(id)", "x..y", "app\tx", "inject_web.1"];
    for name in &names {
        let q = shell_words::quote(name);
        for cmd in ["git-receive-pack", "git-upload-pack", "config:live", "deploy", "destroy", "ps", "logs"] {
            let out = ssh(s, &format!("{cmd} {q}"), None);
            t.refused(&format!("ssh {cmd} {name:?}"), &out, "invalid app name");
        }
        let out = ssh(s, &format!("config:set {q} INJ=1"), None);
        t.refused(&format!("ssh config:set {name:?}"), &out, "invalid app name");
    }
    for name in ["../x", "a;b", "ünïcødé", &long, "$(touch /tmp/x)"] {
        let out = app.push_to(name, "main");
        t.refused(&format!("git push to {name:?}"), &out, "invalid app name");
    }

    // 2. ENV keys and values through config:set over ssh: refused ones name the problem.
    let long_value = format!("INJ_LONG={}", "v".repeat(70_000));
    let refused_env: Vec<(&str, &str)> = vec![
        ("BAD KEY=x", "not a variable name"),
        ("1A=x", "not a variable name"),
        ("A-B=x", "not a variable name"),
        ("=x", "empty"),
        ("A;B=x", "not a variable name"),
        ("A$(id)=x", "not a variable name"),
        ("INJ=a\nplugin = evil", "line break"),
        ("INJ=a\r\nb", "line break"),
        ("INJ=x\nNGINX_SERVER_NAME=evil.test", "line break"),
        (&long_value, "longer than"),
        ("NGINX_SERVER_NAME=a;b", "NGINX_SERVER_NAME"),
        ("NGINX_SERVER_NAME=x{", "NGINX_SERVER_NAME"),
        ("NGINX_SERVER_NAME=x } server { listen 1", "NGINX_SERVER_NAME"),
        ("NGINX_SERVER_NAME=\"q\"", "NGINX_SERVER_NAME"),
        ("NGINX_SERVER_NAME=$host", "NGINX_SERVER_NAME"),
        ("NGINX_STATIC_PATHS=/x:a;b", "NGINX_STATIC_PATHS"),
        ("NGINX_STATIC_PATHS=/x:public{", "NGINX_STATIC_PATHS"),
        ("NGINX_STATIC_PATHS=/x:a } location / { root /etc", "NGINX_STATIC_PATHS"),
        ("NGINX_STATIC_PATHS=/x:$document_root", "NGINX_STATIC_PATHS"),
        ("NGINX_STATIC_PATHS=/x:\"q\"", "NGINX_STATIC_PATHS"),
        ("NGINX_STATIC_PATHS=no-colon", "NGINX_STATIC_PATHS"),
        ("NGINX_CATCH_ALL=x;y", "NGINX_CATCH_ALL"),
        // Issue 19: what root's nginx would act on, or another app's.
        ("NGINX_CATCH_ALL=../ENV", "NGINX_CATCH_ALL must be a URI path"),
        ("NGINX_CACHE_PATH=/etc", "NGINX_CACHE_PATH \"/etc\" of 'inject' is outside"),
        ("NGINX_IPV4_ADDRESS=unix:/tmp/piku-e2e-sock", "NGINX_IPV4_ADDRESS must be an IPv4 address"),
        ("NGINX_SERVER_NAME=inject-other.example.test", "already served by the app 'inject-other'"),
        ("NGINX_INCLUDE_FILE=/dev/zero", "NGINX_INCLUDE_FILE \"/dev/zero\" of 'inject' is not a relative path"),
        ("NGINX_INCLUDE_FILE=../../../settings", "NGINX_INCLUDE_FILE \"../../../settings\" of 'inject' is not a relative path"),
        ("UWSGI_INCLUDE_FILE=/dev/zero", "UWSGI_INCLUDE_FILE \"/dev/zero\" of 'inject' is not a relative path"),
        ("BIND_ADDRESS=127.0.0.1;", "BIND_ADDRESS"),
        ("PORT=99999", "PORT"),
        ("PORT=1;2", "PORT"),
        // Bounded work (issue 19 item 11): the server's limits, not the app's.
        ("UWSGI_PROCESSES=100000", "PIKU_MAX_WORKERS"),
        ("PIKU_KEEP_RELEASES=1000000", "from 1 to 50"),
        ("PIKU_KEEP_RELEASES=0", "from 1 to 50"),
    ];
    let config_before = ssh(s, "config inject", None).ok("config inject")?.stdout;
    for (pair, needle) in &refused_env {
        let out = ssh(s, &format!("config:set inject {}", shell_words::quote(pair)), None);
        let shown: String = pair.chars().take(60).collect();
        t.refused(&format!("config:set {shown:?}"), &out, needle);
    }
    // NGINX_CACHE_PREFIXES is for piku-nginx's cache (in progress elsewhere):
    // refused, or else ignored, never written into nginx's configuration.
    for pair in ["NGINX_CACHE_PREFIXES=/a;b", "NGINX_CACHE_PREFIXES=/x { }", "NGINX_CACHE_PREFIXES=/x\"y"] {
        let out = ssh(s, &format!("config:set inject {}", shell_words::quote(pair)), None);
        let value = pair.split_once('=').map(|(_, v)| v).unwrap_or_default();
        let conf = std::fs::read_to_string(s.piku_root().join("nginx/inject.conf")).unwrap_or_default();
        if out.code != 0 {
            t.refused(&format!("config:set {pair:?}"), &out, "NGINX_CACHE_PREFIXES");
        } else if conf.contains(value) {
            t.tried += 1;
            t.fail(format!("config:set {pair:?} was accepted and written into nginx/inject.conf:\n{}", indent(&conf)));
        } else {
            t.tried += 1;
            t.ignored += 1;
            ssh(s, "config:unset inject NGINX_CACHE_PREFIXES", None).ok("config:unset NGINX_CACHE_PREFIXES")?;
        }
    }
    let config_after = ssh(s, "config inject", None).ok("config inject")?.stdout;
    if config_before != config_after {
        t.fail(format!("refused config:set commands changed the config:\n{config_before}\n---\n{config_after}"));
    }
    serves_now(s, host, "/", "inject one").map_err(|e| format!("after the refused config:set commands: {e}"))?;

    // Values that are legal: stored, and passed to the worker byte for byte.
    let exact: Vec<(&str, String)> = vec![
        ("INJ_SEMI", "a;b".into()),
        ("INJ_BRACES", "{ } {{x}}".into()),
        ("INJ_QUOTES", r#"say "hi" it's"#.into()),
        ("INJ_SUBST", "$(touch /tmp/x) `id`".into()),
        ("INJ_UWSGI", "@(exec://id) $(HOME) %d %(x) %%".into()),
        ("INJ_UNICODE", "ünïcødé ✓ 日本".into()),
        ("INJ_CONTROL", "a\u{1}b\u{7f}c\tz".into()),
        ("INJ_BACKSLASH", r"C:\path\n\0".into()),
        ("INJ_NGINXISH", "} server { listen 1; }".into()),
        ("INJ_BIG", "w".repeat(20_000)),
        // No shell expands what the user typed (issue 19 item 12).
        ("INJ_GLOB", "* /* ~root [a-z]* ?".into()),
    ];
    let args: Vec<String> = exact.iter().map(|(k, v)| shell_words::quote(&format!("{k}={v}")).into_owned()).collect();
    ssh(s, &format!("config:set inject {}", args.join(" ")), None).ok("config:set of the legal values")?;
    let (_, body) = crate::client::wait_for(Duration::from_secs(30), || match curl(s, host, "/") {
        (200, b) if b.contains("INJ_BIG=") => Ok((200, b)),
        (c, b) => Err(format!("answered {c}: {b}")),
    })?;
    for (k, v) in &exact {
        t.tried += 1;
        let stored = ssh(s, &format!("config:get inject {k}"), None);
        if !body.split_whitespace().any(|w| w == format!("{k}={}", hex(v))) {
            t.fail(format!("{k}: the worker did not get {v:?} byte for byte:\n{}", indent(&body.chars().take(2000).collect::<String>())));
        } else if stored.stdout != format!("{v}\n") {
            t.fail(format!("{k}: config:get gave {:?}, expected {v:?}", stored.stdout));
        } else {
            t.exact += 1;
        }
    }

    // 3. Procfiles: each rejected by pre-receive; the live release keeps serving.
    let mut many_kinds = String::new();
    for i in 0..10_000 {
        many_kinds.push_str(&format!("w{i}: sleep 1000\n"));
    }
    let mut long_comments = "# a comment\n".repeat(10_000);
    long_comments.push_str("web python3 app.py\n");
    let procfiles: Vec<(&str, String, &str)> = vec![
        ("no colon", "web python3 app.py\n".into(), "Procfile"),
        ("empty command", "web: python3 app.py\nworker:\n".into(), "no command"),
        ("empty kind", ": python3 app.py\n".into(), "Procfile"),
        ("a kind with ;", "web;id: python3 app.py\n".into(), "Procfile"),
        ("cron minute 61", "web: python3 app.py\ncron1: 61 * * * * date\n".into(), "out of range"),
        ("cron with 4 fields", "web: python3 app.py\ncron1: * * * * \n".into(), "cron"),
        ("cron @daily", "web: python3 app.py\ncron1: @daily date\n".into(), "cron"),
        ("cron */0", "web: python3 app.py\ncron1: */0 * * * * date\n".into(), "cron"),
        ("cron with a name", "web: python3 app.py\ncron1: * * * jan * date\n".into(), "cron"),
        ("10,000 worker kinds", many_kinds, "Procfile"),
        // `inject` + `x_worker` would be app `inject_x`'s `worker` (issue 19 item 9).
        ("a kind with '_'", "web: python3 app.py\nx_worker: sleep 1000\n".into(), "contains '_'"),
        ("10,000 lines, the last one bad", long_comments, "line 10001"),
    ];
    for (what, text, needle) in &procfiles {
        app.write("Procfile", text);
        app.commit(what)?;
        let out = app.push("main");
        t.refused(&format!("a Procfile with {what}"), &out, needle);
        if let Err(e) = serves_now(s, host, "/", "inject one") {
            t.fail(format!("after the push of a Procfile with {what}, the live release does not serve: {e}"));
        }
    }
    app.write("Procfile", "web: python3 app.py\n");

    // The repository's ENV file: what ssh cannot carry (a NUL byte), and
    // what would grow without bound.
    let good_env = format!("NGINX_SERVER_NAME={host}\nPAGE=inject one\n");
    let doubling: String = (0..40).map(|_| "A=$A$A$A$A\n").collect();
    let env_files: Vec<(&str, String, &str)> = vec![
        ("a NUL byte", format!("{good_env}INJ=a\0b\n"), "NUL"),
        ("a line without =", format!("{good_env}just words\n"), "line 3"),
        ("a key with a blank", format!("{good_env}A B=1\n"), "not a variable name"),
        ("a 70 KB value", format!("{good_env}INJ={}\n", "v".repeat(70_000)), "longer than"),
        ("a value doubling itself", format!("{good_env}A=xxxxxxxxxxxxxxxx\n{doubling}"), "longer than"),
    ];
    for (what, text, needle) in &env_files {
        app.write("ENV", text);
        app.commit(what)?;
        let out = app.push("main");
        t.refused(&format!("an ENV file with {what}"), &out, needle);
        if let Err(e) = serves_now(s, host, "/", "inject one") {
            t.fail(format!("after the push of an ENV file with {what}, the live release does not serve: {e}"));
        }
    }
    app.write("ENV", &good_env);
    app.commit("good Procfile and ENV again")?;

    // 4. ssh commands that are not piku commands.
    let not_piku = [
        "bash".to_string(),
        "sh -c id".into(),
        "git-receive-pack '../x'".into(),
        "git-upload-pack '../../etc'".into(),
        "scp -t /etc".into(),
        "scp -f /etc/passwd".into(),
        "rsync --server -e.Lsfx . /tmp".into(),
        format!("touch {marker}"),
        format!("apps; touch {marker}"),
        format!("$(touch {marker})"),
        format!("apps && touch {marker}"),
        "receive inject".into(),
        "nginx --destroy inject".into(),
        "../bin/sh".into(),
        "piku-uwsgi --destroy inject".into(),
        "git-receive-pack".into(),
        "config:set".into(),
    ];
    for cmd in &not_piku {
        let out = ssh(s, cmd, None);
        let needle = if cmd.starts_with("git-") && cmd.contains('\'') { "invalid app name" } else { "" };
        if needle.is_empty() {
            // Any of the front door's words for "not a command of mine".
            t.tried += 1;
            let said = out.stderr.to_lowercase();
            if out.code == 0 || !["unknown command", "wrong arguments", "refused", "not allowed", "usage: piku"].iter().any(|w| said.contains(w)) {
                t.fail(format!("ssh {cmd:?}: expected a refusal naming the problem, got exit {}\n{}", out.code, indent(&out.all())));
            } else if out.stdout.contains("uid=") {
                t.fail(format!("ssh {cmd:?} ran something:\n{}", indent(&out.stdout)));
            } else {
                t.refused += 1;
            }
        } else {
            t.refused(&format!("ssh {cmd:?}"), &out, needle);
        }
    }
    if Path::new(&marker).exists() || Path::new("/tmp/x").exists() && std::fs::metadata("/tmp/x").is_ok_and(|m| m.uid() != 0) {
        let _ = std::fs::remove_file(&marker);
        t.fail(format!("a refused command created {marker} or /tmp/x"));
    }

    // Nothing outside the app's own files changed; every app still serves.
    let after = snapshot(&s.home(), &skip);
    let changes = diff(&before, &after);
    if !changes.is_empty() {
        t.fail(format!("files outside 'inject' changed:\n{}", indent(&changes.join("\n"))));
    }
    for e in serve_every_app(s, &every_app) {
        t.fail(e);
    }
    println!(
        "    injection corpus: {} inputs tried, {} refused with a clear message, {} passed on byte for byte, {} ignored (NGINX_CACHE_PREFIXES), {} failures",
        t.tried,
        t.refused,
        t.exact,
        t.ignored,
        t.failures.len()
    );
    if t.failures.is_empty() { Ok(()) } else { Err(t.failures.join("\n")) }
}

/// What every app with an nginx server block serves at `/` (its host, and
/// the page of a 200), apart from the app `own` the case attacks and
/// checks itself. Taken before a fault is injected.
/// A page that differs from one request to the next (an app that echoes the
/// request) is known by its first line.
struct EveryApp {
    serving: BTreeMap<String, (String, Page)>,
    not_serving: Vec<String>,
}

enum Page {
    Whole(String),
    FirstLine(String),
}

impl Page {
    fn is(&self, body: &str) -> bool {
        match self {
            Page::Whole(page) => body == page,
            Page::FirstLine(line) => body.lines().next() == Some(line.as_str()),
        }
    }
    fn describe(&self) -> String {
        let (what, text) = match self {
            Page::Whole(page) => ("its page", page),
            Page::FirstLine(line) => ("the first line of its page", line),
        };
        format!("{what} {:?}", text.chars().take(100).collect::<String>())
    }
}

fn what_every_app_serves(s: &Server, own: &str) -> EveryApp {
    let mut every = EveryApp { serving: BTreeMap::new(), not_serving: Vec::new() };
    let Ok(rd) = std::fs::read_dir(s.piku_root().join("nginx")) else { return every };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(app) = name.strip_suffix(".conf") else { continue };
        if app == own {
            continue;
        }
        let conf = std::fs::read_to_string(e.path()).unwrap_or_default();
        let Some(host) = conf.lines().find_map(|l| l.trim().strip_prefix("server_name ")).and_then(|n| n.split([' ', ';']).next()) else {
            continue;
        };
        match (curl(s, host, "/"), curl(s, host, "/")) {
            ((200, one), (200, two)) if one == two => drop(every.serving.insert(app.to_string(), (host.to_string(), Page::Whole(one)))),
            ((200, one), (200, _)) if !one.trim().is_empty() => {
                let first = one.lines().next().unwrap_or_default().to_string();
                every.serving.insert(app.to_string(), (host.to_string(), Page::FirstLine(first)));
            }
            ((code, _), _) => every.not_serving.push(format!("{app} ({code})")),
        }
    }
    every
}

/// Every app that served a page before the fault serves that same page
/// (a 200 with the same body, or first line) after it: not an error page,
/// not another app's page. Apps that did not serve before (a case stopped
/// them on purpose) are named in the count line.
fn serve_every_app(s: &Server, before: &EveryApp) -> Vec<String> {
    let mut errors = Vec::new();
    for (app, (host, page)) in &before.serving {
        if let Err(err) = crate::client::wait_for(Duration::from_secs(20), || match curl(s, host, "/") {
            (200, body) if page.is(&body) => Ok(()),
            (code, body) => Err(format!("{code}: {}", body.chars().take(300).collect::<String>())),
        }) {
            errors.push(format!("app {app} ({host}) no longer serves {}: {err}", page.describe()));
        }
    }
    println!(
        "    every app: {} of {} served their own page again after the faults; {} did not serve before them: {:?}",
        before.serving.len() - errors.len(),
        before.serving.len(),
        before.not_serving.len(),
        before.not_serving
    );
    errors
}

/// Counts the requests that got none of `want` while a fault was injected.
struct Watch {
    stop: Arc<AtomicBool>,
    bad: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Watch {
    fn start(s: &Server, host: &str, want: &[&str]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let (st, b, tot) = (stop.clone(), bad.clone(), total.clone());
        let url = format!("http://127.0.0.1:{}/", s.http_port);
        let host = host.to_string();
        let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !st.load(Ordering::SeqCst) {
                let out = run(
                    Command::new("curl").args(["-sS", "--noproxy", "*", "--max-time", "5", "-H"]).arg(format!("Host: {host}")).arg(&url),
                    None,
                    Duration::from_secs(10),
                );
                tot.fetch_add(1, Ordering::SeqCst);
                if out.code != 0 || !want.iter().any(|w| out.stdout.contains(w.as_str())) {
                    b.fetch_add(1, Ordering::SeqCst);
                    if samples.len() < 3 {
                        samples.push(format!("{} {}", out.stdout.trim(), out.stderr.trim()));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Watch { stop, bad, total, handle: Some(handle) }
    }

    /// (requests, bad ones, samples of the bad answers)
    fn finish(mut self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self.handle.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (self.total.load(Ordering::SeqCst), self.bad.load(Ordering::SeqCst), samples)
    }
}

/// Wait until the previous colour of `app`'s web workers has drained (no
/// worker enabled in two colours), so the next deploy starts from one colour.
pub fn wait_drained(s: &Server, app: &str) -> Result<(), String> {
    crate::client::wait_for(Duration::from_secs(60), || {
        let names: Vec<String> = std::fs::read_dir(s.piku_root().join("uwsgi-enabled"))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let prefix = format!("{app}_");
        let coloured: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix) && (n.ends_with(".blue.ini") || n.ends_with(".green.ini"))).collect();
        let mut workers: Vec<String> = coloured.iter().map(|n| n.trim_end_matches(".ini").rsplit_once('.').map(|(w, _)| w.to_string()).unwrap_or_default()).collect();
        workers.sort();
        let total = workers.len();
        workers.dedup();
        if workers.len() == total { Ok(()) } else { Err(format!("{app} still has two colours enabled: {coloured:?}")) }
    })
}

/// PIDs of the piku user's processes whose command line contains `needle`.
fn user_pids(needle: &str) -> Vec<i32> {
    let out = run(Command::new("pgrep").args(["-u", server::USER.as_str(), "-f", needle]), None, COMMAND_TIMEOUT);
    out.stdout.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// No file or directory under PIKU_ROOT whose name says it was left half-written.
fn half_written(s: &Server) -> Vec<String> {
    let root = s.piku_root();
    snapshot(&root, &|rel: &str| rel.starts_with("tmp/") && rel.matches('/').count() > 1)
        .keys()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or("");
            name.ends_with(".tmp") || name.ends_with(".new") || name.ends_with(".partial")
        })
        .cloned()
        .collect()
}

/// kill -9 of the deploy chain's process group in the middle of the build (a
/// preflight task) and of a release task, then a new push: it deploys, and
/// the live release served throughout.
pub fn killed_deploy_chain(s: &Server) -> Result<(), String> {
    let host = "killed.example.test";
    let app = probe_app(s, "killed", host, "killed one");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "killed one")?;

    // The live release, until the last push makes the third one live; never the killed one.
    let watch = Watch::start(s, host, &["killed one", "killed three"]);
    let mut faults = 0;
    let mut groups = Vec::new();
    // Killed inside piku-build (a preflight task runs there, before any
    // dependency is installed), then in the release task after the build.
    for task in ["preflight", "release"] {
        app.write("Procfile", &format!("web: python3 app.py\n{task}: sleep 120\n")).write("ENV", &format!("NGINX_SERVER_NAME={host}\nPAGE=killed two\n"));
        app.commit(&format!("a slow {task} task"))?;
        let dir = app.dir.clone();
        let git_ssh = s.git_ssh_command();
        let remote = format!("{}:killed", s.ssh_destination());
        let push = std::thread::spawn(move || {
            run(crate::client::git(&dir).env("GIT_SSH_COMMAND", git_ssh).args(["push", &remote, "main"]), None, Duration::from_secs(200))
        });
        let sleeper = crate::client::wait_for(Duration::from_secs(120), || {
            user_pids("sleep 120").first().copied().ok_or_else(|| format!("the {task} task has not started"))
        })?;
        let hooks: Vec<i32> = user_pids("post-receive");
        let pgid = pgid_of(sleeper).ok_or_else(|| format!("cannot read the {task} task's process group"))?;
        let hook_groups: Vec<Option<i32>> = hooks.iter().map(|p| pgid_of(*p)).collect();
        if !hook_groups.contains(&Some(pgid)) {
            return Err(format!("the {task} task (pid {sleeper}, group {pgid}) is not in the hook's process group ({hooks:?} in {hook_groups:?})"));
        }
        run(Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]), None, COMMAND_TIMEOUT).ok("kill -9 the deploy chain")?;
        faults += 1;
        let out = push.join().map_err(|_| "the push thread panicked")?;
        if out.code == 0 {
            return Err(format!("the push killed in its {task} task exited 0:\n{}", indent(&out.all())));
        }
        // SIGKILL of the group ends every member: a task that outlives it by
        // seconds is not in the group (an orphan holding the deploy lock).
        crate::client::wait_for(Duration::from_secs(10), || match user_pids("sleep 120").as_slice() {
            [] => Ok(()),
            left => Err(format!("the killed chain's {task} task is still running (an orphan holding the deploy lock): {left:?}")),
        })?;
        serves_now(s, host, "/", "killed one").map_err(|e| format!("after the kill in the {task} task: {e}"))?;
        groups.push(pgid);
    }

    // The next push: not blocked by a stale lock, and it deploys.
    app.write("Procfile", "web: python3 app.py\nrelease: echo quick\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\nPAGE=killed three\n"));
    app.commit("a quick release task")?;
    let out = app.push("main");
    let (requests, bad, samples) = watch.finish();
    let out = out.ok("the push after the kill")?;
    serves(s, host, "/", "killed three").map_err(|e| format!("{e}\nafter:\n{}", indent(&out.all())))?;
    println!("    killed chain: {faults} faults injected (kill -9 of process groups {groups:?}: preflight, release); {requests} requests during them, {bad} not served by the live release");
    if bad > 0 {
        return Err(format!("{bad} of {requests} requests were not answered by the live release during the kill: {samples:?}"));
    }
    if !half_written(s).is_empty() {
        return Err(format!("half-written files after the kill: {:?}", half_written(s)));
    }
    Ok(())
}

/// Unmounts a tmpfs when dropped (also when the case fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk during a deploy: releases/<app> is a 1 MB tmpfs, the push
/// brings a 2 MB file. Clear error, live release served, nothing half-written.
pub fn full_disk_deploy(s: &Server) -> Result<(), String> {
    let host = "fulldisk.example.test";
    let dir = s.piku_root().join("releases/fulldisk");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mounted = run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "piku-e2e-full"]).arg(&dir), None, COMMAND_TIMEOUT);
    if mounted.code != 0 {
        return Err(format!("{}cannot mount a tmpfs here: {}", crate::SKIPPED, mounted.stderr.trim()));
    }
    let mount = Mount(dir.clone());
    server::chown_to_user(&dir)?;
    // And envs/<app> on 64 KB: room for ENV, not for ENV and LIVE_ENV both.
    let envs = s.piku_root().join("envs/fulldisk");
    std::fs::create_dir_all(&envs).map_err(|e| format!("create {}: {e}", envs.display()))?;
    run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "piku-e2e-full-env"]).arg(&envs), None, COMMAND_TIMEOUT)
        .ok("mount a tmpfs on envs/fulldisk")?;
    let env_mount = Mount(envs.clone());
    server::chown_to_user(&envs)?;

    let app = App::new(s, "fulldisk");
    app.write("Procfile", "static: public\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\n")).write("public/index.html", "full one");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "full one")?;

    // 2 MB that do not compress (git's objects live elsewhere, on the real disk).
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: String = (0..2_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    app.write("public/big.txt", &noise).write("public/index.html", "full two");
    app.commit("too big for the disk")?;
    let watch = Watch::start(s, host, &["full one"]);
    let out = app.push("main");
    let (requests, bad, samples) = watch.finish();
    expect_text(&out.all(), "No space left on device", "the push onto a full disk")?;
    expect_text(&out.all(), "still serving", "the push onto a full disk")?;
    serves_now(s, host, "/", "full one")?;
    let left = half_written(s);
    let in_mount: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect())
        .unwrap_or_default();
    println!("    full disk: 1 fault injected (ENOSPC in releases/); {requests} requests during it, {bad} not served by the live release");
    if bad > 0 {
        return Err(format!("{bad} of {requests} requests failed during the full-disk deploy: {samples:?}"));
    }
    if !left.is_empty() || !in_mount.is_empty() {
        return Err(format!("half-written files after the full disk: {left:?} {in_mount:?}"));
    }

    // Room again: the next push deploys.
    app.remove("public/big.txt").write("public/index.html", "full three");
    app.commit("fits again")?;
    app.deploy("main")?;
    serves(s, host, "/", "full three")?;
    // config:set of a value that fits in ENV but not in LIVE_ENV as well:
    // the change is undone, the app keeps its config and keeps serving.
    let before = ssh(s, "config fulldisk", None).ok("config fulldisk")?.stdout;
    let out = ssh(s, &format!("config:set fulldisk INJ_BIG={}", "b".repeat(40_000)), None);
    out.fails_with("config:set onto a full disk", "No space left on device")?;
    expect_text(&out.all(), "undone", "config:set onto a full disk")?;
    let after = ssh(s, "config fulldisk", None).ok("config fulldisk")?.stdout;
    if before != after {
        return Err(format!("the refused config:set changed the config:\n{before}\n---\n{after}"));
    }
    serves_now(s, host, "/", "full three")?;
    let left = half_written(s);
    if !left.is_empty() {
        return Err(format!("half-written files after config:set onto a full disk: {left:?}"));
    }
    println!("    full disk: 1 more fault injected (ENOSPC in envs/ during config:set)");

    // The disks go away; destroy removes what is left of the app.
    drop(env_mount);
    drop(mount);
    ssh(s, "destroy fulldisk", None).ok("destroy fulldisk")?;
    Ok(())
}

/// nginx, then the uWSGI emperor, down during a deploy: the push says so,
/// and once they are back the new release is served.
pub fn daemons_down_during_deploy(s: &Server) -> Result<(), String> {
    let host = "daemons.example.test";
    let every_app = what_every_app_serves(s, "daemons");
    let app = probe_app(s, "daemons", host, "daemons one");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "daemons one")?;

    // nginx down: the new server block cannot be loaded.
    s.stop_nginx();
    app.write("ENV", &format!("NGINX_SERVER_NAME={host} daemons2.example.test\nPAGE=daemons two\n"));
    app.commit("a second name")?;
    let out = app.push("main");
    let resumed = s.resume_nginx();
    resumed?;
    expect_text(&out.all(), "nginx could not be updated", "the push with nginx down")?;
    expect_text(&out.all(), "deploy daemons", "the push with nginx down (what to do)")?;
    serves(s, host, "/", "daemons two")?;
    serves(s, "daemons2.example.test", "/", "daemons two")?;
    // What the push said to do once nginx is back: the chain runs to its end.
    ssh(s, "deploy daemons", None).ok("ssh deploy daemons (after nginx is back)")?;
    serves(s, "daemons2.example.test", "/", "daemons two")?;

    // The emperor down: the new workers cannot start; the push says so at
    // once and the release that was live stays live.
    wait_drained(s, "daemons")?;
    s.stop_emperor();
    app.write("ENV", &format!("NGINX_SERVER_NAME={host}\nPAGE=daemons three\n"));
    app.commit("while the emperor is down")?;
    let out = app.push("main");
    let resumed = s.resume_emperor();
    resumed?;
    expect_text(&out.all(), "the uWSGI emperor is not running", "the push with the uWSGI emperor down")?;
    expect_text(&out.all(), "still serving", "the push with the uWSGI emperor down")?;
    // Said at once: refused before a new worker was started, not after a health check gave up.
    expect_text(&out.all(), "cannot start", "the push with the uWSGI emperor down")?;
    if out.all().contains("health check") {
        return Err(format!("the push with the emperor down waited for a health check:\n{}", indent(&out.all())))
    }
    // Back: the live release's workers again, then the next push goes live.
    serves(s, host, "/", "daemons two").map_err(|e| format!("{e}\nafter the push:\n{}", indent(&out.all())))?;
    app.write("ENV", &format!("NGINX_SERVER_NAME={host}\nPAGE=daemons four\n"));
    app.commit("the emperor is back")?;
    app.deploy("main")?;
    serves(s, host, "/", "daemons four")?;
    let errors = serve_every_app(s, &every_app);
    println!("    daemons down: 2 faults injected (nginx stopped, emperor stopped)");
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}

/// After deploys and config changes (one with a permissive umask): ENV,
/// LIVE_ENV, resolved environments, keys and certificates are 0600 and
/// nothing under ~/.piku (or ~/.ssh) is world-writable.
pub fn file_modes(s: &Server) -> Result<(), String> {
    let host = "modes.example.test";
    let app = probe_app(s, "modes", host, "modes one");
    // A worker writes a file and a directory: the app's own files follow the same rule.
    app.write("Procfile", "web: python3 app.py\nworker: sh -c 'mkdir -p $DATA_ROOT/by-worker; date > $DATA_ROOT/by-worker/file; exec sleep 1000'\n");
    app.commit("first")?;
    app.deploy("main")?;
    ssh(s, "config:set modes INJ_SECRET=hunter2", None).ok("config:set")?;
    serves(s, host, "/", "modes one")?;
    // A deploy run from a shell with umask 000 must not leave anything
    // world-writable: the lock file, for one, is made again by the hook.
    // (A deploy while the previous colour drains fails its health check: see the report.)
    wait_drained(s, "modes")?;
    let lock = s.piku_root().join("locks/modes");
    std::fs::remove_file(&lock).map_err(|e| format!("remove {}: {e}", lock.display()))?;
    let tools = s.work.join("prefix/bin").display().to_string();
    run(&mut s.as_user(&["sh", "-c", &format!("umask 000; {tools}/piku deploy modes")]), None, crate::client::PUSH_TIMEOUT)
        .ok("piku deploy modes under umask 000")?;
    serves(s, host, "/", "modes one")?;
    let written = s.piku_root().join("data/modes/by-worker/file");
    crate::client::wait_for(Duration::from_secs(30), || if written.is_file() { Ok(()) } else { Err(format!("no {}", written.display())) })?;

    let mut wrong = Vec::new();
    let mut checked = 0;
    for base in [s.piku_root(), s.home().join(".ssh")] {
        for (rel, what) in snapshot(&base, &|_| false) {
            let path = base.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            checked += 1;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            let name = rel.rsplit('/').next().unwrap_or("");
            if mode & 0o002 != 0 {
                wrong.push(format!("{rel} is world-writable ({what})"));
            }
            // (an ENV inside a release tree is the repository's own file, as committed)
            let secret = (rel.starts_with("envs/") && matches!(name, "ENV" | "LIVE_ENV" | ".ENV.before"))
                || name == "authorized_keys"
                || (rel.starts_with("releases/") && rel.matches('/').count() == 2 && name.ends_with(".env"))
                // piku-nginx's keys and certificates (not a CA bundle inside an app's environment)
                || ((rel.starts_with("nginx/") || rel.starts_with("acme/")) && [".key", ".crt", ".pem"].iter().any(|x| name.ends_with(x)));
            // A secret is private by its own mode or by a private (0700) directory
            // on its way, as piku-nginx keeps lego's ACME state.
            let private_dir = path.ancestors().skip(1).take_while(|d| d.starts_with(&base) && *d != base).any(|d| {
                std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
            });
            if secret && meta.is_file() && mode & 0o077 != 0 && !private_dir {
                wrong.push(format!("{rel} is {mode:o}, expected 600"));
            }
        }
    }
    println!("    file modes: {checked} paths checked, {} wrong", wrong.len());
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join("\n")) }
}
