//! Redis: an instance of the app's own (Debian's `redis-server`), as a vassal
//! of the uWSGI emperor (`uwsgi-enabled/<app>_redis.ini`, no workers, its
//! master keeping redis-server alive), on a unix socket in `data/<app>/redis/`,
//! with a password of its own and `maxmemory` from `REDIS_MAXMEMORY` (64mb).
//! Why an instance and not ACL users with key prefixes on one server: a key
//! prefix does not bound one app's memory, FLUSHALL, or its persistence, and
//! one app's restore must not roll back another's keys.

use crate::random_secret;
use piku::envfile::Env;
use piku::error::{Error, Result};
use piku::{AppName, Root, atomic, output, process, templates};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CONF_TEMPLATE: &str = include_str!("../../share/addons/redis.conf.j2");
const VASSAL_TEMPLATE: &str = include_str!("../../share/addons/redis.ini.j2");
/// How long the emperor may take to start (or restart) an instance.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize)]
struct ConfCtx {
    app: String,
    socket: String,
    dir: String,
    pidfile: String,
    password: String,
    maxmemory: String,
    policy: String,
}

#[derive(Serialize)]
struct VassalCtx {
    app: String,
    log_file: String,
    redis_server: String,
    conf: String,
}

fn data_dir(root: &Root, app: &AppName) -> PathBuf {
    root.data_dir(app).join("redis")
}

fn vassal_file(root: &Root, app: &AppName) -> PathBuf {
    root.dir("uwsgi-enabled").join(format!("{app}_redis.ini"))
}

fn conf_file(root: &Root, app: &AppName) -> PathBuf {
    root.addons_dir(app).join("redis.conf")
}

/// A path headed for redis.conf and a uWSGI daemon line: plain characters only.
fn plain_path(p: &Path) -> Result<String> {
    let s = p.display().to_string();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@')) {
        Ok(s)
    } else {
        Err(Error::new(format!("the path {s:?} has characters Redis's and uWSGI's config cannot hold; use a PIKU_ROOT of letters, digits and /._-")))
    }
}

/// `64mb`, `512kb`, `1gb`, `1000000`.
fn check_memory(v: &str) -> Result<String> {
    let v = v.trim().to_lowercase();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || !["", "kb", "mb", "gb"].contains(&unit) {
        return Err(Error::new(format!("REDIS_MAXMEMORY={v:?}: use bytes or kb/mb/gb, e.g. 64mb")));
    }
    Ok(v)
}

