//! piku-uwsgi: the app's workers, as uWSGI vassals under the emperor. Its
//! modes (check, stage, publish, restart, retire, stop, start, destroy, ps,
//! scale, logs, setup) are the subcommands below; `piku-uwsgi --help` and
//! `piku-uwsgi <mode> --help` print their help.
//!
//! A vassal is written to uwsgi-available/ and published by an atomic rename
//! into uwsgi-enabled/, which the emperor watches (names: lib vassals.rs).

use argh::FromArgs;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::procfile;
use piku::release::{self, Release};
use piku::scaling::{self, read_scaling};
use piku::vassals::{self, app_vassals, is_web_facing, parse_vassal, vassal_name, worker_id, worker_label};
use piku::{AppName, Root, atomic, output, syntax, templates};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "piku-uwsgi/swap.rs"]
mod swap;
use swap::{retire, seconds, stage};

const VASSAL_TEMPLATE: &str = include_str!("../share/uwsgi/vassal.ini.j2");
const EMPEROR_TEMPLATE: &str = include_str!("../share/uwsgi/emperor.ini.j2");
const LOG_MAXSIZE: &str = "1048576";
/// uWSGI's Java classes (Debian's uwsgi-plugin-jvm), which a JWSGI app needs.
const JVM_UWSGI_JAR: &str = "/usr/share/java/uwsgi.jar";

/// The app's workers, as uWSGI vassals under the emperor: render, stage,
/// publish, stop, scale, and show them.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} stage myapp 20240101-120000-5f3c2a1\n{command_name} ps myapp --json\n{command_name} logs myapp web -n 50 --no-follow",
    note = "A vassal is written to uwsgi-available/ and published by an atomic rename into uwsgi-enabled/, which the emperor watches. Settings (the app's ENV, else $PIKU_ROOT/settings): PIKU_HEALTHCHECK_TIMEOUT (seconds, default 30), PIKU_HEALTHCHECK_PATH (a path that must answer 2xx or 3xx; default: any answer below 500 for /), PIKU_HEALTHCHECK=off, PIKU_DRAIN_SECONDS (how long the old colour keeps running after the switch; default 3).",
    error_code(1, "the work failed (the message says why and what to do)"),
    error_code(2, "usage error: nothing was done")
)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Check(Check),
    Stage(Stage),
    Publish(Publish),
    Restart(Restart),
    Retire(Retire),
    Stop(Stop),
    Start(Start),
    Destroy(Destroy),
    Ps(Ps),
    Scale(Scale),
    Logs(Logs),
    Setup(Setup),
}

/// render a staged release's vassals and check them; publish nothing.
#[derive(FromArgs)]
#[argh(subcommand, name = "check", help_triggers("-h", "--help"), example = "{command_name} myapp 20240101-120000-5f3c2a1")]
struct Check {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// start a release's web workers beside the live ones and health-check them.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "stage",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp 20240101-120000-5f3c2a1",
    note = "The release's web-facing workers start on its colour and must answer (the health check, PIKU_HEALTHCHECK_*); a release that does not is stopped again and the live one keeps serving."
)]
struct Stage {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// make the workers match the live release.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "publish",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "From the Procfile, SCALING and LIVE_ENV: switches the wsgi socket to the live colour and replaces the background workers; the other colour's web workers are left to drain (stopped at once when PIKU_DRAIN_SECONDS=0)."
)]
struct Publish {
    /// the app
    #[argh(positional)]
    app: String,
}

/// like publish, even when PIKU_AUTO_RESTART is off (restart, rollback).
#[derive(FromArgs)]
#[argh(subcommand, name = "restart", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Restart {
    /// the app
    #[argh(positional)]
    app: String,
}

/// wait out the drain of the previous web workers, then stop them.
#[derive(FromArgs)]
#[argh(subcommand, name = "retire", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Retire {
    /// the app
    #[argh(positional)]
    app: String,
}

/// stop all of the app's workers.
#[derive(FromArgs)]
#[argh(subcommand, name = "stop", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Stop {
    /// the app
    #[argh(positional)]
    app: String,
}

