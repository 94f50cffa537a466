//! piku-nginx: the app's front. Its modes (publish, check, renew,
//! refresh-cloudflare, reload, destroy) are the subcommands below;
//! `piku-nginx --help` and `piku-nginx <mode> --help` print their help.

mod certs;
mod nginx;
mod site;

use argh::FromArgs;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::settings::Settings;
use piku::{AppName, Root, atomic, output};
use site::{CertFiles, Front};
use std::process::ExitCode;

/// The app's front: its nginx server block and its certificate.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} check myapp 20240101-120000-5f3c2a1\n{command_name} publish myapp\n{command_name} renew",
    note = "Only apps with NGINX_SERVER_NAME get a server block. A block is tested with `nginx -t` together with every other app's live block before it is renamed into nginx/; one that fails never goes live, and nginx's error is shown.",
    error_code(1, "the work failed (the message says why and what to do)"),
    error_code(2, "usage error: nothing was done")
)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Publish(Publish),
    Check(Check),
    Renew(Renew),
    RefreshCloudflare(RefreshCloudflare),
    Reload(Reload),
    Destroy(Destroy),
}

/// render, test and publish the live release's server block, then reload nginx.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "publish",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp",
    note = "Makes sure the app has a certificate first (self-signed until the ACME CA answers), then asks the ACME CA for one if one is needed."
)]
struct Publish {
    /// the app
    #[argh(positional)]
    app: String,
}

/// render and test a staged release's server block; publish nothing.
#[derive(FromArgs)]
#[argh(subcommand, name = "check", help_triggers("-h", "--help"), example = "{command_name} myapp 20240101-120000-5f3c2a1")]
struct Check {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// renew the certificates that are due or self-signed, then reload nginx once.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "renew",
    help_triggers("-h", "--help"),
    example = "{command_name}\n{command_name} myapp",
    note = "Due: expiring within ACME_RENEW_DAYS (30). Without apps: every app with a server block."
)]
struct Renew {
    /// only these apps
    #[argh(positional)]
    apps: Vec<String>,
}

/// fetch Cloudflare's address ranges into cache/cloudflare-ips.txt.
#[derive(FromArgs)]
#[argh(subcommand, name = "refresh-cloudflare", help_triggers("-h", "--help"), example = "{command_name}")]
struct RefreshCloudflare {}

/// ask nginx to reload (the NGINX_RELOAD setting).
#[derive(FromArgs)]
#[argh(subcommand, name = "reload", help_triggers("-h", "--help"), example = "{command_name}")]
struct Reload {}

/// remove the app's nginx files and reload nginx.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-nginx", || {
        let root = Root::from_env();
        let settings = Settings::load(&root)?;
        match args.mode {
            Mode::Reload(_) => nginx::reload(&settings),
            Mode::Destroy(a) => destroy(&root, &settings, &AppName::parse(&a.app)?),
            Mode::Check(a) => check(&root, &settings, &Release::open(&root, &AppName::parse(&a.app)?, &a.release)?),
            Mode::Renew(a) => renew(&root, &settings, &a.apps.iter().map(String::as_str).collect::<Vec<_>>()),
            Mode::RefreshCloudflare(_) => refresh_cloudflare(&root, &settings),
            Mode::Publish(a) => {
                let app = AppName::parse(&a.app)?;
                release::require_app(&root, &app)?;
                publish(&root, &settings, &app)
            }
        }
    })
}

fn front<'a>(root: &'a Root, settings: &'a Settings) -> Front<'a> {
    Front { root, settings, http2: nginx::http2(settings) }
}

fn live_env(root: &Root, app: &AppName) -> Result<Env> {
    envfile::read_literal(&root.live_env_file(app))?.ok_or_else(|| Error::new(format!("app '{app}' has no LIVE_ENV; run piku-config publish {app} first")))
}

/// Render and test a staged release's block (with a throwaway certificate
/// when the app has none yet); nothing is published.
fn check(root: &Root, settings: &Settings, rel: &Release) -> Result<()> {
    let env = envfile::read_literal(&rel.fact_file("env"))?
        .ok_or_else(|| Error::new(format!("release {} of '{}' has no resolved environment; run piku-config first", rel.id, rel.app)))?;
    let Some(names) = site::server_names(&env)? else { return Ok(()) };
    let mut cert = certs::files(root, &rel.app);
    let _scratch;
    if !cert.crt.is_file() || !cert.key.is_file() {
        let dir = tempfile::Builder::new().prefix("nginx-cert-").tempdir_in(scratch(root)?).map_err(|e| Error::new(format!("temporary directory: {e}")))?;
        cert = CertFiles { crt: dir.path().join("crt"), key: dir.path().join("key") };
        certs::make_self_signed(&names, &cert.crt, &cert.key)?;
        _scratch = dir;
    }
    let conf = front(root, settings).render(rel, &env, &names, &cert)?;
    nginx::test_config(root, settings, &rel.app, &conf)?;
    output::step(format!("nginx accepts the configuration of '{}'", rel.app));
    Ok(())
}

