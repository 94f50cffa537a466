//! piku-addons: an app's databases, from the Debian servers: PostgreSQL (a
//! role and a database of its own in the server's cluster) and Redis (an
//! instance of its own on a unix socket, a vassal of the uWSGI emperor).
//!
//!   piku-addons create <app> postgres|redis     then the app redeploys with
//!                                               DATABASE_URL, PG* / REDIS_URL
//!   piku-addons list <app> [--json]
//!   piku-addons destroy <app> <addon> [--keep-data] [--no-backup]
//!   piku-addons backup <app> [<addon>]          into data/<app>/backups/
//!   piku-addons backups <app> [--json]
//!   piku-addons restore <app> <addon> <backup>  (after a fresh backup)
//!   piku-addons shell <app> postgres|redis      psql or redis-cli as the app
//!   piku-addons before-deploy <app> <release>   (the hook) a backup before a release goes live
//!   piku-addons restore-release <app> <release> (rollback --with-data)
//!   piku-addons destroy-app <app> [--no-backup] (destroy) every add-on, after a final backup
//!   piku-addons nightly                         (systemd timer or cron) a backup of every add-on
//!
//! It owns `addons/<app>/` (facts, the add-ons' `ENV` layer, redis.conf),
//! `data/<app>/backups/`, `data/<app>/redis/` and the vassal
//! `uwsgi-enabled/<app>_redis.ini`. The app's environment takes `addons/<app>/ENV`
//! through piku-config, like its other layers; no secret is ever in an argv.

mod backups;
mod postgres;
mod redis;

use argh::FromArgs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::lock::AppLock;
use piku::{AppName, Root, atomic, output, paths, release};
use std::process::{Command, ExitCode};

/// An app's PostgreSQL and Redis add-ons, their backups and restores.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Create(CreateCmd),
    List(ListCmd),
    Destroy(DestroyCmd),
    Backup(BackupCmd),
    Backups(BackupsCmd),
    Restore(RestoreCmd),
    Shell(ShellCmd),
    BeforeDeploy(BeforeDeployCmd),
    RestoreRelease(RestoreReleaseCmd),
    DestroyApp(DestroyAppCmd),
    Nightly(NightlyCmd),
}

/// Give the app a database (postgres) or a Redis instance (redis), then redeploy it.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct CreateCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
    /// store only: the app gets the variables at its next deploy
    #[argh(switch)]
    no_deploy: bool,
}

/// The app's add-ons.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct ListCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON
    #[argh(switch)]
    json: bool,
}

/// Remove an add-on from the app, after a final backup.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy")]
struct DestroyCmd {
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
    no_deploy: bool,
}

/// Back up the app's add-ons (or one) into data/<app>/backups/.
#[derive(FromArgs)]
#[argh(subcommand, name = "backup")]
struct BackupCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis (default: every add-on of the app)
    #[argh(positional)]
    addon: Option<String>,
}

/// The app's backups, newest first.
#[derive(FromArgs)]
#[argh(subcommand, name = "backups")]
struct BackupsCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// as JSON
    #[argh(switch)]
    json: bool,
}

/// Restore a backup into the live add-on, after a fresh backup of what is there.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
struct RestoreCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
    /// a name from `backups <app>`
    #[argh(positional)]
    backup: String,
}

/// psql on the app's database as its role, or redis-cli on its Redis.
#[derive(FromArgs)]
#[argh(subcommand, name = "shell")]
struct ShellCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// postgres or redis
    #[argh(positional)]
    addon: String,
}

/// (the deploy hook) Back up the app's add-ons before a new release goes live.
#[derive(FromArgs)]
#[argh(subcommand, name = "before-deploy")]
struct BeforeDeployCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release about to go live
    #[argh(positional)]
    release: String,
}

/// (rollback --with-data) Restore the data as it was when a release was live.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore-release")]
struct RestoreReleaseCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release rolled back to
    #[argh(positional)]
    release: String,
}

