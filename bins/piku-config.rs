//! piku-config: the app's environment. Its modes (resolve, publish, sync,
//! recolour, show, live, get, set, unset, restore, destroy) are the
//! subcommands below; `piku-config --help` and `piku-config <mode> --help`
//! print their help.
//!
//! Layers, later wins: bootstrap (APP, LOG_ROOT, DATA_ROOT, HOME, USER, PATH,
//! PWD, VIRTUAL_ENV, NODE_PATH), the repo's ENV, the add-ons' addons/<app>/ENV
//! (DATABASE_URL, REDIS_URL, ..., written by piku-addons), envs/<app>/ENV; then PORT,
//! BIND_ADDRESS, NGINX_IPV4/6_ADDRESS.
//!
//! PORT: an app behind nginx gets no PORT here: each deploy's web workers
//! get ports of their own from the swap (lib swap.rs, piku-uwsgi). The user
//! may set PORT: then, and for an app not behind nginx (its users reach PORT
//! directly), PORT stays put and workers restart in place (the ports of
//! further web instances, PORTS, are piku-uwsgi's).

use argh::FromArgs;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::settings::Settings;
use piku::{AppName, Root, atomic, output, vassals};
use std::process::ExitCode;

/// The app's environment: resolve it for a release, publish it, show and
/// change the user's config.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} resolve myapp 20240101-120000-5f3c2a1\n{command_name} set myapp WORKERS=4 DEBUG=0\n{command_name} show myapp --json",
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
    Resolve(Resolve),
    Publish(Publish),
    Sync(Sync),
    Recolour(Recolour),
    Show(Show),
    Live(Live),
    Get(Get),
    Set(Set),
    Unset(Unset),
    Restore(Restore),
    Destroy(Destroy),
}

/// resolve a new release's environment into releases/<app>/<id>.env (staged).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "resolve",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp 20240101-120000-5f3c2a1",
    note = "Layers, later wins: bootstrap (APP, LOG_ROOT, DATA_ROOT, HOME, USER, PATH, PWD, VIRTUAL_ENV, NODE_PATH), the repo's ENV, envs/<app>/ENV; then PORT, BIND_ADDRESS, NGINX_IPV4/6_ADDRESS. Behind nginx the release gets no PORT: each deploy's web workers get ports of their own from the swap (piku-uwsgi)."
)]
struct Resolve {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// publish the live release's environment as envs/<app>/LIVE_ENV.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "publish",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "In the deploy chain, after the switch; also publishes the release's ports for nginx."
)]
struct Publish {
    /// the app
    #[argh(positional)]
    app: String,
}

/// keep the live release's facts in step with LIVE_ENV; give new web instances ports.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "sync",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "Run after ps:scale, and by a failed redeploy of the live release to put its facts back."
)]
struct Sync {
    /// the app
    #[argh(positional)]
    app: String,
}

/// a release's own environment, as it was resolved, to run again (restart, rollback).
#[derive(FromArgs)]
#[argh(subcommand, name = "recolour", help_triggers("-h", "--help"), example = "{command_name} myapp 20240101-120000-5f3c2a1")]
struct Recolour {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// print the app's config (envs/<app>/ENV), one KEY=VALUE a line.
#[derive(FromArgs)]
#[argh(subcommand, name = "show", help_triggers("-h", "--help"), example = "{command_name} myapp --json")]
struct Show {
    /// the app
    #[argh(positional)]
    app: String,
    /// print one JSON object instead
    #[argh(switch)]
    json: bool,
}

/// print the environment the live workers run with (LIVE_ENV).
#[derive(FromArgs)]
#[argh(subcommand, name = "live", help_triggers("-h", "--help"), example = "{command_name} myapp --json")]
struct Live {
    /// the app
    #[argh(positional)]
    app: String,
    /// print one JSON object instead
    #[argh(switch)]
    json: bool,
}

/// print the value of one config variable.
#[derive(FromArgs)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"), example = "{command_name} myapp DATABASE_URL")]
struct Get {
    /// the app
    #[argh(positional)]
    app: String,
    /// the variable
    #[argh(positional)]
    key: String,
}

/// store config variables in envs/<app>/ENV (applied by the next deploy or restart).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "set",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp WORKERS=4 DEBUG=0\nprintf 'SECRET=%s' \"$secret\" | {command_name} --stdin myapp",
    note = "All or nothing: one bad pair and nothing is changed. The file as it was is kept for restore. With --stdin the pairs come on stdin, a NUL byte between them: the front door passes values so, never in argv (which ps shows every user)."
)]
struct Set {
    /// read the KEY=VALUE pairs from stdin, NUL between them, not from the command line
    #[argh(switch)]
    stdin: bool,
    /// the app
    #[argh(positional)]
    app: String,
    /// KEY=VALUE pairs, at least one
    #[argh(positional)]
    pairs: Vec<String>,
}

