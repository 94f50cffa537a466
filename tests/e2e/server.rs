//! A private piku server on 127.0.0.1, set up as install.sh would, and torn
//! down by PID when the suite ends (also after a failure or a panic):
//!
//!   $W = /var/tmp/piku-e2e-<pid>/        the work dir (kept with PIKU_E2E_KEEP=1)
//!     prefix/bin/piku*                   the tools, copied from cargo's build
//!     prefix/share/piku/hooks/           the hooks, from hooks/
//!     home/                              the piku user's home; home/.piku is PIKU_ROOT
//!     ssh/                               sshd's host key, config, pid and log
//!     nginx/                             nginx's main config, pid, logs, temp files
//!     run/                               the uWSGI emperor's pid and log (owned by the user)
//!     client/                            the client's keys and app repositories

use crate::client::{self, Out, indent, run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The piku user the suite creates (and removes): `pikue2e`, or
/// `$PIKU_E2E_USER`, so that runs from two checkouts can share a machine
/// (each has its own user, sudo rule and lock).
pub static USER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| std::env::var("PIKU_E2E_USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "pikue2e".into()));
/// Where the work dirs go; a dir of a run that died is cleaned up by the next.
const WORK_PREFIX: &str = "/var/tmp/piku-e2e-";
const TOOLS: &[(&str, &str)] = &[
    ("piku", env!("CARGO_BIN_EXE_piku")),
    ("piku-receive", env!("CARGO_BIN_EXE_piku-receive")),
    ("piku-build", env!("CARGO_BIN_EXE_piku-build")),
    ("piku-config", env!("CARGO_BIN_EXE_piku-config")),
    ("piku-uwsgi", env!("CARGO_BIN_EXE_piku-uwsgi")),
    ("piku-nginx", env!("CARGO_BIN_EXE_piku-nginx")),
    ("piku-nginx-install", env!("CARGO_BIN_EXE_piku-nginx-install")),
    ("piku-addons", env!("CARGO_BIN_EXE_piku-addons")),
    ("piku-pgadmin", env!("CARGO_BIN_EXE_piku-pgadmin")),
];
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The sudo rule, and the lock that lets one run at a time use the user.
fn sudoers() -> String {
    format!("/etc/sudoers.d/piku-e2e-{}", *USER)
}
fn run_lock_path() -> String {
    format!("/var/tmp/piku-e2e-{}.lock", *USER)
}

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGQUIT: i32 = 3;

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn geteuid() -> u32;
}

/// What keeps the suite from running here ("not root", "no sudo", ...); empty when it can run.
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid cannot fail.
    if unsafe { geteuid() } != 0 {
        missing.push("not root".to_string());
    }
    for file in ["/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/uwsgi", "/usr/lib/uwsgi/plugins/python3_plugin.so", "/etc/nginx/mime.types"]
    {
        if !Path::new(file).exists() {
            missing.push(format!("no {file}"));
        }
    }
    for prog in [
        "git",
        "curl",
        "ssh",
        "ssh-keygen",
        "sudo",
        "visudo",
        "useradd",
        "usermod",
        "userdel",
        "runuser",
        "flock",
        "pkill",
        "pgrep",
        "python3",
    ] {
        if !std::env::split_paths(SYSTEM_PATH).any(|d| d.join(prog).is_file()) {
            missing.push(format!("no {prog}"));
        }
    }
    // The python3 the piku user finds (not a developer's pyenv shim).
    let venv = ["import virtualenv", "import venv, ensurepip"].iter().any(|code| {
        Command::new("python3")
            .args(["-c", code])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !venv {
        missing.push("no python3 with virtualenv or venv".to_string());
    }
    missing
}

/// The running server. Dropping it stops everything it started.
pub struct Server {
    pub work: PathBuf,
    pub ssh_port: u16,
    pub http_port: u16,
    pub https_port: u16,
    sshd: Option<Child>,
    nginx_started: bool,
    emperor_started: bool,
    user_created: bool,
    sudoers_written: bool,
    /// Held until everything above is torn down (fields drop after `drop`).
    _run_lock: std::fs::File,
}

impl Server {
    /// Set everything up; on any failure, what was started is stopped again.
    pub fn start() -> Result<Server, String> {
        let lock_path = run_lock_path();
        let run_lock = std::fs::File::create(&lock_path).map_err(|e| format!("create {lock_path}: {e}"))?;
        if run_lock.try_lock().is_err() {
            println!("e2e: waiting for another run of the suite to finish ({lock_path})");
            run_lock.lock().map_err(|e| format!("lock {lock_path}: {e}"))?;
        }
        reap_stale_runs();
        let [ssh_port, http_port, https_port] = free_ports();
        let mut s = Server {
            work: PathBuf::from(format!("{WORK_PREFIX}{}", std::process::id())),
            ssh_port,
            http_port,
            https_port,
            sshd: None,
            nginx_started: false,
            emperor_started: false,
            user_created: false,
            sudoers_written: false,
            _run_lock: run_lock,
        };
        s.install_tools()?;
        s.create_user()?;
        s.piku_setup()?;
        s.start_nginx()?;
        s.start_emperor()?;
        s.start_sshd()?;
        s.register_client_key()?;
        // One round trip proves sshd, the key and the front door work together.
        client::ssh(&s, "help", None)
            .ok("ssh <server> help (set-up check)")
            .map_err(|e| format!("{e}\n{}", s.log_tail("ssh/sshd.log", 20)))?;
        Ok(s)
    }

    pub fn home(&self) -> PathBuf {
        self.work.join("home")
    }

    /// PIKU_ROOT.
    pub fn piku_root(&self) -> PathBuf {
        self.home().join(".piku")
    }

    pub fn client_key(&self) -> PathBuf {
        self.work.join("client/id")
    }

    pub fn ssh_destination(&self) -> String {
        format!("{}@127.0.0.1", *USER)
    }

    /// ssh's argv (without the destination) for a given private key.
    pub fn ssh_argv(&self, key: &Path) -> Vec<String> {
        let mut argv = vec!["ssh".to_string(), "-i".to_string(), key.display().to_string(), "-p".to_string(), self.ssh_port.to_string()];
        for opt in ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR", "BatchMode=yes"] {
            argv.push("-o".to_string());
            argv.push(opt.to_string());
        }
        argv
    }

    pub fn git_ssh_command(&self) -> String {
        self.ssh_argv(&self.client_key()).join(" ")
    }

    /// A command run as the piku user, the way an operator would in a shell:
    /// `runuser -u pikue2e -- env HOME=... PATH=<prefix>/bin:... <argv>`.
    pub fn as_user(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.env_clear()
            .env("PATH", SYSTEM_PATH)
            .current_dir(self.home())
            .args(["-u", USER.as_str(), "--", "env"])
            .arg(format!("HOME={}", self.home().display()))
            .arg(format!("PATH={}:/usr/local/bin:/usr/bin:/bin", self.work.join("prefix/bin").display()))
            .arg(format!("USER={}", *USER))
            .arg(format!("LOGNAME={}", *USER))
            .args(argv);
        c
    }

    /// Run as the piku user; Err unless it exits 0.
    pub fn run_as_user(&self, argv: &[&str]) -> Result<Out, String> {
        run(&mut self.as_user(argv), None, client::PUSH_TIMEOUT).ok(&format!("as {}: {}", *USER, argv.join(" ")))
    }

    /// The last `lines` lines of a file under $W, titled, for failure reports.
    pub fn log_tail(&self, rel: &str, lines: usize) -> String {
        tail(&self.work.join(rel), lines)
    }

    /// The logs worth reading when a case about `app*` fails.
    pub fn logs_for(&self, app_prefix: &str) -> String {
        let mut text = String::new();
        text.push_str(&self.log_tail("home/.piku/uwsgi/uwsgi.log", 15));
        text.push_str(&self.log_tail("nginx/error.log", 10));
        let logs = self.piku_root().join("logs");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&logs)
            .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(app_prefix)).map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        for dir in dirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            files.sort();
            for f in files {
                text.push_str(&tail(&f, 15));
            }
        }
        text
    }

    /// Stop nginx (a fault for the hardening cases); `resume_nginx` starts it again.
    pub fn stop_nginx(&self) {
        stop_pidfile(&self.work.join("nginx/nginx.pid"), SIGQUIT, Duration::from_secs(10));
    }

    /// Start nginx again with the suite's config, after `stop_nginx`.
    pub fn resume_nginx(&self) -> Result<(), String> {
        let conf = self.work.join("nginx/nginx.conf");
        let error_log = self.work.join("nginx/error.log");
        system(Command::new("/usr/sbin/nginx").arg("-e").arg(&error_log).arg("-c").arg(&conf))?;
        let pid = self.work.join("nginx/nginx.pid");
        client::wait_for(Duration::from_secs(10), || read_pid(&pid).filter(|p| alive(*p)).map(|_| ()).ok_or_else(|| "nginx is not running".to_string()))
    }

    /// Stop the uWSGI emperor and with it every vassal; `resume_emperor` starts it again.
    pub fn stop_emperor(&self) {
        stop_pidfile(&self.work.join("run/emperor.pid"), SIGINT, Duration::from_secs(15));
    }

    /// Start the emperor again, as the user, after `stop_emperor`.
    pub fn resume_emperor(&self) -> Result<(), String> {
        let ini = self.piku_root().join("uwsgi/uwsgi.ini");
        let pid = self.work.join("run/emperor.pid");
        let log = self.work.join("run/emperor.log");
        self.run_as_user(&["uwsgi", "--ini", &ini.display().to_string(), "--pidfile", &pid.display().to_string(), "--daemonize", &log.display().to_string()])?;
        client::wait_for(Duration::from_secs(10), || read_pid(&pid).filter(|p| alive(*p)).map(|_| ()).ok_or_else(|| "the emperor is not running".to_string()))
    }

    /// piku-nginx-install's settings (root's file; the sudo rule names it).
    pub fn install_config(&self) -> PathBuf {
        self.work.join("nginx/install.conf")
    }

    fn install_tools(&self) -> Result<(), String> {
        let bin = self.work.join("prefix/bin");
        let hooks = self.work.join("prefix/share/piku/hooks");
        for dir in [&bin, &hooks, &self.work.join("ssh"), &self.work.join("client/apps"), &self.work.join("nginx/tmp")] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        for dir in ["", "prefix", "prefix/bin", "prefix/share", "prefix/share/piku", "prefix/share/piku/hooks", "client", "nginx"] {
            chmod(&self.work.join(dir), 0o755)?;
        }
        chmod(&self.work.join("ssh"), 0o700)?;
        for (name, built) in TOOLS {
            copy_executable(Path::new(built), &bin.join(name))?;
        }
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks");
        let entries = std::fs::read_dir(&source).map_err(|e| format!("read {}: {e}", source.display()))?;
        for e in entries.flatten() {
            copy_executable(&e.path(), &hooks.join(e.file_name()))?;
        }
        if !hooks.join("post-receive").is_file() {
            return Err(format!("no post-receive hook in {}", source.display()));
        }
        Ok(())
    }

    fn create_user(&mut self) -> Result<(), String> {
        if user_exists() {
            eprintln!("e2e: user {} is left from an earlier run: removing it and its processes", *USER);
            kill_user_processes();
            let _ = system(Command::new("userdel").arg(USER.as_str()));
        }
        system(Command::new("useradd").args(["-m", "-d"]).arg(self.home()).args(["-g", "www-data", "-s", "/bin/bash", USER.as_str()]))?;
        self.user_created = true;
        system(Command::new("usermod").args(["-p", "*", USER.as_str()]))?;
        chmod(&self.home(), 0o750)?;
        let run_dir = self.work.join("run");
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("create {}: {e}", run_dir.display()))?;
        chown_to_user(&run_dir)
    }

    /// `piku setup` as the user, then the server settings (what install.sh
    /// writes, plus this nginx's ports and loopback address), the settings of
    /// root's installer (root's own file) and the sudo rule that lets the user
    /// run it (and nothing else): nginx reads only what it installed.
    fn piku_setup(&mut self) -> Result<(), String> {
        self.run_as_user(&["piku", "setup"])?;
        let install_conf = self.install_config();
        let w = self.work.display();
        let text = format!(
            "# piku-nginx-install's settings for the e2e suite's nginx (root's file)\n\
             USER={user}\nPIKU_ROOT={root}\nTARGET={w}/nginx/sites\nCACHE={w}/nginx/cache\n\
             NGINX=/usr/sbin/nginx\nNGINX_CONF={w}/nginx/nginx.conf\nPID_FILE={w}/nginx/nginx.pid\n\
             ERROR_LOG={w}/nginx/error.log\nPORTS={http} {https}\nRELOAD_WAIT=10\n",
            user = *USER,
            root = self.piku_root().display(),
            http = self.http_port,
            https = self.https_port,
        );
        std::fs::write(&install_conf, text).map_err(|e| format!("write {}: {e}", install_conf.display()))?;
        chmod(&install_conf, 0o644)?;
        let reload = format!("{}/prefix/bin/piku-nginx-install --config {}", w, install_conf.display());
        let settings = self.piku_root().join("settings");
        // Apps listen on 127.0.0.1 like the default server below: nginx picks
        // a server by the most specific listen address first, so an app block
        // on 0.0.0.0 behind a 127.0.0.1 default would never be reached.
        let text = format!(
            "# written by the e2e suite\n\
             NGINX_RELOAD=sudo -n {reload}\n\
             NGINX_INSTALL_CONFIG={install}\n\
             NGINX_MIME_TYPES=/etc/nginx/mime.types\n\
             NGINX_BIN=/usr/sbin/nginx\n\
             NGINX_HTTP_PORT={}\n\
             NGINX_HTTPS_PORT={}\n\
             NGINX_IPV4_ADDRESS=127.0.0.1\n\
             DISABLE_IPV6=1\n",
            self.http_port,
            self.https_port,
            install = install_conf.display(),
        );
        std::fs::write(&settings, text).map_err(|e| format!("write {}: {e}", settings.display()))?;
        chown_to_user(&settings)?;

        let staged = self.work.join("sudoers");
        std::fs::write(&staged, format!("{} ALL=(root) NOPASSWD: {reload}\n", *USER))
            .map_err(|e| format!("write {}: {e}", staged.display()))?;
        chmod(&staged, 0o440)?;
        system(Command::new("visudo").arg("-cqf").arg(&staged))?;
        std::fs::copy(&staged, sudoers()).map_err(|e| format!("write {}: {e}", sudoers()))?;
        self.sudoers_written = true;
        chmod(Path::new(&sudoers()), 0o440)
    }

    fn start_nginx(&mut self) -> Result<(), String> {
        let w = self.work.display();
        let conf = self.work.join("nginx/nginx.conf");
        let text = format!(
            "# The e2e suite's nginx: loopback only, apps' blocks as piku-nginx-install installed them.\n\
             user www-data;\n\
             worker_processes 1;\n\
             pid {w}/nginx/nginx.pid;\n\
             error_log {w}/nginx/error.log;\n\
             events {{}}\n\
             http {{\n\
             \x20 include /etc/nginx/mime.types;\n\
             \x20 access_log {w}/nginx/access.log;\n\
             \x20 client_body_temp_path {w}/nginx/tmp/body;\n\
             \x20 proxy_temp_path {w}/nginx/tmp/proxy;\n\
             \x20 fastcgi_temp_path {w}/nginx/tmp/fastcgi;\n\
             \x20 uwsgi_temp_path {w}/nginx/tmp/uwsgi;\n\
             \x20 scgi_temp_path {w}/nginx/tmp/scgi;\n\
             \x20 server_names_hash_bucket_size 128;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port} default_server;\n\
             \x20   return 404;\n\
             \x20 }}\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{https} ssl default_server;\n\
             \x20   ssl_reject_handshake on;\n\
             \x20 }}\n\
             \x20 include {w}/nginx/sites/*.conf;\n\
             }}\n",
            port = self.http_port,
            https = self.https_port,
        );
        let sites = self.work.join("nginx/sites");
        std::fs::create_dir_all(&sites).map_err(|e| format!("create {}: {e}", sites.display()))?;
        std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
        let error_log = self.work.join("nginx/error.log");
        system(Command::new("/usr/sbin/nginx").arg("-t").arg("-q").arg("-e").arg(&error_log).arg("-c").arg(&conf))?;
        self.nginx_started = true;
        system(Command::new("/usr/sbin/nginx").arg("-e").arg(&error_log).arg("-c").arg(&conf))?;
        let pid = self.work.join("nginx/nginx.pid");
        client::wait_for(Duration::from_secs(10), || read_pid(&pid).map(|_| ()).ok_or_else(|| format!("no pid in {}", pid.display())))
            .map_err(|e| format!("nginx did not start: {e}\n{}", self.log_tail("nginx/error.log", 20)))
    }

    /// The emperor as the user, from the ini `piku setup` wrote.
    fn start_emperor(&mut self) -> Result<(), String> {
        let ini = self.piku_root().join("uwsgi/uwsgi.ini");
        let pid = self.work.join("run/emperor.pid");
        let log = self.work.join("run/emperor.log");
        self.emperor_started = true;
        self.run_as_user(&[
            "uwsgi",
            "--ini",
            &ini.display().to_string(),
            "--pidfile",
            &pid.display().to_string(),
            "--daemonize",
            &log.display().to_string(),
        ])?;
        client::wait_for(Duration::from_secs(10), || read_pid(&pid).map(|_| ()).ok_or_else(|| format!("no pid in {}", pid.display())))
            .map_err(|e| {
                format!(
                    "the uWSGI emperor did not start: {e}\n{}{}",
                    self.log_tail("run/emperor.log", 20),
                    self.log_tail("home/.piku/uwsgi/uwsgi.log", 20)
                )
            })
    }

    fn start_sshd(&mut self) -> Result<(), String> {
        let dir = self.work.join("ssh");
        let host_key = dir.join("host_ed25519");
        system(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "piku-e2e-host", "-f"]).arg(&host_key))?;
        let conf = dir.join("sshd_config");
        let text = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             StrictModes yes\n\
             AuthorizedKeysFile .ssh/authorized_keys\n\
             AllowUsers {user}\n\
             PermitUserEnvironment no\n\
             LogLevel VERBOSE\n",
            port = self.ssh_port,
            user = *USER,
            key = host_key.display(),
            pid = dir.join("sshd.pid").display(),
        );
        std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("create /run/sshd: {e}"))?;
        system(Command::new("/usr/sbin/sshd").arg("-t").arg("-f").arg(&conf))?;
        let log = std::fs::File::create(dir.join("sshd.log")).map_err(|e| format!("create sshd.log: {e}"))?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start sshd: {e}"))?;
        self.sshd = Some(child);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.ssh_port));
        client::wait_for(Duration::from_secs(10), || {
            if let Some(Ok(Some(status))) = self.sshd.as_mut().map(Child::try_wait) {
                return Ok(Err(format!("sshd exited: {status}")));
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map(|_| Ok(())).map_err(|e| e.to_string())
        })
        .and_then(|r| r)
        .map_err(|e| format!("sshd is not listening on {addr}: {e}\n{}", self.log_tail("ssh/sshd.log", 20)))
    }

    fn register_client_key(&self) -> Result<(), String> {
        let key = self.client_key();
        system(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "piku-e2e-client", "-f"]).arg(&key))?;
        chmod(&key.with_extension("pub"), 0o644)?;
        self.run_as_user(&["piku", "setup:ssh", &key.with_extension("pub").display().to_string()])?;
        Ok(())
    }
}

