//! Worker counts and web ports, in piku's plain formats:
//! `envs/<app>/SCALING` holds `kind:count` lines (owner: piku-uwsgi);
//! `envs/<app>/PORTS` holds `n:port` lines, the port of each live `web`
//! instance (nginx reads these; instance 1 is the app's PORT), and
//! `<colour>.n:port` lines, the ports of each colour's instances: a new release
//! starts on the other colour's ports beside the live one (owner: piku-config).

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

/// The ports of one colour's web instances, 1..=count as far as assigned.
pub fn read_colour_ports(root: &Root, app: &AppName, colour: &str) -> Result<BTreeMap<u32, u16>> {
    let mut out = BTreeMap::new();
    for (k, v) in read_counts(&ports_file(root, app))? {
        let Some((c, n)) = k.split_once('.') else { continue };
        if let (true, Ok(n), Ok(port)) = (c == colour, n.parse::<u32>(), u16::try_from(v)) {
            out.insert(n, port);
        }
    }
    Ok(out)
}

/// The colour whose first instance listens on `port`; None for a port of no
/// colour (the user set PORT, or the app restarts in place).
pub fn colour_of_port(root: &Root, app: &AppName, port: Option<&str>) -> Result<Option<&'static str>> {
    let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) else { return Ok(None) };
    for colour in crate::vassals::COLOURS {
        if read_colour_ports(root, app, colour)?.get(&1) == Some(&port) {
            return Ok(Some(colour));
        }
    }
    Ok(None)
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

    #[test]
    fn colour_ports_are_told_apart_from_live_ports() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        let app = AppName::parse("a").unwrap();
        std::fs::create_dir_all(root.env_dir(&app)).unwrap();
        std::fs::write(ports_file(&root, &app), "1:5001\n2:5002\nblue.1:5001\nblue.2:5002\ngreen.1:6001\n").unwrap();
        assert_eq!(read_web_ports(&root, &app).unwrap().into_iter().collect::<Vec<_>>(), [(1, 5001), (2, 5002)]);
        assert_eq!(read_colour_ports(&root, &app, "green").unwrap().into_iter().collect::<Vec<_>>(), [(1, 6001)]);
        assert_eq!(colour_of_port(&root, &app, Some("6001")).unwrap(), Some("green"));
        assert_eq!(colour_of_port(&root, &app, Some("5001")).unwrap(), Some("blue"));
        assert_eq!(colour_of_port(&root, &app, Some("8000")).unwrap(), None);
        assert_eq!(colour_of_port(&root, &app, None).unwrap(), None);
    }
}
