//! piku-build: from a release tree to something runnable. Its modes (build,
//! task, destroy) are the subcommands below; `piku-build --help` and
//! `piku-build <mode> --help` print their help. The runtimes: runtimes.rs.
//!
//! What goes in envs/<app>/, all keyed so that nothing a kept release uses is
//! ever changed (a new key means a new directory beside the live one):
//!   <runtime>-<key>          an environment (virtualenv, gems, node_modules),
//!                            keyed by the hash of the dependency manifests and
//!                            the runtime version; unchanged -> reused as is.
//!   <runtime>-cache-<key>    compiled languages (Go, Rust, Java, Clojure): the
//!                            dependency cache (GOPATH, CARGO_HOME, the Maven
//!                            repository), keyed the same way. The program itself
//!                            depends on the source, so it is compiled on every
//!                            deploy: into the tree (Java, Clojure) or into
//!   <runtime>-release-<id>   the release's own output directory (Go, Rust),
//!                            whose bin/ is on the app's PATH.
//! A directory is finished when it holds `.piku-complete`; an unfinished one
//! (a crash) is removed and rebuilt. A failed install removes only what it made.
//! Directories no kept release (nor LIVE_ENV) refers to are removed.
//!
//! The build's tools are looked up on the *app's* PATH: `PATH` from
//! $PIKU_ROOT/settings (else the default base PATH, see piku::paths::base_path),
//! as the app's ENV and config may extend it — never the caller's PATH, so a
//! push, `piku deploy` and a shell build alike, with the tools the app will run
//! with. The build's commands get the app's ENV and config as their environment
//! (NPM_CONFIG_REGISTRY, GOFLAGS, RUSTFLAGS, ...), as piku does.

#[path = "piku-build/runtimes.rs"]
mod runtimes;

use argh::FromArgs;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::settings::Settings;
use piku::{AppName, Root, atomic, output, process};
use runtimes::{Build, Compiler, Runtime};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// From a release tree to something runnable: detect the runtime, install the
/// dependencies, run the Procfile's tasks.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} build myapp 20240101-120000-5f3c2a1\n{command_name} task release myapp 20240101-120000-5f3c2a1",
    error_code(1, "the work failed (the message says why and what to do)"),
    error_code(2, "usage error: nothing was done")
)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Build(BuildArgs),
    Task(TaskArgs),
    Destroy(DestroyArgs),
    Runtimes(RuntimesArgs),
}

/// detect the release's runtime and install its dependencies.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "build",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp 20240101-120000-5f3c2a1",
    note = "Detects the runtime (piku's rules and order, first match wins), runs the Procfile's preflight task (in the tree, with the environment piku-config resolves for the release; a failure stops the build), installs the dependencies and records the result in releases/<app>/<id>.build (RUNTIME, VIRTUAL_ENV, NODE_PATH, PATH_PREFIX, BUILD_CACHE), which piku-config turns into the app's environment. The runtimes and their rules: the README's table."
)]
struct BuildArgs {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// run a Procfile task (release or preflight) in the release's tree.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "task",
    help_triggers("-h", "--help"),
    example = "{command_name} release myapp 20240101-120000-5f3c2a1",
    note = "The task runs with the release's resolved environment (releases/<app>/<id>.env); a failure stops the deploy. A Procfile without the task: nothing to do."
)]
struct TaskArgs {
    /// release or preflight
    #[argh(positional)]
    task: Task,
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// remove the app's dependency environments (the directories in envs/<app>).
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct DestroyArgs {
    /// the app
    #[argh(positional)]
    app: String,
}

/// list the runtimes, in the order they are detected (first match wins).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "runtimes",
    help_triggers("-h", "--help"),
    example = "{command_name}",
    note = "One line each: the runtime's name (RUNTIME in the app's environment), a tab, what in the release selects it."
)]
struct RuntimesArgs {}

