//! The cases, each a user's workflow against the running server. Each case
//! builds and pushes its own apps, named after the case (`app` below), so
//! cases do not depend on each other and a failure shows that app's logs.

use crate::client::{App, COMMAND_TIMEOUT, Out, curl, expect_text, git, run, serves, serves_now, ssh, ssh_with_key};
use crate::server::Server;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub struct Case {
    pub name: &'static str,
    /// The prefix of the apps the case deploys (for the logs of a failure).
    pub app: &'static str,
    pub run: fn(&Server) -> Result<(), String>,
}

pub const ALL: &[Case] = &[
    Case { name: "static_site", app: "static-site", run: static_site },
    Case { name: "generic_app", app: "generic-app", run: generic_app },
    Case { name: "python_app", app: "python-app", run: python_app },
    Case { name: "ssh_commands", app: "ssh-commands", run: ssh_commands },
    Case { name: "tools_by_hand", app: "tools-by-hand", run: tools_by_hand },
    Case { name: "bad_app_names", app: "bad-names", run: bad_app_names },
    Case { name: "not_a_piku_command", app: "not-a-command", run: not_a_piku_command },
    Case { name: "broken_push_keeps_live", app: "broken-push", run: broken_push_keeps_live },
    Case { name: "other_branch_not_deployed", app: "other-branch", run: other_branch_not_deployed },
    Case { name: "bad_env_line_keeps_live", app: "bad-env", run: bad_env_line_keeps_live },
    Case { name: "config_over_ssh", app: "config-ssh", run: crate::more_cases::config_over_ssh },
    Case { name: "workers_under_the_emperor", app: "workers", run: crate::more_cases::workers_under_the_emperor },
    Case { name: "per_key_access", app: "access", run: crate::more_cases::per_key_access },
    Case { name: "wsgi_app", app: "wsgi-app", run: crate::more_cases::wsgi_app },
    Case { name: "client_script", app: "client-app", run: crate::more_cases::client_script },
    Case { name: "front_door_over_ssh", app: "front-door", run: crate::front_door_cases::front_door_over_ssh },
    Case { name: "build_python_pip", app: "build-pip", run: crate::build_cases::python_pip },
    Case { name: "build_python_uv", app: "build-uv", run: crate::build_cases::python_uv },
    Case { name: "build_node_npm", app: "build-node", run: crate::build_cases::node_npm },
    Case { name: "build_go_stdlib", app: "build-go", run: crate::build_cases::go_stdlib },
    Case { name: "build_rust_crate", app: "build-rust", run: crate::build_cases::rust_crate },
    Case { name: "build_ruby_bundler", app: "build-ruby", run: crate::build_cases::ruby_bundler },
    Case { name: "build_php_worker", app: "build-php", run: crate::build_cases::php_worker },
    Case { name: "build_maven", app: "build-maven", run: crate::build_cases::maven },
    Case { name: "build_gradle", app: "build-gradle", run: crate::build_cases::gradle },
    Case { name: "build_clojure_cli", app: "build-clojure", run: crate::build_cases::clojure_cli },
    Case { name: "build_leiningen", app: "build-lein", run: crate::build_cases::leiningen },
    Case { name: "zero_downtime_redeploys", app: "zero-app", run: crate::zero_cases::zero_downtime_redeploys },
    Case { name: "zero_failing_health_check", app: "zero-fail", run: crate::zero_cases::failing_health_check_keeps_live },
    Case { name: "zero_downtime_wsgi", app: "zero-wsgi", run: crate::zero_cases::zero_downtime_wsgi },
    Case { name: "zero_back_to_back_pushes_while_draining", app: "zero-b2b", run: crate::zero_cases::back_to_back_pushes_while_draining },
    Case { name: "zero_scale_down_leaves_what_ps_reports", app: "zero-scale", run: crate::zero_cases::scale_down_leaves_what_ps_reports },
    Case { name: "crash_at_every_step", app: "crash-app", run: crate::crash_cases::crash_at_every_step },
    Case { name: "crash_reboot_every_app_comes_back", app: "crash-boot", run: crate::crash_cases::reboot_every_app_comes_back },
    Case { name: "crash_emperor_kill_every_app_comes_back", app: "crash-emp", run: crate::crash_cases::emperor_kill_every_app_comes_back },
    Case { name: "nginx_options", app: "nginx-options", run: crate::nginx_cases::nginx_options },
    Case { name: "nginx_static_https_only", app: "nginx-spa", run: crate::nginx_cases::nginx_static_https_only },
    Case { name: "nginx_cloudflare_acl", app: "nginx-cf", run: crate::nginx_cases::nginx_cloudflare_acl },
    Case { name: "nginx_bad_input", app: "nginx-bad", run: crate::nginx_cases::nginx_bad_input },
    Case { name: "nginx_wsgi_cache", app: "nginx-wsgi-cache", run: crate::nginx_cases::nginx_wsgi_cache },
    Case { name: "nginx_default_site", app: "nginx-default", run: crate::nginx_cases::nginx_default_site },
    Case { name: "nginx_tls_with_pebble", app: "nginx-tls", run: crate::nginx_cases::nginx_tls_with_pebble },
    Case { name: "security_static_alias_traversal", app: "sec-alias", run: crate::security_cases::static_alias_traversal },
    Case { name: "security_root_nginx_reads_only_checked_confs", app: "sec-root", run: crate::security_cases::root_nginx_reads_only_checked_confs },
    Case { name: "security_nginx_reload_confirmed", app: "sec-reload", run: crate::security_cases::nginx_reload_confirmed },
    Case { name: "hardening_injection_corpus", app: "inject", run: crate::fault_cases::injection_corpus },
    Case { name: "fault_killed_deploy_chain", app: "killed", run: crate::fault_cases::killed_deploy_chain },
    Case { name: "fault_full_disk_deploy", app: "fulldisk", run: crate::fault_cases::full_disk_deploy },
    Case { name: "fault_daemons_down_during_deploy", app: "daemons", run: crate::fault_cases::daemons_down_during_deploy },
    Case { name: "hardening_file_modes", app: "modes", run: crate::fault_cases::file_modes },
    Case { name: "hardening_secret_canary", app: "canary", run: crate::secret_cases::secret_canary },
    Case { name: "worker_kind_php", app: "kind-php", run: crate::worker_cases::php_app },
    Case { name: "worker_kind_jwsgi", app: "kind-jwsgi", run: crate::worker_cases::jwsgi_app },
    Case { name: "worker_kind_rwsgi", app: "kind-rwsgi", run: crate::worker_cases::rwsgi_app },
    Case { name: "worker_uwsgi_knobs", app: "knobs", run: crate::worker_cases::uwsgi_knobs },
    Case { name: "addons_postgres_redis", app: "addons", run: crate::addon_cases::postgres_and_redis },
];

