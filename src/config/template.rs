//! `{{ env.NAME }}` and `{{ credential.NAME }}` expansion in every string value of the parsed
//! document.
//!
//! `{{ credential.NAME }}` is the content of the file `NAME` in `$CREDENTIALS_DIRECTORY`, where
//! systemd puts the secrets of `LoadCredential=NAME:/etc/nexus/credentials/NAME`; one trailing
//! newline (`\n` or `\r\n`) is removed. The directory is looked up through the same injected
//! environment as `{{ env.X }}`, so tests point it at a temporary directory.
//!
//! Expansion runs on toml's span-carrying document tree before any typed deserialization, so it
//! reaches every string (array elements, inline-table values, enum-like and duration values) while
//! each value keeps the span of the text the user wrote. An unset variable is recorded, not fatal:
//! the value is expanded with the variable empty, and [`Problems`] treats anything else wrong
//! with that value as a follow-on of the unset variable.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::bounded;
use super::diagnostics::Problems;

/// Looks up an environment variable; injected so tests never touch the process environment.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A lookup key no real variable can have (NUL): set by [`super::check_without_credentials`],
/// it makes credentials unchecked, `{{ credential.NAME }}` expanding to an empty string.
pub(crate) const UNCHECKED_CREDENTIALS: &str = "\0nexus-unchecked-credentials";

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
            let (expanded, flaws, substituted) = expand(text, env);
            if !substituted.is_empty() {
                problems.templated(span.clone(), text, &expanded, substituted);
            }
            for flaw in flaws {
                match flaw {
                    Flaw::Unset(name) => problems.unset_variable(span.clone(), path, &name),
                    Flaw::Credential(name, missing) => {
                        let (message, fix) = missing.explain(&name);
                        problems.unavailable(span.clone(), path, message, &fix);
                    }
                    Flaw::Malformed => problems.push(
                        span.clone(),
                        path,
                        "`{{` starts a placeholder other than `{{ env.NAME }}` or \
                         `{{ credential.NAME }}`"
                            .to_string(),
                        "write `{{ env.NAME }}` to read an environment variable, \
                         `{{ credential.NAME }}` to read a systemd credential",
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
    /// `{{ credential.NAME }}` that could not be read.
    Credential(String, Missing),
    /// `{{` without a well-formed `env.NAME }}` after it. Its text is not echoed: it may be part
    /// of a literal secret.
    Malformed,
}

/// Why a credential could not be read. Never carries the secret.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    /// `$CREDENTIALS_DIRECTORY` is not set: not started by systemd, or no credential loaded.
    NoDirectory,
    /// No file of that name in the directory.
    NotLoaded(PathBuf),
    /// The file exists but reading it failed.
    Unreadable(PathBuf, String),
}

impl Missing {
    /// (message, fix) for credential `name`.
    fn explain(&self, name: &str) -> (String, String) {
        let load = format!("LoadCredential={name}:/etc/nexus/credentials/{name}");
        match self {
            Missing::NoDirectory => (
                format!(
                    "credential {name} cannot be read: $CREDENTIALS_DIRECTORY is not set (nexus \
                     was not started by systemd with LoadCredential=)"
                ),
                format!(
                    "run it from the nexus unit with `{load}` (systemctl edit nexus), or export \
                     CREDENTIALS_DIRECTORY=DIR with a file {name} in DIR"
                ),
            ),
            Missing::NotLoaded(dir) => (
                format!("credential {name} is not in {}", dir.display()),
                format!(
                    "add `{load}` to the unit (systemctl edit nexus), then systemctl restart nexus"
                ),
            ),
            Missing::Unreadable(file, error) => (
                format!(
                    "credential {name} cannot be read from {}: {error}",
                    file.display()
                ),
                "check the credential file".to_string(),
            ),
        }
    }
}

/// Reads credential `name`: the file of that name in `$CREDENTIALS_DIRECTORY`, one trailing
/// newline removed.
fn credential(name: &str, env: Env<'_>) -> Result<String, Missing> {
    if env(UNCHECKED_CREDENTIALS).is_some() {
        return Ok(String::new());
    }
    let dir = env("CREDENTIALS_DIRECTORY")
        .filter(|dir| !dir.is_empty())
        .ok_or(Missing::NoDirectory)?;
    let file = Path::new(&dir).join(name);
    match bounded::read_to_string(&file, bounded::Kind::Secret) {
        Ok(mut value) => {
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            Ok(value)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => Err(Missing::NotLoaded(dir.into())),
        Err(error) => Err(Missing::Unreadable(file, error.to_string())),
    }
}

/// A value put in for a placeholder: a secret, perhaps, so messages must not show it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Substitution {
    /// Where it came from: `env.NAME` or `credential.NAME`.
    pub source: String,
    /// What was put in.
    pub value: String,
}

/// Replaces each `{{ env.NAME }}` by the variable's value and each `{{ credential.NAME }}` by
/// the credential's (spaces inside the braces optional); also returns what was put in.
fn expand(text: &str, env: Env<'_>) -> (String, Vec<Flaw>, Vec<Substitution>) {
    let mut out = String::with_capacity(text.len());
    let mut flaws = Vec::new();
    let mut substituted = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            flaws.push(Flaw::Malformed);
            return (out, flaws, substituted);
        };
        match placeholder(&after[..close]) {
            Some(Placeholder::Env(name)) => match env(name) {
                Some(value) => put(&mut out, &mut substituted, format!("env.{name}"), value),
                None => flaws.push(Flaw::Unset(name.to_string())),
            },
            Some(Placeholder::Credential(name)) => match credential(name, env) {
                Ok(value) => put(
                    &mut out,
                    &mut substituted,
                    format!("credential.{name}"),
                    value,
                ),
                Err(missing) => flaws.push(Flaw::Credential(name.to_string(), missing)),
            },
            None => flaws.push(Flaw::Malformed),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    (out, flaws, substituted)
}

fn put(out: &mut String, substituted: &mut Vec<Substitution>, source: String, value: String) {
    out.push_str(&value);
    substituted.push(Substitution { source, value });
}

/// What a well-formed placeholder reads.
enum Placeholder<'a> {
    Env(&'a str),
    Credential(&'a str),
}

/// The placeholder in ` env.NAME ` or ` credential.NAME `, if NAME is valid: a variable name, or
/// a credential name (letters, digits, `_`, `-`, `.`; not starting with `.`, so never a path).
fn placeholder(inner: &str) -> Option<Placeholder<'_>> {
    let inner = inner.trim();
    if let Some(name) = inner.strip_prefix("env.") {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return valid.then_some(Placeholder::Env(name));
    }
    let name = inner.strip_prefix("credential.")?;
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid.then_some(Placeholder::Credential(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/nexus".to_string())
    }

    #[test]
    fn placeholders_expand_with_or_without_spaces() {
        let (out, flaws, _) = expand("{{env.HOME_DIR}}/a:{{ env.HOME_DIR }}", &env);
        assert_eq!(out, "/home/nexus/a:/home/nexus");
        assert!(flaws.is_empty());
    }

    #[test]
    fn every_unset_variable_is_reported() {
        let (out, flaws, _) = expand("{{ env.A }}-{{ env.B }}", &env);
        assert_eq!(out, "-");
        assert_eq!(flaws, [Flaw::Unset("A".into()), Flaw::Unset("B".into())]);
    }

    #[test]
    fn other_placeholders_are_malformed() {
        assert_eq!(expand("{{ ENV.A }}", &env).1, [Flaw::Malformed]);
        assert_eq!(expand("{{ env.A-B }}", &env).1, [Flaw::Malformed]);
        let (out, flaws, _) = expand("x{{ env.A", &env);
        assert_eq!((out.as_str(), &flaws[..]), ("x", &[Flaw::Malformed][..]));
    }

    #[test]
    fn credentials_are_read_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hsm-pin"), "1234\n").unwrap();
        std::fs::write(dir.path().join("api.token"), "tok\r\n").unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let env = move |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| root.clone());
        let (out, flaws, _) = expand("{{credential.hsm-pin}}:{{ credential.api.token }}", &env);
        assert_eq!(out, "1234:tok");
        assert!(flaws.is_empty());
        let (_, flaws, _) = expand("{{ credential.nope }}", &env);
        assert_eq!(
            flaws,
            [Flaw::Credential(
                "nope".into(),
                Missing::NotLoaded(dir.path().into())
            )]
        );
    }

    #[test]
    fn credentials_need_the_directory_and_a_plain_name() {
        let (_, flaws, _) = expand("{{ credential.pin }}", &env);
        assert_eq!(
            flaws,
            [Flaw::Credential("pin".into(), Missing::NoDirectory)]
        );
        assert_eq!(expand("{{ credential.../x }}", &env).1, [Flaw::Malformed]);
        assert_eq!(expand("{{ credential.a/b }}", &env).1, [Flaw::Malformed]);
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
