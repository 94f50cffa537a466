//! piku-nginx: the app's front.
//!
//!   piku-nginx <app>                  render nginx/<app>.conf for the live
//!                                     release, test it, publish it, reload nginx
//!   piku-nginx --check <app> <id>     render and test a staged release; publish nothing
//!   piku-nginx --reload               ask nginx to reload (settings: NGINX_RELOAD)
//!   piku-nginx --destroy <app>        remove the app's nginx files and reload
//!
//! Only apps with NGINX_SERVER_NAME get a server block. A block is tested with
//! `nginx -t` together with every other app's live block before it is renamed
//! into nginx/; one that fails never goes live, and nginx's error is shown.

use piku::envfile::{self, Env};
use piku::error::{Error, IoContext, Result};
use piku::procfile::Procfile;
use piku::release::{self, Release};
use piku::scaling;
use piku::settings::Settings;
use piku::{AppName, Root, atomic, output, process, syntax, templates};
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const APP_TEMPLATE: &str = include_str!("../share/nginx/app.conf.j2");
const CHECK_TEMPLATE: &str = include_str!("../share/nginx/check.conf.j2");

fn main() -> ExitCode {
    output::run_main("piku-nginx", |args| {
        let root = Root::from_env();
        let settings = Settings::load(&root)?;
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["--reload"] => reload(&settings),
            ["--destroy", app] => destroy(&root, &settings, &AppName::parse(app)?),
            ["--check", app, id] => {
                let rel = Release::open(&root, &AppName::parse(app)?, id)?;
                let env = envfile::read_literal(&rel.fact_file("env"))?
                    .ok_or_else(|| Error::new(format!("release {} of '{}' has no resolved environment; run piku-config first", rel.id, rel.app)))?;
                if let Some(conf) = render(&root, &settings, &rel, &env)? {
                    test_config(&root, &settings, &rel.app, &conf)?;
                    output::step(format!("nginx accepts the configuration of '{}'", rel.app));
                }
                Ok(())
            }
            [app] if !app.starts_with('-') => {
                let app = AppName::parse(app)?;
                release::require_app(&root, &app)?;
                publish(&root, &settings, &app)
            }
            _ => Err(Error::usage("usage: piku-nginx <app> | --check <app> <release-id> | --reload | --destroy <app>")),
        }
    })
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
struct AppCtx {
    app: String,
    server_names: String,
    listen_http: Vec<String>,
    acme_root: String,
    block_git: bool,
    static_paths: Vec<StaticPath>,
    catch_all: String,
    upstream: Option<Upstream>,
}

/// The app's server block, or None when it has no NGINX_SERVER_NAME.
fn render(root: &Root, settings: &Settings, rel: &Release, env: &Env) -> Result<Option<String>> {
    let app = &rel.app;
    let Some(names) = env.get("NGINX_SERVER_NAME").filter(|n| !n.trim().is_empty()) else { return Ok(None) };
    let names: Vec<String> = names
        .split([',', ' ', '\t'])
        .filter(|n| !n.is_empty())
        .map(|n| syntax::nginx_word("NGINX_SERVER_NAME", n))
        .collect::<Result<_>>()?;
    let procfile = rel.procfile()?;
    let http_port = port_setting(settings, "NGINX_HTTP_PORT", "80")?;

    let mut listen_http = Vec::new();
    if let Some(v6) = env.get("NGINX_IPV6_ADDRESS") {
        if host_has_ipv6() {
            listen_http.push(format!("{}:{http_port}", syntax::nginx_word("NGINX_IPV6_ADDRESS", v6)?));
        } else {
            output::warn("this server has no IPv6 address: nginx listens on IPv4 only (set DISABLE_IPV6=1 to silence this)");
        }
    }
    let v4 = env.get("NGINX_IPV4_ADDRESS").map(String::as_str).unwrap_or("0.0.0.0");
    listen_http.push(format!("{}:{http_port}", syntax::nginx_word("NGINX_IPV4_ADDRESS", v4)?));

    let ctx = AppCtx {
        app: app.to_string(),
        server_names: names.join(" "),
        listen_http,
        acme_root: root.dir("acme").display().to_string(),
        block_git: !envfile::flag(env, "NGINX_ALLOW_GIT_FOLDERS", false),
        static_paths: static_paths(root, app, &procfile, env)?,
        catch_all: match env.get("NGINX_CATCH_ALL").filter(|c| !c.is_empty()) {
            Some(c) => format!("{} ", syntax::nginx_word("NGINX_CATCH_ALL", c)?),
            None => String::new(),
        },
        upstream: upstream(root, app, &procfile, env)?,
    };
    templates::render(root, "app.conf.j2", APP_TEMPLATE, &ctx).map(Some)
}

