//! `logs`: the last lines of several log files, each prefixed with its name,
//! then (optionally) follow them, surviving rotation (uWSGI renames a full log
//! to `.old` and starts a new file). Control characters in a line are
//! escaped (output::printable): an app's log never drives the reader's terminal.

use fs_err as fs;
use fs_err::File;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

struct Followed {
    path: PathBuf,
    label: String,
    reader: Option<BufReader<File>>,
    inode: u64,
    partial: Vec<u8>,
}

/// Print the last `lines` lines of each file as `label | line`; then, when
/// `follow`, keep printing new lines until the reader goes away (EPIPE).
pub fn tail(files: Vec<(String, PathBuf)>, lines: usize, follow: bool) {
    tail_to(&mut std::io::stdout().lock(), files, lines, follow, &|| false);
}

/// `tail` into any writer, following until `stop()` says so (or a write fails).
pub fn tail_to(out: &mut impl Write, files: Vec<(String, PathBuf)>, lines: usize, follow: bool, stop: &dyn Fn() -> bool) {
    let width = files.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut followed = Vec::new();
    for (label, path) in files {
        let label = format!("{label:<width$}");
        let mut last = VecDeque::new();
        let mut f = Followed { path, label, reader: None, inode: 0, partial: Vec::new() };
        if let Ok(file) = File::open(&f.path) {
            f.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                if buf.ends_with(b"\n") {
                    last.push_back(crate::output::printable(String::from_utf8_lossy(&buf).trim_end()));
                    if last.len() > lines {
                        last.pop_front();
                    }
                    buf.clear();
                }
            }
            f.partial = buf;
            f.reader = Some(reader);
        }
        for line in last {
            if writeln!(out, "{} | {line}", f.label).is_err() {
                return;
            }
        }
        followed.push(f);
    }
    let _ = out.flush();
    while follow && !stop() {
        let mut any = false;
        for f in &mut followed {
            // Reopen when the file was rotated (another inode) or truncated.
            let meta = fs::metadata(&f.path).ok();
            let rotated = meta.as_ref().map(|m| m.ino() != f.inode).unwrap_or(false);
            let truncated = match (&mut f.reader, &meta) {
                (Some(r), Some(m)) => r.stream_position().map(|p| p > m.len()).unwrap_or(false),
                _ => false,
            };
            if f.reader.is_none() || rotated || truncated {
                if let Ok(file) = File::open(&f.path) {
                    f.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
                    let mut r = BufReader::new(file);
                    let _ = r.seek(SeekFrom::Start(0));
                    f.reader = Some(r);
                    f.partial.clear();
                }
            }
            let Some(reader) = f.reader.as_mut() else { continue };
            loop {
                match reader.read_until(b'\n', &mut f.partial) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if f.partial.ends_with(b"\n") => {
                        any = true;
                        let line = crate::output::printable(String::from_utf8_lossy(&f.partial).trim_end());
                        f.partial.clear();
                        if writeln!(out, "{} | {line}", f.label).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        if out.flush().is_err() {
            return;
        }
        if !any {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn control_characters_in_a_log_line_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("web.1.log");
        std::fs::write(&log, b"\x1b]0;pwned\x07\x1b[2Jcleared \xff\n").unwrap();
        let mut out = Vec::new();
        tail_to(&mut out, vec![("web.1".into(), log)], 10, false, &|| true);
        assert_eq!(String::from_utf8(out).unwrap(), "web.1 | \\x1b]0;pwned\\x07\\x1b[2Jcleared \u{fffd}\n");
    }

    #[test]
    fn follows_new_lines_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("web.1.log");
        std::fs::write(&log, "one\ntwo\nthree\n").unwrap();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, d, l) = (buf.clone(), done.clone(), log.clone());
        let t = std::thread::spawn(move || {
            tail_to(&mut Shared(b), vec![("web.1".into(), l)], 2, true, &|| d.load(std::sync::atomic::Ordering::SeqCst));
        });
        let text = || String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let wait_for = |needle: &str| {
            for _ in 0..100 {
                if text().contains(needle) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("{needle:?} never appeared in {:?}", text());
        };
        wait_for("web.1 | three\n");
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"four\n").unwrap();
        wait_for("web.1 | four\n");
        // uWSGI's rotation: the full log becomes .old, a new one starts.
        std::fs::rename(&log, dir.path().join("web.1.log.old")).unwrap();
        std::fs::write(&log, "after rotation\n").unwrap();
        wait_for("web.1 | after rotation\n");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        t.join().unwrap();
        assert!(text().starts_with("web.1 | two\nweb.1 | three\n"), "{}", text());
    }
}
