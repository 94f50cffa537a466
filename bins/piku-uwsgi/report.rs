//! What piku-uwsgi reports and stores for the user: `ps`, `ps:scale`, `logs`.

use piku::error::{Error, Result};
use piku::release::Release;
use piku::scaling::{self, read_scaling};
use piku::vassals::{self, app_vassals, is_web_facing, parse_vassal, vassal_name, worker_id, worker_label};
use fs_err as fs;
use piku::{AppName, Root, atomic, output};

/// SCALING, and for each worker whether its vassal is enabled and its master runs.
pub fn ps(root: &Root, app: &AppName, json: bool) -> Result<()> {
    let counts = read_scaling(root, app)?;
    if counts.is_empty() {
        return Err(Error::new(format!("app '{app}' has no workers yet; push to deploy it")));
    }
    let enabled: Vec<String> = app_vassals(root, app, &root.dir("uwsgi-enabled"))?;
    let running = vassals::running_workers();
    let live = piku::swap::live(root, app)?.map(piku::swap::tag);
    let mut kinds_json = Vec::new();
    for (kind, count) in &counts {
        if !json {
            output::data(format!("{kind}:{count}"));
        }
        let mut workers_json = Vec::new();
        for n in 1..=*count {
            let state = if kind == "static" {
                "served by nginx"
            } else {
                let names = [None, live.as_deref()].map(|c| (c, vassal_name(app, kind, n, c)));
                let on: Vec<_> = names.iter().filter(|(_, name)| enabled.contains(name)).collect();
                if on.is_empty() {
                    "stopped"
                } else if on.iter().any(|(c, _)| running.contains(&format!("{app}:{}", worker_id(kind, n, *c)))) {
                    "running"
                } else {
                    "starting"
                }
            };
            if json {
                workers_json.push(format!("{{\"name\":\"{kind}.{n}\",\"state\":\"{state}\"}}"));
            } else {
                output::data(format!("  {kind}.{n} {state}"));
            }
        }
        kinds_json.push(format!("{}:{{\"count\":{count},\"workers\":[{}]}}", output::json_string(kind), workers_json.join(",")));
    }
    // Web workers of older generations, still finishing their requests.
    let draining: Vec<String> = enabled
        .iter()
        .filter(|name| parse_vassal(app, name).is_some_and(|(k, _, t)| is_web_facing(&k) && t.is_some() && t != live))
        .map(|name| worker_label(app, name))
        .collect();
    if json {
        let list: Vec<String> = draining.iter().map(|d| output::json_string(d)).collect();
        output::data(format!("{{{},\"draining\":[{}]}}", kinds_json.join(","), list.join(",")));
    } else {
        for d in draining {
            output::data(format!("  {d} draining"));
        }
    }
    Ok(())
}

/// `ps:scale`: check every `kind=N` against the live Procfile, then store SCALING.
pub fn scale(root: &Root, app: &AppName, pairs: &[&str]) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let procfile = rel.procfile()?;
    let mut counts = read_scaling(root, app)?;
    let mut changes = Vec::new();
    for pair in pairs {
        let (kind, n) = scaling::parse_scale_arg(pair).map_err(|e| Error::new(format!("{e}; nothing was changed")))?;
        if !procfile.workers().any(|w| w.kind == kind) {
            let kinds: Vec<&str> = procfile.workers().map(|w| w.kind.as_str()).collect();
            return Err(Error::new(format!("'{app}' has no '{kind}' worker (its Procfile has: {}); nothing was changed", kinds.join(", "))));
        }
        if kind == "static" && n > 1 {
            return Err(Error::new("'static' is served by nginx and cannot be scaled beyond 1; nothing was changed"));
        }
        changes.push((kind, n));
    }
    let mut wanted: std::collections::BTreeMap<String, u32> = procfile.workers().map(|w| (w.kind.clone(), counts.get(&w.kind).copied().unwrap_or(1))).collect();
    wanted.extend(changes.iter().cloned());
    let env = piku::envfile::read_literal(&root.live_env_file(app))?.unwrap_or_default();
    piku::limits::check_workers(root, app.as_str(), &env, &wanted).map_err(|e| Error::new(format!("{}; nothing was changed", e.message)))?;
    for (kind, n) in changes {
        output::step(format!("Scaling {app}:{kind} to {n}"));
        counts.insert(kind, n);
    }
    let text = scaling::render_counts(procfile.workers().map(|w| (w.kind.as_str(), counts.get(&w.kind).copied().unwrap_or(1))));
    atomic::write_file(&root.scaling_file(app), text.as_bytes(), 0o644)
}

/// `logs`: the last lines of each worker log (or one kind's), then follow.
pub fn logs(root: &Root, app: &AppName, kind: Option<&str>, lines: usize, follow: bool) -> Result<()> {
    let dir = root.log_dir(app);
    // Web workers log per generation: show the live one's, as `kind.n`.
    let live = piku::swap::live(root, app)?.map(piku::swap::tag);
    let mut files: Vec<(String, std::path::PathBuf)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".log").map(str::to_string))
                .filter(|label| kind.is_none_or(|k| label.split('.').next() == Some(k)))
                .filter_map(|label| {
                    let path = dir.join(format!("{label}.log"));
                    match vassals::parse_worker_id(&label) {
                        Some((k, n, Some(t))) => (Some(&t) == live.as_ref()).then(|| (worker_id(&k, n, None), path)),
                        _ => Some((label, path)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        return Err(Error::new(match kind {
            Some(k) => format!("no logs for '{app}' worker '{k}'"),
            None => format!("no logs for '{app}' yet"),
        }));
    }
    piku::logtail::tail(files, lines, follow);
    Ok(())
}
