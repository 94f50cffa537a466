//! piku-uwsgi: the app's workers, as uWSGI vassals under the emperor.
//!
//!   piku-uwsgi <app>            render one vassal per worker from the live
//!                               release (Procfile + SCALING + LIVE_ENV) and
//!                               publish them into uwsgi-enabled/
//!   piku-uwsgi --check <app> <release-id>   render a staged release, publish nothing
//!   piku-uwsgi --stop|--start|--restart|--destroy <app>
//!   piku-uwsgi --ps <app> [--json]        worker counts and which workers run
//!   piku-uwsgi --scale <app> kind=N...    validate and store SCALING (not applied)
//!   piku-uwsgi --logs <app> [kind] [-n N] [--no-follow]
//!   piku-uwsgi --setup          write the emperor's uwsgi/uwsgi.ini
//!
//! A vassal is written to uwsgi-available/<app>_<kind>.<n>.ini and published
//! by an atomic rename into uwsgi-enabled/, which the emperor watches.

use piku::envfile::{self, Env};
use piku::error::{Error, IoContext, Result};
use piku::procfile;
use piku::release::{self, Release};
use piku::scaling::{self, read_scaling};
use piku::vassals::{app_vassals, vassal_name, worker_label};
use piku::{AppName, Root, atomic, output, syntax, templates};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

const VASSAL_TEMPLATE: &str = include_str!("../share/uwsgi/vassal.ini.j2");
const EMPEROR_TEMPLATE: &str = include_str!("../share/uwsgi/emperor.ini.j2");
const LOG_MAXSIZE: &str = "1048576";