fn scratch(root: &Root) -> Result<std::path::PathBuf> {
    let tmp = root.tmp_dir();
    fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// Certificate, render, test, publish and reload for the live release.
fn publish(root: &Root, settings: &Settings, app: &AppName) -> Result<()> {
    let rel = Release::live_or_err(root, app)?;
    let env = live_env(root, app)?;
    let path = root.dir("nginx").join(format!("{app}.conf"));
    let Some(names) = site::server_names(&env)? else {
        if atomic::remove_file(&path)? {
            output::step(format!("'{app}' has no NGINX_SERVER_NAME any more: removed its nginx configuration"));
            nginx::reload(settings)?;
        }
        if let Some(port) = env.get("PORT") {
            output::step(format!("'{app}' is not behind nginx (no NGINX_SERVER_NAME); it listens on {}:{port}", env.get("BIND_ADDRESS").map(String::as_str).unwrap_or("127.0.0.1")));
        }
        return Ok(());
    };

    // 1. A certificate for every name, so the block can go live now: the one
    //    the app has, or a self-signed one until ACME delivers.
    let wanted = certs::wanted_ca(settings, &env, &names);
    let facts = certs::read_facts(root, app)?;
    if facts.as_ref().is_none_or(|f| f.names != names) {
        certs::self_signed(root, app, &names)?;
    }

    // 2. The server block: tested with every other app's, then live.
    let front = front(root, settings);
    let cert = certs::files(root, app);
    let conf = front.render(&rel, &env, &names, &cert)?;
    let old = fs::read_to_string(&path).ok();
    let cert_changed = facts.as_ref().is_none_or(|f| f.names != names);
    if old.as_deref() == Some(conf.as_str()) && !cert_changed {
        output::step(format!("nginx configuration of '{app}' unchanged"));
    } else {
        nginx::test_config(root, settings, app, &conf)?;
        atomic::write_file(&path, conf.as_bytes(), 0o644)?;
        nginx::reload(settings)?;
        output::step(format!("nginx configuration of '{app}' is live for {}", names.join(", ")));
    }

    // 3. ACME, now that nginx answers the challenges for these names.
    let facts = certs::read_facts(root, app)?;
    let trusted = match &wanted {
        Ok(ca) if facts.as_ref().is_none_or(|f| f.ca != *ca) => acme(root, settings, app, &env, &names, ca, &conf),
        Ok(_) => true,
        Err(why) => {
            certs::say_self_signed(app, why);
            false
        }
    };
    let https_port = front.port("NGINX_HTTPS_PORT", "443")?;
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    if trusted {
        output::step(format!("Live at https://{}{port}/", names[0]));
    } else {
        output::step(format!("Live at http://{}/ (and https://{}{port}/ with a self-signed certificate)", names[0], names[0]));
    }
    Ok(())
}

/// Get the app's certificate from `ca`; on failure keep serving what it has
/// (self-signed at worst) and say so. True when the certificate is the CA's.
fn acme(root: &Root, settings: &Settings, app: &AppName, env: &Env, names: &[String], ca: &str, conf: &str) -> bool {
    output::step(format!("Getting a certificate for {} from {ca}", names.join(", ")));
    let result = certs::obtain(root, settings, app, env, names, ca)
        .and_then(|()| nginx::test_config(root, settings, app, conf))
        .and_then(|()| nginx::reload(settings));
    match result {
        Ok(()) => {
            output::detail(format!("certificate installed, valid until {}", certs::not_after(&certs::files(root, app).crt)));
            true
        }
        Err(e) => {
            output::warn(format!("ACME failed for '{app}': {}", e.message.lines().next().unwrap_or_default()));
            for line in e.message.lines().skip(1) {
                output::detail(line);
            }
            let retry = format!("'piku-nginx renew {app}' (or the piku-certs timer) tries again");
            if certs::read_facts(root, app).ok().flatten().is_some_and(|f| f.is_self_signed()) {
                certs::say_self_signed(app, &format!("ACME failed; {retry}"));
            } else {
                output::warn(format!("'{app}' keeps its previous certificate; {retry}"));
            }
            false
        }
    }
}

/// Renew what is due: ACME certificates expiring within ACME_RENEW_DAYS and
/// self-signed ones of apps that could have an ACME one. nginx reloads once.
fn renew(root: &Root, settings: &Settings, only: &[&str]) -> Result<()> {
    let days = settings.get_or("ACME_RENEW_DAYS", "30");
    let days: u64 = days.parse().map_err(|_| Error::new(format!("ACME_RENEW_DAYS must be a number of days, not {days:?}")))?;
    let apps: Vec<AppName> = if only.is_empty() {
        let mut all: Vec<AppName> = fs::read_dir(root.dir("nginx"))
            .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".conf").and_then(|n| AppName::parse(n).ok())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        all
    } else {
        only.iter().map(|a| release::existing_app(root, a)).collect::<Result<_>>()?
    };
    let (mut renewed, mut failed) = (0, Vec::new());
    for app in &apps {
        let _lock = piku::lock::AppLock::acquire(root, app)?;
        let env = match live_env(root, app) {
            Ok(env) => env,
            Err(e) => {
                output::error(format!("'{app}': {}", e.message));
                failed.push(app.to_string());
                continue;
            }
        };
        let Some(names) = site::server_names(&env)? else { continue };
        let Some(facts) = certs::read_facts(root, app)? else {
            output::warn(format!("'{app}' has no certificate yet; deploy it first"));
            continue;
        };
        let cert = certs::files(root, app);
        let ca = match certs::wanted_ca(settings, &env, &names) {
            Ok(ca) => ca,
            Err(why) => {
                output::step(format!("'{app}': self-signed ({why}), nothing to renew"));
                continue;
            }
        };
        if facts.ca == ca && facts.names == names && !certs::due(&cert.crt, days) {
            output::step(format!("'{app}': certificate valid until {}, not due", certs::not_after(&cert.crt)));
            continue;
        }
        output::step(format!("'{app}': renewing the certificate for {} from {ca}", names.join(", ")));
        match certs::obtain(root, settings, app, &env, &names, &ca) {
            Ok(()) => {
                output::detail(format!("valid until {}", certs::not_after(&cert.crt)));
                renewed += 1;
            }
            Err(e) => {
                output::error(format!("'{app}': {}", e.message));
                failed.push(app.to_string());
            }
        }
    }
    if renewed > 0 {
        // Every app's live block with the new certificates.
        let probe = &apps[0];
        let conf = fs::read_to_string(root.dir("nginx").join(format!("{probe}.conf"))).unwrap_or_default();
        nginx::test_config(root, settings, probe, &conf)?;
        nginx::reload(settings)?;
        output::step(format!("{renewed} certificate(s) renewed; nginx reloaded"));
    }
    if failed.is_empty() { Ok(()) } else { Err(Error::new(format!("could not renew the certificate of {}; the previous ones stay in use", failed.join(", ")))) }
}

