//! The ssh side of the front door: the authorized_keys line `setup:ssh`
//! writes for a key, and the command line sshd hands over.
//!
//! The forced command names no arguments: sshd puts what the user typed in
//! `$SSH_ORIGINAL_COMMAND`, and the front door reads it from its environment
//! and splits it like a shell would, never through one. So the user's words
//! are never expanded by the shell sshd runs the forced command with (no
//! globbing, no `$VAR`), and never sit in any process's argv, which `ps`
//! shows every user (`config:set app SECRET=...`).

use crate::authorized_keys::KeyLine;
use crate::error::{Error, Result};
use std::path::Path;

/// The options every piku key gets, after its forced command.
pub const KEY_OPTIONS: &str = "no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding";

/// The authorized_keys line for `key`: forced to `door`, named, optionally
/// limited to `apps`. The key's own options (`restrict`, ...) are replaced.
pub fn key_line(door: &Path, fingerprint: &str, name: &str, apps: Option<&[String]>, key: &KeyLine) -> Result<String> {
    let door = door.display().to_string();
    // The command is a double-quoted string that sshd hands to a shell: only
    // words that need no quoting in either.
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',' | '='));
    if !plain(&door) {
        return Err(Error::new(format!("the front door's path {door:?} has characters a forced command cannot hold; install piku under a plain path")));
    }
    for word in [fingerprint, name].into_iter().chain(apps.unwrap_or_default().iter().map(String::as_str)) {
        if !plain(word) {
            return Err(Error::usage(format!("{word:?} cannot be written into a forced command; use letters, digits, '.', '_', '-' and '@'")));
        }
    }
    let limit = apps.map(|a| format!(" PIKU_ALLOWED_APPS={}", a.join(","))).unwrap_or_default();
    let comment = if key.comment.is_empty() { String::new() } else { format!(" {}", key.comment) };
    Ok(format!("command=\"FINGERPRINT={fingerprint} NAME={name}{limit} {door}\",{KEY_OPTIONS} {} {}{comment}", key.kind, key.body))
}

/// A key line an older `setup:ssh` wrote for `door`, ending its forced
/// command in ` $SSH_ORIGINAL_COMMAND` (which the shell sshd runs globbed and
/// put in argv), rewritten to name no arguments; None for any other line.
pub fn upgrade_line(line: &str, door: &Path) -> Option<String> {
    let key = crate::authorized_keys::parse_line(line)?;
    let options = key.options.as_deref()?;
    let old = format!(" {} $SSH_ORIGINAL_COMMAND\"", door.display());
    if !options.starts_with("command=\"") || !options.contains(&old) {
        return None;
    }
    Some(line.replacen(&old, &format!(" {}\"", door.display()), 1))
}

/// The command line sshd handed over in `$SSH_ORIGINAL_COMMAND`, split like
/// a shell would (None: not run by sshd). The variable is then removed, so
/// the tools and app code the command starts do not inherit it. Not UTF-8,
/// or quotes that do not close: a usage error.
pub fn take_original_command() -> Result<Option<Vec<String>>> {
    let Some(raw) = std::env::var_os("SSH_ORIGINAL_COMMAND") else { return Ok(None) };
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe { std::env::remove_var("SSH_ORIGINAL_COMMAND") };
    let cmd = raw.into_string().map_err(|bad| {
        Error::usage(format!("the command is not valid UTF-8: {:?}; nothing was run", crate::output::printable(&bad.to_string_lossy())))
    })?;
    shell_words::split(&cmd).map(Some).map_err(|e| Error::usage(format!("cannot parse the command {:?}: {e}", crate::output::printable(&cmd))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorized_keys::parse_line;

    #[test]
    fn the_forced_command_names_no_user_words_and_keeps_no_old_options() {
        let key = parse_line("restrict,command=\"evil\" ssh-ed25519 AAAAC3Nza me@laptop").unwrap();
        let apps = vec!["blog".to_string(), "shop".to_string()];
        let line = key_line(Path::new("/usr/local/bin/piku"), "SHA256:ab+/c", "ana", Some(&apps), &key).unwrap();
        assert_eq!(
            line,
            "command=\"FINGERPRINT=SHA256:ab+/c NAME=ana PIKU_ALLOWED_APPS=blog,shop /usr/local/bin/piku\",no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding ssh-ed25519 AAAAC3Nza me@laptop"
        );
        assert!(!line.contains("SSH_ORIGINAL_COMMAND"));
        let parsed = parse_line(&line).unwrap();
        assert_eq!((parsed.body.as_str(), parsed.comment.as_str()), ("AAAAC3Nza", "me@laptop"));
        assert!(key_line(Path::new("/opt/my piku/piku"), "SHA256:x", "a", None, &key).is_err());
        assert!(key_line(Path::new("/p/piku"), "SHA256:x", "a\"b", None, &key).is_err());
    }

    #[test]
    fn keys_of_an_older_setup_ssh_are_upgraded_and_no_other_line() {
        let door = Path::new("/usr/local/bin/piku");
        let old = "command=\"FINGERPRINT=SHA256:x NAME=a /usr/local/bin/piku $SSH_ORIGINAL_COMMAND\",no-pty ssh-ed25519 AAAAC3Nza c";
        assert_eq!(upgrade_line(old, door).unwrap(), "command=\"FINGERPRINT=SHA256:x NAME=a /usr/local/bin/piku\",no-pty ssh-ed25519 AAAAC3Nza c");
        for other in [
            "ssh-ed25519 AAAAC3Nza $SSH_ORIGINAL_COMMAND",
            "command=\"/other/piku $SSH_ORIGINAL_COMMAND\" ssh-ed25519 AAAAC3Nza",
            "command=\"FINGERPRINT=SHA256:x NAME=a /usr/local/bin/piku\",no-pty ssh-ed25519 AAAAC3Nza c",
            "# command=\"/usr/local/bin/piku $SSH_ORIGINAL_COMMAND\" ssh-ed25519 AAAA",
        ] {
            assert_eq!(upgrade_line(other, door), None, "{other}");
        }
    }
}
