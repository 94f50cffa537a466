//! Worker kinds under the real emperor, pushed and curled through nginx:
//! php, jwsgi (the JVM) and rwsgi (Rack), each skipped (never passed) where
//! its uWSGI plugin is not installed; and the UWSGI_* settings as the running
//! vassal sees them.

use crate::client::{App, COMMAND_TIMEOUT, curl, indent, run, serves, ssh, wait_for};
use crate::server::Server;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Err(SKIPPED...) naming the first of `files` this machine lacks.
fn require(files: &[&str], install: &str) -> Result<(), String> {
    match files.iter().find(|f| !Path::new(f).exists()) {
        Some(f) => Err(format!("{}no {f} (apt-get install {install})", crate::SKIPPED)),
        None => Ok(()),
    }
}

pub fn php_app(s: &Server) -> Result<(), String> {
    require(&["/usr/lib/uwsgi/plugins/php_plugin.so"], "uwsgi-plugin-php")?;
    let host = "kind-php.example.test";
    let app = App::new(s, "kind-php");
    app.write("Procfile", "php: public\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nGREETING=php says hi\n"))
        .write("public/index.php", "<?php echo getenv('GREETING') . ' at ' . $_SERVER['REQUEST_URI'] . ' php=' . PHP_MAJOR_VERSION; ?>\n")
        .write("public/plain.html", "static beside php\n");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/index.php?x=1", "php says hi at /index.php?x=1 php=").map_err(|e| format!("{e}\n{}", indent(&out.all())))?;
    serves(s, host, "/", "php says hi at / php=")?;
    serves(s, host, "/plain.html", "static beside php")
}

const JAVA_APP: &str = r#"import java.util.*;
public class Hello {
    public static Object[] application(HashMap env) {
        HashMap<String, Object> headers = new HashMap<String, Object>();
        headers.put("Content-Type", "text/plain");
        String body = System.getenv("GREETING") + " at " + env.get("REQUEST_URI");
        Object[] response = { 200, headers, body };
        return response;
    }
}
"#;

pub fn jwsgi_app(s: &Server) -> Result<(), String> {
    require(
        &["/usr/lib/uwsgi/plugins/jvm_plugin.so", "/usr/lib/uwsgi/plugins/jwsgi_plugin.so", "/usr/share/java/uwsgi.jar", "/usr/bin/javac"],
        "uwsgi-plugin-jwsgi-openjdk-17 openjdk-17-jdk-headless",
    )?;
    let host = "kind-jwsgi.example.test";
    let app = App::new(s, "kind-jwsgi");
    app.write("Procfile", "jwsgi: Hello:application\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nGREETING=jwsgi says hi\n"))
        .write("Hello.java", JAVA_APP);
    // The developer compiles; the class is pushed (piku does not build Java without Maven or Gradle).
    run(Command::new("javac").arg("-d").arg(&app.dir).arg(app.dir.join("Hello.java")), None, Duration::from_secs(120)).ok("javac Hello.java")?;
    app.commit("first")?;
    let out = app.deploy("main")?;
    // The JVM takes a while to start.
    wait_for(Duration::from_secs(60), || crate::client::serves_now(s, host, "/x?y=1", "jwsgi says hi at /x?y=1"))
        .map_err(|e| format!("{e}\n{}", indent(&out.all())))
}

pub fn rwsgi_app(s: &Server) -> Result<(), String> {
    require(&["/usr/lib/uwsgi/plugins/rack_plugin.so"], "uwsgi-plugin-rack-ruby3.1 ruby-rack")?;
    let rack = run(Command::new("ruby").args(["-e", "require 'rack'"]), None, COMMAND_TIMEOUT);
    if rack.code != 0 {
        return Err(format!("{}ruby cannot load rack (apt-get install ruby-rack): {}", crate::SKIPPED, rack.stderr.trim()));
    }
    let host = "kind-rwsgi.example.test";
    let app = App::new(s, "kind-rwsgi");
    app.write("Procfile", "rwsgi: config.ru\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nGREETING=rack says hi\n"))
        .write("config.ru", "run lambda { |env| [200, {'content-type' => 'text/plain'}, [\"#{ENV['GREETING']} at #{env['REQUEST_URI']}\"]] }\n");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/r?s=1", "rack says hi at /r?s=1").map_err(|e| format!("{e}\n{}", indent(&out.all())))
}

