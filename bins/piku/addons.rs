//! The add-on commands (`addons`, `addons:create`, ...): entries of the
//! command table like any other, each handed to piku-addons, which owns
//! the add-ons (`addons:create app postgres` runs
//! `piku-addons create app -- postgres`).

use crate::commands::Command;
use crate::{Ctx, exec};
use argh::FromArgs;
use piku::error::Result;
use piku::{paths, release};
use std::process::Command as Process;

/// Run `piku-addons <sub> <app> [flags] -- [words]` for an existing app:
/// the user's words after `--`, so argh never takes them for its flags.
fn hand_over(ctx: &Ctx, sub: &str, app: &str, flags: &[(&str, bool)], words: &[&str]) -> Result<()> {
    let app = release::existing_app(&ctx.root, app)?;
    let mut cmd = Process::new(paths::tool("piku-addons"));
    cmd.args([sub, app.as_str()]).args(flags.iter().filter(|(_, on)| *on).map(|(f, _)| *f)).arg("--").args(words);
    exec(&mut cmd)
}

/// the app's add-ons (PostgreSQL, Redis) and their state
#[derive(FromArgs)]
#[argh(subcommand, name = "addons", help_triggers("-h", "--help"))]
#[argh(example = "piku addons hello", example = "piku addons hello --json")]
pub struct List {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON, one object
    #[argh(switch)]
    json: bool,
}

impl Command for List {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "list", &self.app, &[("--json", self.json)], &[])
    }
}

/// give the app a PostgreSQL database or a Redis instance of its own
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:create", help_triggers("-h", "--help"))]
#[argh(example = "piku addons:create hello postgres", example = "piku addons:create hello redis")]
#[argh(note = "Adds DATABASE_URL and PG* (postgres) or REDIS_URL (redis) to the app's config and redeploys it. Needs install.sh --with postgres,redis on the server.")]
pub struct Create {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
    /// store only: the app gets the variables at its next deploy
    #[argh(switch)]
    no_restart: bool,
}

impl Command for Create {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "create", &self.app, &[("--no-restart", self.no_restart)], &[&self.addon])
    }
}

/// remove an add-on from the app (a final backup first)
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:destroy", help_triggers("-h", "--help"))]
#[argh(example = "piku addons:destroy hello redis", example = "piku addons:destroy hello postgres --keep-data")]
pub struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
    /// keep the database (or Redis's data): only detach it from the app
    #[argh(switch)]
    keep_data: bool,
    /// no final backup
    #[argh(switch)]
    no_backup: bool,
    /// do not redeploy the app without the add-on's variables
    #[argh(switch)]
    no_restart: bool,
}

impl Command for Destroy {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let flags = [("--keep-data", self.keep_data), ("--no-backup", self.no_backup), ("--no-restart", self.no_restart)];
        hand_over(ctx, "destroy", &self.app, &flags, &[&self.addon])
    }
}

/// back up the app's add-ons now (into data/<app>/backups)
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:backup", help_triggers("-h", "--help"))]
#[argh(example = "piku addons:backup hello", example = "piku addons:backup hello postgres")]
pub struct Backup {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis (default: every add-on of the app)
    #[argh(positional)]
    addon: Option<String>,
}

impl Command for Backup {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "backup", &self.app, &[], self.addon.as_deref().as_slice())
    }
}

/// the app's kept backups, newest first
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:backups", help_triggers("-h", "--help"))]
#[argh(example = "piku addons:backups hello")]
pub struct Backups {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON
    #[argh(switch)]
    json: bool,
}

impl Command for Backups {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "backups", &self.app, &[("--json", self.json)], &[])
    }
}

/// restore a backup into the live add-on (after a fresh backup of it)
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:restore", help_triggers("-h", "--help"))]
#[argh(example = "piku addons:restore hello postgres postgres_20261208T050000Z_20261208-050000-1a2b3c4_manual.pgdump")]
pub struct Restore {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
    /// a name from addons:backups <app>
    #[argh(positional)]
    backup: String,
}

impl Command for Restore {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "restore", &self.app, &[], &[&self.addon, &self.backup])
    }
}

/// psql (or redis-cli) on the app's add-on; use ssh -t
#[derive(FromArgs)]
#[argh(subcommand, name = "addons:shell", help_triggers("-h", "--help"))]
#[argh(example = "ssh -t piku@server addons:shell hello postgres")]
pub struct Shell {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
}

impl Command for Shell {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        hand_over(ctx, "shell", &self.app, &[], &[&self.addon])
    }
}
