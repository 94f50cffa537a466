//! Progress and errors on stderr, Heroku style; data on stdout.
//! Writes ignore a broken pipe (the pusher pressed Ctrl-C): a tool never
//! panics halfway because its reader went away (Rust ignores SIGPIPE, so a
//! write returns EPIPE; children get the default disposition back from std).

use crate::error::Error;
use std::io::Write;
use std::process::ExitCode;

/// `-----> what is happening`
pub fn step(msg: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "-----> {}", msg.as_ref());
}

/// 7-space indented detail under a step.
pub fn detail(msg: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "       {}", msg.as_ref());
}

/// `=====> warning`
pub fn warn(msg: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "=====> {}", msg.as_ref());
}

/// ` !     error`, one line per line of the message.
pub fn error(msg: impl AsRef<str>) {
    let mut err = std::io::stderr().lock();
    for line in msg.as_ref().lines() {
        let _ = writeln!(err, " !     {line}");
    }
}

/// A line of data on stdout.
pub fn data(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

/// Text from users or apps (a commit message, a log line) made safe for a
/// terminal: control characters (but tab), DEL and the C1 controls are shown
/// as `\xNN` / `\u{NN}` escapes instead of being sent as such (an escape
/// sequence in a log line must not retitle or reprogram the reader's terminal).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{80}'..='\u{9f}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// This process's arguments; one that is not UTF-8 is a usage error (exit 2), never a panic.
pub fn args_utf8() -> Result<Vec<String>, Error> {
    std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().map_err(|bad| Error::usage(format!("an argument is not valid UTF-8: {:?}", printable(&bad.to_string_lossy())))))
        .collect()
}

/// Every tool's `main` is one call to this (after `cli::parse`): run, report
/// an error, exit with its code.
pub fn run(tool: &str, body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
    crate::atomic::restrict_umask();
    match body() {
        Ok(()) => {
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::io::stdout().flush();
            error(format!("{tool}: {}", e.message));
            ExitCode::from(e.code)
        }
    }
}

/// `run`, handing the body the command line as strings.
pub fn run_main(tool: &str, body: impl FnOnce(Vec<String>) -> Result<(), Error>) -> ExitCode {
    run(tool, || body(args_utf8()?))
}

/// A JSON string literal (for `--json` output; we need nothing more of JSON).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A flat JSON object from key/value pairs.
pub fn json_object<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let body: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{}:{}", json_string(k), json_string(v))).collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(super::printable("ok\tté\u{1b}]0;owned\u{7}\r\u{9b}31m\u{7f}"), "ok\tté\\x1b]0;owned\\x07\\x0d\\u{9b}31m\\x7f");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(super::json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
