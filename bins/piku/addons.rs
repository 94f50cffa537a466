//! The add-on commands (`addons`, `addons:create`, ...), handed to
//! piku-addons, which parses them with argh (`addons:create app postgres`
//! runs `piku-addons create app postgres`). Not yet in the command table:
//! `help` lists them from ADDONS_HELP.

use crate::{Ctx, exec};
use piku::error::{Error, Result};
use piku::{paths, release};
use std::process::Command;

pub fn dispatch(ctx: &Ctx, cmd: &str, rest: &[&str]) -> Result<()> {
    let sub = match cmd {
        "addons" => "list",
        "addons:create" | "addons:destroy" | "addons:backup" | "addons:backups" | "addons:restore" | "addons:shell" => &cmd["addons:".len()..],
        _ => return Err(Error::usage(format!("unknown command '{cmd}'; see 'help' for the add-on commands"))),
    };
    let Some(app) = rest.first() else { return Err(Error::usage(format!("{cmd} needs an app; see 'help'"))) };
    if !ctx.access.allows(app) {
        return Err(Error::new(format!("this ssh key may not use the app '{app}'")));
    }
    let app = release::existing_app(&ctx.root, app)?;
    let mut argv = vec![sub, app.as_str()];
    // After `--`, so that argh never takes the user's words for its flags.
    argv.extend(rest[1..].iter().copied().filter(|a| a.starts_with("--")));
    argv.push("--");
    argv.extend(rest[1..].iter().copied().filter(|a| !a.starts_with("--")));
    exec(Command::new(paths::tool("piku-addons")).args(argv))
}
