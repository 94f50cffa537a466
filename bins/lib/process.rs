//! Child processes: argv, never `sh -c` with formatted strings (only command
//! lines the user wrote, such as Procfile entries, go through a shell).

use crate::error::{Error, Result};
use crate::output;
use fs_err as fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Run `cmd`, streaming its stdout and stderr to our stderr as indented detail
/// lines as they arrive. Fails with `what` in the message when it exits non-zero.
pub fn run_streamed(cmd: &mut Command, what: &str) -> Result<()> {
    let (reader, writer) = std::io::pipe().map_err(|e| Error::new(format!("{what}: could not create a pipe: {e}")))?;
    let writer2 = writer.try_clone().map_err(|e| Error::new(format!("{what}: {e}")))?;
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let mut child = cmd.spawn().map_err(|e| spawn_error(cmd, what, e))?;
    // Drop our copies of the write end so the reader sees EOF when the child exits.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut last = std::collections::VecDeque::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                // A carriage-return progress bar would garble `remote:` lines: keep its last frame.
                let line = line.trim_end_matches(['\n', '\r']);
                let line = line.rsplit('\r').next().unwrap_or("");
                output::detail(line);
                last.push_back(line.to_string());
                if last.len() > 5 {
                    last.pop_front();
                }
            }
        }
    }
    let status = child.wait().map_err(|e| Error::new(format!("{what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("{what} failed ({})", describe_status(status))))
    }
}

/// Run `cmd` quietly, returning its stdout; on failure the error carries its stderr.
pub fn run_captured(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| spawn_error(cmd, what, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() { stdout } else { stderr };
        Err(Error::new(format!("{what} failed ({}):\n{}", describe_status(out.status), text.trim_end())))
    }
}

pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

fn spawn_error(cmd: &Command, what: &str, e: std::io::Error) -> Error {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::new(format!("{what}: '{prog}' was not found; is it installed and on PATH?"))
    } else {
        Error::new(format!("{what}: could not run '{prog}': {e}"))
    }
}

/// Is `program` on PATH (or an existing path)?
/// Every process this user can see: its pid and raw cmdline (the title a
/// daemon such as uWSGI or nginx sets). Read from /proc; empty elsewhere.
pub fn cmdlines() -> Vec<(u32, Vec<u8>)> {
    let Ok(procs) = fs::read_dir("/proc") else { return vec![] };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse().ok()?;
            Some((pid, fs::read(p.path().join("cmdline")).ok()?))
        })
        .collect()
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_failure_reports_exit_code() {
        let err = run_streamed(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), "the task").unwrap_err();
        assert_eq!(err.message, "the task failed (exit code 3)");
    }

    #[test]
    fn missing_program_is_named() {
        let err = run_captured(&mut Command::new("no-such-program-piku"), "building").unwrap_err();
        assert!(err.message.contains("'no-such-program-piku' was not found"), "{}", err.message);
    }

    #[test]
    fn captured_output_and_which() {
        assert_eq!(run_captured(Command::new("echo").arg("hi"), "echo").unwrap(), "hi\n");
        assert!(which("sh").is_some());
        assert!(which("no-such-program-piku").is_none());
    }
}
