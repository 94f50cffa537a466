//! The runtimes piku detects, one block each: what selects it, the programs
//! it needs (with their Debian packages), what keys its dependencies, how it
//! is installed or compiled, and what it adds to the app's environment.
//! Adding a runtime is one more block and its place in ALL, piku's detection
//! order (first match wins); the README's runtimes table lists the blocks in
//! that order (a test checks it).
//!
//! <env> is a dependency environment, <cache> a dependency cache and <out> a
//! release's output directory (see piku-build.rs).

use super::Ctx;
use fs_err as fs;
use piku::envfile::Env;
use piku::error::{Error, Result};
use piku::procfile::Procfile;
use piku::{atomic, output, process};
use std::path::{Path, PathBuf};

/// Everything piku-build knows about one runtime.
pub struct Runtime {
    /// Its name in RUNTIME and in the names of its directories in envs/<app>.
    pub name: &'static str,
    /// How the build's messages call it ("Python app detected").
    pub title: &'static str,
    /// What selects it, as the README's runtimes table says it.
    pub detected_by: &'static str,
    /// Does the release use it? Some(why) when it does.
    pub detect: fn(&Ctx, &Procfile) -> Result<Option<&'static str>>,
    /// The programs it needs on the build's PATH.
    pub needs: fn(&Ctx) -> Vec<Need>,
    /// Anything else to check before the build changes anything.
    pub check: fn(&Ctx) -> Result<()>,
    /// The files whose content keys its dependency environment or cache.
    pub manifests: &'static [&'static str],
    /// The app settings that choose its version or tools (they key it too).
    pub version_settings: &'static [&'static str],
    /// The program whose `--version` keys it too: a server upgrade
    /// (python3.11 -> 3.12) gives new environments instead of broken ones.
    pub version_program: fn(&Ctx) -> Option<String>,
    pub build: Build,
}

/// A program a runtime needs, and the Debian package that provides it.
pub struct Need {
    pub program: String,
    pub package: String,
    /// Said after the program's name when it is missing.
    pub note: &'static str,
}

fn need(program: &str, package: &str) -> Need {
    Need { program: program.into(), package: package.into(), note: "" }
}

/// How a runtime turns a tree into something runnable.
pub enum Build {
    /// Nothing to install.
    Nothing,
    /// Interpreted: dependencies installed into an environment keyed by the
    /// manifests (VIRTUAL_ENV), then attached to the release's tree (links,
    /// NODE_PATH, PATH_PREFIX).
    Environment { install: fn(&Ctx, &Path) -> Result<()>, attach: fn(&Ctx, &Path, &mut Env) -> Result<()> },
    /// Compiled: dependencies fetched into a cache keyed by the manifests
    /// (BUILD_CACHE), the program compiled on every deploy, into the tree or,
    /// with `output_dir`, into <out>/bin, which goes on the app's PATH.
    Compiled(Compiler),
}

pub struct Compiler {
    /// Fill a new dependency cache.
    pub fetch: fn(&Ctx, &Path) -> Result<()>,
    /// Compile the release, with the cache and, when `output_dir`, <out>.
    pub compile: fn(&Ctx, &Path, Option<&Path>) -> Result<()>,
    pub output_dir: bool,
}

/// piku's detection order, first match wins. Two choices of ours:
/// - a Procfile with workers but no manifest is generic, whatever its workers
///   (piku wants `release` + `web`, and deploys nothing for a web-only app):
///   a `web: ./server` or `worker: ...` app runs with what the server has;
///   only-`static` Procfiles are static. A Procfile without workers is refused
///   earlier (Release::procfile), so "nothing detected" cannot happen here.
/// - pyproject.toml with neither poetry nor uv installed falls through as in
///   piku (a Node or Go repo may carry one for its linters), but if nothing
///   else claims the app, that is an error naming both tools (GENERIC).
pub const ALL: &[&Runtime] = &[&PIP, &POETRY, &UV, &RUBY, &NODE, &MAVEN, &GRADLE, &GO, &CLOJURE, &LEIN, &PHP, &RUST, &STATIC, &GENERIC];

