//! Cases for the config commands, the workers under the real emperor, and
//! per-key access: each through real ssh, git, nginx and uWSGI.

use crate::client::{App, COMMAND_TIMEOUT, curl, expect_text, indent, run, serves, ssh, ssh_with_key, wait_for};
use crate::server::Server;
use std::process::Command;
use std::time::Duration;

/// A web app that answers with its PORT and the variables named in `SHOW`.
fn env_app<'s>(s: &'s Server, name: &str, host: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("Procfile", "web: python3 app.py\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nSHOW=GREETING\n"))
        .write(
            "app.py",
            r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        shown = " ".join("%s=[%s]" % (k, os.environ.get(k, "")) for k in os.environ["SHOW"].split(","))
        body = ("port=%s %s\n" % (os.environ["PORT"], shown)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        print(self.requestline, flush=True)
HTTPServer((os.environ["BIND_ADDRESS"], int(os.environ["PORT"])), H).serve_forever()
"#,
        );
    app
}

pub fn config_over_ssh(s: &Server) -> Result<(), String> {
    let host = "config-ssh.example.test";
    let app = env_app(s, "config-ssh", host);
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "GREETING=[]")?;

    // Quoted for the server's shell-like parser, as the client script sends it.
    let value = r#"hello world "q" it's $x=y"#;
    let out = ssh(s, &format!("config:set config-ssh {}", shell_words::quote(&format!("GREETING={value}"))), None).ok("config:set")?;
    if out.stderr.contains("Installing") {
        return Err(format!("config:set rebuilt the app:\n{}", indent(&out.stderr)));
    }
    let got = ssh(s, "config:get config-ssh GREETING", None).ok("config:get")?.stdout;
    if got != format!("{value}\n") {
        return Err(format!("config:get gave {got:?}, expected {value:?}"));
    }
    // The workers restarted with it: the app shows the new value.
    serves(s, host, "/", &format!("GREETING=[{value}]"))?;
    expect_text(&ssh(s, "config:live config-ssh", None).ok("config:live")?.stdout, &format!("GREETING={value}\n"), "config:live")?;
    expect_text(&ssh(s, "config:live config-ssh --json", None).ok("config:live --json")?.stdout, r#""GREETING":"hello world \"q\" it's $x=y""#, "--json")?;

    // run: the live tree and environment; the command's exit status comes back.
    let out = ssh(s, "run config-ssh 'echo \"$GREETING\"; test -f app.py'", None).ok("run")?;
    if out.stdout != format!("{value}\n") {
        return Err(format!("run printed {:?}", out.stdout));
    }
    let out = ssh(s, "run config-ssh 'exit 7'", None);
    if out.code != 7 {
        return Err(format!("run 'exit 7' gave exit {}", out.code));
    }
    // `ssh -t`: the command gets a terminal (interactive use).
    let argv = s.ssh_argv(&s.client_key());
    let out = run(Command::new(&argv[0]).args(&argv[1..]).arg("-tt").arg(s.ssh_destination()).arg("run config-ssh 'tty; echo $APP'"), None, COMMAND_TIMEOUT);
    if out.code != 0 || !out.stdout.contains("/dev/pts/") || !out.stdout.contains("config-ssh") {
        return Err(format!("run under ssh -t did not get a terminal:\n{}", indent(&out.all())));
    }

    // Bad input: nothing written, clear errors, exit 1.
    let before = ssh(s, "config config-ssh", None).ok("config")?.stdout;
    ssh(s, "config:set config-ssh OK=1 'BAD KEY=x'", None).fails_with("config:set with a bad key", "nothing was changed")?;
    ssh(s, "config:set config-ssh NOEQUALS", None).fails_with("config:set without =", "expected KEY=VALUE")?;
    ssh(s, "config:get config-ssh MISSING", None).fails_with("config:get of an unset key", "MISSING is not set")?;
    ssh(s, "config:live no-such-app", None).fails_with("config:live of a missing app", "app 'no-such-app' not found")?;
    let after = ssh(s, "config config-ssh", None).ok("config")?.stdout;
    if before != after {
        return Err(format!("a refused config:set changed the config:\n{before}\n---\n{after}"));
    }
    // --no-restart stores only; unset applies.
    ssh(s, "config:set config-ssh --no-restart GREETING=later", None).ok("config:set --no-restart")?;
    serves(s, host, "/", &format!("GREETING=[{value}]"))?;
    ssh(s, "config:unset config-ssh GREETING", None).ok("config:unset")?;
    serves(s, host, "/", "GREETING=[]")
}

