//! The swap's facts: which generation of an app's web-facing workers is
//! live, which ports and sockets each generation owns, and how they are named.
//! Owner: piku-uwsgi (everyone else reads).
//!
//! Each deploy, restart, rollback or scale of an app behind nginx starts its
//! web-facing workers as a new *generation* `g<N>` (N counts up, never
//! reused): vassals `<app>_<kind>.<n>.g<N>.ini`, ports of their own, and a
//! socket `nginx/<app>_<kind>.<n>.g<N>.sock`. nginx always connects to the
//! same stable socket (`nginx/<app>.sock` for wsgi, `nginx/<app>_<kind>.<n>.sock`
//! for HTTP workers), a symlink switched to the live generation's; so a
//! deploy needs no nginx reload, and older generations drain and stop on
//! their own.
//!
//!   workers/<app>/live    the live generation's number
//!   workers/<app>/next    the next number to hand out
//!   workers/<app>/g<N>    `release <id>` then `<kind>.<n>:<port>` lines

use crate::app::AppName;
use crate::envfile::{self, Env};
use crate::error::{Error, Result};
use crate::paths::Root;
use crate::{atomic, scaling};
use fs_err as fs;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Does this release start each deploy's web-facing workers as a new
/// generation? Behind nginx, unless the user pinned PORT (or turned
/// PIKU_AUTO_RESTART off): piku-config then gives the release a PORT and its
/// workers restart in place.
pub fn per_release(env: &Env) -> bool {
    env.get("NGINX_SERVER_NAME").is_some_and(|n| !n.trim().is_empty()) && !env.contains_key("PORT")
}

pub fn dir(root: &Root, app: &AppName) -> PathBuf {
    root.dir("workers").join(app.as_str())
}

/// `g<N>`, the tag in vassal, socket and log names.
pub fn tag(generation: u32) -> String {
    format!("g{generation}")
}

/// The generation of a tag `g<N>`; None for anything else (the colours of
/// older versions, `blue` and `green`, count as older than any generation).
pub fn parse_tag(tag: &str) -> Option<u32> {
    tag.strip_prefix('g')?.parse().ok()
}

