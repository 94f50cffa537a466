//! Crash consistency: the deploy chain killed (`kill -9` of its whole
//! process group, PIKU_FAULT_KILL=<point>, lib fault.rs) at every step, under
//! load; a simulated reboot; the emperor killed. After each: the app answered
//! throughout, one release serves (the tree, LIVE_ENV, the live generation
//! and nginx's socket agree), `piku repair` or the next push puts the rest
//! right, and no worker, socket or record of another generation is left.

use crate::client::{App, Out, PUSH_TIMEOUT, curl, git, indent, run, serves, ssh, wait_for};
use crate::server::{Server, USER};
use crate::zero_cases::{Load, check_load, settled, under_load};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

const HOST: &str = "crash.example.test";
const APP: &str = "crash-app";

#[derive(Clone, Copy, PartialEq, Debug)]
enum How {
    /// `git push` of a new release.
    Push,
    /// `piku rollback <app> <previous id>`.
    Rollback,
    /// `git push` of a release that fails its health check (the swap rolls it back).
    FailingPush,
}

struct Point {
    name: &'static str,
    how: How,
    /// `piku repair` before the next push (else the next push alone must put it right).
    repair: bool,
}

const fn p(name: &'static str, how: How, repair: bool) -> Point {
    Point { name, how, repair }
}

/// Every step of the chain (hooks/post-receive's `fault` lines, the swap's
/// `fault::point`s), in the order a deploy meets them.
const POINTS: &[Point] = &[
    p("before-receive", How::Push, false),
    p("before-build", How::Push, true),
    p("before-config", How::Push, false),
    p("before-release-task", How::Push, true),
    p("before-nginx-check", How::Push, false),
    p("before-uwsgi-check", How::Push, true),
    p("before-stage", How::Push, false),
    p("after-spawn", How::Push, true),
    p("after-spawn", How::Push, false),
    p("after-health", How::Push, true),
    p("after-health", How::Push, false),
    p("after-link", How::Push, true),
    p("after-link", How::Push, false),
    p("after-live-env", How::Push, true),
    p("after-live-env", How::Push, false),
    p("mid-switch", How::Push, true),
    p("mid-switch", How::Push, false),
    p("after-switch", How::Push, true),
    p("after-switch", How::Push, false),
    p("after-workers", How::Push, true),
    p("after-nginx", How::Push, false),
    p("during-drain", How::Push, true),
    p("during-drain", How::Push, false),
    p("during-unstage", How::FailingPush, true),
    p("during-unstage", How::FailingPush, false),
    p("after-link", How::Rollback, true),
    p("mid-switch", How::Rollback, false),
    p("after-switch", How::Rollback, true),
];

/// A threaded Python web app answering `version=<VERSION>`, with a
/// background worker; a VERSION starting with `broken` never answers.
fn crash_app<'s>(s: &'s Server, name: &str, host: &str, procfile_extra: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", &format!("web: python3 app.py\nworker: python3 -c 'import time; time.sleep(100000)'\n{procfile_extra}"))
        .write(
            "app.py",
            r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = open("VERSION").read().strip()
if VERSION.startswith("broken"):
    raise SystemExit("broken on purpose")
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("version=%s\n" % VERSION).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["BIND_ADDRESS"], int(os.environ["PORT"])), H).serve_forever()
"#,
        );
    set_version(&app, host, "v0");
    app
}

/// VERSION, and an ENV that differs from release to release (so LIVE_ENV
/// tells which release it belongs to).
fn set_version(app: &App, host: &str, v: &str) {
    app.write("VERSION", v)
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nPIKU_DRAIN_SECONDS=1\nPIKU_HEALTHCHECK_TIMEOUT=8\nCRASH_VERSION={v}\n"));
}

