//! `setup:ssh`: allow an ssh key, forced to this front door, optionally
//! named and limited to some existing apps.

use crate::Ctx;
use crate::commands::Command;
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::{AppName, atomic, output, paths};
use std::io::Read;
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

/// Add the keys of `file` to ~/.ssh/authorized_keys.
fn setup_ssh(name: &str, apps: Option<Vec<String>>, file: &str) -> Result<()> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Error::new(format!("cannot read the key from stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::new(format!("cannot read public key file {file:?}: {e}")))?
    };
    let keys: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if keys.is_empty() {
        return Err(Error::new(format!("no public key found in {file:?}")));
    }
    let ssh_dir = paths::home_dir().join(".ssh");
    let auth = ssh_dir.join("authorized_keys");
    let mut lines: Vec<String> = std::fs::read_to_string(&auth).unwrap_or_default().lines().map(str::to_string).collect();
    let door = std::env::current_exe().map_err(|e| Error::new(format!("cannot find this program's path: {e}")))?;
    let limit = apps.as_ref().map(|a| format!(" PIKU_ALLOWED_APPS={}", a.join(","))).unwrap_or_default();
    for key in keys {
        let fingerprint = fingerprint(key)?;
        let key_body = key.split_whitespace().nth(1).unwrap_or("");
        let line = format!(
            "command=\"FINGERPRINT={fingerprint} NAME={name}{limit} {} $SSH_ORIGINAL_COMMAND\",no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding {key}",
            door.display()
        );
        match lines.iter().position(|l| l.split_whitespace().any(|w| w == key_body)) {
            Some(i) if lines[i] == line => output::step(format!("Key {fingerprint} is already allowed")),
            Some(i) => {
                lines[i] = line;
                output::step(format!("Updated key {fingerprint} ({name})"));
            }
            None => {
                lines.push(line);
                output::step(format!("Adding key {fingerprint} ({name}{})", apps.as_ref().map(|a| format!(", apps: {}", a.join(","))).unwrap_or_default()));
            }
        }
    }
    fs_err::create_dir_all(&ssh_dir)?;
    fs_err::set_permissions(&ssh_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut text = lines.join("\n");
    text.push('\n');
    atomic::write_file(&auth, text.as_bytes(), 0o600)
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