pub fn detect(ctx: &Ctx, procfile: &Procfile) -> Result<&'static Runtime> {
    for runtime in ALL {
        if let Some(why) = (runtime.detect)(ctx, procfile)? {
            output::step(format!("{} app detected ({why})", runtime.title));
            return Ok(runtime);
        }
    }
    unreachable!("GENERIC matches every release")
}

/// A detected runtime whose tools are missing is an error naming them (piku
/// falls through to the next rule instead); nothing has changed yet.
pub fn check_tools(ctx: &Ctx, runtime: &Runtime) -> Result<()> {
    let (title, app) = (runtime.title, &ctx.rel.app);
    for Need { program, package, note } in (runtime.needs)(ctx) {
        if ctx.find(&program).is_none() {
            return Err(Error::new(format!(
                "{title} app '{app}' needs '{program}'{note}, which is not on the build's PATH ({}); install it (Debian package: {package}), or set PATH in the app's ENV or the server's settings",
                ctx.path()
            )));
        }
    }
    (runtime.check)(ctx)
}

/// The installed version of the runtime's program (empty when it has none).
pub fn installed_version(ctx: &Ctx, runtime: &Runtime) -> String {
    let Some(program) = (runtime.version_program)(ctx) else { return String::new() };
    process::run_captured(ctx.command(&program, &[]).arg("--version"), "version").unwrap_or_default()
}

fn no_check(_: &Ctx) -> Result<()> {
    Ok(())
}

fn no_version(_: &Ctx) -> Option<String> {
    None
}

fn nothing_to_attach(_: &Ctx, _: &Path, _: &mut Env) -> Result<()> {
    Ok(())
}

fn nothing_to_fetch(_: &Ctx, _: &Path) -> Result<()> {
    Ok(())
}

// ---- Python: requirements.txt -------------------------------------------
// virtualenv --python=python3 <env> (else python3 -m venv <env>);
// <env>/bin/pip install -r requirements.txt

pub const PIP: Runtime = Runtime {
    name: "python",
    title: "Python",
    detected_by: "`requirements.txt`",
    detect: |ctx, _| Ok(ctx.has("requirements.txt").then_some("requirements.txt")),
    needs: |ctx| vec![python_need(ctx)],
    check: no_check,
    manifests: &["requirements.txt"],
    version_settings: &["PYTHON_VERSION"],
    version_program: |ctx| Some(python_program(ctx)),
    build: Build::Environment { install: install_pip, attach: nothing_to_attach },
};

fn install_pip(ctx: &Ctx, env: &Path) -> Result<()> {
    create_virtualenv(ctx, env)?;
    let mut pip = ctx.command("pip", &[env.join("bin")]);
    pip.args(["install", "--disable-pip-version-check", "--progress-bar", "off", "-r", "requirements.txt"]).env("VIRTUAL_ENV", env);
    ctx.run(&mut pip, "pip install")
}

// ---- Poetry: pyproject.toml + poetry on PATH ----------------------------
// the virtualenv as above; poetry install --no-interaction --no-root
// (VIRTUAL_ENV=<env>, POETRY_VIRTUALENVS_CREATE=false)

pub const POETRY: Runtime = Runtime {
    name: "poetry",
    title: "Python",
    detected_by: "`pyproject.toml` + poetry on PATH",
    detect: |ctx, _| Ok((ctx.has("pyproject.toml") && ctx.find("poetry").is_some()).then_some("pyproject.toml, poetry")),
    needs: |ctx| vec![python_need(ctx), need("poetry", "python3-poetry")],
    check: no_check,
    manifests: &["pyproject.toml", "poetry.lock"],
    version_settings: &["PYTHON_VERSION"],
    version_program: |ctx| Some(python_program(ctx)),
    build: Build::Environment { install: install_poetry, attach: nothing_to_attach },
};

fn install_poetry(ctx: &Ctx, env: &Path) -> Result<()> {
    create_virtualenv(ctx, env)?;
    // Poetry installs into the active virtualenv when it may not create its own.
    let mut poetry = ctx.command("poetry", &[env.join("bin")]);
    poetry.args(["install", "--no-interaction", "--no-root"]).env("VIRTUAL_ENV", env).env("POETRY_VIRTUALENVS_CREATE", "false");
    ctx.run(&mut poetry, "poetry install")
}

// ---- uv: pyproject.toml + uv on PATH ------------------------------------
// uv sync [--frozen when uv.lock] --no-install-project
// [--python PYTHON_VERSION or .python-version] (UV_PROJECT_ENVIRONMENT=<env>)