/// (destroy) Remove every add-on of the app, after a final backup of each.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy-app")]
struct DestroyAppCmd {
    /// the app
    #[argh(positional)]
    app: String,
    /// no final backup
    #[argh(switch)]
    no_backup: bool,
}

/// (systemd timer or cron) Back up every add-on of every app.
#[derive(FromArgs)]
#[argh(subcommand, name = "nightly")]
struct NightlyCmd {}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-addons", || {
        let root = Root::from_env();
        match args.cmd {
            Cmd::Create(c) => create(&root, &release::existing_app(&root, &c.app)?, Addon::parse(&c.addon)?, !c.no_deploy),
            Cmd::List(c) => list(&root, &release::existing_app(&root, &c.app)?, c.json),
            Cmd::Destroy(c) => {
                let app = release::existing_app(&root, &c.app)?;
                let addon = Addon::parse(&c.addon)?;
                destroy(&root, &app, addon, c.keep_data, !c.no_backup, true)?;
                redeploy(&root, &app, !c.no_deploy)
            }
            Cmd::Backup(c) => {
                let app = release::existing_app(&root, &c.app)?;
                let addons = match c.addon {
                    Some(a) => vec![require(&root, &app, Addon::parse(&a)?)?],
                    None => installed_or_err(&root, &app)?,
                };
                for addon in addons {
                    backups::take(&root, &app, addon, "manual")?;
                }
                Ok(())
            }
            Cmd::Backups(c) => backups::list(&root, &release::existing_app(&root, &c.app)?, c.json),
            Cmd::Restore(c) => {
                let app = release::existing_app(&root, &c.app)?;
                let addon = require(&root, &app, Addon::parse(&c.addon)?)?;
                let _lock = AppLock::acquire(&root, &app)?;
                backups::restore(&root, &app, addon, &c.backup)
            }
            Cmd::Shell(c) => {
                let app = release::existing_app(&root, &c.app)?;
                match require(&root, &app, Addon::parse(&c.addon)?)? {
                    Addon::Postgres => postgres::shell(&root, &app),
                    Addon::Redis => redis::shell(&root, &app),
                }
            }
            Cmd::BeforeDeploy(c) => before_deploy(&root, &AppName::parse(&c.app)?, &c.release),
            Cmd::RestoreRelease(c) => {
                let app = release::existing_app(&root, &c.app)?;
                backups::restore_release(&root, &app, &c.release)
            }
            Cmd::DestroyApp(c) => {
                let app = AppName::parse(&c.app)?;
                for addon in installed(&root, &app) {
                    // The front door's destroy holds the app's lock already.
                    destroy(&root, &app, addon, false, !c.no_backup, false)?;
                }
                Ok(())
            }
            Cmd::Nightly(_) => nightly(&root),
        }
    })
}

/// The kinds of add-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addon {
    Postgres,
    Redis,
}

pub const ALL: [Addon; 2] = [Addon::Postgres, Addon::Redis];

