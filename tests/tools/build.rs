//! piku-build: runtime detection in piku's order, the exact commands each
//! runtime runs, dependency environments reused or built beside the live one.
//! Real toolchains are the end-to-end suite's job (tests/e2e/build_cases.rs),
//! which reports a case whose toolchain is missing as skipped.
//!
//! Toolchains are stood in for by a script that records how it was called
//! (argv, working directory, the variables the build sets) and does the least
//! the build needs. The build looks its tools up on the app's PATH (PATH in
//! $PIKU_ROOT/settings, then the app's ENV), so a test puts the stand-ins there
//! and nothing else.

use crate::harness::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every tool a runtime may run (pnpm is left out: the build installs it with npm).
const ALL_TOOLS: &[&str] = &[
    "virtualenv", "python3", "python3.11", "poetry", "uv", "ruby", "bundle", "node", "npm", "yarn", "nodeenv", "java", "mvn", "gradle", "go",
    "clojure", "lein", "cargo", "rustc",
];

const STANDIN: &str = r#"#!/bin/sh
# Stands in for a build tool: records the call, then does the least the build needs.
name=${0##*/}
{
    printf '%s' "$name"; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'
    printf '  cwd=%s\n' "$PWD"
    for v in VIRTUAL_ENV UV_PROJECT_ENVIRONMENT BUNDLE_PATH BUNDLE_GEMFILE NODE_PATH NPM_CONFIG_PREFIX GOPATH GOCACHE GOFLAGS GO111MODULE CARGO_HOME CARGO_TARGET_DIR GRADLE_USER_HOME GITLIBS POETRY_VIRTUALENVS_CREATE CARGO_UNSTABLE_SPARSE_REGISTRY RUSTC_BOOTSTRAP PATH; do
        eval "value=\${$v-}"
        [ -n "$value" ] && printf '  %s=%s\n' "$v" "$value"
    done
} >> "@LOG@"
case " ${STANDIN_FAIL-} " in *" $name "*) echo "$name: failing, as the test asked" >&2; exit 1;; esac
for last; do :; done
case "$name $*" in
    *--version*) echo "$name ${STANDIN_VERSION:-0.0} (stand-in)"; exit 0;;
    "virtualenv "*|"python3 -m venv "*) /bin/mkdir -p "$last/bin" && /bin/cp "$0" "$last/bin/pip";;
    "npm install -g "*) /bin/mkdir -p "$NPM_CONFIG_PREFIX/bin" && /bin/cp "$0" "$NPM_CONFIG_PREFIX/bin/$last";;
    "go build -o "*"/ ./...") /bin/mkdir -p "$3" && /bin/cp "$0" "$3/hello";;
    "go build -o "*) /bin/mkdir -p "${3%/*}" && /bin/cp "$0" "$3";;
    "cargo "*--message-format=json*)
        /bin/mkdir -p "$CARGO_TARGET_DIR/release" && /bin/cp "$0" "$CARGO_TARGET_DIR/release/hello"
        printf '{"reason":"compiler-artifact","executable":"%s"}\n' "$CARGO_TARGET_DIR/release/hello"
        exit 0;;
esac
echo "$name: working"
"#;

/// A directory of stand-ins and the log they write.
struct Tools {
    dir: PathBuf,
    log: PathBuf,
}

impl Tools {
    fn new(s: &Server, name: &str, tools: &[&str]) -> Tools {
        let dir = s.dir.path().join(name);
        let log = s.dir.path().join(format!("{name}.log"));
        std::fs::create_dir_all(&dir).unwrap();
        for tool in tools {
            std::fs::write(dir.join(tool), STANDIN.replace("@LOG@", &log.display().to_string())).unwrap();
            chmod_x(&dir.join(tool));
        }
        Tools { dir, log }
    }