pub const UV: Runtime = Runtime {
    name: "uv",
    title: "Python",
    detected_by: "`pyproject.toml` + uv on PATH",
    detect: |ctx, _| Ok((ctx.has("pyproject.toml") && ctx.find("uv").is_some()).then_some("pyproject.toml, uv")),
    needs: |_| vec![need("uv", "none, uv is on PyPI: install.sh installs it, or 'pipx install uv'")],
    check: no_check,
    manifests: &["pyproject.toml", "uv.lock", ".python-version"],
    version_settings: &["PYTHON_VERSION"],
    version_program: |ctx| Some(python_program(ctx)),
    build: Build::Environment { install: install_uv, attach: nothing_to_attach },
};

fn install_uv(ctx: &Ctx, env: &Path) -> Result<()> {
    // uv.lock is kept (piku deletes it): with it the install is exactly what was locked.
    let mut uv = ctx.command("uv", &[]);
    uv.arg("sync");
    if ctx.has("uv.lock") {
        uv.arg("--frozen");
    }
    uv.arg("--no-install-project");
    if let Some(version) = python_version_for_uv(ctx) {
        uv.args(["--python", &version]);
    }
    uv.env("UV_PROJECT_ENVIRONMENT", env);
    ctx.run(&mut uv, "uv sync")?;
    // uv makes its lock file world-writable (0666, for shared caches): not under ~/.piku.
    let lock = env.join(".lock");
    if lock.is_file() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

// Shared by the three Python blocks.

/// `PYTHON_VERSION` (`3`, `3.11`) -> the interpreter (`python3`, `python3.11`),
/// which Debian packages under the same name.
fn python_program(ctx: &Ctx) -> String {
    let v = ctx.setting("PYTHON_VERSION").unwrap_or("3");
    if v.chars().all(|c| c.is_ascii_digit() || c == '.') { format!("python{v}") } else { "python3".into() }
}

fn python_need(ctx: &Ctx) -> Need {
    let program = python_program(ctx);
    need(&program, &program)
}

fn create_virtualenv(ctx: &Ctx, env: &Path) -> Result<()> {
    let python = python_program(ctx);
    let mut cmd = if ctx.find("virtualenv").is_some() {
        let mut c = ctx.command("virtualenv", &[]);
        c.arg(format!("--python={python}")).arg(env);
        c
    } else {
        let mut c = ctx.command(&python, &[]);
        c.args(["-m", "venv"]).arg(env);
        c
    };
    ctx.run(&mut cmd, "creating the virtualenv")
}

/// PYTHON_VERSION, else .python-version (uv would read it too; piku passes it).
fn python_version_for_uv(ctx: &Ctx) -> Option<String> {
    if let Some(v) = ctx.setting("PYTHON_VERSION") {
        return Some(v.to_string());
    }
    let text = fs::read_to_string(ctx.rel.dir.join(".python-version")).ok()?;
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string)
}

// ---- Ruby: Gemfile -------------------------------------------------------
// bundle install (BUNDLE_PATH=<env>, BUNDLE_GEMFILE); then, in the tree,
// bundle config set --local path <env>

pub const RUBY: Runtime = Runtime {
    name: "ruby",
    title: "Ruby",
    detected_by: "`Gemfile`",
    detect: |ctx, _| Ok(ctx.has("Gemfile").then_some("Gemfile")),
    needs: |_| vec![need("ruby", "ruby"), need("bundle", "ruby-bundler")],
    check: no_check,
    manifests: &["Gemfile", "Gemfile.lock", ".ruby-version"],
    version_settings: &[],
    version_program: |_| Some("ruby".into()),
    build: Build::Environment { install: install_ruby, attach: attach_ruby },
};

fn install_ruby(ctx: &Ctx, env: &Path) -> Result<()> {
    fs::create_dir_all(env)?;
    let mut bundle = ctx.command("bundle", &[]);
    bundle.arg("install").env("BUNDLE_PATH", env).env("BUNDLE_GEMFILE", ctx.rel.dir.join("Gemfile"));
    ctx.run(&mut bundle, "bundle install")
}

