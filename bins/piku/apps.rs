//! The apps and their workers: apps, ps, ps:scale, logs, stop, start, run,
//! destroy, setup, and git's two commands. Each hands its work to the tool
//! that owns it.

use crate::commands::Command;
use crate::{Ctx, exec, run_tool};
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::lock::AppLock;
use piku::release::{self, Release};
use piku::{AppName, envfile, output, paths, vassals};
use std::process::Command as Process;

/// Hand a command for an existing app to the tool that owns it.
fn tool_for_app(ctx: &Ctx, tool: &str, verb: &str, app: &str, rest: &[&str]) -> Result<()> {
    let app = release::existing_app(&ctx.root, app)?;
    exec(Process::new(paths::tool(tool)).arg(verb).arg(app.as_str()).args(rest))
}

/// list the apps; * marks those with running workers
#[derive(FromArgs)]
#[argh(subcommand, name = "apps", help_triggers("-h", "--help"))]
#[argh(example = "piku apps", example = "piku apps --json")]
#[argh(note = "A key limited to some apps (setup:ssh --apps) sees only those.")]
pub struct Apps {
    /// as JSON: [{{"name": ..., "running": true|false}}]
    #[argh(switch)]
    json: bool,
}

impl Command for Apps {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let root = &ctx.root;
        let mut names: Vec<String> = ["apps", "repos"]
            .iter()
            .filter_map(|d| std::fs::read_dir(root.dir(d)).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| AppName::parse(n).is_ok() && ctx.access.allows(n))
            .collect();
        names.sort();
        names.dedup();
        let enabled = root.dir("uwsgi-enabled");
        let mut rows = Vec::new();
        for name in names {
            let app = AppName::parse(&name)?;
            rows.push((name, !vassals::app_vassals(root, &app, &enabled)?.is_empty()));
        }
        if self.json {
            let items: Vec<String> = rows.iter().map(|(n, r)| format!("{{\"name\":{},\"running\":{r}}}", output::json_string(n))).collect();
            output::data(format!("[{}]", items.join(",")));
            return Ok(());
        }
        if rows.is_empty() {
            output::step("There are no applications deployed.");
        }
        for (name, running) in rows {
            output::data(format!("{}{name}", if running { "*" } else { " " }));
        }
        Ok(())
    }
}

/// remove an app (its data/ and cache/ are kept)
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"))]
#[argh(example = "piku destroy hello")]
#[argh(note = "Stops its workers, removes its nginx site, releases, config, logs and git repository. data/<app> and cache/<app> stay; remove them by hand if you are sure.")]
pub struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
    /// no final backup of its add-ons (PostgreSQL, Redis) before they are dropped
    #[argh(switch)]
    no_backup: bool,
}

impl Command for Destroy {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let (root, app) = (&ctx.root, release::existing_app(&ctx.root, &self.app)?);
        let _lock = AppLock::acquire(root, &app)?;
        output::step(format!("Destroying '{app}'"));
        // The add-ons first, after a final backup each into data/<app>/backups
        // (a failing backup stops the destroy before anything is removed).
        run_tool("piku-addons", &[&["destroy-app", app.as_str()][..], if self.no_backup { &["--no-backup"][..] } else { &[][..] }].concat())?;
        for tool in ["piku-uwsgi", "piku-nginx", "piku-build", "piku-config", "piku-receive"] {
            run_tool(tool, &["destroy", app.as_str()])?;
        }
        for kept in [root.data_dir(&app), root.cache_dir(&app)] {
            if kept.exists() {
                output::warn(format!("Kept {} (remove it by hand if you are sure)", kept.display()));
            }
        }
        Ok(())
    }
}

/// stop the app's workers (they stay stopped until start or a deploy)
#[derive(FromArgs)]
#[argh(subcommand, name = "stop", help_triggers("-h", "--help"))]
#[argh(example = "piku stop hello")]
pub struct Stop {
    /// the app
    #[argh(positional)]
    app: String,
}

impl Command for Stop {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        tool_for_app(ctx, "piku-uwsgi", "stop", &self.app, &[])
    }
}

/// start the app's workers again
#[derive(FromArgs)]
#[argh(subcommand, name = "start", help_triggers("-h", "--help"))]
#[argh(example = "piku start hello")]
pub struct Start {
    /// the app
    #[argh(positional)]
    app: String,
}

impl Command for Start {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        tool_for_app(ctx, "piku-uwsgi", "start", &self.app, &[])
    }
}

/// worker counts, and whether each worker runs
#[derive(FromArgs)]
#[argh(subcommand, name = "ps", help_triggers("-h", "--help"))]
#[argh(example = "piku ps hello", example = "piku ps hello --json")]
pub struct Ps {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON: {{"<kind>": {{"count": N, "workers": [{{"name": ..., "state": ...}}]}}}}
    #[argh(switch)]
    json: bool,
}

impl Command for Ps {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        tool_for_app(ctx, "piku-uwsgi", "ps", &self.app, if self.json { &["--json"] } else { &[] })
    }
}

/// change worker counts (no rebuild)
#[derive(FromArgs)]
#[argh(subcommand, name = "ps:scale", help_triggers("-h", "--help"))]
#[argh(example = "piku ps:scale hello web=2 worker=0")]
#[argh(note = "The counts are kept in envs/<app>/SCALING and applied at once: new web workers start beside the old ones and take over when healthy.")]
pub struct Scale {
    /// the app
    #[argh(positional)]
    app: String,
    /// KIND=N, for each kind of worker to change
    #[argh(positional)]
    counts: Vec<String>,
}

