//! `~/.ssh/authorized_keys`, as sshd reads it (sshd(8), "AUTHORIZED_KEYS FILE
//! FORMAT"): `[options] keytype base64 [comment]`, where options are
//! comma-separated and may hold quoted strings (`command="a b",restrict`).
//! `setup:ssh` adds or updates one key's line and keeps every other line as it
//! was, byte for byte; a file it cannot read whole as text is never rewritten.

use crate::error::{Error, Result};
use std::path::Path;

/// One key line, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// The options field (`restrict`, `command="..."`, ...), if any.
    pub options: Option<String>,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `sk-ssh-ed25519@openssh.com`, ...
    pub kind: String,
    /// The base64 key: what identifies the key.
    pub body: String,
    pub comment: String,
}

/// Is `word` a key type sshd knows (the public key algorithms and their certificates)?
pub fn is_key_type(word: &str) -> bool {
    // `ssh-ed25519-cert-v01@openssh.com` is a certificate of `ssh-ed25519`.
    let word = word.strip_suffix("-cert-v01@openssh.com").unwrap_or(word);
    matches!(
        word,
        "ssh-ed25519" | "ssh-rsa" | "ssh-dss" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521"
            | "sk-ssh-ed25519@openssh.com" | "sk-ecdsa-sha2-nistp256@openssh.com" | "sk-ssh-ed25519" | "sk-ecdsa-sha2-nistp256"
    )
}

/// The end of the options field: the first blank outside double quotes
/// (a `\"` inside quotes does not end them). None when a quote is not closed.
fn options_end(line: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// A key line taken apart; None for a blank line, a comment, or a line that
/// is not a key (kept as it is by [`AuthorizedKeys`]).
pub fn parse_line(line: &str) -> Option<KeyLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let first = line.split([' ', '\t']).next()?;
    let (options, rest) = if is_key_type(first) {
        (None, line)
    } else {
        let end = options_end(line)?;
        (Some(line[..end].to_string()), line[end..].trim_start())
    };
    let mut words = rest.splitn(3, [' ', '\t']);
    let kind = words.next()?.to_string();
    let body = words.next()?.to_string();
    let comment = words.next().unwrap_or("").trim().to_string();
    let base64 = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    (is_key_type(&kind) && base64(&body)).then_some(KeyLine { options, kind, body, comment })
}

/// The lines of an authorized_keys file.
#[derive(Debug, Default)]
pub struct AuthorizedKeys {
    pub lines: Vec<String>,
}

/// What [`AuthorizedKeys::upsert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Updated,
    Added,
}

impl AuthorizedKeys {
    /// Read `path`: a missing file has no lines; a file that cannot be read,
    /// or is not UTF-8 text, is an error (never taken for an empty one).
    pub fn read(path: &Path) -> Result<AuthorizedKeys> {
        let bytes = match fs_err::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuthorizedKeys::default()),
            Err(e) => return Err(Error::new(format!("cannot read the ssh keys: {e}; the file was left as it is (fix its owner or mode, then run setup:ssh again)"))),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::new(format!(
                "{} is not UTF-8 text (byte {} is not); it was left as it is, so no key is lost: fix the file by hand, then run setup:ssh again",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(AuthorizedKeys { lines: text.lines().map(str::to_string).collect() })
    }

    /// The index of the line that holds the key with this base64 body.
    pub fn find(&self, body: &str) -> Option<usize> {
        self.lines.iter().position(|l| parse_line(l).is_some_and(|k| k.body == body))
    }

    /// Put `line` (a key line for the key `body`) in place of the key's line, or add it.
    pub fn upsert(&mut self, body: &str, line: String) -> Change {
        match self.find(body) {
            Some(i) if self.lines[i] == line => Change::Unchanged,
            Some(i) => {
                self.lines[i] = line;
                Change::Updated
            }
            None => {
                self.lines.push(line);
                Change::Added
            }
        }
    }

    /// Replace each line `f` maps to a new one; how many changed.
    pub fn rewrite(&mut self, f: impl Fn(&str) -> Option<String>) -> usize {
        let mut changed = 0;
        for line in &mut self.lines {
            if let Some(new) = f(line).filter(|n| n != line) {
                *line = new;
                changed += 1;
            }
        }
        changed
    }

    pub fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// Write the file atomically, 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_file(path, self.render().as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKeyBodyOne+/=";

    #[test]
    fn keys_with_and_without_options_are_recognised() {
        let plain = parse_line(&format!("ssh-ed25519 {BODY} me@laptop")).unwrap();
        assert_eq!((plain.options, plain.kind.as_str(), plain.body.as_str(), plain.comment.as_str()), (None, "ssh-ed25519", BODY, "me@laptop"));
        let restricted = parse_line(&format!("restrict ssh-ed25519 {BODY}")).unwrap();
        assert_eq!((restricted.options.as_deref(), restricted.body.as_str()), (Some("restrict"), BODY));
        let forced = parse_line(&format!(r#"command="FINGERPRINT=x /usr/bin/piku \"a b\"",no-pty ecdsa-sha2-nistp256 {BODY} a comment"#)).unwrap();
        assert_eq!(forced.options.as_deref(), Some(r#"command="FINGERPRINT=x /usr/bin/piku \"a b\"",no-pty"#));
        assert_eq!((forced.kind.as_str(), forced.body.as_str(), forced.comment.as_str()), ("ecdsa-sha2-nistp256", BODY, "a comment"));
        assert!(parse_line(&format!("sk-ssh-ed25519@openssh.com {BODY}")).is_some());
        assert!(parse_line(&format!("ssh-ed25519-cert-v01@openssh.com {BODY}")).is_some());
        for not_key in ["", "# ssh-ed25519 AAAA", "restrict", "command=\"unclosed ssh-ed25519 AAAA", "hello world again", "ssh-ed25519 not*base64"] {
            assert_eq!(parse_line(not_key), None, "{not_key:?}");
        }
    }

    #[test]
    fn a_key_with_options_is_updated_in_place_and_other_lines_kept() {
        let mut keys = AuthorizedKeys {
            lines: vec!["# mine".into(), format!("restrict ssh-ed25519 {BODY} old"), "some line sshd ignores".into(), "ssh-rsa AAAAB3Other x".into()],
        };
        let new = format!("command=\"piku\" ssh-ed25519 {BODY} old");
        assert_eq!(keys.upsert(BODY, new.clone()), Change::Updated);
        assert_eq!(keys.upsert(BODY, new.clone()), Change::Unchanged);
        assert_eq!(keys.lines, ["# mine", new.as_str(), "some line sshd ignores", "ssh-rsa AAAAB3Other x"]);
        assert_eq!(keys.upsert("AAAAnew", "ssh-ed25519 AAAAnew".into()), Change::Added);
        assert_eq!(keys.lines.len(), 5);
    }

    #[test]
    fn an_unreadable_or_non_utf8_file_is_an_error_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authorized_keys");
        assert!(AuthorizedKeys::read(&p).unwrap().lines.is_empty());
        std::fs::write(&p, b"ssh-ed25519 AAAA caf\xe9\n").unwrap();
        let err = AuthorizedKeys::read(&p).unwrap_err();
        assert!(err.message.contains("not UTF-8") && err.message.contains("left as it is"), "{}", err.message);
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap(); // a directory cannot be read as a file, even by root
        assert!(AuthorizedKeys::read(&p).unwrap_err().message.contains("cannot read"));
    }
}