/// So `bundle exec` finds the gems when the app runs (piku does the same).
fn attach_ruby(ctx: &Ctx, env: &Path, _: &mut Env) -> Result<()> {
    let mut config = ctx.command("bundle", &[]);
    config.args(["config", "set", "--local", "path"]).arg(env).env("BUNDLE_GEMFILE", ctx.rel.dir.join("Gemfile"));
    ctx.run(&mut config, "bundle config")
}

// ---- Node: package.json --------------------------------------------------
// [when NODE_VERSION and nodeenv: nodeenv --prebuilt --node=NODE_VERSION
// --clean-src --force <env>]; in <env>: npm ci (with a lock) or npm install
// --no-audit --no-fund, or yarn / pnpm install; node_modules linked into the
// tree, NODE_PATH and node_modules/.bin (PATH_PREFIX) in the environment.

pub const NODE: Runtime = Runtime {
    name: "node",
    title: "Node",
    detected_by: "`package.json`",
    detect: |ctx, _| Ok(ctx.has("package.json").then_some("package.json")),
    needs: |ctx| {
        if uses_nodeenv(ctx) {
            return vec![need("nodeenv", "nodeenv")];
        }
        let note = if ctx.setting("NODE_VERSION").is_some() { " (NODE_VERSION is set, but nodeenv is not installed)" } else { "" };
        vec![Need { note, ..need("node", "nodejs") }, Need { note, ..need("npm", "npm") }]
    },
    check: |ctx| {
        if ctx.setting("NODE_VERSION").is_some() && !uses_nodeenv(ctx) {
            output::warn(format!(
                "NODE_VERSION is set, but nodeenv is not installed (Debian package: nodeenv): '{}' is built with the server's node ({})",
                ctx.rel.app,
                installed_version(ctx, &NODE).trim()
            ));
        }
        Ok(())
    },
    manifests: NODE_MANIFESTS,
    version_settings: &["NODE_VERSION", "NODE_PACKAGE_MANAGER"],
    version_program: |ctx| (!uses_nodeenv(ctx)).then(|| "node".into()),
    build: Build::Environment { install: install_node, attach: attach_node },
};

/// Copied into a Node environment, where the package manager runs.
const NODE_MANIFESTS: &[&str] =
    &["package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", ".npmrc", ".yarnrc", ".yarnrc.yml"];

fn attach_node(ctx: &Ctx, env: &Path, facts: &mut Env) -> Result<()> {
    let modules = env.join("node_modules");
    let link = ctx.rel.dir.join("node_modules");
    if link.symlink_metadata().is_ok() && !link.is_symlink() {
        output::warn("the repository has its own node_modules; it is used instead of the installed one");
    } else {
        atomic::replace_symlink(&modules, &link)?;
    }
    facts.insert("NODE_PATH".into(), modules.display().to_string());
    facts.insert("PATH_PREFIX".into(), modules.join(".bin").display().to_string());
    Ok(())
}

/// NODE_VERSION is honoured through nodeenv when nodeenv is installed (as
/// piku); without it the server's node builds the app, with a warning.
fn uses_nodeenv(ctx: &Ctx) -> bool {
    ctx.setting("NODE_VERSION").is_some() && ctx.find("nodeenv").is_some()
}