pub fn create(root: &Root, app: &AppName) -> Result<Env> {
    let server = process::which("redis-server").ok_or_else(|| {
        Error::new("Redis is not installed on this server (redis-server is missing); as root run: ./install.sh --with redis (or apt-get install redis-server)")
    })?;
    if process::which("redis-cli").is_none() {
        return Err(Error::new("redis-cli is missing; as root run: apt-get install redis-tools"));
    }
    let dir = data_dir(root, app);
    let socket = dir.join("redis.sock");
    if socket.as_os_str().len() > 100 {
        return Err(Error::new(format!("the socket path {} is too long for a unix socket (at most 100 bytes)", socket.display())));
    }
    let maxmemory = check_memory(&crate::setting(root, app, "REDIS_MAXMEMORY", "64mb")?)?;
    let policy = crate::setting(root, app, "REDIS_MAXMEMORY_POLICY", "noeviction")?;
    if !policy.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Err(Error::new(format!("REDIS_MAXMEMORY_POLICY={policy:?} is not a Redis policy (e.g. noeviction, allkeys-lru)")));
    }
    let mut facts = Env::new();
    facts.insert("SOCKET".into(), plain_path(&socket)?);
    facts.insert("PASSWORD".into(), random_secret()?);
    facts.insert("MAXMEMORY".into(), maxmemory);
    atomic::create_dir_all(&dir)?;
    fs_err::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(|e| Error::new(e.to_string()))?;
    let (conf, vassal) = render(root, app, &facts, &server, &policy)?;
    atomic::write_file(&conf_file(root, app), conf.as_bytes(), 0o600)?;
    atomic::write_file(&vassal_file(root, app), vassal.as_bytes(), 0o644)?;
    if let Err(e) = wait_running(&facts, None) {
        let _ = atomic::remove_file(&vassal_file(root, app));
        let _ = atomic::remove_file(&conf_file(root, app));
        let log = fs_err::read_to_string(dir.join("redis.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        return Err(Error::new(format!(
            "the Redis of '{app}' did not start ({}); is the uWSGI emperor running? Its log:\n{}",
            e.message,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    output::detail(format!("redis-server on {} (maxmemory {})", facts["SOCKET"], facts["MAXMEMORY"]));
    Ok(facts)
}

/// redis.conf and the vassal, from the add-on's facts.
fn render(root: &Root, app: &AppName, facts: &Env, server: &Path, policy: &str) -> Result<(String, String)> {
    let dir = data_dir(root, app);
    let conf = templates::render(
        root,
        "redis.conf.j2",
        CONF_TEMPLATE,
        &ConfCtx {
            app: app.to_string(),
            socket: facts["SOCKET"].clone(),
            dir: plain_path(&dir)?,
            pidfile: plain_path(&dir.join("redis.pid"))?,
            password: facts["PASSWORD"].clone(),
            maxmemory: facts["MAXMEMORY"].clone(),
            policy: policy.to_string(),
        },
    )?;
    let vassal = templates::render(
        root,
        "redis.ini.j2",
        VASSAL_TEMPLATE,
        &VassalCtx {
            app: app.to_string(),
            log_file: plain_path(&dir.join("redis.log"))?,
            redis_server: plain_path(server)?,
            conf: plain_path(&conf_file(root, app))?,
        },
    )?;
    Ok((conf, vassal))
}

pub fn app_env(f: &Env) -> Env {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut env = Env::new();
    env.insert("REDIS_URL".into(), format!("unix://:{}@{}", get("PASSWORD"), get("SOCKET")));
    env.insert("REDIS_SOCKET".into(), get("SOCKET"));
    env.insert("REDIS_PASSWORD".into(), get("PASSWORD"));
    env
}

pub fn describe(f: &Env) -> String {
    format!("unix:{} maxmemory {}", f.get("SOCKET").map_or("", |s| s), f.get("MAXMEMORY").map_or("", |s| s))
}

pub fn state(root: &Root, app: &AppName) -> String {
    match crate::read_facts(root, app, crate::Addon::Redis) {
        Ok(f) if cli(&f, &["PING"]).is_ok_and(|o| o.trim() == "PONG") => "running".into(),
        _ => "stopped".into(),
    }
}

pub fn destroy(root: &Root, app: &AppName, keep_data: bool) -> Result<()> {
    let pid = pid(root, app);
    atomic::remove_file(&vassal_file(root, app))?;
    // The emperor stops the vassal; redis-server saves and exits on SIGTERM.
    if let Some(pid) = pid {
        let deadline = Instant::now() + START_TIMEOUT;
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    atomic::remove_file(&conf_file(root, app))?;
    if keep_data {
        output::detail(format!("kept {}", data_dir(root, app).display()));
    } else {
        let dir = data_dir(root, app);
        if dir.exists() {
            fs_err::remove_dir_all(&dir).map_err(|e| Error::new(e.to_string()))?;
        }
    }
    Ok(())
}

/// A consistent copy of the dataset: BGSAVE, wait for it, copy dump.rdb.
pub fn dump(root: &Root, app: &AppName, facts: &Env, file: &Path) -> Result<()> {
    let saves = |i: &str| info_field(i, "rdb_saves").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let before = saves(&cli(facts, &["INFO", "persistence"])?);
    let said = cli(facts, &["BGSAVE"])?;
    if said.contains("in progress") {
        cli(facts, &["BGSAVE", "SCHEDULE"])?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let info = cli(facts, &["INFO", "persistence"])?;
        if saves(&info) > before && info_field(&info, "rdb_bgsave_in_progress").as_deref() == Some("0") {
            if info_field(&info, "rdb_last_bgsave_status").as_deref() != Some("ok") {
                return Err(Error::new(format!("Redis could not save its dataset (is the disk full?); see {}", data_dir(root, app).join("redis.log").display())));
            }
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::new("Redis's BGSAVE did not finish within 600 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rdb = data_dir(root, app).join("dump.rdb");
    // Opened first: a later save renames a new file over the name, never into ours.
    let mut from = fs_err::File::open(&rdb).map_err(|e| Error::new(e.to_string()))?;
    let mut to = fs_err::OpenOptions::new().write(true).create_new(true).open(file).map_err(|e| Error::new(e.to_string()))?;
    std::io::copy(&mut from, &mut to).map_err(|e| Error::new(format!("could not write {}: {e}", file.display())))?;
    to.sync_all().map_err(|e| Error::new(format!("could not write {}: {e}", file.display())))?;
    Ok(())
}

/// Put the backup in place of the dataset and restart the instance on it.
pub fn restore(root: &Root, app: &AppName, facts: &Env, file: &Path) -> Result<()> {
    // No save may replace the file between our rename and the restart.
    cli(facts, &["CONFIG", "SET", "save", ""])?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while info_field(&cli(facts, &["INFO", "persistence"])?, "rdb_bgsave_in_progress").as_deref() != Some("0") {
        if Instant::now() >= deadline {
            return Err(Error::new("a Redis save is still running after 600 s; try again later"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes = fs_err::read(file).map_err(|e| Error::new(e.to_string()))?;
    atomic::write_file(&data_dir(root, app).join("dump.rdb"), &bytes, 0o600)?;
    let old = info_field(&cli(facts, &["INFO", "server"])?, "process_id");
    // The instance's master starts redis-server again, which loads dump.rdb.
    let _ = cli(facts, &["SHUTDOWN", "NOSAVE"]);
    wait_running(facts, old.as_deref())
}

/// redis-cli on the app's instance, in place of this process (ssh -t for a terminal).
pub fn shell(root: &Root, app: &AppName) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let facts = crate::read_facts(root, app, crate::Addon::Redis)?;
    let err = Command::new("redis-cli").args(["--no-auth-warning", "-s", &facts["SOCKET"]]).env("REDISCLI_AUTH", &facts["PASSWORD"]).exec();
    Err(Error::new(format!("cannot run redis-cli: {err}")))
}

/// Until the instance answers PING (a new process when `old_pid` is given).
fn wait_running(facts: &Env, old_pid: Option<&str>) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let ready = cli(facts, &["INFO", "server"]).ok().is_some_and(|i| {
            let pid = info_field(&i, "process_id");
            pid.is_some() && (old_pid.is_none() || pid.as_deref() != old_pid) && cli(facts, &["PING"]).is_ok_and(|p| p.trim() == "PONG")
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!("no answer on {} after {} s", facts["SOCKET"], START_TIMEOUT.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid(root: &Root, app: &AppName) -> Option<u32> {
    fs_err::read_to_string(data_dir(root, app).join("redis.pid")).ok()?.trim().parse().ok()
}

/// `redis-cli` on the instance's socket; the password through REDISCLI_AUTH.
fn cli(facts: &Env, args: &[&str]) -> Result<String> {
    let out = process::run_captured(
        Command::new("redis-cli").args(["--no-auth-warning", "-s", &facts["SOCKET"]]).args(args).env("REDISCLI_AUTH", &facts["PASSWORD"]),
        &format!("redis-cli {}", args.first().copied().unwrap_or("")),
    )?;
    if out.starts_with("ERR") || out.starts_with("NOAUTH") || out.starts_with("WRONGPASS") || out.contains("Could not connect") {
        return Err(Error::new(format!("Redis answered: {}", out.trim())));
    }
    Ok(out)
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_info() {
        assert_eq!(check_memory("64MB").unwrap(), "64mb");
        assert!(check_memory("lots").is_err());
        assert!(check_memory("64mb; x").is_err());
        assert_eq!(info_field("# P\r\nrdb_saves:3\r\nrdb_bgsave_in_progress:0\r\n", "rdb_saves").as_deref(), Some("3"));
    }

    /// Compared with tests/expected/ (regenerate on purpose: PIKU_BLESS=1).
    #[test]
    fn rendered_redis_conf_and_vassal() {
        let root = Root::at("/home/piku/.piku");
        let app = AppName::parse("hello").unwrap();
        let mut facts = Env::new();
        facts.insert("SOCKET".into(), "/home/piku/.piku/data/hello/redis/redis.sock".into());
        facts.insert("PASSWORD".into(), "0123abcd".into());
        facts.insert("MAXMEMORY".into(), "64mb".into());
        let (conf, vassal) = render(&root, &app, &facts, Path::new("/usr/bin/redis-server"), "noeviction").unwrap();
        for (name, text) in [("addon-redis.conf", conf), ("addon-redis.ini", vassal)] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
            if std::env::var("PIKU_BLESS").is_ok_and(|v| v == "1") {
                std::fs::write(&path, &text).unwrap();
            }
            assert_eq!(text, std::fs::read_to_string(&path).unwrap_or_default(), "{name} differs from {}", path.display());
        }
    }

    #[test]
    fn odd_paths_are_refused() {
        assert!(plain_path(Path::new("/home/piku/.piku/data/a/redis.sock")).is_ok());
        assert!(plain_path(Path::new("/a b/x")).is_err());
        assert!(plain_path(Path::new("/a,stopsignal=9/x")).is_err());
    }
}
