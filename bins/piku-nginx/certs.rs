//! The app's certificate: nginx/<app>.crt and nginx/<app>.key (mode 0600),
//! one certificate for all its names, from an ACME CA by HTTP-01 through
//! acme/ (Debian's `lego`), or self-signed when ACME is off or fails.
//!
//!   acme/.well-known/acme-challenge/   the challenges nginx serves on port 80
//!   acme/<app>/lego/                   lego's state for the app (its certificate)
//!   acme/accounts/                     lego's ACME accounts, shared by all apps
//!   acme/<app>/CERT                    what nginx/<app>.crt is: NAMES=a b, CA=<url> or self-signed

use crate::site::CertFiles;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::settings::Settings;
use piku::{AppName, Root, atomic, output};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
const SELF_SIGNED: &str = "self-signed";

pub fn files(root: &Root, app: &AppName) -> CertFiles {
    let dir = root.dir("nginx");
    CertFiles { crt: dir.join(format!("{app}.crt")), key: dir.join(format!("{app}.key")) }
}

/// What nginx/<app>.crt is, as recorded when it was installed.
#[derive(Debug, PartialEq)]
pub struct Facts {
    pub names: Vec<String>,
    pub ca: String,
}

impl Facts {
    pub fn is_self_signed(&self) -> bool {
        self.ca == SELF_SIGNED
    }
}

fn facts_file(root: &Root, app: &AppName) -> PathBuf {
    root.dir("acme").join(app.as_str()).join("CERT")
}

pub fn read_facts(root: &Root, app: &AppName) -> Result<Option<Facts>> {
    let files = files(root, app);
    if !files.crt.is_file() || !files.key.is_file() {
        return Ok(None);
    }
    let Some(env) = envfile::read_literal(&facts_file(root, app))? else { return Ok(None) };
    Ok(Some(Facts {
        names: env.get("NAMES").map(|n| n.split_whitespace().map(str::to_string).collect()).unwrap_or_default(),
        ca: env.get("CA").cloned().unwrap_or_default(),
    }))
}

fn write_facts(root: &Root, app: &AppName, names: &[String], ca: &str) -> Result<()> {
    let text = format!("# written by piku-nginx: what nginx/{app}.crt is\nNAMES={}\nCA={ca}\n", names.join(" "));
    atomic::write_file(&facts_file(root, app), text.as_bytes(), 0o644)
}

/// The ACME directory the app's certificate comes from: ACME_ROOT_CA of the
/// app, else of the server settings, else Let's Encrypt. Err(why) when the
/// certificate has to be self-signed.
pub fn wanted_ca(settings: &Settings, env: &Env, names: &[String]) -> std::result::Result<String, String> {
    let raw = env.get("ACME_ROOT_CA").filter(|v| !v.trim().is_empty()).cloned().or_else(|| settings.get("ACME_ROOT_CA"));
    let ca = match raw.as_deref().map(str::trim) {
        None | Some("letsencrypt" | "letsencrypt.org") => LETSENCRYPT.to_string(),
        Some("letsencrypt_test" | "letsencrypt-staging" | "staging") => LETSENCRYPT_STAGING.to_string(),
        Some("none" | "off" | "self-signed") => return Err("ACME_ROOT_CA is off".into()),
        Some(url) if url.starts_with("https://") && !url.contains(char::is_whitespace) => url.to_string(),
        Some(other) => return Err(format!("ACME_ROOT_CA {other:?} is not an https:// ACME directory URL (or letsencrypt, letsencrypt_test, none)")),
    };
    if settings.get("ACME_CLIENT").as_deref() == Some("none") {
        return Err("ACME_CLIENT=none in the server settings".into());
    }
    if let Some(n) = names.iter().find(|n| n.contains(['*', '~']) || !n.contains('.') || n.parse::<std::net::IpAddr>().is_ok()) {
        return Err(format!("{n:?} cannot be validated over HTTP (wildcard, regex, IP or single-label name)"));
    }
    // Let's Encrypt refuses reserved names: do not ask it over the network.
    if ca.contains("letsencrypt.org") {
        let reserved = [".test", ".example", ".invalid", ".localhost", ".local", ".internal"];
        if let Some(n) = names.iter().find(|n| reserved.iter().any(|r| n.ends_with(r))) {
            return Err(format!("Let's Encrypt does not certify reserved names such as {n:?}"));
        }
    }
    Ok(ca)
}

