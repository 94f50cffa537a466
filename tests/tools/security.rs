//! Security (issue 19, items 5, 9, 10, 11, 12), without the daemons: a
//! config secret reaches no argv and no file another user can read; the
//! forced command leaves the user's words to the front door; setup:ssh never
//! loses a key; no two apps share a worker file; a push, the workers and the
//! kept releases are bounded; what users wrote reaches a terminal escaped.

use crate::harness::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CANARY: &str = "canary-5f0c1e-not-for-argv";

/// Every file under `dir` (not following symlinks).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            files(&p, out);
        } else if meta.is_file() {
            out.push(p);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The command sshd runs for the key in `line` of authorized_keys.
fn forced_command(line: &str) -> String {
    let start = line.find("command=\"").expect("a forced command") + "command=\"".len();
    let end = line[start..].find("\",").expect("the end of the forced command") + start;
    line[start..end].replace("\\\"", "\"")
}

/// A fresh ed25519 key pair in `dir`: the path of the public key.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&key).status().unwrap();
    assert!(st.success());
    key.with_extension("pub")
}

fn strace_available() -> bool {
    Command::new("strace").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Item 5 and 12: `config:set` over ssh, as sshd runs the forced command
/// (`$SHELL -c '<command>'` with SSH_ORIGINAL_COMMAND set), traced: no
/// process started for it, the redeploy included, has the value in its argv;
/// and every file that then holds it is 0600 or inside a 0700 directory.
#[test]
fn a_config_secret_is_in_no_argv_and_only_in_private_files() {
    assert!(strace_available(), "strace is needed (apt-get install strace; .ci/run installs it)");
    let s = Server::new();
    let app = GitApp::new(&[
        ("Procfile", "web: python3 -m http.server $PORT\nworker: sleep 1000\n"),
        ("ENV", "NGINX_SERVER_NAME=secret.example.test\n"),
    ]);
    s.push(&app, "secret", "main").ok();
    let keys = tempfile::tempdir().unwrap();
    let public = new_key(keys.path(), "client");
    s.piku(&["setup:ssh", public.to_str().unwrap()]).ok();
    let line = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).unwrap();
    let command = forced_command(line.lines().last().unwrap());

    let trace = s.dir.path().join("execve.trace");
    let bin = s.dir.path().join("prefix/bin");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o"])
        .arg(&trace)
        .args(["sh", "-c", &command])
        .env_clear()
        .env("HOME", s.home())
        .env("USER", "piku")
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
        .env("SSH_ORIGINAL_COMMAND", format!("config:set secret SECRET={CANARY} GLOB=*"))
        .current_dir(s.home())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = Run::from(out).ok();
    assert!(out.stderr.contains("Setting SECRET="), "{}", out.stderr);
    // The shell sshd runs did not expand the user's words.
    assert_eq!(s.ssh("config:get secret GLOB").ok().stdout, "*\n");
    let execs = std::fs::read_to_string(&trace).unwrap();
    assert!(execs.contains("piku-config") && execs.contains("post-receive"), "the trace missed the redeploy:\n{execs}");
    let in_argv: Vec<&str> = execs.lines().filter(|l| l.contains(CANARY)).collect();
    assert!(in_argv.is_empty(), "the secret was in argv:\n{}", in_argv.join("\n"));

    let root = s.root();
    let mut all = Vec::new();
    files(&root, &mut all);
    let holders: Vec<&PathBuf> = all.iter().filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()))).collect();
    let rel = |p: &Path| p.strip_prefix(&root).unwrap().display().to_string();
    let names: Vec<String> = holders.iter().map(|p| rel(p)).collect();
    assert!(names.iter().any(|n| n == "envs/secret/ENV"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("uwsgi-enabled/secret_worker.1")), "{names:?}");
    for p in holders {
        let private_dir = p.ancestors().skip(1).take_while(|d| *d != root).any(|d| mode(d) & 0o077 == 0);
        assert!(mode(p) & 0o077 == 0 || private_dir, "{} holds the secret and is {:o}, in no 0700 directory", rel(p), mode(p));
    }
    for dir in ["envs", "logs", "uwsgi-available", "uwsgi-enabled"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
}