/// A static site: `static: public`, served by nginx from the release tree.
fn static_app<'s>(s: &'s Server, name: &str, host: &str, page: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "static: public\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n"))
        .write("public/index.html", &page_html(page));
    app
}

/// An error, followed by the output of the push it happened after.
fn with_push(error: String, push: &Out) -> String {
    format!("{error}\nafter this push:\n{}", crate::client::indent(&push.all()))
}

fn page_html(text: &str) -> String {
    format!("<!doctype html>\n<title>{text}</title>\n<h1>{text}</h1>\n")
}

/// A generic web app: Python's http.server on $PORT, serving site/.
fn web_app<'s>(s: &'s Server, name: &str, host: &str, page: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "web: python3 -m http.server --bind 127.0.0.1 $PORT --directory site\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n"))
        .write("site/index.html", &page_html(page));
    app
}

fn static_site(s: &Server) -> Result<(), String> {
    let host = "static.example.test";
    let app = static_app(s, "static-site", host, "static one");
    app.commit("first")?;
    let out = app.deploy("main")?;
    // "Live" when the push ends: the very first request, no retry, is the app's.
    let (code, body) = crate::client::curl(s, host, "/");
    if code != 200 || !body.contains("static one") {
        return Err(with_push(format!("the first request after the push got {code}: {body}"), &out));
    }
    serves(s, host, "/", "static one").map_err(|e| with_push(e, &out))?;

    app.write("public/index.html", &page_html("static two"));
    app.commit("second")?;
    let out = app.deploy("main")?;
    let (code, body) = crate::client::curl(s, host, "/");
    if code != 200 || !body.contains("static two") {
        return Err(with_push(format!("the first request after the second push got {code}: {body}"), &out));
    }
    Ok(())
}

