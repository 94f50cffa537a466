//! The Procfile: `kind: command` lines and `#` comments. A malformed line is an
//! error with its line number (piku warns and skips it); a duplicate kind is a
//! warning and the last one wins; `wsgi`/`jwsgi`/`rwsgi` disable `web`.

use crate::error::{Error, Result};

/// Kinds that run once per deploy, never as workers.
pub const TASK_KINDS: &[&str] = &["preflight", "release"];
/// The most entries a Procfile may have: each becomes at least one uWSGI
/// vassal, and a server cannot run thousands of them.
pub const MAX_ENTRIES: usize = 100;
/// Kinds that nginx talks to.
pub const WEB_KINDS: &[&str] = &["web", "wsgi", "jwsgi", "rwsgi", "php"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub command: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    /// In file order, one per kind.
    pub entries: Vec<Entry>,
    /// Things worth telling the pusher (duplicates, web disabled by wsgi).
    pub warnings: Vec<String>,
}

impl Procfile {
    pub fn parse(text: &str, origin: &str) -> Result<Procfile> {
        let mut pf = Procfile::default();
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| Error::new(format!("{origin}, line {}: {why}: {line:?}", n + 1));
            let Some((kind, command)) = line.split_once(':') else {
                return Err(at("expected 'kind: command', found no ':'".into()));
            };
            let (kind, command) = (kind.trim(), command.trim());
            if kind.is_empty() {
                return Err(at("the worker kind before ':' is empty".into()));
            }
            if kind.contains('_') {
                // `<app>_<kind>.<n>.ini`: app `foo` kind `x_worker` would be app
                // `foo_x` kind `worker`. App names may hold '_', kinds may not,
                // so the last '_' of a vassal's name always ends the app's name.
                let fix = kind.replace('_', "-");
                return Err(at(format!(
                    "the worker kind {kind:?} contains '_', which piku keeps for separating the app's name from the kind in worker files (another app's worker could get the same name); rename it, e.g. to {fix:?}"
                )));
            }
            if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(at(format!("the worker kind {kind:?} may only use letters, digits and '-'")));
            }
            if command.is_empty() {
                return Err(at(format!("the '{kind}' entry has no command")));
            }
            if command.contains('\0') {
                return Err(at(format!("the '{kind}' command contains a NUL byte")));
            }
            if kind.starts_with("cron") {
                parse_cron(command).map_err(at)?;
            }
            if let Some(old) = pf.entries.iter().position(|e| e.kind == kind) {
                pf.warnings.push(format!("found more than one '{kind}' worker; only the last one (line {}) is used", n + 1));
                pf.entries.remove(old);
            }
            pf.entries.push(Entry { kind: kind.to_string(), command: command.to_string() });
            if pf.entries.len() > MAX_ENTRIES {
                return Err(at(format!("more than {MAX_ENTRIES} kinds of workers; piku runs at most {MAX_ENTRIES}")));
            }
        }
        if ["wsgi", "jwsgi", "rwsgi"].iter().any(|k| pf.get(k).is_some()) && pf.get("web").is_some() {
            pf.warnings.push("found both a wsgi-style worker and 'web'; 'web' is disabled".into());
            pf.entries.retain(|e| e.kind != "web");
        }
        Ok(pf)
    }

    pub fn get(&self, kind: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.kind == kind).map(|e| e.command.as_str())
    }

    pub fn has(&self, kind: &str) -> bool {
        self.get(kind).is_some()
    }

    /// The entries that become workers (everything but preflight/release).
    pub fn workers(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !TASK_KINDS.contains(&e.kind.as_str()))
    }

    /// Does any worker face the web (so the app needs a PORT)?
    pub fn serves_web(&self) -> bool {
        self.workers().any(|e| WEB_KINDS.contains(&e.kind.as_str()) || e.kind == "static")
    }
}

