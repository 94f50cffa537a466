//! piku: the front door. It is the ssh forced command in authorized_keys (it
//! reads the command from $SSH_ORIGINAL_COMMAND, split like a shell would,
//! never through a shell: lib forced_command) and the local CLI; it parses
//! piku's command line and runs the tool that owns the work.

use piku::error::{Error, Result};
use piku::lock::AppLock;
use piku::release::{self, Release};
use piku::authorized_keys::{self, AuthorizedKeys, Change};
use piku::{AppName, Root, envfile, limits, output, paths, process, vassals};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

const HELP: &str = "\
Usage: piku <command> [<app>] [args]    (over ssh: ssh piku@server <command> ...)

Apps:
  apps                          list apps; * marks those with running workers
  deploy <app>                  rebuild and restart the live release
  releases <app> [--json]       the kept releases: id, commit, date, status, message
  rollback <app> [<id>]         make a kept release live again (default: the previous one)
  destroy <app>                 remove an app (its data/ and cache/ are kept)
  stop|start|restart <app>      stop, start or restart the app's workers (restart: new
                                web workers beside the old, switched when healthy)
  ps <app> [--json]             worker counts, and whether each worker runs
  ps:scale <app> KIND=N...      change worker counts (no rebuild)
  logs <app> [KIND] [-n N] [--no-follow]   show the workers' logs, then follow
  run <app> <cmd>...            run a command in the app's tree and environment

Config:
  config <app> [--json]         show the app's own settings (envs/<app>/ENV)
  config:get <app> KEY          print one setting (exit 1 if unset)
  config:set <app> [--no-restart] KEY=VALUE...   set, then apply without rebuilding
  config:unset <app> [--no-restart] KEY...       unset, then apply
  config:live <app> [--json]    show the environment the app runs with

Server:
  setup                         create ~/.piku and the uWSGI emperor's config
  certs:renew [<app>...]        renew the TLS certificates that are due, reload nginx
  setup:ssh [--name NAME] [--apps APP,...] <pubkey-file|->
                                allow an ssh key (forced to this command),
                                optionally only for some existing apps
  help                          this text

git (used by git push / git clone):
  git-receive-pack <app>, git-upload-pack <app>
";

fn main() -> ExitCode {
    output::run_main("piku", |args| {
        let args = piku::forced_command::take_original_command()?.unwrap_or(args);
        // The tools live beside this binary; the hook and children find them on PATH.
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("PATH", format!("{}:{path}", paths::tools_dir().display())) };
        dispatch(&Root::from_env(), &args)
    })
}

fn dispatch(root: &Root, args: &[String]) -> Result<()> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let access = Access::from_env();
    access.check(root, &argv)?;
    match argv.as_slice() {
        [] | ["help" | "--help" | "-h"] => help(root),
        ["apps"] => apps(root, &access),
        ["setup"] => setup(root),
        ["setup:ssh", rest @ ..] if !rest.is_empty() => setup_ssh(rest),
        [verb @ ("git-receive-pack" | "git-upload-pack"), app] => {
            let app = AppName::parse(git_path_to_app(app))?;
            exec(Command::new(paths::tool("piku-receive")).args(["serve", verb, app.as_str()]))
        }
        ["config", app, rest @ ..] => tool_for_app(root, "piku-config", "show", app, rest),
        ["config:live", app, rest @ ..] => tool_for_app(root, "piku-config", "live", app, rest),
        ["config:get", app, key] => tool_for_app(root, "piku-config", "get", app, &["--", key]),
        ["config:set", app, rest @ ..] => change_config(root, app, "set", rest),
        ["config:unset", app, rest @ ..] => change_config(root, app, "unset", rest),
        ["deploy", app] => deploy(root, &release::existing_app(root, app)?),
        ["stop", app] => tool_for_app(root, "piku-uwsgi", "stop", app, &[]),
        ["start", app] => tool_for_app(root, "piku-uwsgi", "start", app, &[]),
        ["restart", app] => {
            let app = release::existing_app(root, app)?;
            let live = Release::live_or_err(root, &app)?;
            output::step(format!("Restarting '{app}'"));
            run_chain_with(root, &app, &live.id, true)
        }
        ["releases", app, rest @ ..] if rest.is_empty() || rest == ["--json"] => releases(root, &release::existing_app(root, app)?, !rest.is_empty()),
        ["rollback", app, rest @ ..] if rest.len() <= 1 => rollback(root, &release::existing_app(root, app)?, rest.first().copied()),
        ["run", app, cmd @ ..] if !cmd.is_empty() => run(root, &release::existing_app(root, app)?, cmd),
        ["ps", app, rest @ ..] => tool_for_app(root, "piku-uwsgi", "ps", app, rest),
        ["logs", app, rest @ ..] => tool_for_app(root, "piku-uwsgi", "logs", app, rest),
        ["ps:scale", app, pairs @ ..] if !pairs.is_empty() => scale(root, &release::existing_app(root, app)?, pairs),
        ["destroy", app] => destroy(root, &release::existing_app(root, app)?),
        ["certs:renew", apps @ ..] => exec(Command::new(paths::tool("piku-nginx")).arg("renew").args(apps)),
        [cmd, ..] if is_known(cmd) => Err(Error::usage(format!("wrong arguments for '{cmd}'; see 'help'"))),
        [cmd, rest @ ..] => match plugin(root, cmd) {
            Some(path) => exec(Command::new(path).args(rest).env("PIKU_ROOT", &root.root)),
            None => Err(Error::usage(format!("unknown command '{cmd}'; nothing was run. See 'help' for the commands"))),
        },
    }
}

