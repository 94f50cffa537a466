//! piku-nginx-install: root's step between the piku user's nginx files and
//! root's nginx. Run as root (the piku user through one sudo rule, systemd's
//! piku-nginx.service), it
//!
//!   1. reads every `<app>.conf` piku-nginx wrote in ~piku/.piku/nginx/, and
//!      the app's certificate and key (regular files of the piku user, bounded);
//!   2. checks every directive against the allowlist (lib site_rules): nothing
//!      that makes root's nginx open a log, a temporary or cache directory,
//!      an include or a module the piku user chose. A conf that fails keeps
//!      its previously installed version, and the run fails naming it;
//!   3. installs them into a directory only root writes (TARGET), the one
//!      root's nginx includes, with certificates copied beside them and the
//!      cache under a root-owned directory (CACHE/<app>);
//!   4. tests the whole configuration (`nginx -t`), reloads nginx and waits
//!      until its master runs a new generation of workers, or reports the
//!      [emerg] nginx logged; either failure puts the previous files back.
//!
//! Its settings are a root-owned file, `/etc/piku/nginx-install.conf`
//! (`--config FILE` for another, e.g. a test server's; the sudo rule fixes
//! which): USER, PIKU_ROOT, TARGET, CACHE, NGINX, NGINX_CONF, PID_FILE,
//! ERROR_LOG, PORTS, RELOAD_WAIT, and RAW_INCLUDE (yes: the server's owner
//! lets the piku user write any nginx configuration; nothing is checked).

use argh::FromArgs;
use fs_err as fs;
use piku::envfile;
use piku::error::{Error, Result};
use piku::site_rules::{self, Policy, Rewrite};
use piku::{AppName, atomic, output};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Install the piku user's checked nginx configuration for root's nginx, and reload it.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "sudo -n {command_name}\n{command_name} --config /etc/piku/nginx-install.conf",
    note = "Run as root (the piku user: through the sudo rule install.sh writes). Every app block in the piku user's nginx/ is checked against an allowlist; a refused one keeps its previous installed version and is named.",
    error_code(1, "a block was refused, nginx -t failed, or nginx did not load the new configuration (the previous one stays)"),
    error_code(2, "usage error: nothing was done")
)]
struct Args {
    /// the installer's settings (default /etc/piku/nginx-install.conf)
    #[argh(option, default = "PathBuf::from(\"/etc/piku/nginx-install.conf\")")]
    config: PathBuf,
}

/// The largest file read from the piku user's directory.
const MAX_BYTES: u64 = 1024 * 1024;
const O_NONBLOCK: i32 = 0o4000;

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

struct Config {
    uid: u32,
    piku_root: PathBuf,
    target: PathBuf,
    cache: PathBuf,
    nginx: String,
    nginx_conf: String,
    pid_file: PathBuf,
    error_log: PathBuf,
    ports: Vec<u16>,
    wait: Duration,
    raw: bool,
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run_main("piku-nginx-install", |_| {
        let config = load(&args.config)?;
        install(&config)
    })
}

