//! Add-ons with the real servers: a PostgreSQL cluster of the case's own
//! (initdb into the work dir, listening on a unix socket there and on
//! 127.0.0.1 at a free port, stopped by PID), Redis instances started by the
//! emperor, and a Python app (pg8000, redis from PyPI) behind nginx.

use crate::client::{App, COMMAND_TIMEOUT, Out, curl, expect_text, indent, run, serves, ssh, wait_for};
use crate::server::{Server, USER};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const APP_PY: &str = r#"import os, urllib.parse, http.server

def db():
    import pg8000.native
    u = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    c = pg8000.native.Connection(user=urllib.parse.unquote(u.username), password=urllib.parse.unquote(u.password),
                                 host=u.hostname, port=u.port, database=u.path[1:])
    c.run("CREATE TABLE IF NOT EXISTS notes (v text)")
    return c

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        p = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(p.query)
        try:
            if p.path == "/write":
                c = db(); c.run("INSERT INTO notes VALUES (:v)", v=q["v"][0]); c.close(); body = "written"
            elif p.path == "/read":
                c = db(); body = "rows=" + ",".join(r[0] for r in c.run("SELECT v FROM notes ORDER BY v")); c.close()
            elif p.path == "/count":
                import redis
                body = "count=%d" % redis.Redis.from_url(os.environ["REDIS_URL"]).incr("hits")
            else:
                body = "version=" + os.environ.get("VERSION", "?")
            code = 200
        except Exception as e:
            body, code = "error: %r" % (e,), 500
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A PostgreSQL cluster of the case's own, stopped (by PID) when dropped,
/// with the sudo rule that lets the piku user run piku-pgadmin as postgres.
struct Cluster {
    data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    sudoers: PathBuf,
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect();
    dirs.sort();
    dirs.pop()
}

impl Cluster {
    fn start(s: &Server) -> Result<Cluster, String> {
        let bin = pg_bin().ok_or_else(|| format!("{}PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)", crate::SKIPPED))?;
        let dir = s.work.join("pg");
        let data = dir.join("data");
        let socket_dir = dir.join("run");
        std::fs::create_dir_all(&socket_dir).map_err(|e| format!("create {}: {e}", socket_dir.display()))?;
        for d in [&dir, &socket_dir] {
            run(Command::new("chown").args(["postgres:postgres"]).arg(d), None, COMMAND_TIMEOUT).ok("chown the cluster's dir to postgres")?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let as_pg = |prog: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog)).current_dir("/");
            c
        };
        run(as_pg("initdb").args(["-N", "-A", "scram-sha-256", "--auth-local=peer", "-U", "postgres", "-D"]).arg(&data), None, COMMAND_TIMEOUT)
            .ok("initdb")?;
        let hba = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n";
        let hba_file = data.join("pg_hba.conf");
        std::fs::write(&hba_file, hba).map_err(|e| format!("write pg_hba.conf: {e}"))?;
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/piku-e2e-{}-pg", *USER));
        let cluster = Cluster { data: data.clone(), socket_dir: socket_dir.clone(), port, sudoers: sudoers.clone() };
        let opts = format!("-k {} -p {port} -c listen_addresses=127.0.0.1", socket_dir.display());
        run(as_pg("pg_ctl").arg("-D").arg(&data).arg("-l").arg(dir.join("log")).args(["-w", "-t", "60", "-o", &opts, "start"]), None, Duration::from_secs(90))
            .ok("pg_ctl start")?;
        let helper = s.work.join("prefix/bin/piku-pgadmin");
        let staged = s.work.join("sudoers-pg");
        std::fs::write(&staged, format!("{} ALL=(postgres) NOPASSWD: {} *\n", *USER, helper.display())).map_err(|e| e.to_string())?;
        run(Command::new("visudo").arg("-cqf").arg(&staged), None, COMMAND_TIMEOUT).ok("visudo")?;
        std::fs::copy(&staged, &sudoers).map_err(|e| format!("write {}: {e}", sudoers.display()))?;
        std::fs::set_permissions(&sudoers, std::os::unix::fs::PermissionsExt::from_mode(0o440)).map_err(|e| e.to_string())?;
        // The server's settings, as install.sh --with postgres would leave them for this cluster.
        let settings = s.piku_root().join("settings");
        let mut text = std::fs::read_to_string(&settings).map_err(|e| e.to_string())?;
        text.push_str(&format!("ADDONS_PG_PORT={port}\nADDONS_PG_SOCKET_DIR={}\n", socket_dir.display()));
        std::fs::write(&settings, text).map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    /// psql as the superuser on the socket.
    fn superuser_sql(&self, sql: &str) -> Out {
        let bin = pg_bin().unwrap_or_default();
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("psql"))
                .current_dir("/")
                .args(["-X", "-At", "-d", "postgres", "-h"])
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-c", sql]),
            None,
            COMMAND_TIMEOUT,
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            unsafe extern "C" {
                fn kill(pid: i32, sig: i32) -> i32;
            }
            // SAFETY: the postmaster this case started; SIGINT is its fast shutdown.
            unsafe { kill(pid, 2) };
            let _ = wait_for(Duration::from_secs(30), || if Path::new(&format!("/proc/{pid}")).exists() { Err("running".to_string()) } else { Ok(()) });
        }
    }
}

