//! The load generator of the zero-downtime cases (and tests/bench): plain
//! TCP on loopback through nginx, four kinds of client at once, so a swap is
//! proven for the clients real sites have, not only for one connection per
//! GET:
//!
//! - one connection per request (`Connection: close`), several loops;
//! - a keep-alive client: one HTTP/1.1 connection for request after request
//!   (a connection the server closes while idle, before any byte of the next
//!   answer, is opened again and the request sent again, as browsers do;
//!   counted as a reconnect, not a failure);
//! - a slow sender: each request takes `SLOW` to send, a piece at a time;
//! - a slow reader: each answer is read over `SLOW`, a few bytes at a time.
//!
//! Each kind completes at least one request, so a run that claims a slow
//! client had one.

use crate::server::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a slow client takes to send a request, or to read an answer.
pub const SLOW: Duration = Duration::from_secs(5);
const PIECES: u32 = 10;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The kinds of client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    OnePerRequest,
    KeepAlive,
    SlowSend,
    SlowRead,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::OnePerRequest => "one connection per request",
            Client::KeepAlive => "keep-alive",
            Client::SlowSend => "slow sender",
            Client::SlowRead => "slow reader",
        }
    }
}

/// Counts of a load run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Load {
    pub ok: usize,
    pub http_5xx: usize,
    pub other_status: usize,
    pub conn_errors: usize,
    /// Requests made by each kind of client: one per request, keep-alive, slow sender, slow reader.
    pub by_client: [usize; 4],
    /// Keep-alive connections the server closed while idle, opened again.
    pub reconnects: usize,
}

impl Load {
    pub fn failed(&self) -> usize {
        self.http_5xx + self.other_status + self.conn_errors
    }
    fn add(&mut self, other: &Load) {
        self.ok += other.ok;
        self.http_5xx += other.http_5xx;
        self.other_status += other.other_status;
        self.conn_errors += other.conn_errors;
        for (mine, theirs) in self.by_client.iter_mut().zip(other.by_client) {
            *mine += theirs;
        }
        self.reconnects += other.reconnects;
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [one, keep, slow_send, slow_read] = self.by_client;
        write!(
            f,
            "{} requests: {} ok, {} failed ({} 5xx, {} other status, {} connection errors); \
             {one} one per connection, {keep} keep-alive ({} reconnects), {slow_send} sent slowly, {slow_read} read slowly",
            self.ok + self.failed(),
            self.ok,
            self.failed(),
            self.http_5xx,
            self.other_status,
            self.conn_errors,
            self.reconnects,
        )
    }
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    s.set_write_timeout(Some(IO_TIMEOUT)).ok();
    Ok(s)
}

fn get(host: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: piku-e2e-load\r\nConnection: {connection}\r\n\r\n")
}

/// The status code of an HTTP answer's first bytes.
fn status_of(answer: &[u8]) -> Result<u16, String> {
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not HTTP: {head:?}"))
}

