//! `ENV` files: `K=V` lines, `#` comments, blank lines; split at the first `=`,
//! both sides trimmed; `$VAR` and `${VAR}` expand against what is defined so far
//! (an undefined variable stays as written). A malformed line is an error naming
//! the file and the line (piku ignores the whole file silently).

use crate::error::{Error, Result};
use fs_err as fs;
use std::collections::BTreeMap;
use std::path::Path;

/// An environment: sorted, so every file we write from it is deterministic.
pub type Env = BTreeMap<String, String>;

/// The longest value we accept (after expansion); Linux refuses single
/// environment strings over 128 KiB anyway, and this stops `A=$A$A` doubling.
pub const MAX_VALUE: usize = 64 * 1024;
/// The most an environment may hold in all.
pub const MAX_TOTAL: usize = 1024 * 1024;

/// Is `key` a variable name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a value cannot be stored in an ENV file (or passed on to uWSGI), if it cannot.
pub fn value_problem(value: &str) -> Option<&'static str> {
    if value.contains('\n') || value.contains('\r') {
        Some("contains a line break")
    } else if value.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    }
}

/// Split one `K=V` assignment (a line, or a `config:set` argument).
pub fn split_assignment(text: &str) -> std::result::Result<(String, String), String> {
    let Some((k, v)) = text.split_once('=') else {
        return Err("expected KEY=VALUE, found no '='".to_string());
    };
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty() {
        return Err("the key before '=' is empty".to_string());
    }
    if !is_valid_key(k) {
        return Err(format!("{k:?} is not a variable name (letters, digits and '_', not starting with a digit)"));
    }
    if let Some(why) = value_problem(v) {
        return Err(format!("the value of {k} {why}"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parse `text` (from `origin`, for errors) on top of `env`, expanding values
/// against everything defined so far. With `expand` false values are taken
/// literally (for files we wrote already resolved, such as LIVE_ENV).
pub fn parse_into(env: &mut Env, text: &str, origin: &str, expand: bool) -> Result<()> {
    let mut total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = split_assignment(line)
            .map_err(|why| Error::new(format!("{origin}, line {}: {why}: {line:?}", n + 1)))?;
        let v = if expand { expand_vars(&v, env) } else { v };
        if v.len() > MAX_VALUE {
            return Err(Error::new(format!("{origin}, line {}: the value of {k} is longer than {MAX_VALUE} bytes", n + 1)));
        }
        total += k.len() + v.len() + 2;
        if let Some(old) = env.insert(k, v) {
            total -= old.len();
        }
        if total > MAX_TOTAL {
            return Err(Error::new(format!("{origin}, line {}: the environment is larger than {MAX_TOTAL} bytes", n + 1)));
        }
    }
    Ok(())
}

/// Read an ENV file into `env` if it exists; a missing file adds nothing.
pub fn read_into(env: &mut Env, path: &Path, expand: bool) -> Result<bool> {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::new(format!("{} is not UTF-8 text", path.display())))?;
            parse_into(env, &text, &path.display().to_string(), expand)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Read a file we wrote ourselves (LIVE_ENV, a release's env): literal values.
pub fn read_literal(path: &Path) -> Result<Option<Env>> {
    let mut env = Env::new();
    Ok(read_into(&mut env, path, false)?.then_some(env))
}

/// Render as `K=V` lines, refusing a value that would not read back the same.
pub fn render(env: &Env) -> Result<String> {
    let mut out = String::new();
    for (k, v) in env {
        if let Some(why) = value_problem(v) {
            return Err(Error::new(format!("the value of {k} {why}; it cannot be stored")));
        }
        if v.trim() != v {
            // Leading or trailing blanks would be trimmed on the way back in.
            return Err(Error::new(format!("the value of {k} starts or ends with blanks; it cannot be stored")));
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    Ok(out)
}

/// `$VAR` / `${VAR}` expansion as piku does it: `$` followed by word characters,
/// or by `{...}`; a name that is not defined is left exactly as written.
pub fn expand_vars(value: &str, env: &Env) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if consumed == 0 || (name.is_empty() && !after.starts_with('{')) {
            out.push('$');
            rest = after;
            continue;
        }
        match env.get(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[pos..pos + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// piku's booleans: `1 on true enabled yes y`, any case.
pub fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "on" | "true" | "enabled" | "yes" | "y")
}

/// A boolean setting from `env`, `default` when absent.
pub fn flag(env: &Env, key: &str, default: bool) -> bool {
    env.get(key).map(|v| is_true(v)).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &[(&str, &str)]) -> Result<Env> {
        let mut env: Env = base.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_into(&mut env, text, "ENV", true)?;
        Ok(env)
    }

    #[test]
    fn pikus_documented_example_expands() {
        // From piku's docs/DESIGN.md "ENV settings".
        let env = parse("SETTING1=foo\n# piku supports comments and variable expansion\nSETTING2=${SETTING1}/bar\nPORT=9080\n", &[]).unwrap();
        assert_eq!(env["SETTING1"], "foo");
        assert_eq!(env["SETTING2"], "foo/bar");
        assert_eq!(env["PORT"], "9080");
    }

    #[test]
    fn expansion_uses_earlier_layers_and_keeps_unknowns() {
        let env = parse("P=$HOME/x:${UNDEFINED}:$NOPE\nQ = a=b \n", &[("HOME", "/home/piku")]).unwrap();
        assert_eq!(env["P"], "/home/piku/x:${UNDEFINED}:$NOPE");
        assert_eq!(env["Q"], "a=b");
    }

    #[test]
    fn dollar_edge_cases_stay_literal() {
        let env = Env::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand_vars("cost $5 and $", &env), "cost $5 and $");
        assert_eq!(expand_vars("${A}${A}$A.", &env), "111.");
        assert_eq!(expand_vars("${unclosed", &env), "${unclosed");
        assert_eq!(expand_vars("$-x $$", &env), "$-x $$");
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let env = parse("\r\n# c\r\n  # indented comment\nA=1\r\n\n", &[]).unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env["A"], "1");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, needle) in [
            ("A=1\nnonsense\n", "line 2: expected KEY=VALUE"),
            ("=x\n", "line 1: the key before '=' is empty"),
            ("1A=x\n", "line 1: \"1A\" is not a variable name"),
            ("A-B=x\n", "is not a variable name"),
            ("A=x\0y\n", "contains a NUL byte"),
        ] {
            let err = parse(text, &[]).unwrap_err();
            assert!(err.message.starts_with("ENV, line"), "{}", err.message);
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn render_round_trips_and_refuses_line_breaks() {
        let env = parse("B=two words\nA=x=y;{}\"$(no)\n", &[]).unwrap();
        let text = render(&env).unwrap();
        assert_eq!(text, "A=x=y;{}\"$(no)\nB=two words\n");
        let mut back = Env::new();
        parse_into(&mut back, &text, "LIVE_ENV", false).unwrap();
        assert_eq!(back, env);
        let bad = Env::from([("K".to_string(), "a\nb".to_string())]);
        assert!(render(&bad).unwrap_err().message.contains("K"));
    }

    #[test]
    fn expansion_cannot_blow_up() {
        let text = format!("A={}\n{}", "x".repeat(1000), "A=$A$A\n".repeat(10));
        let err = parse(&text, &[]).unwrap_err();
        assert!(err.message.contains("longer than 65536 bytes"), "{}", err.message);
    }

    #[test]
    fn booleans_as_piku_reads_them() {
        for t in ["1", "on", "TRUE", "Enabled", "yes", "Y"] {
            assert!(is_true(t), "{t}");
        }
        for f in ["0", "off", "false", "no", "", "2"] {
            assert!(!is_true(f), "{f}");
        }
    }
}