/// A cron schedule `M H DoM Mon DoW command`, checked and converted to
/// uWSGI's `cron` option (`*/N` -> `-N`, `*` -> `-1`).
pub fn parse_cron(spec: &str) -> std::result::Result<String, String> {
    const FIELDS: [(&str, u32); 5] = [("minute", 59), ("hour", 23), ("day of month", 31), ("month", 12), ("day of week", 7)];
    let mut parts = spec.split_whitespace();
    let mut out = Vec::new();
    for (name, max) in FIELDS {
        let Some(field) = parts.next() else {
            return Err("a cron entry needs five fields (minute hour day-of-month month day-of-week) and a command".into());
        };
        let converted = if field == "*" {
            "-1".to_string()
        } else {
            let (step, digits) = match field.strip_prefix("*/") {
                Some(d) => (true, d),
                None => (false, field),
            };
            let n: u32 = digits
                .parse()
                .ok()
                .filter(|_| digits.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("cron {name} {field:?} must be N, * or */N"))?;
            if n > max || (step && n == 0) {
                return Err(format!("cron {name} {field:?} is out of range (0-{max})"));
            }
            if step { format!("-{n}") } else { n.to_string() }
        };
        out.push(converted);
    }
    let command: Vec<&str> = parts.collect();
    if command.is_empty() {
        return Err("the cron entry has a schedule but no command".into());
    }
    // Keep the command exactly as written after the fifth field.
    let mut rest = spec.trim_start();
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
    }
    Ok(format!("{} {}", out.join(" "), rest.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_with_an_underscore_is_refused_naming_the_kind_and_the_fix() {
        let err = Procfile::parse("web: python3 app.py\nx_worker: sleep 1\n", "Procfile").unwrap_err();
        assert!(err.message.contains("line 2") && err.message.contains("\"x_worker\" contains '_'") && err.message.contains("\"x-worker\""), "{}", err.message);
        assert!(Procfile::parse("x-worker: sleep 1\nworker2: sleep 1\n", "Procfile").is_ok());
        assert!(Procfile::parse("x.y: sleep 1\n", "Procfile").is_err());
    }

    #[test]
    fn too_many_kinds_are_refused() {
        let ok: String = (0..MAX_ENTRIES).map(|i| format!("w{i}: sleep 1\n")).collect();
        assert_eq!(Procfile::parse(&ok, "Procfile").unwrap().entries.len(), MAX_ENTRIES);
        let many: String = (0..10_000).map(|i| format!("w{i}: sleep 1\n")).collect();
        let err = Procfile::parse(&many, "Procfile").unwrap_err();
        assert!(err.message.contains(&format!("line {}", MAX_ENTRIES + 1)) && err.message.contains("at most"), "{}", err.message);
    }

    #[test]
    fn parses_kinds_in_order_with_comments() {
        let pf = Procfile::parse("# hi\nweb: python3 -m http.server $PORT\n\nrelease: ./migrate --x=1:2\nworker:  sleep 9 \n", "Procfile").unwrap();
        let kinds: Vec<_> = pf.entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["web", "release", "worker"]);
        assert_eq!(pf.get("release"), Some("./migrate --x=1:2"));
        assert_eq!(pf.workers().count(), 2);
        assert!(pf.serves_web());
    }

    #[test]
    fn duplicate_kind_warns_last_wins_and_wsgi_disables_web() {
        let pf = Procfile::parse("web: a\nweb: b\nwsgi: app:application\n", "Procfile").unwrap();
        assert_eq!(pf.get("web"), None);
        assert_eq!(pf.get("wsgi"), Some("app:application"));
        assert_eq!(pf.warnings.len(), 2);
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        for (text, needle) in [
            ("web: a\njust words\n", "Procfile, line 2: expected 'kind: command'"),
            (": x\n", "line 1: the worker kind before ':' is empty"),
            ("web:\n", "the 'web' entry has no command"),
            ("we b: x\n", "may only use letters"),
            ("cron1: 61 * * * * x\n", "cron minute \"61\" is out of range"),
            ("cron1: * 24 * * * x\n", "cron hour \"24\" is out of range"),
            ("cron1: * * * *\n", "needs five fields"),
            ("cron1: * * * * *\n", "no command"),
            ("cron1: a * * * * x\n", "must be N, * or */N"),
            ("cron1: */0 * * * * x\n", "out of range"),
        ] {
            let err = Procfile::parse(text, "Procfile").unwrap_err();
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn cron_converts_to_uwsgi_syntax() {
        assert_eq!(parse_cron("*/5 * * * * echo  hi there").unwrap(), "-5 -1 -1 -1 -1 echo  hi there");
        assert_eq!(parse_cron("0 23 31 12 7 ./x").unwrap(), "0 23 31 12 7 ./x");
    }
}
