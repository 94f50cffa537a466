//! What a deploy chain stopped dead leaves behind, found without changing
//! anything (`piku repair` says it, then has hooks/post-receive put it
//! right, then looks again). A deploy lock cannot go stale: it is a flock,
//! which the kernel releases with the last process that held it.

use crate::app::AppName;
use crate::envfile;
use crate::error::Result;
use crate::paths::Root;
use crate::release::{self, Release};
use crate::swap;
use crate::vassals::{app_vassals, parse_vassal};
use std::fs::{File, TryLockError};

/// Is a `piku-uwsgi retire <app>` running now (an older generation in its drain)?
fn draining(app: &AppName) -> bool {
    let want = format!("\0retire\0{app}\0");
    crate::process::cmdlines().iter().any(|(_, c)| {
        let c = String::from_utf8_lossy(c);
        c.contains("piku-uwsgi\0") && c.ends_with(&want)
    })
}

/// Is the app's deploy lock held now (a deploy, restart or repair running)?
pub fn locked(root: &Root, app: &AppName) -> bool {
    let Ok(file) = File::options().write(true).open(root.lock_file(app)) else { return false };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

/// Each thing that is not as a finished deploy of the live release leaves it.
pub fn findings(root: &Root, app: &AppName) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Some(id) = release::live_id(root, app) else { return Ok(out) };
    let rel = Release::open(root, app, &id)?;
    let live_env = envfile::read_literal(&root.live_env_file(app))?;
    let release_env = envfile::read_literal(&rel.fact_file("env"))?;
    if live_env != release_env {
        out.push(format!("LIVE_ENV is not the environment of the live release {id} (a deploy stopped after switching apps/{app})"));
    }
    let Some(env) = release_env else { return Ok(out) };
    if !swap::per_release(&env) {
        return Ok(out);
    }
    let live = swap::live(root, app)?;
    let enabled = app_vassals(root, app, &root.dir("uwsgi-enabled"))?;
    let running = |g: u32| enabled.iter().any(|n| parse_vassal(app, n).and_then(|(_, _, t)| swap::parse_tag(&t?)) == Some(g));
    let is_draining = draining(app);
    match live {
        None => out.push(format!("no generation of web workers is live for release {id}")),
        Some(l) => {
            let record = swap::read(root, app, l)?;
            match &record {
                None => out.push(format!("the live generation {l} has no record (workers/{app}/g{l})")),
                Some(r) if r.release != id => out.push(format!("the live web workers (generation {l}) run release {}, not the live release {id}", r.release)),
                Some(_) if !running(l) => out.push(format!("the live generation {l} has no workers enabled")),
                Some(_) => {}
            }
            // nginx's stable sockets: each a link to the live generation's.
            let nginx = root.dir("nginx");
            let longer = crate::vassals::longer_apps(root, app);
            for file in fs_err::read_dir(&nginx).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()).unwrap_or_default() {
                if !(file == format!("{app}.sock") || crate::vassals::is_apps_file(&longer, app, &file)) {
                    continue;
                }
                let Ok(target) = fs_err::read_link(nginx.join(&file)) else {
                    // A generation's own socket: left behind once it has no record and no worker.
                    let label = file.strip_prefix(&format!("{app}_")).and_then(|f| f.strip_suffix(".sock")).unwrap_or_default();
                    if let Some(g) = crate::vassals::parse_worker_id(label).and_then(|(_, _, t)| swap::parse_tag(&t?)) {
                        if swap::read(root, app, g)?.is_none() && !crate::vassals::running_workers().contains(&format!("{app}:{label}")) {
                            out.push(format!("nginx/{file} is left by generation {g}, which no longer runs"));
                        }
                    }
                    continue;
                };
                let target = target.to_string_lossy().into_owned();
                let tag = target.strip_suffix(".sock").and_then(|t| t.rsplit('.').next()).and_then(swap::parse_tag);
                if tag != Some(l) {
                    out.push(format!("nginx's socket {file} leads to {target}, not to the live generation {l}"));
                }
            }
        }
    }
    // A vassal file of a generation that no longer runs, left in uwsgi-available.
    for name in app_vassals(root, app, &root.dir("uwsgi-available"))? {
        let Some(g) = parse_vassal(app, &name).and_then(|(_, _, t)| swap::parse_tag(&t?)) else { continue };
        if !running(g) && live.is_some_and(|l| g < l) && !is_draining {
            out.push(format!("uwsgi-available/{name} is left by generation {g}, which no longer runs"));
        }
    }
    for g in swap::generations(root, app)? {
        let release = swap::read(root, app, g)?.map(|r| r.release).unwrap_or_default();
        if live.is_none_or(|l| g > l) {
            out.push(format!("generation {g} (release {release}) was staged but never switched to"));
        } else if Some(g) != live && !is_draining {
            if running(g) {
                out.push(format!("generation {g} (release {release}) still runs beside the live one, and nothing drains it"));
            } else {
                out.push(format!("generation {g} (release {release}) stopped, but its record is left"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::Generation;

    /// A finished deploy of release r2 (generation 2), as the chain leaves it.
    fn deployed(dir: &std::path::Path) -> (Root, AppName) {
        let root = Root::at(dir);
        let app = AppName::parse("a").unwrap();
        let env = "NGINX_SERVER_NAME=a.example\n";
        for id in ["r1", "r2"] {
            std::fs::create_dir_all(root.releases_dir(&app).join(id)).unwrap();
            std::fs::write(root.releases_dir(&app).join(format!("{id}.env")), env).unwrap();
        }
        std::fs::create_dir_all(root.dir("apps")).unwrap();
        std::os::unix::fs::symlink(root.releases_dir(&app).join("r2"), root.app_dir(&app)).unwrap();
        std::fs::create_dir_all(root.env_dir(&app)).unwrap();
        std::fs::write(root.live_env_file(&app), env).unwrap();
        for d in ["uwsgi-enabled", "nginx"] {
            std::fs::create_dir_all(root.dir(d)).unwrap();
        }
        swap::write(&root, &app, 2, &Generation { release: "r2".into(), ports: [("web.1".to_string(), 5002)].into() }).unwrap();
        swap::set_live(&root, &app, 2).unwrap();
        std::fs::write(root.dir("uwsgi-enabled").join("a_web.1.g2.ini"), "").unwrap();
        std::os::unix::fs::symlink("a_web.1.g2.sock", root.dir("nginx").join("a_web.1.sock")).unwrap();
        (root, app)
    }

    #[test]
    fn a_finished_deploy_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, app) = deployed(dir.path());
        assert_eq!(findings(&root, &app).unwrap(), Vec::<String>::new());
        assert!(!locked(&root, &app));
    }

    #[test]
    fn what_a_stopped_chain_leaves_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (root, app) = deployed(dir.path());
        // Staged, never switched; the link switched but not LIVE_ENV; an old generation left running.
        swap::write(&root, &app, 3, &Generation { release: "r1".into(), ports: [("web.1".to_string(), 5003)].into() }).unwrap();
        swap::write(&root, &app, 1, &Generation { release: "r1".into(), ports: [("web.1".to_string(), 5001)].into() }).unwrap();
        std::fs::write(root.dir("uwsgi-enabled").join("a_web.1.g1.ini"), "").unwrap();
        std::fs::write(root.live_env_file(&app), "NGINX_SERVER_NAME=b.example\n").unwrap();
        std::fs::write(root.dir("nginx").join("a_web.1.g4.sock"), "").unwrap();
        std::fs::create_dir_all(root.dir("uwsgi-available")).unwrap();
        std::fs::write(root.dir("uwsgi-available").join("a_web.1.g0.ini"), "").unwrap();
        std::fs::remove_file(root.dir("nginx").join("a_web.1.sock")).unwrap();
        std::os::unix::fs::symlink("a_web.1.g1.sock", root.dir("nginx").join("a_web.1.sock")).unwrap();
        let found = findings(&root, &app).unwrap().join("\n");
        for needle in ["LIVE_ENV is not", "a_web.1.sock leads to a_web.1.g1.sock", "generation 3 (release r1) was staged but never switched", "generation 1 (release r1) still runs", "nginx/a_web.1.g4.sock is left by generation 4", "uwsgi-available/a_web.1.g0.ini is left by generation 0"] {
            assert!(found.contains(needle), "{needle:?} not in:\n{found}");
        }
        // The lock: held while a deploy runs, free once its holder is gone.
        std::fs::create_dir_all(root.dir("locks")).unwrap();
        let held = crate::lock::AppLock::acquire(&root, &app).unwrap();
        assert!(locked(&root, &app));
        drop(held);
        assert!(!locked(&root, &app));
    }
}
