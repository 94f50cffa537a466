//! The uWSGI vassal naming protocol: `<app>_<kind>.<n>.ini` in
//! uwsgi-available/ and uwsgi-enabled/ (piku.py's names).

use crate::app::AppName;
use crate::error::{Error, Result};
use crate::paths::Root;
use std::path::Path;

pub fn vassal_name(app: &AppName, kind: &str, n: u32) -> String {
    format!("{app}_{kind}.{n}.ini")
}

/// The vassal files in `dir` that belong to `app`, matched exactly (piku's
/// glob `<app>*.ini` also matched `<app>foo`). The names are ambiguous when
/// app names contain `_`, so a file goes to the longest existing app name it
/// starts with.
pub fn app_vassals(root: &Root, app: &AppName, dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let prefix = format!("{app}_");
    let longer_apps: Vec<String> = ["apps", "repos"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.dir(d)).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|other| other.len() > app.as_str().len() && other.starts_with(&prefix))
        .collect();
    let mut names = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".ini")) else { continue };
        let Some((kind, n)) = rest.rsplit_once('.') else { continue };
        if kind.is_empty() || n.parse::<u32>().is_err() || kind.contains('.') {
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

/// `kind.n` of a vassal file name of `app`, for messages.
pub fn worker_label(app: &AppName, name: &str) -> String {
    name.strip_prefix(&format!("{app}_")).unwrap_or(name).trim_end_matches(".ini").to_string()
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
        for f in ["foo_web.1.ini", "foo_worker.2.ini", "foobar_web.1.ini", "foo_x_web.1.ini", "foo_web.ini", "foo_.1.ini", "foo_web.1.ini.tmp"] {
            std::fs::write(root.dir("uwsgi-enabled").join(f), "").unwrap();
        }
        let foo = AppName::parse("foo").unwrap();
        assert_eq!(app_vassals(&root, &foo, &root.dir("uwsgi-enabled")).unwrap(), ["foo_web.1.ini", "foo_worker.2.ini"]);
        let foo_x = AppName::parse("foo_x").unwrap();
        assert_eq!(app_vassals(&root, &foo_x, &root.dir("uwsgi-enabled")).unwrap(), ["foo_x_web.1.ini"]);
        assert_eq!(worker_label(&foo, "foo_web.1.ini"), "web.1");
    }
}

/// The workers whose vassal master runs now, as `app:kind.n`, read from the
/// process titles uWSGI sets (`procname-prefix = <app>:<kind>.<n>:`).
pub fn running_workers() -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else { continue };
        let title = String::from_utf8_lossy(&cmdline);
        if let Some(idx) = title.find(":uWSGI master") {
            out.insert(title[..idx].trim_end_matches('\0').to_string());
        }
    }
    out
}
