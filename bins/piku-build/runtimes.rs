//! The runtimes piku detects, in piku's order (first match wins), and how each
//! one is built. Exact commands, each run in the release's tree unless said:
//!
//! | runtime  | detected by                      | needs (Debian package)            | commands |
//! |----------|----------------------------------|-----------------------------------|----------|
//! | python   | requirements.txt                 | python3 or python3.X              | virtualenv --python=python3 <env> (else python3 -m venv <env>); <env>/bin/pip install -r requirements.txt |
//! | poetry   | pyproject.toml + poetry on PATH  | poetry (python3-poetry)           | the virtualenv as above; poetry install --no-interaction --no-root (VIRTUAL_ENV=<env>, POETRY_VIRTUALENVS_CREATE=false) |
//! | uv       | pyproject.toml + uv on PATH      | uv (PyPI; install.sh installs it) | uv sync [--frozen when uv.lock] --no-install-project [--python PYTHON_VERSION or .python-version] (UV_PROJECT_ENVIRONMENT=<env>) |
//! | ruby     | Gemfile                          | ruby, bundle (ruby-bundler)       | bundle install (BUNDLE_PATH=<env>, BUNDLE_GEMFILE); bundle config set --local path <env> |
//! | node     | package.json                     | node (nodejs), npm                | [when NODE_VERSION and nodeenv: nodeenv --prebuilt --node=NODE_VERSION --clean-src --force <env>]; in <env>: npm ci (with a lock) or npm install --no-audit --no-fund, or yarn / pnpm install |
//! | maven    | pom.xml                          | java (default-jdk), mvn (maven)   | mvn -B -Dmaven.repo.local=<cache>/repository package |
//! | gradle   | build.gradle(.kts)               | java, gradle                      | gradle --no-daemon build (GRADLE_USER_HOME=<cache>) |
//! | go       | go.mod, Godeps or *.go           | go (golang-go)                    | go mod download; go build -o <out>/bin/ ./... (GOPATH, GOCACHE in <cache>) |
//! | clojure  | deps.edn                         | java, clojure                     | clojure -Sdeps {:mvn/local-repo "<cache>/m2"} -T:build release |
//! | lein     | project.clj                      | java, lein (leiningen)            | lein update-in : assoc :local-repo "<cache>/m2" -- uberjar |
//! | php      | a `php` worker                   | uWSGI's php plugin (uwsgi-plugin-php) | nothing to install |
//! | rust     | Cargo.toml                       | cargo, rustc                      | cargo fetch; cargo build --release [--locked when Cargo.lock] (CARGO_HOME, CARGO_TARGET_DIR in <cache>; a Cargo.lock cargo resolved is kept with the cache; cargo before 1.68 gets the sparse crates.io protocol, see needs_sparse_switch); binaries copied to <out>/bin |
//! | generic  | any other worker                 |                                   | nothing |
//! | static   | only `static` workers            |                                   | nothing |
//!
//! <env> is a dependency environment, <cache> a dependency cache and <out> a
//! release's output directory (see piku-build.rs).

use fs_err as fs;
use super::Ctx;
use piku::envfile::Env;
use piku::error::{Error, Result};
use piku::procfile::Procfile;
use piku::{atomic, output, process};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Pip,
    Poetry,
    Uv,
    Ruby,
    Node,
    Maven,
    Gradle,
    Go,
    Clojure,
    Leiningen,
    Php,
    Rust,
    Generic,
    Static,
}

/// How a runtime turns a tree into something runnable.
pub enum Shape {
    /// Nothing to install.
    Nothing,
    /// Interpreted: dependencies in an environment keyed by the manifests.
    Environment,
    /// Compiled: dependencies in a cache keyed by the manifests, the program built every deploy.
    Compiled,
}

use Runtime::*;

