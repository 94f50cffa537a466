//! Bounds on the work untrusted input can cause: the size of a push, the
//! number of worker processes of an app, the releases kept, and every read
//! of stdin or of a child's output. The bounds that protect the server are
//! the server's (`$PIKU_ROOT/settings`), never an app's own config.

use crate::envfile::Env;
use crate::error::{Error, Result};
use crate::paths::Root;
use crate::settings::Settings;
use std::collections::BTreeMap;
use std::io::Read;

/// `PIKU_MAX_PUSH_MB` (server setting): the largest push, in MiB.
pub const DEFAULT_MAX_PUSH_MB: u64 = 500;
/// `PIKU_MAX_WORKERS` (server setting): worker processes per app.
pub const DEFAULT_MAX_WORKERS: u64 = 32;
/// `PIKU_KEEP_RELEASES` (the app's or the server's): 1 to this many.
pub const MAX_KEEP_RELEASES: usize = 50;
pub const DEFAULT_KEEP_RELEASES: usize = 5;
/// What piku reads from stdin at most (keys for setup:ssh, config values).
pub const MAX_STDIN_BYTES: u64 = 4 << 20;
/// What piku reads from one git command's output at most (a Procfile, an ENV, a tree listing).
pub const MAX_GIT_OUTPUT_BYTES: u64 = 16 << 20;

/// A positive whole number from the server's settings, else `default`.
fn server_number(root: &Root, key: &str, default: u64) -> Result<u64> {
    match Settings::load(root)?.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::new(format!("{key} in {} is {v:?}, not a whole number above 0; fix it there", root.settings_file().display()))
        }),
    }
}

/// The largest push the server accepts, in bytes.
pub fn max_push_bytes(root: &Root) -> Result<u64> {
    Ok(server_number(root, "PIKU_MAX_PUSH_MB", DEFAULT_MAX_PUSH_MB)?.saturating_mul(1 << 20))
}

/// The most worker processes one app may run.
pub fn max_workers(root: &Root) -> Result<u64> {
    server_number(root, "PIKU_MAX_WORKERS", DEFAULT_MAX_WORKERS)
}

/// A push (or the tree it deploys) of `size` bytes, refused when too large.
pub fn check_push_size(root: &Root, app: &str, size: u64) -> Result<()> {
    let max = max_push_bytes(root)?;
    if size > max {
        return Err(Error::new(format!(
            "the push to '{app}' is {} MiB, more than this server accepts ({} MiB, PIKU_MAX_PUSH_MB in {}); make the repository smaller, or ask the server's owner to raise the limit",
            size.div_ceil(1 << 20),
            max >> 20,
            root.settings_file().display()
        )));
    }
    Ok(())
}

/// PIKU_KEEP_RELEASES as `value` states it: 1 to 50.
pub fn keep_releases(value: Option<&str>) -> Result<usize> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(DEFAULT_KEEP_RELEASES) };
    v.parse::<usize>().ok().filter(|n| (1..=MAX_KEEP_RELEASES).contains(n)).ok_or_else(|| {
        Error::new(format!("PIKU_KEEP_RELEASES is {v:?}; it must be a whole number from 1 to {MAX_KEEP_RELEASES}"))
    })
}

/// uWSGI processes per worker when UWSGI_PROCESSES is not set (piku-uwsgi's default).
pub const DEFAULT_PROCESSES: u64 = 2;

/// UWSGI_PROCESSES of `env` (default 2), and the total of worker
/// processes the counts in `scaling` would start: each within PIKU_MAX_WORKERS.
pub fn check_workers(root: &Root, app: &str, env: &Env, scaling: &BTreeMap<String, u32>) -> Result<()> {
    let max = max_workers(root)?;
    let fix = format!("lower it, or ask the server's owner to raise PIKU_MAX_WORKERS in {}", root.settings_file().display());
    let processes = match env.get("UWSGI_PROCESSES").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => DEFAULT_PROCESSES,
        Some(v) => v.parse::<u64>().map_err(|_| Error::new(format!("UWSGI_PROCESSES must be a whole number, not {v:?}")))?,
    };
    if processes > max {
        return Err(Error::new(format!("UWSGI_PROCESSES of '{app}' is {processes}, more than this server allows an app ({max}); {fix}")));
    }
    let vassals: u64 = scaling.values().map(|n| u64::from(*n)).sum();
    let total = vassals.saturating_mul(processes.max(1));
    if total > max {
        let counts: Vec<String> = scaling.iter().map(|(k, n)| format!("{k}={n}")).collect();
        return Err(Error::new(format!(
            "'{app}' would run {total} worker processes ({} x UWSGI_PROCESSES={processes}), more than this server allows an app ({max}); {fix}",
            counts.join(" ")
        )));
    }
    Ok(())
}