/// remove config variables from envs/<app>/ENV.
#[derive(FromArgs)]
#[argh(subcommand, name = "unset", help_triggers("-h", "--help"), example = "{command_name} myapp DEBUG")]
struct Unset {
    /// the app
    #[argh(positional)]
    app: String,
    /// variable names, at least one
    #[argh(positional)]
    keys: Vec<String>,
}

/// put envs/<app>/ENV back as it was before the last set or unset.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore", help_triggers("-h", "--help"), example = "{command_name} myapp", note = "The front door runs it when applying a change failed.")]
struct Restore {
    /// the app
    #[argh(positional)]
    app: String,
}

/// remove envs/<app> (after the other tools removed what is theirs in it).
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-config", || {
        let root = Root::from_env();
        match args.mode {
            Mode::Show(a) => show(&root, &release::existing_app(&root, &a.app)?, Which::User, a.json),
            Mode::Live(a) => show(&root, &release::existing_app(&root, &a.app)?, Which::Live, a.json),
            Mode::Get(a) => get(&root, &release::existing_app(&root, &a.app)?, &a.key),
            Mode::Set(a) => {
                let app = release::existing_app(&root, &a.app)?;
                let input = if a.stdin { pairs_from_stdin(&app, &a.pairs)? } else { String::new() };
                let pairs: Vec<&str> = if a.stdin { input.split('\0').filter(|p| !p.is_empty()).collect() } else { a.pairs.iter().map(String::as_str).collect() };
                if pairs.is_empty() {
                    return Err(Error::usage("set needs at least one KEY=VALUE; see piku-config set --help"));
                }
                set(&root, &app, &pairs)
            }
            Mode::Unset(a) => {
                let keys: Vec<&str> = a.keys.iter().map(String::as_str).collect();
                if keys.is_empty() {
                    return Err(Error::usage("unset needs at least one KEY; see piku-config unset --help"));
                }
                unset(&root, &release::existing_app(&root, &a.app)?, &keys)
            }
            Mode::Restore(a) => restore(&root, &release::existing_app(&root, &a.app)?),
            Mode::Destroy(a) => destroy(&root, &AppName::parse(&a.app)?),
            Mode::Recolour(a) => recolour(&root, &Release::open(&root, &AppName::parse(&a.app)?, &a.release)?),
            Mode::Publish(a) => {
                let app = AppName::parse(&a.app)?;
                let rel = Release::live_or_err(&root, &app)?;
                let env = envfile::read_literal(&rel.fact_file("env"))?
                    .ok_or_else(|| Error::new(format!("release {} of '{app}' has no resolved environment; run piku-config resolve {app} {} first", rel.id, rel.id)))?;
                piku::paths::create_private_dir(&root.env_dir(&app))?;
                write_env(&root.live_env_file(&app), &env)
            }
            Mode::Resolve(a) => {
                let app = AppName::parse(&a.app)?;
                release::remove_facts(&root, &app, "env", false)?;
                let rel = Release::open(&root, &app, &a.release)?;
                let env = resolve(&root, &rel)?;
                write_env(&rel.fact_file("env"), &env)
            }
            Mode::Sync(a) => {
                let app = AppName::parse(&a.app)?;
                let rel = Release::live_or_err(&root, &app)?;
                let env = envfile::read_literal(&root.live_env_file(&app))?
                    .ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV yet; deploy it first")))?;
                // A deploy that failed after resolving the live release again
                // leaves its facts ahead of what runs: put them back.
                if envfile::read_literal(&rel.fact_file("env"))?.as_ref() != Some(&env) {
                    write_env(&rel.fact_file("env"), &env)?;
                }
                Ok(())
            }
        }
    })
}