fn main() -> ExitCode {
    output::run_main("piku-uwsgi", |args| {
        let root = Root::from_env();
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["--setup"] => setup(&root),
            ["--check", app, id] => {
                let rel = Release::open(&root, &AppName::parse(app)?, id)?;
                let env = envfile::read_literal(&rel.fact_file("env"))?
                    .ok_or_else(|| Error::new(format!("release {} of '{}' has no resolved environment; run piku-config first", rel.id, rel.app)))?;
                let vassals = render_all(&root, &rel, &env, &read_scaling(&root, &rel.app)?)?;
                if !vassals.is_empty() {
                    output::step(format!("Worker configuration of '{}' is valid ({} vassals)", rel.app, vassals.len()));
                }
                Ok(())
            }
            ["--stop", app] => stop(&root, &release::existing_app(&root, app)?),
            ["--destroy", app] => destroy(&root, &AppName::parse(app)?),
            ["--ps", app] => ps(&root, &release::existing_app(&root, app)?, false),
            ["--ps", app, "--json"] => ps(&root, &release::existing_app(&root, app)?, true),
            ["--scale", app, pairs @ ..] if !pairs.is_empty() => scale(&root, &release::existing_app(&root, app)?, pairs),
            ["--logs", app, rest @ ..] => logs(&root, &release::existing_app(&root, app)?, rest),
            ["--start", app] => start(&root, &release::existing_app(&root, app)?),
            ["--restart", app] => publish(&root, &release::existing_app(&root, app)?, true),
            [app] if !app.starts_with('-') => publish(&root, &release::existing_app(&root, app)?, false),
            _ => Err(Error::usage(
                "usage: piku-uwsgi <app> | --check <app> <release-id> | --stop|--start|--restart|--destroy <app> | --ps <app> [--json] | --scale <app> kind=N... | --logs <app> [kind] [-n N] [--no-follow] | --setup",
            )),
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

#[derive(Serialize)]
struct VassalCtx {
    placeholders: &'static [(&'static str, &'static str)],
    app: String,
    kind: String,
    instance: u32,
    chdir: String,
    uid: String,
    gid: String,
    max_requests: String,
    listen: String,
    processes: String,
    enable_threads: String,
    log_x_forwarded_for: String,
    log_maxsize: String,
    log_file: String,
    virtualenv: Option<String>,
    kind_settings: Vec<(String, String)>,
    include_settings: Vec<(String, String)>,
    unset_env: Vec<String>,
    env: Vec<(String, String)>,
}

/// Every vassal the release wants: file name -> contents.
fn render_all(root: &Root, rel: &Release, env: &Env, scaling: &BTreeMap<String, u32>) -> Result<BTreeMap<String, String>> {
    let procfile = rel.procfile()?;
    let ports = scaling::read_web_ports(root, &rel.app)?;
    let mut out = BTreeMap::new();
    for worker in procfile.workers().filter(|w| w.kind != "static") {
        let count = scaling.get(&worker.kind).copied().unwrap_or(1);
        for n in 1..=count {
            // Each web instance listens on its own port (PORTS); nginx balances them.
            let mut env = env.clone();
            if worker.kind == "web" && n > 1 {
                let port = ports.get(&n).ok_or_else(|| {
                    Error::new(format!("web instance {n} of '{}' has no port yet; run piku-config {} first", rel.app, rel.app))
                })?;
                env.insert("PORT".into(), port.to_string());
            }
            let name = vassal_name(&rel.app, &worker.kind, n);
            // A reloaded vassal keeps its old process environment (uWSGI
            // re-execs itself): unset what the running one had and this one drops.
            let running = std::fs::read_to_string(root.dir("uwsgi-enabled").join(&name)).unwrap_or_default();
            let removed: Vec<String> = running
                .lines()
                .filter_map(|l| l.strip_prefix("env = ")?.split_once('=').map(|(k, _)| k.to_string()))
                .filter(|k| !env.contains_key(k) && k != "PROC_TYPE")
                .collect();
            let text = render_vassal(root, rel, &worker.kind, &worker.command, n, &env, removed)?;
            out.insert(name, text);
        }
    }
    Ok(out)
}

fn render_vassal(root: &Root, rel: &Release, kind: &str, command: &str, n: u32, env: &Env, unset_env: Vec<String>) -> Result<String> {
    let app = &rel.app;
    let get = |k: &str, d: &str| env.get(k).cloned().unwrap_or_else(|| d.to_string());
    let (uid, gid) = ids();
    let mut ks: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| ks.push((k.to_string(), v));
    let quoted_cmd = syntax::uwsgi_value(&format!("the '{kind}' command of the Procfile"), command)?;
    if kind.starts_with("cron") {
        let spec = procfile::parse_cron(command).map_err(|e| Error::new(format!("Procfile '{kind}': {e}")))?;
        push("cron", syntax::uwsgi_value(&format!("the '{kind}' command of the Procfile"), &spec)?);
    } else if kind == "wsgi" || kind == "jwsgi" {
        push("module", quoted_cmd);
        push("threads", number("UWSGI_THREADS", &get("UWSGI_THREADS", "4"))?);
        if kind == "jwsgi" {
            push("plugin", "jvm".into());
            push("plugin", "jwsgi".into());
        } else {
            let py2 = get("PYTHON_VERSION", "3").starts_with('2');
            let suffix = if py2 { "python" } else { "python3" };
            push("plugin", suffix.into());
            if let Some(tasks) = env.get("UWSGI_ASYNCIO") {
                push("plugin", format!("asyncio_{suffix}"));
                push("async", number("UWSGI_ASYNCIO", tasks)?);
            } else if let Some(greenlets) = env.get("UWSGI_GEVENT") {
                push("plugin", format!("gevent_{suffix}"));
                push("gevent", number("UWSGI_GEVENT", greenlets)?);
            }
        }
        // Behind nginx: a unix socket nginx/<app>.sock; else plain HTTP on BIND_ADDRESS:PORT.
        if env.contains_key("NGINX_SERVER_NAME") {
            push("socket", root.dir("nginx").join(format!("{app}.sock")).display().to_string());
            push("chmod-socket", "664".into());
        } else {
            push("http-socket", listen_address(env)?);
        }
    } else if kind == "rwsgi" {
        push("module", quoted_cmd);
        push("threads", number("UWSGI_THREADS", &get("UWSGI_THREADS", "4"))?);
        push("plugin", "rack".into());
        push("plugin", "rbrequire".into());
        push("plugin", "post-buffering".into());
        // piku gives rack apps no listener; ours serves HTTP on BIND_ADDRESS:PORT for nginx.
        push("http-socket", listen_address(env)?);
    } else if kind == "php" {
        let docroot = rel_dir_in_app(root, app, command);
        let docroot = syntax::uwsgi_value("the 'php' docroot of the Procfile", &docroot)?;
        push("plugin", "0:php".into());
        push("http-socket", listen_address(env)?);
        push("check-static", docroot.clone());
        push("static-skip-ext", ".php".into());
        push("static-skip-ext", ".inc".into());
        push("static-index", "index.html".into());
        push("php-docroot", docroot);
        push("php-allowed-ext", ".php".into());
        push("php-index", "index.php".into());
    } else {
        // web, and any other kind: a daemon the vassal's master keeps alive.
        push("attach-daemon", quoted_cmd);
    }
    if kind == "web" || kind == "wsgi" {
        push(
            "log-format",
            r#"%%(addr) - %%(user) [%%(ltime)] "%%(method) %%(uri) %%(proto)" %%(status) %%(size) "%%(referer)" "%%(uagent)" %%(msecs)ms"#.into(),
        );
    }
    if let Some(idle) = env.get("UWSGI_IDLE") {
        number("UWSGI_IDLE", idle)?;
        push("idle", idle.clone());
        push("cheap", "true".into());
        push("die-on-idle", "true".into());
    }
    let mut worker_env: Vec<(String, String)> = Vec::new();
    for (k, v) in env.iter().chain([(&"PROC_TYPE".to_string(), &kind.to_string())]) {
        worker_env.push((k.clone(), syntax::uwsgi_value(k, v)?));
    }
    let virtualenv = env.get("VIRTUAL_ENV").filter(|v| {
        let p = Path::new(v.as_str());
        p.join("pyvenv.cfg").is_file() || p.join("bin/activate_this.py").is_file()
    });
    let ctx = VassalCtx {
        placeholders: syntax::UWSGI_PLACEHOLDERS,
        app: app.to_string(),
        kind: kind.to_string(),
        instance: n,
        chdir: root.app_dir(app).display().to_string(),
        uid,
        gid,
        max_requests: number("UWSGI_MAX_REQUESTS", &get("UWSGI_MAX_REQUESTS", "1024"))?,
        listen: number("UWSGI_LISTEN", &get("UWSGI_LISTEN", "48"))?,
        processes: number("UWSGI_PROCESSES", &get("UWSGI_PROCESSES", "2"))?,
        enable_threads: get("UWSGI_ENABLE_THREADS", "true").to_lowercase(),
        log_x_forwarded_for: get("UWSGI_LOG_X_FORWARDED_FOR", "false").to_lowercase(),
        log_maxsize: number("UWSGI_LOG_MAXSIZE", &get("UWSGI_LOG_MAXSIZE", LOG_MAXSIZE))?,
        log_file: root.log_dir(app).join(format!("{kind}.{n}.log")).display().to_string(),
        virtualenv: virtualenv.map(|v| syntax::uwsgi_value("VIRTUAL_ENV", v)).transpose()?,
        kind_settings: ks,
        include_settings: include_settings(rel, env)?,
        unset_env,
        env: worker_env,
    };
    for (name, v) in [("UWSGI_ENABLE_THREADS", &ctx.enable_threads), ("UWSGI_LOG_X_FORWARDED_FOR", &ctx.log_x_forwarded_for)] {
        if !matches!(v.as_str(), "true" | "false") {
            return Err(Error::new(format!("{name} of '{app}' must be true or false, not {v:?}")));
        }
    }
    templates::render(root, "vassal.ini.j2", VASSAL_TEMPLATE, &ctx)
}

/// `BIND_ADDRESS:PORT`, where an HTTP-speaking worker listens.
fn listen_address(env: &Env) -> Result<String> {
    let bind = env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1");
    let port = env.get("PORT").ok_or_else(|| Error::new("this worker listens on PORT, which is not set"))?;
    syntax::uwsgi_value("BIND_ADDRESS", &format!("{bind}:{port}"))
}

/// A directory named in the Procfile, inside the live tree (`apps/<app>/<dir>`).
fn rel_dir_in_app(root: &Root, app: &AppName, dir: &str) -> String {
    let dir = dir.trim().trim_matches('/');
    let base = root.app_dir(app);
    if dir.is_empty() || dir == "." { base.display().to_string() } else { base.join(dir).display().to_string() }
}

/// A numeric setting, checked (piku silently ignores bad ones).
fn number(name: &str, value: &str) -> Result<String> {
    value.trim().parse::<u64>().map(|n| n.to_string()).map_err(|_| Error::new(format!("{name} must be a whole number, not {value:?}")))
}

/// `UWSGI_INCLUDE_FILE`: extra `option = value` lines from a file in the app.
fn include_settings(rel: &Release, env: &Env) -> Result<Vec<(String, String)>> {
    let Some(file) = env.get("UWSGI_INCLUDE_FILE").filter(|f| !f.is_empty()) else { return Ok(vec![]) };
    let path = rel.dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("UWSGI_INCLUDE_FILE {file:?} of '{}' cannot be read: {e}", rel.app)))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') || line == "[uwsgi]" {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .ok_or_else(|| Error::new(format!("UWSGI_INCLUDE_FILE {file}, line {}: expected 'option = value': {line:?}", n + 1)))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Render the live release's vassals and publish them; remove the app's
/// vassals that are no longer wanted. `force` republishes even when
/// PIKU_AUTO_RESTART is off (that is what `restart` means).
fn publish(root: &Root, app: &AppName, force: bool) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let env = envfile::read_literal(&root.live_env_file(app))?
        .ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV; run piku-config {app} first")))?;
    let procfile = rel.procfile()?;
    // SCALING: the kinds of the Procfile, keeping counts the user chose.
    let old_scaling = read_scaling(root, app)?;
    let mut scaling = BTreeMap::new();
    for w in procfile.workers() {
        scaling.insert(w.kind.clone(), old_scaling.get(&w.kind).copied().unwrap_or(1));
    }
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), scaling[&w.kind])));
    atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)?;

    let wanted = render_all(root, &rel, &env, &scaling)?;
    let log_dir = root.log_dir(app);
    std::fs::create_dir_all(&log_dir).at("create directory", &log_dir)?;
    let available = root.dir("uwsgi-available");
    let enabled = root.dir("uwsgi-enabled");
    let restart = force || envfile::flag(&env, "PIKU_AUTO_RESTART", true);
    for (name, text) in &wanted {
        atomic::write_file(&available.join(name), text.as_bytes(), 0o644)?;
        let live = enabled.join(name);
        if restart || !live.exists() {
            atomic::write_file_newer(&live, text.as_bytes(), 0o644)?;
            output::step(format!("Spawning {app}:{}", worker_label(app, name)));
        }
    }
    if !restart {
        output::step(format!("PIKU_AUTO_RESTART is off: running workers of '{app}' keep their configuration until 'restart'"));
    }
    for dir in [&enabled, &available] {
        for name in app_vassals(root, app, dir)? {
            if !wanted.contains_key(&name) {
                if dir == &enabled {
                    output::step(format!("Stopping {app}:{}", worker_label(app, &name)));
                }
                atomic::remove_file(&dir.join(&name))?;
            }
        }
    }
    Ok(())
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

