//! What an app's nginx configuration may say, checked before root's nginx
//! reads it. nginx's master runs as root and opens some files itself (logs,
//! temporary and cache directories, certificates, includes, modules): an app
//! block that names such a path would make root write or hand over any file.
//! Every directive must be on an allowlist of ones that only shape how
//! requests are answered; the few that name paths root touches are allowed
//! only with the paths piku-nginx writes, and rewritten to the copies the
//! installer keeps where only root writes.

use crate::error::{Error, Result};
use std::net::IpAddr;
use std::path::{Component, Path};

/// Directives that only shape requests and responses (the workers, not
/// the root master, act on their arguments).
const ALLOWED: &[&str] = &[
    "server", "location", "if", "limit_except", "upstream", "server_name", "http2", "keepalive", "return", "rewrite", "set",
    "root", "alias", "try_files", "index", "autoindex", "error_page", "internal", "default_type", "charset", "expires", "etag",
    "add_header", "allow", "deny", "client_max_body_size", "client_body_timeout", "send_timeout", "keepalive_timeout",
    "sendfile", "sendfile_max_chunk", "tcp_nopush", "tcp_nodelay", "directio", "aio", "gzip", "gzip_proxied", "gzip_types",
    "gzip_comp_level", "gzip_min_length", "gzip_vary", "gzip_disable", "gzip_static", "proxy_pass", "proxy_http_version",
    "proxy_set_header", "proxy_hide_header", "proxy_pass_header", "proxy_redirect", "proxy_buffering", "proxy_buffer_size",
    "proxy_buffers", "proxy_read_timeout", "proxy_send_timeout", "proxy_connect_timeout", "proxy_intercept_errors",
    "proxy_next_upstream", "proxy_cache", "proxy_cache_key", "proxy_cache_min_uses", "proxy_cache_valid", "proxy_cache_use_stale",
    "proxy_cache_bypass", "proxy_no_cache", "proxy_cache_methods", "proxy_cache_lock", "proxy_ignore_headers", "uwsgi_pass",
    "uwsgi_param", "uwsgi_hide_header", "uwsgi_pass_header", "uwsgi_read_timeout", "uwsgi_send_timeout", "uwsgi_buffering",
    "uwsgi_intercept_errors", "uwsgi_cache", "uwsgi_cache_key", "uwsgi_cache_min_uses", "uwsgi_cache_valid",
    "uwsgi_cache_use_stale", "uwsgi_cache_bypass", "uwsgi_no_cache", "uwsgi_ignore_headers",
    // Checked below: they name paths or sockets root's nginx opens.
    "listen", "ssl_certificate", "ssl_certificate_key", "proxy_cache_path", "uwsgi_cache_path",
];

/// What the installer allows for one app's configuration.
pub struct Policy<'a> {
    /// The piku user's root (`~piku/.piku`), where piku-nginx writes.
    pub piku_root: &'a Path,
    /// Ports a block may listen on; empty: any.
    pub ports: &'a [u16],
    /// The server's owner turned raw configuration on: nothing is checked.
    pub raw: bool,
}

/// A directive whose paths must be replaced by the installer's copies.
#[derive(Debug, PartialEq)]
pub enum Rewrite {
    /// `ssl_certificate` / `ssl_certificate_key` of the app: `nginx/<app>.crt|key`.
    Certificate { ext: &'static str },
    /// A cache directory: `cache/<app>` and what follows it (`""`, `"v2"`).
    Cache { within: String },
}

/// One word of the configuration, as written (quotes kept), and its line.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

/// The configuration `text` of `app`, checked, with the paths root touches
/// given to `rewrite` (which returns the path to write instead).
pub fn check(app: &str, text: &str, policy: &Policy, rewrite: &mut dyn FnMut(Rewrite) -> Result<String>) -> Result<String> {
    if policy.raw {
        return Ok(text.to_string());
    }
    let tokens = tokenize(app, text)?;
    let mut out = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.text == "}" {
            depth = depth.checked_sub(1).ok_or_else(|| refuse(app, t.line, "an unmatched '}'"))?;
            out.push_str(&"  ".repeat(depth));
            out.push_str("}\n");
            i += 1;
            continue;
        }
        // A directive: words up to ';' or '{'.
        let start = i;
        while i < tokens.len() && tokens[i].text != ";" && tokens[i].text != "{" && tokens[i].text != "}" {
            i += 1;
        }
        let Some(end) = tokens.get(i).filter(|e| e.text != "}") else { return Err(refuse(app, t.line, "a directive without ';'")) };
        let mut words: Vec<String> = tokens[start..i].iter().map(|t| t.text.clone()).collect();
        let name = words.first().cloned().ok_or_else(|| refuse(app, end.line, "an empty directive"))?;
        if !ALLOWED.contains(&name.as_str()) {
            return Err(refuse(app, t.line, &format!("the directive '{name}', which piku does not allow in an app's configuration")));
        }
        check_args(app, t.line, &mut words, policy, rewrite)?;
        out.push_str(&"  ".repeat(depth));
        out.push_str(&words.join(" "));
        if end.text == "{" {
            out.push_str(" {\n");
            depth += 1;
        } else {
            out.push_str(";\n");
        }
        i += 1;
    }
    if depth != 0 {
        return Err(refuse(app, tokens.last().map_or(1, |t| t.line), "a '{' that is never closed"));
    }
    Ok(out)
}

