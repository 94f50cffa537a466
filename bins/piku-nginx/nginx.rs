//! Talking to nginx: which HTTP/2 syntax it wants, `nginx -t` of the whole
//! configuration as it would be, and the one place that asks it to reload.

use crate::site::Http2;
use fs_err as fs;
use piku::error::{Error, Result};
use piku::settings::Settings;
use piku::{AppName, Root, process, templates};
use serde::Serialize;
use std::process::Command;

const CHECK_TEMPLATE: &str = include_str!("../../share/nginx/check.conf.j2");

/// nginx's binary: NGINX_BIN, else Debian's (sshd's PATH has no /usr/sbin).
fn binary(settings: &Settings) -> String {
    let default = if std::path::Path::new("/usr/sbin/nginx").is_file() { "/usr/sbin/nginx" } else { "nginx" };
    settings.get_or("NGINX_BIN", default)
}

/// Detected once per run from `nginx -V`: `listen ... http2` before 1.25.1,
/// `http2 on;` from then on; off without the http_v2 module or a version.
pub fn http2(settings: &Settings) -> Http2 {
    let Ok(out) = Command::new(binary(settings)).arg("-V").output() else { return Http2::Off };
    http2_from(&String::from_utf8_lossy(&out.stderr))
}

pub fn http2_from(version_text: &str) -> Http2 {
    let Some(version) = version_text.lines().find_map(|l| l.trim().strip_prefix("nginx version: nginx/")) else { return Http2::Off };
    if version_text.contains("configure arguments:") && !version_text.contains("--with-http_v2_module") {
        return Http2::Off;
    }
    let parts: Vec<u32> = version.split(|c: char| !c.is_ascii_digit()).take(3).map(|p| p.parse().unwrap_or(0)).collect();
    match parts.as_slice() {
        [a, b, c] if (*a, *b, *c) >= (1, 25, 1) => Http2::Directive,
        [_, _, _] => Http2::Listen,
        _ => Http2::Off,
    }
}

#[derive(Serialize)]
struct CheckCtx {
    dir: String,
    mime_types: String,
}

/// `nginx -t` on every app's live block with this app's block replaced by `conf`.
pub fn test_config(root: &Root, settings: &Settings, app: &AppName, conf: &str) -> Result<()> {
    let tmp = root.tmp_dir();
    fs::create_dir_all(&tmp)?;
    let dir = tempfile::Builder::new().prefix("nginx-check-").tempdir_in(&tmp)?;
    let apps = dir.path().join("apps");
    fs::create_dir(&apps)?;
    let own = format!("{app}.conf");
    if let Ok(entries) = fs::read_dir(root.dir("nginx")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !name.starts_with('.') && name != own {
                fs::os::unix::fs::symlink(e.path(), apps.join(&name))?;
            }
        }
    }
    fs::write(apps.join(&own), conf)?;
    let ctx = CheckCtx { dir: dir.path().display().to_string(), mime_types: settings.get_or("NGINX_MIME_TYPES", "/etc/nginx/mime.types") };
    let main = dir.path().join("nginx.conf");
    fs::write(&main, templates::render(root, "check.conf.j2", CHECK_TEMPLATE, &ctx)?)?;
    let nginx = binary(settings);
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

/// Ask nginx to reload: the one place that does (settings: NGINX_RELOAD;
/// where systemd runs, piku-nginx.path reloads it too).
pub fn reload(settings: &Settings) -> Result<()> {
    let command = settings.get_or("NGINX_RELOAD", "nginx -s reload");
    let argv = shell_words::split(&command).map_err(|e| Error::new(format!("NGINX_RELOAD {command:?} does not parse: {e}")))?;
    let Some((prog, args)) = argv.split_first() else { return Err(Error::new("NGINX_RELOAD is empty")) };
    let wait = settings.get_or("NGINX_RELOAD_WAIT", "5");
    let wait = wait.trim().parse::<u64>().map_err(|_| Error::new(format!("NGINX_RELOAD_WAIT in the settings must be a number of seconds, not {wait:?}")))?;
    let before = if wait > 0 { piku::nginx_workers::serving() } else { Default::default() };
    process::run_captured(Command::new(prog).args(args), &format!("reloading nginx ({command})"))
        .map_err(|e| Error::new(format!("{}\nThe configuration on disk is valid; reload nginx by hand.", e.message)))?;
    // nginx reloads after the command returns: wait until a worker with the
    // new configuration serves, so "live" is true when we say it.
    piku::nginx_workers::wait_for_new(&before, std::time::Duration::from_secs(wait));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn http2_follows_the_version() {
        assert_eq!(http2_from("nginx version: nginx/1.22.1\nbuilt with OpenSSL\n"), Http2::Listen);
        assert_eq!(http2_from("nginx version: nginx/1.25.1\n"), Http2::Directive);
        assert_eq!(http2_from("nginx version: nginx/1.27.0\nconfigure arguments: --with-http_v2_module --with-http_ssl_module\n"), Http2::Directive);
        assert_eq!(http2_from("nginx version: nginx/1.24.0\nconfigure arguments: --with-http_ssl_module\n"), Http2::Off);
        assert_eq!(http2_from("nginx version: nginx/1.25.0\n"), Http2::Listen);
        assert_eq!(http2_from(""), Http2::Off);
    }
}
