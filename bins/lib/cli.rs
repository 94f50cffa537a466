//! Every tool's command line, through argh, the same way: `--help` (and
//! `<tool> <sub> --help`) print help on stdout and exit 0, `--version` prints
//! the version, a usage error prints what was wrong and the usage on stderr
//! and exits 2, and an argument that is not UTF-8 is a usage error, never a
//! panic. User data (app names, values) must come after `--` where it could
//! look like a flag; see each tool's help.

use std::process::exit;

/// Exit status of a usage error (the README's table of exit codes).
pub const USAGE: i32 = 2;

/// Parse this process's arguments into `T`, or exit as described above.
pub fn parse<T: argh::TopLevelCommand>() -> T {
    let mut args = std::env::args_os();
    let argv0 = args.next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let tool = std::path::Path::new(&argv0).file_name().map_or(argv0.clone(), |n| n.to_string_lossy().into_owned());
    let args: Vec<String> = args
        .map(|a| {
            a.into_string().unwrap_or_else(|bad| {
                eprintln!(" !     {tool}: an argument is not valid UTF-8: {:?}", bad.to_string_lossy());
                exit(USAGE)
            })
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match parse_from::<T>(&tool, &args) {
        Ok(parsed) => parsed,
        Err((code, text)) => {
            if code == 0 {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            exit(code)
        }
    }
}

/// `T` from `args` (without argv[0]); Err((exit status, text)) for help,
/// `--version` (status 0, text for stdout) and usage errors (status 2, text
/// for stderr: the error, then the usage of the command it was for).
pub fn parse_from<T: argh::FromArgs>(tool: &str, args: &[&str]) -> Result<T, (i32, String)> {
    if args == ["--version"] {
        return Err((0, format!("{tool} {}\n", env!("CARGO_PKG_VERSION"))));
    }
    match T::from_args(&[tool], args) {
        Ok(parsed) => Ok(parsed),
        Err(early) if early.status.is_ok() => Err((0, early.output)),
        Err(early) => {
            // The usage of the (sub)command the error is about: the words
            // before the first flag-like or unknown argument, then --help.
            let mut text = early.output.trim_end().to_string();
            text.push('\n');
            let words: Vec<&str> = args.iter().copied().take_while(|a| !a.starts_with('-')).collect();
            for n in (0..=words.len()).rev() {
                let mut probe = words[..n].to_vec();
                probe.push("--help");
                if let Err(help) = T::from_args(&[tool], &probe) {
                    if help.status.is_ok() {
                        text.push('\n');
                        text.push_str(&help.output);
                        break;
                    }
                }
            }
            Err((USAGE, text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    /// A tool for the tests.
    #[derive(FromArgs, Debug)]
    struct Tool {
        #[argh(subcommand)]
        sub: Sub,
    }

    #[derive(FromArgs, Debug)]
    #[argh(subcommand)]
    enum Sub {
        Check(Check),
    }

    /// Check an app.
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "check")]
    struct Check {
        /// the app
        #[argh(positional)]
        app: String,
        /// be quiet
        #[argh(switch)]
        quiet: bool,
    }

    #[test]
    fn help_version_and_usage_errors() {
        let Sub::Check(c) = parse_from::<Tool>("t", &["check", "a", "--quiet"]).unwrap().sub;
        assert_eq!((c.app.as_str(), c.quiet), ("a", true));
        let (code, text) = parse_from::<Tool>("t", &["--help"]).unwrap_err();
        assert_eq!(code, 0);
        assert!(text.contains("check") && text.contains("Usage: t"), "{text}");
        let (code, text) = parse_from::<Tool>("t", &["check", "--help"]).unwrap_err();
        assert!(code == 0 && text.contains("be quiet"), "{text}");
        let (code, text) = parse_from::<Tool>("t", &["--version"]).unwrap_err();
        assert_eq!((code, text), (0, format!("t {}\n", env!("CARGO_PKG_VERSION"))));
        let (code, text) = parse_from::<Tool>("t", &["check", "a", "--bogus"]).unwrap_err();
        assert_eq!(code, USAGE);
        assert!(text.contains("--bogus") && text.contains("be quiet"), "{text}");
        let (code, text) = parse_from::<Tool>("t", &["nope"]).unwrap_err();
        assert!(code == USAGE && text.contains("Usage: t"), "{text}");
        // A value that looks like a flag goes after `--`.
        let Sub::Check(c) = parse_from::<Tool>("t", &["check", "--", "-x"]).unwrap().sub;
        assert_eq!(c.app, "-x");
    }
}