/// The settings file: root's own, writable by nobody else.
fn load(path: &Path) -> Result<Config> {
    let meta = fs::metadata(path)?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::new(format!("{} must belong to root and be writable by root alone; nothing was installed", path.display())));
    }
    let env = envfile::read_literal(path)?.unwrap_or_default();
    let get = |k: &str, d: &str| env.get(k).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| d.to_string());
    let user = get("USER", "piku");
    let uid = uid_of(&user).ok_or_else(|| Error::new(format!("USER {user:?} in {} is not a user of this machine", path.display())))?;
    // Through sudo: only the piku user (or root) may ask.
    if let Some(caller) = std::env::var("SUDO_UID").ok().and_then(|u| u.parse::<u32>().ok())
        && caller != 0
        && caller != uid
    {
        return Err(Error::new(format!("only {user} or root may install piku's nginx configuration")));
    }
    let ports = get("PORTS", "80 443");
    let ports = ports.split_whitespace().map(|p| p.parse::<u16>()).collect::<std::result::Result<Vec<_>, _>>();
    let ports = ports.map_err(|_| Error::new(format!("PORTS in {} must be port numbers", path.display())))?;
    let wait = get("RELOAD_WAIT", "10");
    let wait = wait.parse::<u64>().map_err(|_| Error::new(format!("RELOAD_WAIT in {} must be a number of seconds", path.display())))?;
    Ok(Config {
        uid,
        piku_root: PathBuf::from(get("PIKU_ROOT", &format!("/home/{user}/.piku"))),
        target: PathBuf::from(get("TARGET", "/var/lib/piku/nginx")),
        cache: PathBuf::from(get("CACHE", "/var/cache/piku/nginx")),
        nginx: get("NGINX", "/usr/sbin/nginx"),
        nginx_conf: get("NGINX_CONF", "/etc/nginx/nginx.conf"),
        pid_file: PathBuf::from(get("PID_FILE", "/run/nginx.pid")),
        error_log: PathBuf::from(get("ERROR_LOG", "/var/log/nginx/error.log")),
        ports,
        wait: Duration::from_secs(wait),
        raw: envfile::is_true(&get("RAW_INCLUDE", "no")),
    })
}

fn uid_of(user: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == user).then(|| f[2].parse().ok()).flatten()
    })
}

/// A regular file of the piku user, at most MAX_BYTES; never a link, a
/// device or a fifo, never someone else's file.
fn read_users_file(config: &Config, path: &Path) -> Result<Vec<u8>> {
    let refuse = |why: &str| Error::new(format!("{} {why}; it was not installed", path.display()));
    let unreadable = |e: std::io::Error| Error::new(format!("could not read {}: {e}; it was not installed", path.display()));
    let file = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path).map_err(unreadable)?;
    let linked = std::fs::symlink_metadata(path).map(|m| !m.is_file()).unwrap_or(true);
    let meta = file.metadata().map_err(unreadable)?;
    if linked || !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    if meta.uid() != config.uid {
        return Err(refuse("does not belong to the piku user"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse("is too large"));
    }
    Ok(bytes)
}

/// The files of one app as they are to be installed (name -> contents).
fn prepare(config: &Config, app: &AppName) -> Result<BTreeMap<String, Vec<u8>>> {
    let source = config.piku_root.join("nginx");
    let text = String::from_utf8(read_users_file(config, &source.join(format!("{app}.conf")))?)
        .map_err(|_| Error::new(format!("the nginx configuration of '{app}' is not UTF-8; it was not installed")))?;
    let mut files = BTreeMap::new();
    let mut caches = Vec::new();
    let policy = Policy { piku_root: &config.piku_root, ports: &config.ports, raw: config.raw };
    let conf = site_rules::check(app.as_str(), &text, &policy, &mut |r| match r {
        Rewrite::Certificate { ext } => {
            let name = format!("{app}.{ext}");
            files.insert(name.clone(), read_users_file(config, &source.join(&name))?);
            Ok(config.target.join(name).display().to_string())
        }
        Rewrite::Cache { within } => {
            let dir = config.cache.join(app.as_str()).join(within);
            caches.push(dir.clone());
            Ok(dir.display().to_string())
        }
    })?;
    for dir in caches {
        atomic::create_dir_all(&dir)?;
    }
    files.insert(format!("{app}.conf"), conf.into_bytes());
    Ok(files)
}

