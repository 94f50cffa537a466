//! piku-build: from a release tree to something runnable.
//!
//!   piku-build <app> <release-id>
//!       detect the runtime (piku's rules, first match wins), install the
//!       dependencies into a dependency environment envs/<app>/<runtime>-<hash>
//!       keyed by the manifest's content (unchanged -> reused, skipped), and
//!       record the result in releases/<app>/<id>.build.
//!   piku-build --task release|preflight <app> <release-id>
//!       run that Procfile task in the release's tree with its resolved
//!       environment (releases/<app>/<id>.env); a failure stops the deploy.
//!   piku-build --destroy <app>
//!       remove the app's dependency environments (directories in envs/<app>).

use piku::envfile::{self, Env};
use piku::error::{Error, IoContext, Result};
use piku::procfile::Procfile;
use piku::release::Release;
use piku::{AppName, Root, atomic, output, process};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    output::run_main("piku-build", |args| {
        let root = Root::from_env();
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["--task", task @ ("release" | "preflight"), app, id] => {
                let rel = Release::open(&root, &AppName::parse(app)?, id)?;
                run_task(&rel, task)
            }
            ["--destroy", app] => destroy(&root, &AppName::parse(app)?),
            [app, id] if !app.starts_with('-') => {
                let rel = Release::open(&root, &AppName::parse(app)?, id)?;
                build(&root, &rel)
            }
            _ => Err(Error::usage("usage: piku-build <app> <release-id> | --task release|preflight <app> <release-id> | --destroy <app>")),
        }
    })
}

/// What a runtime needs: the files that key its dependency environment, the
/// tools it runs, and how to fill a fresh environment.
struct Runtime {
    name: &'static str,
    /// Files whose content decides whether the dependency environment is reusable.
    manifests: &'static [&'static str],
    /// (program, Debian package that provides it)
    tools: &'static [(&'static str, &'static str)],
    install: Option<fn(&Ctx, &Path) -> Result<()>>,
}

struct Ctx<'a> {
    rel: &'a Release,
    settings: Env,
}

const PYTHON: Runtime = Runtime {
    name: "python",
    manifests: &["requirements.txt"],
    tools: &[("python3", "python3")],
    install: Some(install_python),
};
const GENERIC: Runtime = Runtime { name: "generic", manifests: &[], tools: &[], install: None };
const STATIC: Runtime = Runtime { name: "static", manifests: &[], tools: &[], install: None };

/// piku's detection order, first match wins.
fn detect(tree: &Path, procfile: &Procfile) -> (&'static Runtime, &'static str) {
    if tree.join("requirements.txt").is_file() {
        (&PYTHON, "Python app detected (requirements.txt)")
    } else if procfile.has("static") && procfile.workers().all(|w| w.kind == "static") {
        (&STATIC, "Static app detected")
    } else {
        (&GENERIC, "Generic app detected")
    }
}

fn build(root: &Root, rel: &Release) -> Result<()> {
    let procfile = rel.procfile()?;
    for w in &procfile.warnings {
        output::warn(w);
    }
    let settings = rel.settings(root)?;
    let (runtime, said) = detect(&rel.dir, &procfile);
    output::step(said);
    for (tool, package) in runtime.tools {
        let wanted = if *tool == "python3" { python_for(&settings) } else { tool.to_string() };
        if process::which(&wanted).is_none() {
            return Err(Error::new(format!(
                "{} app '{}' needs '{wanted}', which is not installed on the server (Debian package: {package})",
                runtime.name, rel.app
            )));
        }
    }

    let env_root = root.env_dir(&rel.app);
    std::fs::create_dir_all(&env_root).at("create directory", &env_root)?;
    let mut facts = Env::new();
    facts.insert("RUNTIME".into(), runtime.name.into());
    let ctx = Ctx { rel, settings };
    if let Some(install) = runtime.install {
        let key = dependency_key(&ctx, runtime)?;
        let env_dir = env_root.join(format!("{}-{key}", runtime.name));
        if env_dir.join(COMPLETE).is_file() {
            output::step(format!("Dependencies unchanged, skipped (reusing {})", env_dir.display()));
        } else {
            if env_dir.exists() {
                std::fs::remove_dir_all(&env_dir).at("remove an unfinished environment", &env_dir)?;
            }
            output::step(format!("Installing dependencies into {}", env_dir.display()));
            if let Err(e) = install(&ctx, &env_dir) {
                let _ = std::fs::remove_dir_all(&env_dir);
                return Err(e);
            }
            atomic::write_file(&env_dir.join(COMPLETE), key.as_bytes(), 0o644)?;
        }
        facts.insert("VIRTUAL_ENV".into(), env_dir.display().to_string());
        remove_unused_environments(root, rel, &env_dir);
    }
    atomic::write_file(&rel.fact_file("build"), envfile::render(&facts)?.as_bytes(), 0o644)
}

