//! piku-build's runtimes through real pushes: each app is pushed, answers
//! through nginx, and a second push with only a code change reuses its
//! dependency environment (the build says so, and the environment's
//! `.piku-complete` marker keeps its inode and mtime). Bad input (a package
//! that does not exist, a package.json that is not JSON, Rust that does not
//! compile) stops the deploy with the old release serving and its environment
//! untouched.
//!
//! A case whose toolchain is not installed for the piku user is reported as
//! skipped (a failure under PIKU_E2E_REQUIRED=1). The JVM apps build offline
//! from Debian's Maven repository; a build that fails is a failure.

use crate::SKIPPED;
use crate::client::{App, COMMAND_TIMEOUT, Out, expect_text, indent, run, serves, serves_now};
use crate::server::Server;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// ENV lines that hand the build's tools this machine's CA bundle and proxy
/// settings (sshd gives the piku user a clean environment; an app behind a
/// TLS-inspecting proxy sets them in its ENV just so). Node and uv do not read
/// the system's CA store by themselves.
fn network_env() -> String {
    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    let mut lines = String::new();
    for key in ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "PIP_CERT"] {
        match std::env::var(key).ok().filter(|v| !v.is_empty()) {
            Some(v) => lines.push_str(&format!("{key}={v}\n")),
            None if Path::new(BUNDLE).is_file() => lines.push_str(&format!("{key}={BUNDLE}\n")),
            None => {}
        }
    }
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"] {
        if let Some(v) = std::env::var(key).ok().filter(|v| !v.is_empty()) {
            lines.push_str(&format!("{key}={v}\n"));
        }
    }
    lines
}

/// Err(skipped) unless every tool is on the piku user's build PATH.
fn require_tools(s: &Server, tools: &[&str]) -> Result<(), String> {
    for tool in tools {
        let probe = format!("PATH=$HOME/bin:$HOME/.local/bin:$PATH command -v {tool}");
        let out = run(&mut s.as_user(&["sh", "-c", &probe]), None, COMMAND_TIMEOUT);
        if out.code != 0 {
            return Err(format!("{SKIPPED}'{tool}' is not installed for the piku user"));
        }
    }
    Ok(())
}

/// Push `app`; Ok when the deploy went live and the output says `detected`.
fn push_live(app: &App, detected: &str) -> Result<Out, String> {
    let out = app.deploy("main")?;
    expect_text(&out.all(), &format!("Deployed '{}'", app.name), "the push")?;
    expect_text(&out.all(), detected, "the push")?;
    Ok(out)
}

fn with_push(error: String, push: &Out) -> String {
    format!("{error}\nafter this push:\n{}", indent(&push.all()))
}

/// The build's facts about the live release (`releases/<app>/<id>.build`).
fn live_facts(s: &Server, app: &str) -> Result<BTreeMap<String, String>, String> {
    let link = s.piku_root().join("apps").join(app);
    let target = std::fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let id = target.file_name().ok_or("the apps/ link has no file name")?.to_string_lossy().into_owned();
    let file = s.piku_root().join(format!("releases/{app}/{id}.build"));
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut facts: BTreeMap<String, String> =
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    facts.insert("ID".into(), id);
    Ok(facts)
}