/// Item 12: an argument or an ssh command line that is not UTF-8 is a usage
/// error (exit 2) that says so, never a panic, nor another command.
#[test]
fn a_non_utf8_argument_or_ssh_command_is_a_usage_error() {
    let s = Server::new();
    let bin = s.dir.path().join("prefix/bin");
    let bad = OsStr::from_bytes(b"config:get caf\xe9");
    let run = |c: &mut Command| Run::from(c.env("HOME", s.home()).env("PATH", format!("{}:/usr/bin:/bin", bin.display())).output().unwrap());
    run(Command::new(bin.join("piku")).arg(bad)).fails(2, "not valid UTF-8");
    run(Command::new(bin.join("piku")).env("SSH_ORIGINAL_COMMAND", bad)).fails(2, "not valid UTF-8");
    run(Command::new(bin.join("piku-config")).args([OsStr::new("--get"), bad, OsStr::new("K")])).fails(2, "not valid UTF-8");
}

/// Item 12: a commit message with control characters is shown escaped by `releases`.
#[test]
fn releases_escape_control_characters_of_commit_messages() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    app.commit(&[], "\u{1b}]0;owned\u{7}fix \u{1b}[31mred\u{9b}2J");
    s.push(&app, "esc", "main").ok();
    let out = s.ssh("releases esc").ok().stdout;
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{9b}'), "{out:?}");
    assert!(out.contains("\\x1b]0;owned\\x07fix \\x1b[31mred\\u{9b}2J"), "{out}");
}

/// Item 10: a key given with options (`restrict ssh-ed25519 ...`) is added
/// beside the other keys, never in place of another key of the same type;
/// added twice, it is one line.
#[test]
fn setup_ssh_recognises_keys_with_options_and_keeps_every_other_key() {
    let s = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let mine = std::fs::read_to_string(new_key(keys.path(), "mine")).unwrap();
    let ssh = s.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let before = format!("# the owner's own key\n{}", mine);
    std::fs::write(ssh.join("authorized_keys"), &before).unwrap();
    let theirs = std::fs::read_to_string(new_key(keys.path(), "theirs")).unwrap();
    let with_options = keys.path().join("restricted.pub");
    std::fs::write(&with_options, format!("restrict,command=\"echo hi\" {theirs}")).unwrap();
    for _ in 0..2 {
        s.piku(&["setup:ssh", with_options.to_str().unwrap()]).ok();
    }
    let after = std::fs::read_to_string(ssh.join("authorized_keys")).unwrap();
    assert!(after.starts_with(&before), "the owner's lines changed:\n{after}");
    let body = theirs.split_whitespace().nth(1).unwrap();
    let lines: Vec<&str> = after.lines().filter(|l| l.contains(body)).collect();
    assert_eq!(lines.len(), 1, "{after}");
    assert!(lines[0].starts_with("command=\"FINGERPRINT=") && !lines[0].contains("restrict") && !lines[0].contains("echo hi"), "{}", lines[0]);
    assert_eq!(after.lines().count(), 3, "{after}");
}

/// Item 10: an authorized_keys that is not UTF-8 is refused and left byte for byte.
#[test]
fn setup_ssh_never_rewrites_an_authorized_keys_it_cannot_read_as_text() {
    let s = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let public = new_key(keys.path(), "new");
    let ssh = s.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let before = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldKey caf\xe9@laptop\n".to_vec();
    std::fs::write(ssh.join("authorized_keys"), &before).unwrap();
    s.piku(&["setup:ssh", public.to_str().unwrap()]).fails(1, "not UTF-8");
    assert_eq!(std::fs::read(ssh.join("authorized_keys")).unwrap(), before);
}

/// Item 9: app `foo` with a kind `x_worker` would write `foo_x_worker.1.ini`,
/// the file of app `foo_x`'s `worker`: such a kind is refused at the push.
#[test]
fn a_kind_that_could_take_another_apps_worker_file_is_refused() {
    let s = Server::new();
    let foo_x = GitApp::new(&[("Procfile", "worker: sleep 1000\n")]);
    s.push(&foo_x, "foo_x", "main").ok();
    let foo = GitApp::new(&[("Procfile", "x_worker: sleep 1000\n")]);
    let r = s.push(&foo, "foo", "main");
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("\"x_worker\" contains '_'") && r.stderr.contains("\"x-worker\""), "{}", r.stderr);
    assert_eq!(s.live_id("foo"), None);
    let worker = s.read("uwsgi-enabled/foo_x_worker.1.ini");
    assert!(worker.contains("foo_x"), "{worker}");
}