/// The resolved environment a release runs with.
fn resolve(root: &Root, rel: &Release) -> Result<Env> {
    let app = &rel.app;
    let build = envfile::read_literal(&rel.fact_file("build"))?.unwrap_or_default();
    let env_dir = root.env_dir(app);
    let virtual_env = build.get("VIRTUAL_ENV").cloned().unwrap_or_else(|| env_dir.display().to_string());

    let mut path = vec![format!("{virtual_env}/bin")];
    if let Some(extra) = build.get("PATH_PREFIX").filter(|p| !p.is_empty()) {
        path.push(extra.clone());
    }
    let home = piku::paths::home_dir();
    let server = Settings::load(root)?;
    path.push(server.get_or("PATH", &piku::paths::base_path(&home)));

    let mut env = Env::new();
    env.insert("APP".into(), app.to_string());
    env.insert("LOG_ROOT".into(), root.dir("logs").display().to_string());
    env.insert("DATA_ROOT".into(), root.data_dir(app).display().to_string());
    env.insert("HOME".into(), home.display().to_string());
    env.insert("USER".into(), piku::paths::user_name());
    env.insert("PATH".into(), path.join(":"));
    // Workers run in their release's tree (chdir), which is apps/<app> once live.
    env.insert("PWD".into(), root.app_dir(app).display().to_string());
    env.insert("VIRTUAL_ENV".into(), virtual_env);
    if let Some(node_path) = build.get("NODE_PATH") {
        env.insert("NODE_PATH".into(), node_path.clone());
    }

    envfile::read_into(&mut env, &rel.dir.join("ENV"), true).map_err(|e| e.context(format!("the ENV file of '{app}'")))?;
    envfile::read_into(&mut env, &root.addons_env_file(app), false).map_err(|e| e.context(format!("the add-ons of '{app}'")))?;
    envfile::read_into(&mut env, &root.user_env_file(app), true).map_err(|e| e.context(format!("the config of '{app}'")))?;

    let procfile = rel.procfile()?;
    check_limits(root, app, &env, &procfile)?;
    if procfile.serves_web() {
        let web_facing = procfile.workers().any(|w| vassals::is_web_facing(&w.kind));
        let behind_nginx = env.get("NGINX_SERVER_NAME").is_some_and(|n| !n.trim().is_empty());
        if let Some(port) = env.get("PORT") {
            if web_facing && behind_nginx {
                output::warn(format!(
                    "PORT is set to {port} for '{app}': a new release cannot start beside the live one on the same port, so its workers restart in place and requests fail meanwhile (unset PORT for zero-downtime deploys)"
                ));
            }
        } else if web_facing && behind_nginx && envfile::flag(&env, "PIKU_AUTO_RESTART", true) {
            // Each deploy's web workers get ports of their own (lib swap.rs).
        } else {
            let port = previous_port(root, app).map(Ok).unwrap_or_else(|| free_port(root, &[]))?;
            env.insert("PORT".into(), port.to_string());
        }
        // Defaults, which the operator may change server-wide in $PIKU_ROOT/settings.
        env.entry("BIND_ADDRESS".into()).or_insert_with(|| "127.0.0.1".into());
        env.entry("NGINX_IPV4_ADDRESS".into()).or_insert_with(|| server.get_or("NGINX_IPV4_ADDRESS", "0.0.0.0"));
        let no_ipv6 = env.get("DISABLE_IPV6").cloned().or_else(|| server.get("DISABLE_IPV6"));
        if no_ipv6.is_some_and(|v| envfile::is_true(&v)) {
            env.remove("NGINX_IPV6_ADDRESS");
        } else {
            env.entry("NGINX_IPV6_ADDRESS".into()).or_insert_with(|| server.get_or("NGINX_IPV6_ADDRESS", "[::]"));
        }
    }
    if let Some(port) = env.get("PORT") {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::new(format!("PORT of '{app}' is {port:?}, not a TCP port number (1-65535)")))?;
    }
    Ok(env)
}

/// `set --stdin`: the pairs as the front door sends them (bounded), never in argv.
fn pairs_from_stdin(app: &AppName, extra: &[String]) -> Result<String> {
    if !extra.is_empty() {
        return Err(Error::usage(format!("set --stdin {app} takes its KEY=VALUE pairs from stdin only")));
    }
    let input = piku::limits::read_stdin("the KEY=VALUE pairs on stdin")?;
    String::from_utf8(input).map_err(|_| Error::usage(format!("the values for '{app}' on stdin are not UTF-8; nothing was changed")))
}

/// The server's bounds on what an app's config may ask for (lib limits):
/// PIKU_KEEP_RELEASES, UWSGI_PROCESSES and the worker processes the
/// release would run with the counts of `ps:scale`.
fn check_limits(root: &Root, app: &AppName, env: &Env, procfile: &piku::procfile::Procfile) -> Result<()> {
    let context = |e: Error| e.context(format!("the config of '{app}'"));
    piku::limits::keep_releases(env.get("PIKU_KEEP_RELEASES").map(String::as_str)).map_err(context)?;
    let counts = piku::scaling::read_scaling(root, app)?;
    let wanted: std::collections::BTreeMap<String, u32> = procfile.workers().map(|w| (w.kind.clone(), counts.get(&w.kind).copied().unwrap_or(1))).collect();
    piku::limits::check_workers(root, app.as_str(), env, &wanted).map_err(context)
}

