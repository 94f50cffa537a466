//! The config-syntax escapers: what they accept cannot change the meaning of
//! the file it is written into, and the uWSGI escaping reads back exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use piku::{AppName, syntax};

fuzz_target!(|value: &str| {
    if let Ok(out) = syntax::uwsgi_value("V", value) {
        assert!(!out.contains(['\n', '\r', '\0']));
        // What uWSGI does on reading: placeholders and %% back to their characters.
        let mut read_back = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find('%') {
            read_back.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("%%") {
                read_back.push('%');
                rest = r;
            } else if let Some(r) = after.strip_prefix("%(piku_dollar)") {
                read_back.push('$');
                rest = r;
            } else if let Some(r) = after.strip_prefix("%(piku_at)") {
                read_back.push('@');
                rest = r;
            } else {
                panic!("an unescaped % reached uWSGI: {out:?}");
            }
        }
        read_back.push_str(rest);
        assert_eq!(read_back, value);
        // No expansion uWSGI would perform survives: `$(` and `@(` never appear raw.
        assert!(!out.contains("$(") && !out.contains("@("), "{out:?}");
    }
    if let Ok(word) = syntax::nginx_word("V", value) {
        assert!(!word.is_empty());
        assert!(!word.chars().any(|c| matches!(c, ';' | '{' | '}' | '#' | '"' | '\'' | '\\' | '$') || c.is_whitespace() || c.is_control()));
    }
    if let Ok(app) = AppName::parse(value) {
        let s = app.as_str();
        assert!(!s.contains("..") && !s.contains('/') && !s.starts_with(['.', '-']) && s.len() <= 64);
    }
});