/// What the ssh key may do: the forced command of a key added with
/// `setup:ssh --apps` sets PIKU_ALLOWED_APPS (and NAME), limiting it to those
/// existing apps: no other app, no new app, no server-wide command.
struct Access {
    name: String,
    apps: Option<Vec<String>>,
}

impl Access {
    fn from_env() -> Access {
        Access {
            name: std::env::var("NAME").unwrap_or_else(|_| "default".into()),
            apps: std::env::var("PIKU_ALLOWED_APPS").ok().map(|l| l.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect()),
        }
    }

    fn allows(&self, app: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.iter().any(|a| a == app))
    }

    fn check(&self, root: &Root, argv: &[&str]) -> Result<()> {
        let Some(apps) = &self.apps else { return Ok(()) };
        let refuse = |why: String| Err(Error::new(format!("the ssh key '{}' {why}; it may use: {}", self.name, apps.join(", "))));
        match argv {
            [] | ["help" | "--help" | "-h"] | ["apps"] => Ok(()),
            [cmd @ ("setup" | "setup:ssh" | "certs:renew"), ..] => refuse(format!("may not run server-wide commands such as '{cmd}'")),
            [cmd, app, ..] if is_known(cmd) => {
                let app = git_path_to_app(app);
                if !self.allows(app) {
                    return refuse(format!("may not use the app '{app}'"));
                }
                if *cmd == "git-receive-pack" && AppName::parse(app).is_ok_and(|a| !release::app_exists(root, &a)) {
                    return refuse(format!("may not create new apps ('{app}' does not exist)"));
                }
                Ok(())
            }
            [cmd, ..] if is_known(cmd) => Ok(()),
            [cmd, ..] => refuse(format!("may not run '{cmd}'")),
        }
    }
}

/// Our own tools are never plugins.
const TOOLS: &[&str] = &["receive", "build", "config", "uwsgi", "nginx"];

/// A server plugin, git-style: `piku foo` runs an executable `piku-foo` from
/// $PIKU_ROOT/plugins/, else from PATH.
fn plugin(root: &Root, cmd: &str) -> Option<std::path::PathBuf> {
    let valid = cmd.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && cmd.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
    if !valid || TOOLS.contains(&cmd) {
        return None;
    }
    let name = format!("piku-{cmd}");
    let local = root.dir("plugins").join(&name);
    if is_executable(&local) {
        return Some(local);
    }
    process::which(&name)
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The plugins `help` lists: `piku-*` executables in plugins/ and on PATH.
fn plugin_names(root: &Root) -> Vec<String> {
    let mut dirs = vec![root.dir("plugins")];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()))
        .filter(|e| is_executable(&e.path()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("piku-")).map(str::to_string))
        .filter(|n| !TOOLS.contains(&n.as_str()) && plugin(root, n).is_some())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn help(root: &Root) -> Result<()> {
    output::data(HELP.trim_end());
    let plugins = plugin_names(root);
    if !plugins.is_empty() {
        output::data("\nPlugins:");
        for p in plugins {
            output::data(format!("  {p}"));
        }
    }
    Ok(())
}

