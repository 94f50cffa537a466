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
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(tool, || body(args))
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
    fn json_escapes() {
        assert_eq!(super::json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