impl Addon {
    fn parse(raw: &str) -> Result<Addon> {
        match raw {
            "postgres" | "postgresql" => Ok(Addon::Postgres),
            "redis" => Ok(Addon::Redis),
            _ => Err(Error::usage(format!("unknown add-on {raw:?}; piku has 'postgres' and 'redis'"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Addon::Postgres => "postgres",
            Addon::Redis => "redis",
        }
    }

    /// `addons/<app>/<name>`: the add-on's facts (K=V, 0600); there when the app has it.
    pub fn facts_file(self, root: &Root, app: &AppName) -> std::path::PathBuf {
        root.addons_dir(app).join(self.name())
    }
}

/// The app's add-ons, in a fixed order.
pub fn installed(root: &Root, app: &AppName) -> Vec<Addon> {
    ALL.into_iter().filter(|a| a.facts_file(root, app).is_file()).collect()
}

fn installed_or_err(root: &Root, app: &AppName) -> Result<Vec<Addon>> {
    let list = installed(root, app);
    if list.is_empty() {
        return Err(Error::new(format!("app '{app}' has no add-ons; create one with: ssh <server> addons:create {app} postgres")));
    }
    Ok(list)
}

fn require(root: &Root, app: &AppName, addon: Addon) -> Result<Addon> {
    if addon.facts_file(root, app).is_file() {
        Ok(addon)
    } else {
        Err(Error::new(format!("app '{app}' has no {} add-on; create it with: ssh <server> addons:create {app} {}", addon.name(), addon.name())))
    }
}

/// An add-on's facts.
pub fn read_facts(root: &Root, app: &AppName, addon: Addon) -> Result<Env> {
    let file = addon.facts_file(root, app);
    envfile::read_literal(&file)?.ok_or_else(|| Error::new(format!("app '{app}' has no {} add-on ({} is missing)", addon.name(), file.display())))
}

pub fn write_facts(root: &Root, app: &AppName, addon: Addon, facts: &Env) -> Result<()> {
    atomic::write_file(&addon.facts_file(root, app), envfile::render(facts)?.as_bytes(), 0o600)
}

/// A random secret: 48 hex digits from the kernel's generator.
pub fn random_secret() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    fs_err::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::new(format!("cannot read random bytes: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A setting of the app (its live environment), else of the server, else `default`.
pub fn setting(root: &Root, app: &AppName, key: &str, default: &str) -> Result<String> {
    let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    Ok(piku::settings::for_app(root, &env, key)?.unwrap_or_else(|| default.to_string()))
}

/// Rewrite `addons/<app>/ENV` from every add-on's variables.
fn write_env_layer(root: &Root, app: &AppName) -> Result<()> {
    let mut env = Env::new();
    for addon in installed(root, app) {
        let facts = read_facts(root, app, addon)?;
        env.extend(match addon {
            Addon::Postgres => postgres::app_env(&facts),
            Addon::Redis => redis::app_env(&facts),
        });
    }
    atomic::write_file(&root.addons_env_file(app), envfile::render(&env)?.as_bytes(), 0o600)
}

fn create(root: &Root, app: &AppName, addon: Addon, deploy: bool) -> Result<()> {
    {
        let _lock = AppLock::acquire(root, app)?;
        if addon.facts_file(root, app).is_file() {
            return Err(Error::new(format!(
                "app '{app}' already has a {0} add-on; see 'addons {app}' (one {0} per app; remove it first with addons:destroy {app} {0})",
                addon.name()
            )));
        }
        output::step(format!("Creating the {} add-on of '{app}'", addon.name()));
        let facts = match addon {
            Addon::Postgres => postgres::create(root, app)?,
            Addon::Redis => redis::create(root, app)?,
        };
        write_facts(root, app, addon, &facts)?;
        write_env_layer(root, app)?;
        let vars: Vec<String> = match addon {
            Addon::Postgres => postgres::app_env(&facts),
            Addon::Redis => redis::app_env(&facts),
        }
        .into_keys()
        .collect();
        output::detail(format!("the app gets {}", vars.join(", ")));
    }
    redeploy(root, app, deploy)
}

/// Apply the add-ons' variables: the deploy chain, as `deploy <app>` runs it.
fn redeploy(root: &Root, app: &AppName, deploy: bool) -> Result<()> {
    if !deploy {
        output::step(format!("Stored; '{app}' gets the variables at its next deploy"));
        return Ok(());
    }
    if release::live_id(root, app).is_none() {
        output::step(format!("'{app}' has no live release; it gets the variables at its first deploy"));
        return Ok(());
    }
    output::step(format!("Redeploying '{app}' with its add-ons' variables"));
    let status = Command::new(paths::tool("piku"))
        .args(["deploy", app.as_str()])
        .env_remove("SSH_ORIGINAL_COMMAND")
        .env("PIKU_ROOT", &root.root)
        .status()
        .map_err(|e| Error::new(format!("cannot run piku deploy: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("the add-on is in place, but redeploying '{app}' failed (see above); fix it, then run: ssh <server> deploy {app}")))
    }
}

fn destroy(root: &Root, app: &AppName, addon: Addon, keep_data: bool, backup: bool, lock: bool) -> Result<()> {
    require(root, app, addon)?;
    let _lock = if lock { Some(AppLock::acquire(root, app)?) } else { None };
    if backup {
        backups::take(root, app, addon, "final").map_err(|e| {
            e.context(format!("nothing was removed; to remove the {} of '{app}' without a final backup, add --no-backup", addon.name()))
        })?;
    }
    output::step(format!("Removing the {} add-on of '{app}'{}", addon.name(), if keep_data { " (its data is kept)" } else { "" }));
    match addon {
        Addon::Postgres => postgres::destroy(root, app, keep_data)?,
        Addon::Redis => redis::destroy(root, app, keep_data)?,
    }
    atomic::remove_file(&addon.facts_file(root, app))?;
    write_env_layer(root, app)?;
    if installed(root, app).is_empty() {
        let _ = fs_err::remove_file(root.addons_env_file(app));
        let _ = fs_err::remove_dir(root.addons_dir(app));
    }
    Ok(())
}

fn list(root: &Root, app: &AppName, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for addon in installed(root, app) {
        let facts = read_facts(root, app, addon)?;
        let (place, state) = match addon {
            Addon::Postgres => (postgres::describe(&facts), "created".to_string()),
            Addon::Redis => (redis::describe(&facts), redis::state(root, app)),
        };
        rows.push((addon.name(), place, state));
    }
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|(n, p, s)| format!("{{\"addon\":{},\"where\":{},\"state\":{}}}", output::json_string(n), output::json_string(p), output::json_string(s)))
            .collect();
        output::data(format!("[{}]", items.join(",")));
        return Ok(());
    }
    if rows.is_empty() {
        output::step(format!("'{app}' has no add-ons; create one with: ssh <server> addons:create {app} postgres|redis"));
    }
    for (n, p, s) in rows {
        output::data(format!("{n:<9} {s:<8} {p}"));
    }
    Ok(())
}

/// The hook: before a release of an app with add-ons goes live (and before
/// its release task, which may migrate), back them up, named for the release
/// that is live now. `ADDONS_BACKUP_BEFORE_DEPLOY=false` skips it.
/// A redeploy of the live release (deploy, config:set, addons:create) brings
/// no new code, so it takes none.
fn before_deploy(root: &Root, app: &AppName, release: &str) -> Result<()> {
    let addons = installed(root, app);
    let live = release::live_id(root, app);
    if addons.is_empty() || live.is_none() || live.as_deref() == Some(release) {
        return Ok(());
    }
    if !envfile::is_true(&setting(root, app, "ADDONS_BACKUP_BEFORE_DEPLOY", "true")?) {
        output::step("No backup before the deploy (ADDONS_BACKUP_BEFORE_DEPLOY is off)");
        return Ok(());
    }
    for addon in addons {
        backups::take(root, app, addon, "predeploy")
            .map_err(|e| e.context(format!("the backup before the deploy failed, so nothing was deployed (ADDONS_BACKUP_BEFORE_DEPLOY=false skips it)")))?;
    }
    Ok(())
}

/// Every add-on of every app; one failing does not stop the others.
fn nightly(root: &Root) -> Result<()> {
    let mut apps: Vec<String> = fs_err::read_dir(root.dir("addons"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    apps.sort();
    let mut failed = Vec::new();
    for name in apps {
        let Ok(app) = AppName::parse(&name) else { continue };
        for addon in installed(root, &app) {
            if let Err(e) = backups::take(root, &app, addon, "nightly") {
                output::error(format!("{app} {}: {}", addon.name(), e.message));
                failed.push(format!("{app}/{}", addon.name()));
            }
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(Error::new(format!("the nightly backup failed for {}", failed.join(", ")))) }
}
