//! nginx's worker processes, as /proc shows them: a reload is done when a
//! worker started after it serves, and the previous configuration is gone
//! when no worker "is shutting down" any more. Read-only; any user may look.

/// One nginx worker: its pid, and whether it is finishing after a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub pid: u32,
    pub retiring: bool,
}

/// A worker from its /proc cmdline, if it is one.
fn parse(pid: u32, cmdline: &[u8]) -> Option<Worker> {
    let title = cmdline.split(|b| *b == 0).next()?;
    if title.starts_with(b"nginx: worker process is shutting down") {
        Some(Worker { pid, retiring: true })
    } else if title.starts_with(b"nginx: worker process") {
        Some(Worker { pid, retiring: false })
    } else {
        None
    }
}

/// Every nginx worker on this machine.
pub fn workers() -> Vec<Worker> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return vec![] };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse().ok()?;
            parse(pid, &std::fs::read(p.path().join("cmdline")).ok()?)
        })
        .collect()
}

/// The pids of the workers serving now.
pub fn serving() -> Vec<u32> {
    workers().into_iter().filter(|w| !w.retiring).map(|w| w.pid).collect()
}

/// Is a worker from before a reload still finishing its requests?
pub fn any_retiring() -> bool {
    workers().iter().any(|w| w.retiring)
}

/// After a reload: wait (at most `limit`) until a worker that was not among
/// `before` serves. False when none appeared in time, or when no worker was
/// visible before (another pid namespace, or nginx not running): nothing to
/// wait for.
pub fn wait_for_new(before: &[u32], limit: std::time::Duration) -> bool {
    if before.is_empty() {
        return false;
    }
    let deadline = std::time::Instant::now() + limit;
    loop {
        if serving().iter().any(|pid| !before.contains(pid)) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_told_by_their_titles() {
        assert_eq!(parse(7, b"nginx: worker process\0\0"), Some(Worker { pid: 7, retiring: false }));
        assert_eq!(parse(8, b"nginx: worker process is shutting down\0"), Some(Worker { pid: 8, retiring: true }));
        assert_eq!(parse(9, b"nginx: master process /usr/sbin/nginx\0"), None);
        assert_eq!(parse(10, b"/usr/bin/python3\0app.py\0"), None);
    }

    #[test]
    fn nothing_to_wait_for_without_workers_before() {
        let started = std::time::Instant::now();
        assert!(!wait_for_new(&[], std::time::Duration::from_secs(5)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
