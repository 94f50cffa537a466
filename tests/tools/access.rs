//! Server plugins and per-key access.

use crate::harness::*;

#[test]
fn a_plugin_runs_with_its_arguments_and_is_listed_in_help() {
    let s = Server::new();
    let plugin = s.root().join("plugins/piku-hello");
    std::fs::write(&plugin, "#!/bin/sh\necho \"hello from plugin: $# args: $1|$2 root=$PIKU_ROOT home=$HOME\"\nexit 4\n").unwrap();
    chmod_x(&plugin);
    let r = s.ssh("hello 'a b' c");
    assert_eq!(r.code, 4, "the plugin's exit status is ours");
    assert_eq!(r.stdout, format!("hello from plugin: 2 args: a b|c root={} home={}\n", s.root().display(), s.home().display()));
    assert!(s.ssh("help").ok().stdout.contains("Plugins:\n  hello"));
    // Our own tools are never reachable as plugins.
    s.ssh("receive x").fails(2, "unknown command");
    s.ssh("../x").fails(2, "unknown command");
}

fn two_apps() -> Server {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "blog", "main").ok();
    s.push(&app, "shop", "main").ok();
    s
}

#[test]
fn a_key_limited_to_some_apps_sees_and_uses_only_those() {
    let s = two_apps();
    assert_eq!(s.ssh_as("ana", "blog", "apps").ok().stdout, " blog\n");
    s.ssh_as("ana", "blog", "config:set blog A=1").ok();
    s.ssh_as("ana", "blog", "config:live shop").fails(1, "the ssh key 'ana' may not use the app 'shop'; it may use: blog");
    s.ssh_as("ana", "blog", "git-receive-pack 'shop'").fails(1, "may not use the app 'shop'");
    s.ssh_as("ana", "blog,wiki", "git-receive-pack 'wiki'").fails(1, "may not create new apps");
    s.ssh_as("ana", "blog", "setup").fails(1, "may not run server-wide commands");
    s.ssh_as("ana", "blog", "setup:ssh -").fails(1, "may not run server-wide commands");
    s.ssh_as("ana", "blog", "anything").fails(1, "may not run 'anything'");
    assert!(!s.root().join("repos/wiki").exists());
    // An unrestricted key behaves as in piku.
    assert_eq!(s.ssh("apps").ok().stdout, " blog\n shop\n");
}

#[test]
fn setup_ssh_writes_name_and_apps_into_the_forced_command_and_updates_in_place() {
    let s = Server::new();
    let key = s.dir.path().join("ana");
    assert!(std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap().success());
    let pubkey = key.with_extension("pub");
    let p = pubkey.to_str().unwrap();
    s.piku(&["setup:ssh", "--name", "ana", "--apps", "blog,wiki", p]).ok();
    let auth = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).unwrap();
    assert!(auth.contains(" NAME=ana PIKU_ALLOWED_APPS=blog,wiki "), "{auth}");
    s.piku(&["setup:ssh", "--name", "ana", p]).ok();
    let auth = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).unwrap();
    assert_eq!(auth.lines().count(), 1);
    assert!(auth.contains(" NAME=ana /") && !auth.contains("PIKU_ALLOWED_APPS"), "{auth}");
    s.piku(&["setup:ssh", "--apps", "../x", p]).fails(1, "invalid app name");
    s.piku(&["setup:ssh", "--name", "a b", p]).fails(2, "--name");
}