fn port_setting(settings: &Settings, key: &str, default: &str) -> Result<String> {
    let v = settings.get_or(key, default);
    v.parse::<u16>().map(|p| p.to_string()).map_err(|_| Error::new(format!("{key} in {} must be a port number, not {v:?}", "settings")))
}

fn host_has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").map(|s| !s.trim().is_empty()).unwrap_or(false)
}

/// `NGINX_STATIC_PATHS=/url:path,...` (paths relative to the app), with a
/// `static` worker mapping `/` to its directory first.
fn static_paths(root: &Root, app: &AppName, procfile: &Procfile, env: &Env) -> Result<Vec<StaticPath>> {
    let mut specs: Vec<(String, String)> = Vec::new();
    if let Some(dir) = procfile.get("static") {
        let dir = dir.trim_matches('/');
        specs.push(("/".into(), if dir.is_empty() { ".".into() } else { dir.to_string() }));
    }
    if let Some(list) = env.get("NGINX_STATIC_PATHS").filter(|l| !l.trim().is_empty()) {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (url, path) = item
                .split_once(':')
                .ok_or_else(|| Error::new(format!("NGINX_STATIC_PATHS entry {item:?} must be /url:path")))?;
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

/// Where nginx sends requests: the uWSGI socket for wsgi, else BIND_ADDRESS:PORT.
fn upstream(root: &Root, app: &AppName, procfile: &Procfile, env: &Env) -> Result<Option<Upstream>> {
    let name = format!("piku_{}", app.as_str().replace(['.', '-'], "_"));
    if procfile.has("wsgi") || procfile.has("jwsgi") {
        let sock = root.dir("nginx").join(format!("{app}.sock"));
        return Ok(Some(Upstream { name, servers: vec![format!("unix:{}", sock.display())], uwsgi: true }));
    }
    if ["web", "rwsgi", "php"].iter().any(|k| procfile.has(k)) {
        let bind = syntax::nginx_word("BIND_ADDRESS", env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1"))?;
        let port = env.get("PORT").ok_or_else(|| Error::new(format!("app '{app}' has a web worker but no PORT")))?;
        let mut servers = vec![format!("{bind}:{}", syntax::nginx_word("PORT", port)?)];
        // web=N: every instance has its own port (PORTS); nginx balances them.
        let count = scaling::read_scaling(root, app)?.get("web").copied().unwrap_or(1);
        let ports = scaling::read_web_ports(root, app)?;
        servers.extend((2..=count).filter_map(|n| ports.get(&n)).map(|p| format!("{bind}:{p}")));
        return Ok(Some(Upstream { name, servers, uwsgi: false }));
    }
    Ok(None)
}

#[derive(Serialize)]
struct CheckCtx {
    dir: String,
    mime_types: String,
}

/// `nginx -t` on every app's live block with this app's block replaced by `conf`.
fn test_config(root: &Root, settings: &Settings, app: &AppName, conf: &str) -> Result<()> {
    let tmp = root.tmp_dir();
    std::fs::create_dir_all(&tmp).at("create directory", &tmp)?;
    let dir = tempfile::Builder::new().prefix("nginx-check-").tempdir_in(&tmp).at("create a directory in", &tmp)?;
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).at("create directory", &apps)?;
    let own = format!("{app}.conf");
    if let Ok(entries) = std::fs::read_dir(root.dir("nginx")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !name.starts_with('.') && name != own {
                std::os::unix::fs::symlink(e.path(), apps.join(&name)).at("link", &apps.join(&name))?;
            }
        }
    }
    std::fs::write(apps.join(&own), conf).at("write", &apps.join(&own))?;
    let ctx = CheckCtx {
        dir: dir.path().display().to_string(),
        mime_types: settings.get_or("NGINX_MIME_TYPES", "/etc/nginx/mime.types"),
    };
    let main = dir.path().join("nginx.conf");
    std::fs::write(&main, templates::render(root, "check.conf.j2", CHECK_TEMPLATE, &ctx)?).at("write", &main)?;
    // sshd's PATH has no /usr/sbin: prefer Debian's nginx by its full path.
    let default_nginx = if std::path::Path::new("/usr/sbin/nginx").is_file() { "/usr/sbin/nginx" } else { "nginx" };
    let nginx = settings.get_or("NGINX_BIN", default_nginx);
    let out = Command::new(&nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&main)
        .output()
        .map_err(|e| Error::new(format!("cannot run '{nginx}' to test the configuration of '{app}': {e}; is nginx installed?")))?;
    if out.status.success() {
        return Ok(());
    }
    // nginx names the staged file; point the user at their app instead.
    let staged = apps.join(&own).display().to_string();
    let text = String::from_utf8_lossy(&out.stderr).replace(&staged, &format!("{app}.conf"));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("[emerg]") || l.contains("[error]") || l.contains("failed")).collect();
    // As an unprivileged user nginx cannot bind ports 80/443; it binds only
    // after it has read the whole configuration, so that alone means "valid".
    if only_bind_denied(&text) {
        return Ok(());
    }
    Err(Error::new(format!(
        "nginx rejected the configuration of '{app}'; the previous one stays live:\n{}",
        if lines.is_empty() { text.trim().to_string() } else { lines.join("\n") }
    )))
}

