//! The swap, as piku-uwsgi runs it (its facts and names: lib swap.rs):
//! `--stage` starts a release's web-facing workers as a new generation,
//! beside whatever runs, and waits for their health check; `switch` (in
//! `piku-uwsgi <app>`) points nginx's stable sockets at them; `--retire`
//! stops older generations after their drain, each on its own.

use super::render::{Which, log_file, number, render_all};
use super::wanted_scaling;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::health::{self, Check, Target};
use piku::release::Release;
use piku::settings;
use piku::swap::{self, Generation};
use piku::vassals::{self, app_vassals, is_web_facing, parse_vassal, worker_label};
use piku::{AppName, Root, atomic, output};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn seconds(root: &Root, env: &Env, key: &str, default: u64) -> Result<Duration> {
    match settings::for_app(root, env, key)? {
        Some(v) => number(key, &v).map(|n| Duration::from_secs(n.parse().unwrap_or(default))),
        None => Ok(Duration::from_secs(default)),
    }
}

/// Where each web-facing worker of a generation answers: wsgi on its uWSGI
/// socket; HTTP workers on their port, then through their socket's relay.
fn targets(root: &Root, app: &AppName, env: &Env, g: u32, record: &Generation, wanted: &BTreeMap<String, String>) -> Vec<(String, Vec<Target>)> {
    let bind = env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1");
    let mut out = Vec::new();
    for name in wanted.keys() {
        let Some((kind, n, _)) = parse_vassal(app, name) else { continue };
        let socket = swap::worker_socket(root, app, &kind, n, g);
        let targets = match record.ports.get(&format!("{kind}.{n}")) {
            Some(port) => vec![health::tcp_target(bind, *port), Target::HttpSocket(socket)],
            None => vec![Target::UwsgiSocket(socket)],
        };
        out.push((name.clone(), targets));
    }
    out
}

/// The last lines a worker logged since `offset`.
fn log_lines_since(path: &Path, offset: u64, lines: usize) -> Vec<String> {
    let text = fs::read(path).unwrap_or_default();
    let start = (offset as usize).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]).into_owned();
    let mut all: Vec<String> = text.lines().map(str::to_string).collect();
    // uWSGI's start-up banner says nothing about the app: skip it.
    if let Some(i) = all.iter().position(|l| l.contains("uWSGI master process")).filter(|i| i + 1 < all.len()) {
        all.drain(..=i);
    }
    all[all.len().saturating_sub(lines)..].to_vec()
}

