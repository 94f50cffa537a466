//! A small harness: a server (temp PIKU_ROOT with the tools installed in a
//! prefix), apps built as real git repos, and `run(...)` results to assert on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const TOOLS: &[(&str, &str)] = &[
    ("piku", env!("CARGO_BIN_EXE_piku")),
    ("piku-receive", env!("CARGO_BIN_EXE_piku-receive")),
    ("piku-build", env!("CARGO_BIN_EXE_piku-build")),
    ("piku-config", env!("CARGO_BIN_EXE_piku-config")),
    ("piku-uwsgi", env!("CARGO_BIN_EXE_piku-uwsgi")),
    ("piku-nginx", env!("CARGO_BIN_EXE_piku-nginx")),
    ("piku-addons", env!("CARGO_BIN_EXE_piku-addons")),
    ("piku-pgadmin", env!("CARGO_BIN_EXE_piku-pgadmin")),
];

pub struct Server {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(self.code, code, "expected exit {code}\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        self
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Server {
    /// A fresh server: tools in <dir>/prefix/bin, the hook in
    /// <dir>/prefix/share/piku/hooks, HOME=<dir>/home, `piku setup` done.
    pub fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("prefix/bin");
        let hooks = dir.path().join("prefix/share/piku/hooks");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        for (name, path) in TOOLS {
            // Hard links (a copy across filesystems): the tools find their
            // siblings and the hook from their own path, which a symlink hides.
            if std::fs::hard_link(path, bin.join(name)).is_err() {
                std::fs::copy(path, bin.join(name)).unwrap();
            }
        }
        for hook in ["pre-receive", "post-receive"] {
            std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks").join(hook), hooks.join(hook)).unwrap();
        }
        let fake_ssh = dir.path().join("ssh");
        std::fs::write(
            &fake_ssh,
            format!(
                "#!/bin/sh\n# stands in for ssh + sshd's forced command\nshift\nHOME={home} SSH_ORIGINAL_COMMAND=\"$*\" exec {bin}/piku\n",
                home = dir.path().join("home").display(),
                bin = bin.display()
            ),
        )
        .unwrap();
        chmod_x(&fake_ssh);
        let server = Server { dir };
        server.piku(&["setup"]).ok();
        // No nginx daemon here: `true` stands in for `nginx -t` and the reload.
        // No emperor runs the vassals either, so no worker could pass a health
        // check (tests/e2e checks them; deploy.rs tests a failing one).
        server.write_settings("NGINX_BIN=true\nNGINX_RELOAD=true\nNGINX_RELOAD_WAIT=0\nPIKU_HEALTHCHECK=off\nPIKU_DRAIN_SECONDS=0\n");
        server
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn root(&self) -> PathBuf {
        self.home().join(".piku")
    }
    pub fn write_settings(&self, text: &str) {
        std::fs::write(self.root().join("settings"), text).unwrap();
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        let bin = self.dir.path().join("prefix/bin");
        c.env_clear()
            .env("HOME", self.home())
            .env("USER", "piku")
            .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
            .stdin(Stdio::null());
        c
    }

    /// Run a tool by name with args.
    pub fn tool(&self, name: &str, args: &[&str]) -> Run {
        let bin = self.dir.path().join("prefix/bin").join(name);
        Run::from(self.command(&bin).args(args).output().unwrap())
    }

    pub fn piku(&self, args: &[&str]) -> Run {
        self.tool("piku", args)
    }

    /// The front door as sshd runs it: the command line in SSH_ORIGINAL_COMMAND.
    pub fn ssh(&self, command_line: &str) -> Run {
        let bin = self.dir.path().join("prefix/bin/piku");
        Run::from(self.command(&bin).env("SSH_ORIGINAL_COMMAND", command_line).output().unwrap())
    }

    /// The front door as a key added with `setup:ssh --name --apps` runs it.
    pub fn ssh_as(&self, name: &str, apps: &str, command_line: &str) -> Run {
        let bin = self.dir.path().join("prefix/bin/piku");
        let mut c = self.command(&bin);
        c.env("SSH_ORIGINAL_COMMAND", command_line).env("NAME", name).env("PIKU_ALLOWED_APPS", apps);
        Run::from(c.output().unwrap())
    }

    /// `git push` of `app_repo`'s `branch` to `piku@server:<app>`, through the stand-in ssh.
    pub fn push(&self, repo: &GitApp, app: &str, branch: &str) -> Run {
        let out = Command::new("git")
            .current_dir(repo.dir.path())
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("GIT_SSH_COMMAND", self.dir.path().join("ssh"))
            .args(["push", "--quiet", &format!("piku@server:{app}"), &format!("{branch}:{branch}")])
            .output()
            .unwrap();
        Run::from(out)
    }

    pub fn live_id(&self, app: &str) -> Option<String> {
        std::fs::read_link(self.root().join("apps").join(app)).ok().map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

pub fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An app as a user has it: a git repository with files and commits.
pub struct GitApp {
    pub dir: tempfile::TempDir,
}

impl GitApp {
    pub fn new(files: &[(&str, &str)]) -> GitApp {
        let app = GitApp { dir: tempfile::tempdir().unwrap() };
        app.git(&["init", "-q", "-b", "main"]);
        app.commit(files, "first");
        app
    }

    /// A second working copy of the same history (another developer).
    pub fn clone_of(other: &GitApp) -> GitApp {
        let app = GitApp { dir: tempfile::tempdir().unwrap() };
        let st = Command::new("git").args(["clone", "-q"]).arg(other.dir.path()).arg(app.dir.path()).status().unwrap();
        assert!(st.success());
        app
    }

    pub fn git(&self, args: &[&str]) {
        let st = Command::new("git")
            .current_dir(self.dir.path())
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }

    /// Write (or with "" contents and a "-" prefix, delete) files and commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) {
        for (name, contents) in files {
            if let Some(gone) = name.strip_prefix('-') {
                std::fs::remove_file(self.dir.path().join(gone)).unwrap();
                continue;
            }
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }
}

pub const STATIC_APP: &[(&str, &str)] = &[
    ("Procfile", "static: public\n"),
    ("ENV", "NGINX_SERVER_NAME=static.example.test\n"),
    ("public/index.html", "version one\n"),
];

/// Whether this run rewrites tests/expected (`PIKU_BLESS=1`, on purpose,
/// after reading the diff). Any other value, `0` included, only compares.
pub fn blessing() -> bool {
    bless_requested(std::env::var("PIKU_BLESS").ok().as_deref())
}

fn bless_requested(value: Option<&str>) -> bool {
    value == Some("1")
}

#[test]
fn only_piku_bless_1_blesses() {
    assert!(bless_requested(Some("1")));
    for value in [None, Some("0"), Some(""), Some("no"), Some("true "), Some("01")] {
        assert!(!bless_requested(value), "{value:?}");
    }
}