/// The Procfile tasks a deploy runs.
struct Task(&'static str);

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "release" => Ok(Task("release")),
            "preflight" => Ok(Task("preflight")),
            _ => Err("expected release or preflight".into()),
        }
    }
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-build", || {
        let root = Root::from_env();
        match args.mode {
            Mode::Task(a) => run_task(&Release::open(&root, &AppName::parse(&a.app)?, &a.release)?, a.task.0),
            Mode::Destroy(a) => destroy(&root, &AppName::parse(&a.app)?),
            Mode::Build(a) => {
                let app = AppName::parse(&a.app)?;
                release::remove_facts(&root, &app, "build", false)?;
                build(&root, &Release::open(&root, &app, &a.release)?)
            }
            Mode::Runtimes(_) => {
                for runtime in runtimes::ALL {
                    output::data(format!("{}\t{}", runtime.name, runtime.detected_by.replace('`', "")));
                }
                Ok(())
            }
        }
    })
}

fn build(root: &Root, rel: &Release) -> Result<()> {
    let procfile = rel.procfile()?;
    for w in &procfile.warnings {
        output::warn(w);
    }
    let ctx = Ctx::new(root, rel)?;
    let runtime = runtimes::detect(&ctx, &procfile)?;
    runtimes::check_tools(&ctx, runtime)?;
    if procfile.has("preflight") {
        run_preflight(rel)?;
    }

    let env_root = root.env_dir(&rel.app);
    fs::create_dir_all(&env_root)?;
    let mut facts = Env::new();
    facts.insert("RUNTIME".into(), runtime.name.into());
    match runtime.build {
        Build::Nothing => {}
        Build::Environment { install, attach } => {
            let env = env_root.join(format!("{}-{}", runtime.name, dependency_key(&ctx, runtime)?));
            if is_complete(&env) {
                output::step(format!("Dependencies unchanged, skipped (reusing {})", env.display()));
            } else {
                start_fresh(&env)?;
                output::step(format!("Installing dependencies into {}", env.display()));
                if let Err(e) = install(&ctx, &env) {
                    let _ = remove_tree(&env);
                    return Err(e);
                }
                mark_complete(&env)?;
            }
            facts.insert("VIRTUAL_ENV".into(), env.display().to_string());
            attach(&ctx, &env, &mut facts)?;
        }
        Build::Compiled(ref compiler) => build_compiled(&ctx, runtime, compiler, &env_root, &mut facts)?,
    }
    remove_unused_environments(root, rel, &facts);
    atomic::write_file(&rel.fact_file("build"), envfile::render(&facts)?.as_bytes(), 0o644)
}

/// A compiled language: dependencies cached by manifest, the program built
/// once per release (the same release built again by hand is not rebuilt).
fn build_compiled(ctx: &Ctx, runtime: &Runtime, compiler: &Compiler, env_root: &Path, facts: &mut Env) -> Result<()> {
    let cache = env_root.join(format!("{}-cache-{}", runtime.name, dependency_key(ctx, runtime)?));
    let new_cache = !is_complete(&cache);
    if new_cache {
        start_fresh(&cache)?;
        fs::create_dir_all(&cache)?;
        output::step(format!("Dependencies new or changed: a new dependency cache, {}", cache.display()));
        if let Err(e) = (compiler.fetch)(ctx, &cache) {
            let _ = remove_tree(&cache);
            return Err(e);
        }
    } else {
        output::step(format!("Dependencies unchanged, skipped (reusing the dependency cache {})", cache.display()));
    }
    facts.insert("BUILD_CACHE".into(), cache.display().to_string());
    let out = compiler.output_dir.then(|| env_root.join(format!("{}-release-{}", runtime.name, ctx.rel.id)));
    if let Some(out) = &out {
        facts.insert("VIRTUAL_ENV".into(), out.display().to_string());
    }

    let before = envfile::read_literal(&ctx.rel.fact_file("build"))?.unwrap_or_default();
    let built = before.get("RUNTIME") == facts.get("RUNTIME")
        && before.get("BUILD_CACHE") == facts.get("BUILD_CACHE")
        && out.as_deref().is_none_or(is_complete);
    if built {
        output::step(format!("Release {} is already built, skipped (push a new commit to rebuild it)", ctx.rel.id));
        return Ok(());
    }
    if let Some(out) = &out {
        start_fresh(out)?;
        fs::create_dir_all(out.join("bin"))?;
    }
    output::step(format!(
        "Compiling '{}' (on every deploy: the program depends on the source, not only on {})",
        ctx.rel.app,
        runtime.manifests.first().copied().unwrap_or("the manifest")
    ));
    if let Err(e) = (compiler.compile)(ctx, &cache, out.as_deref()) {
        if let Some(out) = &out {
            let _ = remove_tree(out);
        }
        if new_cache {
            let _ = remove_tree(&cache);
        }
        return Err(e);
    }
    if let Some(out) = &out {
        mark_complete(out)?;
    }
    // A reused cache is left as it is: its marker tells when it was made.
    if new_cache { mark_complete(&cache) } else { Ok(()) }
}

