//! Workers: scaling, lifecycle and logs through the front door (the emperor
//! itself is exercised in tests/e2e).

use crate::harness::*;

fn web_app(s: &Server, name: &str) -> GitApp {
    let app = GitApp::new(&[
        ("Procfile", "web: python3 -m http.server $PORT\nworker: sleep 1000\n"),
        ("ENV", &format!("NGINX_SERVER_NAME={name}.example.test\n")),
    ]);
    s.push(&app, name, "main").ok();
    app
}

/// The live generation of the app's web workers (lib swap.rs).
fn live_gen(s: &Server, app: &str) -> u32 {
    s.read(&format!("workers/{app}/live")).trim().parse().unwrap()
}

/// The ports of a generation's `web` instances, in instance order.
fn gen_ports(s: &Server, app: &str, g: u32) -> Vec<String> {
    s.read(&format!("workers/{app}/g{g}")).lines().filter_map(|l| l.strip_prefix("web.")).map(|l| l.split(':').nth(1).unwrap().to_string()).collect()
}

/// The app's enabled web vassals.
fn enabled_web(s: &Server, app: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.root().join("uwsgi-enabled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("{app}_web.")))
        .collect();
    v.sort();
    v
}

#[test]
fn ps_scale_starts_a_new_generation_with_a_port_per_instance_and_nginx_reaches_each_by_a_stable_socket() {
    let s = Server::new();
    web_app(&s, "sc");
    let first = live_gen(&s, "sc");
    s.ssh("ps:scale sc web=3 worker=0").ok();
    assert_eq!(s.read("envs/sc/SCALING"), "web:3\nworker:0\n");
    let g = live_gen(&s, "sc");
    assert!(g > first, "scaling starts a new generation");
    let ports = gen_ports(&s, "sc", g);
    assert_eq!(ports.len(), 3);
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "distinct ports: {ports:?}");
    let conf = s.read("nginx/sc.conf");
    let root = s.root().display().to_string();
    for n in 1..=3 {
        assert!(conf.contains(&format!("server unix:{root}/nginx/sc_web.{n}.sock;")), "web.{n} missing:\n{conf}");
        let ini = s.read(&format!("uwsgi-enabled/sc_web.{n}.g{g}.ini"));
        assert!(ini.contains(&format!("env = PORT={}\n", ports[n - 1])), "web.{n}:\n{ini}");
        assert!(ini.contains(&format!("procname-prefix = sc:web.{n}.g{g}:\n")));
        assert!(ini.contains(&format!("rawrouter = {root}/nginx/sc_web.{n}.g{g}.sock\nrawrouter-to = 127.0.0.1:{}\n", ports[n - 1])), "{ini}");
        let link = std::fs::read_link(s.root().join(format!("nginx/sc_web.{n}.sock"))).unwrap();
        assert_eq!(link, std::path::Path::new(&format!("sc_web.{n}.g{g}.sock")));
    }
    assert!(!s.root().join("uwsgi-enabled/sc_worker.1.ini").exists());
    // A redeploy starts all three as the next generation, on ports of their
    // own; the previous one stops (no drain in these tests).
    s.ssh("deploy sc").ok();
    let next = live_gen(&s, "sc");
    assert!(next > g);
    let new_ports = gen_ports(&s, "sc", next);
    assert!(new_ports.iter().all(|p| !ports.contains(p)), "{new_ports:?} shares a port with {ports:?}");
    assert_eq!(enabled_web(&s, "sc"), (1..=3).map(|n| format!("sc_web.{n}.g{next}.ini")).collect::<Vec<_>>());
    // Scaling down leaves exactly what ps reports.
    s.ssh("ps:scale sc web=2").ok();
    s.ssh("ps:scale sc web=1").ok();
    let last = live_gen(&s, "sc");
    assert_eq!(enabled_web(&s, "sc"), [format!("sc_web.1.g{last}.ini")]);
    assert_eq!(s.ssh("ps sc").ok().stdout, "web:1\n  web.1 starting\nworker:0\n");
    let conf = s.read("nginx/sc.conf");
    assert!(conf.contains(&format!("server unix:{root}/nginx/sc_web.1.sock;")) && !conf.contains("sc_web.2.sock"), "{conf}");
}