/// `git push` straight into the bare repo, its receive-pack run as the piku
/// user with PIKU_FAULT_KILL set, in a process group of its own (the one the
/// fault kills, as an ssh session's would be).
fn push_with_fault(s: &Server, app: &App, point: &str) -> Out {
    let repo = s.piku_root().join("repos").join(&app.name);
    let receive = format!(
        "runuser -u {user} -- env HOME={home} PATH={bin}:/usr/local/bin:/usr/bin:/bin USER={user} LOGNAME={user} PIKU_FAULT_KILL={point} git-receive-pack",
        user = *USER,
        home = s.home().display(),
        bin = s.work.join("prefix/bin").display(),
    );
    let mut cmd = git(&app.dir);
    cmd.args(["push", &format!("--receive-pack={receive}"), &repo.display().to_string(), "main"]).process_group(0);
    run(&mut cmd, None, PUSH_TIMEOUT)
}

fn rollback_with_fault(s: &Server, app: &str, id: &str, point: &str) -> Out {
    let fault = format!("PIKU_FAULT_KILL={point}");
    let mut cmd = s.as_user(&["env", &fault, "piku", "rollback", app, id]);
    cmd.process_group(0);
    run(&mut cmd, None, PUSH_TIMEOUT)
}

fn read(path: PathBuf) -> Result<String, String> {
    std::fs::read_to_string(&path).map(|t| t.trim().to_string()).map_err(|e| format!("{}: {e}", path.display()))
}

