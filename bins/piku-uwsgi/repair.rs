//! `repair <app>`: the workers' part of `piku repair`, which
//! hooks/post-receive runs under the app's deploy lock once LIVE_ENV is the
//! live release's again. What a deploy chain stopped dead (kill -9, a power
//! cut) can leave: a generation staged but never switched (stopped here;
//! unless it runs the live release and the live generation does not: the
//! chain stopped between the link switch and the worker switch, so the swap
//! switches to it), a live generation with workers missing, nginx's stable
//! sockets still on an older generation. Then the workers are published as a
//! deploy would; `retire` stops what is older. Findings: lib repair.rs.

use piku::envfile;
use piku::error::Result;
use piku::release::Release;
use piku::swap;
use piku::vassals::{self, app_vassals, parse_vassal, worker_label};
use piku::{AppName, Root, atomic, output};
use std::time::{Duration, Instant};

pub fn repair(root: &Root, app: &AppName) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let live = swap::live(root, app)?;
    let live_release = match live {
        Some(l) => swap::read(root, app, l)?.map(|r| r.release),
        None => None,
    };
    for g in swap::generations(root, app)? {
        if live.is_some_and(|l| g <= l) {
            continue;
        }
        let Some(record) = swap::read(root, app, g)? else { continue };
        if record.release == rel.id && live_release.as_deref() != Some(rel.id.as_str()) {
            output::step(format!("Generation {g} of '{app}' runs the live release {} but was never switched to: switching now", rel.id));
            continue;
        }
        let mut titles = Vec::new();
        for dir in [root.dir("uwsgi-enabled"), root.dir("uwsgi-available")] {
            for name in app_vassals(root, app, &dir)? {
                if parse_vassal(app, &name).and_then(|(_, _, t)| swap::parse_tag(&t?)) == Some(g) {
                    atomic::remove_file(&dir.join(&name))?;
                    titles.push(format!("{app}:{}", worker_label(app, &name)));
                }
            }
        }
        // The emperor stops them; then their sockets go (uWSGI leaves them).
        let env = envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
        let deadline = Instant::now() + super::seconds(root, &env, "PIKU_STOP_TIMEOUT", 30)?;
        while vassals::running_workers().iter().any(|t| titles.contains(t)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        swap::remove(root, app, g)?;
        output::step(format!("Stopped generation {g} of '{app}' (release {}): it was staged but never switched to", record.release));
    }
    remove_orphan_sockets(root, app)?;
    super::publish(root, app, false)
}

/// Sockets of generations that have no record (stopped, forgotten) and no
/// running worker: uWSGI leaves a socket file behind when a worker stops.
fn remove_orphan_sockets(root: &Root, app: &AppName) -> Result<()> {
    let recorded = swap::generations(root, app)?;
    let running = vassals::running_workers();
    let nginx = root.dir("nginx");
    let longer = vassals::longer_apps(root, app);
    for file in fs_err::read_dir(&nginx).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()).unwrap_or_default() {
        if !vassals::is_apps_file(&longer, app, &file) || nginx.join(&file).is_symlink() {
            continue;
        }
        let Some(label) = file.strip_prefix(&format!("{app}_")).and_then(|f| f.strip_suffix(".sock")) else { continue };
        let Some(g) = vassals::parse_worker_id(label).and_then(|(_, _, t)| swap::parse_tag(&t?)) else { continue };
        if !recorded.contains(&g) && !running.contains(&format!("{app}:{label}")) {
            atomic::remove_file(&nginx.join(&file))?;
            output::step(format!("Removed {file}, the socket of generation {g} of '{app}', which no longer runs"));
        }
    }
    Ok(())
}
