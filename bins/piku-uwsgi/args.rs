//! piku-uwsgi's command line: its modes, as argh subcommands.

use argh::FromArgs;

/// The app's workers, as uWSGI vassals under the emperor: render, stage,
/// publish, stop, scale, and show them.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} stage myapp 20240101-120000-5f3c2a1\n{command_name} ps myapp --json\n{command_name} logs myapp web -n 50 --no-follow",
    note = "A vassal is written to uwsgi-available/ and published by an atomic rename into uwsgi-enabled/, which the emperor watches. Settings (the app's ENV, else $PIKU_ROOT/settings): PIKU_HEALTHCHECK_TIMEOUT (seconds, default 30), PIKU_HEALTHCHECK_PATH (a path that must answer 2xx or 3xx; default: any answer below 500 for /), PIKU_HEALTHCHECK=off, PIKU_DRAIN_SECONDS (how long an older generation keeps running after the switch; default 3), PIKU_STOP_TIMEOUT (how long to wait for nginx's old workers and for stopped workers to exit; default 30).",
    error_code(1, "the work failed (the message says why and what to do)"),
    error_code(2, "usage error: nothing was done")
)]
pub struct Args {
    #[argh(subcommand)]
    pub mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Mode {
    Check(Check),
    Stage(Stage),
    Publish(Publish),
    Restart(Restart),
    Retire(Retire),
    Repair(Repair),
    Stop(Stop),
    Start(Start),
    Destroy(Destroy),
    Ps(Ps),
    Scale(Scale),
    Logs(Logs),
    Setup(Setup),
}

/// render a staged release's vassals and check them; publish nothing.
#[derive(FromArgs)]
#[argh(subcommand, name = "check", help_triggers("-h", "--help"), example = "{command_name} myapp 20240101-120000-5f3c2a1")]
pub struct Check {
    /// the app
    #[argh(positional)]
    pub app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    pub release: String,
}

/// start a release's web workers beside the live ones and health-check them.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "stage",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp 20240101-120000-5f3c2a1",
    note = "The release's web-facing workers start as a new generation (new names, ports and sockets), beside the live ones and any still draining, and must answer (the health check, PIKU_HEALTHCHECK_*); a release that does not is stopped again and the live one keeps serving."
)]
pub struct Stage {
    /// the app
    #[argh(positional)]
    pub app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    pub release: String,
}

/// make the workers match the live release.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "publish",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "From the Procfile, SCALING and LIVE_ENV: switches nginx's stable sockets to the generation just staged and replaces the background workers; older generations are left to drain (stopped at once when PIKU_DRAIN_SECONDS=0)."
)]
pub struct Publish {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// like publish, even when PIKU_AUTO_RESTART is off (restart, rollback).
#[derive(FromArgs)]
#[argh(subcommand, name = "restart", help_triggers("-h", "--help"), example = "{command_name} myapp")]
pub struct Restart {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// after a stopped deploy (`piku repair`): stop what was staged, then publish.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "repair",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "Run by hooks/post-receive with PIKU_REPAIR=1, under the deploy lock, once LIVE_ENV is the live release's: generations staged but never switched are stopped (unless they run the live release and the live generation does not: then they are switched to), sockets and vassal files of generations that no longer run are removed, then the workers are published as after a deploy."
)]
pub struct Repair {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// wait out the drain of older generations of web workers, then stop them.
#[derive(FromArgs)]
#[argh(subcommand, name = "retire", help_triggers("-h", "--help"), example = "{command_name} myapp")]
pub struct Retire {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// stop all of the app's workers.
#[derive(FromArgs)]
#[argh(subcommand, name = "stop", help_triggers("-h", "--help"), example = "{command_name} myapp")]
pub struct Stop {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// start the app's workers again after a stop.
#[derive(FromArgs)]
#[argh(subcommand, name = "start", help_triggers("-h", "--help"), example = "{command_name} myapp")]
pub struct Start {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// stop the app's workers and remove their files.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
pub struct Destroy {
    /// the app
    #[argh(positional)]
    pub app: String,
}

/// worker counts and which workers run.
#[derive(FromArgs)]
#[argh(subcommand, name = "ps", help_triggers("-h", "--help"), example = "{command_name} myapp --json")]
pub struct Ps {
    /// the app
    #[argh(positional)]
    pub app: String,
    /// print JSON instead
    #[argh(switch)]
    pub json: bool,
}

/// validate and store worker counts in SCALING (applied by the swap).
#[derive(FromArgs)]
#[argh(subcommand, name = "scale", help_triggers("-h", "--help"), example = "{command_name} myapp web=2 worker=1")]
pub struct Scale {
    /// the app
    #[argh(positional)]
    pub app: String,
    /// kind=N pairs (Procfile kinds), at least one
    #[argh(positional)]
    pub pairs: Vec<String>,
}

/// print the workers' logs, then follow them.
#[derive(FromArgs)]
#[argh(subcommand, name = "logs", help_triggers("-h", "--help"), example = "{command_name} myapp web -n 50 --no-follow")]
pub struct Logs {
    /// the app
    #[argh(positional)]
    pub app: String,
    /// only this kind of worker (a Procfile kind, e.g. web)
    #[argh(positional)]
    pub kind: Option<String>,
    /// how many lines of each log to show first (default 20)
    #[argh(option, short = 'n', default = "20")]
    pub lines: usize,
    /// print and exit; do not wait for more
    #[argh(switch)]
    pub no_follow: bool,
}

/// write the emperor's configuration, uwsgi/uwsgi.ini.
#[derive(FromArgs)]
#[argh(subcommand, name = "setup", help_triggers("-h", "--help"), example = "{command_name}")]
pub struct Setup {}

