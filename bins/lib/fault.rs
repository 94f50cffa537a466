//! Test hook: named failpoints where the deploy chain can be stopped dead.
//!
//! `PIKU_FAULT_KILL=<point>` (read once per process) makes `point("<point>")`
//! send SIGKILL to the caller's whole process group (`kill -9 0`): the hook,
//! every tool it runs, and whatever started it in the same group (git
//! receive-pack, the ssh session's command), as a power cut or an OOM kill of
//! the chain would. Unset (always, outside tests), a point costs one lookup.
//! The hook has the same points as shell lines (`fault <point>`); the list of
//! points is in the README ("Crash consistency").

use std::sync::OnceLock;

/// The point named by PIKU_FAULT_KILL, if any.
fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var("PIKU_FAULT_KILL").ok().filter(|p| !p.is_empty())).as_deref()
}

/// Stop the chain here with `kill -9` of its process group, when
/// PIKU_FAULT_KILL names this point; otherwise do nothing.
pub fn point(name: &str) {
    if armed() != Some(name) {
        return;
    }
    eprintln!(" !     PIKU_FAULT_KILL={name}: killing the deploy chain (kill -9 of its process group)");
    // kill(1) with pid 0 signals its own process group, which is ours.
    let _ = std::process::Command::new("kill").args(["-9", "0"]).status();
    // Not reached unless kill(1) is missing: still never go on past the point.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_point_that_is_not_armed_does_nothing() {
        // PIKU_FAULT_KILL is not set under `cargo test`: returning proves it.
        assert!(std::env::var_os("PIKU_FAULT_KILL").is_none());
        super::point("after-switch");
    }
}