/// Node: the package manager runs in the environment, on copies of the
/// manifests, so node_modules lives there (as piku's `--prefix`); the release's
/// tree gets a node_modules symlink to it (attach). The root package's own
/// install scripts therefore run without the sources: build with `release`.
fn install_node(ctx: &Ctx, env: &Path) -> Result<()> {
    let first = [env.join("bin"), env.join("node_modules/.bin")];
    let node_command = |program: &str| {
        let mut c = ctx.command(program, &first);
        c.current_dir(env).env("NODE_PATH", env.join("node_modules")).env("NPM_CONFIG_PREFIX", env);
        c
    };
    if let Some(version) = ctx.setting("NODE_VERSION").filter(|_| uses_nodeenv(ctx)) {
        let mut nodeenv = node_command("nodeenv");
        nodeenv.current_dir(&ctx.rel.dir).args(["--prebuilt", &format!("--node={version}"), "--clean-src", "--force"]).arg(env);
        ctx.run(&mut nodeenv, "nodeenv")?;
    }
    // Said about the user's file, not about our copy of it.
    let mut check = node_command("node");
    check.current_dir(&ctx.rel.dir).args(["-e", "JSON.parse(require('fs').readFileSync('package.json', 'utf8'))"]);
    process::run_captured(&mut check, "reading package.json").map_err(|e| {
        let why = e.message.lines().find(|l| l.contains("Error:")).unwrap_or(&e.message).trim().to_string();
        Error::new(format!("package.json of '{}' is not valid JSON: {why}", ctx.rel.app))
    })?;
    fs::create_dir_all(env.join("node_modules"))?;
    for name in NODE_MANIFESTS {
        let from = ctx.rel.dir.join(name);
        if from.is_file() {
            fs::copy(&from, env.join(name))?;
        }
    }

    let words = ctx.setting("NODE_PACKAGE_MANAGER").unwrap_or("npm");
    let mut words = shell_words::split(words)
        .map_err(|e| Error::new(format!("NODE_PACKAGE_MANAGER of '{}' does not parse: {e}", ctx.rel.app)))?
        .into_iter();
    let manager = words.next().unwrap_or_default();
    if !matches!(manager.as_str(), "npm" | "yarn" | "pnpm") {
        return Err(Error::new(format!("NODE_PACKAGE_MANAGER of '{}' must be npm, yarn or pnpm (with options if you like), not {manager:?}", ctx.rel.app)));
    }
    // Debian's yarn is called yarnpkg.
    let program = if manager == "yarn" && ctx.find_with("yarn", &first).is_none() && ctx.find("yarnpkg").is_some() { "yarnpkg".to_string() } else { manager.clone() };
    if ctx.find_with(&program, &first).is_none() {
        // As piku: the package manager is installed into the environment by npm.
        let mut npm = node_command("npm");
        npm.args(["install", "-g", "--no-audit", "--no-fund", &manager]);
        ctx.run(&mut npm, &format!("installing {manager}"))?;
    }
    let mut install = node_command(&program);
    let locked = ctx.has("package-lock.json") || ctx.has("npm-shrinkwrap.json");
    install.arg(if manager == "npm" && locked { "ci" } else { "install" });
    if manager == "npm" {
        install.args(["--no-audit", "--no-fund"]);
    }
    install.args(words);
    ctx.run(&mut install, &format!("{manager} install"))
}

// ---- Java: pom.xml (Maven) -----------------------------------------------
// mvn -B -Dmaven.repo.local=<cache>/repository package; the jars stay in the tree

pub const MAVEN: Runtime = Runtime {
    name: "maven",
    title: "Java",
    detected_by: "`pom.xml`",
    detect: |ctx, _| Ok(ctx.has("pom.xml").then_some("pom.xml, Maven")),
    needs: |_| vec![need("java", "default-jdk"), need("mvn", "maven")],
    check: no_check,
    manifests: &["pom.xml"],
    version_settings: &[],
    version_program: no_version,
    build: Build::Compiled(Compiler { fetch: nothing_to_fetch, compile: compile_maven, output_dir: false }),
};

fn compile_maven(ctx: &Ctx, cache: &Path, _: Option<&Path>) -> Result<()> {
    let mut mvn = ctx.command("mvn", &[]);
    mvn.arg("-B").arg(format!("-Dmaven.repo.local={}", cache.join("repository").display())).arg("package");
    ctx.run(&mut mvn, "mvn package")
}

// ---- Java: build.gradle (Gradle) -----------------------------------------
// gradle --no-daemon build (GRADLE_USER_HOME=<cache>); the jars stay in the tree

pub const GRADLE: Runtime = Runtime {
    name: "gradle",
    title: "Java",
    detected_by: "`build.gradle` or `build.gradle.kts`",
    detect: |ctx, _| Ok((ctx.has("build.gradle") || ctx.has("build.gradle.kts")).then_some("build.gradle, Gradle")),
    needs: |_| vec![need("java", "default-jdk"), need("gradle", "gradle")],
    check: no_check,
    manifests: &["build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"],
    version_settings: &[],
    version_program: no_version,
    build: Build::Compiled(Compiler { fetch: nothing_to_fetch, compile: compile_gradle, output_dir: false }),
};

