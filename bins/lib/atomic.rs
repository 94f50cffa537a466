//! Atomic writes: a temp file in the same directory (named `.<name>.XXXX.tmp`,
//! which no watcher's `*.ini` / `*.conf` glob picks up), fsync, chmod, rename.
//! A reader never sees half a file; a crash never leaves one in place.

use crate::error::{Error, Result};
use fs_err as fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

unsafe extern "C" {
    fn umask(mask: u32) -> u32;
}

/// Never create anything group- or world-writable, whatever umask the tool
/// was started with (a shell's `umask 000`, a service manager's default):
/// adds 022 to the process's umask. Every tool calls it first (output::run_main),
/// and the children it starts (the hook, git, builds) inherit it.
pub fn restrict_umask() {
    // SAFETY: umask(2) cannot fail; it only swaps the process's mask.
    unsafe {
        let old = umask(0o022);
        umask(old | 0o022);
    }
}

/// Create `dir` and its missing parents, at most 0755 (before the umask).
/// fs-err has no DirBuilder, so this one call names its path itself.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::new(format!("failed to create directory `{}`: {e}", dir.display())))
}

/// Write `contents` to `path` atomically with the given mode.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write(path, contents, mode)
}

/// Like `write_file`, for a file a watcher compares by whole-second mtime
/// (the uWSGI emperor): when the old file was written in the current second,
/// wait until the clock has moved past that second (at most about a second),
/// so the new file's mtime is later and the change is seen. The mtime is the
/// time of the write, never one in the future.
pub fn write_file_newer(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if let Some(old) = fs::metadata(path).and_then(|m| m.modified()).ok().map(secs) {
        // File times come from the kernel's coarse clock, a tick behind the
        // wall clock: wait until the next second has begun by a few ticks.
        let next = UNIX_EPOCH + Duration::from_secs(old + 1) + Duration::from_millis(25);
        let bound = Instant::now() + Duration::from_millis(1500);
        while SystemTime::now() < next && Instant::now() < bound {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    write(path, contents, mode)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = fs::File::from_parts(file, &*tmp_path);
    file.write_all(contents)?;
    file.sync_all()?;
    fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp_path, path)?;
    // Renamed away: nothing is left at the temporary name to delete.
    let _ = tmp_path.keep();
    Ok(())
}

/// Replace (or create) a symlink atomically: make it under a temp name, rename over.
pub fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    let dir = parent_of(link);
    create_dir_all(dir)?;
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    fs::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    Ok(())
}

/// Remove a file if it is there; a missing file is not an error.
pub fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_with_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/ENV");
        write_file(&p, b"A=1\n", 0o600).unwrap();
        write_file(&p, b"A=2\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "A=2\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ENV")]);
    }

    #[test]
    fn directories_are_never_world_writable() {
        let dir = tempfile::tempdir().unwrap();
        restrict_umask();
        // SAFETY: reading the mask back by setting it; restored at once.
        let mask = unsafe {
            let m = umask(0o022);
            umask(m);
            m
        };
        assert_eq!(mask & 0o022, 0o022, "umask {mask:o}");
        let p = dir.path().join("a/b/ENV");
        write_file(&p, b"A=1\n", 0o600).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o022, 0, "{} is {mode:o}", d.display());
        }
    }

    #[test]
    fn a_rewrite_within_one_second_still_moves_the_whole_second_mtime_never_into_the_future() {
        let secs = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        write_file_newer(&p, b"one", 0o644).unwrap();
        let first = secs(&p);
        write_file_newer(&p, b"two", 0o644).unwrap();
        assert!(secs(&p) > first && secs(&p) <= now(), "{} then {} (now {})", first, secs(&p), now());
        write_file_newer(&p, b"three", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three");
        assert!(secs(&p) >= first + 2 && secs(&p) <= now(), "{} then {} (now {})", first, secs(&p), now());
        // An old file is simply replaced at the current time.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
        write_file_newer(&p, b"four", 0o644).unwrap();
        assert!(secs(&p) > 1_000_000 + 60);
    }

    #[test]
    fn symlink_is_switched_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("app");
        replace_symlink(Path::new("a"), &link).unwrap();
        replace_symlink(Path::new("b"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("b"));
    }
}