fn refuse(app: &str, line: usize, what: &str) -> Error {
    Error::new(format!("the nginx configuration of '{app}' has {what} (line {line}); it was not installed"))
}

/// The arguments of the directives that name what root's nginx opens.
fn check_args(app: &str, line: usize, words: &mut [String], policy: &Policy, rewrite: &mut dyn FnMut(Rewrite) -> Result<String>) -> Result<()> {
    let own = |sub: &str, name: &str| policy.piku_root.join(sub).join(name);
    match words[0].as_str() {
        "listen" => {
            let addr = words.get(1).map(String::as_str).unwrap_or("");
            let port = match addr.rsplit_once(':') {
                Some((host, port)) => {
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    if bare != "*" && bare.parse::<IpAddr>().is_err() {
                        return Err(refuse(app, line, &format!("'listen {addr}', which is not an IP address and port")));
                    }
                    port
                }
                None => addr,
            };
            let port: u16 = port.parse().map_err(|_| refuse(app, line, &format!("'listen {addr}', which is not an IP address and port")))?;
            if !policy.ports.is_empty() && !policy.ports.contains(&port) {
                return Err(refuse(app, line, &format!("'listen {addr}': port {port} is not one of nginx's ports here")));
            }
            if let Some(flag) = words[2..].iter().find(|w| !matches!(w.as_str(), "ssl" | "http2")) {
                return Err(refuse(app, line, &format!("'listen ... {flag}'; only 'ssl' and 'http2' are allowed")));
            }
        }
        "ssl_certificate" | "ssl_certificate_key" => {
            let ext = if words[0] == "ssl_certificate" { "crt" } else { "key" };
            if words.len() != 2 || Path::new(&words[1]) != own("nginx", &format!("{app}.{ext}")) {
                return Err(refuse(app, line, &format!("'{}', which is not the app's own {}", words.join(" "), own("nginx", &format!("{app}.{ext}")).display())));
            }
            words[1] = rewrite(Rewrite::Certificate { ext })?;
        }
        "proxy_cache_path" | "uwsgi_cache_path" => {
            let base = own("cache", app);
            let path = Path::new(words.get(1).map(String::as_str).unwrap_or(""));
            let clean = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            let within = path.strip_prefix(&base).ok().filter(|_| clean && path.is_absolute());
            let Some(within) = within else {
                return Err(refuse(app, line, &format!("'{} {}', outside {}", words[0], path.display(), base.display())));
            };
            if let Some(bad) = words[2..].iter().find(|w| !(w.starts_with("levels=") || w.starts_with("keys_zone=") || w.starts_with("inactive=") || w.starts_with("max_size=") || *w == "use_temp_path=off")) {
                return Err(refuse(app, line, &format!("'{} ... {bad}', which piku does not allow", words[0])));
            }
            words[1] = rewrite(Rewrite::Cache { within: within.display().to_string() })?;
        }
        _ => {}
    }
    Ok(())
}

