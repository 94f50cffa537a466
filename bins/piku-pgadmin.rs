//! piku-pgadmin: the one thing the piku user may do as PostgreSQL's
//! superuser. It runs as `postgres` through one sudo rule
//! (`piku ALL=(postgres) NOPASSWD: /usr/local/bin/piku-pgadmin *`) and can
//! only create or drop a role and a database both named `piku_<app>`:
//!
//!   piku-pgadmin [--socket-dir D] [--port P] create <app>   (the password on stdin)
//!   piku-pgadmin [--socket-dir D] [--port P] drop <app>
//!
//! The role may log in and owns its database, nothing more (no superuser,
//! CREATEDB, CREATEROLE); nobody else may connect to that database (CONNECT
//! is revoked from PUBLIC). The password never reaches an argv or a log: it
//! arrives on stdin and goes to psql on stdin. `create` on a role that is
//! already there (kept by `addons:destroy --keep-data`) gives it the new
//! password and keeps its data.

use argh::FromArgs;
use piku::error::{Error, Result};
use piku::{AppName, output};
use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};

/// Create or drop an app's PostgreSQL role and database (run as postgres, through sudo).
#[derive(FromArgs)]
struct Args {
    /// the directory of the server's unix socket (default /var/run/postgresql)
    #[argh(option, default = "String::from(\"/var/run/postgresql\")")]
    socket_dir: String,
    /// the server's port (default 5432)
    #[argh(option, default = "5432")]
    port: u16,
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Create(Create),
    Drop(Drop),
}

/// Create the role and database piku_<app> (or set a new password on a kept
/// role); the password is read from stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct Create {
    /// the app
    #[argh(positional)]
    app: String,
}

/// Drop the database and role piku_<app> (its sessions are ended).
#[derive(FromArgs)]
#[argh(subcommand, name = "drop")]
struct Drop {
    /// the app
    #[argh(positional)]
    app: String,
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-pgadmin", || {
        if !args.socket_dir.starts_with('/') || args.socket_dir.contains(['\n', '\0']) {
            return Err(Error::usage(format!("--socket-dir {:?}: an absolute path, please", args.socket_dir)));
        }
        match &args.cmd {
            Cmd::Create(c) => {
                let name = db_name(&c.app)?;
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password).map_err(|e| Error::new(format!("cannot read the password from stdin: {e}")))?;
                let password = password.trim();
                // The caller makes it from random bytes; anything else is refused, so it can never break out of the literal.
                if password.len() < 32 || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(Error::usage("the password on stdin must be at least 32 letters and digits"));
                }
                psql(&args, &create_sql(&name, password), password)
            }
            Cmd::Drop(d) => psql(&args, &drop_sql(&db_name(&d.app)?), ""),
        }
    })
}

/// `piku_<app>`: the role's and the database's name (at most 63 bytes, PostgreSQL's limit).
fn db_name(app: &str) -> Result<String> {
    let app = AppName::parse(app)?;
    let name = format!("piku_{app}");
    if name.len() > 63 {
        return Err(Error::new(format!("the app name '{app}' is too long for a PostgreSQL database (at most 58 characters)")));
    }
    Ok(name)
}

/// A validated app name holds only `[A-Za-z0-9._-]`: safe inside "..." and '...'.
fn create_sql(name: &str, password: &str) -> String {
    format!(
        "SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') \
           THEN 'ALTER ROLE \"{name}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ''{password}''' \
           ELSE 'CREATE ROLE \"{name}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ''{password}''' END\n\\gexec\n\
         SELECT 'CREATE DATABASE \"{name}\" OWNER \"{name}\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')\n\\gexec\n\
         REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC;\n\
         GRANT CONNECT, TEMPORARY ON DATABASE \"{name}\" TO \"{name}\";\n"
    )
}

fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\nDROP ROLE IF EXISTS \"{name}\";\n")
}

/// Run `sql` with psql as this (superuser) OS user over the unix socket;
/// `secret` is masked in whatever psql says.
fn psql(args: &Args, sql: &str, secret: &str) -> Result<()> {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-h", &args.socket_dir, "-p", &args.port.to_string()])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("cannot run psql: {e}; install PostgreSQL (as root: ./install.sh --with postgres)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(sql.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::new(format!("psql: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !secret.is_empty() {
        said = said.replace(secret, "***");
    }
    Err(Error::new(format!("psql failed on {}:{}: {}", args.socket_dir, args.port, said.trim_end())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sql() {
        assert_eq!(db_name("my-app.v2").unwrap(), "piku_my-app.v2");
        assert!(db_name(&"a".repeat(59)).unwrap_err().message.contains("too long"));
        assert!(db_name("a;b").is_err());
        let sql = create_sql("piku_a", "abc");
        assert!(sql.contains("REVOKE ALL ON DATABASE \"piku_a\" FROM PUBLIC"));
        assert!(sql.contains("NOCREATEROLE"));
    }
}
