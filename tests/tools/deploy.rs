//! The deploy chain through a real git push (ssh stood in for): releases,
//! the deploy branch, and failures that must leave the live release alone.

use crate::harness::*;

#[test]
fn a_push_materialises_a_release_and_makes_it_live() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    let r = s.push(&app, "site", "main").ok();
    let out = r.all();
    assert!(out.contains("Static app detected"), "{out}");
    assert!(out.contains("Live at http://static.example.test/"), "{out}");
    let id = s.live_id("site").expect("apps/site is a symlink to the release");
    assert_eq!(s.read(&format!("apps/site/public/index.html")), "version one\n");
    let facts = s.read(&format!("releases/site/{id}.release"));
    assert!(facts.contains("REF=refs/heads/main") && facts.contains("MESSAGE=first"), "{facts}");
    let conf = s.read("nginx/site.conf");
    assert!(conf.contains("server_name static.example.test;"), "{conf}");
    assert!(conf.contains(&format!("alias {}/apps/site/public/;", s.root().display())), "{conf}");
    assert!(s.read("repos/site/config").contains("hooksPath"), "core.hooksPath is set");
}

#[test]
fn a_new_commit_redeploys_and_the_same_commit_is_a_no_op() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let first = s.live_id("site").unwrap();
    app.commit(&[("public/index.html", "version two\n")], "second");
    s.push(&app, "site", "main").ok();
    let second = s.live_id("site").unwrap();
    assert_ne!(first, second);
    assert_eq!(s.read("apps/site/public/index.html"), "version two\n");
    // By hand, with nothing new: idempotent, says so.
    let r = s.tool("piku-receive", &["checkout", "site"]).ok();
    assert!(r.stderr.contains("already live") && r.stdout.is_empty(), "{}", r.all());
}

#[test]
fn only_the_first_pushed_branch_deploys() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    app.git(&["checkout", "-q", "-b", "feature"]);
    app.commit(&[("public/index.html", "feature\n")], "feature work");
    let r = s.push(&app, "site", "feature").ok();
    assert!(r.stderr.contains("Branch 'feature' received, not deployed"), "{}", r.stderr);
    assert_eq!(s.read("apps/site/public/index.html"), "version one\n");
}

/// Deploy a good release, then push `files` and expect the deploy to fail with
/// `needle` while the first release stays live.
fn assert_bad_push_keeps_live(files: &[(&str, &str)], needle: &str) {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let live = s.live_id("site").unwrap();
    let conf = s.read("nginx/site.conf");
    app.commit(files, "broken");
    let r = s.push(&app, "site", "main");
    assert_eq!(r.code, 0, "post-receive cannot reject a push");
    assert!(r.stderr.contains(needle), "no {needle:?} in:\n{}", r.stderr);
    assert!(r.stderr.contains("The release that was live is still serving"), "{}", r.stderr);
    assert_eq!(s.live_id("site").unwrap(), live);
    assert_eq!(s.read("apps/site/public/index.html"), "version one\n");
    assert_eq!(s.read("nginx/site.conf"), conf);
}

#[test]
fn a_push_without_procfile_fails_and_the_live_release_serves() {
    assert_bad_push_keeps_live(&[("-Procfile", "")], "has no Procfile");
}

#[test]
fn a_procfile_without_workers_fails() {
    assert_bad_push_keeps_live(&[("Procfile", "release: true\n")], "declares no worker");
}