/// The dependency environment (or cache) the live release uses, and its marker's (inode, mtime).
fn live_environment(s: &Server, app: &str, key: &str) -> Result<(PathBuf, (u64, i64, i64)), String> {
    let facts = live_facts(s, app)?;
    let dir = PathBuf::from(facts.get(key).ok_or_else(|| format!("the live release of '{app}' has no {key}: {facts:?}"))?);
    let marker = dir.join(".piku-complete");
    let meta = std::fs::metadata(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok((dir, (meta.ino(), meta.mtime(), meta.mtime_nsec())))
}

fn env_dirs(s: &Server, app: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.piku_root().join("envs").join(app))
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// One runtime's workflow.
struct Runtime<'a> {
    name: &'a str,
    tools: &'a [&'a str],
    /// The build's words for the detection.
    detected: &'a str,
    /// The app's files (ENV gets NGINX_SERVER_NAME and network_env() added).
    files: &'a [(&'a str, &'a str)],
    /// The code change of the second push, and what the page says before and after.
    code: (&'a str, &'a str),
    pages: (&'a str, &'a str),
    /// The fact naming the environment (VIRTUAL_ENV) or dependency cache (BUILD_CACHE).
    key: &'a str,
    /// What the build says when it installs (absent on the second push).
    installs: &'a str,
    /// What else the first push must say.
    first_says: Option<&'a str>,
    /// A bad third push: its files, and what its output must say.
    bad: Option<(&'a [(&'a str, &'a str)], &'a [&'a str])>,
}

fn deploy_runtime(s: &Server, r: &Runtime) -> Result<(), String> {
    require_tools(s, r.tools)?;
    let host = format!("{}.example.test", r.name);
    let app = App::new(s, r.name);
    let mut env = format!("NGINX_SERVER_NAME={host}\n{}", network_env());
    for (path, content) in r.files {
        if *path == "ENV" {
            env.push_str(content);
        } else {
            app.write(path, content);
        }
    }
    app.write("ENV", &env);
    app.commit("first")?;
    let out = push_live(&app, r.detected)?;
    expect_text(&out.all(), r.installs, "the first push")?;
    if let Some(said) = r.first_says {
        expect_text(&out.all(), said, "the first push")?;
    }
    serves(s, &host, "/", r.pages.0).map_err(|e| with_push(e, &out))?;
    let (dir, marker) = live_environment(s, r.name, r.key)?;

    // Only the code changes: the environment is reused, not rebuilt.
    app.write(r.code.0, r.code.1);
    app.commit("code only")?;
    let out = push_live(&app, r.detected)?;
    expect_text(&out.all(), "-----> Dependencies unchanged, skipped", "the second push (code only)")?;
    if out.all().contains(r.installs) {
        return Err(with_push(format!("the second push ran {:?} again", r.installs), &out));
    }
    serves(s, &host, "/", r.pages.1).map_err(|e| with_push(e, &out))?;
    let (dir2, marker2) = live_environment(s, r.name, r.key)?;
    if (&dir2, marker2) != (&dir, marker) {
        return Err(with_push(format!("the environment was rebuilt: {} {marker:?} became {} {marker2:?}", dir.display(), dir2.display()), &out));
    }

    let Some((files, needles)) = r.bad else { return Ok(()) };
    let live = live_facts(s, r.name)?["ID"].clone();
    let dirs = env_dirs(s, r.name);
    for (path, content) in files {
        app.write(path, content);
    }
    app.commit("bad input")?;
    let out = app.push("main");
    for needle in needles.iter().chain(&[&*format!("Deploy of '{}' failed", r.name), "still serving"]) {
        expect_text(&out.all(), needle, "the push of bad input")?;
    }
    serves_now(s, &host, "/", r.pages.1).map_err(|e| with_push(format!("the old release no longer serves: {e}"), &out))?;
    if live_facts(s, r.name)?["ID"] != live {
        return Err(with_push("another release went live".into(), &out));
    }
    let (dir3, marker3) = live_environment(s, r.name, r.key)?;
    if (&dir3, marker3) != (&dir, marker) || env_dirs(s, r.name) != dirs {
        return Err(with_push(format!("the failed build changed the environments: {dirs:?} became {:?}", env_dirs(s, r.name)), &out));
    }
    Ok(())
}

const PYTHON_APP: &str = r#"import http.server, os, six
PAGE = "pip one"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s six=%s\n" % (PAGE, six.__version__)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((os.environ["BIND_ADDRESS"], int(os.environ["PORT"])), H).serve_forever()
"#;

pub fn python_pip(s: &Server) -> Result<(), String> {
    let two = PYTHON_APP.replace("pip one", "pip two");
    deploy_runtime(
        s,
        &Runtime {
            name: "build-pip",
            tools: &["python3"],
            detected: "Python app detected (requirements.txt)",
            files: &[("requirements.txt", "six\n"), ("app.py", PYTHON_APP), ("Procfile", "web: python app.py\n")],
            code: ("app.py", &two),
            pages: ("pip one six=", "pip two six="),
            key: "VIRTUAL_ENV",
            first_says: None,
            installs: "Running pip install",
            bad: Some((
                &[("requirements.txt", "six\npiku-no-such-package-anywhere==0.0.1\n")],
                &["No matching distribution found for piku-no-such-package-anywhere", "pip install for 'build-pip' failed"],
            )),
        },
    )
}

pub fn python_uv(s: &Server) -> Result<(), String> {
    let one = PYTHON_APP.replace("pip one", "uv one");
    let two = PYTHON_APP.replace("pip one", "uv two");
    let pyproject = "[project]\nname = \"hello\"\nversion = \"0.1.0\"\nrequires-python = \">=3.9\"\ndependencies = [\"six\"]\n";
    // The developer's lock, made here with uv as they would (`uv lock`).
    let scratch = s.work.join("client/uv-lock");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    std::fs::write(scratch.join("pyproject.toml"), pyproject).map_err(|e| e.to_string())?;
    let Some(uv) = ["/usr/local/bin/uv", "/usr/bin/uv"].into_iter().find(|p| Path::new(p).is_file()) else {
        return Err(format!("{SKIPPED}no uv on this machine to lock the app with"));
    };
    run(std::process::Command::new(uv).arg("lock").current_dir(&scratch), None, COMMAND_TIMEOUT).ok("uv lock")?;
    let lock = std::fs::read_to_string(scratch.join("uv.lock")).map_err(|e| format!("uv.lock: {e}"))?;
    deploy_runtime(
        s,
        &Runtime {
            name: "build-uv",
            tools: &["uv", "python3"],
            detected: "Python app detected (pyproject.toml, uv)",
            files: &[("pyproject.toml", pyproject), ("uv.lock", &lock), ("app.py", &one), ("Procfile", "web: python app.py\n")],
            code: ("app.py", &two),
            pages: ("uv one six=", "uv two six="),
            key: "VIRTUAL_ENV",
            first_says: None,
            installs: "Running uv sync --frozen --no-install-project",
            bad: None,
        },
    )?;
    // The committed uv.lock is kept in the release (piku deletes it), and was synced exactly.
    let kept = std::fs::read_to_string(s.piku_root().join("apps/build-uv/uv.lock")).map_err(|e| format!("the live uv.lock: {e}"))?;
    if kept != lock {
        return Err("the live release's uv.lock is not the committed one".into());
    }
    Ok(())
}

const NODE_APP: &str = r#"const ms = require('ms');
require('http').createServer((req, res) => res.end(`node one ${ms(60000)}\n`)).listen(process.env.PORT, process.env.BIND_ADDRESS);
"#;

pub fn node_npm(s: &Server) -> Result<(), String> {
    let two = NODE_APP.replace("node one", "node two");
    deploy_runtime(
        s,
        &Runtime {
            name: "build-node",
            tools: &["node", "npm"],
            detected: "Node app detected (package.json)",
            files: &[
                ("package.json", r#"{"name":"hello","version":"1.0.0","private":true,"dependencies":{"ms":"2.1.3"}}"#),
                ("server.js", NODE_APP),
                ("Procfile", "web: node server.js\n"),
            ],
            code: ("server.js", &two),
            pages: ("node one 1m", "node two 1m"),
            key: "VIRTUAL_ENV",
            first_says: None,
            installs: "Running npm install",
            bad: Some((&[("package.json", "{not json")], &["package.json of 'build-node' is not valid JSON"])),
        },
    )
}

const GO_APP: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "go one") })
	panic(http.ListenAndServe(os.Getenv("BIND_ADDRESS")+":"+os.Getenv("PORT"), nil))
}
"#;