fn is_known(cmd: &str) -> bool {
    HELP.lines().any(|l| l.trim_start().split([' ', '|', ',']).any(|w| w == cmd))
}

/// `git-receive-pack 'hello'` arrives as `hello`, or `/hello` for ssh:// URLs.
fn git_path_to_app(raw: &str) -> &str {
    raw.strip_prefix('/').unwrap_or(raw)
}

fn exec(cmd: &mut Command) -> Result<()> {
    let err = cmd.exec();
    Err(Error::new(format!("could not run {}: {err}", cmd.get_program().to_string_lossy())))
}

fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(paths::tool(tool))
        .args(args)
        .status()
        .map_err(|e| Error::new(format!("could not run {tool}: {e}; is piku installed?")))?;
    if status.success() { Ok(()) } else { Err(Error { message: format!("{tool} failed"), code: status.code().unwrap_or(1).clamp(1, 255) as u8 }) }
}

/// Store a config change with piku-config. Values go on its stdin, NUL
/// between pairs (a byte no argument can hold), never in its argv, which
/// `ps` shows every user of the machine.
fn store_config(app: &AppName, verb: &str, items: &[&str]) -> Result<()> {
    if verb != "set" {
        return run_tool("piku-config", &[&[verb, app.as_str(), "--"], items].concat());
    }
    let mut child = Command::new(paths::tool("piku-config"))
        .args(["set", "--stdin", app.as_str()])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("could not run piku-config: {e}; is piku installed?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        // A write error shows as piku-config's own failure below.
        let _ = stdin.write_all(items.join("\0").as_bytes());
    }
    let status = child.wait().map_err(|e| Error::new(format!("piku-config: {e}")))?;
    if status.success() { Ok(()) } else { Err(Error { message: "piku-config failed".into(), code: status.code().unwrap_or(1).clamp(1, 255) as u8 }) }
}

/// Hand a command for an existing app to the tool that owns it.
fn tool_for_app(root: &Root, tool: &str, verb: &str, app: &str, rest: &[&str]) -> Result<()> {
    let app = release::existing_app(root, app)?;
    exec(Command::new(paths::tool(tool)).arg(verb).arg(app.as_str()).args(rest))
}

fn apps(root: &Root, access: &Access) -> Result<()> {
    let mut names: Vec<String> = ["apps", "repos"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.dir(d)).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| AppName::parse(n).is_ok() && access.allows(n))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        output::step("There are no applications deployed.");
    }
    let enabled = root.dir("uwsgi-enabled");
    for name in names {
        let app = AppName::parse(&name)?;
        let running = !vassals::app_vassals(root, &app, &enabled)?.is_empty();
        output::data(format!("{}{name}", if running { "*" } else { " " }));
    }
    Ok(())
}

fn setup(root: &Root) -> Result<()> {
    for d in paths::ROOT_DIRS {
        let dir = root.dir(d);
        if !dir.is_dir() {
            fs_err::create_dir_all(&dir)?;
            output::step(format!("Created {}", dir.display()));
        }
        // Also on a server set up before: what these hold is private.
        if paths::PRIVATE_DIRS.contains(d) {
            paths::create_private_dir(&dir)?;
        }
    }
    run_tool("piku-uwsgi", &["setup"])?;
    upgrade_keys()
}

/// Keys added by an older setup:ssh end their forced command in
/// `$SSH_ORIGINAL_COMMAND`: rewrite them to name no arguments (lib forced_command).
fn upgrade_keys() -> Result<()> {
    let auth = paths::home_dir().join(".ssh/authorized_keys");
    if !auth.exists() {
        return Ok(());
    }
    let door = std::env::current_exe().map_err(|e| Error::new(format!("cannot find this program's path: {e}")))?;
    let mut keys = match AuthorizedKeys::read(&auth) {
        Ok(keys) => keys,
        Err(e) => {
            output::warn(format!("{}; its keys were not checked for the old forced command", e.message));
            return Ok(());
        }
    };
    let n = keys.rewrite(|l| piku::forced_command::upgrade_line(l, &door));
    if n > 0 {
        keys.write(&auth)?;
        output::step(format!("Updated {n} key(s) in {}: the forced command no longer passes $SSH_ORIGINAL_COMMAND as arguments", auth.display()));
    }
    Ok(())
}