/// Deploy a good release, then push `files`: the pre-receive check rejects
/// the push itself (no ref moves) with `needle`.
fn assert_push_rejected(files: &[(&str, &str)], needle: &str) {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let live = s.live_id("site").unwrap();
    let head = std::fs::read_to_string(s.root().join("repos/site/refs/heads/main")).unwrap();
    app.commit(files, "broken");
    let r = s.push(&app, "site", "main");
    assert_ne!(r.code, 0, "the push must fail:\n{}", r.stderr);
    assert!(r.stderr.contains(needle), "no {needle:?} in:\n{}", r.stderr);
    assert!(r.stderr.contains("push to 'site' rejected") && r.stderr.contains("pre-receive hook declined"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(s.root().join("repos/site/refs/heads/main")).unwrap(), head, "no ref moved");
    assert_eq!(s.live_id("site").unwrap(), live);
}

#[test]
fn a_malformed_procfile_line_rejects_the_push_with_its_number() {
    assert_push_rejected(&[("Procfile", "static: public\nnonsense\n")], "Procfile, line 2: expected 'kind: command'");
}

#[test]
fn a_bad_cron_line_rejects_the_push() {
    assert_push_rejected(&[("Procfile", "static: public\ncron1: 99 * * * * ./x\n")], "cron minute \"99\" is out of range");
}

#[test]
fn a_push_to_another_branch_is_not_checked() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let live = s.live_id("site").unwrap();
    let releases = std::fs::read_dir(s.root().join("releases/site")).unwrap().count();
    app.git(&["checkout", "-q", "-b", "wip"]);
    app.commit(&[("Procfile", "broken\n"), ("public/index.html", "wip\n")], "wip");
    let r = s.push(&app, "site", "wip").ok();
    // Accepted (not checked, not deployed): the live release and its files are as they were.
    assert!(!r.stderr.contains("Deploying"), "{}", r.stderr);
    assert_eq!(s.live_id("site").unwrap(), live);
    assert_eq!(s.read("apps/site/public/index.html"), "version one\n");
    assert_eq!(s.read("apps/site/Procfile"), "static: public\n");
    assert_eq!(std::fs::read_dir(s.root().join("releases/site")).unwrap().count(), releases, "no new release");
    assert_eq!(s.read("repos/site/refs/heads/wip").trim().len(), 40, "the branch was pushed");
}

#[test]
fn a_failing_release_task_fails_the_deploy() {
    assert_bad_push_keeps_live(&[("Procfile", "static: public\nrelease: echo migrating; exit 3\n")], "the release task of 'site' failed (exit code 3)");
}

#[test]
fn a_malformed_env_line_rejects_the_push_with_file_and_line() {
    assert_push_rejected(&[("ENV", "NGINX_SERVER_NAME=static.example.test\nnot a valid line\n")], "ENV, line 2: expected KEY=VALUE");
}

#[test]
fn a_malformed_user_config_fails_the_deploy_and_the_live_release_serves() {
    // envs/<app>/ENV edited by hand: not checked at push time, caught by the deploy.
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let live = s.live_id("site").unwrap();
    std::fs::write(s.root().join("envs/site/ENV"), "GOOD=1\nbad line\n").unwrap();
    app.commit(&[("public/index.html", "version two\n")], "two");
    let r = s.push(&app, "site", "main").ok();
    assert!(r.stderr.contains("the config of 'site'") && r.stderr.contains("line 2"), "{}", r.stderr);
    assert_eq!(s.live_id("site").unwrap(), live);
}

#[test]
fn a_value_nginx_would_read_as_syntax_is_refused() {
    assert_bad_push_keeps_live(&[("ENV", "NGINX_SERVER_NAME=a.test;include /etc/passwd\n")], "NGINX_SERVER_NAME contains ';'");
}

#[test]
fn the_release_task_runs_in_the_new_tree_with_the_apps_environment() {
    let s = Server::new();
    let app = GitApp::new(&[
        ("Procfile", "static: public\nrelease: echo \"$APP $GREETING $PWD\" > public/released.txt\n"),
        ("ENV", "GREETING=hello\n"),
        ("public/index.html", "x\n"),
    ]);
    s.push(&app, "rel", "main").ok();
    let id = s.live_id("rel").unwrap();
    let written = s.read("apps/rel/public/released.txt");
    assert_eq!(written, format!("rel hello {}\n", s.root().join("releases/rel").join(&id).display()));
}

