//! Worker counts and web ports, in piku's plain formats:
//! `envs/<app>/SCALING` holds `kind:count` lines (owner: piku-uwsgi);
//! `envs/<app>/PORTS` holds `n:port` lines, the port of each `web` instance
//! of an app whose workers restart in place (PORT pinned, or not behind
//! nginx; nginx reads these; instance 1 is the app's PORT; owner:
//! piku-config). Apps behind nginx get ports per generation (swap.rs).

use crate::app::AppName;
use crate::error::{Error, Result};
use crate::paths::Root;
use fs_err as fs;
use std::collections::BTreeMap;
use std::path::Path;

/// Parse `key:number` lines (SCALING, PORTS); a missing file is empty.
pub fn read_counts(path: &Path) -> Result<BTreeMap<String, u32>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut counts = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').and_then(|(k, v)| Some((k.trim().to_string(), v.trim().parse::<u32>().ok()?)));
        let (key, count) = parsed.ok_or_else(|| Error::new(format!("{}, line {}: expected 'name:number': {line:?}", path.display(), n + 1)))?;
        counts.insert(key, count);
    }
    Ok(counts)
}

pub fn render_counts<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    pairs.into_iter().map(|(k, v)| format!("{k}:{v}\n")).collect()
}

pub fn read_scaling(root: &Root, app: &AppName) -> Result<BTreeMap<String, u32>> {
    read_counts(&root.scaling_file(app))
}

pub fn ports_file(root: &Root, app: &AppName) -> std::path::PathBuf {
    root.env_dir(app).join("PORTS")
}

/// The port of each web instance, 1..=count.
pub fn read_web_ports(root: &Root, app: &AppName) -> Result<BTreeMap<u32, u16>> {
    let mut out = BTreeMap::new();
    for (k, v) in read_counts(&ports_file(root, app))? {
        if let (Ok(n), Ok(port)) = (k.parse::<u32>(), u16::try_from(v)) {
            out.insert(n, port);
        }
    }
    Ok(out)
}

/// `kind=N` arguments of `ps:scale`.
pub fn parse_scale_arg(arg: &str) -> std::result::Result<(String, u32), String> {
    let (kind, count) = arg.split_once('=').ok_or_else(|| format!("{arg:?} must be kind=N"))?;
    let kind = kind.trim();
    let count = count.trim();
    if count.starts_with('-') {
        return Err(format!("cannot scale '{kind}' below 0 ({count})"));
    }
    let n: u32 = count.parse().map_err(|_| format!("the count for '{kind}' must be a whole number, not {count:?}"))?;
    if n > 64 {
        return Err(format!("{n} '{kind}' workers is more than the 64 piku allows per kind"));
    }
    Ok((kind.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_args() {
        assert_eq!(parse_scale_arg("web=3").unwrap(), ("web".to_string(), 3));
        assert!(parse_scale_arg("web=-1").unwrap_err().contains("below 0"));
        assert!(parse_scale_arg("web=two").unwrap_err().contains("whole number"));
        assert!(parse_scale_arg("web").unwrap_err().contains("kind=N"));
        assert!(parse_scale_arg("web=1000").unwrap_err().contains("64"));
    }

    #[test]
    fn counts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("SCALING");
        std::fs::write(&p, render_counts([("web", 2), ("worker", 0)])).unwrap();
        let c = read_counts(&p).unwrap();
        assert_eq!(c["web"], 2);
        assert_eq!(c["worker"], 0);
        std::fs::write(&p, "web:x\n").unwrap();
        assert!(read_counts(&p).unwrap_err().message.contains("line 1"));
    }
}