/// restart and rollback: the release's own resolved environment. A release
/// resolved by an older version kept a PORT of its colour; behind nginx,
/// unless the user set PORT, its workers now get ports of their own.
fn recolour(root: &Root, rel: &Release) -> Result<()> {
    let app = &rel.app;
    let mut env = envfile::read_literal(&rel.fact_file("env"))?
        .ok_or_else(|| Error::new(format!("release {} of '{app}' has no resolved environment; it cannot be made live again without a deploy", rel.id)))?;
    let mut user = Env::new();
    envfile::read_into(&mut user, &rel.dir.join("ENV"), true)?;
    envfile::read_into(&mut user, &root.user_env_file(app), true)?;
    let behind_nginx = env.get("NGINX_SERVER_NAME").is_some_and(|n| !n.trim().is_empty());
    if env.contains_key("PORT") && !user.contains_key("PORT") && behind_nginx && envfile::flag(&env, "PIKU_AUTO_RESTART", true) {
        env.remove("PORT");
        write_env(&rel.fact_file("env"), &env)?;
    }
    Ok(())
}

/// The port the live release used, so a redeploy keeps it.
fn previous_port(root: &Root, app: &AppName) -> Option<u16> {
    let live = envfile::read_literal(&root.live_env_file(app)).ok()??;
    live.get("PORT")?.parse().ok()
}

fn free_port(root: &Root, taken: &[u16]) -> Result<u16> {
    piku::swap::free_port(root, taken)
}

fn write_env(path: &std::path::Path, env: &Env) -> Result<()> {
    atomic::write_file(path, envfile::render(env)?.as_bytes(), 0o600)
}

enum Which {
    User,
    Live,
}

fn show(root: &Root, app: &AppName, which: Which, json: bool) -> Result<()> {
    let path = match which {
        Which::User => root.user_env_file(app),
        Which::Live => root.live_env_file(app),
    };
    let env = envfile::read_literal(&path)?;
    if json {
        output::data(output::json_object(env.iter().flatten()));
        return Ok(());
    }
    match (env, which) {
        (Some(env), _) => {
            for (k, v) in &env {
                output::data(format!("{k}={v}"));
            }
            Ok(())
        }
        (None, Which::User) => Ok(()), // no overrides: nothing to print
        (None, Which::Live) => Err(Error::new(format!("app '{app}' has no live configuration yet; push to deploy it"))),
    }
}

fn get(root: &Root, app: &AppName, key: &str) -> Result<()> {
    let env = envfile::read_literal(&root.user_env_file(app))?.unwrap_or_default();
    match env.get(key) {
        Some(v) => {
            output::data(v);
            Ok(())
        }
        None => Err(Error::new(format!("{key} is not set for '{app}'"))),
    }
}

fn set(root: &Root, app: &AppName, pairs: &[&str]) -> Result<()> {
    let mut env = envfile::read_literal(&root.user_env_file(app))?.unwrap_or_default();
    let mut parsed = Vec::new();
    for pair in pairs {
        let (k, v) = envfile::split_assignment(pair).map_err(|why| Error::new(format!("cannot set {pair:?} for '{app}': {why}; nothing was changed")))?;
        parsed.push((k, v));
    }
    for (k, v) in parsed {
        output::step(format!("Setting {k}={v} for '{app}'"));
        env.insert(k, v);
    }
    save_user_env(root, app, &env)
}

/// Write envs/<app>/ENV, keeping the previous one for `restore`.
fn save_user_env(root: &Root, app: &AppName, env: &Env) -> Result<()> {
    piku::paths::create_private_dir(&root.env_dir(app))?;
    let path = root.user_env_file(app);
    let before = fs::read(&path).unwrap_or_default();
    atomic::write_file(&backup_file(root, app), &before, 0o600)?;
    write_env(&path, env)
}

fn backup_file(root: &Root, app: &AppName) -> std::path::PathBuf {
    root.env_dir(app).join(".ENV.before")
}

fn restore(root: &Root, app: &AppName) -> Result<()> {
    let backup = backup_file(root, app);
    let before = fs::read(&backup)?;
    if before.is_empty() {
        atomic::remove_file(&root.user_env_file(app))?;
    } else {
        atomic::write_file(&root.user_env_file(app), &before, 0o600)?;
    }
    atomic::remove_file(&backup)?;
    output::step(format!("The config of '{app}' is back as it was"));
    Ok(())
}

fn unset(root: &Root, app: &AppName, keys: &[&str]) -> Result<()> {
    let mut env = envfile::read_literal(&root.user_env_file(app))?.unwrap_or_default();
    for key in keys {
        if !envfile::is_valid_key(key) {
            return Err(Error::new(format!("{key:?} is not a variable name; nothing was changed")));
        }
    }
    for key in keys {
        if env.remove(*key).is_some() {
            output::step(format!("Unsetting {key} for '{app}'"));
        } else {
            output::warn(format!("{key} was not set for '{app}'"));
        }
    }
    save_user_env(root, app, &env)
}

/// Remove the app's config files and then envs/<app> itself.
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    release::remove_facts(root, app, "env", true)?;
    let dir = root.env_dir(app);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