impl Runtime {
    /// Its name in RUNTIME and in the names of its directories in envs/<app>.
    pub fn name(self) -> &'static str {
        match self {
            Pip => "python",
            Poetry => "poetry",
            Uv => "uv",
            Ruby => "ruby",
            Node => "node",
            Maven => "maven",
            Gradle => "gradle",
            Go => "go",
            Clojure => "clojure",
            Leiningen => "lein",
            Php => "php",
            Rust => "rust",
            Generic => "generic",
            Static => "static",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Pip | Poetry | Uv => "Python",
            Ruby => "Ruby",
            Node => "Node",
            Maven | Gradle => "Java",
            Go => "Go",
            Clojure | Leiningen => "Clojure",
            Php => "PHP",
            Rust => "Rust",
            Generic => "Generic",
            Static => "Static",
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            Pip | Poetry | Uv | Ruby | Node => Shape::Environment,
            Maven | Gradle | Go | Clojure | Leiningen | Rust => Shape::Compiled,
            Php | Generic | Static => Shape::Nothing,
        }
    }

    /// Go and Rust programs go to a per-release directory whose bin/ is on PATH;
    /// Java and Clojure builds leave their jars in the tree (target/, build/).
    pub fn has_output_dir(self) -> bool {
        matches!(self, Go | Rust)
    }

    /// The files whose content keys the dependency environment or cache.
    pub fn manifests(self) -> &'static [&'static str] {
        match self {
            Pip => &["requirements.txt"],
            Poetry => &["pyproject.toml", "poetry.lock"],
            Uv => &["pyproject.toml", "uv.lock", ".python-version"],
            Ruby => &["Gemfile", "Gemfile.lock", ".ruby-version"],
            Node => NODE_MANIFESTS,
            Maven => &["pom.xml"],
            Gradle => &["build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"],
            Go => &["go.mod", "go.sum", "Godeps/Godeps.json"],
            Clojure => &["deps.edn"],
            Leiningen => &["project.clj"],
            Rust => &["Cargo.toml", "Cargo.lock", "rust-toolchain", "rust-toolchain.toml"],
            Php | Generic | Static => &[],
        }
    }

    /// The app settings that choose the runtime's version or tools (they key the environment too).
    pub fn version_settings(self) -> &'static [&'static str] {
        match self {
            Pip | Poetry | Uv => &["PYTHON_VERSION"],
            Node => &["NODE_VERSION", "NODE_PACKAGE_MANAGER"],
            _ => &[],
        }
    }
}

/// Copied into a Node environment, where the package manager runs.
const NODE_MANIFESTS: &[&str] =
    &["package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", ".npmrc", ".yarnrc", ".yarnrc.yml"];

/// uWSGI's PHP plugin, which `php` workers run in.
const PHP_PLUGIN: &str = "/usr/lib/uwsgi/plugins/php_plugin.so";

/// piku's detection order, first match wins. Two choices of ours:
/// - a Procfile with workers but no manifest is generic, whatever its workers
///   (piku wants `release` + `web`, and deploys nothing for a web-only app):
///   a `web: ./server` or `worker: ...` app runs with what the server has;
///   only-`static` Procfiles are static. A Procfile without workers is refused
///   earlier (Release::procfile), so "nothing detected" cannot happen here.
/// - pyproject.toml with neither poetry nor uv installed falls through as in
///   piku (a Node or Go repo may carry one for its linters), but if nothing
///   else claims the app, that is an error naming both tools.
pub fn detect(ctx: &Ctx, procfile: &Procfile) -> Result<Runtime> {
    let pyproject = ctx.has("pyproject.toml");
    let (runtime, why) = if ctx.has("requirements.txt") {
        (Pip, "requirements.txt")
    } else if pyproject && ctx.find("poetry").is_some() {
        (Poetry, "pyproject.toml, poetry")
    } else if pyproject && ctx.find("uv").is_some() {
        (Uv, "pyproject.toml, uv")
    } else if ctx.has("Gemfile") {
        (Ruby, "Gemfile")
    } else if ctx.has("package.json") {
        (Node, "package.json")
    } else if ctx.has("pom.xml") {
        (Maven, "pom.xml, Maven")
    } else if ctx.has("build.gradle") || ctx.has("build.gradle.kts") {
        (Gradle, "build.gradle, Gradle")
    } else if ctx.has("go.mod") || ctx.has("Godeps") || has_go_files(&ctx.rel.dir) {
        (Go, if ctx.has("go.mod") { "go.mod" } else { "Go sources" })
    } else if ctx.has("deps.edn") {
        (Clojure, "deps.edn, Clojure CLI")
    } else if ctx.has("project.clj") {
        (Leiningen, "project.clj, Leiningen")
    } else if procfile.has("php") {
        (Php, "a php worker")
    } else if ctx.has("Cargo.toml") {
        (Rust, "Cargo.toml")
    } else if procfile.workers().all(|w| w.kind == "static") {
        (Static, "only static workers")
    } else if pyproject {
        return Err(Error::new(format!(
            "app '{}' has a pyproject.toml, which needs poetry (Debian package: python3-poetry) or uv (on PyPI, not packaged by Debian: install.sh installs it, or 'pipx install uv'), and neither is on the build's PATH ({}); install one, or add a requirements.txt",
            ctx.rel.app,
            ctx.path()
        )));
    } else {
        (Generic, "no dependency manifest; the Procfile's commands run as they are")
    };
    output::step(format!("{} app detected ({why})", runtime.title()));
    Ok(runtime)
}

