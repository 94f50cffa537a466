//! piku-uwsgi: the app's workers, as uWSGI vassals under the emperor. Its
//! modes (check, stage, publish, restart, retire, stop, start, destroy, ps,
//! scale, logs, setup) are the subcommands in piku-uwsgi/args.rs;
//! `piku-uwsgi --help` and `piku-uwsgi <mode> --help` print their help.
//!
//! A vassal is written to uwsgi-available/ and published by an atomic rename
//! into uwsgi-enabled/, which the emperor watches (names: lib vassals.rs; the
//! generations of web-facing workers: lib swap.rs, and piku-uwsgi/swap.rs for
//! stage, switch and retire).
//!
//! Settings (the app's ENV, else $PIKU_ROOT/settings): PIKU_HEALTHCHECK_TIMEOUT
//! (seconds, default 30), PIKU_HEALTHCHECK_PATH (a path that must answer 2xx or
//! 3xx; default: any answer below 500 for /), PIKU_HEALTHCHECK=off,
//! PIKU_DRAIN_SECONDS (how long an older generation keeps running after the
//! switch, for requests in flight; default 3), PIKU_STOP_TIMEOUT (how long to
//! wait for nginx's old workers, and for stopped workers to exit; default 30).

use fs_err as fs;
use piku::envfile;
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::scaling::{self, read_scaling};
use piku::vassals::{app_vassals, is_web_facing, parse_vassal, worker_label};
use piku::{AppName, Root, atomic, output, templates};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[path = "piku-uwsgi/args.rs"]
mod args;
#[path = "piku-uwsgi/render.rs"]
mod render;
#[path = "piku-uwsgi/repair.rs"]
mod repair;
#[path = "piku-uwsgi/report.rs"]
mod report;
#[path = "piku-uwsgi/swap.rs"]
mod swap;
use args::{Args, Mode};
use render::{Which, render_all};
use swap::{retire, seconds, stage};

const VASSAL_TEMPLATE: &str = include_str!("../share/uwsgi/vassal.ini.j2");
const EMPEROR_TEMPLATE: &str = include_str!("../share/uwsgi/emperor.ini.j2");
const LOG_MAXSIZE: &str = "1048576";
/// uWSGI's Java classes (Debian's uwsgi-plugin-jvm), which a JWSGI app needs.
const JVM_UWSGI_JAR: &str = "/usr/share/java/uwsgi.jar";

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-uwsgi", || {
        let root = Root::from_env();
        match args.mode {
            Mode::Setup(_) => setup(&root),
            Mode::Check(a) => {
                let rel = Release::open(&root, &AppName::parse(&a.app)?, &a.release)?;
                let env = envfile::read_literal(&rel.fact_file("env"))?
                    .ok_or_else(|| Error::new(format!("release {} of '{}' has no resolved environment; run piku-config first", rel.id, rel.app)))?;
                // A generation's ports are handed out when it starts: check with placeholders.
                let generation = piku::swap::per_release(&env).then(|| placeholder_generation(&rel, &wanted_scaling(&root, &rel)?)).transpose()?;
                let vassals = render_all(&root, &rel, &env, &wanted_scaling(&root, &rel)?, generation.as_ref().map(|g| (0, g)), Which::All)?;
                if !vassals.is_empty() {
                    output::step(format!("Worker configuration of '{}' is valid ({} vassals)", rel.app, vassals.len()));
                }
                Ok(())
            }
            Mode::Repair(a) => repair::repair(&root, &release::existing_app(&root, &a.app)?),
            Mode::Retire(a) => retire(&root, &release::existing_app(&root, &a.app)?),
            Mode::Stage(a) => stage(&root, &Release::open(&root, &AppName::parse(&a.app)?, &a.release)?),
            Mode::Stop(a) => stop(&root, &release::existing_app(&root, &a.app)?),
            Mode::Destroy(a) => destroy(&root, &AppName::parse(&a.app)?),
            Mode::Ps(a) => report::ps(&root, &release::existing_app(&root, &a.app)?, a.json),
            Mode::Scale(a) => {
                let pairs: Vec<&str> = a.pairs.iter().map(String::as_str).collect();
                if pairs.is_empty() {
                    return Err(Error::usage("scale needs at least one kind=N; see piku-uwsgi scale --help"));
                }
                report::scale(&root, &release::existing_app(&root, &a.app)?, &pairs)
            }
            Mode::Logs(a) => report::logs(&root, &release::existing_app(&root, &a.app)?, a.kind.as_deref(), a.lines, !a.no_follow),
            Mode::Start(a) => start(&root, &release::existing_app(&root, &a.app)?),
            Mode::Restart(a) => publish(&root, &release::existing_app(&root, &a.app)?, true),
            Mode::Publish(a) => publish(&root, &release::existing_app(&root, &a.app)?, false),
        }
    })
}

