//! One escaping/validation function per config syntax a value is written into.
//! A value that cannot be written safely is refused, naming the variable.

use crate::error::{Error, Result};

/// Placeholders every vassal defines, so a literal `$(` or `@(` survives:
/// uWSGI expands `$(VAR)`, `@(file)` and even `@(exec://cmd)` in any value.
pub const UWSGI_PLACEHOLDERS: &[(&str, &str)] = &[("piku_dollar", "$"), ("piku_at", "@")];

/// A value for a uWSGI ini line (`key = value`): no line breaks or NUL; `%`
/// doubled; `$(` and `@(` written through placeholders so uWSGI never expands
/// them (checked against uWSGI 2.0.21: the process sees exactly the value).
pub fn uwsgi_value(name: &str, value: &str) -> Result<String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(Error::new(format!("{name} contains a line break or NUL byte, which cannot be passed to uWSGI; remove it")));
    }
    Ok(value.replace('%', "%%").replace("$(", "%(piku_dollar)(").replace("@(", "%(piku_at)("))
}

/// One word of an nginx directive (a server name, a path, a prefix): refuses
/// anything nginx would read as syntax (`;` `{` `}` `#` quotes, `$` variables,
/// backslashes, blanks, control characters).
pub fn nginx_word(name: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::new(format!("{name} has an empty entry")));
    }
    if let Some(c) = value.chars().find(|c| matches!(c, ';' | '{' | '}' | '#' | '"' | '\'' | '\\' | '$') || c.is_whitespace() || c.is_control()) {
        return Err(Error::new(format!("{name} contains {c:?} in {value:?}, which nginx would read as configuration syntax; remove it")));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uwsgi_values_are_escaped_or_refused() {
        assert_eq!(uwsgi_value("A", "100%d $(HOME) @(exec://x) $PORT u@h").unwrap(), "100%%d %(piku_dollar)(HOME) %(piku_at)(exec://x) $PORT u@h");
        let err = uwsgi_value("SECRET", "a\nplugin = evil").unwrap_err();
        assert!(err.message.starts_with("SECRET contains a line break"), "{}", err.message);
    }

    #[test]
    fn nginx_words_refuse_syntax() {
        assert_eq!(nginx_word("NGINX_SERVER_NAME", "a.example.com").unwrap(), "a.example.com");
        for bad in ["a;b", "a{", "}", "a b", "x#y", "$host", "a\nb", "\"q\"", ""] {
            let err = nginx_word("NGINX_SERVER_NAME", bad).unwrap_err();
            assert!(err.message.starts_with("NGINX_SERVER_NAME"), "{bad:?}: {}", err.message);
        }
    }
}