/// What the build knows about the app: its release, and its environment as
/// the build's commands see it (the app's base PATH, its ENV, its config).
pub struct Ctx<'a> {
    pub rel: &'a Release,
    pub env: Env,
}

impl<'a> Ctx<'a> {
    fn new(root: &Root, rel: &'a Release) -> Result<Ctx<'a>> {
        let home = piku::paths::home_dir();
        let mut env = Env::new();
        env.insert("APP".into(), rel.app.to_string());
        env.insert("HOME".into(), home.display().to_string());
        let base = Settings::load(root)?.get("PATH").unwrap_or_else(|| piku::paths::base_path(&home));
        env.insert("PATH".into(), base);
        let app = &rel.app;
        envfile::read_into(&mut env, &rel.dir.join("ENV"), true).map_err(|e| e.context(format!("the ENV file of '{app}'")))?;
        envfile::read_into(&mut env, &root.user_env_file(app), true).map_err(|e| e.context(format!("the config of '{app}'")))?;
        Ok(Ctx { rel, env })
    }

    /// A setting of the app (its ENV or config), when set and not blank.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn path(&self) -> &str {
        self.env.get("PATH").map(String::as_str).unwrap_or("")
    }

    /// A file in the release's tree.
    pub fn has(&self, name: &str) -> bool {
        self.rel.dir.join(name).exists()
    }

    /// `program` on `first` then the app's PATH.
    pub fn find_with(&self, program: &str, first: &[PathBuf]) -> Option<PathBuf> {
        let path = std::env::join_paths(first.iter().cloned().chain(std::env::split_paths(self.path()))).ok()?;
        std::env::split_paths(&path).map(|d| d.join(program)).find(|p| is_executable(p))
    }

    pub fn find(&self, program: &str) -> Option<PathBuf> {
        self.find_with(program, &[])
    }

    /// A build command: `program` found on `first` + the app's PATH, run in the
    /// release's tree with the app's environment and that PATH.
    pub fn command(&self, program: &str, first: &[PathBuf]) -> Command {
        let mut cmd = Command::new(self.find_with(program, first).unwrap_or_else(|| PathBuf::from(program)));
        let mut path: Vec<String> = first.iter().map(|p| p.display().to_string()).collect();
        path.push(self.path().to_string());
        cmd.envs(&self.env)
            .env("PATH", path.join(":"))
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "UTF_8:replace")
            .current_dir(&self.rel.dir);
        cmd
    }

    /// Say what runs, then run it with its output streamed, indented.
    pub fn run(&self, cmd: &mut Command, what: &str) -> Result<()> {
        output::step(format!("Running {}", describe(cmd)));
        process::run_streamed(cmd, &format!("{what} for '{}'", self.rel.app))
    }
}

/// `program args...` as the pusher reads it (the program by its name).
fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let mut words = vec![program.file_name().unwrap_or(program.as_os_str()).to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Marks a directory in envs/<app> as completely built.
const COMPLETE: &str = ".piku-complete";

fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE).is_file()
}