/// The user and group this tool runs as, by name (uWSGI reads `0` as a name).
fn ids() -> (String, String) {
    (piku::paths::user_name(), piku::paths::group_name())
}

#[derive(Serialize)]
struct EmperorCtx {
    uwsgi_root: String,
    enabled_dir: String,
    log_maxsize: &'static str,
    uid: String,
    gid: String,
    threads: usize,
}

fn setup(root: &Root) -> Result<()> {
    let (uid, gid) = ids();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let ctx = EmperorCtx {
        uwsgi_root: root.dir("uwsgi").display().to_string(),
        enabled_dir: root.dir("uwsgi-enabled").display().to_string(),
        log_maxsize: LOG_MAXSIZE,
        uid,
        gid,
        threads: cores * 2,
    };
    let text = templates::render(root, "emperor.ini.j2", EMPEROR_TEMPLATE, &ctx)?;
    let path = root.dir("uwsgi").join("uwsgi.ini");
    atomic::write_file(&path, text.as_bytes(), 0o644)?;
    output::step(format!("Wrote the uWSGI emperor configuration {}", path.display()));
    Ok(())
}

/// SCALING for a release: the kinds of its Procfile, keeping counts the user chose.
fn wanted_scaling(root: &Root, rel: &Release) -> Result<BTreeMap<String, u32>> {
    let old = read_scaling(root, &rel.app)?;
    Ok(rel.procfile()?.workers().map(|w| (w.kind.clone(), old.get(&w.kind).copied().unwrap_or(1))).collect())
}

/// Placeholder ports for `--check` (a generation gets its own when it starts).
fn placeholder_generation(rel: &Release, scaling: &BTreeMap<String, u32>) -> Result<piku::swap::Generation> {
    let mut g = piku::swap::Generation { release: rel.id.clone(), ports: BTreeMap::new() };
    for w in rel.procfile()?.workers().filter(|w| is_web_facing(&w.kind) && w.kind != "wsgi") {
        for n in 1..=scaling.get(&w.kind).copied().unwrap_or(1) {
            g.ports.insert(format!("{}.{n}", w.kind), 1);
        }
    }
    Ok(g)
}

/// Make the workers match the live release: its generation of web-facing
/// workers live (the one just staged: nginx's stable sockets switched to
/// it), background workers replaced, older generations left to drain
/// (`--retire` stops them). Without generations (PORT pinned, or not behind
/// nginx) web workers restart in place. `force` republishes even when
/// PIKU_AUTO_RESTART is off (that is what `restart` means).
fn publish(root: &Root, app: &AppName, force: bool) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let env = envfile::read_literal(&root.live_env_file(app))?
        .ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV; run piku-config {app} first")))?;
    let procfile = rel.procfile()?;
    let scaling = wanted_scaling(root, &rel)?;
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), scaling[&w.kind])));
    if fs::read_to_string(root.scaling_file(app)).ok().as_deref() != Some(text.as_str()) {
        atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)?;
    }
    let per_release = piku::swap::per_release(&env) && procfile.workers().any(|w| is_web_facing(&w.kind));
    let mut generation = if per_release { swap::chosen(root, app, &rel)? } else { None };
    if per_release && generation.is_none() {
        // Nothing staged for the live release (its workers were never started here).
        stage(root, &rel)?;
        generation = swap::chosen(root, app, &rel)?;
    }
    if generation.is_none() {
        render::in_place_ports(root, app, &env, &scaling, true)?;
    }
    let wanted = render_all(root, &rel, &env, &scaling, generation.as_ref().map(|(g, r)| (*g, r)), Which::All)?;
    let log_dir = root.log_dir(app);
    piku::paths::create_private_dir(&log_dir)?;
    let available = root.dir("uwsgi-available");
    let enabled = root.dir("uwsgi-enabled");
    if let Some((g, _)) = &generation {
        for (name, text) in wanted.iter().filter(|(n, _)| parse_vassal(app, n).is_some_and(|(_, _, t)| t.is_some())) {
            // The live generation's workers, when they were stopped (`stop`).
            if !enabled.join(name).exists() {
                atomic::write_file(&available.join(name), text.as_bytes(), piku::vassals::VASSAL_MODE)?;
                atomic::write_file(&enabled.join(name), text.as_bytes(), piku::vassals::VASSAL_MODE)?;
                output::step(format!("Spawning {app}:{}", worker_label(app, name)));
            }
        }
        swap::switch(root, app, *g, &wanted)?;
    }

    let restart = force || envfile::flag(&env, "PIKU_AUTO_RESTART", true);
    for (name, text) in wanted.iter().filter(|(n, _)| parse_vassal(app, n).is_some_and(|(_, _, t)| t.is_none())) {
        if fs::read_to_string(available.join(name)).ok().as_deref() != Some(text.as_str()) {
            atomic::write_file(&available.join(name), text.as_bytes(), piku::vassals::VASSAL_MODE)?;
        }
        let live = enabled.join(name);
        let current = fs::read_to_string(&live).ok();
        if current.is_none() || (restart && current.as_deref() != Some(text.as_str())) {
            atomic::write_file_newer(&live, text.as_bytes(), piku::vassals::VASSAL_MODE)?;
            let verb = if current.is_some() { "Restarting" } else { "Spawning" };
            output::step(format!("{verb} {app}:{}", worker_label(app, name)));
        } else if force {
            // `restart` of an unchanged worker: touching it makes the emperor reload it.
            atomic::write_file_newer(&live, text.as_bytes(), piku::vassals::VASSAL_MODE)?;
            output::step(format!("Restarting {app}:{}", worker_label(app, name)));
        }
    }
    if !restart {
        output::step(format!("PIKU_AUTO_RESTART is off: running workers of '{app}' keep their configuration until 'restart'"));
    }
    // Older generations served until the switch: they drain, then stop
    // (`--retire`, which the hook runs in the background).
    let drain = seconds(root, &env, "PIKU_DRAIN_SECONDS", 3)?;
    let draining = |name: &str| {
        !drain.is_zero() && parse_vassal(app, name).is_some_and(|(k, _, t)| is_web_facing(&k) && t.is_some() && generation.is_some())
    };
    let mut drained = false;
    for dir in [&enabled, &available] {
        for name in app_vassals(root, app, dir)? {
            if wanted.contains_key(&name) {
                continue;
            }
            if draining(&name) {
                drained |= dir == &enabled;
                continue;
            }
            if dir == &enabled {
                output::step(format!("Stopping {app}:{}", worker_label(app, &name)));
            }
            atomic::remove_file(&dir.join(&name))?;
        }
    }
    if drained {
        output::step(format!("The previous web workers of '{app}' finish their requests, then stop (drain: {} s)", drain.as_secs()));
    }
    warn_if_no_emperor(root);
    Ok(())
}

