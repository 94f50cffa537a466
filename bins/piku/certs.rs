//! `certs`: what each app's TLS certificate is and when it expires, read from
//! the files piku-nginx keeps (nginx/<app>.crt, and acme/<app>/CERT: the
//! names and the ACME directory or `self-signed`); `certs:renew` asks
//! piku-nginx to renew.

use crate::commands::Command;
use crate::{Ctx, exec};
use argh::FromArgs;
use piku::error::{Error, Result};
use piku::{AppName, envfile, output, paths};
use std::path::Path;
use std::process::Command as Process;

/// each app's certificate: names, issuer and expiry
#[derive(FromArgs)]
#[argh(subcommand, name = "certs", help_triggers("-h", "--help"))]
#[argh(example = "piku certs", example = "piku certs --json")]
#[argh(note = "One line per app served over TLS: the expiry (UTC), the days left, the issuer (self-signed, or the CA and the ACME directory it came from) and the names. certs:renew renews what expires within ACME_RENEW_DAYS (30).")]
pub struct Certs {
    /// as JSON: [{{"app", "names": [...], "issuer", "acme", "self_signed", "expires", "days_left"}}]
    #[argh(switch)]
    json: bool,
}

/// One app's certificate.
struct Cert {
    app: String,
    names: Vec<String>,
    /// The issuer's name as in the certificate (`O = ..., CN = ...`).
    issuer: String,
    /// The ACME directory it came from; empty when self-signed or unknown.
    acme: String,
    self_signed: bool,
    /// `2027-01-31T12:00:00Z`
    expires: String,
    days_left: i64,
}

impl Command for Certs {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let dir = ctx.root.dir("nginx");
        let mut apps: Vec<AppName> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.strip_suffix(".crt").and_then(|a| AppName::parse(a).ok())).collect())
            .unwrap_or_default();
        apps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut certs = Vec::new();
        for app in apps {
            certs.push(read_cert(&ctx.root, &app)?);
        }
        if self.json {
            let s = output::json_string;
            let items: Vec<String> = certs
                .iter()
                .map(|c| {
                    let names: Vec<String> = c.names.iter().map(|n| s(n)).collect();
                    format!(
                        "{{\"app\":{},\"names\":[{}],\"issuer\":{},\"acme\":{},\"self_signed\":{},\"expires\":{},\"days_left\":{}}}",
                        s(&c.app),
                        names.join(","),
                        s(&c.issuer),
                        s(&c.acme),
                        c.self_signed,
                        s(&c.expires),
                        c.days_left
                    )
                })
                .collect();
            output::data(format!("[{}]", items.join(",")));
            return Ok(());
        }
        if certs.is_empty() {
            output::step("No app has a certificate (an app gets one when its ENV sets NGINX_SERVER_NAME).");
        }
        for c in certs {
            let issuer = if c.self_signed { "self-signed".to_string() } else if c.acme.is_empty() { c.issuer } else { format!("{} ({})", c.issuer, c.acme) };
            output::data(format!("{}  {}  {:>4} days  {}  {}", c.app, c.expires, c.days_left, c.names.join(","), issuer));
        }
        Ok(())
    }
}

fn read_cert(root: &piku::Root, app: &AppName) -> Result<Cert> {
    let crt = root.dir("nginx").join(format!("{app}.crt"));
    let facts = envfile::read_literal(&root.dir("acme").join(app.as_str()).join("CERT"))?.unwrap_or_default();
    let x509 = openssl_facts(&crt).map_err(|e| Error::new(format!("cannot read the certificate of '{app}' ({}): {e}", crt.display())))?;
    let ca = facts.get("CA").cloned().unwrap_or_default();
    let self_signed = ca == "self-signed" || (ca.is_empty() && x509.issuer.contains("piku self-signed"));
    let names = match facts.get("NAMES") {
        Some(n) if !n.trim().is_empty() => n.split_whitespace().map(str::to_string).collect(),
        _ => x509.names,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Ok(Cert {
        app: app.to_string(),
        names,
        issuer: x509.issuer,
        acme: if self_signed { String::new() } else { ca },
        self_signed,
        expires: x509.expires.replace(' ', "T"),
        days_left: (x509.expires_epoch - now).div_euclid(86400),
    })
}

struct X509 {
    issuer: String,
    names: Vec<String>,
    expires: String,
    expires_epoch: i64,
}

/// The issuer, the DNS names and the expiry, through `openssl x509`.
fn openssl_facts(crt: &Path) -> std::result::Result<X509, String> {
    let out = Process::new("openssl")
        .args(["x509", "-noout", "-issuer", "-enddate", "-dateopt", "iso_8601", "-ext", "subjectAltName", "-in"])
        .arg(crt)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}; install it (apt-get install openssl)"))?;
    if !out.status.success() {
        return Err(format!("openssl: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default().to_string();
    let expires = field("notAfter=");
    let names = text
        .split("Subject Alternative Name:")
        .nth(1)
        .map(|san| san.split([',', '\n']).filter_map(|w| w.trim().strip_prefix("DNS:")).map(str::to_string).collect())
        .unwrap_or_default();
    let expires_epoch = epoch_of(&expires).ok_or_else(|| format!("openssl printed an expiry piku cannot read: {expires:?}"))?;
    Ok(X509 { issuer: field("issuer="), names, expires, expires_epoch })
}

/// Seconds since 1970 of `2027-01-31 12:00:00Z` (UTC).
fn epoch_of(iso: &str) -> Option<i64> {
    let digits: Vec<i64> = iso.split(['-', ' ', ':', 'T', 'Z']).filter(|w| !w.is_empty()).map(|w| w.parse().ok()).collect::<Option<_>>()?;
    let [y, m, d, hh, mm, ss] = digits[..] else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// renew the TLS certificates that are due, then reload nginx
#[derive(FromArgs)]
#[argh(subcommand, name = "certs:renew", help_triggers("-h", "--help"))]
#[argh(example = "piku certs:renew", example = "piku certs:renew hello")]
#[argh(note = "Renews what expires within ACME_RENEW_DAYS (30) and retries self-signed ones, then reloads nginx once. piku-certs.timer runs it twice a day.")]
pub struct Renew {
    /// only these apps (default: all)
    #[argh(positional)]
    apps: Vec<String>,
}

impl Command for Renew {
    fn run(self, _ctx: &Ctx) -> Result<()> {
        exec(Process::new(paths::tool("piku-nginx")).arg("renew").arg("--").args(&self.apps))
    }
}