pub fn go_stdlib(s: &Server) -> Result<(), String> {
    let two = GO_APP.replace("go one", "go two");
    deploy_runtime(
        s,
        &Runtime {
            name: "build-go",
            tools: &["go"],
            detected: "Go app detected (go.mod)",
            files: &[
                ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
                ("main.go", GO_APP),
                ("Procfile", "web: hello\npreflight: echo \"preflight of $APP: $(ls go.mod)\"\n"),
            ],
            code: ("main.go", &two),
            pages: ("go one", "go two"),
            key: "BUILD_CACHE",
            first_says: Some("preflight of build-go: go.mod"),
            installs: "Dependencies new or changed",
            // A failing preflight task stops the deploy before the build.
            bad: Some((
                &[("Procfile", "web: hello\npreflight: echo not ready; exit 4\n"), ("go.mod", "module example.com/hello\n\ngo 1.19\n// changed\n")],
                &["not ready", "the preflight task of 'build-go' failed (exit code 4)"],
            )),
        },
    )
}

const RUST_APP: &str = r#"use std::io::{Read, Write};

fn main() {
    let address = format!("{}:{}", std::env::var("BIND_ADDRESS").unwrap(), std::env::var("PORT").unwrap());
    let listener = std::net::TcpListener::bind(address).unwrap();
    for stream in listener.incoming() {
        // (no let-else: Debian 12's rustc is 1.63)
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(_) => continue,
        };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let body = format!("rust one {}\n", itoa::Buffer::new().format(42u32));
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", body.len(), body);
    }
}
"#;

