//! The app's settings: config, config:get, config:set, config:unset,
//! config:live. piku-config owns envs/<app>/; a change is applied by
//! redeploying the live release without rebuilding.

use crate::commands::Command;
use crate::{Ctx, exec, releases, run_tool};
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::lock::AppLock;
use piku::{output, paths, release};
use std::process::Command as Process;

fn show(ctx: &Ctx, verb: &str, app: &str, json: bool) -> Result<()> {
    let app = release::existing_app(&ctx.root, app)?;
    exec(Process::new(paths::tool("piku-config")).arg(verb).arg(app.as_str()).args(json.then_some("--json")))
}

/// show the app's own settings (envs/<app>/ENV)
#[derive(FromArgs)]
#[argh(subcommand, name = "config", help_triggers("-h", "--help"))]
#[argh(example = "piku config hello", example = "piku config hello --json")]
#[argh(note = "These are the values set with config:set; config:live shows everything the app runs with.")]
pub struct Show {
    /// the app
    #[argh(positional)]
    app: String,
    /// as one JSON object of KEY: value
    #[argh(switch)]
    json: bool,
}

impl Command for Show {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        show(ctx, "show", &self.app, self.json)
    }
}

/// show the environment the app runs with
#[derive(FromArgs)]
#[argh(subcommand, name = "config:live", help_triggers("-h", "--help"))]
#[argh(example = "piku config:live hello --json")]
#[argh(note = "The repository's ENV, the config:set values and what piku adds (PORT, ...), as the live workers see them.")]
pub struct Live {
    /// the app
    #[argh(positional)]
    app: String,
    /// as one JSON object of KEY: value
    #[argh(switch)]
    json: bool,
}

impl Command for Live {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        show(ctx, "live", &self.app, self.json)
    }
}

/// print one setting (exit 1 if unset)
#[derive(FromArgs)]
#[argh(subcommand, name = "config:get", help_triggers("-h", "--help"))]
#[argh(example = "piku config:get hello DATABASE_URL")]
pub struct Get {
    /// the app
    #[argh(positional)]
    app: String,
    /// the setting's name
    #[argh(positional)]
    key: String,
}

impl Command for Get {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let app = release::existing_app(&ctx.root, &self.app)?;
        exec(Process::new(paths::tool("piku-config")).args(["get", app.as_str(), "--", &self.key]))
    }
}

/// set settings, then apply them without rebuilding
#[derive(FromArgs)]
#[argh(subcommand, name = "config:set", help_triggers("-h", "--help"))]
#[argh(example = "piku config:set hello DEBUG=false 'GREETING=hello world'", example = "piku config:set hello --no-restart KEY=value")]
#[argh(note = "The live release is redeployed with the new settings (no rebuild); if that fails, the old settings are put back and the command exits 1.")]
pub struct Set {
    /// the app
    #[argh(positional)]
    app: String,
    /// KEY=VALUE, one word each (quote values with spaces)
    #[argh(positional)]
    pairs: Vec<String>,
    /// only store; the change applies at the next deploy or restart
    #[argh(switch)]
    no_restart: bool,
}

impl Command for Set {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        change(ctx, &self.app, "set", &self.pairs, self.no_restart)
    }
}

/// unset settings, then apply without rebuilding
#[derive(FromArgs)]
#[argh(subcommand, name = "config:unset", help_triggers("-h", "--help"))]
#[argh(example = "piku config:unset hello DEBUG")]
#[argh(note = "Applied like config:set, and undone if applying fails.")]
pub struct Unset {
    /// the app
    #[argh(positional)]
    app: String,
    /// the settings' names
    #[argh(positional)]
    keys: Vec<String>,
    /// only store; the change applies at the next deploy or restart
    #[argh(switch)]
    no_restart: bool,
}

impl Command for Unset {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        change(ctx, &self.app, "unset", &self.keys, self.no_restart)
    }
}

/// config:set / config:unset: store the change, then apply it by redeploying
/// the live release without rebuilding; if applying fails, put the old
/// config back, so a bad value never leaves the app half-configured.
fn change(ctx: &Ctx, app: &str, verb: &str, items: &[String], no_restart: bool) -> Result<()> {
    let root = &ctx.root;
    let app = release::existing_app(root, app)?;
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    if items.is_empty() {
        return Err(Error::usage(format!("config:{verb} needs at least one {}", if verb == "set" { "KEY=VALUE" } else { "KEY" })));
    }
    {
        let _lock = AppLock::acquire(root, &app)?;
        store(&app, verb, &items)?;
    }
    if no_restart {
        output::step(format!("Stored; it applies at the next deploy or restart of '{app}'"));
        return Ok(());
    }
    let Some(live) = release::live_id(root, &app) else {
        output::step(format!("'{app}' has no live release; the config applies at the first deploy"));
        return Ok(());
    };
    if let Err(e) = releases::run_chain(root, &app, &live, false) {
        let _lock = AppLock::acquire(root, &app)?;
        run_tool("piku-config", &["restore", app.as_str()])?;
        return Err(Error::new(format!("{}; the config change was not applied and was undone", e.message)));
    }
    Ok(())
}

/// Store a config change with piku-config. Values go on its stdin, NUL
/// between pairs (a byte no argument can hold), never in its argv, which
/// `ps` shows every user of the machine.
fn store(app: &piku::AppName, verb: &str, items: &[&str]) -> Result<()> {
    if verb != "set" {
        return run_tool("piku-config", &[&[verb, app.as_str(), "--"], items].concat());
    }
    let mut child = Process::new(paths::tool("piku-config"))
        .args(["set", "--stdin", app.as_str()])
        .stdin(std::process::Stdio::piped())
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
