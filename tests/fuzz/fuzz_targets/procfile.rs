//! Procfile parsing never panics; what it accepts is well formed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use piku::procfile::{Procfile, parse_cron};

fuzz_target!(|text: &str| {
    let Ok(pf) = Procfile::parse(text, "Procfile") else { return };
    for e in &pf.entries {
        assert!(!e.kind.is_empty() && e.kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert!(!e.command.is_empty() && !e.command.contains('\n') && !e.command.contains('\0'));
        if e.kind.starts_with("cron") {
            let spec = parse_cron(&e.command).expect("accepted cron lines convert");
            assert!(!spec.contains('\n'));
        }
    }
});