/// psql as a client with a password (never in argv: PGPASSWORD).
fn psql_as(c: &Cluster, user: &str, password: &str, db: &str, sql: &str) -> Out {
    let bin = pg_bin().unwrap_or_default();
    run(
        Command::new(bin.join("psql")).env("PGPASSWORD", password).args(["-X", "-At", "-h", "127.0.0.1", "-p", &c.port.to_string(), "-U", user, "-d", db, "-c", sql]),
        None,
        COMMAND_TIMEOUT,
    )
}

fn facts(s: &Server, app: &str, addon: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let file = s.piku_root().join("addons").join(app).join(addon);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
    Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn get(s: &Server, host: &str, path: &str, want: &str) -> Result<(), String> {
    match curl(s, host, path) {
        (200, body) if body.trim() == want => Ok(()),
        (code, body) => Err(format!("http://{host}{path} answered {code}, expected {want:?}:\n{}", indent(&body))),
    }
}

/// The newest backup of `addon` whose name has `reason`, from `addons:backups`.
fn newest_backup(s: &Server, app: &str, addon: &str, reason: &str) -> Result<String, String> {
    let out = ssh(s, &format!("addons:backups {app}"), None).ok("addons:backups")?;
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| n.starts_with(&format!("{addon}_")) && n.contains(&format!("_{reason}")))
        .map(str::to_string)
        .ok_or_else(|| format!("no {addon} backup with reason {reason}:\n{}", indent(&out.stdout)))
}

fn python_db_app<'s>(s: &'s Server, name: &str, host: &str, version: &str) -> App<'s> {
    let app = App::new(s, name);
    app.write("requirements.txt", "pg8000\nredis\n")
        .write("app.py", APP_PY)
        .write("Procfile", "web: python app.py\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\nVERSION={version}\n"));
    app
}