/// Read all of `reader`, refusing more than `max` bytes (`what` names it in the error).
pub fn read_bounded(reader: impl Read, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::new(format!("cannot read {what}: {e}")))?;
    if buf.len() as u64 > max {
        return Err(Error::new(format!("{what} is longer than {} bytes; nothing was changed", max)));
    }
    Ok(buf)
}

/// This process's stdin, at most MAX_STDIN_BYTES.
pub fn read_stdin(what: &str) -> Result<Vec<u8>> {
    read_bounded(std::io::stdin().lock(), MAX_STDIN_BYTES, what)
}

/// The stdout of `cmd` (stderr passed through), at most MAX_GIT_OUTPUT_BYTES;
/// None when it exits non-zero. A longer output kills it and is an error.
pub fn command_output(cmd: &mut std::process::Command, what: &str) -> Result<Option<Vec<u8>>> {
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| Error::new(format!("cannot run {what}: {e}")))?;
    let out = child.stdout.take().map(|o| read_bounded(o, MAX_GIT_OUTPUT_BYTES, what));
    if matches!(out, Some(Err(_))) {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| Error::new(format!("{what}: {e}")))?;
    let out = out.transpose()?.unwrap_or_default();
    Ok(status.success().then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(settings: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        std::fs::write(root.settings_file(), settings).unwrap();
        (dir, root)
    }

    #[test]
    fn push_size_is_bounded_by_the_servers_setting() {
        let (_d, root) = root_with("");
        assert_eq!(max_push_bytes(&root).unwrap(), 500 << 20);
        assert!(check_push_size(&root, "a", 500 << 20).is_ok());
        let err = check_push_size(&root, "a", (500 << 20) + 1).unwrap_err();
        assert!(err.message.contains("PIKU_MAX_PUSH_MB") && err.message.contains("'a'"), "{}", err.message);
        let (_d, root) = root_with("PIKU_MAX_PUSH_MB=1\n");
        assert!(check_push_size(&root, "a", 2 << 20).is_err());
        let (_d, root) = root_with("PIKU_MAX_PUSH_MB=lots\n");
        assert!(max_push_bytes(&root).unwrap_err().message.contains("PIKU_MAX_PUSH_MB"));
    }

    #[test]
    fn keep_releases_is_one_to_fifty() {
        assert_eq!(keep_releases(None).unwrap(), 5);
        assert_eq!(keep_releases(Some("50")).unwrap(), 50);
        for bad in ["0", "51", "1000000", "-1", "x"] {
            assert!(keep_releases(Some(bad)).unwrap_err().message.contains("1 to 50"), "{bad}");
        }
    }

    #[test]
    fn workers_per_app_are_bounded() {
        let (_d, root) = root_with("PIKU_MAX_WORKERS=8\n");
        let scaling: BTreeMap<String, u32> = [("web".to_string(), 2), ("worker".to_string(), 2)].into();
        let mut env = Env::new();
        env.insert("UWSGI_PROCESSES".into(), "2".into());
        assert!(check_workers(&root, "a", &env, &scaling).is_ok());
        env.insert("UWSGI_PROCESSES".into(), "3".into());
        let err = check_workers(&root, "a", &env, &scaling).unwrap_err();
        assert!(err.message.contains("12 worker processes") && err.message.contains("PIKU_MAX_WORKERS"), "{}", err.message);
        env.insert("UWSGI_PROCESSES".into(), "1000000".into());
        assert!(check_workers(&root, "a", &env, &BTreeMap::new()).unwrap_err().message.contains("UWSGI_PROCESSES of 'a' is 1000000"));
        let many: BTreeMap<String, u32> = [("worker".to_string(), 9)].into();
        assert!(check_workers(&root, "a", &Env::new(), &many).is_err());
    }

    #[test]
    fn reads_are_bounded() {
        assert_eq!(read_bounded(&b"abc"[..], 3, "x").unwrap(), b"abc");
        assert!(read_bounded(&b"abcd"[..], 3, "the key").unwrap_err().message.contains("the key is longer than 3 bytes"));
        let out = command_output(std::process::Command::new("head").args(["-c", "20000000", "/dev/zero"]), "head").unwrap_err();
        assert!(out.message.contains("longer than"), "{}", out.message);
        assert_eq!(command_output(std::process::Command::new("echo").arg("hi"), "echo").unwrap(), Some(b"hi\n".to_vec()));
        assert_eq!(command_output(&mut std::process::Command::new("false"), "false").unwrap(), None);
    }
}
