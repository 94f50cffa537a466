//! Releases and the deploy chain: deploy, restart, releases, rollback. Each
//! runs hooks/post-receive (the one swap) for a kept release.

use crate::Ctx;
use crate::commands::Command;
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::{AppName, Root, envfile, output, paths, process};
use std::process::{Command as Process, Stdio};

/// Run the deploy chain (hooks/post-receive) for an existing release;
/// `reuse`: no build, the release as it was resolved (restart, rollback).
pub fn run_chain(root: &Root, app: &AppName, id: &str, reuse: bool) -> Result<()> {
    let hook = paths::hooks_dir().join("post-receive");
    let status = Process::new(&hook)
        .current_dir(if root.repo_dir(app).is_dir() { root.repo_dir(app) } else { root.root.clone() })
        .env("PIKU_APP", app.as_str())
        .env("PIKU_RELEASE", id)
        .env("PIKU_REUSE", if reuse { "1" } else { "" })
        .env("PIKU_ROOT", &root.root)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::new(format!("cannot run the deploy chain {}: {e}; re-run install.sh", hook.display())))?;
    if status.success() { Ok(()) } else { Err(Error::new(format!("redeploying '{app}' failed ({})", process::describe_status(status)))) }
}

/// rebuild and restart the live release
#[derive(FromArgs)]
#[argh(subcommand, name = "deploy", help_triggers("-h", "--help"))]
#[argh(example = "piku deploy hello")]
#[argh(note = "The same chain as a push, for the commit that is live: build, config, new workers beside the old, switched when healthy.")]
pub struct Deploy {
    /// the app
    #[argh(positional)]
    app: String,
}

impl Command for Deploy {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let app = release::existing_app(&ctx.root, &self.app)?;
        let rel = Release::live_or_err(&ctx.root, &app)?;
        run_chain(&ctx.root, &app, &rel.id, false)
    }
}

/// restart the app's workers (new web workers beside the old, switched when healthy)
#[derive(FromArgs)]
#[argh(subcommand, name = "restart", help_triggers("-h", "--help"))]
#[argh(example = "piku restart hello")]
pub struct Restart {
    /// the app
    #[argh(positional)]
    app: String,
}

impl Command for Restart {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let app = release::existing_app(&ctx.root, &self.app)?;
        let live = Release::live_or_err(&ctx.root, &app)?;
        output::step(format!("Restarting '{app}'"));
        run_chain(&ctx.root, &app, &live.id, true)
    }
}

/// the kept releases: id, commit, date, status, message
#[derive(FromArgs)]
#[argh(subcommand, name = "releases", help_triggers("-h", "--help"))]
#[argh(example = "piku releases hello", example = "piku releases hello --json")]
#[argh(note = "Newest first. Status: live; previous (has been live); deploying (while a deploy runs); failed (never went live).")]
pub struct Releases {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON: [{{"id", "commit", "date", "status", "message"}}]
    #[argh(switch)]
    json: bool,
}

impl Command for Releases {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let app = release::existing_app(&ctx.root, &self.app)?;
        let rows = release_rows(&ctx.root, &app)?;
        if self.json {
            let items: Vec<String> = rows
                .iter()
                .map(|r| {
                    let s = output::json_string;
                    format!("{{\"id\":{},\"commit\":{},\"date\":{},\"status\":{},\"message\":{}}}", s(&r.id), s(&r.commit), s(&r.date), s(r.status), s(&r.message))
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
}

/// make a kept release live again (default: the previous one)
#[derive(FromArgs)]
#[argh(subcommand, name = "rollback", help_triggers("-h", "--help"))]
#[argh(example = "piku rollback hello", example = "piku rollback hello 20261125-041800-1a2b3c4")]
#[argh(note = "The release goes live through the same swap as a deploy (new workers beside the old, switched when healthy), without a build, with the environment it was resolved with.")]
pub struct Rollback {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release (see 'releases')
    #[argh(positional)]
    id: Option<String>,
    /// also restore the add-ons' data as it was while that release was live
    /// (after a fresh backup of what is there)
    #[argh(switch)]
    with_data: bool,
}

impl Command for Rollback {
    fn app(&self) -> Option<&str> {
        Some(&self.app)
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let (root, app) = (&ctx.root, release::existing_app(&ctx.root, &self.app)?);
        let rows = release_rows(root, &app)?;
        let live = release::live_id(root, &app);
        let target = match self.id {
            Some(id) => {
                Release::open(root, &app, &id)?;
                if live.as_deref() == Some(id.as_str()) {
                    return Err(Error::new(format!("release {id} of '{app}' is already live; nothing to roll back")));
                }
                id
            }
            None => {
                let live_pos = rows.iter().position(|r| r.status == "live").unwrap_or(0);
                rows.iter().skip(live_pos + 1).find(|r| r.status == "previous").map(|r| r.id.clone()).ok_or_else(|| {
                    Error::new(format!("'{app}' has no earlier release that was live to roll back to; see 'releases {app}'"))
                })?
            }
        };
        if self.with_data {
            crate::run_tool("piku-addons", &["restore-release", app.as_str(), &target])?;
        }
        output::step(format!("Rolling '{app}' back to release {target}"));
        run_chain(root, &app, &target, true)
    }
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
