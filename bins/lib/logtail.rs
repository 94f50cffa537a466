//! `logs`: the last lines of several log files, each prefixed with its name,
//! then (optionally) follow them, surviving rotation (uWSGI renames a full log
//! to `.old` and starts a new file).

use std::collections::VecDeque;
use std::fs::File;
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
    let width = files.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
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
                    last.push_back(String::from_utf8_lossy(&buf).trim_end().to_string());
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
    while follow {
        let mut any = false;
        for f in &mut followed {
            // Reopen when the file was rotated (another inode) or truncated.
            let meta = std::fs::metadata(&f.path).ok();
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
                        let line = String::from_utf8_lossy(&f.partial).trim_end().to_string();
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