/// Marks a dependency environment as completely built.
const COMPLETE: &str = ".piku-complete";

/// The key of a dependency environment: the manifests' content and the runtime version.
fn dependency_key(ctx: &Ctx, runtime: &Runtime) -> Result<String> {
    let mut h = Fnv::default();
    h.write(runtime.name.as_bytes());
    h.write(python_for(&ctx.settings).as_bytes());
    for m in runtime.manifests {
        let path = ctx.rel.dir.join(m);
        match std::fs::read(&path) {
            Ok(bytes) => {
                h.write(m.as_bytes());
                h.write(&(bytes.len() as u64).to_le_bytes());
                h.write(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &path, e)),
        }
    }
    Ok(format!("{:016x}", h.0))
}

/// FNV-1a, 64 bits: a cache key, not a security boundary.
struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate fields so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// `PYTHON_VERSION` (`3`, `3.11`) -> the interpreter to use (`python3`, `python3.11`).
fn python_for(settings: &Env) -> String {
    let v = settings.get("PYTHON_VERSION").map(|s| s.trim()).filter(|s| !s.is_empty()).unwrap_or("3");
    if v.chars().all(|c| c.is_ascii_digit() || c == '.') { format!("python{v}") } else { "python3".into() }
}

fn install_python(ctx: &Ctx, env_dir: &Path) -> Result<()> {
    let python = python_for(&ctx.settings);
    let mut venv = if process::which("virtualenv").is_some() {
        let mut c = Command::new("virtualenv");
        c.arg(format!("--python={python}")).arg(env_dir);
        c
    } else {
        let mut c = Command::new(&python);
        c.args(["-m", "venv"]).arg(env_dir);
        c
    };
    process::run_streamed(&mut venv, &format!("creating the virtualenv for '{}'", ctx.rel.app))?;
    let pip = env_dir.join("bin/pip");
    process::run_streamed(
        Command::new(&pip)
            .args(["install", "--disable-pip-version-check", "--progress-bar", "off", "-r"])
            .arg(ctx.rel.dir.join("requirements.txt"))
            .current_dir(&ctx.rel.dir)
            .env("PYTHONUNBUFFERED", "1"),
        &format!("pip install for '{}'", ctx.rel.app),
    )
}

/// Remove dependency environments that no kept release uses any more.
fn remove_unused_environments(root: &Root, rel: &Release, current: &Path) {
    let releases = root.releases_dir(&rel.app);
    let mut used: Vec<PathBuf> = vec![current.to_path_buf()];
    for id in piku::release::list_ids(root, &rel.app) {
        if let Ok(Some(facts)) = envfile::read_literal(&releases.join(format!("{id}.build"))) {
            if let Some(v) = facts.get("VIRTUAL_ENV") {
                used.push(PathBuf::from(v));
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(root.env_dir(&rel.app)) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path.join(COMPLETE).is_file() && !used.contains(&path) {
            output::step(format!("Removing unused dependency environment {}", path.display()));
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Run the `release` (or `preflight`) task of a release in its tree, with its environment.
fn run_task(rel: &Release, task: &str) -> Result<()> {
    let procfile = rel.procfile()?;
    let Some(command) = procfile.get(task) else { return Ok(()) };
    let env = envfile::read_literal(&rel.fact_file("env"))?
        .ok_or_else(|| Error::new(format!("release {} of '{}' has no resolved environment; run piku-config first", rel.id, rel.app)))?;
    output::step(format!("Running {task} task: {command}"));
    let mut cmd = Command::new("sh");
    cmd.args(["-c", command]).current_dir(&rel.dir).env_clear().envs(&env).env("PWD", &rel.dir).env("PROC_TYPE", task);
    process::run_streamed(&mut cmd, &format!("the {task} task of '{}'", rel.app))
}

/// Remove every directory in envs/<app>: the dependency environments (and a
/// virtualenv piku.py left there). Files belong to the other tools.
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(root.env_dir(app)) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(e.path()).at("remove", &e.path())?;
        }
    }
    Ok(())
}
