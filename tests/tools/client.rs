//! The client script (share/client/piku) as a developer runs it on a laptop:
//! a git checkout with a `piku` remote, or PIKU_SERVER/PIKU_APP, and `ssh` on
//! PATH. Here `ssh` is a stand-in that records its argv and then does what
//! ssh + sshd's forced command would: drop the options, take the host, and run
//! the server's front door with SSH_ORIGINAL_COMMAND = the rest joined by spaces.

use crate::harness::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/share/client/piku");
const EXAMPLE_ENV: &str = include_str!("../../share/client/init/ENV");
const EXAMPLE_PROCFILE: &str = include_str!("../../share/client/init/Procfile");

/// ssh's own option letters (OpenSSH's getopt string), so the stand-in drops
/// exactly what ssh would take as options and their values.
const SSH_GETOPT: &str = "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy";

/// The developer's machine: a HOME, a bin/ with the stand-in ssh, its log.
struct Laptop {
    dir: tempfile::TempDir,
}

impl Laptop {
    fn new(server: &Server) -> Laptop {
        let laptop = Laptop { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(laptop.home()).unwrap();
        std::fs::create_dir_all(laptop.dir.path().join("bin")).unwrap();
        let ssh = laptop.dir.path().join("bin/ssh");
        std::fs::write(
            &ssh,
            format!(
                r#"#!/bin/sh
# stands in for ssh: logs its argv (one word a line, then a blank line), then
# does what sshd does with the forced command: runs the front door with the
# command line in SSH_ORIGINAL_COMMAND, in a clean environment.
for word in "$@"; do printf '%s\n' "$word"; done >>'{log}'
echo >>'{log}'
while getopts '{getopt}' opt; do
    [ "$opt" != '?' ] || exit 255
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || exit 255
shift
exec env -i HOME='{home}' USER=piku PATH=/usr/local/bin:/usr/bin:/bin SSH_ORIGINAL_COMMAND="$*" '{door}'
"#,
                log = laptop.log().display(),
                getopt = SSH_GETOPT,
                home = server.home().display(),
                door = server.dir.path().join("prefix/bin/piku").display(),
            ),
        )
        .unwrap();
        chmod_x(&ssh);
        laptop
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("ssh.log")
    }

    /// A directory on the laptop that is not a git repository.
    fn plain_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn command(&self, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new(CLIENT);
        c.current_dir(cwd)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", self.dir.path().join("bin").display()))
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn piku_env(&self, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
        let out = self.command(cwd, env, args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn piku(&self, cwd: &Path, args: &[&str]) -> Run {
        self.piku_env(cwd, &[], args)
    }

    /// Every ssh invocation so far, each as its argv.
    fn ssh_calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.split_terminator("\n\n").map(|call| call.lines().map(str::to_string).collect()).collect()
    }

    fn last_ssh_call(&self) -> Vec<String> {
        self.ssh_calls().pop().expect("ssh was not run")
    }
}

/// A server with the static app deployed as `site`, and a checkout of it
/// whose `piku` remote points there.
fn deployed() -> (Server, GitApp, Laptop) {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    app.git(&["remote", "add", "piku", "piku@server:site"]);
    let laptop = Laptop::new(&s);
    (s, app, laptop)
}

#[test]
fn the_script_is_posix_sh() {
    for shell in ["sh", "dash", "bash"] {
        match Command::new(shell).arg("-n").arg(CLIENT).status() {
            Ok(st) => assert!(st.success(), "{shell} -n {CLIENT}"),
            Err(_) if shell != "sh" => {} // that shell is not installed here
            Err(e) => panic!("sh: {e}"),
        }
    }
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(std::fs::metadata(CLIENT).unwrap().permissions().mode() & 0o111, 0, "{CLIENT} is not executable");
}

#[test]
fn the_piku_remote_names_server_and_app() {
    let (_s, app, laptop) = deployed();
    laptop.piku(app.dir.path(), &["config:set", "--no-restart", "K=v"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'config:set' 'site' '--no-restart' 'K=v'"]);
    assert_eq!(laptop.piku(app.dir.path(), &["config:get", "K"]).ok().stdout, "v\n");
    let r = laptop.piku(app.dir.path(), &["config:live"]).ok();
    assert!(r.stdout.contains("NGINX_SERVER_NAME=static.example.test\n"), "{}", r.stdout);
}

#[test]
fn an_ssh_url_remote_gives_its_port_to_ssh_and_a_leading_slash_is_dropped() {
    let (_s, app, laptop) = deployed();
    app.git(&["remote", "set-url", "piku", "ssh://piku@server:2222/site"]);
    let r = laptop.piku(app.dir.path(), &["config:live"]).ok();
    assert!(r.stdout.contains("APP=site\n"), "{}", r.stdout);
    assert_eq!(laptop.last_ssh_call(), ["-p", "2222", "piku@server", "'config:live' 'site'"]);
    app.git(&["remote", "set-url", "piku", "piku@server:/site"]);
    laptop.piku(app.dir.path(), &["config:live"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'config:live' 'site'"]);
}

#[test]
fn remote_chooses_another_git_remote() {
    let (s, app, laptop) = deployed();
    // Another app from the same repository serves another name (a name is one app's).
    app.commit(&[("ENV", "NGINX_SERVER_NAME=staging.example.test\n")], "staging");
    s.push(&app, "staging", "main").ok();
    app.git(&["remote", "add", "staging", "piku@stage-host:staging"]);
    for flag in ["--remote", "-r"] {
        let r = laptop.piku(app.dir.path(), &[flag, "staging", "config:live"]).ok();
        assert!(r.stdout.contains("APP=staging\n"), "{}", r.stdout);
        assert_eq!(laptop.last_ssh_call(), ["piku@stage-host", "'config:live' 'staging'"]);
    }
    let before = laptop.ssh_calls().len();
    laptop.piku(app.dir.path(), &["--remote", "nope", "ps"]).fails(1, "no git remote 'nope'");
    assert_eq!(laptop.ssh_calls().len(), before, "ssh ran without a server");
}

#[test]
fn a_remote_that_is_not_ssh_is_refused() {
    let (_s, app, laptop) = deployed();
    app.git(&["remote", "set-url", "piku", "https://example.com/site.git"]);
    laptop.piku(app.dir.path(), &["ps"]).fails(1, "is not an ssh address");
    // A host that ssh would read as an option (-oProxyCommand=...) is refused.
    app.git(&["remote", "set-url", "--", "piku", "-oProxyCommand=touch pwned:site"]);
    laptop.piku(app.dir.path(), &["ps"]).fails(1, "would be read as an ssh option");
    assert!(laptop.ssh_calls().is_empty());
}

#[test]
fn outside_a_repository_piku_server_and_piku_app_are_used() {
    let (_s, _app, laptop) = deployed();
    let here = laptop.plain_dir("elsewhere");
    let r = laptop.piku_env(&here, &[("PIKU_SERVER", "piku@envhost"), ("PIKU_APP", "site")], &["config:live"]).ok();
    assert!(r.stdout.contains("APP=site\n"), "{}", r.stdout);
    assert_eq!(laptop.last_ssh_call(), ["piku@envhost", "'config:live' 'site'"]);
}

#[test]
fn without_a_server_commands_fail_clearly_and_nothing_is_sent() {
    let (_s, _app, laptop) = deployed();
    let here = laptop.plain_dir("elsewhere");
    for cmd in ["ps", "apps", "setup", "help", "shell", "run"] {
        laptop.piku(&here, &[cmd]).fails(1, "no piku server: add a git remote named 'piku'");
    }
    // A server alone is enough for server-wide commands, not for app ones.
    let server_only = [("PIKU_SERVER", "piku@envhost")];
    laptop.piku_env(&here, &server_only, &["ps"]).fails(1, "'ps' needs an app");
    laptop.piku_env(&here, &server_only, &["download", "x"]).fails(1, "'download' needs an app");
    assert!(laptop.ssh_calls().is_empty(), "{:?}", laptop.ssh_calls());
    let r = laptop.piku_env(&here, &server_only, &["apps"]).ok();
    assert_eq!(r.stdout, " site\n", "a static app, so no running workers");
}

#[test]
fn apps_setup_and_help_are_sent_without_the_app() {
    let (_s, app, laptop) = deployed();
    let r = laptop.piku(app.dir.path(), &["apps"]).ok();
    assert_eq!(r.stdout, " site\n");
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'apps'"]);
    laptop.piku(app.dir.path(), &["setup"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'setup'"]);
    let r = laptop.piku(app.dir.path(), &["help"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'help'"]);
    let client_part = r.stdout.find("download <path>").expect("the client's commands");
    let server_part = r.stdout.find("config:set <app>").expect("the server's help");
    assert!(client_part < server_part, "{}", r.stdout);
    // help <command>: the server's full help of that command, alone.
    let r = laptop.piku(app.dir.path(), &["help", "config:set"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'help' 'config:set'"]);
    assert!(r.stdout.starts_with("Usage: piku config:set") && r.stdout.contains("Examples:"), "{}", r.stdout);
    // <command> --help goes with the app, and is help all the same.
    let r = laptop.piku(app.dir.path(), &["ps:scale", "--help"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'ps:scale' 'site' '--help'"]);
    assert!(r.stdout.starts_with("Usage: piku ps:scale"), "{}", r.stdout);
}

#[test]
fn config_values_survive_the_trip_exactly() {
    let (_s, app, laptop) = deployed();
    let values = [("A", "hello world"), ("B", "it's"), ("C", "$HOME"), ("D", "x=y"), ("E", r#"say "hi" \ `now` ; *"#)];
    let pairs: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["config:set"];
    args.extend(pairs.iter().map(String::as_str));
    laptop.piku(app.dir.path(), &args).ok();
    for (key, value) in values {
        let r = laptop.piku(app.dir.path(), &["config:get", key]).ok();
        assert_eq!(r.stdout, format!("{value}\n"), "{key}");
    }
}

#[test]
fn ssh_options_before_the_command_go_to_ssh() {
    let (_s, app, laptop) = deployed();
    laptop.piku(app.dir.path(), &["-A", "-p", "2200", "-o", "BatchMode=yes", "-qi", "key file", "ps"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["-A", "-p", "2200", "-o", "BatchMode=yes", "-qi", "key file", "piku@server", "'ps' 'site'"]);
    // Mixed with --remote; a port from an ssh:// URL comes after the user's
    // options, as ssh takes the first -p it is given.
    app.git(&["remote", "add", "other", "ssh://piku@server:2222/site"]);
    laptop.piku(app.dir.path(), &["-v", "--remote", "other", "-p2201", "ps"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["-v", "-p2201", "-p", "2222", "piku@server", "'ps' 'site'"]);
    laptop.piku(app.dir.path(), &["-p"]).fails(2, "needs a value");
}

#[test]
fn run_passes_the_exit_status_back_and_stdin_through() {
    let (_s, app, laptop) = deployed();
    let r = laptop.piku(app.dir.path(), &["run", "echo ran in $PWD; exit 3"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stdout.starts_with("ran in ") && r.stdout.trim_end().ends_with("/apps/site"), "{}", r.stdout);
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'run' 'site' 'echo ran in $PWD; exit 3'"], "no -t without a terminal");
    let r = laptop.piku(app.dir.path(), &["run", "printf", "[%s]", "a b", "it's"]).ok();
    assert_eq!(r.stdout, "[a b][it's]");
    // The first `--` ends options, as in piku: the command never sees it.
    let r = laptop.piku(app.dir.path(), &["run", "--", "printf", "[%s]", "-al", "--"]).ok();
    assert_eq!(r.stdout, "[-al][--]");
    laptop.piku(app.dir.path(), &["run", "--"]).fails(2, "needs a command");
    let mut child = laptop.command(app.dir.path(), &[], &["run", "wc", "-l"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"one\ntwo\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn shell_and_tmux_ask_for_a_terminal() {
    let (_s, app, laptop) = deployed();
    // No terminal here: bash reads the null stdin and exits at once.
    laptop.piku(app.dir.path(), &["shell"]).ok();
    assert_eq!(laptop.last_ssh_call(), ["-t", "piku@server", "'run' 'site' 'bash' '-l'"]);
    let _ = laptop.piku(app.dir.path(), &["tmux"]);
    assert_eq!(laptop.last_ssh_call(), ["-t", "piku@server", "'run' 'site' 'tmux' 'new-session' '-A' '-s' 'site'"]);
}

#[test]
fn download_copies_a_file_byte_for_byte() {
    let (s, app, laptop) = deployed();
    let bytes: Vec<u8> = (0..=255u8).chain(b"\n\n".iter().copied()).collect();
    std::fs::write(app.dir.path().join("public/blob.bin"), &bytes).unwrap();
    app.commit(&[], "binary");
    s.push(&app, "site", "main").ok();
    let here = laptop.plain_dir("downloads");
    let env = [("PIKU_SERVER", "piku@server"), ("PIKU_APP", "site")];
    laptop.piku_env(&here, &env, &["download", "public/blob.bin"]).ok();
    assert_eq!(std::fs::read(here.join("blob.bin")).unwrap(), bytes);
    laptop.piku_env(&here, &env, &["download", "public/index.html", "copy.html"]).ok();
    assert_eq!(std::fs::read_to_string(here.join("copy.html")).unwrap(), "version one\n");
    std::fs::create_dir(here.join("sub")).unwrap();
    laptop.piku_env(&here, &env, &["download", "public/index.html", "sub"]).ok();
    assert_eq!(std::fs::read_to_string(here.join("sub/index.html")).unwrap(), "version one\n");
    let r = laptop.piku_env(&here, &env, &["download", "public/index.html", "-"]).ok();
    assert_eq!(r.stdout, "version one\n");
    // A file that is not there: a failure, and nothing (not even a part) left behind.
    let before: Vec<_> = std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().file_name()).collect();
    let r = laptop.piku_env(&here, &env, &["download", "public/missing.txt"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let after: Vec<_> = std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
    laptop.piku_env(&here, &env, &["download", "public/index.html", "nodir/x"]).fails(1, "there is no directory 'nodir'");
}

#[test]
fn init_writes_the_examples_and_never_overwrites() {
    let (s, _app, laptop) = deployed();
    let here = laptop.plain_dir("newapp");
    let r = laptop.piku(&here, &["init"]).ok();
    assert!(r.stderr.contains("Wrote ENV") && r.stderr.contains("Wrote Procfile"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(here.join("ENV")).unwrap(), EXAMPLE_ENV);
    assert_eq!(std::fs::read_to_string(here.join("Procfile")).unwrap(), EXAMPLE_PROCFILE);
    assert!(laptop.ssh_calls().is_empty(), "init needs no server");

    std::fs::write(here.join("Procfile"), "web: mine\n").unwrap();
    std::fs::remove_file(here.join("ENV")).unwrap();
    let r = laptop.piku(&here, &["init"]).ok();
    assert!(r.stderr.contains("Procfile already exists; left as it is"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(here.join("Procfile")).unwrap(), "web: mine\n");
    assert_eq!(std::fs::read_to_string(here.join("ENV")).unwrap(), EXAMPLE_ENV);

    // The examples are valid as they stand: uncomment the static worker and push.
    let app = GitApp::new(&[("ENV", EXAMPLE_ENV), ("Procfile", &EXAMPLE_PROCFILE.replace("#static: public", "static: public")), ("public/index.html", "hi\n")]);
    s.push(&app, "fromexample", "main").ok();
    assert!(s.live_id("fromexample").is_some());
}

#[test]
fn a_client_plugin_runs_here_with_the_server_and_app() {
    let (_s, app, laptop) = deployed();
    let plugins = laptop.home().join(".piku/client-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let plugin = plugins.join("hello");
    std::fs::write(&plugin, "#!/bin/sh\nprintf 'server=%s app=%s\\n' \"$PIKU_SERVER\" \"$PIKU_APP\"\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\nexit 4\n")
        .unwrap();
    chmod_x(&plugin);
    let r = laptop.piku(app.dir.path(), &["hello", "a b", "it's"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert_eq!(r.stdout, "server=piku@server app=site\n[a b][it's]");
    assert!(laptop.ssh_calls().is_empty());
    // Not executable: not a plugin, so the command goes to the server.
    std::fs::write(plugins.join("other"), "#!/bin/sh\nexit 0\n").unwrap();
    laptop.piku(app.dir.path(), &["other"]).fails(2, "unknown command 'other'");
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'other' 'site'"]);
}

#[test]
fn setup_ssh_sends_a_local_key_file_on_stdin() {
    let (s, app, laptop) = deployed();
    let key = laptop.dir.path().join("id");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(st.success());
    let pubkey = key.with_extension("pub");
    laptop.piku(app.dir.path(), &["setup:ssh", "--name", "laptop", pubkey.to_str().unwrap()]).ok();
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'setup:ssh' '--name' 'laptop' '-'"]);
    let auth = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).unwrap();
    assert!(auth.contains("NAME=laptop ") && auth.contains(std::fs::read_to_string(&pubkey).unwrap().trim()), "{auth}");
    laptop.piku(app.dir.path(), &["setup:ssh", "/nonexistent.pub"]).fails(1, "cannot read the public key file");
}

#[test]
fn help_and_no_command_print_usage_without_ssh() {
    let (_s, app, laptop) = deployed();
    let r = laptop.piku(app.dir.path(), &["--help"]).ok();
    assert!(r.stdout.starts_with("Usage: piku ") && r.stdout.contains("init"), "{}", r.stdout);
    let r = laptop.piku(app.dir.path(), &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("Usage: piku "), "{}", r.stderr);
    assert!(laptop.ssh_calls().is_empty());
}

#[test]
fn install_sh_client_installs_the_script_without_root_work() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bin");
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
        .arg("--client")
        .env("HOME", dir.path())
        .env("PIKU_CLIENT_DIR", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let installed = std::fs::read(target.join("piku")).unwrap();
    assert_eq!(installed, std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/share/client/piku")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(target.join("piku")).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn the_client_sends_without_the_app_exactly_the_commands_the_table_says_take_none() {
    let s = Server::new();
    let no_app: std::collections::BTreeSet<String> = crate::front_door::table(&s).into_iter().filter(|(_, takes)| takes == "none").map(|(n, _)| n).collect();
    let script = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("share/client/piku")).unwrap();
    let line = script.lines().skip_while(|l| !l.contains("piku help --json")).find(|l| l.trim_end().ends_with(')')).expect("the client's list");
    let mut listed: std::collections::BTreeSet<String> = line.trim().trim_end_matches(')').split('|').map(|w| w.trim().to_string()).collect();
    // These two have branches of their own in the client.
    for own in ["help", "setup:ssh"] {
        assert!(script.contains(&format!("\n    {own})\n")), "no branch for {own}");
        listed.insert(own.to_string());
    }
    assert_eq!(listed, no_app, "share/client/piku and the front door's table disagree");
}

#[test]
fn certs_is_sent_without_the_app() {
    let (_s, app, laptop) = deployed();
    let r = laptop.piku(app.dir.path(), &["certs", "--json"]).ok();
    // The deployed app's self-signed certificate, made by piku-nginx.
    assert!(r.stdout.starts_with("[{\"app\":\"site\",\"names\":[\"static.example.test\"],\"issuer\":\"O = piku self-signed, CN = static.example.test\",\"acme\":\"\",\"self_signed\":true,"), "{}", r.stdout);
    assert_eq!(laptop.last_ssh_call(), ["piku@server", "'certs' '--json'"]);
}
