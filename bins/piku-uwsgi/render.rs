//! Rendering a release's vassals (templates: share/uwsgi/vassal.ini.j2).

use super::{VASSAL_TEMPLATE, LOG_MAXSIZE, JVM_UWSGI_JAR, ids};
use piku::envfile::Env;
use piku::error::{Error, Result};
use piku::health;
use piku::procfile;
use piku::release::Release;
use piku::scaling;
use piku::swap::{self, Generation};
use piku::vassals::{is_web_facing, vassal_name, worker_id};
use piku::{AppName, Root, atomic, syntax, templates};
use fs_err as fs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
pub enum Which {
    All,
    WebFacing,
}

/// Every vassal the release wants: file name -> contents. Web-facing
/// workers belong to `generation` (its number and record: their ports), or,
/// without one, restart in place.
pub fn render_all(
    root: &Root,
    rel: &Release,
    env: &Env,
    scaling: &BTreeMap<String, u32>,
    generation: Option<(u32, &Generation)>,
    which: Which,
) -> Result<BTreeMap<String, String>> {
    let procfile = rel.procfile()?;
    let ports = in_place_ports(root, &rel.app, env, scaling, false)?;
    let mut out = BTreeMap::new();
    for worker in procfile.workers().filter(|w| w.kind != "static") {
        let web_facing = is_web_facing(&worker.kind);
        if which == Which::WebFacing && !web_facing {
            continue;
        }
        let generation = generation.filter(|_| web_facing);
        let tag = generation.map(|(g, _)| swap::tag(g));
        let count = scaling.get(&worker.kind).copied().unwrap_or(1);
        for n in 1..=count {
            let mut env = env.clone();
            let mut listen = Listen::Env;
            match generation {
                // A generation's worker: its own port, behind its own socket.
                Some((g, record)) => {
                    let socket = swap::worker_socket(root, &rel.app, &worker.kind, n, g);
                    if worker.kind == "wsgi" {
                        listen = Listen::UwsgiSocket(socket);
                    } else {
                        let port = record.ports.get(&format!("{}.{n}", worker.kind)).ok_or_else(|| {
                            Error::new(format!("{}.{n} of '{}' has no port in generation {g}; deploy again", worker.kind, rel.app))
                        })?;
                        env.insert("PORT".into(), port.to_string());
                        listen = Listen::Relayed(socket);
                    }
                }
                // Each web instance listens on its own port (PORTS); nginx balances them.
                None if worker.kind == "web" && n > 1 => {
                    let port = ports.get(&n).ok_or_else(|| Error::new(format!("web instance {n} of '{}' has no port", rel.app)))?;
                    env.insert("PORT".into(), port.to_string());
                }
                None => {}
            }
            let name = vassal_name(&rel.app, &worker.kind, n, tag.as_deref());
            // A reloaded vassal keeps its old process environment (uWSGI
            // re-execs itself): unset what the running one had and this one drops.
            let running = fs::read_to_string(root.dir("uwsgi-enabled").join(&name)).unwrap_or_default();
            let removed: Vec<String> = running
                .lines()
                .filter_map(|l| l.strip_prefix("env = ")?.split_once('=').map(|(k, _)| k.to_string()))
                .filter(|k| !env.contains_key(k) && k != "PROC_TYPE")
                .collect();
            let worker_id = worker_id(&worker.kind, n, tag.as_deref());
            let text = render_vassal(root, rel, &worker.kind, &worker.command, &worker_id, listen, &env, removed)?;
            out.insert(name, text);
        }
    }
    Ok(out)
}

/// PORTS, the port of each `web` instance of an app whose workers restart in
/// place (PORT pinned, or not behind nginx): instance 1 is PORT, the others
/// keep their port across deploys (nginx reads them). `write`: store what
/// changed (publish); else new instances get a placeholder (check).
pub fn in_place_ports(root: &Root, app: &AppName, env: &Env, scaling: &BTreeMap<String, u32>, write: bool) -> Result<BTreeMap<u32, u16>> {
    let Some(first) = env.get("PORT").and_then(|p| p.parse::<u16>().ok()) else { return Ok(BTreeMap::new()) };
    let count = scaling.get("web").copied().unwrap_or(1).max(1);
    let old = scaling::read_web_ports(root, app)?;
    let mut ports = BTreeMap::from([(1u32, first)]);
    for n in 2..=count {
        let port = match old.get(&n) {
            Some(p) if *p != first => *p,
            _ if write => swap::free_port(root, &ports.values().copied().collect::<Vec<_>>())?,
            _ => 0,
        };
        ports.insert(n, port);
    }
    if write && old != ports {
        let text = scaling::render_counts(ports.iter().map(|(n, p)| (n.to_string(), u32::from(*p))).collect::<Vec<_>>().iter().map(|(n, p)| (n.as_str(), *p)));
        atomic::write_file(&scaling::ports_file(root, app), text.as_bytes(), 0o644)?;
    }
    Ok(ports)
}

/// Where a web-facing worker of a generation is reached.
pub enum Listen {
    /// As its environment says (PORT; a wsgi worker behind nginx: nginx/<app>.sock).
    Env,
    /// A wsgi worker's uWSGI socket.
    UwsgiSocket(PathBuf),
    /// An HTTP worker on its PORT, relayed from this socket by uWSGI's rawrouter.
    Relayed(PathBuf),
}

#[allow(clippy::too_many_arguments)]
fn render_vassal(root: &Root, rel: &Release, kind: &str, command: &str, worker: &str, listen: Listen, env: &Env, unset_env: Vec<String>) -> Result<String> {
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
        if let Listen::UwsgiSocket(socket) = &listen {
            push("socket", socket.display().to_string());
            push("chmod-socket", "664".into());
        } else if env.contains_key("NGINX_SERVER_NAME") {
            push("socket", root.dir("nginx").join(format!("{app}.sock")).display().to_string());
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
    if let Listen::Relayed(socket) = &listen {
        // nginx connects to the socket (through the app's stable link); the
        // rawrouter passes the bytes on to the worker's port.
        let bind = env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1");
        let port: u16 = env.get("PORT").and_then(|p| p.parse().ok()).unwrap_or(0);
        push("plugin", "rawrouter".into());
        push("rawrouter", socket.display().to_string());
        push("rawrouter-to", syntax::uwsgi_value("BIND_ADDRESS", &health::tcp_target(bind, port).to_string())?);
        push("chmod-socket", "664".into());
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
        worker: worker.to_string(),
        chdir: rel.dir.display().to_string(),
        uid,
        gid,
        max_requests: number("UWSGI_MAX_REQUESTS", &get("UWSGI_MAX_REQUESTS", "1024"))?,
        listen: number("UWSGI_LISTEN", &get("UWSGI_LISTEN", "48"))?,
        processes: number("UWSGI_PROCESSES", &get("UWSGI_PROCESSES", "2"))?,
        enable_threads: get("UWSGI_ENABLE_THREADS", "true").to_lowercase(),
        log_x_forwarded_for: get("UWSGI_LOG_X_FORWARDED_FOR", "false").to_lowercase(),
        log_maxsize: number("UWSGI_LOG_MAXSIZE", &get("UWSGI_LOG_MAXSIZE", LOG_MAXSIZE))?,
        log_file: log_file(root, app, worker).display().to_string(),
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

pub fn log_file(root: &Root, app: &AppName, worker: &str) -> PathBuf {
    root.log_dir(app).join(format!("{worker}.log"))
}

/// A numeric setting, checked (piku silently ignores bad ones).
pub fn number(name: &str, value: &str) -> Result<String> {
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