/// nginx's errors are only "cannot bind a privileged port" (IPv4 or IPv6):
/// the configuration itself was read and accepted.
fn only_bind_denied(stderr: &str) -> bool {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("[emerg]") || l.contains("[error]")).collect();
    !errors.is_empty() && errors.iter().all(|l| l.contains("bind() to") && l.contains("(13: Permission denied)"))
}

/// Render, test, publish and reload for the live release.
fn publish(root: &Root, settings: &Settings, app: &AppName) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let env = envfile::read_literal(&root.live_env_file(app))?
        .ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV; run piku-config {app} first")))?;
    let path = root.dir("nginx").join(format!("{app}.conf"));
    let Some(conf) = render(root, settings, &rel, &env)? else {
        if atomic::remove_file(&path)? {
            output::step(format!("'{app}' has no NGINX_SERVER_NAME any more: removed its nginx configuration"));
            reload(settings)?;
        }
        if let Some(port) = env.get("PORT") {
            output::step(format!("'{app}' is not behind nginx (no NGINX_SERVER_NAME); it listens on {}:{port}", env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1")));
        }
        return Ok(());
    };
    if std::fs::read_to_string(&path).ok().as_deref() == Some(conf.as_str()) {
        output::step(format!("nginx configuration of '{app}' unchanged"));
    } else {
        test_config(root, settings, app, &conf)?;
        atomic::write_file(&path, conf.as_bytes(), 0o644)?;
        reload(settings)?;
        output::step(format!("nginx configuration of '{app}' is live"));
    }
    let first = env.get("NGINX_SERVER_NAME").and_then(|n| n.split([',', ' ']).find(|s| !s.is_empty()).map(str::to_string)).unwrap_or_default();
    output::step(format!("Live at http://{first}/"));
    Ok(())
}

/// Ask nginx to reload: the one place that does (settings: NGINX_RELOAD).
fn reload(settings: &Settings) -> Result<()> {
    let command = settings.get_or("NGINX_RELOAD", "nginx -s reload");
    let argv = shell_words::split(&command).map_err(|e| Error::new(format!("NGINX_RELOAD {command:?} does not parse: {e}")))?;
    let Some((prog, args)) = argv.split_first() else { return Err(Error::new("NGINX_RELOAD is empty")) };
    process::run_captured(Command::new(prog).args(args), &format!("reloading nginx ({command})"))
        .map_err(|e| Error::new(format!("{}\nThe configuration on disk is valid; reload nginx by hand.", e.message)))?;
    Ok(())
}


/// Remove the app's server block, socket, key, certificate and ACME files.
fn destroy(root: &Root, settings: &Settings, app: &AppName) -> Result<()> {
    let mut removed = false;
    for ext in ["conf", "sock", "key", "crt"] {
        removed |= atomic::remove_file(&root.dir("nginx").join(format!("{app}.{ext}")))?;
    }
    let acme = root.dir("acme").join(app.as_str());
    if acme.exists() {
        std::fs::remove_dir_all(&acme).at("remove", &acme)?;
    }
    if removed {
        reload(settings)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::only_bind_denied;

    #[test]
    fn a_privileged_port_alone_is_not_a_configuration_error() {
        let v6 = "nginx: [emerg] bind() to [::]:80 failed (13: Permission denied)\n\
                  nginx: configuration file /x/nginx.conf test failed\n";
        assert!(only_bind_denied(v6));
        let v4 = "nginx: [emerg] bind() to 0.0.0.0:80 failed (13: Permission denied)\n";
        assert!(only_bind_denied(v4));
    }

    #[test]
    fn any_other_error_is_one() {
        let bad = "nginx: [emerg] unknown directive \"bogus\" in /x/apps/a.conf:3\n\
                   nginx: configuration file /x/nginx.conf test failed\n";
        assert!(!only_bind_denied(bad));
        let both = "nginx: [emerg] bind() to [::]:80 failed (13: Permission denied)\n\
                    nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)\n";
        assert!(!only_bind_denied(both));
        assert!(!only_bind_denied("nginx: configuration file /x/nginx.conf test failed\n"));
    }
}