/// Fetch Cloudflare's current ranges into cache/cloudflare-ips.txt (checked
/// line by line). Deploys read that file and never need the internet.
fn refresh_cloudflare(root: &Root, settings: &Settings) -> Result<()> {
    let mut text = String::from("# Cloudflare's ranges, fetched by piku-nginx refresh-cloudflare\n");
    let mut count = 0;
    for (key, default) in [("CLOUDFLARE_IPV4_URL", "https://www.cloudflare.com/ips-v4"), ("CLOUDFLARE_IPV6_URL", "https://www.cloudflare.com/ips-v6")] {
        let url = settings.get_or(key, default);
        let out = std::process::Command::new("curl")
            .args(["-fsSL", "--max-time", "30", &url])
            .output()
            .map_err(|e| Error::new(format!("cannot run curl: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(format!("could not fetch {url}: {}; the previous list stays in use", String::from_utf8_lossy(&out.stderr).trim())));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
            let range = site::parse_range(line).ok_or_else(|| Error::new(format!("{url} returned {line:?}, which is not an address range; the previous list stays in use")))?;
            text.push_str(&range);
            text.push('\n');
            count += 1;
        }
    }
    if count == 0 {
        return Err(Error::new("Cloudflare returned no ranges; the previous list stays in use"));
    }
    let path = root.dir("cache").join("cloudflare-ips.txt");
    atomic::write_file(&path, text.as_bytes(), 0o644)?;
    output::step(format!("{count} Cloudflare ranges saved in {}; redeploy apps with NGINX_CLOUDFLARE_ACL to apply them", path.display()));
    Ok(())
}

/// Remove the app's server block, key, certificate and ACME files (its sockets are piku-uwsgi's).
fn destroy(root: &Root, settings: &Settings, app: &AppName) -> Result<()> {
    let mut removed = false;
    for ext in ["conf", "key", "crt"] {
        removed |= atomic::remove_file(&root.dir("nginx").join(format!("{app}.{ext}")))?;
    }
    certs::forget(root, app)?;
    if removed {
        nginx::reload(settings)?;
    }
    Ok(())
}
