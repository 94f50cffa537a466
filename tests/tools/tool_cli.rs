//! Every tool's command line (argh through piku::cli): `--help` on stdout,
//! exit 0, for the tool and each of its modes; a bogus flag is a usage error
//! on stderr, exit 2; `--version`; and the deploy hooks call only modes the
//! tools have.

use crate::harness::Server;

const TOOLS: [&str; 5] = ["piku-receive", "piku-build", "piku-config", "piku-uwsgi", "piku-nginx"];

/// The mode names a tool's help lists under "Commands:".
fn modes(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_tool_and_mode_prints_help_on_stdout_and_refuses_a_bogus_flag_with_exit_2() {
    let s = Server::new();
    for tool in TOOLS {
        let r = s.tool(tool, &["--help"]).ok();
        assert!(r.stdout.starts_with(&format!("Usage: {tool} <command>")) && r.stderr.is_empty(), "{tool} --help:\n{}{}", r.stdout, r.stderr);
        let modes = modes(&r.stdout);
        assert!(modes.len() >= 3, "{tool} --help lists its modes:\n{}", r.stdout);
        for mode in &modes {
            let r = s.tool(tool, &[mode, "--help"]).ok();
            assert!(r.stdout.starts_with(&format!("Usage: {tool} {mode}")), "{tool} {mode} --help:\n{}", r.stdout);
            assert!(r.stdout.contains("\nExamples:\n") && r.stderr.is_empty(), "{tool} {mode} --help has an example:\n{}", r.stdout);
            let r = s.tool(tool, &[mode, "--bogus"]).fails(2, "Unrecognized argument: --bogus");
            assert!(r.stderr.contains(&format!("Usage: {tool} {mode}")) && r.stdout.is_empty(), "{tool} {mode} --bogus:\n{}", r.stderr);
        }
        let r = s.tool(tool, &["--bogus"]).fails(2, &format!("Usage: {tool} <command>"));
        assert!(r.stdout.is_empty());
        s.tool(tool, &[]).fails(2, &format!("Usage: {tool} <command>"));
        s.tool(tool, &["no-such-mode", "x"]).fails(2, &format!("Usage: {tool} <command>"));
        let r = s.tool(tool, &["--version"]).ok();
        assert_eq!(r.stdout, format!("{tool} {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn a_config_key_spelled_help_is_data_not_a_help_request() {
    let s = Server::new();
    // `help` is not a help trigger: the key is looked up (the app does not exist).
    let r = s.tool("piku-config", &["get", "nosuchapp", "help"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn the_hooks_call_only_modes_the_tools_have() {
    let s = Server::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut calls = 0;
    for hook in ["hooks/post-receive", "hooks/pre-receive"] {
        let text = std::fs::read_to_string(format!("{root}/{hook}")).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == '(').filter(|w| !w.is_empty()).collect();
            for (i, w) in words.iter().enumerate() {
                let Some(tool) = TOOLS.iter().find(|t| *t == w) else { continue };
                let mode = words.get(i + 1).copied().unwrap_or("");
                let wanted: Vec<&str> = if mode == "\"$workers\"" { vec!["publish", "restart"] } else { vec![mode] };
                let help = s.tool(tool, &["--help"]).ok().stdout;
                for m in wanted {
                    assert!(modes(&help).iter().any(|have| have == m), "{hook} runs `{tool} {m}`, which {tool} does not have:\n{line}");
                    calls += 1;
                }
            }
        }
    }
    assert!(calls >= 12, "found only {calls} tool calls in the hooks");
}
