//! `{{ env.NAME }}` expansion in every string value of the parsed document.
//!
//! Expansion runs on toml's span-carrying document tree before any typed deserialization, so it
//! reaches every string (array elements, inline-table values, enum-like and duration values) while
//! each value keeps the span of the text the user wrote. An unset variable is recorded, not fatal:
//! the value is expanded with the variable empty, and [`Problems`] treats anything else wrong
//! with that value as a follow-on of the unset variable.

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostics::Problems;

/// Looks up an environment variable; injected so tests never touch the process environment.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands every string value under `table`, whose dotted path is `path` ("" for the document).
pub(crate) fn expand_table(
    table: &mut DeTable<'_>,
    path: &str,
    env: Env<'_>,
    problems: &mut Problems<'_>,
) {
    for (key, value) in table.iter_mut() {
        expand_value(value, &join(path, key.get_ref()), env, problems);
    }
}

/// `path.key`, or `key` at the top level.
///
/// A key that is not a TOML bare key (`A-Za-z0-9_-`) is quoted, as it would be written in the file.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    env: Env<'_>,
    problems: &mut Problems<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) if text.contains("{{") => {
            let (expanded, flaws) = expand(text, env);
            for flaw in flaws {
                match flaw {
                    Flaw::Unset(name) => problems.unset_variable(span.clone(), path, &name),
                    Flaw::Malformed => problems.push(
                        span.clone(),
                        path,
                        "`{{` starts a placeholder other than `{{ env.NAME }}`".to_string(),
                        "write `{{ env.NAME }}` to read an environment variable",
                    ),
                }
            }
            *text = expanded.into();
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{index}]"), env, problems);
            }
        }
        DeValue::Table(table) => expand_table(table, path, env, problems),
        _ => {}
    }
}

/// Something wrong with the placeholders of one string.
#[derive(Debug, PartialEq, Eq)]
enum Flaw {
    /// `{{ env.NAME }}` where NAME is not set.
    Unset(String),
    /// `{{` without a well-formed `env.NAME }}` after it. Its text is not echoed: it may be part
    /// of a literal secret.
    Malformed,
}

/// Replaces each `{{ env.NAME }}` (spaces inside the braces optional) by the variable's value.
fn expand(text: &str, env: Env<'_>) -> (String, Vec<Flaw>) {
    let mut out = String::with_capacity(text.len());
    let mut flaws = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            flaws.push(Flaw::Malformed);
            return (out, flaws);
        };
        match variable_name(&after[..close]) {
            Some(name) => match env(name) {
                Some(value) => out.push_str(&value),
                None => flaws.push(Flaw::Unset(name.to_string())),
            },
            None => flaws.push(Flaw::Malformed),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    (out, flaws)
}

/// `NAME` from ` env.NAME `, if NAME is a valid variable name.
fn variable_name(inner: &str) -> Option<&str> {
    let name = inner.trim().strip_prefix("env.")?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/nexus".to_string())
    }

    #[test]
    fn placeholders_expand_with_or_without_spaces() {
        let (out, flaws) = expand("{{env.HOME_DIR}}/a:{{ env.HOME_DIR }}", &env);
        assert_eq!(out, "/home/nexus/a:/home/nexus");
        assert!(flaws.is_empty());
    }

    #[test]
    fn every_unset_variable_is_reported() {
        let (out, flaws) = expand("{{ env.A }}-{{ env.B }}", &env);
        assert_eq!(out, "-");
        assert_eq!(flaws, [Flaw::Unset("A".into()), Flaw::Unset("B".into())]);
    }

    #[test]
    fn other_placeholders_are_malformed() {
        assert_eq!(expand("{{ ENV.A }}", &env).1, [Flaw::Malformed]);
        assert_eq!(expand("{{ env.A-B }}", &env).1, [Flaw::Malformed]);
        assert_eq!(
            expand("x{{ env.A", &env),
            ("x".to_string(), vec![Flaw::Malformed])
        );
    }

    #[test]
    fn arrays_and_inline_tables_are_expanded() {
        let text = "cmd = [\"run\", \"{{ env.HOME_DIR }}\"]\nenv = { K = \"{{ env.NOPE }}\" }\n";
        let mut doc = DeTable::parse(text).unwrap().into_inner();
        let mut problems = Problems::new(std::path::Path::new("n.toml"), text);
        expand_table(&mut doc, "", &env, &mut problems);
        let cmd = doc.get("cmd").unwrap().get_ref().as_array().unwrap();
        assert_eq!(cmd[1].get_ref().as_str(), Some("/home/nexus"));
        let err = problems.into_error().to_string();
        assert_eq!(
            err,
            "n.toml:2:13: env.K: environment variable NOPE is not set; \
             export it or set it in the service's environment\n1 problem in n.toml"
        );
    }
}