#[test]
fn workers_become_vassals_with_the_live_environment() {
    let s = Server::new();
    let app = GitApp::new(&[
        ("Procfile", "web: python3 -m http.server $PORT\nworker: sleep 100\n"),
        ("ENV", "NGINX_SERVER_NAME=gen.example.test\nTRICKY=100% $(HOME) @(exec://id)\n"),
    ]);
    s.push(&app, "gen", "main").ok();
    let web = s.read("uwsgi-enabled/gen_web.1.g1.ini");
    assert!(web.contains("attach-daemon = python3 -m http.server $PORT\n"), "{web}");
    assert!(web.contains("env = TRICKY=100%% %(piku_dollar)(HOME) %(piku_at)(exec://id)\n"), "{web}");
    assert!(web.contains("env = PROC_TYPE=web\n") && web.contains("env = APP=gen\n"), "{web}");
    assert_eq!(s.read("uwsgi-available/gen_web.1.g1.ini"), web);
    assert!(s.read("uwsgi-enabled/gen_worker.1.ini").contains("attach-daemon = sleep 100\n"));
    assert_eq!(s.read("envs/gen/SCALING"), "web:1\nworker:1\n");
    // The port is the generation's, not the app's: LIVE_ENV has none.
    assert!(!s.read("envs/gen/LIVE_ENV").contains("PORT="));
    let port = gen_port(&s, "gen", 1);
    assert!(web.contains(&format!("env = PORT={port}\n")), "{web}");
    let conf = s.read("nginx/gen.conf");
    assert!(conf.contains(&format!("server unix:{}/nginx/gen_web.1.sock;", s.root().display())), "{conf}");

    // A redeploy starts a new generation on a port of its own, beside the
    // live one, then stops the old; a removed kind's vassal goes away; nginx's
    // configuration stays the same (its socket now leads to the new workers).
    app.commit(&[("Procfile", "web: python3 -m http.server $PORT\n")], "no worker");
    s.push(&app, "gen", "main").ok();
    let next = s.read("uwsgi-enabled/gen_web.1.g2.ini");
    let new_port = gen_port(&s, "gen", 2);
    assert_ne!(new_port, port);
    assert!(next.contains(&format!("env = PORT={new_port}\n")), "{next}");
    assert_eq!(s.read("nginx/gen.conf"), conf);
    assert_eq!(std::fs::read_link(s.root().join("nginx/gen_web.1.sock")).unwrap(), std::path::Path::new("gen_web.1.g2.sock"));
    assert!(!s.root().join("uwsgi-enabled/gen_web.1.g1.ini").exists());
    assert!(!s.root().join("uwsgi-enabled/gen_worker.1.ini").exists());
    assert!(!s.root().join("uwsgi-available/gen_worker.1.ini").exists());
    assert_eq!(s.read("envs/gen/SCALING"), "web:1\n");
}

#[test]
fn each_tool_runs_by_hand_idempotently() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=h.example.test\n")]);
    s.push(&app, "hand", "main").ok();
    let id = s.live_id("hand").unwrap();
    let snapshot = || (s.read("nginx/hand.conf"), s.read("uwsgi-enabled/hand_web.1.g1.ini"), s.read("envs/hand/LIVE_ENV"), s.read("workers/hand/live"));
    let before = snapshot();
    for _ in 0..2 {
        s.tool("piku-receive", &["checkout", "hand"]).ok();
        s.tool("piku-build", &["build", "hand", &id]).ok();
        s.tool("piku-config", &["sync", "hand"]).ok();
        s.tool("piku-uwsgi", &["publish", "hand"]).ok();
        s.tool("piku-nginx", &["publish", "hand"]).ok();
    }
    assert_eq!(snapshot(), before);
    assert_eq!(s.live_id("hand").unwrap(), id);
}

#[test]
fn tools_refuse_bad_arguments_with_usage_errors() {
    let s = Server::new();
    for tool in ["piku-receive", "piku-build", "piku-config", "piku-uwsgi", "piku-nginx"] {
        s.tool(tool, &[]).fails(2, "Usage:");
        s.tool(tool, &["--bogus", "x", "y", "z"]).fails(2, "Usage:");
    }
    s.tool("piku-build", &["build", "../x", "1"]).fails(1, "invalid app name");
}

#[test]
fn piku_deploy_rebuilds_the_live_release() {
    let s = Server::new();
    let app = GitApp::new(STATIC_APP);
    s.push(&app, "site", "main").ok();
    let id = s.live_id("site").unwrap();
    let r = s.ssh("deploy site").ok();
    assert!(r.stderr.contains(&format!("Deployed 'site' release {id}")), "{}", r.stderr);
}

/// A shell loop for a release task: wait (at most 60 s) until `path` exists.
fn wait_for_file(path: &std::path::Path) -> String {
    format!("i=0; while [ ! -e {p} ]; do sleep 0.1; i=$((i+1)); [ $i -lt 600 ] || exit 1; done", p = path.display())
}

