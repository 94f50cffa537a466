//! The front door: its command line, as sshd hands it over, and what it refuses.

use crate::harness::*;

#[test]
fn help_lists_the_commands() {
    let s = Server::new();
    let r = s.ssh("help").ok();
    for cmd in ["apps", "config:set", "config:live", "setup:ssh", "git-receive-pack"] {
        assert!(r.stdout.contains(cmd), "{cmd} missing from help:\n{}", r.stdout);
    }
    assert_eq!(s.piku(&[]).ok().stdout, r.stdout);
}

#[test]
fn commands_that_are_not_pikus_are_refused_and_nothing_runs() {
    let s = Server::new();
    let marker = s.dir.path().join("ran");
    for cmd in [format!("touch {}", marker.display()), "bash -c id".into(), "ls".into(), "scp -t /etc".into(), "sh".into()] {
        let r = s.ssh(&cmd).fails(2, "unknown command");
        assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    }
    assert!(!marker.exists());
}

#[test]
fn an_unparsable_command_line_is_a_usage_error() {
    let s = Server::new();
    s.ssh("config:set app 'unterminated").fails(2, "cannot parse the command");
}

#[test]
fn bad_app_names_are_refused_and_nothing_is_created() {
    let s = Server::new();
    for name in ["../x", ".", "..", "a;b", "-x", "a b", "é", "'../x'"] {
        let quoted = shell_words::quote(name);
        s.ssh(&format!("git-receive-pack {quoted}")).fails(1, "invalid app name");
        s.ssh(&format!("config:live {quoted}")).fails(1, "invalid app name");
    }
    s.ssh("git-receive-pack ''").fails(1, "invalid app name");
    for dir in ["repos", "apps", "releases", "envs"] {
        assert_eq!(std::fs::read_dir(s.root().join(dir)).unwrap().count(), 0, "{dir} is not empty");
    }
}

#[test]
fn commands_on_a_missing_app_say_so() {
    let s = Server::new();
    for cmd in ["config:live nope", "config nope", "config:get nope K", "config:set nope K=V", "deploy nope", "stop nope", "run nope ls"] {
        s.ssh(cmd).fails(1, "app 'nope' not found");
    }
    s.ssh("git-upload-pack nope").fails(1, "not found");
}

#[test]
fn setup_is_idempotent() {
    let s = Server::new();
    let ini = s.read("uwsgi/uwsgi.ini");
    assert!(ini.contains(&format!("emperor = {}", s.root().join("uwsgi-enabled").display())), "{ini}");
    let again = s.ssh("setup").ok();
    assert!(!again.stderr.contains("Created"), "{}", again.stderr);
    assert_eq!(s.read("uwsgi/uwsgi.ini"), ini);
}

#[test]
fn setup_ssh_adds_a_key_once_with_the_forced_command() {
    let s = Server::new();
    let key_file = s.dir.path().join("id");
    let st = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key_file).status().unwrap();
    assert!(st.success());
    let pubkey = key_file.with_extension("pub");
    s.piku(&["setup:ssh", pubkey.to_str().unwrap()]).ok();
    let again = s.piku(&["setup:ssh", pubkey.to_str().unwrap()]).ok();
    assert!(again.stderr.contains("already allowed"), "{}", again.stderr);
    let auth = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).unwrap();
    assert_eq!(auth.lines().count(), 1, "{auth}");
    let line = auth.lines().next().unwrap();
    assert!(line.starts_with("command=\"FINGERPRINT=SHA256:"), "{line}");
    assert!(line.contains("NAME=default ") && line.contains("/piku\",no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding ssh-ed25519 "), "{line}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.home().join(".ssh/authorized_keys")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(s.home().join(".ssh")).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn setup_ssh_refuses_what_is_not_a_key() {
    let s = Server::new();
    let bad = s.dir.path().join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 not-base64 x\n").unwrap();
    s.piku(&["setup:ssh", bad.to_str().unwrap()]).fails(1, "not a valid ssh public key");
    s.piku(&["setup:ssh", "/nonexistent.pub"]).fails(1, "cannot read public key file");
    assert!(!s.home().join(".ssh/authorized_keys").exists());
}

#[test]
fn apps_lists_apps_and_marks_running_ones_exactly() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "worker: sleep 1000\n")]);
    s.push(&app, "foo", "main").ok();
    s.push(&app, "foobar", "main").ok();
    s.tool("piku-uwsgi", &["stop", "foobar"]).ok();
    assert_eq!(s.ssh("apps").ok().stdout, "*foo\n foobar\n");
}