/// Add public keys to ~/.ssh/authorized_keys, forced to this front door,
/// optionally named and limited to some apps. A key already there is updated
/// in place, never added twice.
fn setup_ssh(args: &[&str]) -> Result<()> {
    let mut name = "default".to_string();
    let mut apps: Option<Vec<String>> = None;
    let mut file = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--name" => {
                let v = it.next().ok_or_else(|| Error::usage("--name needs a value"))?;
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
                    return Err(Error::usage(format!("--name {v:?}: use letters, digits, '.', '_', '-' and '@'")));
                }
                name = v.to_string();
            }
            "--apps" => {
                let v = it.next().ok_or_else(|| Error::usage("--apps needs a comma-separated list of apps"))?;
                let list: Vec<String> = v.split(',').filter(|a| !a.is_empty()).map(|a| AppName::parse(a).map(|a| a.to_string())).collect::<Result<_>>()?;
                if list.is_empty() {
                    return Err(Error::usage("--apps needs at least one app"));
                }
                apps = Some(list);
            }
            f if file.is_none() && (f == "-" || !f.starts_with('-')) => file = Some(f),
            other => return Err(Error::usage(format!("setup:ssh: unexpected argument {other:?}"))),
        }
    }
    let file = file.ok_or_else(|| Error::usage("setup:ssh needs a public key file, or - for stdin"))?;
    let bytes = if file == "-" {
        limits::read_stdin("the key on stdin")?
    } else {
        let f = std::fs::File::open(file).map_err(|e| Error::new(format!("cannot read public key file {file:?}: {e}")))?;
        limits::read_bounded(f, limits::MAX_STDIN_BYTES, &format!("the public key file {file:?}"))?
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::new(format!("{file:?} is not a public key (not UTF-8 text)")))?;
    let keys: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if keys.is_empty() {
        return Err(Error::new(format!("no public key found in {file:?}")));
    }
    let ssh_dir = paths::home_dir().join(".ssh");
    let auth = ssh_dir.join("authorized_keys");
    // Read whole or not at all: an unreadable or non-UTF-8 file is never rewritten.
    let mut file_keys = AuthorizedKeys::read(&auth)?;
    let door = std::env::current_exe().map_err(|e| Error::new(format!("cannot find this program's path: {e}")))?;
    for key in keys {
        let parsed = authorized_keys::parse_line(key)
            .ok_or_else(|| Error::new(format!("not a valid ssh public key: {:?}", key.chars().take(40).collect::<String>())))?;
        let fingerprint = fingerprint(&format!("{} {}", parsed.kind, parsed.body))?;
        let line = piku::forced_command::key_line(&door, &fingerprint, &name, apps.as_deref(), &parsed)?;
        match file_keys.upsert(&parsed.body, line) {
            Change::Unchanged => output::step(format!("Key {fingerprint} is already allowed")),
            Change::Updated => output::step(format!("Updated key {fingerprint} ({name})")),
            Change::Added => output::step(format!("Adding key {fingerprint} ({name}{})", apps.as_ref().map(|a| format!(", apps: {}", a.join(","))).unwrap_or_default())),
        }
    }
    fs_err::create_dir_all(&ssh_dir)?;
    fs_err::set_permissions(&ssh_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    file_keys.write(&auth)
}

/// The key's SHA256 fingerprint, which also proves it is a valid public key.
fn fingerprint(key: &str) -> Result<String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("cannot run ssh-keygen to check the key: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(format!("{key}\n").as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::new(format!("ssh-keygen: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().nth(1) {
        Some(fp) if out.status.success() && fp.starts_with("SHA256:") => Ok(fp.to_string()),
        _ => Err(Error::new(format!("not a valid ssh public key: {:?}", key.chars().take(40).collect::<String>()))),
    }
}