/// Wait (at most 60 s) until `cond` holds, polling.
#[track_caller]
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "still not true after 60 s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether some process waits in flock(2) for `lock` (a `->` line of /proc/locks).
fn someone_waits_for(lock: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(lock) else { return false };
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let inode = format!(":{} ", meta.ino());
    locks.lines().any(|l| l.contains(" -> ") && l.contains(&inode))
}

#[test]
fn concurrent_pushes_to_one_app_are_serialized_and_the_last_one_wins() {
    let s = Server::new();
    // The release task says it has started, then waits for the test to let it go on.
    let gate = tempfile::tempdir().unwrap();
    let (started, go_on) = (gate.path().join("started"), gate.path().join("go-on"));
    let release = format!("release: touch {}; {}\n", started.display(), wait_for_file(&go_on));
    let slow = [("Procfile", format!("static: public\n{release}")), ("ENV", "A=1\n".into()), ("public/index.html", "base\n".into())];
    let slow: Vec<(&str, &str)> = slow.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = GitApp::new(&slow);
    std::fs::write(&go_on, "").unwrap();
    s.push(&one, "busy", "main").ok();
    std::fs::remove_file(&go_on).unwrap();
    std::fs::remove_file(&started).unwrap();
    // A second clone pushes on top of the first, while the first deploys.
    one.commit(&[("public/index.html", "from one\n")], "one");
    let two = GitApp::clone_of(&one);
    two.commit(&[("public/index.html", "from two\n")], "two");
    std::thread::scope(|scope| {
        let first = scope.spawn(|| s.push(&one, "busy", "main"));
        wait_until("the first push runs its release task", || started.exists());
        let second = scope.spawn(|| s.push(&two, "busy", "main"));
        wait_until("the second push waits for the app's lock", || someone_waits_for(&s.root().join("locks/busy")));
        std::fs::write(&go_on, "").unwrap();
        let first = first.join().unwrap().ok();
        let second = second.join().unwrap().ok();
        assert!(first.stderr.contains("Deployed 'busy'"), "{}", first.stderr);
        assert!(second.stderr.contains("Waiting for another deploy of 'busy' to finish"), "{}", second.stderr);
        assert!(second.stderr.contains("Deployed 'busy'"), "{}", second.stderr);
    });
    assert_eq!(s.read("apps/busy/public/index.html"), "from two\n");
}

#[test]
fn pushes_to_different_apps_run_in_parallel() {
    let s = Server::new();
    // Each app's release task waits until both have started: serialized
    // deploys would never get there (the task gives up after 60 s and fails).
    let gate = tempfile::tempdir().unwrap();
    let (a_started, b_started) = (gate.path().join("par-a"), gate.path().join("par-b"));
    let procfile = |mine: &std::path::Path, other: &std::path::Path| {
        format!("static: public\nrelease: touch {}; {}\n", mine.display(), wait_for_file(other))
    };
    let (pa, pb) = (procfile(&a_started, &b_started), procfile(&b_started, &a_started));
    let a = GitApp::new(&[("Procfile", &pa), ("public/index.html", "x\n")]);
    let b = GitApp::new(&[("Procfile", &pb), ("public/index.html", "x\n")]);
    std::thread::scope(|scope| {
        let ta = scope.spawn(|| s.push(&a, "par-a", "main"));
        let tb = scope.spawn(|| s.push(&b, "par-b", "main"));
        let (ra, rb) = (ta.join().unwrap().ok(), tb.join().unwrap().ok());
        assert!(!ra.stderr.contains("Waiting") && !rb.stderr.contains("Waiting"));
        assert!(ra.stderr.contains("Deployed 'par-a'") && rb.stderr.contains("Deployed 'par-b'"), "{}\n{}", ra.stderr, rb.stderr);
    });
}