fn generic_app(s: &Server) -> Result<(), String> {
    let host = "generic.example.test";
    let app = web_app(s, "generic-app", host, "generic one");
    app.write(
        "Procfile",
        "web: python3 -m http.server --bind 127.0.0.1 $PORT --directory site\nrelease: echo released > site/released.txt\n",
    );
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "generic one").map_err(|e| with_push(e, &out))?;
    // The release task ran in the new tree before it went live.
    serves(s, host, "/released.txt", "released")
}

const PYTHON_APP: &str = r#"import http.server, os, six

GREETING = "python ok"

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s six=%s\n" % (GREETING, six.__version__)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

address = (os.environ.get("BIND_ADDRESS", "127.0.0.1"), int(os.environ["PORT"]))
http.server.HTTPServer(address, Handler).serve_forever()
"#;

fn python_app(s: &Server) -> Result<(), String> {
    let host = "python.example.test";
    let app = App::new(s, "python-app");
    app.write("requirements.txt", "six\n")
        .write("app.py", PYTHON_APP)
        .write("Procfile", "web: python app.py\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n"));
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "python ok six=").map_err(|e| with_push(e, &out))?;

    // A code change with the same requirements: the dependency step is skipped.
    app.write("app.py", &PYTHON_APP.replace("\"python ok\"", "\"python two\""));
    app.commit("second")?;
    let out = app.deploy("main")?;
    expect_text(&out.all(), "unchanged", "the second push (same requirements.txt)")?;
    serves(s, host, "/", "python two six=").map_err(|e| with_push(e, &out))
}

fn ssh_commands(s: &Server) -> Result<(), String> {
    let web_host = "ssh-commands.example.test";
    let web = web_app(s, "ssh-commands", web_host, "ssh commands");
    let sha = web.commit("first")?;
    let out = web.deploy("main")?;
    serves(s, web_host, "/", "ssh commands").map_err(|e| with_push(e, &out))?;
    let quiet = static_app(s, "ssh-commands-static", "ssh-commands-static.example.test", "quiet");
    quiet.commit("first")?;
    let out = quiet.deploy("main")?;
    serves(s, "ssh-commands-static.example.test", "/", "quiet").map_err(|e| with_push(e, &out))?;

    // apps: every app, `*` before those with running workers.
    let apps = ssh(s, "apps", None).ok("ssh apps")?.stdout;
    let lines: Vec<&str> = apps.lines().collect();
    if !lines.contains(&"*ssh-commands") {
        return Err(format!("`apps` does not show '*ssh-commands' (running):\n{}", crate::client::indent(&apps)));
    }
    if !lines.iter().any(|l| l.trim_start() == "ssh-commands-static") {
        return Err(format!("`apps` does not show 'ssh-commands-static' without '*' (no workers):\n{}", crate::client::indent(&apps)));
    }

    // config:live: the environment the app runs with (behind nginx each
    // release's web workers get a PORT of their own: it is not the app's).
    let live = ssh(s, "config:live ssh-commands", None).ok("ssh config:live ssh-commands")?.stdout;
    if !live.lines().any(|l| l == "APP=ssh-commands") || !live.lines().any(|l| l.starts_with("BIND_ADDRESS=")) {
        return Err(format!("config:live lacks APP=ssh-commands or BIND_ADDRESS=:\n{}", crate::client::indent(&live)));
    }

    let help = ssh(s, "help", None).ok("ssh help")?;
    expect_text(&help.stdout, "config:set", "ssh help")?;
    ssh(s, "setup", None).ok("ssh setup")?;
    ssh(s, "setup", None).ok("ssh setup (again)")?;

    // setup:ssh - : a second key, from stdin; that key then works; adding it twice keeps one line.
    let key2 = s.work.join("client/id2");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "second-key", "-f"]).arg(&key2), None, COMMAND_TIMEOUT)
        .ok("ssh-keygen")?;
    let public = std::fs::read_to_string(key2.with_extension("pub")).map_err(|e| e.to_string())?;
    ssh(s, "setup:ssh -", Some(&public)).ok("ssh setup:ssh - (second key)")?;
    ssh_with_key(s, &key2, "apps", None).ok("ssh apps with the second key")?;
    ssh(s, "setup:ssh -", Some(&public)).ok("ssh setup:ssh - (second key again)")?;
    let body = public.split_whitespace().nth(1).unwrap_or("?");
    let authorized = std::fs::read_to_string(s.home().join(".ssh/authorized_keys")).map_err(|e| e.to_string())?;
    let count = authorized.lines().filter(|l| l.contains(body)).count();
    if count != 1 {
        return Err(format!("the second key is in authorized_keys {count} times, expected once:\n{}", crate::client::indent(&authorized)));
    }

    // git clone over ssh (upload-pack) gives back what was pushed.
    let clone = s.work.join("client/clone-ssh-commands");
    let _ = std::fs::remove_dir_all(&clone);
    run(
        git(&s.work.join("client"))
            .env("GIT_SSH_COMMAND", s.git_ssh_command())
            .arg("clone")
            .arg(format!("{}:ssh-commands", s.ssh_destination()))
            .arg(&clone),
        None,
        COMMAND_TIMEOUT,
    )
    .ok("git clone of ssh-commands")?;
    let cloned = run(git(&clone).args(["rev-parse", "refs/remotes/origin/main"]), None, COMMAND_TIMEOUT)
        .ok("git rev-parse origin/main in the clone")?;
    if cloned.stdout.trim() != sha {
        return Err(format!("the clone's main is {}, the pushed commit is {sha}", cloned.stdout.trim()));
    }
    Ok(())
}

