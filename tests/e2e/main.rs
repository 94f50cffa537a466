//! The end-to-end suite: real `git push` over real ssh into real nginx and
//! uWSGI, on 127.0.0.1, as root (it creates the user `pikue2e`).
//!
//!   cargo test --test e2e                    every case
//!   cargo test --test e2e -- python ssh      the cases whose name contains a word
//!   PIKU_E2E_REQUIRED=1   a machine that cannot run the suite is a failure (CI)
//!   PIKU_E2E_KEEP=1       keep the work dir /var/tmp/piku-e2e-<pid>/ afterwards
//!   PIKU_E2E_VERBOSE=1    print every command the cases run, and its output
//!
//! Its own harness (Cargo.toml: harness = false), so the daemons start and
//! stop once. A case that cannot run here is in one list, `CANNOT_RUN_HERE`,
//! with the reason, printed at the end of the run. Any other case that finds
//! it cannot run reports itself skipped, and under PIKU_E2E_REQUIRED=1 that
//! is a failure.

mod addon_cases;
mod bench;
mod build_cases;
mod cases;
mod more_cases;
mod nginx_cases;
mod security_cases;
mod fault_cases;
mod front_door_cases;
mod secret_cases;
mod worker_cases;
mod client;
mod crash_cases;
mod server;
mod load;
mod zero_cases;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A case that finds it cannot run on this machine (a toolchain is missing)
/// returns `Err(format!("{SKIPPED}<why>"))`: it is reported and counted as
/// skipped, never as passed, and under PIKU_E2E_REQUIRED=1 it fails the run.
pub const SKIPPED: &str = "skipped: ";

/// The cases that cannot run on a machine set up by .ci/run, and why. They
/// are not run, and are printed with their reason at the end of every run.
/// Nothing else may skip under PIKU_E2E_REQUIRED=1.
pub const CANNOT_RUN_HERE: &[(&str, &str)] = &[(
    "build_clojure_cli",
    "the Clojure CLI (deps.edn, -T:build) is not packaged in Debian 12 (its 'clojure' is a plain launcher), \
     and tools.build comes from Clojars and Maven Central, which CI does not reach",
)];

/// Why `case` cannot run here, if it is in `CANNOT_RUN_HERE`.
fn cannot_run_here(case: &str) -> Option<&'static str> {
    CANNOT_RUN_HERE.iter().find(|(name, _)| *name == case).map(|(_, why)| *why)
}

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

extern "C" fn on_signal(_: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<&cases::Case> =
        cases::ALL.iter().filter(|c| words.is_empty() || words.iter().any(|w| c.name.contains(w.as_str()))).collect();
    let required = std::env::var("PIKU_E2E_REQUIRED").is_ok_and(|v| v == "1");
    if let Some((name, _)) = CANNOT_RUN_HERE.iter().find(|(name, _)| !cases::ALL.iter().any(|c| c.name == *name)) {
        println!("e2e: CANNOT_RUN_HERE names '{name}', which is not a case (tests/e2e/cases.rs)");
        return ExitCode::FAILURE;
    }
    let (named, chosen): (Vec<&cases::Case>, Vec<&cases::Case>) = chosen.into_iter().partition(|c| cannot_run_here(c.name).is_some());

    let missing = server::missing_prerequisites();
    if !missing.is_empty() {
        let reason = missing.join(", ");
        if required {
            println!("e2e: PIKU_E2E_REQUIRED=1 but this machine cannot run the suite ({reason})");
            for case in &chosen {
                println!("test {} ... FAILED ({reason})", case.name);
            }
            summary(0, chosen.len(), 0, &named);
            return ExitCode::FAILURE;
        }
        for case in &chosen {
            println!("test {} ... skipped ({reason})", case.name);
        }
        summary(0, 0, chosen.len(), &named);
        return ExitCode::SUCCESS;
    }

    // Ctrl-C or a kill: finish the case at hand, skip the rest, tear down.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        signal(2, on_signal);
        signal(15, on_signal);
    }

    println!("e2e: setting up the server ({} cases)", chosen.len());
    let server = match catch_unwind(server::Server::start) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return setup_failed(&chosen, &named, &e),
        Err(_) => return setup_failed(&chosen, &named, "the set-up panicked"),
    };
    println!("e2e: sshd on 127.0.0.1:{}, nginx on 127.0.0.1:{}, work dir {}", server.ssh_port, server.http_port, server.work.display());

    // The add-ons' figures alone (also part of --bench): `-- --bench-addons`.
    if std::env::args().any(|a| a == "--bench-addons") {
        let result = addon_cases::bench(&server);
        drop(server);
        return match result {
            Ok(rows) => {
                println!("\n| measure | figure |\n|---|---|");
                for (k, v) in rows {
                    println!("| {k} | {v} |");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("bench failed: {e}");
                ExitCode::FAILURE
            }
        };
    }

    // tests/bench: the same server, measured instead of tested.
    if std::env::args().any(|a| a == "--bench") {
        let result = bench::run_all(&server);
        drop(server);
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("bench failed: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for case in &chosen {
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("test {} ... skipped (interrupted)", case.name);
            skipped += 1;
            continue;
        }
        let started = std::time::Instant::now();
        let result = match catch_unwind(AssertUnwindSafe(|| (case.run)(&server))) {
            Ok(r) => r,
            Err(panic) => Err(format!(
                "panicked: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
        };
        match result {
            Ok(()) => {
                println!("test {} ... ok ({:.1} s)", case.name, started.elapsed().as_secs_f64());
                passed += 1;
            }
            Err(e) if e.starts_with(SKIPPED) && !required => {
                println!("test {} ... skipped ({})", case.name, &e[SKIPPED.len()..]);
                skipped += 1;
            }
            Err(e) if e.starts_with(SKIPPED) => {
                println!("test {} ... FAILED (it skipped itself under PIKU_E2E_REQUIRED=1: {})", case.name, &e[SKIPPED.len()..]);
                println!("  only the cases in CANNOT_RUN_HERE (tests/e2e/main.rs) may be left out; install what it needs (.ci/run)");
                failed += 1;
            }
            Err(e) => {
                println!("test {} ... FAILED ({:.1} s)", case.name, started.elapsed().as_secs_f64());
                println!("{}", client::indent(&e));
                print!("{}", server.logs_for(case.app));
                failed += 1;
            }
        }
    }
    drop(server);
    summary(passed, failed, skipped, &named);
    if failed > 0 || INTERRUPTED.load(Ordering::SeqCst) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The server could not be set up: every case fails with the reason.
fn setup_failed(chosen: &[&cases::Case], named: &[&cases::Case], why: &str) -> ExitCode {
    println!("e2e: the server could not be set up:\n{}", client::indent(why));
    for case in chosen {
        println!("test {} ... FAILED (no server)", case.name);
    }
    summary(0, chosen.len(), 0, named);
    ExitCode::FAILURE
}

/// The last lines of a run: the counts, then each case of CANNOT_RUN_HERE
/// that was chosen, with its reason.
fn summary(passed: usize, failed: usize, skipped: usize, named: &[&cases::Case]) {
    println!("e2e: {passed} passed, {failed} failed, {skipped} skipped, {} cannot run here", named.len());
    for case in named {
        println!("e2e: cannot run here: {} ({})", case.name, cannot_run_here(case.name).unwrap_or_default());
    }
}
