//! The table of the front door's commands: the one place a command is
//! declared. Its name, arguments, one-line and full help come from its argh
//! struct (named in the table); the table adds what it works on and who may
//! run it. Dispatch, `help`, `help <command>`, `help --json`, the rules for
//! limited keys and the client's list of commands that take no app all
//! follow from it.

use crate::{Ctx, addons, apps, certs, config, keys, releases, repair};
use piku::error::{Error, Result};

/// A front-door command: an argh subcommand struct that knows how to run.
pub trait Command: argh::SubCommand {
    /// Its name on the command line (argh's, except for `help`, a name argh
    /// keeps for itself).
    const NAME: &'static str = <Self as argh::SubCommand>::COMMAND.name;
    /// Everything after the app is the user's command line (`run`): never
    /// flags of ours; its first `--` only ends options, as in piku.
    const RAW_TAIL: bool = false;
    /// The app the command works on, as typed (for the access rules).
    fn app(&self) -> Option<&str> {
        None
    }
    fn run(self, ctx: &Ctx) -> Result<()>;
}

/// The section of `help` a command is listed in.
#[derive(Clone, Copy, PartialEq)]
pub enum Group {
    Apps,
    Config,
    Addons,
    Server,
    Git,
}

pub const GROUPS: &[(Group, &str)] = &[(Group::Apps, "Apps"), (Group::Config, "Config"), (Group::Addons, "Add-ons (PostgreSQL, Redis)"), (Group::Server, "Server"), (Group::Git, "git (used by git push / git clone)")];

/// What a command works on.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Takes {
    /// One app, the first argument.
    App,
    /// No app: the server, or every app.
    NoApp,
}

pub struct Entry {
    pub name: &'static str,
    /// The one-line summary (the struct's doc comment).
    pub summary: &'static str,
    pub group: Group,
    pub takes: Takes,
    /// May a key limited to some apps (`setup:ssh --apps`) run it?
    pub limited: bool,
    /// Parse the arguments after the name, check access, run.
    pub run: fn(&Ctx, &Entry, &[&str]) -> Result<()>,
    /// The full help (argh's, for `help <command>` and `<command> --help`).
    pub help: fn() -> String,
}

impl Entry {
    pub const fn of<T: Command>(group: Group, takes: Takes, limited: bool) -> Entry {
        Entry { name: T::NAME, summary: T::COMMAND.description, group, takes, limited, run: parse_and_run::<T>, help: full_help::<T> }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `config:set <app> [<pairs...>] [--no-restart]`: argh's usage line,
    /// with the options after the arguments, as piku writes its commands.
    pub fn usage(&self) -> String {
        let help = (self.help)();
        let line = help.lines().next().unwrap_or_default().trim_start_matches("Usage: piku ").replace(" [--]", "");
        // Split on the spaces outside brackets: name, then [-x ...] and <args>.
        let (mut words, mut depth, mut word) = (Vec::new(), 0, String::new());
        for c in line.chars() {
            match c {
                ' ' if depth == 0 => words.push(std::mem::take(&mut word)),
                '[' | '<' => depth += 1,
                ']' | '>' => depth -= 1,
                _ => {}
            }
            if c != ' ' || depth > 0 {
                word.push(c);
            }
        }
        words.push(word);
        let (options, args): (Vec<String>, Vec<String>) = words.into_iter().skip(1).partition(|w| w.starts_with("[-"));
        [vec![self.name.to_string()], args, options].concat().join(" ")
    }
}

use Group::*;
use Takes::*;

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[Entry] = &[
    Entry::of::<apps::Apps>(Apps, NoApp, true),
    Entry::of::<releases::Deploy>(Apps, App, true),
    Entry::of::<releases::Releases>(Apps, App, true),
    Entry::of::<releases::Rollback>(Apps, App, true),
    Entry::of::<apps::Destroy>(Apps, App, true),
    Entry::of::<repair::Repair>(Apps, App, true),
    Entry::of::<apps::Stop>(Apps, App, true),
    Entry::of::<apps::Start>(Apps, App, true),
    Entry::of::<releases::Restart>(Apps, App, true),
    Entry::of::<apps::Ps>(Apps, App, true),
    Entry::of::<apps::Scale>(Apps, App, true),
    Entry::of::<apps::Logs>(Apps, App, true),
    Entry::of::<apps::Run>(Apps, App, true),
    Entry::of::<config::Show>(Config, App, true),
    Entry::of::<config::Get>(Config, App, true),
    Entry::of::<config::Set>(Config, App, true),
    Entry::of::<config::Unset>(Config, App, true),
    Entry::of::<config::Live>(Config, App, true),
    Entry::of::<addons::List>(Addons, App, true),
    Entry::of::<addons::Create>(Addons, App, true),
    Entry::of::<addons::Destroy>(Addons, App, true),
    Entry::of::<addons::Backup>(Addons, App, true),
    Entry::of::<addons::Backups>(Addons, App, true),
    Entry::of::<addons::Restore>(Addons, App, true),
    Entry::of::<addons::Shell>(Addons, App, true),
    Entry::of::<apps::Setup>(Server, NoApp, false),
    Entry::of::<keys::SetupSsh>(Server, NoApp, false),
    Entry::of::<certs::Certs>(Server, NoApp, false),
    Entry::of::<certs::Renew>(Server, NoApp, false),
    Entry::of::<Help>(Server, NoApp, true),
    Entry::of::<apps::ReceivePack>(Git, App, true),
    Entry::of::<apps::UploadPack>(Git, App, true),
];

pub fn find(name: &str) -> Option<&'static Entry> {
    COMMANDS.iter().find(|e| e.name() == name)
}