const WEB_APP: &[(&str, &str)] = &[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=web.example.test\n")];

/// The port of a generation's web.1 (lib swap.rs).
fn gen_port(s: &Server, app: &str, g: u32) -> String {
    s.read(&format!("workers/{app}/g{g}")).lines().find_map(|l| l.strip_prefix("web.1:")).expect("web.1 in the generation").to_string()
}

fn live_gen(s: &Server, app: &str) -> u32 {
    s.read(&format!("workers/{app}/live")).trim().parse().unwrap()
}

fn live_port(s: &Server, app: &str) -> String {
    s.read(&format!("envs/{app}/LIVE_ENV")).lines().find_map(|l| l.strip_prefix("PORT=")).expect("PORT in LIVE_ENV").to_string()
}

#[test]
fn releases_list_each_deploy_and_rollback_makes_an_earlier_one_live_without_a_build() {
    let s = Server::new();
    let app = GitApp::new(WEB_APP);
    s.push(&app, "web", "main").ok();
    let first = s.live_id("web").unwrap();
    let blue = gen_port(&s, "web", live_gen(&s, "web"));
    app.commit(&[("index.html", "two\n")], "second: with an index");
    s.push(&app, "web", "main").ok();
    let second = s.live_id("web").unwrap();
    let green = gen_port(&s, "web", live_gen(&s, "web"));
    assert_ne!(blue, green, "each deploy's workers have ports of their own");
    app.commit(&[("Procfile", "web: python3 -m http.server $PORT\nrelease: exit 4\n")], "third: broken");
    s.push(&app, "web", "main").ok();

    let rows = s.ssh("releases web").ok().stdout;
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[0][3], rows[0][4]), ("failed", "third:"));
    assert_eq!((rows[1][0], rows[1][3], rows[1][4]), (second.as_str(), "live", "second:"));
    assert_eq!((rows[2][0], rows[2][3]), (first.as_str(), "previous"));
    assert_eq!(rows[2][1].len(), 7, "short commit");
    assert!(rows[2][2].ends_with('Z') && rows[2][2].contains('T'), "date {}", rows[2][2]);
    let json = s.ssh("releases web --json").ok().stdout;
    assert!(json.starts_with('[') && json.contains(&format!("{{\"id\":\"{second}\",")) && json.contains("\"status\":\"live\",\"message\":\"second: with an index\""), "{json}");

    // rollback: the previous release, through the chain, without a build, as a new generation.
    let r = s.ssh("rollback web").ok();
    assert!(r.stderr.contains(&format!("Rolling 'web' back to release {first}")), "{}", r.stderr);
    assert!(!r.stderr.contains("detected"), "no build on rollback:\n{}", r.stderr);
    assert_eq!(s.live_id("web").unwrap(), first);
    let g = live_gen(&s, "web");
    assert_eq!(g, 3, "the failed third push started no workers");
    let port = gen_port(&s, "web", g);
    assert!(port != blue && port != green, "a generation's port is never another's");
    assert!(s.read(&format!("uwsgi-enabled/web_web.1.g{g}.ini")).contains(&format!("chdir = {}/releases/web/{first}\n", s.root().display())));
    assert!(!s.root().join("uwsgi-enabled/web_web.1.g2.ini").exists());
    // And forward again by id; the live one and unknown ids are refused.
    s.ssh(&format!("rollback web {second}")).ok();
    assert_eq!(s.live_id("web").unwrap(), second);
    s.ssh(&format!("rollback web {second}")).fails(1, "already live");
    s.ssh("rollback web 20000101-000000-0000000").fails(1, "has no release");
    s.ssh("rollback web ../x").fails(2, "invalid release id");
}

#[test]
fn rollback_uses_the_config_the_release_was_deployed_with() {
    let s = Server::new();
    let app = GitApp::new(WEB_APP);
    s.push(&app, "web", "main").ok();
    let first = s.live_id("web").unwrap();
    s.ssh("config:set web --no-restart GREETING=new").ok();
    app.commit(&[("index.html", "two\n")], "second");
    s.push(&app, "web", "main").ok();
    assert!(s.read("envs/web/LIVE_ENV").contains("GREETING=new\n"));
    s.ssh(&format!("rollback web {first}")).ok();
    let live = s.read("envs/web/LIVE_ENV");
    assert!(!live.contains("GREETING"), "the first release ran without GREETING:\n{live}");
    assert_eq!(s.ssh("config:get web GREETING").ok().stdout, "new\n", "the user's config is not changed by a rollback");
}

