//! The uWSGI vassal naming protocol, in uwsgi-available/ and uwsgi-enabled/:
//!
//!   `<app>_<kind>.<n>.ini`            a background or cron worker (piku.py's
//!                                     name), or a web worker that restarts in place
//!   `<app>_<kind>.<n>.g<N>.ini`       a web-facing worker of generation N
//!                                     (lib swap.rs): each deploy's workers
//!                                     are a new generation, beside the old
//!
//! Process titles follow the same shape (`procname-prefix = <app>:<kind>.<n>[.g<N>]:`).
//! Names with a colour (`.blue`, `.green`) are an older version's: they are
//! still recognised, so they are stopped like any older generation.

use crate::app::AppName;
use crate::error::Result;
use crate::paths::Root;
use fs_err as fs;
use std::path::Path;

/// A vassal holds the app's whole environment (`env = K=V`): only the piku
/// user (the emperor) reads it.
pub const VASSAL_MODE: u32 = 0o600;

/// The colours of an older version's web-facing workers.
pub const OLD_COLOURS: [&str; 2] = ["blue", "green"];

/// Does a worker of this kind face the web (nginx talks to it)?
pub fn is_web_facing(kind: &str) -> bool {
    crate::procfile::WEB_KINDS.contains(&kind)
}

/// `kind.n` or `kind.n.<tag>` (the tag: `g<N>`).
pub fn worker_id(kind: &str, n: u32, tag: Option<&str>) -> String {
    match tag {
        Some(c) => format!("{kind}.{n}.{c}"),
        None => format!("{kind}.{n}"),
    }
}

pub fn vassal_name(app: &AppName, kind: &str, n: u32, tag: Option<&str>) -> String {
    format!("{app}_{}.ini", worker_id(kind, n, tag))
}

/// A vassal file name of `app`, taken apart: (kind, n, tag).
pub fn parse_vassal(app: &AppName, name: &str) -> Option<(String, u32, Option<String>)> {
    let rest = name.strip_prefix(&format!("{app}_"))?.strip_suffix(".ini")?;
    parse_worker_id(rest)
}

/// `kind.n` or `kind.n.<tag>`, taken apart.
pub fn parse_worker_id(id: &str) -> Option<(String, u32, Option<String>)> {
    let parts: Vec<&str> = id.split('.').collect();
    let (kind, n, colour) = match parts.as_slice() {
        [kind, n] => (kind, n, None),
        [kind, n, tag] if OLD_COLOURS.contains(tag) || crate::swap::parse_tag(tag).is_some() => (kind, n, Some(tag.to_string())),
        _ => return None,
    };
    let n = n.parse::<u32>().ok()?;
    if kind.is_empty() {
        return None;
    }
    Some((kind.to_string(), n, colour))
}

/// The vassal files in `dir` that belong to `app`, matched exactly (piku's
/// glob `<app>*.ini` also matched `<app>foo`). The names are ambiguous when
/// app names contain `_`, so a file goes to the longest existing app name it
/// starts with.
pub fn app_vassals(root: &Root, app: &AppName, dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    let longer_apps = longer_apps(root, app);
    let mut names = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if parse_vassal(app, &name).is_none() {
            continue;
        }
        if longer_apps.iter().any(|other| name.starts_with(&format!("{other}_"))) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The other apps whose names start with `<app>_`: a file `<app>_...` may be theirs.
pub fn longer_apps(root: &Root, app: &AppName) -> Vec<String> {
    let prefix = format!("{app}_");
    ["apps", "repos"]
        .iter()
        .filter_map(|d| fs::read_dir(root.dir(d)).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|other| other.len() > app.as_str().len() && other.starts_with(&prefix))
        .collect()
}

/// Is the file `<app>_...` in a shared directory this app's (not a longer-named app's)?
pub fn is_apps_file(longer_apps: &[String], app: &AppName, name: &str) -> bool {
    name.starts_with(&format!("{app}_")) && !longer_apps.iter().any(|other| name.starts_with(&format!("{other}_")))
}

/// `kind.n[.tag]` of a vassal file name of `app`, for messages.
pub fn worker_label(app: &AppName, name: &str) -> String {
    name.strip_prefix(&format!("{app}_")).unwrap_or(name).trim_end_matches(".ini").to_string()
}

/// The workers of this user whose vassal master runs now, as
/// `app:kind.n[.tag]`, read from the process titles uWSGI sets
/// (`procname-prefix`). Another user's workers (a second piku user on the
/// same machine) are never counted.
pub fn running_workers() -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to this process's effective user.
    fs::metadata("/proc/self").map(|m| running_workers_of(m.uid())).unwrap_or_default()
}