/// nginx's words: blanks separate, `;` `{` `}` stand alone, `#` starts a
/// comment, quotes group (backslash escapes inside).
fn tokenize(app: &str, text: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                tokens.push(Token { text: c.to_string(), line });
                chars.next();
            }
            _ => {
                let mut word = String::new();
                let start = line;
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}') {
                        break;
                    }
                    if c == '"' || c == '\'' {
                        word.push(c);
                        chars.next();
                        loop {
                            let Some(q) = chars.next() else { return Err(refuse(app, start, "an unclosed quote")) };
                            if q == '\n' {
                                line += 1;
                            }
                            word.push(q);
                            if q == '\\' {
                                if let Some(e) = chars.next() {
                                    word.push(e);
                                }
                            } else if q == c {
                                break;
                            }
                        }
                        continue;
                    }
                    if c == '\\' {
                        word.push(c);
                        chars.next();
                        if let Some(e) = chars.next() {
                            word.push(e);
                        }
                        continue;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token { text: word, line: start });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(raw: bool) -> Policy<'static> {
        Policy { piku_root: Path::new("/home/piku/.piku"), ports: &[80, 443], raw }
    }

    fn run(text: &str) -> Result<String> {
        check("shop", text, &policy(false), &mut |r| {
            Ok(match r {
                Rewrite::Certificate { ext } => format!("/var/lib/piku/nginx/shop.{ext}"),
                Rewrite::Cache { within } => format!("/var/cache/piku/shop/{within}"),
            })
        })
    }

    #[test]
    fn the_rendered_template_passes_with_its_paths_rewritten() {
        let conf = "proxy_cache_path /home/piku/.piku/cache/shop levels=1:2 keys_zone=piku_shop_1:20m inactive=60s max_size=1g use_temp_path=off;\n\
            upstream piku_shop { server 127.0.0.1:5000; }\n\
            server {\n  listen 0.0.0.0:80;\n  listen [::]:443 ssl http2;\n  server_name shop.test;\n\
            ssl_certificate /home/piku/.piku/nginx/shop.crt;\n  ssl_certificate_key /home/piku/.piku/nginx/shop.key;\n\
            # a comment; with { braces }\n  gzip_disable \"MSIE [1-6]\\.(?!.*SV1)\";\n\
            location ~* ^/(api|static\\.v2) { proxy_cache piku_shop_1; add_header X-Cache $upstream_cache_status; proxy_pass http://piku_shop; }\n\
            location = /x { return 200 \"a;b {c}\\n\"; }\n}\n";
        let out = run(conf).unwrap();
        assert!(out.starts_with("proxy_cache_path /var/cache/piku/shop/ levels=1:2"), "{out}");
        assert!(out.contains("ssl_certificate /var/lib/piku/nginx/shop.crt;\n") && out.contains("ssl_certificate_key /var/lib/piku/nginx/shop.key;\n"), "{out}");
        assert!(out.contains("return 200 \"a;b {c}\\n\";") && out.contains("gzip_disable \"MSIE [1-6]\\.(?!.*SV1)\";"), "{out}");
        assert!(!out.contains("comment"));
    }

    #[test]
    fn what_root_would_open_is_refused() {
        for (bad, why) in [
            ("access_log /etc/cron.d/x;", "the directive 'access_log'"),
            ("server { error_log /root/x; }", "the directive 'error_log'"),
            ("client_body_temp_path /etc/x;", "the directive 'client_body_temp_path'"),
            ("include /etc/shadow;", "the directive 'include'"),
            ("load_module /tmp/x.so;", "the directive 'load_module'"),
            ("proxy_cache_path /etc levels=1:2 keys_zone=z:1m;", "outside /home/piku/.piku/cache/shop"),
            ("proxy_cache_path /home/piku/.piku/cache/other keys_zone=z:1m;", "outside"),
            ("proxy_cache_path /home/piku/.piku/cache/shop/../../x keys_zone=z:1m;", "outside"),
            ("proxy_cache_path /home/piku/.piku/cache/shop keys_zone=z:1m manager_files=1;", "manager_files=1"),
            ("server { ssl_certificate_key /etc/ssl/private/other.key; }", "not the app's own"),
            ("server { listen unix:/etc/x; }", "not an IP address"),
            ("server { listen 127.0.0.1:22; }", "port 22"),
            ("server { listen 80 default_server; }", "default_server"),
            ("server { ", "never closed"),
            ("}", "unmatched"),
            ("server { return 200 \"x; }", "unclosed quote"),
            ("server { listen 80 }", "without ';'"),
        ] {
            let e = run(bad).unwrap_err();
            assert!(e.message.starts_with("the nginx configuration of 'shop' has ") && e.message.contains(why), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn raw_configuration_is_the_owners_choice() {
        let text = "access_log /var/log/x;\n";
        assert_eq!(check("shop", text, &policy(true), &mut |_| unreachable!()).unwrap(), text);
    }
}
