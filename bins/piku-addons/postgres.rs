//! PostgreSQL: a role and a database `piku_<app>` in the server's cluster
//! (Debian's `postgresql`), made by `piku-pgadmin` run as `postgres` through
//! one sudo rule; the app connects with its own password over 127.0.0.1.
//!
//! Server settings: `ADDONS_PG_PORT` (5432), `ADDONS_PG_SOCKET_DIR`
//! (/var/run/postgresql, the admin's way in), `ADDONS_PG_ADMIN_USER` (postgres).

use crate::{Addon, random_secret};
use piku::envfile::Env;
use piku::error::{Error, Result};
use piku::settings::Settings;
use piku::{AppName, Root, output, paths, process};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const HOST: &str = "127.0.0.1";

/// Make the role and database; their facts (ROLE, DATABASE, PASSWORD, HOST, PORT).
pub fn create(root: &Root, app: &AppName) -> Result<Env> {
    for tool in ["psql", "pg_dump", "pg_restore"] {
        if process::which(tool).is_none() {
            return Err(Error::new(format!(
                "PostgreSQL is not installed on this server ({tool} is missing); as root run: ./install.sh --with postgres (or apt-get install postgresql)"
            )));
        }
    }
    let name = format!("piku_{app}");
    if name.len() > 63 {
        return Err(Error::new(format!("the app name '{app}' is too long for a PostgreSQL database (at most 58 characters)")));
    }
    let password = random_secret()?;
    admin(root, &["create", app.as_str()], &password)?;
    let mut facts = Env::new();
    facts.insert("ROLE".into(), name.clone());
    facts.insert("DATABASE".into(), name);
    facts.insert("PASSWORD".into(), password);
    facts.insert("HOST".into(), HOST.into());
    facts.insert("PORT".into(), Settings::load(root)?.get_or("ADDONS_PG_PORT", "5432"));
    // The app's own way in works (password, TCP), or the add-on is not made.
    if let Err(e) = process::run_captured(client(&facts, "psql").args(["-X", "-q", "-c", "SELECT 1"]), "connecting as the new role") {
        let _ = admin(root, &["drop", app.as_str()], "");
        return Err(Error::new(format!(
            "the database of '{app}' was made, but its role cannot log in over {HOST}:{} ({}); check pg_hba.conf allows 'host all all 127.0.0.1/32 scram-sha-256'. Nothing was kept",
            facts["PORT"], e.message
        )));
    }
    output::detail(format!("database {} on {HOST}:{}, owned by its own role", facts["DATABASE"], facts["PORT"]));
    Ok(facts)
}

/// The variables the app gets.
pub fn app_env(f: &Env) -> Env {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut env = Env::new();
    env.insert("DATABASE_URL".into(), format!("postgresql://{}:{}@{}:{}/{}", get("ROLE"), get("PASSWORD"), get("HOST"), get("PORT"), get("DATABASE")));
    env.insert("PGHOST".into(), get("HOST"));
    env.insert("PGPORT".into(), get("PORT"));
    env.insert("PGUSER".into(), get("ROLE"));
    env.insert("PGPASSWORD".into(), get("PASSWORD"));
    env.insert("PGDATABASE".into(), get("DATABASE"));
    env
}

pub fn describe(f: &Env) -> String {
    format!("{}@{}:{}/{}", f.get("ROLE").map_or("", |s| s), f.get("HOST").map_or("", |s| s), f.get("PORT").map_or("", |s| s), f.get("DATABASE").map_or("", |s| s))
}

pub fn destroy(root: &Root, app: &AppName, keep_data: bool) -> Result<()> {
    if keep_data {
        output::detail(format!("kept the database piku_{app}; addons:create {app} postgres attaches it again"));
        return Ok(());
    }
    admin(root, &["drop", app.as_str()], "")?;
    output::detail(format!("dropped the database and role piku_{app}"));
    Ok(())
}

/// `pg_dump -Fc` of the app's database into `file`, as the app's role.
pub fn dump(facts: &Env, file: &Path) -> Result<()> {
    process::run_captured(client(facts, "pg_dump").args(["-Fc", "--no-owner", "--no-privileges", "-f"]).arg(file), "pg_dump").map(|_| ())
}

/// Replace what is in the app's database by the dump, in one transaction.
pub fn restore(facts: &Env, file: &Path) -> Result<()> {
    process::run_captured(
        client(facts, "pg_restore").args(["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "-d"]).arg(&facts["DATABASE"]).arg(file),
        "pg_restore",
    )
    .map(|_| ())
}

/// psql as the app's role, in place of this process (ssh -t for a terminal).
pub fn shell(root: &Root, app: &AppName) -> Result<()> {
    let facts = crate::read_facts(root, app, Addon::Postgres)?;
    let err = client(&facts, "psql").exec();
    Err(Error::new(format!("cannot run psql: {err}")))
}

/// A libpq client as the app's role: everything in the environment, the password too (never in argv).
fn client(facts: &Env, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("PGHOST", &facts["HOST"])
        .env("PGPORT", &facts["PORT"])
        .env("PGUSER", &facts["ROLE"])
        .env("PGDATABASE", &facts["DATABASE"])
        .env("PGPASSWORD", &facts["PASSWORD"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE");
    c
}

/// `sudo -n -u postgres piku-pgadmin ... <args>`, `secret` on its stdin.
fn admin(root: &Root, args: &[&str], secret: &str) -> Result<()> {
    let settings = Settings::load(root)?;
    let admin_user = settings.get_or("ADDONS_PG_ADMIN_USER", "postgres");
    let helper = paths::tools_dir().join("piku-pgadmin");
    let mut cmd = if paths::user_name() == admin_user {
        Command::new(&helper)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "-u", &admin_user]).arg(&helper);
        c
    };
    cmd.args(["--socket-dir", &settings.get_or("ADDONS_PG_SOCKET_DIR", "/var/run/postgresql"), "--port", &settings.get_or("ADDONS_PG_PORT", "5432")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::new(format!("cannot run sudo for piku-pgadmin: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(secret.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::new(format!("piku-pgadmin: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = if secret.is_empty() { stderr.into_owned() } else { stderr.replace(secret, "***") };
    let hint = if said.contains("password is required") || said.contains("not allowed") || said.contains("may not run") {
        format!("the piku user may not run {} as {admin_user}; as root run: ./install.sh --with postgres", helper.display())
    } else if said.contains("No such file") || said.contains("could not connect") || said.contains("Connection refused") {
        "is PostgreSQL running? (as root: ./install.sh --with postgres starts it)".to_string()
    } else {
        "nothing was changed".to_string()
    };
    Err(Error::new(format!("PostgreSQL {} failed: {}\n{hint}", args.join(" "), said.trim_end())))
}