/// Item 11: a push larger than PIKU_MAX_PUSH_MB is refused before its objects are kept.
#[test]
fn a_push_larger_than_the_servers_limit_is_refused() {
    let s = Server::new();
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nPIKU_HEALTHCHECK=off\nPIKU_DRAIN_SECONDS=0\nPIKU_MAX_PUSH_MB=1\n");
    // Random bytes do not compress: the pack itself is over the limit.
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let app = GitApp::new(STATIC_APP);
    std::fs::write(app.dir.path().join("public/noise.bin"), &noise).unwrap();
    app.commit(&[], "big");
    let r = s.push(&app, "big", "main");
    assert_ne!(r.code, 0, "{}", r.all());
    let mut objects = Vec::new();
    files(&s.root().join("repos/big/objects"), &mut objects);
    let kept: u64 = objects.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(kept < 1 << 20, "{kept} bytes of objects kept after a refused push: {objects:?}");
    assert_eq!(s.live_id("big"), None);

    // A small pack whose tree is huge (zeros compress well) is refused by pre-receive.
    let zeros = GitApp::new(STATIC_APP);
    std::fs::write(zeros.dir.path().join("public/zeros.bin"), vec![0u8; 3 << 20]).unwrap();
    zeros.commit(&[], "zeros");
    s.push(&zeros, "zeros", "main").fails(1, "PIKU_MAX_PUSH_MB");
    assert_eq!(s.live_id("zeros"), None);
}

/// Item 11: UWSGI_PROCESSES, the workers of `ps:scale` and PIKU_KEEP_RELEASES
/// are bounded; a refused value changes nothing.
#[test]
fn workers_and_kept_releases_are_bounded() {
    let s = Server::new();
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nPIKU_HEALTHCHECK=off\nPIKU_DRAIN_SECONDS=0\nPIKU_MAX_WORKERS=6\n");
    let app = GitApp::new(&[("Procfile", "worker: sleep 1000\n")]);
    s.push(&app, "busy", "main").ok();
    s.ssh("config:set busy UWSGI_PROCESSES=7").fails(1, "PIKU_MAX_WORKERS");
    s.ssh("ps:scale busy worker=4").fails(1, "8 worker processes");
    assert_eq!(s.read("envs/busy/SCALING"), "worker:1\n");
    s.ssh("ps:scale busy worker=3").ok();
    s.ssh("config:set busy PIKU_KEEP_RELEASES=1000").fails(1, "from 1 to 50");
    s.ssh("config:set busy PIKU_KEEP_RELEASES=0").fails(1, "from 1 to 50");
    assert_eq!(s.ssh("config:get busy PIKU_KEEP_RELEASES").code, 1);
    assert_eq!(s.ssh("config:get busy UWSGI_PROCESSES").code, 1);
}

/// Item 11: the emperor's unit bounds the tasks and the memory of every app.
#[test]
fn the_emperors_systemd_unit_bounds_tasks_and_memory() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("share/systemd/uwsgi-piku.service")).unwrap();
    let service = unit.split("[Service]").nth(1).unwrap().split("\n[").next().unwrap();
    let value = |key: &str| service.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string);
    let tasks: u32 = value("TasksMax").expect("TasksMax").parse().unwrap();
    assert!((256..=65536).contains(&tasks), "TasksMax={tasks}");
    let memory = value("MemoryMax").expect("MemoryMax");
    let percent: u32 = memory.strip_suffix('%').expect("MemoryMax as a share of the memory").parse().unwrap();
    assert!((10..100).contains(&percent), "MemoryMax={memory}");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&format!("TasksMax={tasks}")) && readme.contains(&format!("MemoryMax={memory}")), "the README does not explain the unit's limits");
}

/// Item 12: `setup` (install.sh runs it) rewrites the keys an older setup:ssh
/// wrote, whose forced command ended in `$SSH_ORIGINAL_COMMAND`; other lines stay.
#[test]
fn setup_upgrades_old_forced_commands_and_keeps_other_lines() {
    let s = Server::new();
    let door = s.dir.path().join("prefix/bin/piku");
    let ssh = s.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let mine = "restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMine owner";
    let old = format!("command=\"FINGERPRINT=SHA256:x NAME=ana {} $SSH_ORIGINAL_COMMAND\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAna ana", door.display());
    std::fs::write(ssh.join("authorized_keys"), format!("{mine}\n{old}\n")).unwrap();
    s.piku(&["setup"]).ok();
    let after = std::fs::read_to_string(ssh.join("authorized_keys")).unwrap();
    let new = format!("command=\"FINGERPRINT=SHA256:x NAME=ana {}\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAna ana", door.display());
    assert_eq!(after, format!("{mine}\n{new}\n"));
    s.piku(&["setup"]).ok();
    assert_eq!(std::fs::read_to_string(ssh.join("authorized_keys")).unwrap(), after);
}