fn start(root: &Root, app: &AppName) -> Result<()> {
    publish(root, app, false)
}

/// Remove every vassal of the app, its SCALING and its logs (on `destroy`).
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    for dir in ["uwsgi-enabled", "uwsgi-available"] {
        let dir = root.dir(dir);
        for name in app_vassals(root, app, &dir)? {
            atomic::remove_file(&dir.join(&name))?;
        }
    }
    atomic::remove_file(&root.scaling_file(app))?;
    let logs = root.log_dir(app);
    if logs.exists() {
        std::fs::remove_dir_all(&logs).at("remove", &logs)?;
    }
    Ok(())
}

/// SCALING, and for each worker whether its vassal is enabled and its master runs.
fn ps(root: &Root, app: &AppName, json: bool) -> Result<()> {
    let counts = read_scaling(root, app)?;
    if counts.is_empty() {
        return Err(Error::new(format!("app '{app}' has no workers yet; push to deploy it")));
    }
    let enabled: Vec<String> = app_vassals(root, app, &root.dir("uwsgi-enabled"))?;
    let running = piku::vassals::running_workers();
    let mut kinds_json = Vec::new();
    for (kind, count) in &counts {
        if !json {
            output::data(format!("{kind}:{count}"));
        }
        let mut workers_json = Vec::new();
        for n in 1..=*count {
            let state = if kind == "static" {
                "served by nginx"
            } else if !enabled.contains(&vassal_name(app, kind, n)) {
                "stopped"
            } else if running.contains(&format!("{app}:{kind}.{n}")) {
                "running"
            } else {
                "starting"
            };
            if json {
                workers_json.push(format!("{{\"name\":\"{kind}.{n}\",\"state\":\"{state}\"}}"));
            } else {
                output::data(format!("  {kind}.{n} {state}"));
            }
        }
        kinds_json.push(format!("{}:{{\"count\":{count},\"workers\":[{}]}}", output::json_string(kind), workers_json.join(",")));
    }
    if json {
        output::data(format!("{{{}}}", kinds_json.join(",")));
    }
    Ok(())
}