/// start the app's workers again after a stop.
#[derive(FromArgs)]
#[argh(subcommand, name = "start", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Start {
    /// the app
    #[argh(positional)]
    app: String,
}

/// stop the app's workers and remove their files.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
}

/// worker counts and which workers run.
#[derive(FromArgs)]
#[argh(subcommand, name = "ps", help_triggers("-h", "--help"), example = "{command_name} myapp --json")]
struct Ps {
    /// the app
    #[argh(positional)]
    app: String,
    /// print JSON instead
    #[argh(switch)]
    json: bool,
}

/// validate and store worker counts in SCALING (applied by the next publish).
#[derive(FromArgs)]
#[argh(subcommand, name = "scale", help_triggers("-h", "--help"), example = "{command_name} myapp web=2 worker=1")]
struct Scale {
    /// the app
    #[argh(positional)]
    app: String,
    /// kind=N pairs (Procfile kinds), at least one
    #[argh(positional)]
    pairs: Vec<String>,
}

/// print the workers' logs, then follow them.
#[derive(FromArgs)]
#[argh(subcommand, name = "logs", help_triggers("-h", "--help"), example = "{command_name} myapp web -n 50 --no-follow")]
struct Logs {
    /// the app
    #[argh(positional)]
    app: String,
    /// only this kind of worker (a Procfile kind, e.g. web)
    #[argh(positional)]
    kind: Option<String>,
    /// how many lines of each log to show first (default 20)
    #[argh(option, short = 'n', default = "20")]
    lines: usize,
    /// print and exit; do not wait for more
    #[argh(switch)]
    no_follow: bool,
}

/// write the emperor's configuration, uwsgi/uwsgi.ini.
#[derive(FromArgs)]
#[argh(subcommand, name = "setup", help_triggers("-h", "--help"), example = "{command_name}")]
struct Setup {}

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
                let colour = scaling::colour_of_port(&root, &rel.app, env.get("PORT").map(String::as_str))?;
                let vassals = render_all(&root, &rel, &env, &wanted_scaling(&root, &rel)?, colour, Which::All)?;
                if !vassals.is_empty() {
                    output::step(format!("Worker configuration of '{}' is valid ({} vassals)", rel.app, vassals.len()));
                }
                Ok(())
            }
            Mode::Retire(a) => retire(&root, &release::existing_app(&root, &a.app)?),
            Mode::Stage(a) => stage(&root, &Release::open(&root, &AppName::parse(&a.app)?, &a.release)?),
            Mode::Stop(a) => stop(&root, &release::existing_app(&root, &a.app)?),
            Mode::Destroy(a) => destroy(&root, &AppName::parse(&a.app)?),
            Mode::Ps(a) => ps(&root, &release::existing_app(&root, &a.app)?, a.json),
            Mode::Scale(a) => {
                let pairs: Vec<&str> = a.pairs.iter().map(String::as_str).collect();
                if pairs.is_empty() {
                    return Err(Error::usage("scale needs at least one kind=N; see piku-uwsgi scale --help"));
                }
                scale(&root, &release::existing_app(&root, &a.app)?, &pairs)
            }
            Mode::Logs(a) => logs(&root, &release::existing_app(&root, &a.app)?, a.kind.as_deref(), a.lines, !a.no_follow),
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

#[derive(Serialize)]
struct VassalCtx {
    placeholders: &'static [(&'static str, &'static str)],
    app: String,
    kind: String,
    worker: String,
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

/// Which of a release's workers to render.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    All,
    WebFacing,
}

