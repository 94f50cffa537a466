//! Backups in `data/<app>/backups/`, one file each, 0600, named
//!
//!   <addon>_<UTC YYYYMMDD-HHMMSS>_<live release id, or none>_<reason>.<pgdump|rdb>
//!
//! reason: manual, predeploy (the hook), nightly, prerestore, final (destroy).
//! A backup is written under a dot-name and renamed when complete, so a
//! failed one (a full disk) leaves nothing behind and removes nothing; the
//! newest `ADDONS_KEEP_BACKUPS` (7) of each add-on are kept.

use crate::{Addon, installed, postgres, read_facts, redis, setting};
use piku::error::{Error, Result};
use piku::{AppName, Root, atomic, output, release};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// One backup, its name taken apart.
pub struct Backup {
    pub name: String,
    pub addon: Addon,
    pub stamp: String,
    pub release: String,
    pub reason: String,
}

impl Backup {
    fn parse(name: &str) -> Option<Backup> {
        let (stem, ext) = name.rsplit_once('.')?;
        let parts: Vec<&str> = stem.split('_').collect();
        let [addon, stamp, rel, reason] = parts.as_slice() else { return None };
        let addon = match (*addon, ext) {
            ("postgres", "pgdump") => Addon::Postgres,
            ("redis", "rdb") => Addon::Redis,
            _ => return None,
        };
        if stamp.len() != 15 || reason.is_empty() || rel.is_empty() {
            return None;
        }
        Some(Backup { name: name.to_string(), addon, stamp: stamp.to_string(), release: rel.to_string(), reason: reason.to_string() })
    }
}

fn ext(addon: Addon) -> &'static str {
    match addon {
        Addon::Postgres => "pgdump",
        Addon::Redis => "rdb",
    }
}

/// The app's backups, newest first.
pub fn all(root: &Root, app: &AppName) -> Vec<Backup> {
    let mut list: Vec<Backup> = fs_err::read_dir(root.backups_dir(app))
        .map(|rd| rd.flatten().filter_map(|e| Backup::parse(&e.file_name().to_string_lossy())).collect())
        .unwrap_or_default();
    list.sort_by(|a, b| (&b.stamp, &b.name).cmp(&(&a.stamp, &a.name)));
    list
}

/// Back up one add-on; the new file's path. `keep` is never pruned (the one about to be restored).
pub fn take(root: &Root, app: &AppName, addon: Addon, reason: &str) -> Result<PathBuf> {
    take_keeping(root, app, addon, reason, None)
}

fn take_keeping(root: &Root, app: &AppName, addon: Addon, reason: &str, keep: Option<&str>) -> Result<PathBuf> {
    let facts = read_facts(root, app, addon)?;
    let dir = root.backups_dir(app);
    atomic::create_dir_all(&dir)?;
    fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::new(e.to_string()))?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let live = release::live_id(root, app).unwrap_or_else(|| "none".into());
    let stamp = release::utc_stamp(secs);
    let mut name = format!("{}_{stamp}_{live}_{reason}.{}", addon.name(), ext(addon));
    let mut n = 2;
    while dir.join(&name).exists() {
        name = format!("{}_{stamp}_{live}_{reason}-{n}.{}", addon.name(), ext(addon));
        n += 1;
    }
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs_err::remove_file(&tmp);
    output::step(format!("Backing up the {} of '{app}' ({reason})", addon.name()));
    let made = match addon {
        Addon::Postgres => postgres::dump(&facts, &tmp),
        Addon::Redis => redis::dump(root, app, &facts, &tmp),
    }
    .and_then(|()| {
        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::new(e.to_string()))?;
        fs_err::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::new(e.to_string()))?;
        fs_err::rename(&tmp, &path).map_err(|e| Error::new(e.to_string()))
    });
    if let Err(e) = made {
        let _ = fs_err::remove_file(&tmp);
        return Err(Error::new(format!(
            "the backup of the {} of '{app}' failed: {}\nNothing was removed (the earlier backups are kept); free some space in {} (or fix the problem above) and try again",
            addon.name(),
            e.message,
            dir.display()
        )));
    }
    let size = fs_err::metadata(&path).map(|m| m.len()).unwrap_or(0);
    output::detail(format!("{name} ({})", human(size)));
    prune(root, app, addon, keep.unwrap_or(&name))?;
    Ok(path)
}

/// Keep the newest ADDONS_KEEP_BACKUPS of the add-on (and `keep`).
fn prune(root: &Root, app: &AppName, addon: Addon, keep: &str) -> Result<()> {
    let raw = setting(root, app, "ADDONS_KEEP_BACKUPS", "7")?;
    let n: usize = raw.parse().ok().filter(|n| *n >= 1).ok_or_else(|| Error::new(format!("ADDONS_KEEP_BACKUPS={raw:?}: a number of at least 1, please")))?;
    for old in all(root, app).into_iter().filter(|b| b.addon == addon).skip(n) {
        if old.name != keep {
            atomic::remove_file(&root.backups_dir(app).join(&old.name))?;
            output::detail(format!("removed the old backup {}", old.name));
        }
    }
    Ok(())
}

