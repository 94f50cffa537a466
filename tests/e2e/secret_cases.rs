//! Secrets (issue 19 item 5): a value set with `config:set` over real ssh,
//! deployed under the real emperor, is in no process's argv (sshd and the
//! emperor traced with strace, every process they start followed), and every
//! file under ~/.piku that holds it (the worker's log included) is 0600 or
//! inside a 0700 directory: another user (www-data, nginx's, is the piku
//! user's group; nobody) cannot read it.

use crate::client::{App, COMMAND_TIMEOUT, indent, run, serves, ssh, wait_for};
use crate::server::Server;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn pid_in(file: &Path) -> Result<u32, String> {
    std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse().ok()).ok_or_else(|| format!("no pid in {}", file.display()))
}

/// Is `pid` traced now (TracerPid in /proc/<pid>/status)?
fn traced(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim() != "0")))
        .unwrap_or(false)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => files_under(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0)
}

pub fn secret_canary(s: &Server) -> Result<(), String> {
    let host = "canary.example.test";
    let canary = format!("canary-{}-0f5e", std::process::id());
    let app = App::new(s, "canary");
    app.write("Procfile", "web: python3 -m http.server $PORT\nworker: sh -c 'echo the worker has $SECRET; exec sleep 1000'\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n"))
        .write("index.html", "canary page\n");
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "canary page")?;

    // Trace every exec of sshd's sessions, and of every process of the piku
    // user (the emperor, and the vassals it already runs: a vassal reloads
    // in place, so following the emperor's new children is not enough).
    let sshd = pid_in(&s.work.join("ssh/sshd.pid"))?;
    let emperor = pid_in(&s.work.join("run/emperor.pid"))?;
    let (uid, _) = crate::server::passwd_ids().ok_or("the piku user has no passwd entry")?;
    let mut pids = vec![sshd, emperor];
    for e in std::fs::read_dir("/proc").map_err(|e| format!("read /proc: {e}"))?.flatten() {
        use std::os::unix::fs::MetadataExt;
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>()
            && e.metadata().is_ok_and(|m| m.uid() == uid)
            && !pids.contains(&pid)
        {
            pids.push(pid);
        }
    }
    let trace = s.work.join("canary.execve");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o"])
        .arg(&trace)
        .args(pids.iter().flat_map(|p| ["-p".to_string(), p.to_string()]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run strace (apt-get install strace): {e}"))?;
    let attached = wait_for(Duration::from_secs(10), || if traced(sshd) && traced(emperor) { Ok(()) } else { Err("strace has not attached".into()) });
    let set = attached.and_then(|()| ssh(s, &format!("config:set canary SECRET={canary}"), None).ok("config:set canary SECRET=..."));
    let log = s.piku_root().join("logs/canary/worker.1.log");
    let logged = set.and_then(|_| {
        wait_for(Duration::from_secs(30), || match std::fs::read_to_string(&log) {
            Ok(text) if text.contains(&canary) => Ok(()),
            _ => Err(format!("{} does not show the secret yet", log.display())),
        })
    });
    // Stop the tracer we started (by its pid); it detaches from every process.
    let _ = run(Command::new("kill").args(["-INT", &strace.id().to_string()]), None, COMMAND_TIMEOUT);
    let _ = strace.wait();
    logged?;
    serves(s, host, "/", "canary page")?;

    let execs = std::fs::read_to_string(&trace).map_err(|e| format!("read {}: {e}", trace.display()))?;
    if !execs.contains("piku-config") || !execs.contains("worker") {
        return Err(format!("the trace missed the config:set or the worker's start:\n{}", indent(&execs.chars().take(3000).collect::<String>())));
    }
    let mut problems: Vec<String> = execs.lines().filter(|l| l.contains(&canary)).map(|l| format!("in argv: {l}")).collect();

    let root = s.piku_root();
    let mut all = Vec::new();
    files_under(&root, &mut all);
    let mut holders = Vec::new();
    for p in &all {
        if std::fs::read(p).is_ok_and(|b| b.windows(canary.len()).any(|w| w == canary.as_bytes())) {
            let rel = p.strip_prefix(&root).unwrap_or(p).display().to_string();
            let private_dir = p.ancestors().skip(1).take_while(|d| *d != root).any(|d| mode(d) & 0o077 == 0);
            if mode(p) & 0o077 != 0 && !private_dir {
                problems.push(format!("{rel} holds the secret and is {:o}, in no 0700 directory", mode(p)));
            }
            holders.push(rel);
        }
    }
    for want in ["envs/canary/ENV", "envs/canary/LIVE_ENV", "uwsgi-enabled/canary_worker.1.ini", "logs/canary/worker.1.log"] {
        if !holders.iter().any(|h| h == want) {
            problems.push(format!("{want} does not hold the secret (the test would prove nothing): holders {holders:?}"));
        }
    }

    // Other users: nginx's (in the piku user's group) and nobody find nothing.
    for user in ["www-data", "nobody"] {
        let reads_static = run(Command::new("runuser").args(["-u", user, "--", "cat"]).arg(root.join("apps/canary/index.html")), None, COMMAND_TIMEOUT);
        let found = run(Command::new("runuser").args(["-u", user, "--", "grep", "-rlsF", &canary]).arg(&root), None, COMMAND_TIMEOUT);
        if user == "www-data" && !reads_static.stdout.contains("canary page") {
            problems.push(format!("www-data cannot read the app's static file, so the search below proves nothing: {}", reads_static.all()));
        }
        if !found.stdout.trim().is_empty() {
            problems.push(format!("{user} can read the secret in:\n{}", indent(&found.stdout)));
        }
    }
    println!("    secret canary: {} files hold it, {} execs traced, {} problems", holders.len(), execs.lines().filter(|l| l.contains("execve(")).count(), problems.len());
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}