fn link_name(path: PathBuf) -> Result<String, String> {
    std::fs::read_link(&path).map(|t| t.file_name().unwrap_or_default().to_string_lossy().into_owned()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The version a release's tree answers with.
fn version_of(s: &Server, app: &str, id: &str) -> Result<String, String> {
    read(s.piku_root().join(format!("releases/{app}/{id}/VERSION")))
}

/// What serves now: nginx's stable socket -> a generation -> its release's VERSION.
fn serving(s: &Server, app: &str) -> Result<(u32, String, String), String> {
    let root = s.piku_root();
    let target = link_name(root.join(format!("nginx/{app}_web.1.sock")))?;
    let g: u32 = target
        .strip_suffix(".sock")
        .and_then(|t| t.rsplit('.').next())
        .and_then(|t| t.strip_prefix('g'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("nginx/{app}_web.1.sock leads to {target}, not a generation's socket"))?;
    let record = read(root.join(format!("workers/{app}/g{g}")))?;
    let id = record.lines().next().and_then(|l| l.strip_prefix("release ")).ok_or_else(|| format!("workers/{app}/g{g}: no release line"))?.trim().to_string();
    let version = version_of(s, app, &id)?;
    Ok((g, id, version))
}

/// One release throughout: apps/<app>, LIVE_ENV, the live generation, nginx's
/// socket and the answer all belong to the same release. Its version.
fn one_release(s: &Server, app: &str, host: &str) -> Result<String, String> {
    let root = s.piku_root();
    let id = link_name(root.join(format!("apps/{app}")))?;
    let live_env = read(root.join(format!("envs/{app}/LIVE_ENV")))?;
    let release_env = read(root.join(format!("releases/{app}/{id}.env")))?;
    if live_env != release_env {
        return Err(format!("LIVE_ENV is not release {id}'s environment"));
    }
    let live: u32 = read(root.join(format!("workers/{app}/live")))?.parse().map_err(|e| format!("workers/{app}/live: {e}"))?;
    let (g, served_id, version) = serving(s, app)?;
    if g != live || served_id != id {
        return Err(format!("apps/{app} is release {id} with generation {live} live, but nginx reaches generation {g} (release {served_id})"));
    }
    let (code, body) = curl(s, host, "/");
    if code != 200 || body.trim() != format!("version={version}") {
        return Err(format!("release {id} is version {version}, but {host} answered {code} {body:?}"));
    }
    Ok(version)
}

fn names(dir: PathBuf, prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default()
}

/// Is any piku-uwsgi of this app still at work (a drain, a retire)?
fn chain_running(app: &str) -> bool {
    piku::process::cmdlines().iter().any(|(_, c)| {
        let c = String::from_utf8_lossy(c);
        c.contains("piku-uwsgi\0") && c.ends_with(&format!("\0{app}\0"))
    })
}

/// The TCP ports the app's processes listen on: every process under one
/// of its uWSGI masters (titles `<app>:...`), its sockets found in /proc.
fn listening_ports(app: &str) -> BTreeSet<u16> {
    let procs: Vec<(String, String, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            pid.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_string();
            let title = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).into_owned();
            Some((pid, ppid, title))
        })
        .collect();
    let mut mine: BTreeSet<String> = procs.iter().filter(|(_, _, t)| t.starts_with(&format!("{app}:")) && t.contains(":uWSGI")).map(|(p, _, _)| p.clone()).collect();
    loop {
        let more: Vec<String> = procs.iter().filter(|(p, pp, _)| mine.contains(pp) && !mine.contains(p)).map(|(p, _, _)| p.clone()).collect();
        if more.is_empty() {
            break;
        }
        mine.extend(more);
    }
    let mut inodes = BTreeSet::new();
    for pid in &mine {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            if let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string)) {
                inodes.insert(inode);
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(port) = f[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// Nothing but the live generation's: vassals (enabled and available),
/// running workers, listening ports, records, sockets; nothing of the chain
/// still running.
fn no_leftovers(s: &Server, app: &str, extra_kinds: &[&str]) -> Result<(), String> {
    let root = s.piku_root();
    let uid = crate::server::passwd_ids().map_or(u32::MAX, |ids| ids.0);
    wait_for(Duration::from_secs(60), || {
        if chain_running(app) {
            return Err(format!("a piku-uwsgi of '{app}' still runs"));
        }
        let live = read(root.join(format!("workers/{app}/live")))?;
        let mut vassals: BTreeSet<String> = [format!("{app}_web.1.g{live}.ini"), format!("{app}_worker.1.ini")].into();
        let mut titles: BTreeSet<String> = [format!("{app}:web.1.g{live}"), format!("{app}:worker.1")].into();
        for k in extra_kinds {
            vassals.insert(format!("{app}_{k}.ini"));
            titles.insert(format!("{app}:{k}"));
        }
        for dir in ["uwsgi-enabled", "uwsgi-available"] {
            let found = names(root.join(dir), &format!("{app}_"));
            if found != vassals {
                return Err(format!("{dir}: {found:?}, expected {vassals:?}"));
            }
        }
        let running: BTreeSet<String> = piku::vassals::running_workers_of(uid).into_iter().filter(|t| t.starts_with(&format!("{app}:"))).collect();
        if running != titles {
            return Err(format!("running workers {running:?}, expected {titles:?}"));
        }
        let record = read(root.join(format!("workers/{app}/g{live}")))?;
        let want: BTreeSet<u16> = record.lines().filter_map(|l| l.split_once(':')?.1.trim().parse().ok()).collect();
        let ports = listening_ports(app);
        if ports != want || want.is_empty() {
            return Err(format!("the app's workers listen on ports {ports:?}, expected the live generation's {want:?}"));
        }
        let records = names(root.join(format!("workers/{app}")), "");
        let want: BTreeSet<String> = ["live".to_string(), "next".to_string(), format!("g{live}")].into();
        if records != want {
            return Err(format!("workers/{app}: {records:?}, expected {want:?}"));
        }
        let sockets: BTreeSet<String> = names(root.join("nginx"), &format!("{app}_")).into_iter().filter(|n| n.ends_with(".sock")).collect();
        let want: BTreeSet<String> = [format!("{app}_web.1.sock"), format!("{app}_web.1.g{live}.sock")].into();
        if sockets != want {
            return Err(format!("nginx/ sockets {sockets:?}, expected {want:?}"));
        }
        Ok(())
    })
}

/// One row of the table.
struct Row {
    point: &'static str,
    how: How,
    load: Load,
    served_after_crash: String,
    repair: String,
    next_push: String,
    leftovers: String,
    error: Option<String>,
}

/// The chain killed at each point under load: the old or the new release
/// answers throughout and after, `piku repair` (every other row) and the
/// next push succeed, and nothing is left of other generations.
pub fn crash_at_every_step(s: &Server) -> Result<(), String> {
    let app = crash_app(s, APP, HOST, "");
    let mut n = 1;
    set_version(&app, HOST, "c1");
    app.commit("c1")?;
    app.deploy("main")?;
    serves(s, HOST, "/", "version=c1")?;
    settled(s, HOST)?;
    // (release id, version) of the releases that went live, newest last.
    let mut good: Vec<(String, String)> = vec![(link_name(s.piku_root().join(format!("apps/{APP}")))?, "c1".to_string())];
    let mut rows = Vec::new();
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for point in POINTS {
        // `cargo test --test e2e -- crash_at_every_step after-link`: only those points.
        let chosen: Vec<&String> = words.iter().filter(|w| w.contains('-')).collect();
        if !chosen.is_empty() && !chosen.iter().any(|w| *w == point.name) {
            continue;
        }
        let (result, load, samples) = under_load(s, HOST, 2, || one_point(s, &app, point, &mut n, &mut good));
        let mut row = result;
        if let Err(e) = check_load(&format!("{} ({:?})", point.name, point.how), &load, &samples) {
            row.error.get_or_insert(e);
        }
        row.load = load;
        if let Some(e) = &row.error {
            println!("    {} ({:?}): FAILED: {}", point.name, point.how, e.lines().next().unwrap_or_default());
        }
        rows.push(row);
    }
    println!("    | fault point | how | requests (failed) | served after the crash | repair | next push | leftovers |");
    println!("    |---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "    | {} | {:?} | {} ({}) | {} | {} | {} | {} |",
            r.point,
            r.how,
            r.load.ok + r.load.failed(),
            r.load.failed(),
            r.served_after_crash,
            r.repair,
            r.next_push,
            r.leftovers
        );
    }
    let failed: Vec<String> = rows.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{} ({:?}): {e}", r.point, r.how))).collect();
    if failed.is_empty() { Ok(()) } else { Err(format!("{} of {} points failed:\n{}", failed.len(), rows.len(), indent(&failed.join("\n")))) }
}

fn one_point(s: &Server, app: &App, point: &Point, n: &mut u32, good: &mut Vec<(String, String)>) -> Row {
    let mut row = Row {
        point: point.name,
        how: point.how,
        load: Load::default(),
        served_after_crash: "-".into(),
        repair: if point.repair { "-".into() } else { "not run".into() },
        next_push: "-".into(),
        leftovers: "-".into(),
        error: None,
    };
    if let Err(e) = run_point(s, app, point, n, good, &mut row) {
        row.error = Some(e);
    }
    row
}

fn run_point(s: &Server, app: &App, point: &Point, n: &mut u32, good: &mut Vec<(String, String)>, row: &mut Row) -> Result<(), String> {
    let old = good.last().cloned().ok_or("no live release")?;
    let new = match point.how {
        How::Push | How::FailingPush => {
            *n += 1;
            let v = if point.how == How::FailingPush { format!("broken{n}") } else { format!("c{n}") };
            set_version(app, HOST, &v);
            app.commit(&v)?;
            let out = push_with_fault(s, app, point.name);
            if out.code == 0 && point.name != "during-drain" {
                return Err(format!("the push with PIKU_FAULT_KILL={} was not killed:\n{}", point.name, indent(&out.all())));
            }
            v
        }
        How::Rollback => {
            let (id, v) = good.get(good.len().wrapping_sub(2)).cloned().ok_or("no release to roll back to")?;
            let out = rollback_with_fault(s, APP, &id, point.name);
            if out.code == 0 {
                return Err(format!("the rollback with PIKU_FAULT_KILL={} was not killed:\n{}", point.name, indent(&out.all())));
            }
            v
        }
    };
    // The chain is dead (the drain's kill comes after the push returned).
    wait_for(Duration::from_secs(60), || if chain_running(APP) { Err("the chain still runs".to_string()) } else { Ok(()) })?;
    let (_, _, served) = serving(s, APP)?;
    let (code, body) = curl(s, HOST, "/");
    if code != 200 || body.trim() != format!("version={served}") {
        return Err(format!("nginx's socket leads to version {served}, but {HOST} answered {code} {body:?}"));
    }
    row.served_after_crash = if served == old.1 {
        "old".into()
    } else if served == new {
        "new".into()
    } else {
        return Err(format!("after the crash {served} serves, neither the old {} nor the new {new}", old.1));
    };
    if point.repair {
        let out = ssh(s, &format!("repair {APP}"), None).ok(&format!("ssh repair {APP}"))?;
        let all = out.all();
        let said: Vec<&str> = all.lines().filter(|l| l.contains(&format!("'{APP}': "))).map(str::trim).collect();
        row.repair = if said.iter().any(|l| l.contains("nothing to repair")) {
            "nothing to do".into()
        } else {
            format!("fixed: {}", said.iter().filter(|l| !l.contains("repaired (")).map(|l| l.split_once("': ").map_or(*l, |x| x.1)).collect::<Vec<_>>().join("; "))
        };
        let version = one_release(s, APP, HOST).map_err(|e| format!("after repair: {e}\n{}", indent(&out.all())))?;
        if version != old.1 && version != new {
            return Err(format!("after repair {version} serves"));
        }
        no_leftovers(s, APP, &[]).map_err(|e| format!("after repair: {e}"))?;
        // A second repair finds nothing.
        let again = ssh(s, &format!("repair {APP}"), None).ok(&format!("ssh repair {APP} (again)"))?;
        if !again.all().contains("nothing to repair") {
            return Err(format!("a second repair found more:\n{}", indent(&again.all())));
        }
    }
    *n += 1;
    let v = format!("c{n}");
    set_version(app, HOST, &v);
    app.commit(&v)?;
    let out = app.deploy("main")?;
    row.next_push = "ok".into();
    serves(s, HOST, "/", &format!("version={v}")).map_err(|e| format!("after the next push: {e}\n{}", indent(&out.all())))?;
    good.push((link_name(s.piku_root().join(format!("apps/{APP}")))?, v.clone()));
    let version = one_release(s, APP, HOST).map_err(|e| format!("after the next push: {e}"))?;
    if version != v {
        return Err(format!("after the next push {version} serves, not {v}"));
    }
    no_leftovers(s, APP, &[]).map_err(|e| format!("after the next push: {e}"))?;
    row.leftovers = "none".into();
    Ok(())
}

/// Every process of the piku user and every nginx process of the suite, `kill -9`.
fn kill_everything(s: &Server) -> Result<(), String> {
    let uid = crate::server::passwd_ids().map(|ids| ids.0).ok_or("no piku user")?;
    let nginx_master = read(s.work.join("nginx/nginx.pid"))?;
    let victims = || -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.parse::<u32>().is_err() {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let owned = entry.metadata().is_ok_and(|m| m.uid() == uid);
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            let (state, ppid) = (fields.first().copied().unwrap_or_default(), fields.get(1).copied().unwrap_or_default());
            // A zombie is dead already: killed, not yet reaped by a parent
            // that may never do it (an orphan's init here need not reap).
            if matches!(state, "Z" | "X") {
                continue;
            }
            if owned || pid == nginx_master || ppid == nginx_master {
                out.push(pid);
            }
        }
        out
    };
    // Until none is left: a master killed after one of its children may
    // have started another (nginx respawns its workers), as a power cut
    // would not let it.
    wait_for(Duration::from_secs(30), || {
        let left = victims();
        if left.is_empty() {
            return Ok(());
        }
        run(std::process::Command::new("kill").arg("-9").args(&left), None, Duration::from_secs(10));
        Err(format!("still alive after kill -9: {left:?}"))
    })
}

/// Every enabled vassal of `app` runs, exactly once.
fn all_enabled_run(s: &Server, app: &str) -> Result<(), String> {
    let enabled = names(s.piku_root().join("uwsgi-enabled"), &format!("{app}_"));
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (_, c) in piku::process::cmdlines() {
        let t = String::from_utf8_lossy(&c);
        if let Some(i) = t.find(":uWSGI master") {
            *counts.entry(t[..i].trim_end_matches('\0').to_string()).or_default() += 1;
        }
    }
    for name in &enabled {
        let title = format!("{app}:{}", name.strip_prefix(&format!("{app}_")).unwrap_or(name).trim_end_matches(".ini"));
        match counts.get(&title) {
            Some(1) => {}
            other => return Err(format!("{title} runs {} times, expected once", other.copied().unwrap_or(0))),
        }
    }
    if enabled.is_empty() {
        return Err(format!("'{app}' has no enabled workers"));
    }
    Ok(())
}

fn two_apps(s: &Server, prefix: &str) -> Result<Vec<(String, String)>, String> {
    let mut apps = Vec::new();
    for (i, extra) in ["cron1: */1 * * * * true\n", ""].iter().enumerate() {
        let name = format!("{prefix}{}", i + 1);
        let host = format!("{name}.example.test");
        let app = crash_app(s, &name, &host, extra);
        set_version(&app, &host, &format!("{name}-v1"));
        app.commit("v1")?;
        app.deploy("main")?;
        serves(s, &host, "/", &format!("version={name}-v1"))?;
        apps.push((name, host));
    }
    // Scaled: two web workers for the first app.
    ssh(s, &format!("ps:scale {}1 web=2", prefix), None).ok("ssh ps:scale web=2")?;
    for (name, host) in &apps {
        wait_for(Duration::from_secs(60), || if chain_running(name) { Err("its chain still runs".to_string()) } else { Ok(()) })?;
        settled(s, host)?;
    }
    Ok(apps)
}

/// Everything comes back after the apps' state before, compared by name.
fn comes_back(s: &Server, apps: &[(String, String)], before: &[BTreeSet<String>]) -> Result<(), String> {
    for ((name, host), vassals) in apps.iter().zip(before) {
        serves(s, host, "/", &format!("version={name}-v1")).map_err(|e| format!("'{name}' did not come back: {e}"))?;
        let now = names(s.piku_root().join("uwsgi-enabled"), &format!("{name}_"));
        if &now != vassals {
            return Err(format!("'{name}': enabled workers were {vassals:?}, now {now:?}"));
        }
        wait_for(Duration::from_secs(60), || all_enabled_run(s, name))?;
        one_release(s, name, host)?;
    }
    Ok(())
}

/// A simulated reboot: every worker, the emperor and nginx killed with -9,
/// then started as the system's units would: each app serves its live
/// release again, with its scaling, its background worker and its cron.
pub fn reboot_every_app_comes_back(s: &Server) -> Result<(), String> {
    let apps = two_apps(s, "crash-boot")?;
    let before: Vec<BTreeSet<String>> = apps.iter().map(|(n, _)| names(s.piku_root().join("uwsgi-enabled"), &format!("{n}_"))).collect();
    if !before[0].iter().any(|n| n.contains("_cron1.1")) || before[0].iter().filter(|n| n.contains("_web.")).count() != 2 {
        return Err(format!("expected two web workers and a cron before the reboot: {:?}", before[0]));
    }
    // Whatever happens, the daemons are started again: the cases after this
    // one need them.
    let killed = kill_everything(s).and_then(|()| {
        if curl(s, &apps[0].1, "/").0 == 200 { Err("an app still answered with every daemon killed".to_string()) } else { Ok(()) }
    });
    let resumed = s.resume_nginx().and_then(|()| s.resume_emperor());
    killed?;
    resumed?;
    comes_back(s, &apps, &before)
}

/// The emperor killed with -9 and started again: every app comes back,
/// each worker once (none left over from before, none missing).
pub fn emperor_kill_every_app_comes_back(s: &Server) -> Result<(), String> {
    let apps = two_apps(s, "crash-emp")?;
    let before: Vec<BTreeSet<String>> = apps.iter().map(|(n, _)| names(s.piku_root().join("uwsgi-enabled"), &format!("{n}_"))).collect();
    let pid = read(s.work.join("run/emperor.pid"))?;
    run(std::process::Command::new("kill").args(["-9", &pid]), None, Duration::from_secs(10)).ok("kill -9 the emperor")?;
    let pid_n: i32 = pid.parse().map_err(|_| format!("the emperor's pid file holds {pid:?}"))?;
    wait_for(Duration::from_secs(30), || if crate::server::alive(pid_n) { Err("the emperor is still alive".to_string()) } else { Ok(()) })?;
    s.resume_emperor()?;
    comes_back(s, &apps, &before)
}