#[test]
fn ps_scale_refuses_bad_counts_and_unknown_kinds_and_changes_nothing() {
    let s = Server::new();
    web_app(&s, "sc");
    let before = s.read("envs/sc/SCALING");
    s.ssh("ps:scale sc web=-1").fails(1, "below 0");
    s.ssh("ps:scale sc web=two").fails(1, "whole number");
    s.ssh("ps:scale sc cron=1").fails(1, "has no 'cron' worker");
    s.ssh("ps:scale sc web=2 nope=1").fails(1, "nothing was changed");
    s.ssh("ps:scale sc web").fails(1, "kind=N");
    assert_eq!(s.read("envs/sc/SCALING"), before);
}

#[test]
fn ps_reports_counts_and_states() {
    let s = Server::new();
    web_app(&s, "sc");
    s.ssh("stop sc").ok();
    let out = s.ssh("ps sc").ok().stdout;
    assert_eq!(out, "web:1\n  web.1 stopped\nworker:1\n  worker.1 stopped\n");
    s.ssh("start sc").ok();
    let json = s.ssh("ps sc --json").ok().stdout;
    // No emperor runs in these tests: enabled but not yet running.
    assert_eq!(json, "{\"web\":{\"count\":1,\"workers\":[{\"name\":\"web.1\",\"state\":\"starting\"}]},\"worker\":{\"count\":1,\"workers\":[{\"name\":\"worker.1\",\"state\":\"starting\"}]},\"draining\":[]}\n");
    // start runs the live release as a new generation: only its workers are enabled.
    assert_eq!(enabled_web(&s, "sc"), [format!("sc_web.1.g{}.ini", live_gen(&s, "sc"))]);
}