/// `--stage`: start the release's web-facing workers as a new generation
/// (new names, new ports, new sockets), beside the live ones and any that
/// still drain, and wait until each answers. Nothing live is touched; on
/// failure the new workers are stopped again and their last log lines shown.
pub fn stage(root: &Root, rel: &Release) -> Result<()> {
    let app = &rel.app;
    let env = envfile::read_literal(&rel.fact_file("env"))?
        .ok_or_else(|| Error::new(format!("release {} of '{app}' has no resolved environment; run piku-config first", rel.id)))?;
    let scaling = wanted_scaling(root, rel)?;
    let procfile = rel.procfile()?;
    let web: Vec<(String, u32)> =
        procfile.workers().filter(|w| is_web_facing(&w.kind)).map(|w| (w.kind.clone(), scaling.get(&w.kind).copied().unwrap_or(1))).collect();
    if web.is_empty() {
        return Ok(());
    }
    if !swap::per_release(&env) {
        output::step(format!("The web workers of '{app}' restart in place after the switch (PORT is pinned, or it is not behind nginx)"));
        return Ok(());
    }
    // Without the emperor no new worker can start: say so now, not after the health check's timeout.
    if let Some(why) = super::emperor_down(root) {
        return Err(Error::new(format!("{why}; the new workers of '{app}' cannot start, and the live release keeps its workers")));
    }
    let g = swap::allocate(root, app)?;
    let mut record = Generation { release: rel.id.clone(), ports: BTreeMap::new() };
    for (kind, count) in web.iter().filter(|(k, _)| k != "wsgi") {
        for n in 1..=*count {
            let taken: Vec<u16> = record.ports.values().copied().collect();
            record.ports.insert(format!("{kind}.{n}"), swap::free_port(root, &taken)?);
        }
    }
    swap::write(root, app, g, &record)?;
    let wanted = render_all(root, rel, &env, &scaling, Some((g, &record)), Which::WebFacing)?;
    let timeout = seconds(root, &env, "PIKU_HEALTHCHECK_TIMEOUT", 30)?;
    let check_off = settings::for_app(root, &env, "PIKU_HEALTHCHECK")?.is_some_and(|v| matches!(v.to_lowercase().as_str(), "off" | "false" | "0" | "no"));
    let (enabled, available) = (root.dir("uwsgi-enabled"), root.dir("uwsgi-available"));
    let log_dir = root.log_dir(app);
    piku::paths::create_private_dir(&log_dir)?;
    for (name, text) in &wanted {
        atomic::write_file(&available.join(name), text.as_bytes(), piku::vassals::VASSAL_MODE)?;
        atomic::write_file(&enabled.join(name), text.as_bytes(), piku::vassals::VASSAL_MODE)?;
        output::step(format!("Spawning {app}:{} (release {}) beside the live workers", worker_label(app, name), rel.id));
    }
    piku::fault::point("after-spawn");
    if check_off {
        output::warn(format!("PIKU_HEALTHCHECK is off: '{app}' switches to its new workers without checking them"));
        return Ok(());
    }
    let check = Check {
        path: settings::for_app(root, &env, "PIKU_HEALTHCHECK_PATH")?,
        host: env
            .get("NGINX_SERVER_NAME")
            .and_then(|n| n.split([',', ' ']).find(|h| !h.is_empty() && !h.contains(['*', '~'])))
            .unwrap_or("localhost")
            .to_string(),
    };
    let started = Instant::now();
    let deadline = started + timeout;
    for (name, targets) in targets(root, app, &env, g, &record, &wanted) {
        for target in &targets {
            let status = match health::wait_healthy(target, &check, deadline) {
                Ok(status) => status,
                Err(why) => return Err(unstage(root, rel, g, &wanted, &name, &why, timeout)),
            };
            if std::ptr::eq(target, targets.last().unwrap_or(target)) {
                output::step(format!(
                    "{app}:{} answers {} with HTTP {status} ({:.1} s)",
                    worker_label(app, &name),
                    check.request_path(),
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    }
    Ok(())
}

/// A generation that failed its check: stop its workers, forget it, say why.
fn unstage(root: &Root, rel: &Release, g: u32, wanted: &BTreeMap<String, String>, name: &str, why: &str, timeout: Duration) -> Error {
    let app = &rel.app;
    for staged in wanted.keys() {
        let _ = atomic::remove_file(&root.dir("uwsgi-enabled").join(staged));
        piku::fault::point("during-unstage");
        let _ = atomic::remove_file(&root.dir("uwsgi-available").join(staged));
    }
    let _ = swap::remove(root, app, g);
    output::error(format!("{app}:{} failed its health check within {} s: {why}", worker_label(app, name), timeout.as_secs()));
    let log = log_file(root, app, &worker_label(app, name));
    let lines = log_lines_since(&log, 0, 20);
    if lines.is_empty() {
        output::error(format!("it logged nothing ({})", log.display()));
    } else {
        output::error(format!("its last log lines ({}):", log.display()));
        for line in lines {
            output::detail(line);
        }
    }
    Error::new(format!("release {} of '{app}' did not become healthy: rolled back, its workers are stopped and the live release keeps serving", rel.id))
}

/// The generation `piku-uwsgi <app>` makes live: the newest one staged for
/// the live release, else the live one.
pub fn chosen(root: &Root, app: &AppName, rel: &Release) -> Result<Option<(u32, Generation)>> {
    let live = swap::live(root, app)?;
    for g in swap::generations(root, app)?.into_iter().rev() {
        let Some(record) = swap::read(root, app, g)? else { continue };
        if Some(g) == live || (record.release == rel.id && live.is_none_or(|l| g > l)) {
            return Ok(Some((g, record)));
        }
    }
    Ok(None)
}

/// Point nginx's stable socket of each web-facing worker at generation `g`'s.
pub fn switch(root: &Root, app: &AppName, g: u32, wanted: &BTreeMap<String, String>) -> Result<()> {
    swap::set_live(root, app, g)?;
    piku::fault::point("mid-switch");
    for name in wanted.keys() {
        let Some((kind, n, Some(_))) = parse_vassal(app, name) else { continue };
        let link = swap::stable_socket(root, app, &kind, n);
        let target = swap::worker_socket(root, app, &kind, n, g);
        let target = Path::new(target.file_name().unwrap_or_default());
        if fs::read_link(&link).ok().as_deref() != Some(target) {
            atomic::replace_symlink(target, &link)?;
            output::step(format!("nginx now reaches {app}:{kind}.{n} through generation {g}"));
        }
    }
    piku::fault::point("after-switch");
    Ok(())
}

/// A web-facing vassal of a generation older than `live` (or of an older
/// version's colours): it drains, then stops.
fn is_older(app: &AppName, name: &str, live: u32) -> bool {
    match parse_vassal(app, name) {
        Some((kind, _, Some(tag))) => is_web_facing(&kind) && swap::parse_tag(&tag).is_none_or(|g| g < live),
        _ => false,
    }
}

/// `--retire`: the web workers of generations older than the live one finish
/// their requests (PIKU_DRAIN_SECONDS, then until nginx's workers from before
/// a reload are gone), then stop; then their sockets and records go. Each
/// run stops what was older when it started: several may run at once.
pub fn retire(root: &Root, app: &AppName) -> Result<()> {
    let Some(live) = swap::live(root, app)? else { return Ok(()) };
    let enabled = root.dir("uwsgi-enabled");
    let old: Vec<String> = app_vassals(root, app, &enabled)?.into_iter().filter(|n| is_older(app, n, live)).collect();
    let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    if !old.is_empty() {
        let drain = seconds(root, &env, "PIKU_DRAIN_SECONDS", 3)?;
        let labels: Vec<String> = old.iter().map(|n| worker_label(app, n)).collect();
        say(root, app, format!("Draining {} of '{app}' for {} s (generation {live} is live)", labels.join(", "), drain.as_secs()));
        piku::fault::point("during-drain");
        std::thread::sleep(drain);
        // nginx workers from before a reload finish their requests (to the
        // previous workers) before they exit: wait for them, bounded.
        let limit = seconds(root, &env, "PIKU_STOP_TIMEOUT", 30)?;
        let deadline = Instant::now() + limit;
        while piku::nginx_workers::any_retiring() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for name in &old {
            atomic::remove_file(&enabled.join(name))?;
            atomic::remove_file(&root.dir("uwsgi-available").join(name))?;
        }
        // The emperor stops each worker: wait until their masters are gone.
        let titles: Vec<String> = labels.iter().map(|l| format!("{app}:{l}")).collect();
        let deadline = Instant::now() + limit;
        while vassals::running_workers().iter().any(|t| titles.contains(t)) {
            if Instant::now() >= deadline {
                say(root, app, format!("{} of '{app}' still run {} s after they were stopped", labels.join(", "), limit.as_secs()));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        say(root, app, format!("Stopped {} of '{app}'", labels.join(", ")));
    }
    forget_stopped(root, app)
}

/// A step of the drain, on stderr and in the app's deploy log (`logs <app> deploy`).
fn say(root: &Root, app: &AppName, msg: String) {
    use std::io::Write;
    let path = root.log_dir(app).join("deploy.log");
    let line = format!("{} -----> {msg}\n", piku::release::utc_stamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())));
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
    output::step(msg);
}

/// Records, sockets and logs of generations older than the live one whose
/// workers are all gone, and stable links to them (left by a scale-down).
fn forget_stopped(root: &Root, app: &AppName) -> Result<()> {
    let Some(live) = swap::live(root, app)? else { return Ok(()) };
    let enabled = app_vassals(root, app, &root.dir("uwsgi-enabled"))?;
    let running = |g: u32| enabled.iter().any(|n| parse_vassal(app, n).and_then(|(_, _, t)| swap::parse_tag(&t?)) == Some(g));
    let oldest_kept = swap::generations(root, app)?.into_iter().filter(|g| *g < live && running(*g)).min().unwrap_or(live);
    for g in swap::generations(root, app)? {
        if g < live && !running(g) {
            swap::remove(root, app, g)?;
        }
    }
    // A stopped generation's vassal left in uwsgi-available (a rollback of a
    // failed stage that was itself stopped after disabling it).
    let available = root.dir("uwsgi-available");
    for name in app_vassals(root, app, &available)? {
        if parse_vassal(app, &name).and_then(|(_, _, t)| swap::parse_tag(&t?)).is_some_and(|g| g < live && !running(g)) {
            atomic::remove_file(&available.join(&name))?;
        }
    }
    // Sockets of stopped generations, links to them; logs of all but the
    // last generation before the oldest still running.
    let tag_of = |file: &str, suffix: &str| -> Option<u32> {
        let rest = file.strip_prefix(&format!("{app}_"))?.strip_suffix(suffix)?;
        swap::parse_tag(rest.rsplit('.').next()?)
    };
    let nginx = root.dir("nginx");
    let longer = vassals::longer_apps(root, app);
    for file in list(&nginx).into_iter().filter(|f| vassals::is_apps_file(&longer, app, f) || *f == format!("{app}.sock")) {
        let path = nginx.join(&file);
        let stopped = |g: u32| g < live && !running(g);
        if tag_of(&file, ".sock").is_some_and(stopped) {
            atomic::remove_file(&path)?;
        } else if let Ok(target) = fs::read_link(&path) {
            // A stable link to a stopped generation (an instance scaled away).
            if tag_of(&target.to_string_lossy(), ".sock").is_some_and(stopped) {
                atomic::remove_file(&path)?;
            }
        }
    }
    let logs = root.log_dir(app);
    for file in list(&logs) {
        let label = file.trim_end_matches(".old").trim_end_matches(".log");
        if vassals::parse_worker_id(label).and_then(|(_, _, t)| swap::parse_tag(&t?)).is_some_and(|g| g + 1 < oldest_kept && g < live) {
            atomic::remove_file(&logs.join(&file))?;
        }
    }
    Ok(())
}

fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}
