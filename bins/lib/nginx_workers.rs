//! nginx's worker processes, as /proc shows them. On a reload the master
//! starts workers with the new configuration, and only ~100 ms later tells
//! the old ones to stop accepting ("is shutting down"): the new configuration
//! answers every request once, under one master, a new worker serves and no
//! old one still does. Read-only; any user may look.

use fs_err as fs;
use std::collections::BTreeMap;

/// One nginx worker: its pid, its master's, and whether it is finishing
/// after a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub pid: u32,
    pub master: u32,
    pub retiring: bool,
}

/// A worker from its /proc cmdline and stat, if it is one.
fn parse(pid: u32, cmdline: &[u8], stat: &str) -> Option<Worker> {
    let title = cmdline.split(|b| *b == 0).next()?;
    let retiring = if title.starts_with(b"nginx: worker process is shutting down") {
        true
    } else if title.starts_with(b"nginx: worker process") {
        false
    } else {
        return None;
    };
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let master = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
    Some(Worker { pid, master, retiring })
}

/// Every nginx worker on this machine.
pub fn workers() -> Vec<Worker> {
    crate::process::cmdlines()
        .into_iter()
        .filter(|(_, cmdline)| cmdline.starts_with(b"nginx: worker"))
        .filter_map(|(pid, cmdline)| parse(pid, &cmdline, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect()
}

/// The workers serving now, by master.
pub fn serving() -> BTreeMap<u32, Vec<u32>> {
    let mut by_master: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for w in workers().into_iter().filter(|w| !w.retiring) {
        by_master.entry(w.master).or_default().push(w.pid);
    }
    by_master
}

/// Has some master replaced all its workers of `before` by new ones?
fn reloaded(before: &BTreeMap<u32, Vec<u32>>, now: &BTreeMap<u32, Vec<u32>>) -> bool {
    now.iter().any(|(master, pids)| {
        let old = before.get(master).map(Vec::as_slice).unwrap_or(&[]);
        !old.is_empty() && pids.iter().all(|p| !old.contains(p))
    })
}

/// Is a worker from before a reload still finishing its requests?
pub fn any_retiring() -> bool {
    workers().iter().any(|w| w.retiring)
}

/// Has some master started a worker that was not among `before`?
fn started_new(before: &BTreeMap<u32, Vec<u32>>, now: &BTreeMap<u32, Vec<u32>>) -> bool {
    now.iter().any(|(master, pids)| before.get(master).is_some_and(|old| pids.iter().any(|p| !old.contains(p))))
}

/// After a reload: wait (at most `limit`) until one master serves only with
/// workers that were not among `before`. False when that did not happen in
/// time, when no master started a new worker within a second (the reload
/// command reached no nginx this process can see), or when no worker was
/// visible before (another pid namespace, or nginx not running).
pub fn wait_for_new(before: &BTreeMap<u32, Vec<u32>>, limit: std::time::Duration) -> bool {
    if before.is_empty() {
        return false;
    }
    let started = std::time::Instant::now();
    let mut seen_new = false;
    loop {
        let now = serving();
        if reloaded(before, &now) {
            return true;
        }
        seen_new = seen_new || started_new(before, &now);
        let waited = started.elapsed();
        if waited >= limit || (!seen_new && waited >= std::time::Duration::from_secs(1).min(limit)) {
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
        let stat = "7 (nginx) S 3 3 3 0 -1 4194624";
        assert_eq!(parse(7, b"nginx: worker process\0\0", stat), Some(Worker { pid: 7, master: 3, retiring: false }));
        let stat = "8 (odd) name)) S 3 3 3";
        assert_eq!(parse(8, b"nginx: worker process is shutting down\0", stat), Some(Worker { pid: 8, master: 3, retiring: true }));
        assert_eq!(parse(9, b"nginx: master process /usr/sbin/nginx\0", "9 (nginx) S 1"), None);
        assert_eq!(parse(10, b"/usr/bin/python3\0app.py\0", "10 (python3) S 1"), None);
    }

    #[test]
    fn a_reload_is_done_when_one_master_serves_only_with_new_workers() {
        let map = |v: &[(u32, &[u32])]| v.iter().map(|(m, p)| (*m, p.to_vec())).collect::<BTreeMap<_, _>>();
        let before = map(&[(3, &[10, 11]), (50, &[51])]);
        assert!(!reloaded(&before, &before), "nothing changed");
        assert!(!reloaded(&before, &map(&[(3, &[10, 11, 12, 13]), (50, &[51])])), "old workers still accept");
        assert!(reloaded(&before, &map(&[(3, &[12, 13]), (50, &[51])])));
        assert!(!reloaded(&before, &map(&[(3, &[10, 11]), (50, &[51]), (60, &[61])])), "a master that was not there");
        assert!(started_new(&before, &map(&[(3, &[10, 11, 12]), (50, &[51])])));
        assert!(!started_new(&before, &map(&[(3, &[10]), (50, &[51]), (60, &[61])])));
    }

    #[test]
    fn a_reload_that_reached_no_nginx_is_not_waited_for_long() {
        // Masters that exist nowhere: nothing of theirs will ever change.
        let before: BTreeMap<u32, Vec<u32>> = [(u32::MAX, vec![u32::MAX])].into_iter().collect();
        let started = std::time::Instant::now();
        assert!(!wait_for_new(&before, std::time::Duration::from_secs(30)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn nothing_to_wait_for_without_workers_before() {
        let started = std::time::Instant::now();
        assert!(!wait_for_new(&BTreeMap::new(), std::time::Duration::from_secs(5)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
