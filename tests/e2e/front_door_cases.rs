//! The front door's command line through real ssh: help, usage errors and
//! the --json listings, as a script on another machine sees them.

use crate::client::{App, expect_text, serves, ssh};
use crate::server::Server;

pub fn front_door_over_ssh(s: &Server) -> Result<(), String> {
    let name = "front-door";
    let host = "front-door.example.test";
    let app = App::new(s, name);
    app.write("Procfile", "static: public\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\n")).write("public/index.html", "front door\n");
    app.commit("first")?;
    let out = app.deploy("main")?;
    serves(s, host, "/", "front door").map_err(|e| format!("{e}\nafter this push:\n{}", crate::client::indent(&out.all())))?;

    // Help on stdout, exit 0; the same text by `help <command>`.
    let help = ssh(s, "config:set --help", None).ok("ssh config:set --help")?;
    if !help.stdout.starts_with("Usage: piku config:set") {
        return Err(format!("config:set --help does not start with its usage:\n{}", crate::client::indent(&help.stdout)));
    }
    let again = ssh(s, "help config:set", None).ok("ssh help config:set")?;
    if again.stdout != help.stdout {
        return Err(format!("help config:set differs from config:set --help:\n{}", crate::client::indent(&again.stdout)));
    }
    // A bogus flag: exit 2, the usage on stderr, nothing on stdout.
    let bogus = ssh(s, &format!("ps {name} --bogus"), None);
    if bogus.code != 2 || !bogus.stdout.is_empty() {
        return Err(format!("ps --bogus: exit {} (expected 2)\n{}", bogus.code, crate::client::indent(&bogus.all())));
    }
    expect_text(&bogus.stderr, "Usage: piku ps", "ps --bogus")?;

    // The listings as JSON, on stdout alone.
    for (cmd, start) in [("apps --json", "["), (&format!("ps {name} --json") as &str, "{"), (&format!("releases {name} --json"), "[{"), (&format!("config:live {name} --json"), "{"), ("certs --json", "[")] {
        let out = ssh(s, cmd, None).ok(&format!("ssh {cmd}"))?;
        if !out.stdout.starts_with(start) || out.stdout.lines().count() != 1 || out.stderr.contains("----->") {
            return Err(format!("{cmd}: expected one line of JSON on stdout, no progress\n{}", crate::client::indent(&out.all())));
        }
    }
    let certs = ssh(s, "certs --json", None).ok("ssh certs --json")?.stdout;
    expect_text(&certs, &format!("{{\"app\":\"{name}\",\"names\":[\"{host}\"]"), "certs --json")?;
    let apps = ssh(s, "apps --json", None).ok("ssh apps --json")?.stdout;
    expect_text(&apps, &format!("{{\"name\":\"{name}\",\"running\":"), "apps --json")?;

    // The words after the app belong to the command `run` runs.
    let run = ssh(s, &format!("run {name} -- echo --help -x"), None).ok("ssh run -- echo --help -x")?;
    if run.stdout != "--help -x\n" {
        return Err(format!("run passed on {:?}, expected \"--help -x\\n\"", run.stdout));
    }
    Ok(())
}
