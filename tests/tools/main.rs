//! Integration tests: the built binaries (CARGO_BIN_EXE_*) against a temporary
//! PIKU_ROOT. git is real; ssh is replaced by a script that sets
//! SSH_ORIGINAL_COMMAND as sshd would, and nginx by `NGINX_BIN`/`NGINX_RELOAD`
//! stand-ins. The real daemons are the end-to-end suite's job (tests/e2e).

mod harness;

mod access;
mod addons;
mod build;
mod client;
mod config;
mod deploy;
mod front_door;
mod hardening;
mod nginx;
mod ownership;
mod repair;
mod security;
mod tool_cli;
mod workers;
