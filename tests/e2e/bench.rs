//! Benchmarks, not tests: `tests/bench` runs the suite's server with
//! `--bench` and prints figures (median of RUNS, with min and max). Nothing
//! here asserts a time; it measures and prints.

use crate::client::{App, COMMAND_TIMEOUT, curl, git, run, serves, ssh};
use crate::server::Server;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

struct Stat(Vec<f64>);

impl Stat {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    fn row(&self, unit: &str) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!("{:>9.1} {unit} (min {:.1}, max {:.1}, n={})", self.median(), min, max, self.0.len())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

thread_local! {
    /// The last push's "answers / with HTTP 200 (X s)": from starting the new
    /// workers to their health check passing, in ms.
    static STAGED_MS: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// Time from `git push` until nginx answers `host` with `want`.
fn push_to_200(s: &Server, app: &App, host: &str, want: &str) -> Result<f64, String> {
    let started = Instant::now();
    let out = app.deploy("main")?.all();
    // git pads each remote: line with blanks.
    let staged = out.lines().find_map(|l| l.split("with HTTP ").nth(1)?.split_once('(')?.1.trim_end().strip_suffix(" s)")?.parse::<f64>().ok());
    STAGED_MS.with(|c| c.set(staged.map(|s| s * 1000.0)));
    loop {
        if let (200, body) = curl(s, host, "/") {
            if body.contains(want) {
                return Ok(ms(started.elapsed()));
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{host} never answered {want:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until the app's older generations have drained and stopped: only
/// the live generation's web vassals are enabled, only its workers run.
fn drained(s: &Server, app: &str) -> Result<(), String> {
    let started = Instant::now();
    let uid = crate::server::passwd_ids().map_or(u32::MAX, |ids| ids.0);
    loop {
        let live = std::fs::read_to_string(s.piku_root().join(format!("workers/{app}/live"))).unwrap_or_default();
        let tag = format!(".g{}", live.trim());
        let old_enabled = std::fs::read_dir(s.piku_root().join("uwsgi-enabled"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{app}_web.")) && !n.ends_with(&format!("{tag}.ini")))
                    .count()
            })
            .unwrap_or(0);
        let old_running = piku::vassals::running_workers_of(uid).iter().filter(|t| t.starts_with(&format!("{app}:web.")) && !t.ends_with(&tag)).count();
        if old_enabled == 0 && old_running == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the old workers of {app} never drained"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `work` under wrk's default keep-alive load (`wrk -t1 -c4`) through
/// nginx; wrk stops (SIGINT) when `work` is done. Returns the figures and
/// how many requests failed (non-2xx/3xx answers and socket errors).
fn wrk_during<T>(s: &Server, host: &str, work: impl FnOnce() -> T) -> Result<(T, String, u64), String> {
    let child = Command::new("wrk")
        .args(["-t1", "-c4", "-d600s", "-H", &format!("Host: {host}"), &format!("http://127.0.0.1:{}/", s.http_port)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let result = work();
    run(Command::new("kill").args(["-INT", &child.id().to_string()]), None, COMMAND_TIMEOUT).ok("kill -INT wrk")?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number_after = |key: &str| -> u64 {
        text.find(key).and_then(|i| text[i + key.len()..].split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty())?.parse().ok()).unwrap_or(0)
    };
    let requests: u64 = text.lines().find(|l| l.contains("requests in")).and_then(|l| l.split_whitespace().next()?.parse().ok()).ok_or_else(|| format!("wrk said:\n{text}"))?;
    let non_2xx = number_after("Non-2xx or 3xx responses:");
    let socket = |k: &str| -> Option<u64> {
        let rest = text.split("Socket errors:").nth(1)?;
        let i = rest.find(k)?;
        rest[i + k.len()..].split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty())?.parse().ok()
    };
    let socket = |k: &str| socket(k).unwrap_or(0);
    let errors = ["connect ", "read ", "write ", "timeout "].map(socket);
    let failed = non_2xx + errors.iter().sum::<u64>();
    let summary = format!(
        "{requests} requests: {failed} failed ({non_2xx} non-2xx/3xx; socket errors: connect {}, read {}, write {}, timeout {})",
        errors[0], errors[1], errors[2], errors[3]
    );
    Ok((result, summary, failed))
}

/// Push a new version of a web app and wait until nginx serves it.
fn redeploy(s: &Server, app: &App, host: &str, version: &str) -> Result<(), String> {
    app.write("site/index.html", version);
    app.commit(version)?;
    let out = app.deploy("main")?;
    serves(s, host, "/", version).map_err(|e| format!("{e}\nafter the push:\n{}", crate::client::indent(&out.all())))
}

/// The swap, measured: a web app's push-to-200 one push at a time and five
/// in a row; failed requests during redeploys and a rollback under load,
/// close-per-request and keep-alive (wrk), each checking that the new
/// version was served. `floor`: the median floor, for ratios.
fn web_swaps(s: &Server, floor: Option<f64>, table: &mut Vec<(String, String)>) -> Result<(), String> {
    let x_floor = |st: &Stat| floor.map(|f| format!(" = {:.2}x floor", st.median() / f)).unwrap_or_default();
    let web = App::new(s, "bench-web");
    web.write("Procfile", "web: python3 -m http.server --bind 127.0.0.1 $PORT --directory site\n")
        .write("ENV", "NGINX_SERVER_NAME=bench-web.example.test\n")
        .write("site/index.html", "web v0");
    web.commit("v0")?;
    web.deploy("main")?;
    serves(s, "bench-web.example.test", "/", "web v0")?;
    // One push at a time (the previous deploy's old workers have stopped),
    // then five in a row (older releases still draining).
    let (mut webs, mut back_to_back) = (Stat(vec![]), Stat(vec![]));
    let (mut staged_one, mut staged_row) = (Stat(vec![]), Stat(vec![]));
    for i in 1..=RUNS * 2 {
        web.write("site/index.html", &format!("web v{i}"));
        web.commit(&format!("v{i}"))?;
        if i <= RUNS {
            drained(s, "bench-web")?;
            webs.0.push(push_to_200(s, &web, "bench-web.example.test", &format!("web v{i}"))?);
        } else {
            back_to_back.0.push(push_to_200(s, &web, "bench-web.example.test", &format!("web v{i}"))?);
        }
        let into = if i <= RUNS { &mut staged_one } else { &mut staged_row };
        into.0.extend(STAGED_MS.with(|c| c.get()));
    }
    table.push(("push-to-200, generic web app, one at a time".into(), format!("{}{}", webs.row("ms"), x_floor(&webs))));
    table.push((
        "push-to-200, generic web app, 5 in a row".into(),
        format!("{}{} = {:.2}x one at a time", back_to_back.row("ms"), x_floor(&back_to_back), back_to_back.median() / webs.median()),
    ));
    // Of which: the emperor's scan (every second) and the worker's start-up.
    for (label, st) in [("one at a time", &staged_one), ("5 in a row", &staged_row)] {
        if !st.0.is_empty() {
            table.push((format!("  of which new workers started to healthy, {label}"), st.row("ms")));
        }
    }

    // Failed requests during redeploys under load through nginx: ours (each
    // release's own workers, nginx's upstream unchanged); the same redeploy
    // restarting in place, as piku does (PORT pinned). Each under 4 loops of
    // one connection per request, then under wrk's keep-alive load; each
    // push and the rollback must serve their version.
    let pinned = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let inplace = App::new(s, "bench-inplace");
    inplace
        .write("Procfile", "web: python3 -m http.server --bind 127.0.0.1 $PORT --directory site\n")
        .write("ENV", &format!("NGINX_SERVER_NAME=bench-inplace.example.test\nPORT={pinned}\n"))
        .write("site/index.html", "inplace v0");
    inplace.commit("v0")?;
    inplace.deploy("main")?;
    serves(s, "bench-inplace.example.test", "/", "inplace v0")?;
    let mut round = 0;
    for (label, app, host) in [
        ("3x redeploy + rollback, per-release workers (ours)", &web, "bench-web.example.test"),
        ("3x redeploy + rollback, restart in place (piku's way)", &inplace, "bench-inplace.example.test"),
    ] {
        let mut swaps = || -> Result<(), String> {
            round += 1;
            for i in 0..3 {
                redeploy(s, app, host, &format!("load r{round} v{i}"))?;
            }
            ssh(s, &format!("rollback {}", app.name), None).ok("ssh rollback")?;
            serves(s, host, "/", &format!("load r{round} v1"))
        };
        drained(s, "bench-web")?;
        let (result, load, _) = crate::zero_cases::under_load(s, host, 4, &mut swaps);
        result?;
        drained(s, "bench-web")?;
        let (result, keep_alive, _) = wrk_during(s, host, &mut swaps)?;
        result?;
        table.push((format!("requests during {label}, close per request"), load.to_string()));
        table.push((format!("requests during {label}, keep-alive (wrk -t1 -c4)"), keep_alive));
    }
    drained(s, "bench-web")?;
    let ((), load, _) = crate::zero_cases::under_load(s, "bench-web.example.test", 4, || {
        for _ in 0..3 {
            ssh(s, "stop bench-web", None);
            ssh(s, "start bench-web", None);
        }
    });
    table.push(("requests during 3x stop then start, close per request".into(), load.to_string()));
    Ok(())
}

pub fn run_all(s: &Server) -> Result<(), String> {
    let mut table: Vec<(String, String)> = Vec::new();
    // PIKU_BENCH=swap: only the swap's figures (a few minutes less).
    if std::env::var("PIKU_BENCH").is_ok_and(|v| v == "swap") {
        web_swaps(s, None, &mut table)?;
        print_table(table);
        return Ok(());
    }

    // The floor: a plain git push over the same ssh to a bare repo with no
    // hook (a key without the forced command), plus an nginx reload.
    let floor_key = s.work.join("client/floor");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&floor_key), None, COMMAND_TIMEOUT).ok("ssh-keygen")?;
    let public = std::fs::read_to_string(floor_key.with_extension("pub")).map_err(|e| e.to_string())?;
    let auth = s.home().join(".ssh/authorized_keys");
    let mut text = std::fs::read_to_string(&auth).map_err(|e| e.to_string())?;
    text.push_str(&public);
    std::fs::write(&auth, text).map_err(|e| e.to_string())?;
    s.run_as_user(&["git", "init", "-q", "--bare", "floor.git"])?;
    let floor_ssh = format!("ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes", floor_key.display(), s.ssh_port);

    let site = App::new(s, "bench-static");
    site.write("Procfile", "static: public\n").write("ENV", "NGINX_SERVER_NAME=bench-static.example.test\n").write("public/index.html", "v0");
    site.commit("v0")?;
    site.deploy("main")?;
    let (mut floor, mut statics) = (Stat(vec![]), Stat(vec![]));
    for i in 1..=RUNS {
        site.write("public/index.html", &format!("static v{i}"));
        site.commit(&format!("v{i}"))?;
        let started = Instant::now();
        run(git(&site.dir).env("GIT_SSH_COMMAND", &floor_ssh).args(["push", "-q", &format!("{}:floor.git", s.ssh_destination()), "main"]), None, COMMAND_TIMEOUT)
            .ok("floor push")?;
        run(Command::new("nginx").args(["-c", &s.work.join("nginx/nginx.conf").display().to_string(), "-s", "reload"]), None, COMMAND_TIMEOUT).ok("nginx reload")?;
        floor.0.push(ms(started.elapsed()));
        statics.0.push(push_to_200(s, &site, "bench-static.example.test", &format!("static v{i}"))?);
    }
    let ratio = statics.median() / floor.median();
    table.push(("floor: git push (no hook) + nginx reload".into(), floor.row("ms")));
    table.push(("push-to-200, static site".into(), format!("{} = {ratio:.2}x floor", statics.row("ms"))));

    web_swaps(s, Some(floor.median()), &mut table)?;

    let py = App::new(s, "bench-python");
    py.write("requirements.txt", "six\n")
        .write("Procfile", "web: python app.py\n")
        .write("ENV", "NGINX_SERVER_NAME=bench-python.example.test\n")
        .write("app.py", "import os, six\nfrom http.server import SimpleHTTPRequestHandler, HTTPServer\nHTTPServer(('127.0.0.1', int(os.environ['PORT'])), SimpleHTTPRequestHandler).serve_forever()\n")
        .write("index.html", "py v0");
    py.commit("v0")?;
    py.deploy("main")?;
    let mut pys = Stat(vec![]);
    for i in 1..=RUNS {
        py.write("index.html", &format!("py v{i}"));
        py.commit(&format!("v{i}"))?;
        drained(s, "bench-python")?;
        pys.0.push(push_to_200(s, &py, "bench-python.example.test", &format!("py v{i}"))?);
    }
    table.push(("redeploy push-to-200, Python, deps unchanged (one at a time)".into(), format!("{} = {:.2}x floor", pys.row("ms"), pys.median() / floor.median())));

    // Command latency: the front door run directly (as the user would from a
    // shell on the server) and through ssh.
    let piku = s.work.join("prefix/bin/piku");
    for (label, args) in [("apps", vec!["apps"]), ("config:get", vec!["config:get", "bench-static", "NGINX_SERVER_NAME"]), ("ps", vec!["ps", "bench-web"])] {
        let mut direct = Stat(vec![]);
        for _ in 0..20 {
            let started = Instant::now();
            let out = Command::new(&piku).args(&args).env("HOME", s.home()).output().map_err(|e| e.to_string())?;
            direct.0.push(ms(started.elapsed()));
            if !out.status.success() && label != "config:get" {
                return Err(format!("piku {label} failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        let mut over_ssh = Stat(vec![]);
        for _ in 0..RUNS {
            let started = Instant::now();
            ssh(s, &args.join(" "), None);
            over_ssh.0.push(ms(started.elapsed()));
        }
        table.push((format!("piku {label}, on the server"), direct.row("ms")));
        table.push((format!("piku {label}, through ssh"), over_ssh.row("ms")));
    }

    // Peak RSS of each tool during a push of ~5,000 files / ~50 MB.
    let big = App::new(s, "bench-big");
    big.write("Procfile", "static: public\n").write("ENV", "NGINX_SERVER_NAME=bench-big.example.test\n");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..5000 {
        let mut content = String::with_capacity(10_000);
        while content.len() < 10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            content.push_str(&format!("{seed:016x}"));
        }
        big.write(&format!("public/d{}/f{i}.txt", i % 50), &content);
    }
    big.commit("big")?;
    let peaks = std::sync::Mutex::new(BTreeMap::<String, u64>::new());
    let done = AtomicBool::new(false);
    let push_ms = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                sample_rss(&peaks);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let started = Instant::now();
        let r = big.deploy("main");
        done.store(true, Ordering::SeqCst);
        r.map(|_| ms(started.elapsed()))
    })?;
    table.push(("push of 5,000 files / 50 MB (static)".into(), format!("{push_ms:>9.1} ms")));
    for (tool, kb) in peaks.lock().unwrap().iter() {
        table.push((format!("peak RSS {tool} (big push, sampled)"), format!("{:>9.1} MB", *kb as f64 / 1024.0)));
    }
    // Tools too quick for the sampler: each run by hand on the big app's live
    // release, its peak from the kernel (wait4), next to runuser's own.
    let live = std::fs::read_link(s.piku_root().join("apps/bench-big")).map_err(|e| format!("apps/bench-big: {e}"))?;
    let id = live.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let by_hand: [(&str, Vec<&str>); 7] = [
        ("runuser alone (the wrapper's floor)", vec!["true"]),
        ("piku apps", vec!["piku", "apps"]),
        ("piku-build", vec!["piku-build", "build", "bench-big", &id]),
        ("piku-config", vec!["piku-config", "resolve", "bench-big", &id]),
        ("piku-uwsgi check", vec!["piku-uwsgi", "check", "bench-big", &id]),
        ("piku-nginx check", vec!["piku-nginx", "check", "bench-big", &id]),
        ("piku-receive (already live)", vec!["piku-receive", "checkout", "bench-big"]),
    ];
    for (label, argv) in by_hand {
        match peak_rss_kb(&mut s.as_user(&argv)) {
            Some(kb) => table.push((format!("peak RSS {label} (by hand, big app)"), format!("{:>9.1} MB", kb as f64 / 1024.0))),
            None => table.push((format!("peak RSS {label} (by hand, big app)"), "failed".into())),
        }
    }

    for name in ["piku", "piku-receive", "piku-build", "piku-config", "piku-uwsgi", "piku-nginx"] {
        let size = std::fs::metadata(s.work.join("prefix/bin").join(name)).map(|m| m.len()).unwrap_or(0);
        table.push((format!("size of {name}"), format!("{:>9.2} MB", size as f64 / 1_048_576.0)));
    }
    let total: u64 = ["piku", "piku-receive", "piku-build", "piku-config", "piku-uwsgi", "piku-nginx"]
        .iter()
        .map(|n| std::fs::metadata(s.work.join("prefix/bin").join(n)).map(|m| m.len()).unwrap_or(0))
        .sum();
    table.push(("size of all tools".into(), format!("{:>9.2} MB", total as f64 / 1_048_576.0)));

    match crate::addon_cases::bench(s) {
        Ok(rows) => table.extend(rows),
        Err(e) => table.push(("add-ons (PostgreSQL, Redis)".into(), format!("not measured: {e}"))),
    }
    print_table(table);
    Ok(())
}

fn print_table(table: Vec<(String, String)>) {
    println!();
    println!("| measure | figure |");
    println!("|---|---|");
    for (k, v) in table {
        println!("| {k} | {} |", v.trim());
    }
}

/// Run `cmd` to its end; its peak resident set in kB (with its waited-for
/// children's, which is how runuser's child is counted), from wait4.
fn peak_rss_kb(cmd: &mut Command) -> Option<u64> {
    unsafe extern "C" {
        fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut i64) -> i32;
    }
    let child = cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().ok()?;
    let (mut status, mut usage) = (0i32, [0i64; 18]);
    // SAFETY: struct rusage on Linux is two timevals then 14 longs (18 x i64
    // on 64-bit); ru_maxrss (kB) is the first long.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    (pid > 0 && status == 0).then_some(usage[4] as u64)
}

/// The highest VmHWM seen so far of every process whose name starts with "piku".
fn sample_rss(peaks: &std::sync::Mutex<BTreeMap<String, u64>>) {
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Ok(status) = std::fs::read_to_string(p.path().join("status")) else { continue };
        let name = status.lines().next().and_then(|l| l.strip_prefix("Name:")).map(str::trim).unwrap_or("");
        if !name.starts_with("piku") {
            continue;
        }
        let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok());
        if let Some(kb) = hwm {
            let mut peaks = peaks.lock().unwrap();
            let e = peaks.entry(name.to_string()).or_insert(0);
            *e = (*e).max(kb);
        }
    }
}
