//! Health checks: is a new web worker answering HTTP yet? Over TCP (an HTTP
//! request to BIND_ADDRESS:PORT) or over a uWSGI socket (a request in the
//! uwsgi protocol, which nginx speaks to wsgi workers). Plain std, no client
//! library: one request, the status line of the answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Where a worker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(String, u16),
    UwsgiSocket(std::path::PathBuf),
    /// HTTP over a unix socket (uWSGI's rawrouter in front of a worker's port).
    HttpSocket(std::path::PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(h, p) if h.contains(':') => write!(f, "[{h}]:{p}"),
            Target::Tcp(h, p) => write!(f, "{h}:{p}"),
            Target::UwsgiSocket(p) | Target::HttpSocket(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What the worker must answer: with a path, a 2xx or 3xx; without, any
/// HTTP status below 500 for `/`.
#[derive(Debug, Clone)]
pub struct Check {
    pub path: Option<String>,
    pub host: String,
}

impl Check {
    pub fn request_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    pub fn accepts(&self, status: u16) -> bool {
        match self.path {
            Some(_) => (200..400).contains(&status),
            None => (100..500).contains(&status),
        }
    }
}

/// The address a worker bound to, as a client reaches it (a wildcard bind
/// answers on loopback).
pub fn tcp_target(bind: &str, port: u16) -> Target {
    let host = bind.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" | "0.0.0.0" | "*" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    Target::Tcp(host.to_string(), port)
}

/// One attempt: connect, ask, read the status. Err says what happened.
pub fn probe(target: &Target, check: &Check, timeout: Duration) -> Result<u16, String> {
    match target {
        Target::Tcp(host, port) => {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))
                .map_err(|e| format!("cannot resolve {target}: {e}"))?
                .next()
                .ok_or_else(|| format!("no address for {target}"))?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("no connection to {target}: {e}"))?;
            s.set_read_timeout(Some(timeout)).ok();
            s.set_write_timeout(Some(timeout)).ok();
            s.write_all(http_request(check).as_bytes()).map_err(|e| format!("{target}: cannot send the request: {e}"))?;
            read_status(&mut s, target)
        }
        Target::HttpSocket(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("no connection to {target}: {e}"))?;
            s.set_read_timeout(Some(timeout)).ok();
            s.set_write_timeout(Some(timeout)).ok();
            s.write_all(http_request(check).as_bytes()).map_err(|e| format!("{target}: cannot send the request: {e}"))?;
            read_status(&mut s, target)
        }
        Target::UwsgiSocket(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("no connection to {target}: {e}"))?;
            s.set_read_timeout(Some(timeout)).ok();
            s.set_write_timeout(Some(timeout)).ok();
            s.write_all(&uwsgi_request(check)).map_err(|e| format!("{target}: cannot send the request: {e}"))?;
            read_status(&mut s, target)
        }
    }
}

fn http_request(check: &Check) -> String {
    format!("GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: piku-healthcheck\r\nConnection: close\r\n\r\n", check.request_path(), check.host)
}

/// Probe until the worker answers as `check` wants or `deadline` passes;
/// the error is what the last attempt found.
pub fn wait_healthy(target: &Target, check: &Check, deadline: Instant) -> Result<u16, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match probe(target, check, left.clamp(Duration::from_millis(200), Duration::from_secs(5))) {
            Ok(status) if check.accepts(status) => return Ok(status),
            Ok(status) => format!("{target} answered {} with HTTP {status}", check.request_path()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        // A new worker answers within a few hundred ms of starting: poll often.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Nothing accepts connections on a TCP target (its previous owner is gone).
pub fn is_free(target: &Target) -> bool {
    match target {
        Target::Tcp(..) => probe_connect(target).is_err(),
        Target::UwsgiSocket(p) | Target::HttpSocket(p) => std::os::unix::net::UnixStream::connect(p).is_err(),
    }
}

fn probe_connect(target: &Target) -> Result<(), String> {
    let Target::Tcp(host, port) = target else { return Ok(()) };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port)).map_err(|e| e.to_string())?.next().ok_or("no address")?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map(|_| ()).map_err(|e| e.to_string())
}

fn read_status(s: &mut impl Read, target: &Target) -> Result<u16, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{target} did not answer: {e}")),
        }
    }
    parse_status(&buf).ok_or_else(|| {
        if buf.is_empty() {
            format!("{target} closed the connection without an answer")
        } else {
            format!("{target} answered something other than HTTP: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(60)]))
        }
    })
}

/// The status of `HTTP/1.x NNN ...`.
pub fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// A GET in the uwsgi protocol: a 4-byte header (modifier1 0, the size of
/// the variables as u16 little-endian, modifier2 0), then each variable as
/// u16 length + key, u16 length + value.
pub fn uwsgi_request(check: &Check) -> Vec<u8> {
    let full = check.request_path();
    let (path, query) = full.split_once('?').unwrap_or((full, ""));
    let vars = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", full),
        ("PATH_INFO", path),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.0"),
        ("SERVER_NAME", check.host.as_str()),
        ("SERVER_PORT", "80"),
        ("HTTP_HOST", check.host.as_str()),
        ("HTTP_USER_AGENT", "piku-healthcheck"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("UWSGI_SCHEME", "http"),
    ];
    let mut body = Vec::new();
    for (k, v) in vars {
        for part in [k, v] {
            body.extend_from_slice(&(part.len() as u16).to_le_bytes());
            body.extend_from_slice(part.as_bytes());
        }
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.push(0);
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(listener: TcpListener, answer: &'static str) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            c.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    }

    #[test]
    fn statuses_are_judged_by_the_check() {
        let any = Check { path: None, host: "h".into() };
        let path = Check { path: Some("/healthz".into()), host: "h".into() };
        assert!(any.accepts(404) && any.accepts(200) && !any.accepts(500) && !any.accepts(503));
        assert!(path.accepts(200) && path.accepts(302) && !path.accepts(404) && !path.accepts(500));
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    #[test]
    fn a_tcp_worker_is_asked_over_http() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = serve_once(l, "HTTP/1.0 503 Service Unavailable\r\n\r\n");
        let check = Check { path: Some("/healthz".into()), host: "app.example.test".into() };
        let target = tcp_target("0.0.0.0", port);
        assert_eq!(probe(&target, &check, Duration::from_secs(2)), Ok(503));
        let request = seen.join().unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.0\r\nHost: app.example.test\r\n"), "{request}");
        // Nothing listens any more: the wait gives up at the deadline with the reason.
        let err = wait_healthy(&target, &check, Instant::now() + Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("no connection"), "{err}");
        assert!(is_free(&target));
    }

    #[test]
    fn a_uwsgi_socket_is_asked_in_its_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("app.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut head = [0u8; 4];
            c.read_exact(&mut head).unwrap();
            let size = u16::from_le_bytes([head[1], head[2]]) as usize;
            let mut vars = vec![0u8; size];
            c.read_exact(&mut vars).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\n\r\nok").unwrap();
            vars
        });
        let check = Check { path: Some("/healthz?full=1".into()), host: "h".into() };
        assert_eq!(probe(&Target::UwsgiSocket(sock), &check, Duration::from_secs(2)), Ok(200));
        let vars = t.join().unwrap();
        let text = String::from_utf8_lossy(&vars);
        assert!(text.contains("PATH_INFO") && text.contains("/healthz") && text.contains("full=1"), "{text}");
    }
}