fn read_number(path: &std::path::Path) -> Result<Option<u32>> {
    match fs::read_to_string(path) {
        Ok(t) => t.trim().parse().map(Some).map_err(|_| Error::new(format!("{} should hold a number, not {:?}", path.display(), t.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The live generation, if the app has one.
pub fn live(root: &Root, app: &AppName) -> Result<Option<u32>> {
    read_number(&dir(root, app).join("live"))
}

pub fn set_live(root: &Root, app: &AppName, generation: u32) -> Result<()> {
    atomic::write_file(&dir(root, app).join("live"), format!("{generation}\n").as_bytes(), 0o644)
}

/// A new generation number, never handed out before for this app.
pub fn allocate(root: &Root, app: &AppName) -> Result<u32> {
    let next = read_number(&dir(root, app).join("next"))?.unwrap_or(1);
    let next = next.max(generations(root, app)?.last().map_or(1, |g| g + 1));
    atomic::write_file(&dir(root, app).join("next"), format!("{}\n", next + 1).as_bytes(), 0o644)?;
    Ok(next)
}

/// What one generation owns: the release it runs and the port of each HTTP worker.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Generation {
    pub release: String,
    pub ports: BTreeMap<String, u16>,
}

pub fn read(root: &Root, app: &AppName, generation: u32) -> Result<Option<Generation>> {
    let path = dir(root, app).join(tag(generation));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut out = Generation::default();
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("release ") {
            out.release = id.trim().to_string();
        } else if let Some((k, p)) = line.split_once(':').and_then(|(k, p)| Some((k, p.trim().parse::<u16>().ok()?))) {
            out.ports.insert(k.to_string(), p);
        }
    }
    Ok(Some(out))
}

pub fn write(root: &Root, app: &AppName, generation: u32, g: &Generation) -> Result<()> {
    let mut text = format!("release {}\n", g.release);
    for (k, p) in &g.ports {
        text.push_str(&format!("{k}:{p}\n"));
    }
    atomic::write_file(&dir(root, app).join(tag(generation)), text.as_bytes(), 0o644)
}

pub fn remove(root: &Root, app: &AppName, generation: u32) -> Result<()> {
    atomic::remove_file(&dir(root, app).join(tag(generation))).map(|_| ())
}

/// The generations that have a record, oldest first.
pub fn generations(root: &Root, app: &AppName) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = match fs::read_dir(dir(root, app)) {
        Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| parse_tag(&e.file_name().to_string_lossy())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e.into()),
    };
    out.sort();
    Ok(out)
}

/// The socket a worker of a generation listens on (wsgi: uWSGI's protocol;
/// other kinds: HTTP, relayed to the worker's port).
pub fn worker_socket(root: &Root, app: &AppName, kind: &str, n: u32, generation: u32) -> PathBuf {
    root.dir("nginx").join(format!("{app}_{kind}.{n}.{}.sock", tag(generation)))
}

/// The socket nginx connects to, a symlink to the live generation's
/// (`nginx/<app>.sock` for the first wsgi worker, as piku names it).
pub fn stable_socket(root: &Root, app: &AppName, kind: &str, n: u32) -> PathBuf {
    if kind == "wsgi" && n == 1 {
        root.dir("nginx").join(format!("{app}.sock"))
    } else {
        root.dir("nginx").join(format!("{app}_{kind}.{n}.sock"))
    }
}

/// Every port some app's workers hold or were given: LIVE_ENV's PORT,
/// PORTS, and each generation's ports.
fn claimed_ports(root: &Root) -> Vec<u16> {
    let mut claimed = Vec::new();
    let names = |d: &str| -> Vec<String> {
        fs::read_dir(root.dir(d)).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
    };
    for name in names("envs") {
        let dir = root.dir("envs").join(&name);
        if let Ok(Some(env)) = envfile::read_literal(&dir.join("LIVE_ENV")) {
            claimed.extend(env.get("PORT").and_then(|p| p.parse::<u16>().ok()));
        }
        if let Ok(ports) = scaling::read_counts(&dir.join("PORTS")) {
            claimed.extend(ports.values().filter_map(|p| u16::try_from(*p).ok()));
        }
    }
    for name in names("workers") {
        let Ok(app) = AppName::parse(&name) else { continue };
        for g in generations(root, &app).unwrap_or_default() {
            if let Ok(Some(gen_)) = read(root, &app, g) {
                claimed.extend(gen_.ports.values());
            }
        }
    }
    claimed
}

/// A free port on loopback that no app has claimed, nor `taken`.
pub fn free_port(root: &Root, taken: &[u16]) -> Result<u16> {
    let mut claimed = claimed_ports(root);
    claimed.extend_from_slice(taken);
    for _ in 0..50 {
        let sock = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::new(format!("cannot find a free port: {e}")))?;
        let port = sock.local_addr().map_err(|e| Error::new(format!("cannot find a free port: {e}")))?.port();
        if !claimed.contains(&port) {
            return Ok(port);
        }
    }
    Err(Error::new("cannot find a free port that no other app uses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_up_and_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        let app = AppName::parse("a").unwrap();
        assert_eq!(allocate(&root, &app).unwrap(), 1);
        let g = Generation { release: "r1".into(), ports: [("web.1".to_string(), 5001)].into() };
        write(&root, &app, 1, &g).unwrap();
        assert_eq!(read(&root, &app, 1).unwrap(), Some(g));
        assert_eq!(allocate(&root, &app).unwrap(), 2);
        // A failed stage's record is gone: its number is still not reused.
        remove(&root, &app, 1).unwrap();
        assert_eq!(allocate(&root, &app).unwrap(), 3);
        assert_eq!(generations(&root, &app).unwrap(), Vec::<u32>::new());
        set_live(&root, &app, 3).unwrap();
        assert_eq!(live(&root, &app).unwrap(), Some(3));
        assert!(claimed_ports(&root).is_empty());
        write(&root, &app, 3, &Generation { release: "r2".into(), ports: [("web.1".to_string(), 5002)].into() }).unwrap();
        assert_eq!(claimed_ports(&root), [5002]);
        assert_ne!(free_port(&root, &[]).unwrap(), 5002);
        assert_eq!(parse_tag("g12"), Some(12));
        assert_eq!(parse_tag("blue"), None);
    }

    #[test]
    fn per_release_means_behind_nginx_without_a_pinned_port() {
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Env>();
        assert!(per_release(&env(&[("NGINX_SERVER_NAME", "a.example")])));
        assert!(!per_release(&env(&[("NGINX_SERVER_NAME", "a.example"), ("PORT", "8000")])));
        assert!(!per_release(&env(&[])));
    }
}