impl Drop for Server {
    /// Stop everything by PID, newest first; remove the user, the sudo rule
    /// and the work dir (kept with PIKU_E2E_KEEP=1).
    fn drop(&mut self) {
        if self.emperor_started {
            stop_pidfile(&self.work.join("run/emperor.pid"), SIGINT, Duration::from_secs(15));
        }
        if self.user_created && user_has_processes() {
            kill_user_processes();
        }
        if self.nginx_started {
            stop_pidfile(&self.work.join("nginx/nginx.pid"), SIGQUIT, Duration::from_secs(10));
        }
        if let Some(mut child) = self.sshd.take() {
            signal(child.id() as i32, SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.sudoers_written {
            let _ = std::fs::remove_file(sudoers());
        }
        if self.user_created {
            if let Err(e) = system(Command::new("userdel").arg(USER.as_str())) {
                eprintln!("e2e: could not remove the user {}: {e}", *USER);
            }
        }
        if std::env::var("PIKU_E2E_KEEP").is_ok_and(|v| v == "1") {
            let _ = std::fs::write(self.work.join("KEPT"), "PIKU_E2E_KEEP=1\n");
            eprintln!("e2e: kept {} (PIKU_E2E_KEEP=1)", self.work.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.work) {
            eprintln!("e2e: could not remove {}: {e}", self.work.display());
        }
    }
}

/// Stop the daemons of earlier runs that died without tearing down (their
/// work dir is named for a PID that no longer runs), and remove their dirs.
fn reap_stale_runs() {
    let Ok(entries) = std::fs::read_dir(Path::new(WORK_PREFIX).parent().unwrap_or(Path::new("/var/tmp"))) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("piku-e2e-").and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid as u32 == std::process::id() || alive(pid) {
            continue;
        }
        // (the add-on case's PostgreSQL: SIGINT is its fast shutdown)
        for (pidfile, sig) in [("run/emperor.pid", SIGINT), ("nginx/nginx.pid", SIGQUIT), ("ssh/sshd.pid", SIGTERM), ("pg/data/postmaster.pid", SIGINT)] {
            // Only a process whose command line names that dir.
            if let Some(p) = read_pid(&dir.join(pidfile)) {
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&dir.display().to_string()) {
                    stop_pidfile(&dir.join(pidfile), sig, Duration::from_secs(10));
                }
            }
        }
        if !dir.join("KEPT").exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Three distinct free ports on 127.0.0.1 (ssh, http, https).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<std::net::TcpListener> =
        (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1")).collect();
    let port = |i: usize| listeners[i].local_addr().expect("a local address").port();
    [port(0), port(1), port(2)]
}

/// Run a set-up command; Err with its output unless it exits 0.
fn system(cmd: &mut Command) -> Result<Out, String> {
    let what =
        format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    run(cmd.env("PATH", SYSTEM_PATH), None, Duration::from_secs(60)).ok(&what)
}

fn user_exists() -> bool {
    passwd_ids().is_some()
}

/// (uid, gid) of the piku user, from /etc/passwd.
pub fn passwd_ids() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == USER.as_str()).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

pub fn chown_to_user(path: &Path) -> Result<(), String> {
    let (uid, gid) = passwd_ids().ok_or_else(|| format!("no user {} in /etc/passwd", *USER))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))
}

