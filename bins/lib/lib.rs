//! What the piku tools share: paths, app names, the ENV and Procfile
//! parsers, atomic writes, output, errors, templates and child processes.
//! One concept per file; each binary in `bins/` reads as its own recipe.

pub mod app;
pub mod atomic;
pub mod authorized_keys;
pub mod cli;
pub mod envfile;
pub mod health;
pub mod include_file;
pub mod limits;
pub mod error;
pub mod fault;
pub mod forced_command;
pub mod lock;
pub mod logtail;
pub mod mapped;
pub mod nginx_workers;
pub mod output;
pub mod paths;
pub mod process;
pub mod procfile;
pub mod release;
pub mod repair;
pub mod scaling;
pub mod settings;
pub mod site_rules;
pub mod swap;
pub mod syntax;
pub mod templates;
pub mod vassals;

pub use app::AppName;
pub use error::{Error, Result};
pub use paths::Root;