pub fn postgres_and_redis(s: &Server) -> Result<(), String> {
    if Command::new("sh").args(["-c", "command -v redis-server && command -v redis-cli"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        return Err(format!("{}redis-server is not installed", crate::SKIPPED));
    }
    let cluster = Cluster::start(s)?;
    let (ha, hb) = ("addons-a.example.test", "addons-b.example.test");
    let a = python_db_app(s, "addons-a", ha, "1");
    a.commit("one")?;
    let out = a.deploy("main")?;
    serves(s, ha, "/", "version=1").map_err(|e| format!("{e}\n{}", indent(&out.all())))?;
    let b = python_db_app(s, "addons-b", hb, "1");
    b.commit("one")?;
    b.deploy("main")?;

    // Each app gets a database; the app redeploys with DATABASE_URL.
    let out = ssh(s, "addons:create addons-a postgres", None).ok("addons:create addons-a postgres")?;
    expect_text(&out.all(), "DATABASE_URL", "addons:create")?;
    if out.all().contains(&facts(s, "addons-a", "postgres")?["PASSWORD"]) {
        return Err(format!("addons:create printed the password:\n{}", indent(&out.all())));
    }
    ssh(s, "addons:create addons-b postgres", None).ok("addons:create addons-b postgres")?;
    ssh(s, "addons:create addons-a redis", None).ok("addons:create addons-a redis")?;

    // No secret in any process's argv (redis-server, the vassals, the apps).
    let secrets = [facts(s, "addons-a", "postgres")?["PASSWORD"].clone(), facts(s, "addons-b", "postgres")?["PASSWORD"].clone(), facts(s, "addons-a", "redis")?["PASSWORD"].clone()];
    for e in std::fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
        let argv = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
        if secrets.iter().any(|p| argv.contains(p.as_str())) {
            return Err(format!("a password is in the argv of process {}: {argv:?}", e.file_name().to_string_lossy()));
        }
    }

    // Bad input: clear errors, nothing changed.
    ssh(s, "addons:create addons-a postgres", None).fails_with("a second postgres", "already has a postgres")?;
    ssh(s, "addons:create addons-a mysql", None).fails_with("an unknown add-on", "unknown add-on")?;
    ssh(s, "addons:restore addons-a postgres postgres_20200101-000000_none_manual.pgdump", None).fails_with("an unknown backup", "no such backup")?;
    ssh(s, "addons:restore addons-a postgres ../../ENV", None).fails_with("a path as a backup", "not a backup name")?;

    // The list says what each app has; Redis runs.
    let list = ssh(s, "addons addons-a --json", None).ok("addons --json")?.stdout;
    if !list.contains("\"addon\":\"postgres\"") || !list.contains("\"state\":\"running\"") {
        return Err(format!("addons addons-a --json:\n{}", indent(&list)));
    }
    // addons:shell is psql as the app (here fed on stdin, without a terminal).
    let out = ssh(s, "addons:shell addons-a postgres", Some("SELECT current_user || '/' || current_database();\n")).ok("addons:shell")?;
    expect_text(&out.stdout, "piku_addons-a/piku_addons-a", "addons:shell")?;
    let out = ssh(s, "addons:shell addons-a redis", Some("PING\n")).ok("addons:shell redis")?;
    expect_text(&out.stdout, "PONG", "addons:shell redis")?;

    // A row written through DATABASE_URL comes back through nginx; B has its own.
    get(s, ha, "/write?v=first", "written")?;
    get(s, ha, "/read", "rows=first")?;
    get(s, hb, "/write?v=bee", "written")?;
    get(s, hb, "/read", "rows=bee")?;
    get(s, ha, "/read", "rows=first")?;

    // A's credentials open A's database, not B's.
    let fa = facts(s, "addons-a", "postgres")?;
    psql_as(&cluster, &fa["ROLE"], &fa["PASSWORD"], &fa["DATABASE"], "SELECT count(*) FROM notes").ok("psql as A into A")?;
    psql_as(&cluster, &fa["ROLE"], &fa["PASSWORD"], "piku_addons-b", "SELECT 1").fails_with("A's role into B's database", "permission denied")?;

    // The Redis counter survives a redeploy.
    get(s, ha, "/count", "count=1")?;
    get(s, ha, "/count", "count=2")?;
    a.write("ENV", &format!("NGINX_SERVER_NAME={ha}\nVERSION=2\n"));
    a.commit("two")?;
    let out = a.deploy("main")?;
    expect_text(&out.all(), "predeploy", "the push of an app with add-ons (a backup first)")?;
    serves(s, ha, "/", "version=2")?;
    get(s, ha, "/count", "count=3")?;
    let r2 = live_release(s, "addons-a")?;

    // backup -> change -> restore returns the old row (and Redis its old counter).
    ssh(s, "addons:backup addons-a", None).ok("addons:backup addons-a")?;
    let pg_backup = newest_backup(s, "addons-a", "postgres", "manual")?;
    let redis_backup = newest_backup(s, "addons-a", "redis", "manual")?;
    let file = s.piku_root().join("data/addons-a/backups").join(&pg_backup);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).map_err(|e| e.to_string())?.permissions()) & 0o777;
    if mode != 0o600 {
        return Err(format!("{} is {mode:o}, expected 600", file.display()));
    }
    get(s, ha, "/write?v=second", "written")?;
    get(s, ha, "/read", "rows=first,second")?;
    get(s, ha, "/count", "count=4")?;
    ssh(s, &format!("addons:restore addons-a postgres {pg_backup}"), None).ok("addons:restore postgres")?;
    get(s, ha, "/read", "rows=first")?;
    ssh(s, &format!("addons:restore addons-a redis {redis_backup}"), None).ok("addons:restore redis")?;
    wait_for(Duration::from_secs(30), || get(s, ha, "/count", "count=4"))?;
    newest_backup(s, "addons-a", "postgres", "prerestore")?;

    // rollback --with-data: the code and the data of release r2.
    get(s, ha, "/write?v=r2", "written")?;
    a.write("ENV", &format!("NGINX_SERVER_NAME={ha}\nVERSION=3\n"));
    a.commit("three")?;
    a.deploy("main")?;
    serves(s, ha, "/", "version=3")?;
    get(s, ha, "/write?v=three", "written")?;
    get(s, ha, "/read", "rows=first,r2,three")?;
    ssh(s, &format!("rollback addons-a {r2} --with-data"), None).ok("rollback --with-data")?;
    serves(s, ha, "/", "version=2")?;
    get(s, ha, "/read", "rows=first,r2")?;
    let kept = std::fs::read_dir(s.piku_root().join("data/addons-a/backups")).map_err(|e| e.to_string())?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("postgres_")).count();
    if kept > 7 {
        return Err(format!("{kept} postgres backups kept, ADDONS_KEEP_BACKUPS is 7"));
    }

    // The nightly backup (the systemd timer's or cron's command), as the piku user.
    s.run_as_user(&["piku-addons", "nightly"])?;
    newest_backup(s, "addons-a", "postgres", "nightly")?;
    newest_backup(s, "addons-b", "postgres", "nightly")?;

    // destroy keeps a final backup, and drops the database.
    ssh(s, "destroy addons-b", None).ok("destroy addons-b")?;
    let finals: Vec<String> = std::fs::read_dir(s.piku_root().join("data/addons-b/backups"))
        .map_err(|e| format!("no backups of addons-b after destroy: {e}"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("postgres_") && n.contains("_final."))
        .collect();
    if finals.is_empty() {
        return Err("destroy addons-b left no final backup".into());
    }
    let dbs = cluster.superuser_sql("SELECT datname FROM pg_database ORDER BY 1").ok("list databases")?.stdout;
    if dbs.contains("piku_addons-b") || !dbs.contains("piku_addons-a") {
        return Err(format!("after destroy addons-b the databases are:\n{}", indent(&dbs)));
    }

    // addons:destroy: the app loses the variables; the data goes after a final backup.
    ssh(s, "addons:destroy addons-a redis", None).ok("addons:destroy addons-a redis")?;
    newest_backup(s, "addons-a", "redis", "final")?;
    let live = ssh(s, "config:live addons-a", None).ok("config:live")?.stdout;
    if live.contains("REDIS_URL") || !live.contains("DATABASE_URL") {
        return Err(format!("after addons:destroy redis the live config is:\n{}", indent(&live)));
    }
    // Last, as it needs a tmpfs (a machine that cannot mount one reports the
    // case skipped after everything above passed): a full disk during a
    // backup gives a clear error, loses nothing, leaves nothing half-written.
    full_disk_backup(s, &cluster, &fa)?;
    drop(cluster);
    Ok(())
}