/// The pid a worker wrote into a file of its data directory.
fn read_pid(s: &Server, app: &str, file: &str) -> Result<u32, String> {
    let path = s.piku_root().join("data").join(app).join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| format!("{}: {e}", path.display()))
}

pub fn workers_under_the_emperor(s: &Server) -> Result<(), String> {
    let host = "workers.example.test";
    let app = env_app(s, "workers", host);
    app.write(
        "Procfile",
        "web: python3 app.py\nworker: sh -c 'echo $$ > $DATA_ROOT/worker.pid; exec sleep 1000'\ncron1: */1 * * * * date >> $DATA_ROOT/cron.log\n",
    );
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/", "port=")?;

    // ps: real state from the emperor's processes.
    wait_for(Duration::from_secs(30), || {
        let ps = ssh(s, "ps workers", None).ok("ps")?.stdout;
        if ps.contains("web.1 running") && ps.contains("worker.1 running") { Ok(()) } else { Err(format!("ps:\n{ps}")) }
    })?;

    // A background worker killed is respawned by its vassal.
    let first = wait_for(Duration::from_secs(30), || read_pid(s, "workers", "worker.pid"))?;
    run(Command::new("kill").args(["-9", &first.to_string()]), None, COMMAND_TIMEOUT).ok("kill -9 the worker")?;
    wait_for(Duration::from_secs(30), || match read_pid(s, "workers", "worker.pid")? {
        p if p != first => Ok(()),
        p => Err(format!("worker pid still {p}")),
    })?;

    // web=2: two ports, nginx balances them.
    ssh(s, "ps:scale workers web=2", None).ok("ps:scale web=2")?;
    wait_for(Duration::from_secs(40), || {
        let mut ports = std::collections::BTreeSet::new();
        for _ in 0..8 {
            if let (200, body) = curl(s, host, "/") {
                ports.extend(body.split_whitespace().find_map(|w| w.strip_prefix("port=")).map(str::to_string));
            }
        }
        if ports.len() == 2 { Ok(()) } else { Err(format!("answers came from ports {ports:?}, expected two")) }
    })?;
    ssh(s, "ps:scale workers web=-1", None).fails_with("ps:scale to -1", "below 0")?;
    ssh(s, "ps:scale workers nope=1", None).fails_with("ps:scale of an unknown kind", "has no 'nope' worker")?;

    // logs: the last lines of each worker, prefixed.
    let logs = ssh(s, "logs workers web -n 5 --no-follow", None).ok("logs")?.stdout;
    expect_text(&logs, "web.1 | GET / HTTP/1.1", "logs web")?;

    // stop and start.
    ssh(s, "stop workers", None).ok("stop")?;
    wait_for(Duration::from_secs(30), || match curl(s, host, "/") {
        (502, _) => Ok(()),
        (code, _) => Err(format!("after stop the app answered {code}, expected 502")),
    })?;
    expect_text(&ssh(s, "ps workers", None).ok("ps")?.stdout, "web.1 stopped", "ps after stop")?;
    ssh(s, "start workers", None).ok("start")?;
    serves(s, host, "/", "port=")?;

    // The */1 cron job runs (uWSGI fires it at the start of each minute).
    wait_for(Duration::from_secs(75), || {
        let log = s.piku_root().join("data/workers/cron.log");
        std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display())).and_then(|t| {
            if t.trim().is_empty() { Err("cron.log is empty".into()) } else { Ok(()) }
        })
    })
}

