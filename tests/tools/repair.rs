//! `piku repair [<app>]`: says what a stopped deploy left behind, puts it
//! right through the chain, exits 1 when it cannot. (The crashes themselves,
//! under load with real daemons: tests/e2e/crash_cases.rs.)

use crate::harness::*;

#[test]
fn repair_finds_nothing_after_a_deploy_and_puts_a_stale_live_env_right() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let out = s.ssh("repair site").ok().all();
    assert!(out.contains("'site': nothing to repair"), "{out}");

    // A chain stopped after switching apps/site: LIVE_ENV is not the live release's.
    let live_env = s.root().join("envs/site/LIVE_ENV");
    let before = std::fs::read_to_string(&live_env).unwrap();
    std::fs::write(&live_env, "STALE=1\n").unwrap();
    let out = s.ssh("repair").ok().all();
    assert!(out.contains("'site': LIVE_ENV is not the environment of the live release"), "{out}");
    assert!(out.contains("'site': repaired (1 finding)"), "{out}");
    assert_eq!(std::fs::read_to_string(&live_env).unwrap(), before);
}

#[test]
fn repair_exits_1_and_says_why_when_it_cannot() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    // LIVE_ENV cannot be read, nor written back.
    let live_env = s.root().join("envs/site/LIVE_ENV");
    std::fs::remove_file(&live_env).unwrap();
    std::fs::create_dir(&live_env).unwrap();
    let r = s.ssh("repair site").fails(1, "LIVE_ENV");
    assert!(!r.all().contains("nothing to repair"), "{}", r.all());
    s.ssh("repair nosuchapp").fails(1, "nosuchapp");
}