pub fn rust_crate(s: &Server) -> Result<(), String> {
    let two = RUST_APP.replace("rust one", "rust two");
    deploy_runtime(
        s,
        &Runtime {
            name: "build-rust",
            tools: &["cargo", "rustc"],
            detected: "Rust app detected (Cargo.toml)",
            files: &[
                // itoa 1.0.9 builds with Debian 12's rustc 1.63.
                ("Cargo.toml", "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.9\"\n"),
                ("src/main.rs", RUST_APP),
                ("Procfile", "web: hello\n"),
            ],
            code: ("src/main.rs", &two),
            pages: ("rust one 42", "rust two 42"),
            key: "BUILD_CACHE",
            first_says: None,
            installs: "Dependencies new or changed",
            bad: Some((
                &[("src/main.rs", "fn main() { this is not rust }\n")],
                &["Running cargo build --release", "error", "cargo build for 'build-rust' failed"],
            )),
        },
    )
}

const RUBY_APP: &str = r#"require "socket"
server = TCPServer.new(ENV.fetch("BIND_ADDRESS"), Integer(ENV.fetch("PORT")))
loop do
  client = server.accept
  client.readpartial(4096) rescue nil
  body = "ruby one bundler=#{defined?(Bundler) ? 'yes' : 'no'}\n"
  client.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  client.close
end
"#;

/// A Gemfile with no gems: bundler runs (offline) and the app runs under `bundle exec`.
pub fn ruby_bundler(s: &Server) -> Result<(), String> {
    let two = RUBY_APP.replace("ruby one", "ruby two");
    deploy_runtime(
        s,
        &Runtime {
            name: "build-ruby",
            tools: &["ruby", "bundle"],
            detected: "Ruby app detected (Gemfile)",
            files: &[("Gemfile", "source \"https://rubygems.org\"\n"), ("app.rb", RUBY_APP), ("Procfile", "web: bundle exec ruby app.rb\n")],
            code: ("app.rb", &two),
            pages: ("ruby one bundler=yes", "ruby two bundler=yes"),
            key: "VIRTUAL_ENV",
            first_says: None,
            installs: "Running bundle install",
            bad: None,
        },
    )
}

/// A php worker: uWSGI's php plugin serves the docroot; nothing to install.
pub fn php_worker(s: &Server) -> Result<(), String> {
    if !Path::new("/usr/lib/uwsgi/plugins/php_plugin.so").is_file() {
        return Err(format!("{SKIPPED}uWSGI's php plugin is not installed (Debian package: uwsgi-plugin-php)"));
    }
    let host = "build-php.example.test";
    let app = App::new(s, "build-php");
    app.write("Procfile", "php: public\n")
        .write("ENV", &format!("NGINX_SERVER_NAME={host}\n"))
        .write("public/index.php", "<?php echo \"php says \" . (6 * 7) . \"\\n\";\n");
    app.commit("first")?;
    let out = push_live(&app, "PHP app detected (a php worker)")?;
    serves(s, host, "/", "php says 42").map_err(|e| with_push(e, &out))
}

/// Debian's Maven repository: the JVM apps below build from it, offline
/// (Maven Central and Clojars are not reachable from CI).
const DEBIAN_REPO: &str = "/usr/share/maven-repo";

/// A JVM-family app: deployed where its tool is installed, from what this
/// machine has. A failed build is a failure, whatever it says (a missing
/// repository included): only a missing tool or package is reported skipped.
fn jvm_app(s: &Server, name: &str, tools: &[&str], packages: &[(&str, &str)], detected: &str, files: &[(&str, &str)], procfile: &str) -> Result<(), String> {
    require_tools(s, tools)?;
    for (path, package) in packages {
        if !Path::new(DEBIAN_REPO).join(path).exists() {
            return Err(format!("{SKIPPED}{DEBIAN_REPO}/{path} is missing (apt-get install {package})"));
        }
    }
    let host = format!("{name}.example.test");
    let app = App::new(s, name);
    for (path, content) in files {
        app.write(path, content);
    }
    app.write("Procfile", procfile).write("ENV", &format!("NGINX_SERVER_NAME={host}\n{}", network_env()));
    app.commit("first")?;
    let out = push_live(&app, detected).map_err(|e| format!("the deploy of '{name}' failed: {e}"))?;
    serves(s, &host, "/", "jvm ok").map_err(|e| with_push(e, &out))
}

const JAVA_APP: &str = r#"import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;

