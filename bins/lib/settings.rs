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

    /// A setting: the process environment wins (for tests and one-off runs), then the file.
    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty()).or_else(|| self.env.get(key).cloned())
    }

    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }
}
