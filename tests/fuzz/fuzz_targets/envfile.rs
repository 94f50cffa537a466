//! ENV parsing and expansion never panic; whatever parses renders back to
//! text that parses to the same values, or is refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use piku::envfile::{self, Env};

fuzz_target!(|text: &str| {
    let mut env = Env::new();
    if envfile::parse_into(&mut env, text, "ENV", true).is_err() {
        return;
    }
    if let Ok(rendered) = envfile::render(&env) {
        let mut back = Env::new();
        envfile::parse_into(&mut back, &rendered, "LIVE_ENV", false).expect("rendered ENV must parse");
        assert_eq!(back, env);
    }
});