public class Hello {
    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(System.getenv("BIND_ADDRESS"), Integer.parseInt(System.getenv("PORT"))), 0);
        server.createContext("/", exchange -> {
            byte[] body = "jvm ok\n".getBytes();
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
"#;

/// A pom with Debian's repository: Maven's default plugins (compiler 3.1,
/// resources 2.6, surefire 2.12.4, jar 2.4) come from there, offline.
pub fn maven(s: &Server) -> Result<(), String> {
    let repo = format!("<id>debian</id><url>file://{DEBIAN_REPO}</url><releases><checksumPolicy>ignore</checksumPolicy></releases>");
    let pom = format!(
        "<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <modelVersion>4.0.0</modelVersion>\n  <groupId>test</groupId>\n  <artifactId>hello</artifactId>\n  <version>1</version>\n  <properties><maven.compiler.release>17</maven.compiler.release></properties>\n  <repositories><repository>{repo}</repository></repositories>\n  <pluginRepositories><pluginRepository>{repo}</pluginRepository></pluginRepositories>\n</project>\n"
    );
    jvm_app(
        s,
        "build-maven",
        &["java", "mvn"],
        &[
            ("org/apache/maven/plugins/maven-compiler-plugin/3.1", "libmaven-compiler-plugin-java"),
            ("org/apache/maven/plugins/maven-resources-plugin/2.6", "libmaven-resources-plugin-java"),
            ("org/apache/maven/plugins/maven-surefire-plugin/2.12.4", "libsurefire-java"),
            ("org/apache/maven/plugins/maven-jar-plugin/2.4", "libmaven-jar-plugin-java"),
        ],
        "Java app detected (pom.xml, Maven)",
        &[("pom.xml", &pom), ("src/main/java/Hello.java", JAVA_APP)],
        "web: java -cp target/classes Hello\n",
    )
}

pub fn gradle(s: &Server) -> Result<(), String> {
    jvm_app(
        s,
        "build-gradle",
        &["java", "gradle"],
        &[],
        "Java app detected (build.gradle, Gradle)",
        &[("build.gradle", "apply plugin: 'java'\n"), ("src/main/java/Hello.java", JAVA_APP)],
        "web: java -cp build/classes/java/main Hello\n",
    )
}

pub fn clojure_cli(s: &Server) -> Result<(), String> {
    jvm_app(
        s,
        "build-clojure",
        &["java", "clojure"],
        &[],
        "Clojure app detected (deps.edn, Clojure CLI)",
        &[
            ("deps.edn", "{:paths [\"src\"] :aliases {:build {:deps {io.github.clojure/tools.build {:mvn/version \"0.9.6\"}} :ns-default build}}}\n"),
            ("build.clj", "(ns build (:require [clojure.tools.build.api :as b]))\n(defn release [_] (b/copy-dir {:src-dirs [\"src\"] :target-dir \"target/classes\"}))\n"),
            ("src/hello.clj", HELLO_CLJ),
        ],
        "web: java -cp target/classes:$(clojure -Spath) clojure.main -m hello\n",
    )
}

pub fn leiningen(s: &Server) -> Result<(), String> {
    jvm_app(
        s,
        "build-lein",
        &["java", "lein"],
        &[("org/clojure/clojure/1.11.1", "libclojure-java")],
        "Clojure app detected (project.clj, Leiningen)",
        &[
            (
                "project.clj",
                &format!(
                    "(defproject hello \"1\" :dependencies [[org.clojure/clojure \"1.11.1\"]] :main hello :aot [hello]\n  :repositories ^:replace [[\"debian\" {{:url \"file://{DEBIAN_REPO}\" :checksum :ignore}}]])\n"
                ),
            ),
            ("src/hello.clj", HELLO_CLJ),
        ],
        "web: java -jar target/hello-1-standalone.jar\n",
    )
}

const HELLO_CLJ: &str = r#"(ns hello (:gen-class) (:import (com.sun.net.httpserver HttpServer HttpHandler) (java.net InetSocketAddress)))
(defn -main [& _]
  (let [server (HttpServer/create (InetSocketAddress. (System/getenv "BIND_ADDRESS") (Integer/parseInt (System/getenv "PORT"))) 0)]
    (.createContext server "/" (reify HttpHandler (handle [_ ex] (let [body (.getBytes "jvm ok\n")] (.sendResponseHeaders ex 200 (count body)) (.write (.getResponseBody ex) body) (.close ex)))))
    (.start server)))
"#;
