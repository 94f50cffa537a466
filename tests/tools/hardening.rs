//! Hardening, without the daemons: file modes whatever the umask, input the
//! pre-receive check refuses before a ref moves, and a deploy that says when
//! the uWSGI emperor is not there (the real faults are in tests/e2e).

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Every path under `dir` (not following symlinks).
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        out.push(p.clone());
        if meta.is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn a_deploy_under_umask_000_leaves_nothing_world_writable_and_secrets_0600() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=modes.example.test\n")]);
    s.push(&app, "modes", "main").ok();
    s.ssh("config:set modes --no-restart SECRET=hunter2").ok();
    // Made again under the umask below: the lock by the hook, the logs dir by piku-uwsgi.
    std::fs::remove_file(s.root().join("locks/modes")).unwrap();
    std::fs::remove_dir_all(s.root().join("logs/modes")).unwrap();
    let bin = s.dir.path().join("prefix/bin");
    let out = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" deploy modes"])
        .arg(bin.join("piku"))
        .env_clear()
        .env("HOME", s.home())
        .env("USER", "piku")
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut paths = Vec::new();
    walk(&s.root(), &mut paths);
    assert!(paths.iter().any(|p| p.ends_with("locks/modes")) && paths.iter().any(|p| p.ends_with("logs/modes")));
    for p in &paths {
        let meta = std::fs::symlink_metadata(p).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        assert_eq!(mode & 0o022, 0, "{} is {mode:o}", p.display());
    }
    for secret in ["envs/modes/ENV", "envs/modes/LIVE_ENV"] {
        let mode = std::fs::metadata(s.root().join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
}

#[test]
fn pre_receive_refuses_thousands_of_worker_kinds_and_a_self_doubling_env() {
    let s = Server::new();
    let many: String = (0..10_000).map(|i| format!("w{i}: sleep 1000\n")).collect();
    let app = GitApp::new(&[("Procfile", &many)]);
    let out = s.push(&app, "many", "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("at most 100"), "{}", out.stderr);
    assert_eq!(s.live_id("many"), None);
    assert!(!s.root().join("uwsgi-enabled/many_w0.1.ini").exists());

    let doubling: String = (0..40).map(|_| "A=$A$A$A$A\n").collect();
    let app = GitApp::new(&[("Procfile", "web: true\n"), ("ENV", &format!("A=xxxxxxxx\n{doubling}"))]);
    let out = s.push(&app, "doubling", "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("rejected") && out.stderr.contains("longer than"), "{}", out.stderr);
    assert_eq!(s.live_id("doubling"), None);
}

#[test]
fn a_deploy_says_when_the_uwsgi_emperor_is_not_running() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "worker: sleep 1000\n")]);
    // No emperor ever started (no socket): nothing to say.
    let out = s.push(&app, "lonely", "main").ok();
    assert!(!out.stderr.contains("emperor"), "{}", out.stderr);
    // The socket of an emperor that has gone: nobody answers.
    let sock = s.root().join("uwsgi/uwsgi.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = s.ssh("deploy lonely").ok();
    assert!(out.stderr.contains("the uWSGI emperor is not running"), "{}", out.stderr);
    assert!(s.root().join("uwsgi-enabled/lonely_worker.1.ini").exists(), "the vassal waits for the emperor");
    // A web app's new release cannot start beside the live one: refused at once.
    let web = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=w.example.test\n")]);
    let out = s.push(&web, "web", "main");
    assert!(out.stderr.contains("the uWSGI emperor is not running") && out.stderr.contains("cannot start"), "{}", out.stderr);
    // Refused before any new worker was written, so no health check waited for one.
    let staged: Vec<String> = std::fs::read_dir(s.root().join("uwsgi-enabled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("web_"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}\n{}", out.stderr);
    assert!(!out.stderr.contains("health check"), "{}", out.stderr);
    // One that answers: quiet again.
    std::fs::remove_file(&sock).unwrap();
    let _alive = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = s.ssh("deploy lonely").ok();
    assert!(!out.stderr.contains("emperor"), "{}", out.stderr);
}
