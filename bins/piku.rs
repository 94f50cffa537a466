//! piku: the front door. It is the ssh forced command in authorized_keys (it
//! reads the command from $SSH_ORIGINAL_COMMAND, split like a shell would,
//! never through a shell) and the local CLI; it parses piku's command line
//! (`piku <command> [<app>] [args]`, the table in commands.rs) and runs the
//! tool that owns the work.
//!
//! Exit status: 0 done, 1 failed, 2 the command line was wrong (nothing ran);
//! `run` and plugins exit with their command's status.

#[path = "piku/access.rs"]
mod access;
#[path = "piku/apps.rs"]
mod apps;
#[path = "piku/certs.rs"]
mod certs;
#[path = "piku/commands.rs"]
mod commands;
#[path = "piku/config.rs"]
mod config;
#[path = "piku/keys.rs"]
mod keys;
#[path = "piku/plugins.rs"]
mod plugins;
#[path = "piku/releases.rs"]
mod releases;
#[path = "piku/repair.rs"]
mod repair;
#[path = "piku/addons.rs"]
mod addons;

use piku::error::{Error, Result};
use piku::{Root, output, paths};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// What every command gets: where piku lives and what this ssh key may do.
pub struct Ctx {
    pub root: Root,
    pub access: access::Access,
}

fn main() -> ExitCode {
    output::run_main("piku", |args| {
        let args = piku::forced_command::take_original_command()?.unwrap_or(args);
        // The tools live beside this binary; the hook and children find them on PATH.
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("PATH", format!("{}:{path}", paths::tools_dir().display())) };
        let ctx = Ctx { root: Root::from_env(), access: access::Access::from_env() };
        dispatch(&ctx, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
}

/// One command line: a command of the table, `--help`/`--version`, or a plugin.
fn dispatch(ctx: &Ctx, argv: &[&str]) -> Result<()> {
    let (name, rest) = match argv {
        [] | ["--help" | "-h"] => ("help", &[][..]),
        ["--version"] => {
            output::data(format!("piku {}", env!("CARGO_PKG_VERSION")));
            return Ok(());
        }
        [name, rest @ ..] => (*name, rest),
    };
    if let Some(entry) = commands::find(name) {
        return (entry.run)(ctx, entry, rest);
    }
    ctx.access.check_plugin(name)?;
    match plugins::find(&ctx.root, name) {
        Some(path) => exec(Command::new(path).args(rest).env("PIKU_ROOT", &ctx.root.root)),
        None => Err(Error::usage(format!("unknown command '{name}'; nothing was run. See 'help' for the commands"))),
    }
}

/// `git-receive-pack 'hello'` arrives as `hello`, or `/hello` for ssh:// URLs.
pub fn git_path_to_app(raw: &str) -> &str {
    raw.strip_prefix('/').unwrap_or(raw)
}

/// Become `cmd` (its exit status is ours).
pub fn exec(cmd: &mut Command) -> Result<()> {
    let err = cmd.exec();
    Err(Error::new(format!("could not run {}: {err}", cmd.get_program().to_string_lossy())))
}

/// Run one of our tools and wait; its failure (already reported by it) is ours.
pub fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(paths::tool(tool))
        .args(args)
        .status()
        .map_err(|e| Error::new(format!("could not run {tool}: {e}; is piku installed?")))?;
    if status.success() { Ok(()) } else { Err(Error { message: format!("{tool} failed"), code: status.code().unwrap_or(1).clamp(1, 255) as u8 }) }
}