/// A self-signed certificate for `names` (EC P-256, one year), installed 0600.
pub fn self_signed(root: &Root, app: &AppName, names: &[String]) -> Result<()> {
    let tmp = scratch_dir(root)?;
    let (crt, key) = (tmp.path().join("crt"), tmp.path().join("key"));
    make_self_signed(names, &crt, &key).map_err(|e| e.context(format!("making a self-signed certificate for '{app}'")))?;
    install(root, app, &crt, &key)?;
    write_facts(root, app, names, SELF_SIGNED)
}

/// `openssl req -x509` into `crt` and `key` (a throwaway pair, or the fallback).
pub fn make_self_signed(names: &[String], crt: &Path, key: &Path) -> Result<()> {
    let san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
    let cn: String = names.first().map(|n| n.chars().take(64).collect()).unwrap_or_else(|| "piku".into());
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "365"])
        .args(["-subj", &format!("/O=piku self-signed/CN={cn}")])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(crt)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(format!("cannot run openssl: {e}; install it (apt-get install openssl)")))?;
    if !out.status.success() {
        return Err(Error::new(format!("openssl failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn scratch_dir(root: &Root) -> Result<tempfile::TempDir> {
    let tmp = root.tmp_dir();
    fs::create_dir_all(&tmp)?;
    Ok(tempfile::Builder::new().prefix("cert-").tempdir_in(&tmp)?)
}

/// Copy a certificate and its key to nginx/<app>.crt|.key, atomically, 0600.
fn install(root: &Root, app: &AppName, crt: &Path, key: &Path) -> Result<()> {
    let files = files(root, app);
    let crt_bytes = fs::read(crt)?;
    let key_bytes = fs::read(key)?;
    // The key first: nginx never pairs a new certificate with an old key for
    // long, and reload happens only after both are in place.
    atomic::write_file(&files.key, &key_bytes, 0o600)?;
    atomic::write_file(&files.crt, &crt_bytes, 0o600)
}

/// Get a certificate for `names` from `ca` by HTTP-01 (nginx must already
/// serve acme/ for those names on port 80), within ACME_TIMEOUT seconds.
pub fn obtain(root: &Root, settings: &Settings, app: &AppName, env: &Env, names: &[String], ca: &str) -> Result<()> {
    let lego = settings.get("ACME_CLIENT").unwrap_or_else(|| if Path::new("/usr/bin/lego").is_file() { "/usr/bin/lego".into() } else { "lego".into() });
    let timeout = settings.get_or("ACME_TIMEOUT", "60");
    let timeout = Duration::from_secs(timeout.parse().map_err(|_| Error::new(format!("ACME_TIMEOUT must be a number of seconds, not {timeout:?}")))?);
    let email = env
        .get("ACME_EMAIL")
        .filter(|e| !e.is_empty())
        .cloned()
        .or_else(|| settings.get("ACME_EMAIL"))
        .unwrap_or_else(|| format!("piku@{}", names[0]));
    let acme = root.dir("acme");
    let state = acme.join(app.as_str()).join("lego");
    fs::create_dir_all(&state)?;
    // One ACME account per CA and email for all apps (CAs limit new accounts).
    let accounts = acme.join("accounts");
    fs::create_dir_all(&accounts)?;
    // Account keys and certificate keys are the piku user's alone (acme/
    // itself stays readable: nginx serves the challenges from it).
    for private in [&accounts, &acme.join(app.as_str())] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
    }
    if fs::symlink_metadata(state.join("accounts")).is_err() {
        fs::os::unix::fs::symlink("../../accounts", state.join("accounts"))?;
    }
    let log_path = acme.join(app.as_str()).join("lego.log");
    let log = fs::File::create(&log_path)?;
    let mut cmd = Command::new(&lego);
    cmd.args(["--accept-tos", "--email", &email, "--server", ca, "--path"])
        .arg(&state)
        .args(names.iter().flat_map(|n| ["--domains", n.as_str()]))
        .args(["--http", "--http.webroot"])
        .arg(&acme)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_file())
        .stderr(log.into_file());
    if let Some(roots) = settings.get("ACME_CA_CERTIFICATES") {
        cmd.env("LEGO_CA_CERTIFICATES", roots);
    }
    let mut child = cmd.spawn().map_err(|e| Error::new(format!("cannot run the ACME client '{lego}': {e}; install it (apt-get install lego) or set ACME_CLIENT=none")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::new(format!("cannot wait for the ACME client '{lego}': {e}")))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(format!("the ACME CA {ca} did not answer within {}s (ACME_TIMEOUT)", timeout.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let last: Vec<&str> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(3).collect();
        return Err(Error::new(format!(
            "{lego} failed for {} ({}):\n{}",
            names.join(", "),
            piku::process::describe_status(status),
            last.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    // lego names its files after the first domain.
    let certs = state.join("certificates");
    install(root, app, &certs.join(format!("{}.crt", names[0])), &certs.join(format!("{}.key", names[0])))?;
    write_facts(root, app, names, ca)
}

/// True when the certificate expires within `days` (or cannot be read).
pub fn due(crt: &Path, days: u64) -> bool {
    let status = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &(days * 86400).to_string(), "-in"])
        .arg(crt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    !status.is_ok_and(|s| s.success())
}

/// The certificate's expiry date as openssl prints it.
pub fn not_after(crt: &Path) -> String {
    Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(crt)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("notAfter=").to_string())
        .unwrap_or_default()
}

/// Remove the app's ACME state.
pub fn forget(root: &Root, app: &AppName) -> Result<()> {
    let dir = root.dir("acme").join(app.as_str());
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

pub fn say_self_signed(app: &AppName, why: &str) {
    output::warn(format!("'{app}' is served over HTTPS with a self-signed certificate: {why}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(settings: &str, app_ca: Option<&str>, names: &[&str]) -> std::result::Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("settings"), settings).unwrap();
        let settings = Settings::load(&Root::at(dir.path())).unwrap();
        let env: Env = app_ca.map(|c| ("ACME_ROOT_CA".to_string(), c.to_string())).into_iter().collect();
        wanted_ca(&settings, &env, &names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_ca_is_the_apps_then_the_servers_then_lets_encrypt() {
        assert_eq!(ca("", None, &["a.example.com"]).unwrap(), LETSENCRYPT);
        assert_eq!(ca("ACME_ROOT_CA=https://ca.test/dir\n", None, &["a.example.com"]).unwrap(), "https://ca.test/dir");
        assert_eq!(ca("ACME_ROOT_CA=https://ca.test/dir\n", Some("letsencrypt_test"), &["a.example.com"]).unwrap(), LETSENCRYPT_STAGING);
        assert_eq!(ca("", Some("https://pebble:14000/dir"), &["a.example.test"]).unwrap(), "https://pebble:14000/dir");
    }

    #[test]
    fn some_names_and_settings_mean_self_signed() {
        assert!(ca("", None, &["a.example.test"]).unwrap_err().contains("reserved names"));
        assert!(ca("", None, &["*.example.com"]).unwrap_err().contains("cannot be validated over HTTP"));
        assert!(ca("", None, &["localhost"]).unwrap_err().contains("single-label"));
        assert!(ca("", Some("none"), &["a.example.com"]).unwrap_err().contains("off"));
        assert!(ca("ACME_CLIENT=none\n", None, &["a.example.com"]).unwrap_err().contains("ACME_CLIENT=none"));
        assert!(ca("", Some("http://plain/dir"), &["a.example.com"]).unwrap_err().contains("not an https://"));
    }
}
