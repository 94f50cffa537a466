//! Server plugins, git-style: `piku foo` runs an executable `piku-foo` from
//! $PIKU_ROOT/plugins/, else from PATH, when `foo` is not a command of the
//! table (commands.rs). Our own tools are never plugins.

use piku::{Root, process};
use std::path::{Path, PathBuf};

const TOOLS: &[&str] = &["receive", "build", "config", "uwsgi", "nginx", "nginx-install", "addons", "pgadmin"];

/// The executable for `cmd`, if it names a plugin.
pub fn find(root: &Root, cmd: &str) -> Option<PathBuf> {
    let valid = cmd.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && cmd.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
    if !valid || TOOLS.contains(&cmd) || crate::commands::find(cmd).is_some() {
        return None;
    }
    let name = format!("piku-{cmd}");
    let local = root.dir("plugins").join(&name);
    if is_executable(&local) {
        return Some(local);
    }
    process::which(&name)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The plugins `help` lists: `piku-*` executables in plugins/ and on PATH
/// that `find` would run.
pub fn names(root: &Root) -> Vec<String> {
    let mut dirs = vec![root.dir("plugins")];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()))
        .filter(|e| is_executable(&e.path()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("piku-")).map(str::to_string))
        .filter(|n| find(root, n).is_some())
        .collect();
    names.sort();
    names.dedup();
    names
}
