//! Releases: each deploy materialises a tree in `releases/<app>/<id>/`, beside
//! the live one; `apps/<app>` is a symlink to the live tree, switched atomically.
//! Facts about a release sit beside its tree, one file per owner:
//! `<id>.release` (piku-receive: commit, ref, date), `<id>.build` (piku-build:
//! runtime, dependency environment), `<id>.env` (piku-config: the resolved
//! environment this release runs with).

use crate::app::AppName;
use crate::error::{Error, Result};
use crate::paths::Root;
use fs_err as fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Release {
    pub app: AppName,
    pub id: String,
    pub dir: PathBuf,
}

impl Release {
    /// A release of `app` by id; the id must be one we could have made.
    pub fn open(root: &Root, app: &AppName, id: &str) -> Result<Release> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::usage(format!("invalid release id {id:?} for app '{app}'")));
        }
        let dir = root.releases_dir(app).join(id);
        if !dir.is_dir() {
            return Err(Error::new(format!("app '{app}' has no release {id} (looked in {})", dir.display())));
        }
        Ok(Release { app: app.clone(), id: id.to_string(), dir })
    }

    /// The release `apps/<app>` points at.
    pub fn live(root: &Root, app: &AppName) -> Result<Option<Release>> {
        match live_id(root, app) {
            Some(id) => Release::open(root, app, &id).map(Some),
            None => Ok(None),
        }
    }

    /// The live release, or a clear error when the app was never deployed.
    pub fn live_or_err(root: &Root, app: &AppName) -> Result<Release> {
        Release::live(root, app)?.ok_or_else(|| not_deployed(root, app))
    }

    /// `<id>.<what>` beside the tree.
    pub fn fact_file(&self, what: &str) -> PathBuf {
        self.dir.with_file_name(format!("{}.{what}", self.id))
    }

    pub fn procfile_path(&self) -> PathBuf {
        self.dir.join("Procfile")
    }

    /// The parsed Procfile of this release; a missing or empty one is an error.
    pub fn procfile(&self) -> Result<crate::procfile::Procfile> {
        let path = self.procfile_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(format!(
                    "app '{}' has no Procfile; add one at the top of the repository (e.g. 'web: python3 -m http.server $PORT') and push again",
                    self.app
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let pf = crate::procfile::Procfile::parse(&text, "Procfile")?;
        if pf.workers().next().is_none() {
            return Err(Error::new(format!(
                "the Procfile of app '{}' declares no worker (only tasks, or nothing); add e.g. 'web: ...' or 'static: public'",
                self.app
            )));
        }
        Ok(pf)
    }
}

impl Release {
    /// The app's own settings for this release, as the build sees them: the
    /// repo's ENV then the user's envs/<app>/ENV, expanded (no bootstrap layer).
    pub fn settings(&self, root: &Root) -> Result<crate::envfile::Env> {
        let mut env = crate::envfile::Env::new();
        crate::envfile::read_into(&mut env, &self.dir.join("ENV"), true).map_err(|e| e.context(format!("the ENV file of '{}'", self.app)))?;
        crate::envfile::read_into(&mut env, &root.user_env_file(&self.app), true).map_err(|e| e.context(format!("the config of '{}'", self.app)))?;
        Ok(env)
    }
}

/// The id of the live release, from the `apps/<app>` symlink.
pub fn live_id(root: &Root, app: &AppName) -> Option<String> {
    let target = fs::read_link(root.app_dir(app)).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Does the app exist (it has a repo or a live tree)?
pub fn app_exists(root: &Root, app: &AppName) -> bool {
    root.repo_dir(app).is_dir() || root.app_dir(app).exists()
}

/// An app name from a command line, for an app that must exist.
pub fn existing_app(root: &Root, raw: &str) -> Result<AppName> {
    let app = AppName::parse(raw)?;
    require_app(root, &app)?;
    Ok(app)
}

/// A clear error for commands on an app that is not there.
pub fn require_app(root: &Root, app: &AppName) -> Result<()> {
    if app_exists(root, app) {
        Ok(())
    } else {
        Err(Error::new(format!("app '{app}' not found; create it with 'git push piku@<server>:{app} main'")))
    }
}

fn not_deployed(root: &Root, app: &AppName) -> Error {
    if app_exists(root, app) {
        Error::new(format!("app '{app}' has no live release yet; push a commit to deploy it"))
    } else {
        Error::new(format!("app '{app}' not found; create it with 'git push piku@<server>:{app} main'"))
    }
}

/// A new release id for `app`: UTC time then the short commit, sortable by
/// age (`20261125-041800-1a2b3c4`), and after every release
/// the app has: a second deploy within the same second (or after the clock
/// went back) takes the next free second, so ids are unique and their order
/// is the order the releases were made in. Called under the app's lock.
pub fn next_id(root: &Root, app: &AppName, commit_hex: &str) -> String {
    let latest = list_ids(root, app).iter().filter_map(|id| id.get(..15).and_then(stamp_secs)).max();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = latest.map_or(now, |latest| now.max(latest + 1));
    let short: String = commit_hex.chars().take(7).collect();
    format!("{}-{short}", utc_stamp(secs))
}

/// Seconds since the epoch of a `YYYYMMDD-HHMMSS` stamp (`utc_stamp`'s inverse).
fn stamp_secs(stamp: &str) -> Option<u64> {
    let b = stamp.as_bytes();
    if b.len() != 15 || b[8] != b'-' || !b.iter().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp[r].parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Howard Hinnant's days-from-civil algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// `YYYYMMDD-HHMMSS` for seconds since the epoch (UTC).
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Release ids of the app, oldest first.
pub fn list_ids(root: &Root, app: &AppName) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(root.releases_dir(app))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Remove this tool's `<id>.<fact>` files of `app`: every one (`all`, at
/// destroy), or those whose release tree piku-receive has pruned. Each tool
/// removes its own facts; piku-receive removes only the tree and `.release`.
pub fn remove_facts(root: &Root, app: &AppName, fact: &str, all: bool) -> Result<()> {
    let dir = root.releases_dir(app);
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
    let suffix = format!(".{fact}");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(&suffix) else { continue };
        if id.is_empty() || id.starts_with('.') || (!all && dir.join(id).is_dir()) {
            continue;
        }
        crate::atomic::remove_file(&e.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_581_296), "20261125-043456");
        for secs in [0, 951_782_400, 1_795_581_296, 32_503_680_000 - 1] {
            assert_eq!(stamp_secs(&utc_stamp(secs)), Some(secs));
        }
        for bad in ["20261125043456", "20261325-000000", "2026112x-000000", "zzz"] {
            assert_eq!(stamp_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn next_ids_are_unique_and_in_order_within_one_second() {
        let home = tempfile::tempdir().unwrap();
        let root = Root::at(home.path());
        let app = AppName::parse("a").unwrap();
        let dir = root.releases_dir(&app);
        let mut made = Vec::new();
        for commit in ["1111111aaaa", "2222222bbbb", "1111111aaaa", "0000000cccc"] {
            let id = next_id(&root, &app, commit);
            assert!(made.last().is_none_or(|last: &String| last[..15] < id[..15]), "{id} after {made:?}");
            std::fs::create_dir_all(dir.join(&id)).unwrap();
            made.push(id);
        }
        assert_eq!(list_ids(&root, &app), made, "oldest first");
        // Not before a release stamped in the future (the clock went back); other names are ignored.
        std::fs::create_dir_all(dir.join("29991231-235958-abcdef0")).unwrap();
        std::fs::create_dir_all(dir.join("zzz")).unwrap();
        assert_eq!(next_id(&root, &app, "1234567"), "29991231-235959-1234567");
    }

    #[test]
    fn ids_are_sortable_and_checked() {
        let root = Root::at(tempfile::tempdir().unwrap().path());
        let app = AppName::parse("a").unwrap();
        let id = next_id(&root, &app, "0123456789abcdef");
        assert!(id.ends_with("-0123456"), "{id}");
        for bad in ["../x", "", "a/b", "x y"] {
            assert!(Release::open(&root, &app, bad).is_err());
        }
    }
}
