//! `repair [<app>]`: what a stopped deploy left half done, found (lib
//! repair.rs) and put right through the chain.

use crate::Ctx;
use crate::commands::Command;
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::{AppName, output, paths};
use std::process::{Command as Process, Stdio};

/// finish what a stopped deploy left half done (exit 1 if it cannot)
#[derive(FromArgs)]
#[argh(subcommand, name = "repair", help_triggers("-h", "--help"))]
#[argh(example = "piku repair hello", example = "piku repair")]
#[argh(
    note = "Says what it finds (LIVE_ENV or workers of another release, a staged release never switched, nginx's socket on an older generation, leftovers of stopped workers), puts it right through the deploy chain under the app's lock, then looks again. Without an app: every app the key may use."
)]
pub struct Repair {
    /// the app (default: every app)
    #[argh(positional)]
    app: Option<String>,
}

impl Command for Repair {
    fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }
    fn run(self, ctx: &Ctx) -> Result<()> {
        let root = &ctx.root;
        let apps: Vec<AppName> = match &self.app {
            Some(a) => vec![release::existing_app(root, a)?],
            None => {
                let mut names: Vec<String> = fs_err::read_dir(root.dir("apps"))
                    .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                names.sort();
                names.into_iter().filter(|n| ctx.access.allows(n)).filter_map(|n| AppName::parse(&n).ok()).collect()
            }
        };
        let mut left = Vec::new();
        for app in &apps {
            if !repair_one(root, app)? {
                left.push(app.to_string());
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(Error::new(format!("could not repair {}; see above, then try 'deploy <app>' or push again", left.join(", "))))
        }
    }
}

/// One app: Ok(false) when something is still wrong afterwards.
fn repair_one(root: &piku::Root, app: &AppName) -> Result<bool> {
    if Release::live(root, app)?.is_none() {
        output::step(format!("'{app}' has no live release: nothing to repair"));
        return Ok(true);
    }
    if piku::repair::locked(root, app) {
        output::step(format!("A deploy of '{app}' is running: repair waits for it"));
    }
    let found = piku::repair::findings(root, app)?;
    for f in &found {
        output::step(format!("'{app}': {f}"));
    }
    // The chain republishes (idempotent) even when nothing was found:
    // nginx's configuration and the workers' files are checked there too.
    let hook = paths::hooks_dir().join("post-receive");
    let status = Process::new(&hook)
        .current_dir(&root.root)
        .env("PIKU_APP", app.as_str())
        .env("PIKU_REPAIR", "1")
        .env("PIKU_ROOT", &root.root)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::new(format!("cannot run the deploy chain {}: {e}; re-run install.sh", hook.display())))?;
    let after = piku::repair::findings(root, app)?;
    if !status.success() || !after.is_empty() {
        for f in &after {
            output::error(format!("'{app}': still {f}"));
        }
        return Ok(false);
    }
    if found.is_empty() {
        output::step(format!("'{app}': nothing to repair; its live release, workers and nginx agree"));
    } else {
        output::step(format!("'{app}': repaired ({} finding{})", found.len(), if found.len() == 1 { "" } else { "s" }));
    }
    Ok(true)
}