fn compile_gradle(ctx: &Ctx, cache: &Path, _: Option<&Path>) -> Result<()> {
    let mut gradle = ctx.command("gradle", &[]);
    gradle.args(["--no-daemon", "build"]).env("GRADLE_USER_HOME", cache);
    ctx.run(&mut gradle, "gradle build")
}

// ---- Go: go.mod, Godeps or *.go ------------------------------------------
// go mod download; go build -o <out>/bin/ ./... (GOPATH, GOCACHE in <cache>)

pub const GO: Runtime = Runtime {
    name: "go",
    title: "Go",
    detected_by: "`go.mod`, `Godeps` or `*.go`",
    detect: |ctx, _| {
        let go = ctx.has("go.mod") || ctx.has("Godeps") || has_go_files(&ctx.rel.dir);
        Ok(go.then_some(if ctx.has("go.mod") { "go.mod" } else { "Go sources" }))
    },
    needs: |_| vec![need("go", "golang-go")],
    check: no_check,
    manifests: &["go.mod", "go.sum", "Godeps/Godeps.json"],
    version_settings: &[],
    version_program: no_version,
    build: Build::Compiled(Compiler { fetch: fetch_go, compile: compile_go, output_dir: true }),
};

fn has_go_files(dir: &Path) -> bool {
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().ends_with(".go") && e.path().is_file())
}

fn fetch_go(ctx: &Ctx, cache: &Path) -> Result<()> {
    if !ctx.has("go.mod") {
        return Ok(());
    }
    ctx.run(go(ctx, cache).args(["mod", "download"]), "go mod download")
}

fn compile_go(ctx: &Ctx, cache: &Path, out: Option<&Path>) -> Result<()> {
    let bin = out.map(|o| o.join("bin")).unwrap_or_default();
    let mut build = go(ctx, cache);
    if ctx.has("go.mod") {
        // Every main package of the module, each named after its directory.
        build.args(["build", "-o", &format!("{}/", bin.display()), "./..."]);
    } else {
        // GOPATH-style sources: one program, named after the app.
        if ctx.setting("GO111MODULE").is_none() {
            build.env("GO111MODULE", "auto");
        }
        build.args(["build", "-o"]).arg(bin.join(ctx.rel.app.as_str())).arg(".");
    }
    ctx.run(&mut build, "go build")
}

fn go(ctx: &Ctx, cache: &Path) -> std::process::Command {
    let mut go = ctx.command("go", &[]);
    // -modcacherw: module cache files stay removable when the cache is retired.
    let flags = format!("{} -modcacherw", ctx.setting("GOFLAGS").unwrap_or("")).trim().to_string();
    go.env("GOPATH", cache.join("gopath")).env("GOCACHE", cache.join("gocache")).env("GOFLAGS", flags);
    go
}

// ---- Clojure: deps.edn (Clojure CLI) -------------------------------------
// clojure -Sdeps {:mvn/local-repo "<cache>/m2"} -T:build release

pub const CLOJURE: Runtime = Runtime {
    name: "clojure",
    title: "Clojure",
    detected_by: "`deps.edn`",
    detect: |ctx, _| Ok(ctx.has("deps.edn").then_some("deps.edn, Clojure CLI")),
    needs: |_| vec![need("java", "default-jdk"), need("clojure", "clojure")],
    check: no_check,
    manifests: &["deps.edn"],
    version_settings: &[],
    version_program: no_version,
    build: Build::Compiled(Compiler { fetch: nothing_to_fetch, compile: compile_clojure, output_dir: false }),
};

fn compile_clojure(ctx: &Ctx, cache: &Path, _: Option<&Path>) -> Result<()> {
    let mut clojure = ctx.command("clojure", &[]);
    let repo = edn_string(&cache.join("m2"));
    clojure.args(["-Sdeps", &format!("{{:mvn/local-repo {repo}}}"), "-T:build", "release"]).env("GITLIBS", cache.join("gitlibs"));
    ctx.run(&mut clojure, "clojure -T:build release")
}

// ---- Clojure: project.clj (Leiningen) ------------------------------------
// lein update-in : assoc :local-repo "<cache>/m2" -- uberjar

