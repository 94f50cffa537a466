//! Files an app names in its environment for a tool to read
//! (`NGINX_INCLUDE_FILE`, `UWSGI_INCLUDE_FILE`): a relative path inside the
//! release's tree, a regular file (no device, no fifo, no symlink out of the
//! tree), read with a bound.

use crate::error::{Error, Result};
use fs_err as fs;
use std::io::Read;
use std::path::{Component, Path};

/// The largest include file read, in bytes.
pub const MAX_BYTES: u64 = 64 * 1024;

/// The text of `name` (the value of `var`) inside `tree`, the release of `app`.
pub fn read(tree: &Path, app: &str, var: &str, name: &str) -> Result<String> {
    let name = name.trim();
    let refuse = |why: &str| Error::new(format!("{var} {name:?} of '{app}' {why}; name a file of the app's repository, relative to its root"));
    let rel = Path::new(name);
    if name.is_empty() || rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(refuse("is not a relative path inside the app"));
    }
    let io = |e: std::io::Error| Error::new(e.to_string());
    let base = fs::canonicalize(tree).map_err(io)?;
    let path = std::fs::canonicalize(base.join(rel)).map_err(|e| refuse(&format!("cannot be read ({e})")))?;
    if !path.starts_with(&base) {
        return Err(refuse("leads outside the app (a symbolic link)"));
    }
    let meta = fs::metadata(&path).map_err(io)?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    if meta.len() > MAX_BYTES {
        return Err(refuse(&format!("is larger than {} KB", MAX_BYTES / 1024)));
    }
    let mut bytes = Vec::new();
    fs::File::open(&path).map_err(io)?.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse(&format!("is larger than {} KB", MAX_BYTES / 1024)));
    }
    String::from_utf8(bytes).map_err(|_| refuse("is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_the_tree_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("conf")).unwrap();
        std::fs::write(tree.join("conf/ok.inc"), "location = /x { return 200; }\n").unwrap();
        std::fs::write(dir.path().join("outside"), "secret\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), tree.join("escape")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", tree.join("zero")).unwrap();
        std::fs::write(tree.join("big"), vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        assert!(read(&tree, "a", "NGINX_INCLUDE_FILE", "conf/ok.inc").unwrap().contains("return 200"));
        assert!(read(&tree, "a", "NGINX_INCLUDE_FILE", "./conf/ok.inc").is_ok());
        for (bad, why) in [
            ("/etc/passwd", "not a relative path"),
            ("../outside", "not a relative path"),
            ("conf/../../outside", "not a relative path"),
            ("escape", "outside the app"),
            ("zero", "outside the app"),
            ("conf", "not a regular file"),
            ("big", "larger than 64 KB"),
            ("missing", "cannot be read"),
        ] {
            let e = read(&tree, "a", "UWSGI_INCLUDE_FILE", bad).unwrap_err();
            assert!(e.message.starts_with(&format!("UWSGI_INCLUDE_FILE {bad:?} of 'a' ")) && e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
