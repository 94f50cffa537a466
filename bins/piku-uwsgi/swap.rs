//! The blue/green swap of piku-uwsgi: `--stage` starts a release's
//! web-facing workers on the colour that is not live and waits for their
//! health check; `--retire` stops the previous colour after the drain.

use fs_err as fs;
use super::{Which, log_file, number, render_all, socket_path, wanted_scaling};
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::health::{self, Check, Target};
use piku::release::Release;
use piku::scaling;
use piku::settings;
use piku::vassals::{self, app_vassals, parse_vassal, worker_label};
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

/// Where each web-facing instance of a release answers, by vassal name.
fn targets(root: &Root, app: &AppName, env: &Env, wanted: &BTreeMap<String, String>, colour: Option<&str>) -> Result<Vec<(String, Target)>> {
    let bind = env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1");
    let behind_nginx = env.get("NGINX_SERVER_NAME").is_some_and(|n| !n.trim().is_empty());
    let ports = match colour {
        Some(c) => scaling::read_colour_ports(root, app, c)?,
        None => scaling::read_web_ports(root, app)?,
    };
    let mut out = Vec::new();
    for name in wanted.keys() {
        let Some((kind, n, _)) = parse_vassal(app, name) else { continue };
        let target = if kind == "wsgi" && behind_nginx {
            Target::UwsgiSocket(socket_path(root, app, colour))
        } else {
            let port = if n > 1 { ports.get(&n).copied() } else { env.get("PORT").and_then(|p| p.parse().ok()) };
            let port = port.ok_or_else(|| Error::new(format!("{app}:{} has no port", worker_label(app, name))))?;
            health::tcp_target(bind, port)
        };
        out.push((name.clone(), target));
    }
    Ok(out)
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

/// `--stage`: start the release's web-facing workers on the colour that is
/// not live, beside the live ones, and wait until each answers HTTP. The
/// live workers and nginx are not touched; on failure the new workers are
/// stopped again and their last log lines shown.
pub fn stage(root: &Root, rel: &Release) -> Result<()> {
    let app = &rel.app;
    let env = envfile::read_literal(&rel.fact_file("env"))?
        .ok_or_else(|| Error::new(format!("release {} of '{app}' has no resolved environment; run piku-config first", rel.id)))?;
    let colour = scaling::colour_of_port(root, app, env.get("PORT").map(String::as_str))?;
    let live_env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    let live_colour = scaling::colour_of_port(root, app, live_env.get("PORT").map(String::as_str))?;
    let wanted = render_all(root, rel, &env, &wanted_scaling(root, rel)?, colour, Which::WebFacing)?;
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(colour) = colour.filter(|c| live_colour != Some(c)) else {
        output::step(format!("The web workers of '{app}' restart in place after the switch (no second colour: see PORT, NGINX_SERVER_NAME, PIKU_AUTO_RESTART)"));
        return Ok(());
    };
    // Without the emperor no new worker can start: say so now, not after the health check's timeout.
    if let Some(why) = super::emperor_down(root) {
        return Err(Error::new(format!("{why}; the new workers of '{app}' cannot start, and the live release keeps its workers")));
    }
    let enabled = root.dir("uwsgi-enabled");
    let available = root.dir("uwsgi-available");
    let targets = targets(root, app, &env, &wanted, Some(colour))?;
    let timeout = seconds(root, &env, "PIKU_HEALTHCHECK_TIMEOUT", 30)?;
    let check_off = settings::for_app(root, &env, "PIKU_HEALTHCHECK")?.is_some_and(|v| matches!(v.to_lowercase().as_str(), "off" | "false" | "0" | "no"));

    // A worker of this colour from an earlier release must be gone first, or
    // the check would talk to it. (Its colour is not live: nginx does not use it.)
    let mut waited_for_old = false;
    for name in app_vassals(root, app, &enabled)? {
        if parse_vassal(app, &name).is_some_and(|(_, _, c)| c.as_deref() == Some(colour)) {
            output::step(format!("Stopping {app}:{}, left from an earlier release", worker_label(app, &name)));
            atomic::remove_file(&enabled.join(&name))?;
            waited_for_old = true;
        }
    }
    let deadline = Instant::now() + timeout;
    for (name, target) in &targets {
        let title = format!("{app}:{}", worker_label(app, name));
        while vassals::running_workers().contains(&title) || (matches!(target, Target::Tcp(..)) && !health::is_free(target)) {
            waited_for_old = true;
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "{target} is still in use (by an earlier {colour} worker of '{app}' or another program); the live release keeps serving. Try again in a moment"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if waited_for_old {
        // The emperor forgets a stopped vassal only at its next scans (every
        // second); a file of the same name published before that may be
        // taken for the old vassal and never started.
        std::thread::sleep(Duration::from_secs(2));
    }

    let log_dir = root.log_dir(app);
    piku::paths::create_private_dir(&log_dir)?;
    let mut offsets = BTreeMap::new();
    for (name, text) in &wanted {
        let log = log_file(root, app, &worker_label(app, name));
        offsets.insert(name.clone(), fs::metadata(&log).map(|m| m.len()).unwrap_or(0));
        atomic::write_file(&available.join(name), text.as_bytes(), vassals::VASSAL_MODE)?;
        atomic::write_file_newer(&enabled.join(name), text.as_bytes(), vassals::VASSAL_MODE)?;
        output::step(format!("Spawning {app}:{} (release {}) beside the live workers", worker_label(app, name), rel.id));
    }
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
    for (name, target) in &targets {
        match health::wait_healthy(target, &check, deadline) {
            Ok(status) => output::step(format!(
                "{app}:{} answers {} with HTTP {status} ({:.1} s)",
                worker_label(app, name),
                check.request_path(),
                started.elapsed().as_secs_f64()
            )),
            Err(why) => {
                for staged in wanted.keys() {
                    atomic::remove_file(&enabled.join(staged))?;
                    atomic::remove_file(&available.join(staged))?;
                }
                output::error(format!("{app}:{} failed its health check within {} s: {why}", worker_label(app, name), timeout.as_secs()));
                let log = log_file(root, app, &worker_label(app, name));
                let lines = log_lines_since(&log, offsets.get(name).copied().unwrap_or(0), 20);
                if lines.is_empty() {
                    output::error(format!("it logged nothing ({})", log.display()));
                } else {
                    output::error(format!("its last log lines ({}):", log.display()));
                    for line in lines {
                        output::detail(line);
                    }
                }
                return Err(Error::new(format!(
                    "release {} of '{app}' did not become healthy: rolled back, its workers are stopped and the live release keeps serving",
                    rel.id
                )));
            }
        }
    }
    Ok(())
}

/// `--retire`: after the drain (PIKU_DRAIN_SECONDS, then until nginx's
/// workers from before the reload are gone, at most 30 s more), stop the web
/// workers the live release does not want.
pub fn retire(root: &Root, app: &AppName) -> Result<()> {
    let enabled = root.dir("uwsgi-enabled");
    let wanted = |root: &Root| -> Result<BTreeMap<String, String>> {
        let rel = Release::live_or_err(root, app)?;
        let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
        let colour = scaling::colour_of_port(root, app, env.get("PORT").map(String::as_str))?;
        render_all(root, &rel, &env, &wanted_scaling(root, &rel)?, colour, Which::All)
    };
    let old = |wanted: &BTreeMap<String, String>| -> Result<Vec<String>> {
        Ok(app_vassals(root, app, &enabled)?.into_iter().filter(|n| !wanted.contains_key(n)).collect())
    };
    if old(&wanted(root)?)?.is_empty() {
        return Ok(());
    }
    let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    let drain = seconds(root, &env, "PIKU_DRAIN_SECONDS", 3)?;
    output::step(format!("Draining the previous workers of '{app}' for {} s", drain.as_secs()));
    std::thread::sleep(drain);
    // nginx workers from before the reload finish their requests (to the
    // previous workers) before they exit: wait for them, a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while piku::nginx_workers::any_retiring() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    for name in old(&wanted(root)?)? {
        output::step(format!("Stopping {app}:{}", worker_label(app, &name)));
        atomic::remove_file(&enabled.join(&name))?;
        atomic::remove_file(&root.dir("uwsgi-available").join(&name))?;
    }
    Ok(())
}