/// The emperor binds uwsgi/uwsgi.sock (emperor.ini): when that socket is
/// there but nobody answers, published vassals wait until it runs again.
fn emperor_down(root: &Root) -> Option<String> {
    let sock = root.dir("uwsgi").join("uwsgi.sock");
    (sock.exists() && std::os::unix::net::UnixStream::connect(&sock).is_err()).then(|| {
        format!("the uWSGI emperor is not running (nothing answers on {}); start it (systemctl start uwsgi-piku)", sock.display())
    })
}

fn warn_if_no_emperor(root: &Root) {
    if let Some(why) = emperor_down(root) {
        output::warn(format!("{why}: the workers start when it does"));
    }
}

fn stop(root: &Root, app: &AppName) -> Result<()> {
    let enabled = root.dir("uwsgi-enabled");
    let names = app_vassals(root, app, &enabled)?;
    if names.is_empty() {
        output::step(format!("'{app}' has no running workers"));
    }
    for name in names {
        atomic::remove_file(&enabled.join(&name))?;
        output::step(format!("Stopped {app}:{}", worker_label(app, &name)));
    }
    Ok(())
}

/// `start`: the live release's workers; web-facing ones as a new
/// generation (never under the names of workers that may still be stopping).
fn start(root: &Root, app: &AppName) -> Result<()> {
    // A new generation is handed out under the deploy lock, as in a deploy.
    let _lock = piku::lock::AppLock::acquire(root, app)?;
    let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    if piku::swap::per_release(&env) {
        stage(root, &Release::live_or_err(root, app)?)?;
    }
    publish(root, app, false)?;
    drop(_lock);
    retire(root, app)
}

/// Remove every vassal of the app, its sockets, SCALING, PORTS, the swap's
/// records and its logs (on `destroy`).
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    for dir in ["uwsgi-enabled", "uwsgi-available"] {
        let dir = root.dir(dir);
        for name in app_vassals(root, app, &dir)? {
            atomic::remove_file(&dir.join(&name))?;
        }
    }
    // The sockets and links nginx reached the workers through; the swap's records.
    let nginx = root.dir("nginx");
    let longer = piku::vassals::longer_apps(root, app);
    for file in fs::read_dir(&nginx).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_else(|_| vec![]) {
        if file.ends_with(".sock") && (file == format!("{app}.sock") || piku::vassals::is_apps_file(&longer, app, &file)) {
            atomic::remove_file(&nginx.join(&file))?;
        }
    }
    let records = piku::swap::dir(root, app);
    if records.exists() {
        fs::remove_dir_all(&records)?;
    }
    atomic::remove_file(&root.scaling_file(app))?;
    atomic::remove_file(&scaling::ports_file(root, app))?;
    let logs = root.log_dir(app);
    if logs.exists() {
        fs::remove_dir_all(&logs)?;
    }
    Ok(())
}