#[test]
fn stop_matches_the_app_exactly() {
    let s = Server::new();
    web_app(&s, "foo");
    web_app(&s, "foobar");
    web_app(&s, "foo_x");
    s.ssh("stop foo").ok();
    let enabled: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(s.root().join("uwsgi-enabled")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(enabled, ["foo_x_web.1.g1.ini", "foo_x_worker.1.ini", "foobar_web.1.g1.ini", "foobar_worker.1.ini"]);
    s.ssh("restart foo").ok();
    assert!(s.root().join("uwsgi-enabled/foo_web.1.g2.ini").exists());
    assert!(s.root().join("uwsgi-enabled/foobar_web.1.g1.ini").exists());
}

#[test]
fn auto_restart_off_leaves_running_workers_alone_until_restart() {
    let s = Server::new();
    let app = web_app(&s, "ar");
    s.ssh("config:set ar PIKU_AUTO_RESTART=false").ok();
    // Without auto-restart the web worker restarts in place (on a PORT of its own).
    assert_eq!(enabled_web(&s, "ar"), ["ar_web.1.ini"]);
    let before = s.read("uwsgi-enabled/ar_web.1.ini");
    app.commit(&[("ENV", "NGINX_SERVER_NAME=ar.example.test\nNEW_SETTING=1\n")], "new setting");
    s.push(&app, "ar", "main").ok();
    assert_eq!(s.read("uwsgi-enabled/ar_web.1.ini"), before, "running vassal untouched");
    assert!(s.read("uwsgi-available/ar_web.1.ini").contains("env = NEW_SETTING=1"));
    s.ssh("restart ar").ok();
    assert!(s.read("uwsgi-enabled/ar_web.1.ini").contains("env = NEW_SETTING=1"));
}

#[test]
fn logs_show_the_last_lines_with_prefixes_without_following() {
    let s = Server::new();
    web_app(&s, "lg");
    let dir = s.root().join("logs/lg");
    // Web workers log per generation; the live one's (the first deploy's) is shown.
    std::fs::write(dir.join("web.1.g1.log"), (1..=30).map(|i| format!("web line {i}\n")).collect::<String>()).unwrap();
    std::fs::write(dir.join("web.1.g0.log"), "from a release that is gone\n").unwrap();
    std::fs::write(dir.join("web.1.blue.log"), "from an older version\n").unwrap();
    std::fs::write(dir.join("worker.1.log"), "worker says hi\n").unwrap();
    let out = s.ssh("logs lg -n 2 --no-follow").ok().stdout;
    assert_eq!(out, "web.1    | web line 29\nweb.1    | web line 30\nworker.1 | worker says hi\n");
    let only = s.ssh("logs lg worker --no-follow").ok().stdout;
    assert_eq!(only, "worker.1 | worker says hi\n");
    s.ssh("logs lg cron --no-follow").fails(1, "no logs for 'lg' worker 'cron'");
}

#[test]
fn destroy_removes_the_app_but_keeps_its_data() {
    let s = Server::new();
    web_app(&s, "gone");
    web_app(&s, "gonebutnot");
    std::fs::write(s.root().join("data/gone/precious"), "keep me").unwrap();
    let r = s.ssh("destroy gone").ok();
    assert!(r.stderr.contains("Kept"), "{}", r.stderr);
    for p in ["apps/gone", "repos/gone", "releases/gone", "envs/gone", "logs/gone", "nginx/gone.conf", "nginx/gone_web.1.sock", "workers/gone", "uwsgi-enabled/gone_web.1.g1.ini", "uwsgi-available/gone_web.1.g1.ini"] {
        assert!(s.root().join(p).symlink_metadata().is_err(), "{p} still exists");
    }
    assert_eq!(s.read("data/gone/precious"), "keep me");
    assert!(s.root().join("uwsgi-enabled/gonebutnot_web.1.g1.ini").exists());
    assert!(s.root().join("nginx/gonebutnot_web.1.sock").symlink_metadata().is_ok());
    assert_eq!(s.ssh("apps").ok().stdout, "*gonebutnot\n");
}

/// Compare a rendered file with tests/expected/<name>, after replacing the
/// run's variable parts with placeholders. `PIKU_BLESS=1` rewrites the file
/// (on purpose, after reading the diff).
fn assert_matches_expected(s: &Server, name: &str, text: &str, port: &str) {
    let root = s.root().display().to_string();
    let home = s.home().display().to_string();
    let bin = s.dir.path().join("prefix/bin").display().to_string();
    let mut text = text.to_string();
    for app in std::fs::read_dir(s.root().join("releases")).into_iter().flatten().flatten() {
        for rel in std::fs::read_dir(app.path()).into_iter().flatten().flatten() {
            text = text.replace(&format!("/{}", rel.file_name().to_string_lossy()), "/{RELEASE}");
        }
    }
    let mut normal = text.replace(&root, "{ROOT}").replace(&bin, "{BIN}").replace(&home, "{HOME}").replace(&format!("={port}\n"), "={PORT}\n").replace(&format!(":{port}\n"), ":{PORT}\n");
    for (key, placeholder) in [("uid = ", "{USER}"), ("gid = ", "{GROUP}"), ("env = USER=", "{USER}")] {
        normal = normal
            .lines()
            .map(|l| if l.starts_with(key) { format!("{key}{placeholder}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
    if blessing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &normal).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (PIKU_BLESS=1 writes it)", path.display()));
    assert_eq!(normal, expected, "{name} differs from tests/expected (PIKU_BLESS=1 cargo test regenerates it)");
}

#[test]
fn rendered_vassals_match_the_expected_files() {
    let s = Server::new();
    let app = GitApp::new(&[
        ("Procfile", "wsgi: app:application\nweb: ./serve --port $PORT\ncron1: */5 * * * * ./tick\nqueue: ./worker\nphp: public\nrwsgi: config.ru\n"),
        (
            "ENV",
            "NGINX_SERVER_NAME=vas.example.test\nUWSGI_MAX_REQUESTS=10\nUWSGI_LISTEN=64\nUWSGI_PROCESSES=3\nUWSGI_THREADS=8\nUWSGI_ENABLE_THREADS=False\nUWSGI_LOG_X_FORWARDED_FOR=true\nUWSGI_LOG_MAXSIZE=2048\nUWSGI_IDLE=60\nUWSGI_ASYNCIO=16\nUWSGI_INCLUDE_FILE=uwsgi.extra\n",
        ),
        ("uwsgi.extra", "[uwsgi]\n# extra settings\nharakiri = 30\n"),
    ]);
    let r = s.push(&app, "vas", "main").ok();
    assert!(r.stderr.contains("Deployed"), "{}", r.stderr);
    // Each HTTP worker of the generation has a port of its own.
    let record = s.read("workers/vas/g1");
    let port_of = |kind: &str| record.lines().find_map(|l| l.strip_prefix(&format!("{kind}.1:"))).unwrap_or("none").to_string();
    for (kind, name) in [("wsgi", "wsgi.1.g1"), ("cron1", "cron1.1"), ("queue", "queue.1"), ("php", "php.1.g1"), ("rwsgi", "rwsgi.1.g1")] {
        let text = s.read(&format!("uwsgi-enabled/vas_{name}.ini"));
        assert_matches_expected(&s, &format!("vassal-{kind}.ini"), &text, &port_of(kind));
    }
    assert!(!s.root().join("uwsgi-enabled/vas_web.1.g1.ini").exists(), "wsgi disables web");
    let port = "none".to_string();
    assert_matches_expected(&s, "emperor.ini", &s.read("uwsgi/uwsgi.ini").replace(&format!("threads = {}", 2 * std::thread::available_parallelism().unwrap().get()), "threads = {THREADS}"), &port);
}

#[test]
fn bad_worker_settings_stop_the_deploy_with_the_variable_named() {
    for (env, needle) in [
        ("UWSGI_PROCESSES=many\n", "UWSGI_PROCESSES must be a whole number"),
        ("UWSGI_ENABLE_THREADS=maybe\n", "UWSGI_ENABLE_THREADS of 'bad' must be true or false"),
        ("UWSGI_INCLUDE_FILE=missing.ini\n", "UWSGI_INCLUDE_FILE \"missing.ini\" of 'bad' cannot be read"),
    ] {
        let s = Server::new();
        let app = GitApp::new(&[("Procfile", "web: ./serve\n"), ("ENV", "A=1\n")]);
        s.push(&app, "bad", "main").ok();
        let live = s.live_id("bad").unwrap();
        app.commit(&[("ENV", env)], "bad setting");
        let r = s.push(&app, "bad", "main");
        assert!(r.stderr.contains(needle), "{env}: {}", r.stderr);
        assert_eq!(s.live_id("bad").unwrap(), live);
    }
}

#[test]
fn ps_scale_of_an_app_restarting_in_place_gives_each_instance_a_kept_port() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=pin.example.test\nPORT=8123\n")]);
    s.push(&app, "pin", "main").ok();
    s.ssh("ps:scale pin web=2").ok();
    let ports = s.read("envs/pin/PORTS");
    let second = ports.lines().find_map(|l| l.strip_prefix("2:")).expect("a port for web.2").to_string();
    assert!(ports.starts_with("1:8123\n") && second != "8123", "{ports}");
    assert!(s.read("uwsgi-enabled/pin_web.2.ini").contains(&format!("env = PORT={second}\n")));
    let conf = s.read("nginx/pin.conf");
    assert!(conf.contains("server 127.0.0.1:8123;") && conf.contains(&format!("server 127.0.0.1:{second};")), "{conf}");
    // A redeploy keeps them.
    s.ssh("deploy pin").ok();
    assert_eq!(s.read("envs/pin/PORTS"), ports);
}