fn parse_and_run<T: Command>(ctx: &Ctx, entry: &Entry, args: &[&str]) -> Result<()> {
    // The word after the command is the app, user data: never a flag of
    // ours (only -h/--help). No app name starts with '-': say why it is wrong.
    if let (App, Some(first)) = (entry.takes, args.first())
        && first.starts_with('-')
        && !matches!(*first, "-h" | "--help")
        && let Err(e) = piku::AppName::parse(first)
    {
        return Err(Error::usage(format!("{} (a word that looks like a flag where the app goes)\n\n{}", e.message, (entry.help)().trim_end())));
    }
    let Some(cmd) = parse::<T>(args)? else { return Ok(()) };
    ctx.access.check(ctx, entry, cmd.app())?;
    cmd.run(ctx)
}

/// The command's arguments through argh (piku::cli); `None` when it asked
/// for its help, which is printed on stdout.
fn parse<T: Command>(args: &[&str]) -> Result<Option<T>> {
    // A lone `-` (stdin, as in `setup:ssh -`) is a value, which argh would
    // take for a flag: it goes last, after `--`.
    let mut args = args.to_vec();
    if let (true, [app, rest @ ..]) = (T::RAW_TAIL, args.as_slice()) {
        if !app.starts_with('-') {
            let mut tail = rest.to_vec();
            if let Some(i) = tail.iter().position(|w| *w == "--") {
                tail.remove(i);
            }
            args = [vec![*app, "--"], tail].concat();
        }
    } else if !args.contains(&"--") && args.contains(&"-") {
        args.retain(|a| *a != "-");
        args.extend(["--", "-"]);
    }
    match piku::cli::parse_from::<T>(&format!("piku {}", T::NAME), &args) {
        Ok(cmd) => Ok(Some(cmd)),
        Err((0, text)) => {
            piku::output::data(text.trim_end());
            Ok(None)
        }
        Err((_, text)) => Err(Error::usage(text.trim_end())),
    }
}

fn full_help<T: Command>() -> String {
    match T::from_args(&["piku", T::NAME], &["--help"]) {
        Err(early) => early.output,
        Ok(_) => String::new(),
    }
}

/// show the commands, or one command's full help
#[derive(argh::FromArgs)]
#[argh(subcommand, name = "help-with", help_triggers("-h", "--help"))]
#[argh(example = "piku help config:set", example = "piku help --json")]
#[argh(note = "Without a command: every command with a line on what it does, then the plugins.")]
pub struct Help {
    /// the command to explain
    #[argh(positional)]
    command: Option<String>,
    /// the table of commands as JSON: name, usage, summary, app ("app" or "none"), limited (allowed for a key limited to some apps)
    #[argh(switch)]
    json: bool,
}

impl Command for Help {
    const NAME: &'static str = "help";
    fn run(self, ctx: &Ctx) -> Result<()> {
        match (self.command, self.json) {
            (Some(name), _) => {
                let entry = find(&name).ok_or_else(|| Error::usage(format!("there is no command '{name}'; see 'help' for the commands")))?;
                piku::output::data((entry.help)().trim_end());
            }
            (None, true) => piku::output::data(table_json()),
            // A limited key may not run plugins: it is not shown them.
            (None, false) => piku::output::data(overview(&if ctx.access.is_limited() { Vec::new() } else { crate::plugins::names(&ctx.root) })),
        }
        Ok(())
    }
}

/// `help`: every command by group, one line each, then the plugins.
pub fn overview(plugins: &[String]) -> String {
    let mut out = String::from("Usage: piku <command> [<app>] [args]    (over ssh: ssh piku@server <command> ...)\n");
    out.push_str("'piku help <command>' or 'piku <command> --help' explains a command.\n");
    for (group, title) in GROUPS {
        out.push_str(&format!("\n{title}:\n"));
        for e in COMMANDS.iter().filter(|e| e.group == *group) {
            let usage = e.usage();
            if usage.len() <= 34 {
                out.push_str(&format!("  {usage:<34} {}\n", e.summary));
            } else {
                out.push_str(&format!("  {usage}\n  {:<34} {}\n", "", e.summary));
            }
        }
    }
    if !plugins.is_empty() {
        out.push_str("\nPlugins:\n");
        for p in plugins {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out.trim_end().to_string()
}

fn table_json() -> String {
    use piku::output::json_string as s;
    let rows: Vec<String> = COMMANDS
        .iter()
        .map(|e| {
            format!(
                "{{\"name\":{},\"usage\":{},\"summary\":{},\"app\":{},\"limited\":{}}}",
                s(e.name()),
                s(&e.usage()),
                s(e.summary),
                s(if e.takes == App { "app" } else { "none" }),
                e.limited
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}