fn install(config: &Config) -> Result<()> {
    fs::create_dir_all(&config.target)?;
    fs::set_permissions(&config.target, std::fs::Permissions::from_mode(0o755))?;
    // One installer at a time (sudo from piku-nginx, systemd's path unit).
    let lock_path = config.target.join(".lock");
    let lock = fs::File::create(&lock_path)?;
    lock.file().lock().map_err(|e| Error::new(format!("could not lock {}: {e}", lock_path.display())))?;
    let installed = read_dir_files(&config.target);

    // What the piku user wrote, checked app by app.
    let mut apps: Vec<AppName> = std::fs::read_dir(config.piku_root.join("nginx"))
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".conf").and_then(|n| AppName::parse(n).ok())).collect())
        .unwrap_or_default();
    apps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut prepared: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut refused = Vec::new();
    for app in &apps {
        match prepare(config, app) {
            Ok(files) => drop(prepared.insert(app.to_string(), files)),
            Err(e) => {
                output::error(&e.message);
                refused.push(app.to_string());
            }
        }
    }
    // One app per name (two deploys may claim one at once): the app that
    // served it keeps it, else the first by name.
    for (name, loser, winner) in name_conflicts(&prepared, &installed) {
        output::error(format!("the nginx configuration of '{loser}' has server_name {name}, which '{winner}' serves; it was not installed"));
        prepared.remove(&loser);
        refused.push(loser);
    }
    let mut wanted: BTreeMap<String, Vec<u8>> = prepared.into_values().flatten().collect();
    for app in &refused {
        // The previous version of its files stays.
        for ext in ["conf", "crt", "key"] {
            let name = format!("{app}.{ext}");
            if let Some(old) = installed.get(&name) {
                wanted.insert(name, old.clone());
            }
        }
    }

    let changed = wanted != installed;
    if changed {
        write_state(config, &installed, &wanted)?;
        if let Err(e) = test_config(config) {
            write_state(config, &wanted, &installed)?;
            return Err(e);
        }
    }
    let Some(master) = running_master(config) else {
        // What it reads when it starts is installed (and passed nginx -t).
        return Err(Error::new(format!(
            "nginx is not running (no master in {}); the configuration is installed and nginx reads it when it starts",
            config.pid_file.display()
        )));
    };
    if let Err(e) = reload(config, master) {
        if changed {
            write_state(config, &wanted, &installed)?;
        }
        return Err(e);
    }
    if refused.is_empty() {
        output::step(format!("nginx runs the configuration of {} app(s)", apps.len()));
        Ok(())
    } else {
        Err(Error::new(format!("the nginx configuration of {} was refused (see above); the previous one stays in use", refused.join(", "))))
    }
}

/// The names a block serves (its `server_name` lines), lower-cased.
fn server_names(conf: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(conf);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("server_name "))
        .flat_map(|l| l.trim_end_matches(';').split_whitespace().map(str::to_ascii_lowercase).collect::<Vec<_>>())
        .collect()
}

/// (name, app refused, app that keeps it) for every name two apps' blocks claim.
fn name_conflicts(prepared: &BTreeMap<String, BTreeMap<String, Vec<u8>>>, installed: &BTreeMap<String, Vec<u8>>) -> Vec<(String, String, String)> {
    let mut claims: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for (app, files) in prepared {
        for name in files.get(&format!("{app}.conf")).map(|c| server_names(c)).unwrap_or_default() {
            let apps = claims.entry(name).or_default();
            if !apps.contains(&app) {
                apps.push(app);
            }
        }
    }
    let mut out: Vec<(String, String, String)> = Vec::new();
    for (name, apps) in claims.into_iter().filter(|(_, apps)| apps.len() > 1) {
        let had = |app: &String| installed.get(&format!("{app}.conf")).is_some_and(|c| server_names(c).contains(&name));
        let winner = apps.iter().find(|a| had(a)).unwrap_or(&apps[0]).to_string();
        for loser in apps.into_iter().filter(|a| **a != winner) {
            if !out.iter().any(|(_, l, _)| l == loser) {
                out.push((name.clone(), loser.clone(), winner.clone()));
            }
        }
    }
    out
}

/// Every regular file in the target directory (name -> contents).
fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(e.path()) {
            files.insert(name, bytes);
        }
    }
    files
}