fn live_release(s: &Server, app: &str) -> Result<String, String> {
    let link = std::fs::read_link(s.piku_root().join("apps").join(app)).map_err(|e| e.to_string())?;
    Ok(link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

/// A 64 KB tmpfs as the backups directory, holding one earlier backup: the
/// next backup (bigger than that) fails saying so, the earlier one is intact,
/// no temporary file is left.
fn full_disk_backup(s: &Server, c: &Cluster, fa: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    psql_as(c, &fa["ROLE"], &fa["PASSWORD"], &fa["DATABASE"], "CREATE TABLE filler AS SELECT md5(random()::text) || md5(random()::text) AS v FROM generate_series(1, 20000)")
        .ok("fill A's database")?;
    let dir = s.piku_root().join("data/addons-a/backups");
    let aside = s.work.join("backups-aside");
    std::fs::rename(&dir, &aside).map_err(|e| e.to_string())?;
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let (uid, gid) = crate::server::passwd_ids().ok_or("no user")?;
    let mounted = run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size=64k,mode=0700,uid={uid},gid={gid}"), "piku-e2e-backups"]).arg(&dir), None, COMMAND_TIMEOUT);
    let result = (|| {
        if mounted.code != 0 {
            return Err(format!("{}everything else passed, but a tmpfs cannot be mounted here for the full disk: {}", crate::SKIPPED, mounted.stderr.trim()));
        }
        let small = "redis_20200101-000000_none_manual.rdb";
        std::fs::write(dir.join(small), b"earlier backup").map_err(|e| e.to_string())?;
        crate::server::chown_to_user(&dir.join(small))?;
        let out = ssh(s, "addons:backup addons-a postgres", None);
        out.fails_with("a backup onto a full disk", "nothing was removed")?;
        let left: Vec<String> = std::fs::read_dir(&dir).map_err(|e| e.to_string())?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        if left != [small] || std::fs::read(dir.join(small)).ok().as_deref() != Some(&b"earlier backup"[..]) {
            return Err(format!("after the failed backup the directory holds {left:?}\n{}", indent(&out.all())));
        }
        Ok(())
    })();
    let _ = run(Command::new("umount").arg(&dir), None, COMMAND_TIMEOUT);
    let _ = std::fs::remove_dir(&dir);
    std::fs::rename(&aside, &dir).map_err(|e| e.to_string())?;
    psql_as(c, &fa["ROLE"], &fa["PASSWORD"], &fa["DATABASE"], "DROP TABLE filler").ok("drop the filler")?;
    result
}

/// PSS (kB) of `pid` and its descendants, from /proc (shared memory counted once).
fn pss_tree_kb(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        total += rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0);
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        todo.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
    }
    total
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// tests/bench: addons:create postgres (with and without the app's
/// redeploy), a backup of a ~100 MB database, and the memory the add-ons
/// hold on an idle server. Rows for the bench's table.
pub fn bench(s: &Server) -> Result<Vec<(String, String)>, String> {
    let mut table = Vec::new();
    let cluster = Cluster::start(s)?;
    let host = "bench-addons.example.test";
    let app = App::new(s, "bench-addons");
    app.write("Procfile", "static: public\n").write("ENV", &format!("NGINX_SERVER_NAME={host}\n")).write("public/index.html", "db");
    app.commit("one")?;
    app.deploy("main")?;
    let pg_pid = std::fs::read_to_string(cluster.data.join("postmaster.pid")).ok().and_then(|t| t.lines().next()?.trim().parse::<u32>().ok()).ok_or("no postmaster pid")?;
    let idle_pg = pss_tree_kb(pg_pid);

    let (mut alone, mut with_deploy) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        ssh(s, "addons:create bench-addons postgres --no-deploy", None).ok("addons:create --no-deploy")?;
        alone.push(secs(t.elapsed()));
        ssh(s, "addons:destroy bench-addons postgres --no-backup --no-deploy", None).ok("addons:destroy")?;
        let t = std::time::Instant::now();
        ssh(s, "addons:create bench-addons postgres", None).ok("addons:create")?;
        with_deploy.push(secs(t.elapsed()));
        ssh(s, "addons:destroy bench-addons postgres --no-backup --no-deploy", None).ok("addons:destroy")?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        format!("{:.2} s (min {:.2}, max {:.2}, n={})", v[v.len() / 2], v[0], v[v.len() - 1], v.len())
    };
    table.push(("addons:create postgres (role + database, over ssh, no redeploy)".to_string(), median(&mut alone)));
    table.push(("addons:create postgres, with the app's redeploy (static app)".to_string(), median(&mut with_deploy)));

    ssh(s, "addons:create bench-addons postgres --no-deploy", None).ok("addons:create")?;
    let f = facts(s, "bench-addons", "postgres")?;
    psql_as(&cluster, &f["ROLE"], &f["PASSWORD"], &f["DATABASE"], "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i + 1)::text) AS v FROM generate_series(1, 1000000) i")
        .ok("fill 100 MB")?;
    let size = psql_as(&cluster, &f["ROLE"], &f["PASSWORD"], &f["DATABASE"], "SELECT pg_database_size(current_database())").ok("size")?.stdout;
    let mb = size.trim().parse::<f64>().unwrap_or(0.0) / 1_048_576.0;
    let mut backups = Vec::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        ssh(s, "addons:backup bench-addons postgres", None).ok("addons:backup")?;
        backups.push(secs(t.elapsed()));
    }
    let newest = newest_backup(s, "bench-addons", "postgres", "manual")?;
    let dump = std::fs::metadata(s.piku_root().join("data/bench-addons/backups").join(&newest)).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    table.push((format!("addons:backup of a {mb:.0} MB database (pg_dump -Fc, dump {dump:.1} MB)"), median(&mut backups)));

    ssh(s, "addons:create bench-addons redis --no-deploy", None).ok("addons:create redis")?;
    let redis_pid = std::fs::read_to_string(s.piku_root().join("data/bench-addons/redis/redis.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok()).ok_or("no redis pid")?;
    let ppid = std::fs::read_to_string(format!("/proc/{redis_pid}/stat")).ok().and_then(|st| st.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()).unwrap_or(redis_pid);
    // The vassal's uWSGI master (redis-server's parent) and redis-server.
    let redis_kb = pss_tree_kb(ppid);
    let busy_pg = pss_tree_kb(pg_pid);
    // One open connection of an app (a backend process): the PSS it adds.
    let bin = pg_bin().unwrap_or_default();
    let mut held = Command::new(bin.join("psql"))
        .env("PGPASSWORD", &f["PASSWORD"])
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &cluster.port.to_string(), "-U", &f["ROLE"], "-d", &f["DATABASE"], "-c", "SELECT count(*) FROM big", "-c", "SELECT pg_sleep(20)"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let before = pss_tree_kb(pg_pid);
    let sleeping = wait_for(Duration::from_secs(15), || {
        let out = cluster.superuser_sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'");
        if out.stdout.trim() == "1" { Ok(()) } else { Err("not yet".to_string()) }
    });
    let with_conn = pss_tree_kb(pg_pid);
    let _ = held.kill();
    let _ = held.wait();
    sleeping?;
    table.push(("an app's open PostgreSQL connection (after a scan of its 100 MB table), PSS it adds".to_string(), format!("{:.1} MB", with_conn.saturating_sub(before) as f64 / 1024.0)));
    table.push(("idle PostgreSQL cluster (Debian defaults), PSS before any app database".to_string(), format!("{:.1} MB", idle_pg as f64 / 1024.0)));
    table.push(("PostgreSQL cluster PSS after the 100 MB database and its backups".to_string(), format!("{:.1} MB", busy_pg as f64 / 1024.0)));
    table.push(("an app's idle Redis (uWSGI vassal master + redis-server), PSS".to_string(), format!("{:.1} MB", redis_kb as f64 / 1024.0)));
    drop(cluster);
    Ok(table)
}