#[test]
fn a_release_that_never_answers_is_stopped_and_the_live_one_keeps_serving() {
    let s = Server::new();
    let app = GitApp::new(WEB_APP);
    s.push(&app, "web", "main").ok();
    let live = s.live_id("web").unwrap();
    let before = (s.read("envs/web/LIVE_ENV"), s.read("nginx/web.conf"), s.read("uwsgi-enabled/web_web.1.g1.ini"));
    // Health checks on: no emperor runs here, so the new worker never answers.
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nPIKU_HEALTHCHECK_TIMEOUT=1\nPIKU_DRAIN_SECONDS=0\n");
    app.commit(&[("index.html", "two\n")], "second");
    let r = s.push(&app, "web", "main");
    assert_eq!(r.code, 0, "post-receive cannot reject a push");
    for needle in ["web:web.1.g2 failed its health check within 1 s", "no connection to 127.0.0.1:", "it logged nothing", "rolled back", "The release that was live is still serving"] {
        assert!(r.stderr.contains(needle), "no {needle:?} in:\n{}", r.stderr);
    }
    assert_eq!(s.live_id("web").unwrap(), live);
    assert_eq!((s.read("envs/web/LIVE_ENV"), s.read("nginx/web.conf"), s.read("uwsgi-enabled/web_web.1.g1.ini")), before);
    assert!(!s.root().join("uwsgi-enabled/web_web.1.g2.ini").exists() && !s.root().join("uwsgi-available/web_web.1.g2.ini").exists());
    assert!(!s.root().join("workers/web/g2").exists(), "the failed generation is forgotten");
    assert_eq!(live_gen(&s, "web"), 1);
    // The same through ssh: a failing restart exits 1.
    s.ssh("restart web").fails(1, "did not become healthy");
    assert_eq!(s.read("envs/web/LIVE_ENV"), before.0);
    assert_eq!(s.read(&format!("releases/web/{live}.env")), before.0, "the live release's facts are back in step");
}

#[test]
fn a_pinned_port_or_no_nginx_restarts_in_place_on_a_stable_port() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n"), ("ENV", "NGINX_SERVER_NAME=p.example.test\nPORT=8123\n")]);
    let r = s.push(&app, "pinned", "main").ok();
    assert!(r.stderr.contains("PORT is set to 8123 for 'pinned'") && r.stderr.contains("restart in place"), "{}", r.stderr);
    app.commit(&[("index.html", "two\n")], "second");
    s.push(&app, "pinned", "main").ok();
    assert!(s.read("uwsgi-enabled/pinned_web.1.ini").contains("env = PORT=8123\n"));
    assert_eq!(live_port(&s, "pinned"), "8123");
    // restart still restarts it (the emperor reloads a vassal whose file is touched).
    let vassal = s.root().join("uwsgi-enabled/pinned_web.1.ini");
    let mtime = || std::fs::metadata(&vassal).unwrap().modified().unwrap();
    // An hour back, so a touch shows whatever the file system's time resolution.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&vassal).unwrap().set_modified(past).unwrap();
    let before = mtime();
    s.ssh("restart pinned").ok();
    assert!(mtime() > before, "restart did not touch the vassal");

    let direct = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\n")]);
    s.push(&direct, "direct", "main").ok();
    let port = live_port(&s, "direct");
    direct.commit(&[("index.html", "two\n")], "second");
    s.push(&direct, "direct", "main").ok();
    assert_eq!(live_port(&s, "direct"), port, "its users reach PORT directly: it stays");
    assert!(s.read("uwsgi-enabled/direct_web.1.ini").contains(&format!("env = PORT={port}\n")));
    assert!(!s.read("envs/direct/PORTS").contains("blue"), "no colour ports for an app not behind nginx");
}