/// One request on its own connection, sent and read at full speed.
pub fn request(port: u16, host: &str) -> Result<u16, String> {
    let mut s = connect(port)?;
    s.write_all(get(host, false).as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    status_of(&answer)
}

/// One request on its own connection, sent a piece at a time over `SLOW`.
fn slow_send(port: u16, host: &str) -> Result<u16, String> {
    let mut s = connect(port)?;
    let request = get(host, false);
    let bytes = request.as_bytes();
    let piece = bytes.len().div_ceil(PIECES as usize);
    for chunk in bytes.chunks(piece) {
        s.write_all(chunk).map_err(|e| format!("send (slowly): {e}"))?;
        s.flush().ok();
        std::thread::sleep(SLOW / PIECES);
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    status_of(&answer)
}

/// One request on its own connection, its answer read a few bytes at a time over `SLOW`.
fn slow_read(port: u16, host: &str) -> Result<u16, String> {
    let mut s = connect(port)?;
    s.write_all(get(host, false).as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8];
    for _ in 0..PIECES {
        std::thread::sleep(SLOW / PIECES);
        match s.read(&mut buf).map_err(|e| format!("read (slowly): {e}"))? {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    status_of(&answer)
}

/// A keep-alive connection: requests one after another on one connection.
struct KeepAlive {
    port: u16,
    conn: Option<TcpStream>,
    reconnects: usize,
}

enum Answer {
    Status(u16),
    /// The server closed the (reused) connection before any byte of the answer.
    ClosedWhileIdle,
}

impl KeepAlive {
    fn request(&mut self, host: &str) -> Result<u16, String> {
        let reused = self.conn.is_some();
        if !reused {
            self.conn = Some(connect(self.port)?);
        }
        match self.exchange(host) {
            Ok(Answer::Status(code)) => Ok(code),
            Ok(Answer::ClosedWhileIdle) if reused => {
                self.reconnects += 1;
                self.conn = Some(connect(self.port)?);
                match self.exchange(host)? {
                    Answer::Status(code) => Ok(code),
                    Answer::ClosedWhileIdle => Err("a new keep-alive connection was closed before an answer".into()),
                }
            }
            Ok(Answer::ClosedWhileIdle) => Err("a new keep-alive connection was closed before an answer".into()),
            Err(e) => Err(e),
        }
    }

    /// Send one request on the open connection and read one whole answer
    /// (Content-Length or chunked); the connection stays open unless the
    /// answer says `Connection: close`.
    fn exchange(&mut self, host: &str) -> Result<Answer, String> {
        let conn = self.conn.as_mut().expect("a connection");
        let result = (|| {
            if let Err(e) = conn.write_all(get(host, true).as_bytes()) {
                return if idle_close(&e) { Ok((Answer::ClosedWhileIdle, true)) } else { Err(format!("send: {e}")) };
            }
            let mut reader = Reader { conn, buf: Vec::new() };
            let head = match reader.until(b"\r\n\r\n") {
                Ok(head) => head,
                Err(ReadEnd::Closed(0)) => return Ok((Answer::ClosedWhileIdle, true)),
                Err(ReadEnd::Io(e, 0)) if idle_close(&e) => return Ok((Answer::ClosedWhileIdle, true)),
                Err(e) => return Err(format!("read the head: {e}")),
            };
            let code = status_of(&head)?;
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
            if let Some(len) = header("content-length:") {
                let len: usize = len.parse().map_err(|_| format!("bad Content-Length {len:?}"))?;
                reader.exactly(len).map_err(|e| format!("read the body: {e}"))?;
            } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
                loop {
                    let line = reader.until(b"\r\n").map_err(|e| format!("read a chunk size: {e}"))?;
                    let size = String::from_utf8_lossy(&line);
                    let size = size.trim().split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
                    reader.exactly(size + 2).map_err(|e| format!("read a chunk: {e}"))?;
                    if size == 0 {
                        break;
                    }
                }
            } else {
                return Err(format!("a keep-alive answer without a length: {head:?}"));
            }
            if !reader.buf.is_empty() {
                return Err(format!("{} bytes after the answer", reader.buf.len()));
            }
            Ok((Answer::Status(code), header("connection:").is_some_and(|v| v.contains("close"))))
        })();
        // The server ends the connection after this answer (`Connection: close`, as
        // nginx says after keepalive_requests): the next request opens a new one.
        let (result, said_close) = match result {
            Ok((answer, said_close)) => (Ok(answer), said_close),
            Err(e) => (Err(e), true),
        };
        let close = said_close || !matches!(result, Ok(Answer::Status(_)));
        if close {
            self.conn = None;
        }
        result
    }
}

fn idle_close(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof)
}

enum ReadEnd {
    /// The peer closed the connection after this many bytes of the answer.
    Closed(usize),
    Io(std::io::Error, usize),
    Bad(String),
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Closed(n) => write!(f, "the connection closed after {n} bytes"),
            ReadEnd::Io(e, n) => write!(f, "{e} after {n} bytes"),
            ReadEnd::Bad(why) => f.write_str(why),
        }
    }
}