/// config:set / config:unset: store the change, then apply it by redeploying
/// the live release without rebuilding; if applying fails, put the old
/// config back, so a bad value never leaves the app half-configured.
fn change_config(root: &Root, app: &str, verb: &str, rest: &[&str]) -> Result<()> {
    let app = release::existing_app(root, app)?;
    let no_restart = rest.contains(&"--no-restart");
    let items: Vec<&str> = rest.iter().copied().filter(|a| *a != "--no-restart").collect();
    if items.is_empty() {
        return Err(Error::usage(format!("config:{verb} needs at least one {}", if verb == "set" { "KEY=VALUE" } else { "KEY" })));
    }
    {
        let _lock = AppLock::acquire(root, &app)?;
        store_config(&app, verb, &items)?;
    }
    if no_restart {
        output::step(format!("Stored; it applies at the next deploy or restart of '{app}'"));
        return Ok(());
    }
    let Some(live) = release::live_id(root, &app) else {
        output::step(format!("'{app}' has no live release; the config applies at the first deploy"));
        return Ok(());
    };
    if let Err(e) = run_chain(root, &app, &live) {
        let _lock = AppLock::acquire(root, &app)?;
        run_tool("piku-config", &["restore", app.as_str()])?;
        return Err(Error::new(format!("{}; the config change was not applied and was undone", e.message)));
    }
    Ok(())
}

fn deploy(root: &Root, app: &AppName) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    run_chain(root, app, &rel.id)
}

/// Run the deploy chain (hooks/post-receive) for an existing release.
fn run_chain(root: &Root, app: &AppName, id: &str) -> Result<()> {
    run_chain_with(root, app, id, false)
}

/// The chain; `reuse`: no build, the release as it was resolved (restart, rollback).
fn run_chain_with(root: &Root, app: &AppName, id: &str, reuse: bool) -> Result<()> {
    let hook = paths::hooks_dir().join("post-receive");
    let status = Command::new(&hook)
        .current_dir(root.repo_dir(app).is_dir().then(|| root.repo_dir(app)).unwrap_or_else(|| root.root.clone()))
        .env("PIKU_APP", app.as_str())
        .env("PIKU_RELEASE", id)
        .env("PIKU_REUSE", if reuse { "1" } else { "" })
        .env("PIKU_ROOT", &root.root)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::new(format!("cannot run the deploy chain {}: {e}; re-run install.sh", hook.display())))?;
    if status.success() { Ok(()) } else { Err(Error::new(format!("redeploying '{app}' failed ({})", process::describe_status(status)))) }
}

/// `run <app> cmd...`: in the live tree, with LIVE_ENV; its exit status is ours.
fn run(root: &Root, app: &AppName, cmd: &[&str]) -> Result<()> {
    let env = envfile::read_literal(&root.live_env_file(app))?
        .ok_or_else(|| Error::new(format!("app '{app}' has no live environment yet; push to deploy it")))?;
    // As piku's command line reads it, the first `--` only ends options:
    // `run app -- ls -al` and `run app ls -- -al` both run `ls -al`.
    let mut cmd = cmd.to_vec();
    if let Some(i) = cmd.iter().position(|w| *w == "--") {
        cmd.remove(i);
    }
    if cmd.is_empty() {
        return Err(Error::usage(format!("run {app} needs a command, e.g. run {app} -- ls -al")));
    }
    let line = if cmd.len() == 1 { cmd[0].to_string() } else { shell_words::join(&cmd) };
    exec(Command::new("sh").args(["-c", &line]).current_dir(root.app_dir(app)).envs(&env))
}

/// `ps:scale`: store the counts, then re-resolve ports and apply to the
/// workers and nginx; no rebuild.
fn scale(root: &Root, app: &AppName, pairs: &[&str]) -> Result<()> {
    let _lock = AppLock::acquire(root, app)?;
    run_tool("piku-uwsgi", &[&["scale", app.as_str(), "--"], pairs].concat())?;
    run_tool("piku-config", &["sync", app.as_str()])?;
    run_tool("piku-uwsgi", &["publish", app.as_str()])?;
    run_tool("piku-nginx", &["publish", app.as_str()])
}