/// `ps:scale`: check every `kind=N` against the live Procfile, then store SCALING.
fn scale(root: &Root, app: &AppName, pairs: &[&str]) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let procfile = rel.procfile()?;
    let mut counts = read_scaling(root, app)?;
    let mut changes = Vec::new();
    for pair in pairs {
        let (kind, n) = scaling::parse_scale_arg(pair).map_err(|e| Error::new(format!("{e}; nothing was changed")))?;
        if !procfile.workers().any(|w| w.kind == kind) {
            let kinds: Vec<&str> = procfile.workers().map(|w| w.kind.as_str()).collect();
            return Err(Error::new(format!("'{app}' has no '{kind}' worker (its Procfile has: {}); nothing was changed", kinds.join(", "))));
        }
        if kind == "static" && n > 1 {
            return Err(Error::new("'static' is served by nginx and cannot be scaled beyond 1; nothing was changed"));
        }
        changes.push((kind, n));
    }
    for (kind, n) in changes {
        output::step(format!("Scaling {app}:{kind} to {n}"));
        counts.insert(kind, n);
    }
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), counts.get(&w.kind).copied().unwrap_or(1))));
    atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)
}

/// `logs`: the last lines of each worker log (or one kind's), then follow.
fn logs(root: &Root, app: &AppName, rest: &[&str]) -> Result<()> {
    let mut kind: Option<&str> = None;
    let mut lines = 20usize;
    let mut follow = true;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--no-follow" => follow = false,
            "-n" => {
                let v = it.next().ok_or_else(|| Error::usage("-n needs a number of lines"))?;
                lines = v.parse().map_err(|_| Error::usage(format!("-n needs a number of lines, not {v:?}")))?;
            }
            k if !k.starts_with('-') && kind.is_none() => kind = Some(k),
            other => return Err(Error::usage(format!("logs: unexpected argument {other:?}"))),
        }
    }
    let dir = root.log_dir(app);
    let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".log").map(str::to_string))
                .filter(|label| kind.is_none_or(|k| label.rsplit_once('.').map(|(kd, _)| kd) == Some(k)))
                .map(|label| (label.clone(), dir.join(format!("{label}.log"))))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        return Err(Error::new(match kind {
            Some(k) => format!("no logs for '{app}' worker '{k}'"),
            None => format!("no logs for '{app}' yet"),
        }));
    }
    piku::logtail::tail(files, lines, follow);
    Ok(())
}