pub fn list(root: &Root, app: &AppName, json: bool) -> Result<()> {
    let list = all(root, app);
    let size = |b: &Backup| fs_err::metadata(root.backups_dir(app).join(&b.name)).map(|m| m.len()).unwrap_or(0);
    if json {
        let items: Vec<String> = list
            .iter()
            .map(|b| {
                format!(
                    "{{\"name\":{},\"addon\":{},\"time\":{},\"release\":{},\"reason\":{},\"bytes\":{}}}",
                    output::json_string(&b.name),
                    output::json_string(b.addon.name()),
                    output::json_string(&b.stamp),
                    output::json_string(&b.release),
                    output::json_string(&b.reason),
                    size(b)
                )
            })
            .collect();
        output::data(format!("[{}]", items.join(",")));
        return Ok(());
    }
    if list.is_empty() {
        output::step(format!("'{app}' has no backups; make one with: ssh <server> addons:backup {app}"));
    }
    for b in &list {
        output::data(format!("{}  {}", b.name, human(size(b))));
    }
    Ok(())
}

/// Restore `name` into the live add-on, after a fresh backup of what is there.
pub fn restore(root: &Root, app: &AppName, addon: Addon, name: &str) -> Result<()> {
    let backup = find(root, app, addon, name)?;
    let fresh = take_keeping(root, app, addon, "prerestore", Some(&backup.name))?;
    let facts = read_facts(root, app, addon)?;
    output::step(format!("Restoring the {} of '{app}' from {}", addon.name(), backup.name));
    let file = root.backups_dir(app).join(&backup.name);
    match addon {
        Addon::Postgres => postgres::restore(&facts, &file),
        Addon::Redis => redis::restore(root, app, &facts, &file),
    }
    .map_err(|e| {
        Error::new(format!(
            "restoring {} into the {} of '{app}' failed: {}\nWhat was there is in {}",
            backup.name,
            addon.name(),
            e.message,
            fresh.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ))
    })?;
    output::step(format!("Restored; what was there before is in {}", fresh.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    Ok(())
}

fn find(root: &Root, app: &AppName, addon: Addon, name: &str) -> Result<Backup> {
    let problem = if name.contains('/') || name.starts_with('.') {
        Some("it is not a backup name")
    } else if !root.backups_dir(app).join(name).is_file() {
        Some("there is no such backup")
    } else {
        None
    };
    let backup = match (problem, Backup::parse(name)) {
        (None, Some(b)) => b,
        (p, _) => {
            return Err(Error::new(format!(
                "{name:?}: {}; the backups of '{app}' are listed by: ssh <server> addons:backups {app}",
                p.unwrap_or("it is not a backup name")
            )));
        }
    };
    if backup.addon != addon {
        return Err(Error::new(format!("{name} is a backup of the {}, not of the {}", backup.addon.name(), addon.name())));
    }
    Ok(backup)
}

/// rollback --with-data: for each add-on, the newest backup taken while
/// `release` was live (the one taken just before the next release went live).
pub fn restore_release(root: &Root, app: &AppName, release: &str) -> Result<()> {
    let _lock = piku::lock::AppLock::acquire(root, app)?;
    let list = all(root, app);
    let mut chosen = Vec::new();
    for addon in installed(root, app) {
        match list.iter().find(|b| b.addon == addon && b.release == release) {
            Some(b) => chosen.push((addon, b.name.clone())),
            None => {
                return Err(Error::new(format!(
                    "there is no backup of the {} of '{app}' taken while release {release} was live (see: ssh <server> addons:backups {app}); nothing was changed",
                    addon.name()
                )));
            }
        }
    }
    if chosen.is_empty() {
        return Err(Error::new(format!("app '{app}' has no add-ons; roll back without --with-data")));
    }
    for (addon, name) in chosen {
        restore(root, app, addon, &name)?;
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let b = Backup::parse("postgres_20261208-041500_20261208-040000-abc1234_predeploy.pgdump").unwrap();
        assert_eq!((b.addon, b.stamp.as_str(), b.release.as_str(), b.reason.as_str()), (Addon::Postgres, "20261208-041500", "20261208-040000-abc1234", "predeploy"));
        assert!(Backup::parse("redis_20261208-041500_none_manual-2.rdb").is_some());
        for bad in ["postgres_x_none_manual.pgdump", "redis_20261208-041500_none_manual.pgdump", "x.rdb", ".postgres_20261208-041500_none_manual.pgdump.tmp"] {
            assert!(Backup::parse(bad).is_none(), "{bad}");
        }
    }
}
