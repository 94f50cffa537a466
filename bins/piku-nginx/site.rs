//! The app's server block: every NGINX_* option of its environment, checked
//! (a value that would become nginx syntax is refused, naming the variable)
//! and rendered from share/nginx/app.conf.j2.

use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::procfile::Procfile;
use piku::release::Release;
use piku::scaling;
use piku::settings::Settings;
use piku::{AppName, Root, syntax, templates};
use serde::Serialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const APP_TEMPLATE: &str = include_str!("../../share/nginx/app.conf.j2");
/// Cloudflare's published ranges as shipped; `piku-nginx refresh-cloudflare`
/// keeps a newer copy in cache/cloudflare-ips.txt.
pub const CLOUDFLARE_IPS: &str = include_str!("../../share/nginx/cloudflare-ips.txt");

/// How the installed nginx spells HTTP/2 (from `nginx -V`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Http2 {
    /// Unknown version or no http_v2 module: HTTP/1.1 only.
    Off,
    /// Before 1.25.1: `listen ... ssl http2;`
    Listen,
    /// 1.25.1 and later: `http2 on;`
    Directive,
}

/// The names in NGINX_SERVER_NAME (comma or space separated), checked; None when unset.
pub fn server_names(env: &Env) -> Result<Option<Vec<String>>> {
    let Some(raw) = env.get("NGINX_SERVER_NAME").filter(|n| !n.trim().is_empty()) else { return Ok(None) };
    if raw.contains(['\n', '\r']) {
        return Err(Error::new("NGINX_SERVER_NAME contains a line break, which nginx would read as configuration syntax; remove it"));
    }
    let mut names: Vec<String> = Vec::new();
    for n in raw.split([',', ' ', '\t']).filter(|n| !n.is_empty()) {
        let n = syntax::nginx_word("NGINX_SERVER_NAME", n)?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(Some(names))
}

#[derive(Serialize)]
struct StaticPath {
    url: String,
    path: String,
}

#[derive(Serialize)]
struct Upstream {
    name: String,
    servers: Vec<String>,
    uwsgi: bool,
}

#[derive(Serialize)]
struct Cache {
    path: String,
    zone: String,
    size: u64,
    time: u64,
    redirects: u64,
    any: u64,
    control: u64,
    expiry: u64,
}

#[derive(Serialize)]
struct Location {
    pattern: String,
    cache: bool,
}

#[derive(Serialize)]
struct AppCtx {
    app: String,
    server_names: String,
    listen_http: Vec<String>,
    listen_https: Vec<String>,
    http2_on: bool,
    https_only: bool,
    https_port_suffix: String,
    certificate: String,
    certificate_key: String,
    acme_root: String,
    block_git: bool,
    static_paths: Vec<StaticPath>,
    catch_all: String,
    upstream: Option<Upstream>,
    pass: &'static str,
    cache: Option<Cache>,
    locations: Vec<Location>,
    acl: Vec<String>,
    remote_addr: &'static str,
    include: String,
}

/// Where the certificate nginx serves for the app lives.
pub struct CertFiles {
    pub crt: PathBuf,
    pub key: PathBuf,
}

/// Everything render needs besides the app's own files.
pub struct Front<'a> {
    pub root: &'a Root,
    pub settings: &'a Settings,
    pub http2: Http2,
}