fn user_has_processes() -> bool {
    Command::new("pgrep").args(["-u", USER.as_str()]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The last resort: every process of the piku user (it exists for this suite alone).
fn kill_user_processes() {
    let _ = Command::new("pkill").args(["-TERM", "-u", USER.as_str()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while user_has_processes() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if user_has_processes() {
        let _ = Command::new("pkill").args(["-KILL", "-u", USER.as_str()]).status();
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The PID on a pid file's first line (PostgreSQL's has more lines).
fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok().filter(|p| *p > 1)
}

/// Alive and not a zombie (a daemon's parent may be an init that never reaps).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a PID we started; a vanished process is harmless (ESRCH).
    unsafe {
        kill(pid, sig);
    }
}

/// Signal the PID in `file`, wait for it to go, SIGKILL after `grace`.
fn stop_pidfile(file: &Path, sig: i32, grace: Duration) {
    let Some(pid) = read_pid(file) else { return };
    if !alive(pid) {
        return;
    }
    signal(pid, sig);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(pid) {
        eprintln!("e2e: {} ({pid}) did not stop after {} s: SIGKILL", file.display(), grace.as_secs());
        signal(pid, SIGKILL);
    }
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| format!("chmod {mode:o} {}: {e}", path.display()))
}

fn copy_executable(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    chmod(to, 0o755)
}

/// The last lines of a log file, under a title line; empty when it has none.
fn tail(file: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(file) else { return String::new() };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return String::new();
    }
    let shown = all[all.len().saturating_sub(lines)..].join("\n");
    format!("  --- last lines of {} ---\n{}\n", file.display(), indent(&shown))
}