/// Reads what one answer has, leaving the rest in `buf`.
struct Reader<'c> {
    conn: &'c mut TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    fn fill(&mut self, read_so_far: usize) -> Result<(), ReadEnd> {
        let mut chunk = [0u8; 4096];
        match self.conn.read(&mut chunk) {
            Ok(0) => Err(ReadEnd::Closed(read_so_far + self.buf.len())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(ReadEnd::Io(e, read_so_far + self.buf.len())),
        }
    }
    /// Bytes up to and with `end`.
    fn until(&mut self, end: &[u8]) -> Result<Vec<u8>, ReadEnd> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return Ok(self.buf.drain(..at + end.len()).collect());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ReadEnd::Bad("no end of line in 64 KiB".into()));
            }
            self.fill(0)?;
        }
    }
    fn exactly(&mut self, n: usize) -> Result<Vec<u8>, ReadEnd> {
        while self.buf.len() < n {
            self.fill(1)?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

/// Run `work` while clients of every kind send requests to `host` through
/// nginx: `threads` loops of one connection per request, plus one keep-alive
/// client, one slow sender and one slow reader. Bounded by `MAX_REQUESTS`
/// and `MAX_TIME` whatever `work` does. When `work` is done, the slow
/// clients end their request at hand, and the others stop after them; each
/// has made at least one request.
pub fn under_load<T>(s: &Server, host: &str, threads: usize, work: impl FnOnce() -> T) -> (T, Load, Vec<String>) {
    const MAX_REQUESTS: usize = 200_000;
    const MAX_TIME: Duration = Duration::from_secs(600);
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    // The fast loops go on until the slow clients have ended their request
    // at hand, so the load lasts past `work` (the drain of the workers it
    // replaced), for as long as a slow client needs.
    let slow_left = AtomicUsize::new(2);
    let started = Instant::now();
    let clients: Vec<Client> = std::iter::repeat_n(Client::OnePerRequest, threads).chain([Client::KeepAlive, Client::SlowSend, Client::SlowRead]).collect();
    std::thread::scope(|scope| {
        let loops: Vec<_> = clients
            .iter()
            .map(|&client| {
                let (stop, sent, slow_left) = (&stop, &sent, &slow_left);
                let slow = matches!(client, Client::SlowSend | Client::SlowRead);
                scope.spawn(move || {
                    let mut load = Load::default();
                    let mut samples = Vec::new();
                    let mut keep = KeepAlive { port: s.http_port, conn: None, reconnects: 0 };
                    loop {
                        let result = match client {
                            Client::OnePerRequest => request(s.http_port, host),
                            Client::KeepAlive => keep.request(host),
                            Client::SlowSend => slow_send(s.http_port, host),
                            Client::SlowRead => slow_read(s.http_port, host),
                        };
                        load.by_client[client as usize] += 1;
                        let what = match result {
                            Ok(200) => None,
                            Ok(code) if code >= 500 => {
                                load.http_5xx += 1;
                                Some(format!("HTTP {code}"))
                            }
                            Ok(code) => {
                                load.other_status += 1;
                                Some(format!("HTTP {code}"))
                            }
                            Err(e) => {
                                load.conn_errors += 1;
                                Some(e)
                            }
                        };
                        match what {
                            None => load.ok += 1,
                            Some(what) if samples.len() < 5 => {
                                samples.push(format!("{:.1} s, {}: {what}", started.elapsed().as_secs_f64(), client.name()))
                            }
                            Some(_) => {}
                        }
                        let done = stop.load(Ordering::SeqCst) && (slow || slow_left.load(Ordering::SeqCst) == 0);
                        if done || sent.fetch_add(1, Ordering::SeqCst) >= MAX_REQUESTS || started.elapsed() >= MAX_TIME {
                            break;
                        }
                    }
                    if slow {
                        slow_left.fetch_sub(1, Ordering::SeqCst);
                    }
                    load.reconnects = keep.reconnects;
                    (load, samples)
                })
            })
            .collect();
        let result = work();
        stop.store(true, Ordering::SeqCst);
        let mut total = Load::default();
        let mut samples = Vec::new();
        for l in loops {
            let (load, s) = l.join().unwrap_or_default();
            total.add(&load);
            samples.extend(s);
        }
        (result, total, samples)
    })
}