impl Front<'_> {
    pub fn port(&self, key: &str, default: &str) -> Result<u16> {
        let v = self.settings.get_or(key, default);
        v.parse::<u16>().map_err(|_| Error::new(format!("{key} in {} must be a port number, not {v:?}", self.root.settings_file().display())))
    }

    /// The app's server block for release `rel` with environment `env`.
    pub fn render(&self, rel: &Release, env: &Env, names: &[String], cert: &CertFiles) -> Result<String> {
        let (root, app) = (self.root, &rel.app);
        let procfile = rel.procfile()?;
        let http_port = self.port("NGINX_HTTP_PORT", "80")?;
        let https_port = self.port("NGINX_HTTPS_PORT", "443")?;

        let mut addresses = Vec::new();
        let ipv6 = match env.get("NGINX_IPV6_ADDRESS") {
            Some(v6) if !envfile::flag(env, "DISABLE_IPV6", false) && host_has_ipv6() => {
                addresses.push(syntax::nginx_word("NGINX_IPV6_ADDRESS", v6)?);
                true
            }
            _ => false,
        };
        let v4 = env.get("NGINX_IPV4_ADDRESS").map(String::as_str).unwrap_or("0.0.0.0");
        addresses.push(syntax::nginx_word("NGINX_IPV4_ADDRESS", v4)?);
        let ssl = if self.http2 == Http2::Listen { "ssl http2" } else { "ssl" };

        let upstream = upstream(root, app, &procfile, env)?;
        let pass = if upstream.as_ref().is_some_and(|u| u.uwsgi) { "uwsgi" } else { "proxy" };
        let cache = cache(root, app, env)?;
        let mut locations = Vec::new();
        if let (Some(prefixes), Some(_)) = (cache_prefixes(env)?, &cache) {
            locations.push(Location { pattern: format!("~* ^/({prefixes})"), cache: true });
        }
        locations.push(Location { pattern: "/".into(), cache: false });
        let cloudflare = envfile::flag(env, "NGINX_CLOUDFLARE_ACL", false);

        let ctx = AppCtx {
            app: app.to_string(),
            server_names: names.join(" "),
            listen_http: addresses.iter().map(|a| format!("{a}:{http_port}")).collect(),
            listen_https: addresses.iter().map(|a| format!("{a}:{https_port} {ssl}")).collect(),
            http2_on: self.http2 == Http2::Directive,
            https_only: envfile::flag(env, "NGINX_HTTPS_ONLY", false),
            https_port_suffix: if https_port == 443 { String::new() } else { format!(":{https_port}") },
            certificate: cert.crt.display().to_string(),
            certificate_key: cert.key.display().to_string(),
            acme_root: root.dir("acme").display().to_string(),
            block_git: !envfile::flag(env, "NGINX_ALLOW_GIT_FOLDERS", false),
            static_paths: static_paths(root, app, &procfile, env)?,
            catch_all: match env.get("NGINX_CATCH_ALL").filter(|c| !c.is_empty()) {
                Some(c) => format!("{} ", syntax::nginx_word("NGINX_CATCH_ALL", c)?),
                None => String::new(),
            },
            upstream,
            pass,
            cache: if locations.len() > 1 { cache } else { None },
            locations,
            acl: if cloudflare { cloudflare_acl(root, ipv6)? } else { Vec::new() },
            remote_addr: if cloudflare { "$http_cf_connecting_ip" } else { "$remote_addr" },
            include: include_file(rel, env)?,
        };
        templates::render(root, "app.conf.j2", APP_TEMPLATE, &ctx)
    }
}

fn host_has_ipv6() -> bool {
    fs::read_to_string("/proc/net/if_inet6").map(|s| !s.trim().is_empty()).unwrap_or(false)
}

/// `NGINX_STATIC_PATHS=/url:path,...` (a path relative to the app, or
/// absolute), with a `static` worker mapping `/` to its directory first.
fn static_paths(root: &Root, app: &AppName, procfile: &Procfile, env: &Env) -> Result<Vec<StaticPath>> {
    let mut specs: Vec<(String, String)> = Vec::new();
    if let Some(dir) = procfile.get("static") {
        let dir = dir.trim().trim_matches('/');
        specs.push(("/".into(), if dir.is_empty() { ".".into() } else { dir.to_string() }));
    }
    if let Some(list) = env.get("NGINX_STATIC_PATHS").filter(|l| !l.trim().is_empty()) {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (url, path) = item
                .split_once(':')
                .filter(|(u, p)| u.starts_with('/') && !p.is_empty())
                .ok_or_else(|| Error::new(format!("NGINX_STATIC_PATHS entry {item:?} must be /url:path (path relative to the app, or absolute)")))?;
            specs.push((url.to_string(), path.to_string()));
        }
    }
    let app_dir = root.app_dir(app);
    specs
        .into_iter()
        .map(|(url, path)| {
            let url = syntax::nginx_word("NGINX_STATIC_PATHS", &url)?;
            let path = syntax::nginx_word("NGINX_STATIC_PATHS", &path)?;
            let full = if path.starts_with('/') { PathBuf::from(&path) } else { app_dir.join(&path) };
            let mut full = full.display().to_string().trim_end_matches("/.").trim_end_matches('/').to_string();
            full.push('/');
            Ok(StaticPath { url, path: full })
        })
        .collect()
}