pub const LEIN: Runtime = Runtime {
    name: "lein",
    title: "Clojure",
    detected_by: "`project.clj`",
    detect: |ctx, _| Ok(ctx.has("project.clj").then_some("project.clj, Leiningen")),
    needs: |_| vec![need("java", "default-jdk"), need("lein", "leiningen")],
    check: no_check,
    manifests: &["project.clj"],
    version_settings: &[],
    version_program: no_version,
    build: Build::Compiled(Compiler { fetch: nothing_to_fetch, compile: compile_lein, output_dir: false }),
};

fn compile_lein(ctx: &Ctx, cache: &Path, _: Option<&Path>) -> Result<()> {
    // lein has no switch for its Maven repository: set :local-repo for this run.
    let mut lein = ctx.command("lein", &[]);
    lein.args(["update-in", ":", "assoc", ":local-repo", &edn_string(&cache.join("m2")), "--", "uberjar"]);
    ctx.run(&mut lein, "lein uberjar")
}

/// A path as an EDN string literal.
fn edn_string(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('\\', "\\\\").replace('"', "\\\""))
}

// ---- PHP: a `php` worker -------------------------------------------------
// nothing to install; the worker runs in uWSGI's php plugin

pub const PHP: Runtime = Runtime {
    name: "php",
    title: "PHP",
    detected_by: "a `php` worker",
    detect: |_, procfile| Ok(procfile.has("php").then_some("a php worker")),
    needs: |_| vec![],
    check: |ctx| {
        if !Path::new(PHP_PLUGIN).is_file() {
            return Err(Error::new(format!(
                "PHP app '{}' needs uWSGI's php plugin ({PHP_PLUGIN}), which is not installed; install it (Debian package: uwsgi-plugin-php)",
                ctx.rel.app
            )));
        }
        Ok(())
    },
    manifests: &[],
    version_settings: &[],
    version_program: no_version,
    build: Build::Nothing,
};

/// uWSGI's PHP plugin, which `php` workers run in.
const PHP_PLUGIN: &str = "/usr/lib/uwsgi/plugins/php_plugin.so";

// ---- Rust: Cargo.toml ----------------------------------------------------
// cargo fetch; cargo build --release [--locked when Cargo.lock] (CARGO_HOME,
// CARGO_TARGET_DIR in <cache>; a Cargo.lock cargo resolved is kept with the
// cache; cargo before 1.68 gets the sparse crates.io protocol, see
// needs_sparse_switch); the programs copied to <out>/bin

pub const RUST: Runtime = Runtime {
    name: "rust",
    title: "Rust",
    detected_by: "`Cargo.toml`",
    detect: |ctx, _| Ok(ctx.has("Cargo.toml").then_some("Cargo.toml")),
    needs: |_| vec![need("cargo", "cargo"), need("rustc", "rustc")],
    check: no_check,
    manifests: &["Cargo.toml", "Cargo.lock", "rust-toolchain", "rust-toolchain.toml"],
    version_settings: &[],
    version_program: |_| Some("rustc".into()),
    build: Build::Compiled(Compiler { fetch: fetch_rust, compile: compile_rust, output_dir: true }),
};

fn fetch_rust(ctx: &Ctx, cache: &Path) -> Result<()> {
    let had_lock = ctx.has("Cargo.lock");
    ctx.run(cargo(ctx, cache).arg("fetch").args(locked(ctx)), "cargo fetch")?;
    // Without a committed Cargo.lock, keep the one cargo just resolved with
    // the cache, so every release built from it uses the same versions.
    let resolved = ctx.rel.dir.join("Cargo.lock");
    if !had_lock && resolved.is_file() {
        fs::copy(&resolved, cache.join("Cargo.lock"))?;
    }
    Ok(())
}

fn compile_rust(ctx: &Ctx, cache: &Path, out: Option<&Path>) -> Result<()> {
    let bin = out.map(|o| o.join("bin")).unwrap_or_default();
    let kept = cache.join("Cargo.lock");
    if !ctx.has("Cargo.lock") && kept.is_file() {
        fs::copy(&kept, ctx.rel.dir.join("Cargo.lock"))?;
    }
    ctx.run(cargo(ctx, cache).args(["build", "--release"]).args(locked(ctx)), "cargo build")?;
    // Ask cargo (a no-op build now) which programs it made, and copy them out
    // of the shared target directory into this release's own bin/.
    let json = process::run_captured(
        cargo(ctx, cache).args(["build", "--release", "--offline", "--message-format=json"]).args(locked(ctx)),
        "listing the programs cargo built",
    )?;
    let programs = cargo_executables(&json);
    if programs.is_empty() {
        return Err(Error::new(format!("Cargo.toml of '{}' builds no program (no [[bin]] target); nothing could run", ctx.rel.app)));
    }
    for program in programs {
        let to = bin.join(program.file_name().unwrap_or_default());
        fs::copy(&program, &to)?;
        output::detail(format!("installed {}", to.display()));
    }
    Ok(())
}