pub fn per_key_access(s: &Server) -> Result<(), String> {
    for name in ["access-blog", "access-shop"] {
        let app = App::new(s, name);
        app.write("Procfile", "static: public\n").write("public/index.html", name);
        app.commit("first")?;
        app.deploy("main")?;
    }
    let key = s.work.join("client/ana");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "ana", "-f"]).arg(&key), None, COMMAND_TIMEOUT).ok("ssh-keygen")?;
    let public = std::fs::read_to_string(key.with_extension("pub")).map_err(|e| e.to_string())?;
    ssh(s, "setup:ssh --name ana --apps access-blog -", Some(&public)).ok("setup:ssh --name ana --apps")?;

    let apps = ssh_with_key(s, &key, "apps", None).ok("apps as ana")?.stdout;
    if apps.trim() != "access-blog" {
        return Err(format!("ana sees:\n{apps}"));
    }
    ssh_with_key(s, &key, "config:set access-blog A=1", None).ok("config:set of ana's app")?;
    ssh_with_key(s, &key, "config:live access-shop", None).fails_with("ana on another app", "may not use the app 'access-shop'")?;
    ssh_with_key(s, &key, "setup", None).fails_with("ana running setup", "may not run server-wide commands")?;
    // A push, through git, to another app and to a new app.
    let app = App::new(s, "access-new");
    app.write("Procfile", "static: public\n").write("public/index.html", "new");
    app.commit("first")?;
    let git_ssh = format!("ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes", key.display(), s.ssh_port);
    for target in ["access-shop", "access-new"] {
        let out = run(
            crate::client::git(&app.dir).env("GIT_SSH_COMMAND", &git_ssh).args(["push", &format!("{}:{target}", s.ssh_destination()), "main"]),
            None,
            COMMAND_TIMEOUT,
        );
        out.fails_with(&format!("ana pushing to {target}"), "the ssh key 'ana' may")?;
    }
    if s.piku_root().join("repos/access-new").exists() {
        return Err("a refused push created repos/access-new".into());
    }
    // The unrestricted key still sees everything.
    expect_text(&ssh(s, "apps", None).ok("apps")?.stdout, "access-shop", "apps with the first key")
}

/// A WSGI app: the uWSGI python3 plugin, behind nginx through the unix socket.
pub fn wsgi_app(s: &Server) -> Result<(), String> {
    let host = "wsgi.example.test";
    let app = App::new(s, "wsgi-app");
    app.write("Procfile", "wsgi: hello:application\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nGREETING=wsgi says hi\n"))
        .write(
            "hello.py",
            "import os\ndef application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [(os.environ['GREETING'] + ' via ' + environ['PATH_INFO']).encode()]\n",
        );
    app.commit("first")?;
    app.deploy("main")?;
    serves(s, host, "/x", "wsgi says hi via /x")?;
    let conf = std::fs::read_to_string(s.piku_root().join("nginx/wsgi-app.conf")).map_err(|e| e.to_string())?;
    expect_text(&conf, "uwsgi_pass", "the wsgi app's nginx config")
}

/// The client script on the developer's side, over the real ssh.
pub fn client_script(s: &Server) -> Result<(), String> {
    let app = App::new(s, "client-app");
    app.write("Procfile", "static: public\n").write("public/index.html", "client");
    app.commit("first")?;
    app.git(&["remote", "add", "piku", &format!("{}:client-app", s.ssh_destination())])?;
    app.deploy("main")?;
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/share/client/piku");
    let key = s.client_key().display().to_string();
    let port = s.ssh_port.to_string();
    let piku = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg(client)
            .args(["-i", &key, "-p", &port, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"])
            .args(args)
            .current_dir(&app.dir);
        run(&mut c, None, COMMAND_TIMEOUT)
    };
    let value = r#"two words 'single' "double" $HOME;x=y"#;
    piku(&["config:set", &format!("GREETING={value}")]).ok("piku config:set")?;
    let got = piku(&["config:get", "GREETING"]).ok("piku config:get")?.stdout;
    if got != format!("{value}\n") {
        return Err(format!("the client's config:get gave {got:?}, expected {value:?}"));
    }
    expect_text(&piku(&["apps"]).ok("piku apps")?.stdout, "client-app", "piku apps")?;
    let out = piku(&["run", "sh", "-c", "exit 5"]);
    if out.code != 5 {
        return Err(format!("piku run 'exit 5' gave {}", out.code));
    }
    Ok(())
}