#[test]
fn a_wsgi_app_switches_by_its_socket_link() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "wsgi: app:application\nworker: ./work\n"), ("ENV", "NGINX_SERVER_NAME=w.example.test\n")]);
    s.push(&app, "w", "main").ok();
    let link = s.root().join("nginx/w.sock");
    assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("w_wsgi.1.g1.sock"));
    assert!(s.read("uwsgi-enabled/w_wsgi.1.g1.ini").contains(&format!("socket = {}/nginx/w_wsgi.1.g1.sock\n", s.root().display())));
    assert!(s.read("nginx/w.conf").contains(&format!("unix:{}", link.display())));
    app.commit(&[("app.py", "")], "second");
    s.push(&app, "w", "main").ok();
    assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("w_wsgi.1.g2.sock"));
    assert!(s.root().join("uwsgi-enabled/w_wsgi.1.g2.ini").exists() && !s.root().join("uwsgi-enabled/w_wsgi.1.g1.ini").exists());
    // The background worker is one vassal, replaced in place (never two copies).
    assert!(s.read("uwsgi-enabled/w_worker.1.ini").contains(&format!("chdir = {}/releases/w/{}\n", s.root().display(), s.live_id("w").unwrap())));
    // wsgi=2: nginx balances both, the second through a stable socket of its own.
    s.ssh("ps:scale w wsgi=2").ok();
    let second = s.root().join("nginx/w_wsgi.2.sock");
    assert_eq!(std::fs::read_link(&second).unwrap(), std::path::Path::new("w_wsgi.2.g3.sock"));
    assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("w_wsgi.1.g3.sock"));
    assert!(s.read("nginx/w.conf").contains(&format!("server unix:{};", second.display())), "{}", s.read("nginx/w.conf"));
    s.ssh("destroy w").ok();
    assert!(!link.exists() && !link.is_symlink());
}

#[test]
fn only_the_newest_releases_are_kept() {
    let s = Server::new();
    let app = GitApp::new(&[("Procfile", "static: public\n"), ("ENV", "NGINX_SERVER_NAME=k.example.test\nPIKU_KEEP_RELEASES=1\n")]);
    s.push(&app, "k", "main").ok();
    for i in 0..3 {
        app.commit(&[("public/index.html", &format!("{i}\n"))], &format!("v{i}"));
        s.push(&app, "k", "main").ok();
    }
    // PIKU_KEEP_RELEASES=1: the live one, and the one it replaced (its workers drain).
    let rows = s.ssh("releases k").ok().stdout;
    let messages: Vec<&str> = rows.lines().map(|l| l.split_whitespace().last().unwrap()).collect();
    assert_eq!(messages, ["v2", "v1"], "{rows}");
    assert!(rows.lines().next().unwrap().contains("live"));
}

#[test]
fn the_previous_web_workers_drain_in_the_background_then_stop() {
    let s = Server::new();
    s.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nPIKU_HEALTHCHECK=off\nPIKU_DRAIN_SECONDS=5\n");
    let app = GitApp::new(&[("Procfile", "web: python3 -m http.server $PORT\nworker: sleep 100\n"), ("ENV", "NGINX_SERVER_NAME=d.example.test\n")]);
    s.push(&app, "d", "main").ok();
    app.commit(&[("index.html", "two\n")], "second");
    let r = s.push(&app, "d", "main").ok();
    assert!(r.stderr.contains("The previous web workers of 'd' finish their requests, then stop (drain: 5 s)"), "{}", r.stderr);
    // The push did not wait for the drain: both generations still run after
    // it; nginx's socket already leads to the new one; ps says which drains.
    let enabled = s.root().join("uwsgi-enabled");
    assert!(enabled.join("d_web.1.g1.ini").exists() && enabled.join("d_web.1.g2.ini").exists());
    assert_eq!(std::fs::read_link(s.root().join("nginx/d_web.1.sock")).unwrap(), std::path::Path::new("d_web.1.g2.sock"));
    assert!(s.ssh("ps d").ok().stdout.contains("  web.1.g1 draining\n"));
    // A third push does not wait for the drain either: it starts at once,
    // and the two older generations drain on their own.
    app.commit(&[("index.html", "three\n")], "third");
    s.push(&app, "d", "main").ok();
    assert!(enabled.join("d_web.1.g3.ini").exists() && enabled.join("d_web.1.g1.ini").exists());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (enabled.join("d_web.1.g1.ini").exists() || enabled.join("d_web.1.g2.ini").exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!enabled.join("d_web.1.g1.ini").exists() && !enabled.join("d_web.1.g2.ini").exists(), "older generations still enabled after the drain");
    assert!(enabled.join("d_web.1.g3.ini").exists() && enabled.join("d_worker.1.ini").exists());
    // The drain is in the app's deploy log; its records are gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.root().join("workers/d/g2").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = s.ssh("logs d deploy --no-follow").ok().stdout;
    assert!(log.contains("Draining web.1.g1 of 'd' for 5 s") && log.lines().any(|l| l.contains("Stopped") && l.contains("web.1.g2")), "{log}");
    assert!(!s.root().join("workers/d/g1").exists() && !s.root().join("workers/d/g2").exists());
}