fn has_go_files(dir: &Path) -> bool {
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().ends_with(".go") && e.path().is_file())
}

/// The programs a runtime needs, each with the Debian package that provides it.
fn tools(ctx: &Ctx, runtime: Runtime) -> Vec<(String, String)> {
    let tool = |program: &str, package: &str| (program.to_string(), package.to_string());
    let java = tool("java", "default-jdk");
    match runtime {
        Pip => vec![python_tool(ctx)],
        Poetry => vec![python_tool(ctx), tool("poetry", "python3-poetry")],
        Uv => vec![tool("uv", "none, uv is on PyPI: install.sh installs it, or 'pipx install uv'")],
        Ruby => vec![tool("ruby", "ruby"), tool("bundle", "ruby-bundler")],
        Node if uses_nodeenv(ctx) => vec![tool("nodeenv", "nodeenv")],
        Node => vec![tool("node", "nodejs"), tool("npm", "npm")],
        Maven => vec![java, tool("mvn", "maven")],
        Gradle => vec![java, tool("gradle", "gradle")],
        Go => vec![tool("go", "golang-go")],
        Clojure => vec![java, tool("clojure", "clojure")],
        Leiningen => vec![java, tool("lein", "leiningen")],
        Rust => vec![tool("cargo", "cargo"), tool("rustc", "rustc")],
        Php | Generic | Static => vec![],
    }
}

/// A detected runtime whose tools are missing is an error naming them (piku
/// falls through to the next rule instead); nothing has changed yet.
pub fn check_tools(ctx: &Ctx, runtime: Runtime) -> Result<()> {
    let (title, app) = (runtime.title(), &ctx.rel.app);
    for (tool, package) in tools(ctx, runtime) {
        if ctx.find(&tool).is_none() {
            let why = if runtime == Node && ctx.setting("NODE_VERSION").is_some() { " (NODE_VERSION is set, but nodeenv is not installed)" } else { "" };
            return Err(Error::new(format!(
                "{title} app '{app}' needs '{tool}'{why}, which is not on the build's PATH ({}); install it (Debian package: {package}), or set PATH in the app's ENV or the server's settings",
                ctx.path()
            )));
        }
    }
    if runtime == Node && ctx.setting("NODE_VERSION").is_some() && !uses_nodeenv(ctx) {
        output::warn(format!(
            "NODE_VERSION is set, but nodeenv is not installed (Debian package: nodeenv): '{app}' is built with the server's node ({})",
            installed_version(ctx, Node).trim()
        ));
    }
    if runtime == Php && !Path::new(PHP_PLUGIN).is_file() {
        return Err(Error::new(format!(
            "PHP app '{app}' needs uWSGI's php plugin ({PHP_PLUGIN}), which is not installed; install it (Debian package: uwsgi-plugin-php)"
        )));
    }
    Ok(())
}

/// The installed version of the runtime's interpreter, part of the
/// environment's key: a server upgrade (python3.11 -> 3.12) gives new
/// environments instead of broken ones.
pub fn installed_version(ctx: &Ctx, runtime: Runtime) -> String {
    let program = match runtime {
        Pip | Poetry | Uv => python_tool(ctx).0,
        Ruby => "ruby".into(),
        Node if !uses_nodeenv(ctx) => "node".into(),
        Rust => "rustc".into(),
        _ => return String::new(),
    };
    process::run_captured(ctx.command(&program, &[]).arg("--version"), "version").unwrap_or_default()
}