/// Every vassal the release wants: file name -> contents. Web-facing
/// workers are named and bound for `colour` (None: they restart in place).
fn render_all(
    root: &Root,
    rel: &Release,
    env: &Env,
    scaling: &BTreeMap<String, u32>,
    colour: Option<&str>,
    which: Which,
) -> Result<BTreeMap<String, String>> {
    let procfile = rel.procfile()?;
    let ports = match colour {
        Some(c) => scaling::read_colour_ports(root, &rel.app, c)?,
        None => scaling::read_web_ports(root, &rel.app)?,
    };
    let mut out = BTreeMap::new();
    for worker in procfile.workers().filter(|w| w.kind != "static") {
        let web_facing = is_web_facing(&worker.kind);
        if which == Which::WebFacing && !web_facing {
            continue;
        }
        let colour = if web_facing { colour } else { None };
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
            let name = vassal_name(&rel.app, &worker.kind, n, colour);
            // A reloaded vassal keeps its old process environment (uWSGI
            // re-execs itself): unset what the running one had and this one drops.
            let running = fs::read_to_string(root.dir("uwsgi-enabled").join(&name)).unwrap_or_default();
            let removed: Vec<String> = running
                .lines()
                .filter_map(|l| l.strip_prefix("env = ")?.split_once('=').map(|(k, _)| k.to_string()))
                .filter(|k| !env.contains_key(k) && k != "PROC_TYPE")
                .collect();
            let text = render_vassal(root, rel, &worker.kind, &worker.command, n, colour, &env, removed)?;
            out.insert(name, text);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn render_vassal(root: &Root, rel: &Release, kind: &str, command: &str, n: u32, colour: Option<&str>, env: &Env, unset_env: Vec<String>) -> Result<String> {
    let app = &rel.app;
    let get = |k: &str, d: &str| env.get(k).cloned().unwrap_or_else(|| d.to_string());
    let (uid, gid) = ids();
    let mut ks: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| ks.push((k.to_string(), v));
    let quoted_cmd = syntax::uwsgi_value(&format!("the '{kind}' command of the Procfile"), command)?;
    if kind.starts_with("cron") {
        let spec = procfile::parse_cron(command).map_err(|e| Error::new(format!("Procfile '{kind}': {e}")))?;
        push("cron", syntax::uwsgi_value(&format!("the '{kind}' command of the Procfile"), &spec)?);
    } else if kind == "jwsgi" {
        // The JVM finds uWSGI's own classes and the app's in its classpath;
        // `jwsgi = Class:method` loads the app (uWSGI ignores `module` here).
        push("plugin", "jvm".into());
        push("plugin", "jwsgi".into());
        push("jvm-classpath", JVM_UWSGI_JAR.into());
        push("jvm-classpath", syntax::uwsgi_value("the app's directory", &root.app_dir(app).display().to_string())?);
        push("jwsgi", quoted_cmd);
        push("threads", number("UWSGI_THREADS", &get("UWSGI_THREADS", "4"))?);
        // HTTP for nginx, with the request modifier of the JVM handler.
        push("http-socket", listen_address(env)?);
        push("http-socket-modifier1", "8".into());
    } else if kind == "wsgi" {
        push("module", quoted_cmd);
        push("threads", number("UWSGI_THREADS", &get("UWSGI_THREADS", "4"))?);
        {
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
            push("socket", socket_path(root, app, colour).display().to_string());
            push("chmod-socket", "664".into());
        } else {
            push("http-socket", listen_address(env)?);
        }
    } else if kind == "rwsgi" {
        // `rack = config.ru` loads the app (uWSGI ignores `module` here); ruby
        // has no native threads under uWSGI, and rbrequire/post-buffering are
        // not plugins: post-buffering is an option.
        push("plugin", "0:rack".into());
        push("rack", quoted_cmd);
        push("post-buffering", "4096".into());
        // piku gives rack apps no listener; ours serves HTTP on BIND_ADDRESS:PORT for nginx.
        push("http-socket", listen_address(env)?);
    } else if kind == "php" {
        let docroot = rel_dir(rel, command);
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
        worker: worker_id(kind, n, colour),
        chdir: rel.dir.display().to_string(),
        uid,
        gid,
        max_requests: number("UWSGI_MAX_REQUESTS", &get("UWSGI_MAX_REQUESTS", "1024"))?,
        listen: number("UWSGI_LISTEN", &get("UWSGI_LISTEN", "48"))?,
        processes: number("UWSGI_PROCESSES", &get("UWSGI_PROCESSES", "2"))?,
        enable_threads: get("UWSGI_ENABLE_THREADS", "true").to_lowercase(),
        log_x_forwarded_for: get("UWSGI_LOG_X_FORWARDED_FOR", "false").to_lowercase(),
        log_maxsize: number("UWSGI_LOG_MAXSIZE", &get("UWSGI_LOG_MAXSIZE", LOG_MAXSIZE))?,
        log_file: log_file(root, app, &worker_id(kind, n, colour)).display().to_string(),
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

/// A directory named in the Procfile, inside the release's tree.
fn rel_dir(rel: &Release, dir: &str) -> String {
    let dir = dir.trim().trim_matches('/');
    if dir.is_empty() || dir == "." { rel.dir.display().to_string() } else { rel.dir.join(dir).display().to_string() }
}

/// The uWSGI socket of a wsgi worker behind nginx: `nginx/<app>.<colour>.sock`,
/// and `nginx/<app>.sock` (what nginx connects to) a symlink to the live one.
fn socket_path(root: &Root, app: &AppName, colour: Option<&str>) -> PathBuf {
    match colour {
        Some(c) => root.dir("nginx").join(format!("{app}.{c}.sock")),
        None => root.dir("nginx").join(format!("{app}.sock")),
    }
}

fn log_file(root: &Root, app: &AppName, worker: &str) -> PathBuf {
    root.log_dir(app).join(format!("{worker}.log"))
}

/// A numeric setting, checked (piku silently ignores bad ones).
fn number(name: &str, value: &str) -> Result<String> {
    value.trim().parse::<u64>().map(|n| n.to_string()).map_err(|_| Error::new(format!("{name} must be a whole number, not {value:?}")))
}

/// `UWSGI_INCLUDE_FILE`: extra `option = value` lines from a file in the app.
fn include_settings(rel: &Release, env: &Env) -> Result<Vec<(String, String)>> {
    let Some(file) = env.get("UWSGI_INCLUDE_FILE").filter(|f| !f.is_empty()) else { return Ok(vec![]) };
    let path = rel.dir.join(file);
    let text = fs::read_to_string(&path)
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

/// SCALING for a release: the kinds of its Procfile, keeping counts the user chose.
fn wanted_scaling(root: &Root, rel: &Release) -> Result<BTreeMap<String, u32>> {
    let old = read_scaling(root, &rel.app)?;
    Ok(rel.procfile()?.workers().map(|w| (w.kind.clone(), old.get(&w.kind).copied().unwrap_or(1))).collect())
}

/// Make the workers match the live release: vassals of the live colour (or
/// in place), the wsgi socket link, background workers replaced, and the
/// other colour stopped after PIKU_DRAIN_SECONDS. `force` republishes even
/// when PIKU_AUTO_RESTART is off (that is what `restart` means).
fn publish(root: &Root, app: &AppName, force: bool) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let env = envfile::read_literal(&root.live_env_file(app))?
        .ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV; run piku-config publish {app} first")))?;
    let procfile = rel.procfile()?;
    let scaling = wanted_scaling(root, &rel)?;
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), scaling[&w.kind])));
    if fs::read_to_string(root.scaling_file(app)).ok().as_deref() != Some(text.as_str()) {
        atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)?;
    }
    let colour = scaling::colour_of_port(root, app, env.get("PORT").map(String::as_str))?;
    let wanted = render_all(root, &rel, &env, &scaling, colour, Which::All)?;
    let log_dir = root.log_dir(app);
    piku::paths::create_private_dir(&log_dir)?;
    let available = root.dir("uwsgi-available");
    let enabled = root.dir("uwsgi-enabled");

    // wsgi behind nginx: nginx connects to nginx/<app>.sock, a link to the live colour's socket.
    let behind_nginx = env.get("NGINX_SERVER_NAME").is_some_and(|n| !n.trim().is_empty());
    if let Some(c) = colour.filter(|_| procfile.has("wsgi") && behind_nginx) {
        let link = socket_path(root, app, None);
        let target = PathBuf::from(format!("{app}.{c}.sock"));
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            atomic::replace_symlink(&target, &link)?;
            output::step(format!("nginx now reaches '{app}' through its {c} workers"));
        }
    }

    let restart = force || envfile::flag(&env, "PIKU_AUTO_RESTART", true);
    for (name, text) in &wanted {
        if fs::read_to_string(available.join(name)).ok().as_deref() != Some(text.as_str()) {
            atomic::write_file(&available.join(name), text.as_bytes(), vassals::VASSAL_MODE)?;
        }
        let live = enabled.join(name);
        let current = fs::read_to_string(&live).ok();
        if current.is_none() || (restart && current.as_deref() != Some(text.as_str())) {
            atomic::write_file_newer(&live, text.as_bytes(), vassals::VASSAL_MODE)?;
            let verb = if current.is_some() { "Restarting" } else { "Spawning" };
            output::step(format!("{verb} {app}:{}", worker_label(app, name)));
        } else if force && parse_vassal(app, name).is_some_and(|(_, _, c)| c.is_none()) {
            // `restart` of an unchanged worker: touching it makes the emperor
            // reload it (a web worker of a colour was just started fresh).
            atomic::write_file_newer(&live, text.as_bytes(), vassals::VASSAL_MODE)?;
            output::step(format!("Restarting {app}:{}", worker_label(app, name)));
        }
    }
    if !restart {
        output::step(format!("PIKU_AUTO_RESTART is off: running workers of '{app}' keep their configuration until 'restart'"));
    }
    // The other colour served until nginx switched: it stops after a drain,
    // which `retire` waits out (the hook runs it in the background).
    let drain = seconds(root, &env, "PIKU_DRAIN_SECONDS", 3)?;
    let draining = |name: &str| colour.is_some() && !drain.is_zero() && parse_vassal(app, name).is_some_and(|(k, _, _)| is_web_facing(&k));
    let mut drained = false;
    for dir in [&enabled, &available] {
        for name in app_vassals(root, app, dir)? {
            if wanted.contains_key(&name) {
                continue;
            }
            if dir == &enabled && draining(&name) {
                drained = true;
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
    for colour in vassals::COLOURS {
        atomic::remove_file(&socket_path(root, app, Some(colour)))?;
    }
    atomic::remove_file(&root.scaling_file(app))?;
    let logs = root.log_dir(app);
    if logs.exists() {
        fs::remove_dir_all(&logs)?;
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
            } else {
                let names = [None, Some("blue"), Some("green")].map(|c| (c, vassal_name(app, kind, n, c)));
                let on: Vec<_> = names.iter().filter(|(_, name)| enabled.contains(name)).collect();
                if on.is_empty() {
                    "stopped"
                } else if on.iter().any(|(c, _)| running.contains(&format!("{app}:{}", worker_id(kind, n, *c)))) {
                    "running"
                } else {
                    "starting"
                }
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
    let mut wanted: BTreeMap<String, u32> = procfile.workers().map(|w| (w.kind.clone(), counts.get(&w.kind).copied().unwrap_or(1))).collect();
    wanted.extend(changes.iter().cloned());
    let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    piku::limits::check_workers(root, app.as_str(), &env, &wanted).map_err(|e| Error::new(format!("{}; nothing was changed", e.message)))?;
    for (kind, n) in changes {
        output::step(format!("Scaling {app}:{kind} to {n}"));
        counts.insert(kind, n);
    }
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), counts.get(&w.kind).copied().unwrap_or(1))));
    atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)
}

/// `logs`: the last lines of each worker log (or one kind's), then follow.
fn logs(root: &Root, app: &AppName, kind: Option<&str>, lines: usize, follow: bool) -> Result<()> {
    let dir = root.log_dir(app);
    // Web workers log per colour: show the live colour's, as `kind.n`.
    let live_env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    let live_colour = scaling::colour_of_port(root, app, live_env.get("PORT").map(String::as_str))?;
    let mut files: Vec<(String, std::path::PathBuf)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".log").map(str::to_string))
                .filter(|label| kind.is_none_or(|k| label.split('.').next() == Some(k)))
                .filter_map(|label| {
                    let path = dir.join(format!("{label}.log"));
                    match vassals::parse_worker_id(&label) {
                        Some((k, n, Some(c))) if live_colour.is_some() => (Some(c.as_str()) == live_colour).then(|| (worker_id(&k, n, None), path)),
                        _ => Some((label, path)),
                    }
                })
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
