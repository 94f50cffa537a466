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
    for name in ["../x", ".", "..", "a;b", "a b", "é", "'../x'"] {
        let quoted = shell_words::quote(name);
        s.ssh(&format!("git-receive-pack {quoted}")).fails(1, "invalid app name");
        s.ssh(&format!("config:live {quoted}")).fails(1, "invalid app name");
    }
    // Where the app goes, a word like a flag is a usage error naming the app.
    s.ssh("git-receive-pack -x").fails(2, "invalid app name \"-x\"");
    s.ssh("config:live --json").fails(2, "invalid app name \"--json\"");
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

/// The front door's table of commands, as `help --json` gives it.
pub fn table(s: &Server) -> Vec<(String, String)> {
    let json = s.piku(&["help", "--json"]).ok().stdout;
    json.split("{\"name\":\"")
        .skip(1)
        .map(|row| {
            let name = row.split('"').next().unwrap().to_string();
            let app = row.split("\"app\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
            (name, app)
        })
        .collect()
}

#[test]
fn every_command_has_help_on_stdout_and_refuses_a_bogus_flag_with_its_usage() {
    let s = Server::new();
    let table = table(&s);
    assert!(table.len() >= 24, "{table:?}");
    for (name, takes) in &table {
        let help = s.piku(&[name, "--help"]).ok();
        assert!(help.stdout.starts_with(&format!("Usage: piku {name}")), "{name} --help:\n{}", help.stdout);
        assert!(help.stdout.contains("Examples:") && help.stderr.is_empty(), "{name} --help:\n{}{}", help.stdout, help.stderr);
        assert_eq!(s.ssh(&format!("help {name}")).ok().stdout, help.stdout, "help {name}");
        let r = s.piku(&[name, "--bogus-flag"]).fails(2, &format!("Usage: piku {name}"));
        assert!(r.stderr.contains("--bogus-flag") && r.stdout.is_empty(), "{name}: {}", r.stderr);
        // After the app too, except for run, whose words there are the command's.
        if takes == "app" && name != "run" {
            let r = s.piku(&[name, "app", "--bogus-flag"]).fails(2, "Unrecognized argument: --bogus-flag");
            assert!(r.stderr.contains(&format!("Usage: piku {name}")), "{name}: {}", r.stderr);
        }
    }
    s.ssh("help nope").fails(2, "there is no command 'nope'");
}

#[test]
fn help_version_and_the_table_agree() {
    let s = Server::new();
    let overview = s.piku(&["--help"]).ok().stdout;
    assert_eq!(s.piku(&["help"]).ok().stdout, overview);
    assert_eq!(s.piku(&["-h"]).ok().stdout, overview);
    for (name, _) in table(&s) {
        assert!(overview.contains(&format!("\n  {name}")), "{name} is not listed:\n{overview}");
    }
    let v = s.piku(&["--version"]).ok();
    assert_eq!(v.stdout, format!("piku {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn app_names_and_values_are_never_taken_for_help_or_flags() {
    let s = Server::new();
    // An app (or key) spelled `help` is an app, not a request for help.
    s.ssh("config help").fails(1, "app 'help' not found");
    s.ssh("config:get help help").fails(1, "app 'help' not found");
    s.ssh("run help -- --help").fails(1, "app 'help' not found");
}

#[test]
fn a_plugin_named_like_a_word_of_the_help_text_runs() {
    let s = Server::new();
    let plugins = s.root().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["list", "show"] {
        let path = plugins.join(format!("piku-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\necho {name} \"$@\"\n")).unwrap();
        chmod_x(&path);
    }
    let help = s.ssh("help").ok().stdout;
    assert!(help.contains("Plugins:\n  list\n  show"), "{help}");
    assert_eq!(s.ssh("list a 'b c'").ok().stdout, "list a b c\n");
    assert_eq!(s.ssh("show --json").ok().stdout, "show --json\n");
    // A plugin never shadows a command of the table.
    let shadow = plugins.join("piku-apps");
    std::fs::write(&shadow, "#!/bin/sh\necho plugin\n").unwrap();
    chmod_x(&shadow);
    assert!(!s.ssh("apps").ok().stdout.contains("plugin"));
    assert!(!s.ssh("help").ok().stdout.contains("  apps\n"));
}

#[test]
fn exit_codes_are_0_done_1_failed_2_usage() {
    let s = Server::new();
    assert_eq!(s.ssh("apps").code, 0);
    assert_eq!(s.ssh("config:get nope KEY").code, 1);
    for usage in ["nonsense", "--bogus", "config:get", "config:get a b c", "releases", "ps:scale", "apps extra", "logs a -n many"] {
        assert_eq!(s.ssh(usage).code, 2, "{usage}");
    }
}

#[test]
fn listings_put_data_on_stdout_and_json_alone() {
    let s = Server::new();
    let r = s.ssh("apps").ok();
    assert_eq!(r.stdout, "", "no data without apps");
    assert!(r.stderr.contains("no applications"), "{}", r.stderr);
    let r = s.ssh("apps --json").ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("[]\n", ""));
    let r = s.ssh("certs --json").ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("[]\n", ""));
    let app = GitApp::new(&[("Procfile", "worker: sleep 1000\n")]);
    s.push(&app, "foo", "main").ok();
    s.push(&app, "bar", "main").ok();
    s.tool("piku-uwsgi", &["stop", "bar"]).ok();
    assert_eq!(s.ssh("apps --json").ok().stdout, "[{\"name\":\"bar\",\"running\":false},{\"name\":\"foo\",\"running\":true}]\n");
}

/// nginx/<app>.crt (valid for `days`) and acme/<app>/CERT, as piku-nginx keeps them.
fn install_cert(s: &Server, app: &str, names: &[&str], issuer_cn: &str, ca: &str, days: u32) {
    let crt = s.root().join("nginx").join(format!("{app}.crt"));
    let key = s.dir.path().join(format!("{app}.key"));
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", &days.to_string()])
        .args(["-subj", &format!("/CN={issuer_cn}"), "-addext", &format!("subjectAltName={}", san.join(","))])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let facts = s.root().join("acme").join(app);
    std::fs::create_dir_all(&facts).unwrap();
    std::fs::write(facts.join("CERT"), format!("NAMES={}\nCA={ca}\n", names.join(" "))).unwrap();
}

#[test]
fn certs_lists_each_apps_names_issuer_and_expiry() {
    let s = Server::new();
    install_cert(&s, "blog", &["blog.test", "www.blog.test"], "blog.test", "self-signed", 10);
    install_cert(&s, "wiki", &["wiki.example.com"], "Pebble Intermediate CA", "https://127.0.0.1:14000/dir", 90);
    let text = s.ssh("certs").ok();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(lines[0].starts_with("blog  20") && lines[0].ends_with("  blog.test,www.blog.test  self-signed"), "{}", lines[0]);
    assert!(lines[1].starts_with("wiki  20") && lines[1].ends_with("wiki.example.com  CN = Pebble Intermediate CA (https://127.0.0.1:14000/dir)"), "{}", lines[1]);
    let json = s.ssh("certs --json").ok().stdout;
    assert!(json.starts_with("[{\"app\":\"blog\",\"names\":[\"blog.test\",\"www.blog.test\"],\"issuer\":\"CN = blog.test\",\"acme\":\"\",\"self_signed\":true,\"expires\":\"20"), "{json}");
    assert!(json.contains("\"app\":\"wiki\",\"names\":[\"wiki.example.com\"],\"issuer\":\"CN = Pebble Intermediate CA\",\"acme\":\"https://127.0.0.1:14000/dir\",\"self_signed\":false"), "{json}");
    // Valid for 10 days from a moment ago: 9 whole days left (10 within the same second).
    assert!(json.contains("\"days_left\":9}") || json.contains("\"days_left\":10}"), "{json}");
    let expires = json.split("\"expires\":\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z') && &expires[10..11] == "T", "{expires}");
}

#[test]
fn a_limited_key_follows_the_tables_rules() {
    let s = Server::new();
    let plugin = s.root().join("plugins/piku-list");
    std::fs::write(&plugin, "#!/bin/sh\necho listed\n").unwrap();
    chmod_x(&plugin);
    for cmd in ["certs", "certs:renew", "setup"] {
        s.ssh_as("ana", "blog", cmd).fails(1, &format!("the ssh key 'ana' may not run server-wide commands such as '{cmd}'"));
    }
    s.ssh_as("ana", "blog", "list").fails(1, "may not run 'list'");
    let help = s.ssh_as("ana", "blog", "help").ok().stdout;
    assert!(help.contains("config:set") && !help.contains("Plugins:"), "{help}");
    s.ssh_as("ana", "blog", "help certs").ok();
    assert!(s.ssh("help").ok().stdout.contains("Plugins:\n  list"));
}
