//! Server-wide settings: `$PIKU_ROOT/settings`, `K=V` lines written by
//! install.sh (or the operator). A missing file or key means the default.

use crate::envfile::{self, Env};
use crate::error::Result;
use crate::paths::Root;

pub struct Settings {
    env: Env,
}

impl Settings {
    pub fn load(root: &Root) -> Result<Settings> {
        let mut env = Env::new();
        envfile::read_into(&mut env, &root.settings_file(), false)?;
        Ok(Settings { env })
    }

    /// A setting from the file (never from the process environment, which
    /// differs between ssh, the hook and a shell).
    pub fn get(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.is_empty()).cloned()
    }

    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }
}

/// A setting of the app (its resolved environment `env`), else of the server.
pub fn for_app(root: &Root, env: &Env, key: &str) -> Result<Option<String>> {
    match env.get(key).filter(|v| !v.is_empty()) {
        Some(v) => Ok(Some(v.clone())),
        None => Ok(Settings::load(root)?.get(key)),
    }
}
