//! `setup:ssh`: allow an ssh key, forced to this front door, optionally
//! named and limited to some existing apps.

use crate::Ctx;
use crate::commands::Command;
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::authorized_keys::{self, AuthorizedKeys, Change};
use piku::{AppName, limits, output, paths};
use std::process::{Command as Process, Stdio};

/// allow an ssh key (forced to this command), optionally only for some apps
#[derive(FromArgs)]
#[argh(subcommand, name = "setup:ssh", help_triggers("-h", "--help"))]
#[argh(example = "piku setup:ssh ~/.ssh/id_ed25519.pub", example = "cat ana.pub | ssh piku@server setup:ssh --name ana --apps blog,wiki -")]
#[argh(note = "The key goes to ~/.ssh/authorized_keys with this front door as its forced command; a key already there is updated in place, never added twice. A key limited with --apps sees only those apps, may not create apps and may not run server-wide commands or plugins.")]
pub struct SetupSsh {
    /// a name for the key, shown in messages (letters, digits, '.', '_', '-', '@'; default: default)
    #[argh(option)]
    name: Option<String>,
    /// limit the key to these existing apps (comma-separated)
    #[argh(option)]
    apps: Option<String>,
    /// the public key file, or - to read it from stdin
    #[argh(positional)]
    key: String,
}

impl Command for SetupSsh {
    fn run(self, _ctx: &Ctx) -> Result<()> {
        let name = self.name.unwrap_or_else(|| "default".into());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
            return Err(Error::usage(format!("--name {name:?}: use letters, digits, '.', '_', '-' and '@'")));
        }
        let apps = match self.apps {
            None => None,
            Some(v) => {
                let list: Vec<String> = v.split(',').filter(|a| !a.is_empty()).map(|a| AppName::parse(a).map(|a| a.to_string())).collect::<Result<_>>()?;
                if list.is_empty() {
                    return Err(Error::usage("--apps needs at least one app"));
                }
                Some(list)
            }
        };
        setup_ssh(&name, apps, &self.key)
    }
}

/// Add the keys of `file` to ~/.ssh/authorized_keys (lib authorized_keys:
/// keys with options recognised, every other line kept, a file that cannot
/// be read whole as text never rewritten).
fn setup_ssh(name: &str, apps: Option<Vec<String>>, file: &str) -> Result<()> {
    let bytes = if file == "-" {
        limits::read_stdin("the key on stdin")?
    } else {
        let f = std::fs::File::open(file).map_err(|e| Error::new(format!("cannot read public key file {file:?}: {e}")))?;
        limits::read_bounded(f, limits::MAX_STDIN_BYTES, &format!("the public key file {file:?}"))?
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::new(format!("{file:?} is not a public key (not UTF-8 text)")))?;
    let keys: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if keys.is_empty() {
        return Err(Error::new(format!("no public key found in {file:?}")));
    }
    let ssh_dir = paths::home_dir().join(".ssh");
    let auth = ssh_dir.join("authorized_keys");
    let mut file_keys = AuthorizedKeys::read(&auth)?;
    let door = std::env::current_exe().map_err(|e| Error::new(format!("cannot find this program's path: {e}")))?;
    for key in keys {
        let parsed = authorized_keys::parse_line(key)
            .ok_or_else(|| Error::new(format!("not a valid ssh public key: {:?}", key.chars().take(40).collect::<String>())))?;
        let fingerprint = fingerprint(&format!("{} {}", parsed.kind, parsed.body))?;
        let line = piku::forced_command::key_line(&door, &fingerprint, name, apps.as_deref(), &parsed)?;
        match file_keys.upsert(&parsed.body, line) {
            Change::Unchanged => output::step(format!("Key {fingerprint} is already allowed")),
            Change::Updated => output::step(format!("Updated key {fingerprint} ({name})")),
            Change::Added => output::step(format!("Adding key {fingerprint} ({name}{})", apps.as_ref().map(|a| format!(", apps: {}", a.join(","))).unwrap_or_default())),
        }
    }
    fs_err::create_dir_all(&ssh_dir)?;
    fs_err::set_permissions(&ssh_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    file_keys.write(&auth)
}

/// Keys added by an older setup:ssh end their forced command in
/// `$SSH_ORIGINAL_COMMAND`: rewrite them to name no arguments (lib forced_command).
pub fn upgrade_keys() -> Result<()> {
    let auth = paths::home_dir().join(".ssh/authorized_keys");
    if !auth.exists() {
        return Ok(());
    }
    let door = std::env::current_exe().map_err(|e| Error::new(format!("cannot find this program's path: {e}")))?;
    let mut keys = match AuthorizedKeys::read(&auth) {
        Ok(keys) => keys,
        Err(e) => {
            output::warn(format!("{}; its keys were not checked for the old forced command", e.message));
            return Ok(());
        }
    };
    let n = keys.rewrite(|l| piku::forced_command::upgrade_line(l, &door));
    if n > 0 {
        keys.write(&auth)?;
        output::step(format!("Updated {n} key(s) in {}: the forced command no longer passes $SSH_ORIGINAL_COMMAND as arguments", auth.display()));
    }
    Ok(())
}

/// The key's SHA256 fingerprint, which also proves it is a valid public key.
fn fingerprint(key: &str) -> Result<String> {
    let mut child = Process::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("cannot run ssh-keygen to check the key: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(format!("{key}\n").as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::new(format!("ssh-keygen: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().nth(1) {
        Some(fp) if out.status.success() && fp.starts_with("SHA256:") => Ok(fp.to_string()),
        _ => Err(Error::new(format!("not a valid ssh public key: {:?}", key.chars().take(40).collect::<String>()))),
    }
}
