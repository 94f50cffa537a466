//! Where everything lives: `$PIKU_ROOT` (default `~/.piku`) in piku's layout,
//! and where the installed tools, hooks and templates are.

use crate::app::AppName;
use fs_err as fs;
use std::path::{Path, PathBuf};

/// The piku root and the names of everything under it (DESIGN.md, "Files in ~/.piku").
#[derive(Debug, Clone)]
pub struct Root {
    pub root: PathBuf,
}

/// The top-level directories `piku setup` creates, as piku.py names them,
/// plus ours (`releases`, `tmp`, `locks`).
pub const ROOT_DIRS: &[&str] = &[
    "apps", "repos", "releases", "envs", "data", "cache", "logs", "nginx", "uwsgi",
    "uwsgi-available", "uwsgi-enabled", "acme", "plugins", "tmp", "locks",
];

/// The top-level directories only the piku user may enter (0700): what they
/// hold carries an app's environment (ENV, LIVE_ENV, vassals' `env =` lines,
/// what workers log) or is piku's own state. nginx's workers (www-data, the
/// piku user's group) read only releases/ (static files), nginx/ (sockets)
/// and acme/.
pub const PRIVATE_DIRS: &[&str] = &["envs", "logs", "uwsgi", "uwsgi-available", "uwsgi-enabled", "tmp", "locks"];

/// Create `dir` (and missing parents) and make it 0700, also when it was there.
pub fn create_private_dir(dir: &Path) -> crate::error::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::atomic::create_dir_all(dir)?;
    Ok(fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?)
}

impl Root {
    /// `$PIKU_ROOT`, else `$HOME/.piku`.
    pub fn from_env() -> Root {
        let root = match std::env::var_os("PIKU_ROOT") {
            Some(r) if !r.is_empty() => PathBuf::from(r),
            _ => home_dir().join(".piku"),
        };
        Root { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Root {
        Root { root: root.into() }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `apps/<app>`: the live release's tree (a symlink into `releases/`).
    pub fn app_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("apps").join(app.as_str())
    }
    pub fn repo_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("repos").join(app.as_str())
    }
    pub fn releases_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("releases").join(app.as_str())
    }
    pub fn env_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("envs").join(app.as_str())
    }
    pub fn data_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("data").join(app.as_str())
    }
    pub fn log_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("logs").join(app.as_str())
    }
    pub fn cache_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("cache").join(app.as_str())
    }
    /// `envs/<app>/ENV`: the user's overrides (config:set).
    pub fn user_env_file(&self, app: &AppName) -> PathBuf {
        self.env_dir(app).join("ENV")
    }
    /// `envs/<app>/LIVE_ENV`: the resolved environment of the live release.
    pub fn live_env_file(&self, app: &AppName) -> PathBuf {
        self.env_dir(app).join("LIVE_ENV")
    }
    /// `envs/<app>/SCALING`: `kind:count` lines.
    pub fn scaling_file(&self, app: &AppName) -> PathBuf {
        self.env_dir(app).join("SCALING")
    }
    /// `addons/<app>/`: the app's add-ons (piku-addons): one facts file per
    /// add-on (`postgres`, `redis`), their config, and `ENV`.
    pub fn addons_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("addons").join(app.as_str())
    }
    /// `addons/<app>/ENV`: the variables the add-ons give the app
    /// (DATABASE_URL, PG*, REDIS_URL), a layer of its environment.
    pub fn addons_env_file(&self, app: &AppName) -> PathBuf {
        self.addons_dir(app).join("ENV")
    }
    /// `data/<app>/backups/`: the add-ons' backups.
    pub fn backups_dir(&self, app: &AppName) -> PathBuf {
        self.data_dir(app).join("backups")
    }
    pub fn lock_file(&self, app: &AppName) -> PathBuf {
        self.root.join("locks").join(app.as_str())
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Server-wide settings, `K=V` lines (`NGINX_RELOAD`, ...), written by install.sh.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("settings")
    }
    /// Operator overrides of the built-in templates.
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
}

pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// The name of the user this process runs as (from /etc/passwd), else $USER.
pub fn user_name() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    id_name("/etc/passwd", uid).or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| uid.to_string())
}

/// The name of this process's group (from /etc/group), else its number.
pub fn group_name() -> String {
    use std::os::unix::fs::MetadataExt;
    let gid = fs::metadata("/proc/self").map(|m| m.gid()).unwrap_or(0);
    id_name("/etc/group", gid).unwrap_or_else(|| gid.to_string())
}

/// The name for a numeric id in a passwd-style file (`name:x:id:...`).
fn id_name(file: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(id)).then(|| f[0].to_string())
    })
}

/// The PATH apps start from: the same whoever runs the tools (ssh, a shell,
/// the hook), so LIVE_ENV does not depend on the caller. `PATH` in
/// `$PIKU_ROOT/settings` replaces it; an app's ENV can extend it (`$PATH`).
pub fn base_path(home: &Path) -> String {
    format!(
        "{}:{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        home.join("bin").display(),
        home.join(".local/bin").display(),
        tools_dir().display()
    )
}

/// The directory holding the running binary: its sibling tools live there.
pub fn tools_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
}

/// A sibling tool (`piku-config`, ...): next to this binary if there, else by name on PATH.
pub fn tool(name: &str) -> PathBuf {
    let beside = tools_dir().join(name);
    if beside.is_file() { beside } else { PathBuf::from(name) }
}

/// The installed hooks directory every app repo's `core.hooksPath` points at:
/// `$PIKU_HOOKS_DIR`, else `<prefix>/share/piku/hooks` beside `<prefix>/bin`.
pub fn hooks_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PIKU_HOOKS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let bin = tools_dir();
    let prefix = bin.parent().unwrap_or(Path::new("/usr/local"));
    prefix.join("share/piku/hooks")
}