impl Command for Scale {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let (root, app) = (&ctx.root, release::existing_app(&ctx.root, &self.app)?);
        if self.counts.is_empty() {
            return Err(Error::usage(format!("ps:scale {app} needs at least one KIND=N, e.g. ps:scale {app} web=2")));
        }
        let counts: Vec<&str> = self.counts.iter().map(String::as_str).collect();
        // Store the counts, then apply them through the deploy chain (the
        // swap: new workers checked, then switched to; no rebuild).
        {
            let _lock = AppLock::acquire(root, &app)?;
            run_tool("piku-uwsgi", &[&["scale", app.as_str(), "--"], counts.as_slice()].concat())?;
        }
        let live = Release::live_or_err(root, &app)?;
        crate::releases::run_chain(root, &app, &live.id, true)
    }
}

/// show the workers' logs, then follow them
#[derive(FromArgs)]
#[argh(subcommand, name = "logs", help_triggers("-h", "--help"))]
#[argh(example = "piku logs hello", example = "piku logs hello web -n 100 --no-follow")]
pub struct Logs {
    /// the app
    #[argh(positional)]
    app: String,
    /// only this kind of worker (web, worker, ...)
    #[argh(positional)]
    kind: Option<String>,
    /// how many lines of each log to show first (20)
    #[argh(option, short = 'n')]
    lines: Option<usize>,
    /// show and exit, do not follow
    #[argh(switch)]
    no_follow: bool,
}

impl Command for Logs {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let mut rest: Vec<String> = Vec::new();
        if let Some(n) = self.lines {
            rest.extend(["-n".to_string(), n.to_string()]);
        }
        if self.no_follow {
            rest.push("--no-follow".into());
        }
        if let Some(kind) = self.kind {
            rest.extend(["--".to_string(), kind]);
        }
        tool_for_app(ctx, "piku-uwsgi", "logs", &self.app, &rest.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// run a command in the app's tree and environment
#[derive(FromArgs)]
#[argh(subcommand, name = "run", help_triggers("-h", "--help"))]
#[argh(example = "piku run hello -- ls -al", example = "piku run hello python manage.py migrate")]
#[argh(note = "The command runs in the live release's directory with its environment, through sh -c when it is more than one word; its exit status is piku's. Everything after the app belongs to the command; a first -- is dropped. Over ssh, use ssh -t for a terminal.")]
pub struct Run {
    /// the app
    #[argh(positional)]
    app: String,
    /// the command and its arguments
    #[argh(positional)]
    command: Vec<String>,
}

impl Command for Run {
    const RAW_TAIL: bool = true;
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let (root, app) = (&ctx.root, release::existing_app(&ctx.root, &self.app)?);
        let env = envfile::read_literal(&root.live_env_file(&app))?
            .ok_or_else(|| Error::new(format!("app '{app}' has no live environment yet; push to deploy it")))?;
        // `run app -- ls -al` and `run app ls -- -al` both run `ls -al`
        // (commands.rs drops the first `--`, as piku's command line does).
        let cmd = self.command;
        if cmd.is_empty() {
            return Err(Error::usage(format!("run {app} needs a command, e.g. run {app} -- ls -al")));
        }
        let line = if cmd.len() == 1 { cmd[0].clone() } else { shell_words::join(&cmd) };
        exec(Process::new("sh").args(["-c", &line]).current_dir(root.app_dir(&app)).envs(&env))
    }
}

/// create ~/.piku and the uWSGI emperor's config
#[derive(FromArgs)]
#[argh(subcommand, name = "setup", help_triggers("-h", "--help"))]
#[argh(example = "piku setup")]
#[argh(note = "Safe to run again: it creates only what is missing.")]
pub struct Setup {}

impl Command for Setup {
    fn run(self, ctx: &Ctx) -> Result<()> {
        for d in paths::ROOT_DIRS {
            let dir = ctx.root.dir(d);
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
        crate::keys::upgrade_keys()
    }
}

/// receive a push (run by git push; creates the app on its first push)
#[derive(FromArgs)]
#[argh(subcommand, name = "git-receive-pack", help_triggers("-h", "--help"))]
#[argh(example = "git push piku@server:hello main")]
pub struct ReceivePack {
    /// the app, as git sends it ('hello' or '/hello')
    #[argh(positional)]
    app: String,
}

impl Command for ReceivePack {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, _ctx: &Ctx) -> Result<()> {
        serve_git("git-receive-pack", &self.app)
    }
}

/// send an app's repository (run by git clone and git fetch)
#[derive(FromArgs)]
#[argh(subcommand, name = "git-upload-pack", help_triggers("-h", "--help"))]
#[argh(example = "git clone piku@server:hello")]
pub struct UploadPack {
    /// the app, as git sends it ('hello' or '/hello')
    #[argh(positional)]
    app: String,
}

impl Command for UploadPack {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, _ctx: &Ctx) -> Result<()> {
        serve_git("git-upload-pack", &self.app)
    }
}

fn serve_git(verb: &str, raw: &str) -> Result<()> {
    let app = AppName::parse(crate::git_path_to_app(raw))?;
    exec(Process::new(paths::tool("piku-receive")).args(["serve", verb, app.as_str()]))
}
