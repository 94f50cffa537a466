//! The client side, as a user runs it: commands with a deadline, apps built
//! as real git repositories, `git push` and `ssh` over the test sshd, and
//! `curl` through the test nginx.

use crate::server::Server;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one push may take (a Python app runs pip).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an ssh command or a local git command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long workers may take to answer after a deploy (the emperor starts them).
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a command did: its exit code (-1 when it could not run or timed out).
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout then stderr (git push writes nearly everything to stderr).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Ok when it exited 0, else an error with everything it printed.
    pub fn ok(self, what: &str) -> Result<Out, String> {
        if self.code == 0 { Ok(self) } else { Err(format!("{what}: exit {}, expected 0\n{}", self.code, indent(&self.all()))) }
    }

    /// Ok when it failed and said `needle` (case-insensitive).
    pub fn fails_with(&self, what: &str, needle: &str) -> Result<(), String> {
        if self.code == 0 {
            return Err(format!("{what}: exit 0, expected a failure\n{}", indent(&self.all())));
        }
        expect_text(&self.all(), needle, what)
    }
}

/// Ok when `text` contains `needle`, ignoring case.
pub fn expect_text(text: &str, needle: &str, what: &str) -> Result<(), String> {
    if text.to_lowercase().contains(&needle.to_lowercase()) {
        Ok(())
    } else {
        Err(format!("{what}: the output does not mention {needle:?}\n{}", indent(text)))
    }
}

pub fn indent(text: &str) -> String {
    let t = text.trim_end();
    if t.is_empty() { "    (no output)".into() } else { t.lines().map(|l| format!("    {l}\n")).collect::<String>().trim_end().to_string() }
}

/// Run `cmd`, feeding it `input`; kill it after `timeout`.
pub fn run(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Out { code: -1, stdout: String::new(), stderr: format!("cannot run {:?}: {e}", cmd.get_program()) },
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break -1;
            }
        }
    };
    let mut out = Out { code, stdout: stdout.finish(), stderr: stderr.finish() };
    if timed_out {
        out.stderr.push_str(&format!("\n[e2e: killed after {} s: {:?}]\n", timeout.as_secs(), cmd.get_program()));
    }
    if std::env::var("PIKU_E2E_VERBOSE").is_ok_and(|v| v == "1") {
        let argv: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        println!("  $ {} {}  (exit {code})\n{}", cmd.get_program().to_string_lossy(), argv.join(" "), indent(&out.all()));
    }
    out
}

/// A pipe read on its own thread, so a full pipe never blocks the child and
/// a grandchild holding the pipe open never blocks us.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Collector {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    let shared = Arc::clone(&buf);
    std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                shared.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }
        let _ = tx.send(());
    });
    Collector { buf, done }
}

impl Collector {
    fn finish(self) -> String {
        let _ = self.done.recv_timeout(Duration::from_secs(2));
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

/// Poll `probe` until it succeeds or `timeout` passes; then its last error.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(format!("still failing after {} s: {e}", timeout.as_secs())),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// git as the client runs it: no global or system config, a fixed identity.
pub fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_TERMINAL_PROMPT", "0").args([
        "-c",
        "user.name=piku e2e",
        "-c",
        "user.email=e2e@example.test",
        "-c",
        "advice.detachedHead=false",
    ]);
    c
}

/// `ssh <server> <command>` with the client key, as `ssh piku@host apps` would.
pub fn ssh(s: &Server, command: &str, input: Option<&str>) -> Out {
    ssh_with_key(s, &s.client_key(), command, input)
}

pub fn ssh_with_key(s: &Server, key: &Path, command: &str, input: Option<&str>) -> Out {
    let argv = s.ssh_argv(key);
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]).arg(s.ssh_destination()).arg(command);
    run(&mut c, input.map(str::as_bytes), COMMAND_TIMEOUT)
}

/// `curl -H 'Host: <host>' http://127.0.0.1:<http port><path>`: (HTTP status, body);
/// status 0 when curl got no answer (the body then holds curl's error).
pub fn curl(s: &Server, host: &str, path: &str) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}{path}", s.http_port);
    let out = run(
        Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Host: {host}"))
            .arg(&url),
        None,
        Duration::from_secs(10),
    );
    match out.stdout.rsplit_once('\n') {
        Some((body, code)) if out.code == 0 => (code.trim().parse().unwrap_or(0), body.to_string()),
        _ => (0, format!("curl {url}: exit {}: {}", out.code, out.stderr.trim())),
    }
}

/// Wait until nginx answers `host``path` with 200 and a body containing `want`.
pub fn serves(s: &Server, host: &str, path: &str, want: &str) -> Result<(), String> {
    wait_for(SERVE_TIMEOUT, || serves_now(s, host, path, want))
}

/// nginx answers `host``path` with 200 and `want` right now.
pub fn serves_now(s: &Server, host: &str, path: &str, want: &str) -> Result<(), String> {
    match curl(s, host, path) {
        (200, body) if body.contains(want) => Ok(()),
        (code, body) => Err(format!("http://{host}{path} answered {code}, expected 200 with {want:?}:\n{}", indent(&body))),
    }
}

/// An app on the client: a git repository in a directory of its own.
pub struct App<'s> {
    server: &'s Server,
    pub name: String,
    pub dir: PathBuf,
}

impl<'s> App<'s> {
    /// A fresh repository on branch `main`, named after the app.
    pub fn new(server: &'s Server, name: &str) -> App<'s> {
        let dir = server.work.join("client/apps").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the app directory");
        let app = App { server, name: name.to_string(), dir };
        app.git(&["init", "-q", "-b", "main"]).expect("git init");
        app
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("create a directory in the app");
        std::fs::write(&file, content).expect("write a file in the app");
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.dir.join(path)).expect("remove a file from the app");
        self
    }

    /// Commit everything; the new commit's id.
    pub fn commit(&self, message: &str) -> Result<String, String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", message])?;
        Ok(self.git(&["rev-parse", "HEAD"])?.stdout.trim().to_string())
    }

    /// Run git in the app's directory; Err unless it exits 0.
    pub fn git(&self, args: &[&str]) -> Result<Out, String> {
        run(git(&self.dir).args(args), None, COMMAND_TIMEOUT).ok(&format!("git {}", args.join(" ")))
    }

    /// `git push <server>:<app> <branch>`, whatever its outcome.
    pub fn push(&self, branch: &str) -> Out {
        self.push_to(&self.name, branch)
    }

    /// `git push` to any path on the server (bad app names included).
    pub fn push_to(&self, path: &str, branch: &str) -> Out {
        let remote = format!("{}:{path}", self.server.ssh_destination());
        run(git(&self.dir).env("GIT_SSH_COMMAND", self.server.git_ssh_command()).args(["push", &remote, branch]), None, PUSH_TIMEOUT)
    }

    /// A push that must succeed.
    pub fn deploy(&self, branch: &str) -> Result<Out, String> {
        self.push(branch).ok(&format!("git push of '{}' ({branch})", self.name))
    }
}