/// A WSGI app that reports the options its own uWSGI runs with (`uwsgi.opt`).
const KNOBS_APP: &str = r#"import uwsgi
def show(v):
    if isinstance(v, list):
        return "+".join(show(x) for x in v)
    return v.decode() if isinstance(v, bytes) else str(v)
def application(environ, start_response):
    opt = {k.decode() if isinstance(k, bytes) else k: v for k, v in uwsgi.opt.items()}
    keys = ["processes", "threads", "max-requests", "listen", "log-maxsize", "enable-threads", "log-x-forwarded-for", "harakiri", "idle"]
    body = " ".join("%s=%s" % (k, show(opt.get(k, "-"))) for k in keys) + " numproc=%d\n" % uwsgi.numproc
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

/// UWSGI_* settings reach the running vassal, and a config:set changes them there.
pub fn uwsgi_knobs(s: &Server) -> Result<(), String> {
    let host = "knobs.example.test";
    let app = App::new(s, "knobs");
    app.write("Procfile", "wsgi: knobs:application\n")
        .write(
            "ENV",
            &format!(
                "NGINX_SERVER_NAME={host}\nUWSGI_PROCESSES=3\nUWSGI_THREADS=5\nUWSGI_MAX_REQUESTS=77\nUWSGI_LISTEN=33\nUWSGI_LOG_MAXSIZE=4096\nUWSGI_LOG_X_FORWARDED_FOR=true\nUWSGI_INCLUDE_FILE=uwsgi.extra\n"
            ),
        )
        .write("uwsgi.extra", "[uwsgi]\nharakiri = 31\n")
        .write("knobs.py", KNOBS_APP);
    app.commit("first")?;
    let out = app.deploy("main")?;
    let want = "processes=3 threads=5 max-requests=77 listen=33 log-maxsize=4096 enable-threads=true log-x-forwarded-for=true harakiri=31";
    serves(s, host, "/", want).map_err(|e| format!("{e}\n{}", indent(&out.all())))?;
    serves(s, host, "/", "numproc=3")?;
    // The emperor's processes: a master and three workers named for the vassal.
    crate::fault_cases::wait_drained(s, "knobs")?;
    count_workers("knobs:wsgi.1", 4)?;

    ssh(s, "config:set knobs UWSGI_PROCESSES=2 UWSGI_MAX_REQUESTS=55 UWSGI_IDLE=300", None).ok("config:set knobs")?;
    serves(s, host, "/", "processes=2 threads=5 max-requests=55")?;
    serves(s, host, "/", "idle=300")?;
    crate::fault_cases::wait_drained(s, "knobs")?;
    count_workers("knobs:wsgi.1", 3)?;
    // A bad number is refused, naming the setting; the running vassal keeps its settings.
    ssh(s, "config:set knobs UWSGI_PROCESSES=many", None).fails_with("config:set UWSGI_PROCESSES=many", "UWSGI_PROCESSES")?;
    match curl(s, host, "/") {
        (200, body) if body.contains("processes=2") => Ok(()),
        (code, body) => Err(format!("after a refused UWSGI_PROCESSES the app answered {code}: {body}")),
    }
}

/// Wait until exactly `want` processes of the user carry the procname `prefix`.
fn count_workers(prefix: &str, want: usize) -> Result<(), String> {
    wait_for(Duration::from_secs(30), || {
        let out = run(Command::new("pgrep").args(["-u", crate::server::USER.as_str(), "-f", &format!("^{}[.:]", prefix.replace('.', "\\."))]), None, COMMAND_TIMEOUT);
        let n = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
        if n == want { Ok(()) } else { Err(format!("{n} processes named {prefix}*, expected {want}")) }
    })
}