/// Where nginx sends requests: the uWSGI socket for wsgi, else
/// BIND_ADDRESS:PORT and the port of every further web instance.
fn upstream(root: &Root, app: &AppName, procfile: &Procfile, env: &Env) -> Result<Option<Upstream>> {
    let name = format!("piku_{}", app.as_str().replace(['.', '-'], "_"));
    if procfile.has("wsgi") {
        let sock = root.dir("nginx").join(format!("{app}.sock"));
        let mut servers = vec![format!("unix:{}", sock.display())];
        // wsgi=N: each further instance through its own stable socket (piku-uwsgi).
        if piku::swap::per_release(env) {
            let count = scaling::read_scaling(root, app)?.get("wsgi").copied().unwrap_or(1);
            servers.extend((2..=count).map(|n| format!("unix:{}", piku::swap::stable_socket(root, app, "wsgi", n).display())));
        }
        return Ok(Some(Upstream { name, servers, uwsgi: true }));
    }
    // jwsgi serves HTTP too: the JVM handler wants its own request modifier (8).
    let http_kind = ["web", "jwsgi", "rwsgi", "php"].into_iter().find(|k| procfile.has(k));
    if let Some(kind) = http_kind.filter(|_| piku::swap::per_release(env)) {
        // Each instance through its stable socket, which piku-uwsgi switches to each deploy's workers.
        let count = scaling::read_scaling(root, app)?.get(kind).copied().unwrap_or(1).max(1);
        let servers = (1..=count).map(|n| format!("unix:{}", piku::swap::stable_socket(root, app, kind, n).display())).collect();
        return Ok(Some(Upstream { name, servers, uwsgi: false }));
    }
    if http_kind.is_some() {
        let bind = syntax::nginx_word("BIND_ADDRESS", env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1"))?;
        let port = env.get("PORT").ok_or_else(|| Error::new(format!("app '{app}' has a web worker but no PORT")))?;
        let port: u16 = port.parse().map_err(|_| Error::new(format!("PORT of '{app}' must be a port number, not {port:?}")))?;
        let mut servers = vec![format!("{bind}:{port}")];
        // web=N: every instance has its own port; nginx balances them.
        let count = scaling::read_scaling(root, app)?.get("web").copied().unwrap_or(1);
        let ports = scaling::read_web_ports(root, app)?;
        servers.extend((2..=count).filter_map(|n| ports.get(&n)).map(|p| format!("{bind}:{p}")));
        return Ok(Some(Upstream { name, servers, uwsgi: false }));
    }
    Ok(None)
}

/// A whole number of seconds (or gigabytes) from the environment.
fn number(env: &Env, key: &str, default: u64, unit: &str) -> Result<u64> {
    match env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Error::new(format!("{key} must be a whole number of {unit}, not {v:?}"))),
    }
}

/// NGINX_CACHE_PREFIXES as a regex alternation (`api|static/img`), or None.
fn cache_prefixes(env: &Env) -> Result<Option<String>> {
    let Some(list) = env.get("NGINX_CACHE_PREFIXES").filter(|l| !l.trim().is_empty()) else { return Ok(None) };
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let item = syntax::nginx_word("NGINX_CACHE_PREFIXES", item)?;
        if let Some(c) = item.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~'))) {
            return Err(Error::new(format!("NGINX_CACHE_PREFIXES entry {item:?} contains {c:?}; use plain URL prefixes such as /api,/static")));
        }
        out.push(item.trim_start_matches('/').replace('.', "\\."));
    }
    Ok((!out.is_empty()).then(|| out.join("|")))
}

/// The cache zone and its knobs; None unless NGINX_CACHE_PREFIXES is set.
fn cache(root: &Root, app: &AppName, env: &Env) -> Result<Option<Cache>> {
    if cache_prefixes(env)?.is_none() {
        return Ok(None);
    }
    let path = match env.get("NGINX_CACHE_PATH").filter(|p| !p.trim().is_empty()) {
        Some(p) => {
            let p = syntax::nginx_word("NGINX_CACHE_PATH", p)?;
            if !Path::new(&p).is_dir() {
                return Err(Error::new(format!(
                    "NGINX_CACHE_PATH {p:?} of '{app}' is not a directory; create it (writable by nginx's workers) or unset NGINX_CACHE_PATH to use {}",
                    root.cache_dir(app).display()
                )));
            }
            PathBuf::from(p)
        }
        None => {
            let dir = root.cache_dir(app);
            if !dir.is_dir() {
                fs::create_dir_all(&dir)?;
                // nginx's workers (the piku user's group) write the cache;
                // nginx then makes the directory its workers' own.
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770))?;
            }
            dir
        }
    };
    Ok(Some(Cache {
        path: syntax::nginx_word("NGINX_CACHE_PATH", &path.display().to_string())?,
        zone: format!("piku_{}", app.as_str().replace(['.', '-'], "_")),
        size: number(env, "NGINX_CACHE_SIZE", 1, "gigabytes")?,
        time: number(env, "NGINX_CACHE_TIME", 3600, "seconds")?,
        redirects: number(env, "NGINX_CACHE_REDIRECTS", 3600, "seconds")?,
        any: number(env, "NGINX_CACHE_ANY", 3600, "seconds")?,
        control: number(env, "NGINX_CACHE_CONTROL", 3600, "seconds")?,
        expiry: number(env, "NGINX_CACHE_EXPIRY", 86400, "seconds")?,
    }))
}