/// [`running_workers`] of the user `uid`.
pub fn running_workers_of(uid: u32) -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeSet::new();
    for (pid, cmdline) in crate::process::cmdlines() {
        if fs::metadata(format!("/proc/{pid}")).map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let title = String::from_utf8_lossy(&cmdline);
        if let Some(idx) = title.find(":uWSGI master") {
            out.insert(title[..idx].trim_end_matches('\0').to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_never_takes_another_apps_vassals() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        for d in ["apps/foo", "apps/foobar", "apps/foo_x", "uwsgi-enabled"] {
            std::fs::create_dir_all(root.dir(d)).unwrap();
        }
        for f in [
            "foo_web.1.ini",
            "foo_web.2.green.ini",
            "foo_web.1.red.ini",
            "foo_web.3.g12.ini",
            "foo_worker.2.ini",
            "foobar_web.1.ini",
            "foo_x_web.1.ini",
            "foo_web.ini",
            "foo_.1.ini",
            "foo_web.1.ini.tmp",
        ] {
            std::fs::write(root.dir("uwsgi-enabled").join(f), "").unwrap();
        }
        let foo = AppName::parse("foo").unwrap();
        assert_eq!(app_vassals(&root, &foo, &root.dir("uwsgi-enabled")).unwrap(), ["foo_web.1.ini", "foo_web.2.green.ini", "foo_web.3.g12.ini", "foo_worker.2.ini"]);
        let foo_x = AppName::parse("foo_x").unwrap();
        assert_eq!(app_vassals(&root, &foo_x, &root.dir("uwsgi-enabled")).unwrap(), ["foo_x_web.1.ini"]);
        assert_eq!(worker_label(&foo, "foo_web.1.ini"), "web.1");
        assert_eq!(worker_label(&foo, "foo_web.1.blue.ini"), "web.1.blue");
    }

    #[test]
    fn no_two_apps_ever_name_the_same_socket_or_nginx_file() {
        let root = Root::at("/r");
        let candidates = ["foo", "foo_web", "foo_web.1", "foo_web.1.g2", "foo.sock", "foo_x", "foo.g1", "foo_wsgi.1", "foo.conf", "a.b_c"];
        let kinds = ["web", "wsgi", "worker", "x-worker"];
        let mut seen = std::collections::BTreeMap::new();
        for app in candidates.iter().filter_map(|a| AppName::parse(a).ok()) {
            let mut names = vec![format!("{app}.conf"), format!("{app}.crt"), format!("{app}.key")];
            for kind in kinds {
                for n in [1, 2] {
                    names.push(crate::swap::stable_socket(&root, &app, kind, n).display().to_string());
                    for g in [1, 2, 12] {
                        names.push(crate::swap::worker_socket(&root, &app, kind, n, g).display().to_string());
                    }
                }
            }
            names.sort();
            names.dedup();
            for name in names {
                if let Some(other) = seen.insert(name.clone(), app.to_string()) {
                    assert_eq!(other, app.to_string(), "{name} belongs to both '{other}' and '{app}'");
                }
            }
        }
        assert!(AppName::parse("foo_web.1").is_err(), "foo_web.1 would own nginx/foo_web.1.sock, app foo's web.1 socket");
    }

    #[test]
    fn no_two_apps_ever_name_the_same_vassal() {
        // App names may hold '_' and '.', kinds (Procfile) neither.
        let apps = ["foo", "foo_x", "foo_x_worker", "foo.x", "foo-x", "f_1", "foo_web"];
        let kinds = ["worker", "x_worker", "x-worker", "web", "x", "1", "web-1"];
        let mut seen = std::collections::BTreeMap::new();
        for app in apps {
            let app = AppName::parse(app).unwrap();
            for kind in kinds.iter().filter(|k| crate::procfile::Procfile::parse(&format!("{k}: sleep 1\n"), "Procfile").is_ok()) {
                for n in [1, 2, 12] {
                    for colour in [None, Some("g1"), Some("g12")] {
                        let name = vassal_name(&app, kind, n, colour);
                        let owner = format!("{app} {kind}.{n}.{colour:?}");
                        if let Some(other) = seen.insert(name.clone(), owner.clone()) {
                            panic!("{name} is both {other} and {owner}");
                        }
                    }
                }
            }
        }
        assert!(seen.contains_key("foo_x-worker.1.ini") && seen.contains_key("foo_x_worker.1.ini"));
    }

    #[test]
fn names_round_trip_with_and_without_a_generation() {
        let app = AppName::parse("a").unwrap();
        assert_eq!(vassal_name(&app, "web", 2, Some("blue")), "a_web.2.blue.ini");
        assert_eq!(parse_vassal(&app, "a_web.2.blue.ini"), Some(("web".into(), 2, Some("blue".into()))));
        assert_eq!(parse_vassal(&app, "a_cron1.1.ini"), Some(("cron1".into(), 1, None)));
        assert_eq!(parse_vassal(&app, "a_web.x.ini"), None);
        assert_eq!(parse_vassal(&app, "a_web.1.g7.ini"), Some(("web".into(), 1, Some("g7".into()))));
        assert_eq!(parse_vassal(&app, "a_web.1.gx.ini"), None);
        assert!(is_web_facing("wsgi") && is_web_facing("php") && !is_web_facing("worker") && !is_web_facing("static"));
    }
}
