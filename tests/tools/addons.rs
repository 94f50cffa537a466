//! The add-on commands without the servers: bad input is refused with a
//! clear error and changes nothing (the servers' side is tests/e2e's
//! addons_postgres_redis).

use crate::harness::*;

#[test]
fn bad_add_on_commands_say_what_is_wrong_and_change_nothing() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    s.ssh("addons:create site mysql").fails(2, "unknown add-on \"mysql\"; piku has 'postgres' and 'redis'");
    s.ssh("addons:create nosuch postgres").fails(1, "app 'nosuch' not found");
    s.ssh("addons:create").fails(2, "Required positional arguments not provided");
    let r = s.ssh("addons site").ok();
    assert!(r.stdout.is_empty() && r.stderr.contains("has no add-ons"), "{}", r.all());
    assert_eq!(s.ssh("addons site --json").ok().stdout, "[]\n");
    assert_eq!(s.ssh("addons:backups site --json").ok().stdout, "[]\n");
    s.ssh("addons:backups site --bogus").fails(2, "--bogus");
    s.ssh("addons:backup site").fails(1, "'site' has no add-ons");
    s.ssh("addons:backup site redis").fails(1, "has no redis add-on");
    s.ssh("addons:restore site postgres postgres_20200101-000000_none_manual.pgdump").fails(1, "has no postgres add-on");
    s.ssh("addons:shell site postgres").fails(1, "has no postgres add-on");
    s.ssh("addons:destroy site redis").fails(1, "has no redis add-on");
    s.ssh("addons:frobnicate site").fails(2, "unknown command 'addons:frobnicate'");
    // The tools are never plugins: `pgadmin` from ssh runs nothing.
    s.ssh("pgadmin drop site").fails(2, "unknown command 'pgadmin'");
    assert!(!s.ssh("help").ok().stdout.contains("Plugins:"));
    assert!(!s.root().join("addons").exists(), "nothing was written for the add-ons");
}

#[test]
fn a_postgres_that_cannot_be_reached_leaves_no_add_on_behind() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    // No server on this socket directory: the admin step fails, whoever we are.
    let settings = s.read("settings");
    s.write_settings(&format!("{settings}ADDONS_PG_SOCKET_DIR={}\nADDONS_PG_PORT=1\n", s.dir.path().display()));
    let r = s.ssh("addons:create site postgres");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("PostgreSQL"), "{}", r.all());
    assert!(!s.root().join("addons/site/postgres").exists());
    assert!(!s.read("envs/site/LIVE_ENV").contains("DATABASE_URL"));
}

#[test]
fn pgadmin_refuses_what_it_was_not_made_for() {
    let s = Server::new();
    // No password on stdin (the harness gives none): refused before any SQL.
    s.tool("piku-pgadmin", &["create", "site"]).fails(2, "at least 32 letters and digits");
    s.tool("piku-pgadmin", &["drop", "../x"]).fails(1, "invalid app name");
    s.tool("piku-pgadmin", &["--socket-dir", "relative", "drop", "site"]).fails(2, "an absolute path");
    s.tool("piku-pgadmin", &["create", &"a".repeat(59)]).fails(1, "too long for a PostgreSQL database");
}

#[test]
fn a_deploy_of_an_app_without_add_ons_takes_no_backup() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    let r = s.push(&app, "site", "main").ok();
    assert!(!r.all().contains("Backing up"), "{}", r.all());
    s.tool("piku-addons", &["before-deploy", "site", "x"]).ok();
    s.tool("piku-addons", &["nightly"]).ok();
    assert!(!s.root().join("data/site/backups").exists());
}