/// `destroy`: each tool removes its own files; data/ and cache/ are kept.
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    let _lock = AppLock::acquire(root, app)?;
    output::step(format!("Destroying '{app}'"));
    run_tool("piku-uwsgi", &["destroy", app.as_str()])?;
    run_tool("piku-nginx", &["destroy", app.as_str()])?;
    run_tool("piku-build", &["destroy", app.as_str()])?;
    run_tool("piku-config", &["destroy", app.as_str()])?;
    run_tool("piku-receive", &["destroy", app.as_str()])?;
    for kept in [root.data_dir(app), root.cache_dir(app)] {
        if kept.exists() {
            output::warn(format!("Kept {} (remove it by hand if you are sure)", kept.display()));
        }
    }
    Ok(())
}

/// One kept release, as `releases` shows it.
struct ReleaseRow {
    id: String,
    commit: String,
    date: String,
    status: &'static str,
    message: String,
}

/// The kept releases, newest first. Status: live; previous (has been live);
/// deploying (the newest, while a deploy holds the lock); failed (never went live).
fn release_rows(root: &Root, app: &AppName) -> Result<Vec<ReleaseRow>> {
    let live = release::live_id(root, app);
    let ids = release::list_ids(root, app);
    // A deploy holds the app's lock for its whole chain.
    let deploying = std::fs::File::open(root.lock_file(app)).is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)));
    let mut rows = Vec::new();
    for (i, id) in ids.iter().rev().enumerate() {
        let rel = Release::open(root, app, id)?;
        let facts = envfile::read_literal(&rel.fact_file("release"))?.unwrap_or_default();
        let status = if live.as_deref() == Some(id.as_str()) {
            "live"
        } else if facts.contains_key("LAST_LIVE") {
            "previous"
        } else if i == 0 && deploying {
            "deploying"
        } else {
            "failed"
        };
        let date = facts.get("DATE").and_then(|d| d.parse::<u64>().ok()).map(iso_utc).unwrap_or_default();
        rows.push(ReleaseRow {
            id: id.clone(),
            commit: facts.get("COMMIT").map(|c| c.chars().take(7).collect()).unwrap_or_default(),
            date,
            status,
            message: facts.get("MESSAGE").cloned().unwrap_or_default(),
        });
    }
    Ok(rows)
}

/// `2026-11-25T04:18:00Z`
fn iso_utc(secs: u64) -> String {
    let s = release::utc_stamp(secs);
    format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15])
}

fn releases(root: &Root, app: &AppName, json: bool) -> Result<()> {
    let rows = release_rows(root, app)?;
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"id\":{},\"commit\":{},\"date\":{},\"status\":{},\"message\":{}}}",
                    output::json_string(&r.id),
                    output::json_string(&r.commit),
                    output::json_string(&r.date),
                    output::json_string(r.status),
                    output::json_string(&r.message)
                )
            })
            .collect();
        output::data(format!("[{}]", items.join(",")));
        return Ok(());
    }
    if rows.is_empty() {
        output::step(format!("'{app}' has no releases yet"));
    }
    for r in rows {
        // A commit message is the pusher's text: never raw control characters to a terminal.
        output::data(format!("{}  {}  {}  {:<9}  {}", r.id, r.commit, r.date, r.status, output::printable(&r.message)));
    }
    Ok(())
}

/// `rollback <app> [id]`: a kept release goes live again through the same
/// swap as a deploy (new workers beside the old, switched when healthy),
/// without a build, with the environment it was resolved with.
fn rollback(root: &Root, app: &AppName, id: Option<&str>) -> Result<()> {
    let rows = release_rows(root, app)?;
    let live = release::live_id(root, app);
    let target = match id {
        Some(id) => {
            Release::open(root, app, id)?;
            if live.as_deref() == Some(id) {
                return Err(Error::new(format!("release {id} of '{app}' is already live; nothing to roll back")));
            }
            id.to_string()
        }
        None => {
            let live_pos = rows.iter().position(|r| r.status == "live").unwrap_or(0);
            rows.iter().skip(live_pos + 1).find(|r| r.status == "previous").map(|r| r.id.clone()).ok_or_else(|| {
                Error::new(format!("'{app}' has no earlier release that was live to roll back to; see 'releases {app}'"))
            })?
        }
    };
    output::step(format!("Rolling '{app}' back to release {target}"));
    run_chain_with(root, app, &target, true)
}
