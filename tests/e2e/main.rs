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
//! stop once, and a case that cannot run is reported as skipped.

mod bench;
mod build_cases;
mod cases;
mod more_cases;
mod nginx_cases;
mod fault_cases;
mod secret_cases;
mod worker_cases;
mod client;
mod server;
mod zero_cases;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A case that cannot run on this machine (a toolchain is missing or needs a
/// network it cannot reach) returns `Err(format!("{SKIPPED}<why>"))`: it is
/// reported and counted as skipped, never as passed.
pub const SKIPPED: &str = "skipped: ";

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

    let missing = server::missing_prerequisites();
    if !missing.is_empty() {
        let reason = missing.join(", ");
        if required {
            println!("e2e: PIKU_E2E_REQUIRED=1 but this machine cannot run the suite ({reason})");
            for case in &chosen {
                println!("test {} ... FAILED ({reason})", case.name);
            }
            println!("e2e: 0 passed, {} failed, 0 skipped", chosen.len());
            return ExitCode::FAILURE;
        }
        for case in &chosen {
            println!("test {} ... skipped ({reason})", case.name);
        }
        println!("e2e: 0 passed, 0 failed, {} skipped", chosen.len());
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
        Ok(Err(e)) => return setup_failed(&chosen, &e),
        Err(_) => return setup_failed(&chosen, "the set-up panicked"),
    };
    println!("e2e: sshd on 127.0.0.1:{}, nginx on 127.0.0.1:{}, work dir {}", server.ssh_port, server.http_port, server.work.display());

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
            Err(e) if e.starts_with(SKIPPED) => {
                println!("test {} ... skipped ({})", case.name, &e[SKIPPED.len()..]);
                skipped += 1;
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
    println!("e2e: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 || INTERRUPTED.load(Ordering::SeqCst) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The server could not be set up: every case fails with the reason.
fn setup_failed(chosen: &[&cases::Case], why: &str) -> ExitCode {
    println!("e2e: the server could not be set up:\n{}", client::indent(why));
    for case in chosen {
        println!("test {} ... FAILED (no server)", case.name);
    }
    println!("e2e: 0 passed, {} failed, 0 skipped", chosen.len());
    ExitCode::FAILURE
}