/// Each tool run by hand, twice, is harmless: same files, app still serving.
fn tools_by_hand(s: &Server) -> Result<(), String> {
    let host = "tools-by-hand.example.test";
    let name = "tools-by-hand";
    let app = web_app(s, name, host, "by hand");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "by hand").map_err(|e| with_push(e, &out))?;

    let link = s.piku_root().join("apps").join(name);
    let target = std::fs::read_link(&link).map_err(|e| format!("apps/{name} is not a symlink into releases/: {e}"))?;
    let id = target.file_name().map(|f| f.to_string_lossy().into_owned()).ok_or("the apps/ link has no file name")?;

    let steps: [&[&str]; 5] =
        [&["piku-receive", "checkout", name], &["piku-build", "build", name, &id], &["piku-config", "sync", name], &["piku-uwsgi", "publish", name], &["piku-nginx", "publish", name]];
    let mut snapshots = Vec::new();
    for round in 1..=2 {
        for step in steps {
            s.run_as_user(step).map_err(|e| format!("round {round}: {e}"))?;
        }
        snapshots.push(published_files(s, name));
    }
    let first = &snapshots[0];
    if !first.keys().any(|k| k.starts_with("nginx/")) || !first.keys().any(|k| k.starts_with("uwsgi-enabled/")) {
        return Err(format!("expected the app's files in nginx/ and uwsgi-enabled/, found: {:?}", first.keys().collect::<Vec<_>>()));
    }
    if snapshots[0] != snapshots[1] {
        let changed: Vec<&String> = snapshots[1].keys().filter(|k| snapshots[0].get(*k) != snapshots[1].get(*k)).collect();
        return Err(format!("the second round changed the published files: {changed:?} (before: {:?})", first.keys().collect::<Vec<_>>()));
    }
    serves(s, host, "/", "by hand")
}