/// A CIDR range or address as nginx's `allow` takes it, or None.
pub fn parse_range(text: &str) -> Option<String> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match bits {
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).map(|b| format!("{ip}/{b}")),
        None => Some(ip.to_string()),
    }
}

/// Who may reach an app with NGINX_CLOUDFLARE_ACL: Cloudflare's ranges (the
/// IPv6 ones when nginx listens on IPv6), the deployer's address, 127.0.0.1.
fn cloudflare_acl(root: &Root, ipv6: bool) -> Result<Vec<String>> {
    let refreshed = root.dir("cache").join("cloudflare-ips.txt");
    let text = match fs::read_to_string(&refreshed) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CLOUDFLARE_IPS.to_string(),
        Err(e) => return Err(e.into()),
    };
    let mut acl: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_range)
        .filter(|r| ipv6 || !r.contains(':'))
        .collect();
    if acl.is_empty() {
        return Err(Error::new(format!("no Cloudflare ranges in {}; run 'piku-nginx refresh-cloudflare' or remove that file", refreshed.display())));
    }
    // The deployer, as sshd tells us ("client-ip client-port server-port").
    if let Some(ip) = std::env::var("SSH_CLIENT").ok().and_then(|c| c.split_whitespace().next().and_then(parse_range))
        && !acl.contains(&ip)
    {
        acl.push(ip);
    }
    acl.push("127.0.0.1".into());
    if ipv6 {
        acl.push("::1".into());
    }
    Ok(acl)
}

/// NGINX_INCLUDE_FILE: a file of the app (relative to its tree) pasted into
/// the server block, `$VAR`s expanded from the app's environment. nginx -t
/// judges it before it goes live.
fn include_file(rel: &Release, env: &Env) -> Result<String> {
    let Some(name) = env.get("NGINX_INCLUDE_FILE").filter(|n| !n.trim().is_empty()) else { return Ok(String::new()) };
    let path = rel.dir.join(name.trim());
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("NGINX_INCLUDE_FILE {name:?} of '{}' cannot be read ({}: {e})", rel.app, path.display())))?;
    let text = envfile::expand_vars(&text, env);
    Ok(text.lines().map(|l| if l.trim().is_empty() { String::new() } else { format!("  {}", l.trim_end()) }).collect::<Vec<_>>().join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn server_names_split_on_commas_and_blanks_once_each() {
        let names = server_names(&env(&[("NGINX_SERVER_NAME", "a.test, b.test  c.test,a.test")])).unwrap().unwrap();
        assert_eq!(names, ["a.test", "b.test", "c.test"]);
        assert!(server_names(&env(&[("NGINX_SERVER_NAME", " ")])).unwrap().is_none());
        for bad in ["a.test;x", "a{", "b}", "a.test\nlisten 1"] {
            let err = server_names(&env(&[("NGINX_SERVER_NAME", bad)])).unwrap_err();
            assert!(err.message.starts_with("NGINX_SERVER_NAME contains"), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn cache_prefixes_become_a_literal_alternation() {
        assert_eq!(cache_prefixes(&env(&[("NGINX_CACHE_PREFIXES", "/api, static.v2,/img/")])).unwrap().unwrap(), "api|static\\.v2|img/");
        assert!(cache_prefixes(&env(&[])).unwrap().is_none());
        assert!(cache_prefixes(&env(&[("NGINX_CACHE_PREFIXES", "/a|b")])).unwrap_err().message.contains("NGINX_CACHE_PREFIXES"));
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(parse_range("173.245.48.0/20").as_deref(), Some("173.245.48.0/20"));
        assert_eq!(parse_range("2400:cb00::/32").as_deref(), Some("2400:cb00::/32"));
        assert_eq!(parse_range("10.0.0.1").as_deref(), Some("10.0.0.1"));
        for bad in ["10.0.0.0/33", "::/129", "<html>", "1.2.3.4/x", "1.2.3.4; deny"] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
        assert!(CLOUDFLARE_IPS.lines().filter(|l| !l.starts_with('#')).all(|l| parse_range(l).is_some()));
    }

    #[test]
    fn cache_numbers_are_whole() {
        assert_eq!(number(&env(&[("NGINX_CACHE_TIME", "60")]), "NGINX_CACHE_TIME", 3600, "seconds").unwrap(), 60);
        assert_eq!(number(&env(&[]), "NGINX_CACHE_TIME", 3600, "seconds").unwrap(), 3600);
        let err = number(&env(&[("NGINX_CACHE_TIME", "1.5")]), "NGINX_CACHE_TIME", 3600, "seconds").unwrap_err();
        assert_eq!(err.message, "NGINX_CACHE_TIME must be a whole number of seconds, not \"1.5\"");
    }
}
