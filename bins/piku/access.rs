//! What the ssh key may do: the forced command of a key added with
//! `setup:ssh --apps` sets PIKU_ALLOWED_APPS (and NAME), limiting it to those
//! existing apps: no other app, no new app, no server-wide command, no
//! plugin. Which commands a limited key may run is the table's `limited`.

use crate::Ctx;
use crate::commands::{Entry, Takes};
use piku::error::{Error, Result};
use piku::{AppName, release};

pub struct Access {
    name: String,
    apps: Option<Vec<String>>,
}

impl Access {
    pub fn from_env() -> Access {
        Access {
            name: std::env::var("NAME").unwrap_or_else(|_| "default".into()),
            apps: std::env::var("PIKU_ALLOWED_APPS").ok().map(|l| l.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect()),
        }
    }

    /// Is this key limited to some apps?
    pub fn is_limited(&self) -> bool {
        self.apps.is_some()
    }

    /// May this key see or use `app`?
    pub fn allows(&self, app: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.iter().any(|a| a == app))
    }

    fn refuse(&self, why: String) -> Error {
        let apps = self.apps.as_deref().unwrap_or_default().join(", ");
        Error::new(format!("the ssh key '{}' {why}; it may use: {apps}", self.name))
    }

    /// A command of the table, on `app` (as typed; None when it takes none).
    pub fn check(&self, ctx: &Ctx, entry: &Entry, app: Option<&str>) -> Result<()> {
        if self.apps.is_none() {
            return Ok(());
        }
        let cmd = entry.name();
        if !entry.limited {
            return Err(self.refuse(format!("may not run server-wide commands such as '{cmd}'")));
        }
        let (Takes::App, Some(app)) = (entry.takes, app) else { return Ok(()) };
        let app = crate::git_path_to_app(app);
        if !self.allows(app) {
            return Err(self.refuse(format!("may not use the app '{app}'")));
        }
        if cmd == "git-receive-pack" && AppName::parse(app).is_ok_and(|a| !release::app_exists(&ctx.root, &a)) {
            return Err(self.refuse(format!("may not create new apps ('{app}' does not exist)")));
        }
        Ok(())
    }

    /// Plugins run with the piku user's full rights: not for a limited key.
    pub fn check_plugin(&self, cmd: &str) -> Result<()> {
        if self.apps.is_some() { Err(self.refuse(format!("may not run '{cmd}'"))) } else { Ok(()) }
    }
}
