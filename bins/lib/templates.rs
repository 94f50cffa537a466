//! Templates: `.j2` files under `share/`, compiled in, rendered with minijinja
//! from typed contexts in strict mode (an undefined variable is an error) and
//! without auto-escaping (these are config files, not HTML). An operator may
//! override one with a file of the same name in `$PIKU_ROOT/templates/`.

use crate::error::{Error, Result};
use crate::paths::Root;
use fs_err as fs;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Render the built-in template `name` (or the operator's override) with `ctx`.
pub fn render<C: Serialize>(root: &Root, name: &str, builtin: &str, ctx: &C) -> Result<String> {
    let override_path = root.templates_dir().join(name);
    let source = match fs::read_to_string(&override_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => builtin.to_string(),
        Err(e) => return Err(e.into()),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| Error::new(format!("template syntax: {e}")))?;
    env.set_syntax(syntax);
    env.add_template(name, &source)
        .map_err(|e| Error::new(format!("template {name} does not parse: {e}")))?;
    let tmpl = env.get_template(name).map_err(|e| Error::new(format!("template {name}: {e}")))?;
    tmpl.render(minijinja::Value::from(minijinja::value::Serde(ctx)))
        .map_err(|e| Error::new(format!("template {name} could not be rendered: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Ctx {
        name: String,
    }

    #[test]
    fn strict_and_unescaped() {
        let root = Root::at("/nonexistent-piku-root");
        let out = render(&root, "t", "server_name {{ name }}; # $host {\n", &Ctx { name: "a&b".into() }).unwrap();
        assert_eq!(out, "server_name a&b; # $host {\n");
        let err = render(&root, "t", "{{ missing }}", &Ctx { name: "x".into() }).unwrap_err();
        assert!(err.message.contains("could not be rendered"), "{}", err.message);
    }

    #[test]
    fn operator_override_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        std::fs::create_dir_all(root.templates_dir()).unwrap();
        std::fs::write(root.templates_dir().join("t"), "custom {{ name }}").unwrap();
        assert_eq!(render(&root, "t", "builtin", &Ctx { name: "x".into() }).unwrap(), "custom x");
    }
}