/// Fill a fresh dependency environment.
pub fn install(ctx: &Ctx, runtime: Runtime, env: &Path) -> Result<()> {
    let bin = [env.join("bin")];
    match runtime {
        Pip => {
            create_virtualenv(ctx, env)?;
            let mut pip = ctx.command("pip", &bin);
            pip.args(["install", "--disable-pip-version-check", "--progress-bar", "off", "-r", "requirements.txt"]).env("VIRTUAL_ENV", env);
            ctx.run(&mut pip, "pip install")
        }
        Poetry => {
            create_virtualenv(ctx, env)?;
            // Poetry installs into the active virtualenv when it may not create its own.
            let mut poetry = ctx.command("poetry", &bin);
            poetry.args(["install", "--no-interaction", "--no-root"]).env("VIRTUAL_ENV", env).env("POETRY_VIRTUALENVS_CREATE", "false");
            ctx.run(&mut poetry, "poetry install")
        }
        Uv => {
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
        Ruby => {
            fs::create_dir_all(env)?;
            let mut bundle = ctx.command("bundle", &[]);
            bundle.arg("install").env("BUNDLE_PATH", env).env("BUNDLE_GEMFILE", ctx.rel.dir.join("Gemfile"));
            ctx.run(&mut bundle, "bundle install")
        }
        Node => install_node(ctx, env),
        _ => Ok(()),
    }
}

/// After an environment is installed or reused: connect this release's tree to it.
pub fn attach(ctx: &Ctx, runtime: Runtime, env: &Path, facts: &mut Env) -> Result<()> {
    match runtime {
        Ruby => {
            // So `bundle exec` finds the gems when the app runs (piku does the same).
            let mut config = ctx.command("bundle", &[]);
            config.args(["config", "set", "--local", "path"]).arg(env).env("BUNDLE_GEMFILE", ctx.rel.dir.join("Gemfile"));
            ctx.run(&mut config, "bundle config")
        }
        Node => {
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
        _ => Ok(()),
    }
}

/// NODE_VERSION is honoured through nodeenv when nodeenv is installed (as
/// piku); without it the server's node builds the app, with a warning.
fn uses_nodeenv(ctx: &Ctx) -> bool {
    ctx.setting("NODE_VERSION").is_some() && ctx.find("nodeenv").is_some()
}

/// `PYTHON_VERSION` (`3`, `3.11`) -> the interpreter (`python3`, `python3.11`),
/// which Debian packages under the same name.
fn python_tool(ctx: &Ctx) -> (String, String) {
    let v = ctx.setting("PYTHON_VERSION").unwrap_or("3");
    let program = if v.chars().all(|c| c.is_ascii_digit() || c == '.') { format!("python{v}") } else { "python3".into() };
    (program.clone(), program)
}

fn create_virtualenv(ctx: &Ctx, env: &Path) -> Result<()> {
    let python = python_tool(ctx).0;
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

/// Fill a new dependency cache, where the language has a command for that.
pub fn fetch(ctx: &Ctx, runtime: Runtime, cache: &Path) -> Result<()> {
    match runtime {
        Go if ctx.has("go.mod") => ctx.run(go(ctx, cache).args(["mod", "download"]), "go mod download"),
        Rust => {
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
        _ => Ok(()),
    }
}

/// Compile the release: into its tree (Java, Clojure) or into `out` (Go, Rust).
pub fn compile(ctx: &Ctx, runtime: Runtime, cache: &Path, out: Option<&Path>) -> Result<()> {
    let bin = out.map(|o| o.join("bin")).unwrap_or_default();
    match runtime {
        Maven => {
            let mut mvn = ctx.command("mvn", &[]);
            mvn.arg("-B").arg(format!("-Dmaven.repo.local={}", cache.join("repository").display())).arg("package");
            ctx.run(&mut mvn, "mvn package")
        }
        Gradle => {
            let mut gradle = ctx.command("gradle", &[]);
            gradle.args(["--no-daemon", "build"]).env("GRADLE_USER_HOME", cache);
            ctx.run(&mut gradle, "gradle build")
        }
        Clojure => {
            let mut clojure = ctx.command("clojure", &[]);
            let repo = edn_string(&cache.join("m2"));
            clojure.args(["-Sdeps", &format!("{{:mvn/local-repo {repo}}}"), "-T:build", "release"]).env("GITLIBS", cache.join("gitlibs"));
            ctx.run(&mut clojure, "clojure -T:build release")
        }
        Leiningen => {
            // lein has no switch for its Maven repository: set :local-repo for this run.
            let mut lein = ctx.command("lein", &[]);
            lein.args(["update-in", ":", "assoc", ":local-repo", &edn_string(&cache.join("m2")), "--", "uberjar"]);
            ctx.run(&mut lein, "lein uberjar")
        }
        Go => {
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
        Rust => {
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
        _ => Ok(()),
    }
}

fn go(ctx: &Ctx, cache: &Path) -> std::process::Command {
    let mut go = ctx.command("go", &[]);
    // -modcacherw: module cache files stay removable when the cache is retired.
    let flags = format!("{} -modcacherw", ctx.setting("GOFLAGS").unwrap_or("")).trim().to_string();
    go.env("GOPATH", cache.join("gopath")).env("GOCACHE", cache.join("gocache")).env("GOFLAGS", flags);
    go
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

/// A path as an EDN string literal.
fn edn_string(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('\\', "\\\\").replace('"', "\\\""))
}