fn mark_complete(dir: &Path) -> Result<()> {
    atomic::write_file(&dir.join(COMPLETE), b"", 0o644)
}

/// Clear the way for a new directory: an unfinished one left by a crash goes.
fn start_fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        output::step(format!("Removing the unfinished {}", dir.display()));
        remove_tree(dir)?;
    }
    Ok(())
}

/// The key of a dependency environment or cache: the runtime, its version
/// settings and installed version, and the manifests' names and content.
fn dependency_key(ctx: &Ctx, runtime: &Runtime) -> Result<String> {
    let mut h = Fnv::default();
    h.write(runtime.name.as_bytes());
    for key in runtime.version_settings {
        h.write(key.as_bytes());
        h.write(ctx.setting(key).unwrap_or("").as_bytes());
    }
    h.write(runtimes::installed_version(ctx, runtime).as_bytes());
    for m in runtime.manifests {
        let path = ctx.rel.dir.join(m);
        match fs::read(&path) {
            Ok(bytes) => {
                h.write(m.as_bytes());
                h.write(&bytes);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory) => {}
            Err(e) => return Err(e.into()),
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
        // The length first, so ("ab","c") and ("a","bc") differ.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Remove the finished directories of envs/<app> that neither a kept release
/// (its `.build` facts), nor LIVE_ENV, nor this build refers to.
fn remove_unused_environments(root: &Root, rel: &Release, current: &Env) {
    let env_root = root.env_dir(&rel.app);
    let releases = root.releases_dir(&rel.app);
    let mut used = Vec::new();
    let mut note = |env: &Env| {
        for value in env.values() {
            for part in value.split(':') {
                if let Some(name) = Path::new(part).strip_prefix(&env_root).ok().and_then(|rest| rest.iter().next()) {
                    used.push(env_root.join(name));
                }
            }
        }
    };
    note(current);
    for id in piku::release::list_ids(root, &rel.app) {
        if let Ok(Some(facts)) = envfile::read_literal(&releases.join(format!("{id}.build"))) {
            note(&facts);
        }
    }
    if let Ok(Some(live)) = envfile::read_literal(&root.live_env_file(&rel.app)) {
        note(&live);
    }
    let Ok(entries) = fs::read_dir(&env_root) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if is_complete(&path) && !used.contains(&path) {
            output::step(format!("Removing unused dependency environment {}", path.display()));
            if let Err(e) = remove_tree(&path) {
                output::warn(e.message);
            }
        }
    }
}

/// remove_dir_all, also through the read-only directories some tools leave
/// (Go's module cache); a missing directory is fine.
fn remove_tree(dir: &Path) -> Result<()> {
    fn make_writable(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(dir);
            Ok(fs::remove_dir_all(dir)?)
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
    // /bin/sh by its path: the app's PATH need not hold the system's directories.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", command]).current_dir(&rel.dir).env_clear().envs(&env).env("PWD", &rel.dir).env("PROC_TYPE", task);
    process::run_streamed(&mut cmd, &format!("the {task} task of '{}'", rel.app))
}

/// The `preflight` task, before anything is installed: its environment is
/// resolved by piku-config (without this build's facts, which do not exist
/// yet; the chain resolves it again after the build).
fn run_preflight(rel: &Release) -> Result<()> {
    let mut config = Command::new(piku::paths::tools_dir().join("piku-config"));
    config.args(["resolve", rel.app.as_str(), rel.id.as_str()]);
    process::run_streamed(&mut config, &format!("resolving the environment of '{}' for its preflight task", rel.app))?;
    run_task(rel, "preflight")
}

/// Remove every directory in envs/<app>: the dependency environments (and a
/// virtualenv piku.py left there). Files belong to the other tools.
fn destroy(root: &Root, app: &AppName) -> Result<()> {
    release::remove_facts(root, app, "build", true)?;
    let Ok(entries) = fs::read_dir(root.env_dir(app)) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    Ok(())
}