/// Make the target directory hold `new` (it held `old`).
fn write_state(config: &Config, old: &BTreeMap<String, Vec<u8>>, new: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    for (name, bytes) in new {
        if old.get(name) != Some(bytes) {
            let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
            atomic::write_file(&config.target.join(name), bytes, mode)?;
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        atomic::remove_file(&config.target.join(name))?;
    }
    Ok(())
}

fn test_config(config: &Config) -> Result<()> {
    let out = Command::new(&config.nginx)
        .args(["-t", "-q", "-c", &config.nginx_conf])
        .output()
        .map_err(|e| Error::new(format!("cannot run {}: {e}", config.nginx)))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::new(format!("nginx -t rejected the configuration; nothing changed:\n{}", String::from_utf8_lossy(&out.stderr).trim())))
}

/// nginx's master, from its pid file, if it runs.
fn running_master(config: &Config) -> Option<u32> {
    let pid = std::fs::read_to_string(&config.pid_file).ok()?.trim().parse::<u32>().ok()?;
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"nginx: master process")).then_some(pid)
}

/// Reload nginx, and wait until its master serves with a new generation of
/// workers; an [emerg] or [alert] nginx logs meanwhile is the reason it did not.
fn reload(config: &Config, master: u32) -> Result<()> {
    let before = piku::nginx_workers::serving().remove(&master).unwrap_or_default();
    let offset = std::fs::metadata(&config.error_log).map(|m| m.len()).unwrap_or(0);
    // SAFETY: kill(2) to the master nginx wrote in its pid file (checked above).
    if unsafe { kill(master as i32, 1) } != 0 {
        return Err(Error::new(format!("could not signal nginx's master ({master}): {}", std::io::Error::last_os_error())));
    }
    let started = Instant::now();
    loop {
        let errors = new_errors(&config.error_log, offset);
        if !errors.is_empty() {
            return Err(Error::new(format!("nginx refused to reload and keeps its previous configuration:\n{}", errors.join("\n"))));
        }
        let now = piku::nginx_workers::serving().remove(&master).unwrap_or_default();
        if !now.is_empty() && now.iter().all(|p| !before.contains(p)) {
            return Ok(());
        }
        if started.elapsed() >= config.wait {
            return Err(Error::new(format!(
                "nginx did not start workers with the new configuration within {} s; see {}",
                config.wait.as_secs(),
                config.error_log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The [emerg] and [alert] lines nginx wrote to its error log after `offset`.
fn new_errors(log: &Path, offset: u64) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(log) else { return Vec::new() };
    let mut text = String::new();
    use std::io::Seek;
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() || file.take(MAX_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines().filter(|l| l.contains("[emerg]") || l.contains("[alert]")).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(app: &str, names: &str) -> (String, BTreeMap<String, Vec<u8>>) {
        let files = [(format!("{app}.conf"), format!("server {{\n  server_name {names};\n}}\n").into_bytes())].into_iter().collect();
        (app.to_string(), files)
    }

    #[test]
    fn a_name_two_blocks_claim_stays_with_the_app_that_served_it() {
        let prepared: BTreeMap<_, _> = [conf("a", "a.test shop.test"), conf("b", "b.test SHOP.test"), conf("c", "c.test")].into_iter().collect();
        let none = BTreeMap::new();
        assert_eq!(name_conflicts(&prepared, &none), [("shop.test".to_string(), "b".to_string(), "a".to_string())]);
        let installed: BTreeMap<_, _> = [("b.conf".to_string(), b"server_name shop.test;\n".to_vec())].into_iter().collect();
        assert_eq!(name_conflicts(&prepared, &installed), [("shop.test".to_string(), "a".to_string(), "b".to_string())]);
        let apart: BTreeMap<_, _> = [conf("a", "a.test"), conf("b", "b.test")].into_iter().collect();
        assert!(name_conflicts(&apart, &none).is_empty());
    }
}
