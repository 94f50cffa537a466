//! Config commands through the front door, as sshd hands them over.

use crate::harness::*;

fn deployed() -> Server {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "FROM_REPO=1\n")]);
    s.push(&app, "cfg", "main").ok();
    s
}

#[test]
fn config_set_survives_ssh_quoting_and_applies_without_rebuilding() {
    let s = deployed();
    let r = s.ssh(r#"config:set cfg 'GREETING=hello world' "QUOTE=it's \"x\"" 'EQ=a=b' 'DOLLAR=$HOME/x'"#).ok();
    assert!(!r.stderr.contains("Installing"), "{}", r.stderr);
    assert_eq!(s.ssh("config:get cfg GREETING").ok().stdout, "hello world\n");
    assert_eq!(s.ssh("config:get cfg QUOTE").ok().stdout, "it's \"x\"\n");
    assert_eq!(s.ssh("config:get cfg EQ").ok().stdout, "a=b\n");
    assert_eq!(s.ssh("config:get cfg DOLLAR").ok().stdout, "$HOME/x\n");
    let live = s.ssh("config:live cfg").ok().stdout;
    assert!(live.contains("GREETING=hello world\n"), "{live}");
    assert!(live.contains(&format!("DOLLAR={}/x\n", s.home().display())), "expanded in LIVE_ENV: {live}");
    assert!(live.contains("FROM_REPO=1\n") && live.contains("APP=cfg\n"), "{live}");
    assert!(s.read("uwsgi-enabled/cfg_web.1.ini").contains("env = GREETING=hello world\n"));
}

#[test]
fn config_get_of_an_unset_key_fails() {
    let s = deployed();
    s.ssh("config:get cfg NOPE").fails(1, "NOPE is not set for 'cfg'");
}

#[test]
fn config_set_with_a_malformed_pair_changes_nothing() {
    let s = deployed();
    s.ssh("config:set cfg GOOD=1").ok();
    let before = s.read("envs/cfg/ENV");
    for bad in ["NOEQUALS", "=x", "1A=x", "'A B=x'"] {
        s.ssh(&format!("config:set cfg OTHER=2 {bad}")).fails(1, "nothing was changed");
    }
    assert_eq!(s.read("envs/cfg/ENV"), before);
}

#[test]
fn config_set_that_breaks_the_app_is_undone() {
    let s = deployed();
    let live = s.read("envs/cfg/LIVE_ENV");
    s.ssh("config:set cfg PORT=notaport").fails(1, "was not applied and was undone");
    assert!(!s.root().join("envs/cfg/ENV").exists(), "the app had no ENV before");
    s.ssh("config:set cfg A=1").ok();
    let before = s.read("envs/cfg/ENV");
    s.ssh("config:set cfg PORT=0").fails(1, "was not applied and was undone");
    assert_eq!(s.read("envs/cfg/ENV"), before);
    assert_eq!(s.read("envs/cfg/LIVE_ENV").replace("A=1\n", ""), live);
}

#[test]
fn config_unset_and_no_restart() {
    let s = deployed();
    s.ssh("config:set cfg --no-restart LATER=1").ok();
    assert!(!s.read("envs/cfg/LIVE_ENV").contains("LATER=1"));
    s.ssh("config:unset cfg LATER").ok();
    s.ssh("config:get cfg LATER").fails(1, "not set");
}

#[test]
fn config_json() {
    let s = deployed();
    s.ssh("config:set cfg 'A=x \"y\"'").ok();
    assert_eq!(s.ssh("config cfg --json").ok().stdout, "{\"A\":\"x \\\"y\\\"\"}\n");
    assert!(s.ssh("config:live cfg --json").ok().stdout.starts_with("{\"A\":"));
}

#[test]
fn run_uses_the_live_tree_and_environment_and_passes_the_exit_status() {
    let s = deployed();
    assert_eq!(s.ssh("run cfg 'echo $APP $FROM_REPO; test -f Procfile'").ok().stdout, "cfg 1\n");
    assert_eq!(s.ssh("run cfg exit 7").code, 7);
}