fn cargo(ctx: &Ctx, cache: &Path) -> std::process::Command {
    let mut cargo = ctx.command("cargo", &[]);
    cargo.env("CARGO_HOME", cache.join("cargo")).env("CARGO_TARGET_DIR", cache.join("target"));
    if needs_sparse_switch(ctx) {
        cargo.env("CARGO_UNSTABLE_SPARSE_REGISTRY", "true").env("RUSTC_BOOTSTRAP", "1");
    }
    cargo
}

/// Cargo before 1.68 (Debian 12's is 1.65) reads crates.io through a git clone
/// of its index, a large download from a host many servers cannot reach; its
/// sparse protocol (what later cargo uses by default) is there behind an
/// unstable switch, which RUSTC_BOOTSTRAP unlocks. An app that configures the
/// protocol itself decides.
fn needs_sparse_switch(ctx: &Ctx) -> bool {
    if ["CARGO_REGISTRIES_CRATES_IO_PROTOCOL", "CARGO_UNSTABLE_SPARSE_REGISTRY"].iter().any(|k| ctx.env.contains_key(*k)) {
        return false;
    }
    let version = process::run_captured(ctx.command("cargo", &[]).arg("--version"), "cargo --version").unwrap_or_default();
    cargo_before_sparse(&version)
}

/// "cargo 1.65.0 (...)" -> true for versions before 1.68.
fn cargo_before_sparse(version: &str) -> bool {
    let mut numbers = version.split_whitespace().nth(1).unwrap_or("").split('.').map(|n| n.parse::<u32>().ok());
    matches!((numbers.next().flatten(), numbers.next().flatten()), (Some(1), Some(minor)) if minor < 68)
}

/// With a Cargo.lock, build exactly what it locks.
fn locked(ctx: &Ctx) -> &'static [&'static str] {
    if ctx.has("Cargo.lock") { &["--locked"] } else { &[] }
}

/// The `executable` paths of cargo's compiler-artifact messages (one JSON object a line).
fn cargo_executables(json: &str) -> Vec<PathBuf> {
    const KEY: &str = "\"executable\":\"";
    let mut found = Vec::new();
    for line in json.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"")) {
        let Some(start) = line.find(KEY).map(|i| i + KEY.len()) else { continue };
        let mut path = String::new();
        let mut chars = line[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => path.extend(chars.next()),
                c => path.push(c),
            }
        }
        let path = PathBuf::from(path);
        if !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

// ---- static: only `static` workers ---------------------------------------

pub const STATIC: Runtime = Runtime {
    name: "static",
    title: "Static",
    detected_by: "only `static` workers",
    detect: |_, procfile| Ok(procfile.workers().all(|w| w.kind == "static").then_some("only static workers")),
    needs: |_| vec![],
    check: no_check,
    manifests: &[],
    version_settings: &[],
    version_program: no_version,
    build: Build::Nothing,
};

// ---- generic: any other workers ------------------------------------------
// the Procfile's commands run as they are, with what the server has

pub const GENERIC: Runtime = Runtime {
    name: "generic",
    title: "Generic",
    detected_by: "any other workers",
    detect: |ctx, _| {
        if ctx.has("pyproject.toml") {
            return Err(Error::new(format!(
                "app '{}' has a pyproject.toml, which needs poetry (Debian package: python3-poetry) or uv (on PyPI, not packaged by Debian: install.sh installs it, or 'pipx install uv'), and neither is on the build's PATH ({}); install one, or add a requirements.txt",
                ctx.rel.app,
                ctx.path()
            )));
        }
        Ok(Some("no dependency manifest; the Procfile's commands run as they are"))
    },
    needs: |_| vec![],
    check: no_check,
    manifests: &[],
    version_settings: &[],
    version_program: no_version,
    build: Build::Nothing,
};
