//! The app name, validated once where it enters (DESIGN.md, "Validate at the edge").

use crate::error::{Error, Result};
use std::fmt;

/// An app name piku accepts: `[A-Za-z0-9][A-Za-z0-9._-]*`, no `..`, no `.`
/// after its last `_` (it would name another app's worker files), at most 64 bytes.
/// It is safe as a path component, a uWSGI/nginx identifier and a shell word.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

pub const MAX_APP_NAME: usize = 64;

impl AppName {
    pub fn parse(raw: &str) -> Result<AppName> {
        let problem = if raw.is_empty() {
            Some("it is empty".to_string())
        } else if raw.len() > MAX_APP_NAME {
            Some(format!("it is longer than {MAX_APP_NAME} characters"))
        } else if !raw.as_bytes()[0].is_ascii_alphanumeric() {
            Some("it must start with a letter or a digit".to_string())
        } else if let Some(c) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            Some(format!("it contains {c:?}; use letters, digits, '.', '_' and '-'"))
        } else if raw.contains("..") {
            Some("it contains '..'".to_string())
        } else if let Some((owner, worker)) = raw.rsplit_once('_').filter(|(_, rest)| rest.contains('.')) {
            // Worker files are `<app>_<kind>.<n>...` (kinds hold neither '_'
            // nor '.'), and nginx/<app>.sock sits beside them: `foo_web.1` would
            // be app `foo`'s `web.1`.
            Some(format!("a '.' after its last '_' makes its files look like those of app '{owner}''s worker '{worker}'; use '-' instead of '_' or '.'"))
        } else {
            None
        };
        match problem {
            Some(why) => Err(Error::new(format!("invalid app name {raw:?}: {why}"))),
            None => Ok(AppName(raw.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["hello", "my-app", "a.b_c", "9lives", "A", "x.git", "foo_x", "my.site_v2", "shop.blue"] {
            assert_eq!(AppName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_names_that_escape_or_inject() {
        let long = "a".repeat(MAX_APP_NAME + 1);
        for bad in ["", ".", "..", "../x", "a/b", "-x", "_x", ".hidden", "a b", "a;b", "a..b", "é", "a\nb", "$(x)", long.as_str(), "foo_web.1", "foo_web.1.g2", "a_b.c"] {
            let err = AppName::parse(bad).unwrap_err();
            assert!(err.message.contains("invalid app name"), "{bad:?}: {}", err.message);
        }
    }
}