/// The app's files in nginx/ and uwsgi-enabled/, by path, with their content.
fn published_files(s: &Server, app: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (dir, prefix) in [("nginx", format!("{app}.")), ("uwsgi-enabled", format!("{app}_"))] {
        let Ok(entries) = std::fs::read_dir(s.piku_root().join(dir)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && e.path().is_file() {
                files.insert(format!("{dir}/{name}"), std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    files
}

fn bad_app_names(s: &Server) -> Result<(), String> {
    let app = static_app(s, "bad-names", "bad-names.example.test", "never deployed");
    app.commit("first")?;
    let before = (list(&s.piku_root().join("repos")), list(&s.piku_root().join("apps")));

    for bad in ["../x", "a;b", "."] {
        app.push_to(bad, "main").fails_with(&format!("git push to '{bad}'"), "invalid app name")?;
    }
    // git refuses a path that looks like an option before it connects; the
    // server must refuse it too when asked directly.
    let dash = app.push_to("-x", "main");
    if dash.code == 0 {
        return Err(format!("git push to '-x' succeeded:\n{}", crate::client::indent(&dash.all())));
    }
    ssh(s, "git-receive-pack '-x'", None).fails_with("ssh git-receive-pack '-x'", "invalid app name")?;
    ssh(s, "config:live '../x'", None).fails_with("ssh config:live '../x'", "invalid app name")?;

    let after = (list(&s.piku_root().join("repos")), list(&s.piku_root().join("apps")));
    if before != after {
        return Err(format!("repos/ or apps/ changed: before {before:?}, after {after:?}"));
    }
    Ok(())
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    names
}

fn not_a_piku_command(s: &Server) -> Result<(), String> {
    let marker = format!("/tmp/piku-e2e-touched-{}", std::process::id());
    let _ = std::fs::remove_file(&marker);
    for command in ["bash -c id", "ls", "scp -t /etc", &format!("touch {marker}")] {
        let out = ssh(s, command, None);
        if out.code == 0 {
            return Err(format!("ssh '{command}' exited 0:\n{}", crate::client::indent(&out.all())));
        }
        let said = out.stderr.to_lowercase();
        if !["unknown command", "refused", "not allowed"].iter().any(|w| said.contains(w)) {
            return Err(format!(
                "ssh '{command}' failed without saying the command is unknown or refused:\n{}",
                crate::client::indent(&out.all())
            ));
        }
        if out.stdout.contains("uid=") {
            return Err(format!("ssh '{command}' ran something:\n{}", crate::client::indent(&out.stdout)));
        }
    }
    if Path::new(&marker).exists() {
        let _ = std::fs::remove_file(&marker);
        return Err(format!("ssh 'touch {marker}' created the file"));
    }
    Ok(())
}

/// A push that must not deploy: whatever git says, the old page still serves.
fn push_rejected(s: &Server, app: &App, host: &str, live_page: &str, must_say: &[&str], what: &str) -> Result<Out, String> {
    let out = app.push("main");
    for needle in must_say {
        expect_text(&out.all(), needle, what)?;
    }
    serves_now(s, host, "/", live_page).map_err(|e| {
        format!("after {what}, the live release no longer serves: {e}\npush output:\n{}", crate::client::indent(&out.all()))
    })?;
    Ok(out)
}

fn broken_push_keeps_live(s: &Server) -> Result<(), String> {
    let host = "broken-push.example.test";
    let app = static_app(s, "broken-push", host, "version one");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "version one").map_err(|e| with_push(e, &out))?;

    app.remove("Procfile").write("public/index.html", &page_html("version two"));
    app.commit("no Procfile")?;
    push_rejected(s, &app, host, "version one", &["Procfile"], "a push without a Procfile")?;

    app.write("Procfile", "static: public\nrelease: exit 3\n");
    app.commit("failing release task")?;
    push_rejected(s, &app, host, "version one", &["release task failed"], "a push whose release task fails")?;

    app.write("Procfile", "static: public\nnonsense\n");
    app.commit("malformed Procfile")?;
    push_rejected(s, &app, host, "version one", &["Procfile", "line"], "a push with a malformed Procfile")?;

    app.write("Procfile", "static: public\n").write("public/index.html", &page_html("version four"));
    app.commit("fixed")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "version four").map_err(|e| with_push(e, &out))
}

fn other_branch_not_deployed(s: &Server) -> Result<(), String> {
    let host = "other-branch.example.test";
    let app = static_app(s, "other-branch", host, "main content");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "main content").map_err(|e| with_push(e, &out))?;
    let link = s.piku_root().join("apps/other-branch");
    let live = std::fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;

    app.git(&["checkout", "-q", "-b", "feature"])?;
    app.write("public/index.html", &page_html("feature content"));
    app.commit("feature work")?;
    let out = app.deploy("feature")?;
    expect_text(&out.all(), "not deployed", "the push of branch 'feature'")?;
    serves_now(s, host, "/", "main content")?;
    let now = std::fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    if now != live {
        return Err(format!("the push of branch 'feature' changed the live release from {} to {}", live.display(), now.display()));
    }
    match curl(s, host, "/") {
        (_, body) if body.contains("feature content") => Err("the feature branch is being served".into()),
        _ => Ok(()),
    }
}

fn bad_env_line_keeps_live(s: &Server) -> Result<(), String> {
    let host = "bad-env.example.test";
    let app = static_app(s, "bad-env", host, "env one");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "env one").map_err(|e| with_push(e, &out))?;

    app.write("ENV", &format!("NGINX_SERVER_NAME={host}\nnot a valid line\n")).write("public/index.html", &page_html("env two"));
    app.commit("bad ENV")?;
    push_rejected(s, &app, host, "env one", &["ENV", "line 2"], "a push with a bad ENV line")?;
    Ok(())
}