    /// Everything recorded: each call's argv, then indented cwd and variables.
    fn calls(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Each call as `argv @ cwd`, version probes left out.
    fn commands(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.calls().lines() {
            if let Some(cwd) = line.strip_prefix("  cwd=") {
                let last = out.last_mut().unwrap();
                *last = format!("{last} @ {cwd}");
            } else if !line.starts_with(' ') {
                out.push(line.to_string());
            }
        }
        out.retain(|c| !c.contains(" --version @ "));
        out
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A server whose build sees the stand-ins for `tools`, and nothing else, on PATH.
fn server_with(tools: &[&str]) -> (Server, Tools) {
    let s = Server::new();
    let t = Tools::new(&s, "tools", tools);
    s.write_settings(&format!("NGINX_BIN=true\nNGINX_RELOAD=true\nPATH={}\n", t.dir.display()));
    (s, t)
}

static NEXT_RELEASE: AtomicU32 = AtomicU32::new(1);

/// A release tree as piku-receive leaves it (files written directly; a
/// Procfile with a web worker unless given), and its id.
fn release(s: &Server, app: &str, files: &[(&str, &str)]) -> String {
    let id = format!("20260101-{:06}-0000000", NEXT_RELEASE.fetch_add(1, Ordering::SeqCst));
    let tree = s.root().join("releases").join(app).join(&id);
    std::fs::create_dir_all(&tree).unwrap();
    if !files.iter().any(|(name, _)| *name == "Procfile") {
        std::fs::write(tree.join("Procfile"), "web: run-me\n").unwrap();
    }
    for (name, text) in files {
        let path = tree.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    id
}

fn build(s: &Server, app: &str, id: &str) -> Run {
    s.tool("piku-build", &["build", app, id])
}

fn tree(s: &Server, app: &str, id: &str) -> PathBuf {
    s.root().join("releases").join(app).join(id)
}

/// The build's facts about a release (`<id>.build`).
fn facts(s: &Server, app: &str, id: &str) -> BTreeMap<String, String> {
    s.read(&format!("releases/{app}/{id}.build"))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The directories in envs/<app>.
fn env_dirs(s: &Server, app: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.root().join("envs").join(app))
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// `text` with the release's paths written as {tree}, {env}, {cache} and {out}.
fn placeholders(s: &Server, app: &str, id: &str, text: &str) -> String {
    let f = facts(s, app, id);
    let mut text = text.replace(&tree(s, app, id).display().to_string(), "{tree}");
    if let Some(cache) = f.get("BUILD_CACHE") {
        text = text.replace(cache.as_str(), "{cache}");
        if let Some(out) = f.get("VIRTUAL_ENV") {
            text = text.replace(out.as_str(), "{out}");
        }
    } else if let Some(env) = f.get("VIRTUAL_ENV") {
        text = text.replace(env.as_str(), "{env}");
    }
    text
}

#[test]
fn runtimes_are_detected_in_pikus_order() {
    let (s, _tools) = server_with(ALL_TOOLS);
    let everything = [
        ("requirements.txt", ""),
        ("pyproject.toml", ""),
        ("Gemfile", ""),
        ("package.json", "{}"),
        ("pom.xml", ""),
        ("build.gradle", ""),
        ("go.mod", "module example.com/hello\n"),
        ("main.go", ""),
        ("deps.edn", ""),
        ("project.clj", ""),
        ("Cargo.toml", ""),
    ];
    let said = [
        "Python app detected (requirements.txt)",
        "Python app detected (pyproject.toml, poetry)",
        "Ruby app detected (Gemfile)",
        "Node app detected (package.json)",
        "Java app detected (pom.xml, Maven)",
        "Java app detected (build.gradle, Gradle)",
        "Go app detected (go.mod)",
        "Go app detected (Go sources)",
        "Clojure app detected (deps.edn, Clojure CLI)",
        "Clojure app detected (project.clj, Leiningen)",
        "Rust app detected (Cargo.toml)",
    ];
    // Each release has the manifests from one rule on: the first one wins.
    for (n, expected) in said.iter().enumerate() {
        let app = format!("order{n}");
        let id = release(&s, &app, &everything[n..]);
        let r = build(&s, &app, &id).ok();
        assert!(r.stderr.contains(&format!("-----> {expected}\n")), "release with {:?}:\n{}", &everything[n..], r.stderr);
        assert_eq!(r.stderr.matches(" app detected").count(), 1, "{}", r.stderr);
    }
    for (procfile, expected, runtime) in [
        ("web: ./server\n", "Generic app detected", "generic"),
        ("release: ./migrate\nweb: ./server\n", "Generic app detected", "generic"),
        ("worker: ./queue\n", "Generic app detected", "generic"),
        ("static: public\n", "Static app detected", "static"),
    ] {
        let id = release(&s, "plain", &[("Procfile", procfile)]);
        let r = build(&s, "plain", &id).ok();
        assert!(r.stderr.contains(expected), "{procfile}: {}", r.stderr);
        assert_eq!(facts(&s, "plain", &id)["RUNTIME"], runtime);
    }
    // A php worker comes after the JVM languages and before Cargo.toml.
    let id = release(&s, "php", &[("Procfile", "php: public\n"), ("Cargo.toml", "")]);
    let r = build(&s, "php", &id);
    if Path::new("/usr/lib/uwsgi/plugins/php_plugin.so").is_file() {
        assert!(r.ok().stderr.contains("PHP app detected"));
    } else {
        r.fails(1, "PHP app detected").fails(1, "needs uWSGI's php plugin (/usr/lib/uwsgi/plugins/php_plugin.so), which is not installed; install it (Debian package: uwsgi-plugin-php)");
    }
}

#[test]
fn nothing_to_detect_is_an_error_and_nothing_changes() {
    let (s, tools) = server_with(ALL_TOOLS);
    for (files, needle) in [
        (&[("Procfile", "release: ./migrate\n"), ("requirements.txt", "six\n")][..], "the Procfile of app 'none' declares no worker (only tasks, or nothing)"),
        (&[("Procfile", "# nothing yet\n")], "declares no worker"),
    ] {
        let id = release(&s, "none", files);
        let r = build(&s, "none", &id).fails(1, needle);
        assert!(!r.stderr.contains("detected"), "{}", r.stderr);
        assert_eq!(tools.calls(), "", "nothing ran");
        assert_eq!(env_dirs(&s, "none"), Vec::<String>::new());
        assert!(!s.root().join(format!("releases/none/{id}.build")).exists());
    }
    let id = release(&s, "none", &[]);
    std::fs::remove_file(tree(&s, "none", &id).join("Procfile")).unwrap();
    build(&s, "none", &id).fails(1, "app 'none' has no Procfile");
}

#[test]
fn pyproject_uses_uv_when_poetry_is_not_installed() {
    let (s, _all) = server_with(ALL_TOOLS);
    let uv = Tools::new(&s, "uv-only", &["uv"]);
    let files = [
        ("ENV", format!("PATH={}\n", uv.dir.display())),
        ("pyproject.toml", "[project]\nname = \"hello\"\n".into()),
        ("uv.lock", "version = 1\n".into()),
        (".python-version", "3.12\n".into()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let id = release(&s, "py", &files);
    let r = build(&s, "py", &id).ok();
    assert!(r.stderr.contains("Python app detected (pyproject.toml, uv)"), "{}", r.stderr);
    let calls = placeholders(&s, "py", &id, &uv.calls());
    assert_eq!(
        placeholders(&s, "py", &id, &uv.commands().join("\n")),
        "uv sync --frozen --no-install-project --python 3.12 @ {tree}"
    );
    assert!(calls.contains("  UV_PROJECT_ENVIRONMENT={env}\n"), "{calls}");
    assert!(tree(&s, "py", &id).join("uv.lock").is_file(), "uv.lock is kept");

    // Without a lock uv resolves; PYTHON_VERSION wins over .python-version.
    uv.clear();
    let files = [("ENV", format!("PATH={}\nPYTHON_VERSION=3.11\n", uv.dir.display())), ("pyproject.toml", "[project]\n".into())];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let id = release(&s, "py", &files);
    build(&s, "py", &id).ok();
    assert_eq!(placeholders(&s, "py", &id, &uv.commands().join("\n")), "uv sync --no-install-project --python 3.11 @ {tree}");
}

#[test]
fn each_runtime_runs_its_exact_commands() {
    let (s, tools) = server_with(ALL_TOOLS);
    let json_check = "node -e JSON.parse(require('fs').readFileSync('package.json', 'utf8')) @ {tree}";
    // (app, its files, the commands it runs, each `argv @ cwd`)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "pip",
            &[("requirements.txt", "flask\n")],
            &["virtualenv --python=python3 {env} @ {tree}", "pip install --disable-pip-version-check --progress-bar off -r requirements.txt @ {tree}"],
        ),
        (
            "pip311",
            &[("requirements.txt", "flask\n"), ("ENV", "PYTHON_VERSION=3.11\n")],
            &["virtualenv --python=python3.11 {env} @ {tree}", "pip install --disable-pip-version-check --progress-bar off -r requirements.txt @ {tree}"],
        ),
        (
            "poetry",
            &[("pyproject.toml", "[tool.poetry]\n"), ("poetry.lock", "")],
            &["virtualenv --python=python3 {env} @ {tree}", "poetry install --no-interaction --no-root @ {tree}"],
        ),
        ("ruby", &[("Gemfile", "source 'https://rubygems.org'\n")], &["bundle install @ {tree}", "bundle config set --local path {env} @ {tree}"]),
        ("npm", &[("package.json", "{}"), ("package-lock.json", "{}")], &[json_check, "npm ci --no-audit --no-fund @ {env}"]),
        ("npm-nolock", &[("package.json", "{}")], &[json_check, "npm install --no-audit --no-fund @ {env}"]),
        ("yarn", &[("package.json", "{}"), ("ENV", "NODE_PACKAGE_MANAGER=yarn\n")], &[json_check, "yarn install @ {env}"]),
        (
            "pnpm",
            &[("package.json", "{}"), ("ENV", "NODE_PACKAGE_MANAGER=pnpm --prod\n")],
            &[json_check, "npm install -g --no-audit --no-fund pnpm @ {env}", "pnpm install --prod @ {env}"],
        ),
        (
            "nodeenv",
            &[("package.json", "{}"), ("ENV", "NODE_VERSION=20.11.0\n")],
            &["nodeenv --prebuilt --node=20.11.0 --clean-src --force {env} @ {tree}", json_check, "npm install --no-audit --no-fund @ {env}"],
        ),
        ("maven", &[("pom.xml", "<project/>")], &["mvn -B -Dmaven.repo.local={cache}/repository package @ {tree}"]),
        ("gradle", &[("build.gradle", "")], &["gradle --no-daemon build @ {tree}"]),
        ("gomod", &[("go.mod", "module example.com/hello\n"), ("main.go", "")], &["go mod download @ {tree}", "go build -o {out}/bin/ ./... @ {tree}"]),
        ("gosrc", &[("main.go", "package main\n")], &["go build -o {out}/bin/gosrc . @ {tree}"]),
        ("clj", &[("deps.edn", "{}")], &["clojure -Sdeps {:mvn/local-repo \"{cache}/m2\"} -T:build release @ {tree}"]),
        ("lein", &[("project.clj", "")], &["lein update-in : assoc :local-repo \"{cache}/m2\" -- uberjar @ {tree}"]),
        (
            "rust",
            &[("Cargo.toml", "[package]\n"), ("Cargo.lock", "")],
            &[
                "cargo fetch --locked @ {tree}",
                "cargo build --release --locked @ {tree}",
                "cargo build --release --offline --message-format=json --locked @ {tree}",
            ],
        ),
        ("rust-nolock", &[("Cargo.toml", "[package]\n")], &["cargo fetch @ {tree}", "cargo build --release @ {tree}", "cargo build --release --offline --message-format=json @ {tree}"]),
        ("generic", &[], &[]),
    ];
    for (app, files, expected) in cases {
        tools.clear();
        let id = release(&s, app, files);
        let r = build(&s, app, &id).ok();
        let commands: Vec<String> = tools.commands().iter().map(|c| placeholders(&s, app, &id, c)).collect();
        assert_eq!(commands, *expected, "{app}:\n{}", r.stderr);
        // Each build step is announced, and its output streamed, indented
        // (the JSON check and cargo's list of programs are quiet queries).
        let said = placeholders(&s, app, &id, &r.stderr);
        for command in expected.iter().filter(|c| !c.starts_with("node -e") && !c.contains("--message-format=json")) {
            let argv = command.split(" @ ").next().unwrap();
            assert!(said.contains(&format!("-----> Running {argv}\n")), "{app}: {argv} not announced:\n{said}");
            let tool = argv.split(' ').next().unwrap();
            assert!(said.contains(&format!("\n       {tool}: working\n")), "{app}: {tool}'s output not shown:\n{said}");
        }
    }

    // The variables that put each tool's output in its place.
    for (app, files, vars) in [
        ("v-poetry", &[("pyproject.toml", "")][..], &["VIRTUAL_ENV={env}", "POETRY_VIRTUALENVS_CREATE=false", "PATH={env}/bin:"][..]),
        ("v-pip", &[("requirements.txt", "")], &["VIRTUAL_ENV={env}", "PATH={env}/bin:"]),
        ("v-ruby", &[("Gemfile", "")], &["BUNDLE_PATH={env}", "BUNDLE_GEMFILE={tree}/Gemfile"]),
        ("v-node", &[("package.json", "{}")], &["NODE_PATH={env}/node_modules", "NPM_CONFIG_PREFIX={env}", "PATH={env}/bin:{env}/node_modules/.bin:"]),
        ("v-gradle", &[("build.gradle", "")], &["GRADLE_USER_HOME={cache}"]),
        ("v-clj", &[("deps.edn", "")], &["GITLIBS={cache}/gitlibs"]),
        ("v-go", &[("go.mod", ""), ("ENV", "GOFLAGS=-mod=vendor\n")], &["GOPATH={cache}/gopath", "GOCACHE={cache}/gocache", "GOFLAGS=-mod=vendor -modcacherw"]),
        ("v-gosrc", &[("main.go", "")], &["GO111MODULE=auto"]),
        ("v-rust", &[("Cargo.toml", "")], &["CARGO_HOME={cache}/cargo", "CARGO_TARGET_DIR={cache}/target"]),
    ] {
        tools.clear();
        let id = release(&s, app, files);
        build(&s, app, &id).ok();
        let calls = placeholders(&s, app, &id, &tools.calls());
        for var in vars {
            assert!(calls.contains(&format!("  {var}")), "{app}: no {var} in\n{calls}");
        }
    }
}

#[test]
fn cargo_before_1_68_reads_crates_io_through_the_sparse_protocol() {
    let (s, tools) = server_with(ALL_TOOLS);
    // (cargo's version, the app's ENV, whether the build switches the sparse protocol on)
    for (n, (version, env, switched)) in [
        ("1.65.0", "", true),
        ("1.67.1", "", true),
        ("1.68.0", "", false),
        ("1.91.0", "", false),
        ("1.65.0", "CARGO_REGISTRIES_CRATES_IO_PROTOCOL=git\n", false),
    ]
    .into_iter()
    .enumerate()
    {
        tools.clear();
        let app = format!("rs{n}");
        let id = release(&s, &app, &[("Cargo.toml", "[package]\n"), ("ENV", &format!("STANDIN_VERSION={version}\n{env}"))]);
        build(&s, &app, &id).ok();
        let calls = tools.calls();
        let cargo_calls = calls.split("\ncargo ").skip(1).filter(|c| !c.starts_with("--version")).collect::<Vec<_>>();
        assert_eq!(cargo_calls.len(), 3, "fetch, build, list: {calls}");
        for call in cargo_calls {
            let has = call.contains("  CARGO_UNSTABLE_SPARSE_REGISTRY=true\n") && call.contains("  RUSTC_BOOTSTRAP=1\n");
            assert_eq!(has, switched, "cargo {version} with {env:?}:\ncargo {call}");
        }
    }
}

#[test]
fn facts_and_links_connect_the_release_to_its_environment() {
    let (s, _tools) = server_with(ALL_TOOLS);
    let id = release(&s, "web", &[("package.json", "{}")]);
    build(&s, "web", &id).ok();
    let f = facts(&s, "web", &id);
    let env = PathBuf::from(&f["VIRTUAL_ENV"]);
    assert_eq!(env.parent().unwrap(), s.root().join("envs/web"));
    assert!(env.file_name().unwrap().to_string_lossy().starts_with("node-"));
    assert_eq!(f["RUNTIME"], "node");
    assert_eq!(f["NODE_PATH"], env.join("node_modules").display().to_string());
    assert_eq!(f["PATH_PREFIX"], env.join("node_modules/.bin").display().to_string());
    assert_eq!(std::fs::read_link(tree(&s, "web", &id).join("node_modules")).unwrap(), env.join("node_modules"));
    assert_eq!(std::fs::read_to_string(env.join("package.json")).unwrap(), "{}", "the package manager ran on a copy of the manifest");

    // Go and Rust programs land in the release's own bin/.
    for (app, files) in [("go", &[("go.mod", "module x\n")][..]), ("rs", &[("Cargo.toml", "")])] {
        let id = release(&s, app, files);
        build(&s, app, &id).ok();
        let f = facts(&s, app, &id);
        assert_eq!(f["VIRTUAL_ENV"], s.root().join(format!("envs/{app}/{}-release-{id}", if app == "go" { "go" } else { "rust" })).display().to_string());
        assert!(Path::new(&f["VIRTUAL_ENV"]).join("bin/hello").is_file(), "{f:?}");
        assert!(Path::new(&f["BUILD_CACHE"]).join(".piku-complete").is_file());
    }
}

#[test]
fn unchanged_dependencies_are_reused_and_changed_ones_built_beside_the_live_ones() {
    let (s, tools) = server_with(ALL_TOOLS);
    let first = release(&s, "web", &[("package.json", "{\"dependencies\":{}}"), ("index.js", "one")]);
    build(&s, "web", &first).ok();
    let env = facts(&s, "web", &first)["VIRTUAL_ENV"].clone();

    tools.clear();
    let second = release(&s, "web", &[("package.json", "{\"dependencies\":{}}"), ("index.js", "two")]);
    let r = build(&s, "web", &second).ok();
    assert!(r.stderr.contains(&format!("-----> Dependencies unchanged, skipped (reusing {env})")), "{}", r.stderr);
    assert!(!tools.calls().contains("npm install"), "{}", tools.calls());
    assert_eq!(facts(&s, "web", &second)["VIRTUAL_ENV"], env);
    assert_eq!(std::fs::read_link(tree(&s, "web", &second).join("node_modules")).unwrap(), Path::new(&env).join("node_modules"));

    // The runtime version is part of the key too.
    let third = release(&s, "web", &[("package.json", "{\"dependencies\":{}}"), ("ENV", "NODE_PACKAGE_MANAGER=yarn\n")]);
    let r = build(&s, "web", &third).ok();
    assert!(r.stderr.contains("Installing dependencies into"), "{}", r.stderr);
    let changed = facts(&s, "web", &third)["VIRTUAL_ENV"].clone();
    assert_ne!(changed, env);
    assert!(Path::new(&env).join(".piku-complete").is_file(), "the environment of the kept releases stays");
    assert_eq!(env_dirs(&s, "web").len(), 2);
}

#[test]
fn a_failed_install_leaves_the_live_environment_untouched() {
    let (s, _tools) = server_with(ALL_TOOLS);
    let live = release(&s, "web", &[("package.json", "{}")]);
    build(&s, "web", &live).ok();
    let env = facts(&s, "web", &live)["VIRTUAL_ENV"].clone();
    let before = env_dirs(&s, "web");

    let broken = release(&s, "web", &[("package.json", "{\"changed\":1}"), ("ENV", "STANDIN_FAIL=npm\n")]);
    let r = build(&s, "web", &broken).fails(1, "npm install for 'web' failed (exit code 1)");
    assert!(r.stderr.contains("       npm: failing, as the test asked\n"), "the tool's own error is shown: {}", r.stderr);
    assert_eq!(env_dirs(&s, "web"), before, "the half-made environment is gone");
    assert!(Path::new(&env).join(".piku-complete").is_file());
    assert!(!s.root().join(format!("releases/web/{broken}.build")).exists());
}

#[test]
fn a_missing_tool_is_named_with_its_debian_package_and_nothing_changes() {
    let (s, _tools) = server_with(&["ruby", "java", "node", "npm"]);
    for (app, files, needle) in [
        ("gems", &[("Gemfile", "")][..], "Ruby app 'gems' needs 'bundle', which is not on the build's PATH"),
        ("gems", &[("Gemfile", "")][..], "(Debian package: ruby-bundler)"),
        ("mvn", &[("pom.xml", "")], "Java app 'mvn' needs 'mvn', which is not on the build's PATH"),
        ("mvn", &[("pom.xml", "")], "(Debian package: maven)"),
        ("go", &[("main.go", "")], "(Debian package: golang-go)"),
        ("rs", &[("Cargo.toml", "")], "needs 'cargo'"),
        ("py311", &[("requirements.txt", ""), ("ENV", "PYTHON_VERSION=3.11\n")], "needs 'python3.11', which is not on the build's PATH"),
        ("py311", &[("requirements.txt", ""), ("ENV", "PYTHON_VERSION=3.11\n")], "(Debian package: python3.11)"),
        ("py", &[("pyproject.toml", "")], "has a pyproject.toml, which needs poetry (Debian package: python3-poetry) or uv"),
    ] {
        let id = release(&s, app, files);
        build(&s, app, &id).fails(1, needle);
        assert_eq!(env_dirs(&s, app), Vec::<String>::new());
        assert!(!s.root().join(format!("releases/{app}/{id}.build")).exists());
    }
    // NODE_VERSION without nodeenv: the server's node, with a warning; without node either, an error.
    let id = release(&s, "node", &[("package.json", "{}"), ("ENV", "NODE_VERSION=20\n")]);
    let r = build(&s, "node", &id).ok();
    assert!(r.stderr.contains("=====> NODE_VERSION is set, but nodeenv is not installed (Debian package: nodeenv): 'node' is built with the server's node (node 0.0 (stand-in))"), "{}", r.stderr);
    let (bare, _none) = server_with(&["ruby"]);
    let id = release(&bare, "node", &[("package.json", "{}"), ("ENV", "NODE_VERSION=20\n")]);
    build(&bare, "node", &id).fails(1, "Node app 'node' needs 'node' (NODE_VERSION is set, but nodeenv is not installed), which is not on the build's PATH");
    assert_eq!(env_dirs(&bare, "node"), Vec::<String>::new());

    // A pyproject.toml for a Node app's linters does not stop it being a Node app.
    let id = release(&s, "linted", &[("pyproject.toml", "[tool.ruff]\n"), ("package.json", "{}")]);
    assert!(build(&s, "linted", &id).ok().stderr.contains("Node app detected"));
}

#[test]
fn environments_no_kept_release_uses_are_removed() {
    let (s, _tools) = server_with(ALL_TOOLS);
    let old = release(&s, "web", &[("package.json", "{\"v\":1}")]);
    build(&s, "web", &old).ok();
    let old_env = facts(&s, "web", &old)["VIRTUAL_ENV"].clone();
    let kept = release(&s, "web", &[("package.json", "{\"v\":2}")]);
    build(&s, "web", &kept).ok();
    let kept_env = facts(&s, "web", &kept)["VIRTUAL_ENV"].clone();
    assert!(Path::new(&old_env).is_dir(), "a kept release still uses it");

    // The old release is pruned (as piku-receive does); the next build tidies up.
    std::fs::remove_dir_all(tree(&s, "web", &old)).unwrap();
    std::fs::remove_file(s.root().join(format!("releases/web/{old}.build"))).unwrap();
    let next = release(&s, "web", &[("package.json", "{\"v\":2}")]);
    let r = build(&s, "web", &next).ok();
    assert!(r.stderr.contains(&format!("Removing unused dependency environment {old_env}")), "{}", r.stderr);
    assert!(!Path::new(&old_env).exists());
    assert!(Path::new(&kept_env).is_dir());
}

#[test]
fn compiled_languages_reuse_the_dependency_cache_but_compile_every_release() {
    let (s, tools) = server_with(ALL_TOOLS);
    let gomod = ("go.mod", "module example.com/hello\n");
    let first = release(&s, "go", &[gomod, ("main.go", "one")]);
    let r = build(&s, "go", &first).ok();
    assert!(r.stderr.contains("Dependencies new or changed: a new dependency cache"), "{}", r.stderr);
    assert!(r.stderr.contains("-----> Compiling 'go' (on every deploy: the program depends on the source, not only on go.mod)"), "{}", r.stderr);
    let cache = facts(&s, "go", &first)["BUILD_CACHE"].clone();

    tools.clear();
    let second = release(&s, "go", &[gomod, ("main.go", "two")]);
    let r = build(&s, "go", &second).ok();
    assert!(r.stderr.contains(&format!("-----> Dependencies unchanged, skipped (reusing the dependency cache {cache})")), "{}", r.stderr);
    assert_eq!(placeholders(&s, "go", &second, &tools.commands().join("\n")), "go build -o {out}/bin/ ./... @ {tree}");
    let (one, two) = (facts(&s, "go", &first)["VIRTUAL_ENV"].clone(), facts(&s, "go", &second)["VIRTUAL_ENV"].clone());
    assert_ne!(one, two);
    assert!(Path::new(&one).join("bin/hello").is_file(), "the live release's program is untouched");

    // The same release built again (by hand, or `piku deploy`) is not recompiled.
    tools.clear();
    let r = build(&s, "go", &second).ok();
    assert!(r.stderr.contains(&format!("Release {second} is already built, skipped")), "{}", r.stderr);
    assert_eq!(tools.commands(), Vec::<String>::new());
}

#[test]
fn a_failed_compile_keeps_the_live_program_and_a_new_cache_goes() {
    let (s, _tools) = server_with(ALL_TOOLS);
    let live = release(&s, "rs", &[("Cargo.toml", "[package]\n")]);
    build(&s, "rs", &live).ok();
    let before = env_dirs(&s, "rs");
    let out = facts(&s, "rs", &live)["VIRTUAL_ENV"].clone();

    let broken = release(&s, "rs", &[("Cargo.toml", "[package]\nversion = \"2\"\n"), ("ENV", "STANDIN_FAIL=cargo\n")]);
    let r = build(&s, "rs", &broken).fails(1, "cargo fetch for 'rs' failed");
    assert!(r.stderr.contains("cargo: failing, as the test asked"), "{}", r.stderr);
    assert_eq!(env_dirs(&s, "rs"), before);
    assert!(Path::new(&out).join("bin/hello").is_file());
}

#[test]
fn destroy_removes_every_dependency_environment() {
    let (s, _tools) = server_with(ALL_TOOLS);
    for (app, files) in [("web", &[("package.json", "{}")][..]), ("web", &[("go.mod", "")])] {
        let id = release(&s, app, files);
        build(&s, app, &id).ok();
    }
    assert_eq!(env_dirs(&s, "web").len(), 3, "a node environment, a Go cache and a Go release");
    s.tool("piku-build", &["destroy", "web"]).ok();
    assert_eq!(env_dirs(&s, "web"), Vec::<String>::new());
}

#[test]
fn preflight_runs_before_the_build_and_release_after_it_with_the_apps_environment() {
    let (s, tools) = server_with(ALL_TOOLS);
    let app = GitApp::new(&[
        ("package.json", "{}"),
        ("ENV", "GREETING=hello\n"),
        (
            "Procfile",
            "web: run-me\npreflight: echo \"preflight in $PWD: $GREETING app=$APP port=$PORT\"; test -f package.json\nrelease: echo \"release: node_path=$NODE_PATH\"\n",
        ),
    ]);
    let r = s.push(&app, "web", "main").ok();
    assert!(r.stderr.contains("Deployed 'web'"), "{}", r.stderr);
    let id = s.live_id("web").unwrap();
    let env = facts(&s, "web", &id)["VIRTUAL_ENV"].clone();
    // (On a first deploy piku-config has not settled the port yet: any port will do.)
    let said = format!("       preflight in {}: hello app=web port=", tree(&s, "web", &id).display());
    let port = r.stderr.split(&said).nth(1).and_then(|rest| rest.lines().next()).map(|p| p.trim().parse::<u16>());
    assert!(matches!(port, Some(Ok(_))), "the preflight task saw the app's environment:\n{}", r.stderr);
    let (preflight, install, release) = (
        r.stderr.find(&said),
        r.stderr.find("Running npm install"),
        r.stderr.find(&format!("       release: node_path={env}/node_modules ")),
    );
    assert!(preflight.is_some() && install.is_some() && release.is_some(), "{}", r.stderr);
    assert!(preflight < install && install < release, "preflight, then the build, then release:\n{}", r.stderr);

    // A failing preflight stops the deploy before anything is installed.
    tools.clear();
    app.commit(&[("package.json", "{\"v\":2}"), ("Procfile", "web: run-me\npreflight: echo checking; exit 3\n")], "preflight fails");
    let r = s.push(&app, "web", "main").ok();
    assert!(r.stderr.contains("       checking ") && r.stderr.contains("the preflight task of 'web' failed (exit code 3)"), "{}", r.stderr);
    assert!(r.stderr.contains("Deploy of 'web' failed: the build failed"), "{}", r.stderr);
    assert_eq!(s.live_id("web").unwrap(), id, "the old release still serves");
    assert!(!tools.calls().contains("npm"), "nothing was installed: {}", tools.calls());
    assert_eq!(env_dirs(&s, "web").len(), 1);
}

#[test]
fn build_output_reaches_the_pusher_line_by_line_as_it_happens() {
    use std::io::BufRead;
    let (s, tools) = server_with(ALL_TOOLS);
    // An npm that prints a line, then waits until the test has read it.
    let slow = s.dir.path().join("slow");
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::write(
        slow.join("npm"),
        "#!/bin/sh\necho 'first line'\ni=0\nwhile [ ! -e \"$GO_ON\" ] && [ $i -lt 100 ]; do /bin/sleep 0.1; i=$((i+1)); done\n\
         if [ -e \"$GO_ON\" ]; then echo 'second line'; else echo 'second line, but nobody saw the first one in time'; fi\n",
    )
    .unwrap();
    chmod_x(&slow.join("npm"));
    let go_on = s.dir.path().join("go-on");
    let env = format!("PATH={}:{}\nGO_ON={}\n", slow.display(), tools.dir.display(), go_on.display());
    let id = release(&s, "web", &[("package.json", "{}"), ("ENV", &env)]);

    let mut child = std::process::Command::new(s.dir.path().join("prefix/bin/piku-build"))
        .args(["build", "web", &id])
        .env_clear()
        .env("HOME", s.home())
        .env("USER", "piku")
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "       first line" {
            std::fs::write(&go_on, "").unwrap();
        }
        said.push(line);
    }
    assert!(child.wait().unwrap().success(), "{said:#?}");
    let at = |needle: &str| said.iter().position(|l| l == needle).unwrap_or_else(|| panic!("no {needle:?} in {said:#?}"));
    assert!(at("-----> Running npm install --no-audit --no-fund") < at("       first line"));
    assert!(at("       first line") < at("       second line"));
}

/// The README's runtimes table lists piku-build's runtime blocks, one row
/// each, in detection order, with what selects each one.
#[test]
fn the_readme_runtimes_table_matches_the_runtime_blocks() {
    let s = Server::new();
    let listed = s.tool("piku-build", &["runtimes"]).ok().stdout;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows: Vec<String> = readme
        .lines()
        .skip_while(|l| *l != "### Runtimes")
        .skip_while(|l| !l.starts_with("| the repo has"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").map(|c| c.trim_matches(|c: char| c == '|' || c.is_whitespace())).collect();
            let name = cells[1].split('`').nth(1).unwrap_or("");
            format!("{name}\t{}", cells[0].replace('`', ""))
        })
        .collect();
    let listed: Vec<&str> = listed.lines().collect();
    assert!(listed.len() >= 14, "piku-build runtimes:\n{}", listed.join("\n"));
    assert_eq!(rows, listed, "README.md's runtimes table (left) and `piku-build runtimes` (right) differ");
}
