//! Configuration problems: where (file, `line:col`, key path), what is wrong, and what to do.
//!
//! Resolution never stops at the first problem: [`Problems`] collects them all, then becomes one
//! [`ConfigError`] listing every problem, so a user fixes a file in one pass.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Unreadable {
        /// The file named by the caller.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file was read, but it is not a valid configuration.
    #[error("{}", render(file, problems))]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// Every problem found, in the order found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found in the file (empty when the file could not be read).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Unreadable { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(file: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for problem in problems {
        out.push_str(&problem.to_string());
        out.push('\n');
    }
    let noun = if problems.len() == 1 {
        "problem"
    } else {
        "problems"
    };
    out.push_str(&format!("{} {noun} in {}", problems.len(), file.display()));
    out
}

/// One thing wrong in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// Dotted key path, e.g. `mcp.servers.secure.tls.verify_certs`; empty for TOML syntax errors
    /// and unknown top-level keys.
    pub key: String,
    /// What is wrong. Never contains a secret value.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}; {}", self.message, self.fix)
    }
}

/// Keys whose values are secrets: a type error on them must not echo the value.
const SECRET_KEYS: &[&str] = &["token", "pin", "key_password", "client_key_password"];

/// Collects the problems of one file, turning byte spans into `line:col`.
pub(crate) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<Problem>,
    /// Spans of values that referenced an unset variable. Their text was expanded with the
    /// variable empty, so anything else wrong with them is a consequence already reported.
    unset: Vec<Range<usize>>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            list: Vec::new(),
            unset: Vec::new(),
        }
    }

    /// Records a problem at `span` unless it lies in a value already blamed on an unset variable.
    pub(crate) fn push(&mut self, span: Range<usize>, key: &str, message: String, fix: &str) {
        if self
            .unset
            .iter()
            .any(|u| u.start <= span.start && span.end <= u.end)
        {
            return;
        }
        let (line, column) = self.locate(span.start);
        self.list.push(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
            fix: fix.to_string(),
        });
    }

    /// Records that the value at `span` names the unset environment variable `name`.
    pub(crate) fn unset_variable(&mut self, span: Range<usize>, key: &str, name: &str) {
        let message = format!("environment variable {name} is not set");
        self.push(
            span.clone(),
            key,
            message,
            "export it or set it in the service's environment",
        );
        self.unset.push(span);
    }

    /// Records that the value at `span` names a secret that could not be read (a systemd
    /// credential); like an unset variable, anything else wrong with the value is a follow-on.
    pub(crate) fn unavailable(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: String,
        fix: &str,
    ) {
        self.push(span.clone(), key, message, fix);
        self.unset.push(span);
    }

    /// Records a serde error, rewording serde's phrasing into the user's terms (keys, values).
    pub(crate) fn schema(&mut self, span: Range<usize>, key: &str, serde_message: &str) {
        let (message, fix) = reword(key, serde_message);
        self.push(span, key, message, fix);
    }

    /// `value` if nothing was wrong, else every problem in file order.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }

    /// Every problem recorded, in file order.
    pub(crate) fn into_error(mut self) -> ConfigError {
        self.list.sort_by_key(|p| (p.line, p.column));
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            problems: self.list,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn locate(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }
}

/// Maps a serde message to (message, fix). `key` is the path of the failing value.
fn reword(key: &str, serde_message: &str) -> (String, &'static str) {
    if let Some(rest) = serde_message.strip_prefix("unknown field `") {
        let (name, expected) = split_expected(rest);
        let message = match expected.strip_prefix("expected ") {
            Some(list) => format!("unknown key `{name}` (expected {list})"),
            None => format!("unknown key `{name}` (this table takes no keys)"),
        };
        return (message, "fix the spelling or remove it");
    }
    if let Some(rest) = serde_message.strip_prefix("unknown variant `") {
        let (value, expected) = split_expected(rest);
        return (
            format!("unknown value `{value}` ({expected})"),
            "use one of the expected values",
        );
    }
    if let Some(rest) = serde_message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (format!("missing key `{name}`"), "add it");
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    if SECRET_KEYS.contains(&last) {
        return ("must be a string".to_string(), "quote the value");
    }
    (serde_message.to_string(), "fix the value")
}

/// Splits "x`, expected one of `a`, `b`" into ("x", "expected one of `a`, `b`").
fn split_expected(rest: &str) -> (&str, &str) {
    rest.split_once("`, ")
        .unwrap_or((rest.trim_end_matches('`'), ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Problems<'_> {
        Problems::new(Path::new("nexus.toml"), text)
    }

    #[test]
    fn spans_become_one_based_line_and_column() {
        let mut p = problems("a = 1\nbé = \"x\"\n");
        p.push(12..13, "bé", "bad".into(), "fix it");
        let err = p.into_error();
        assert_eq!(
            err.to_string(),
            "nexus.toml:2:6: bé: bad; fix it\n1 problem in nexus.toml"
        );
    }

    #[test]
    fn unknown_fields_and_variants_are_reworded() {
        let (m, fix) = reword(
            "a.tls",
            "unknown field `verify_cert`, expected `verify_certs` or `x`",
        );
        assert_eq!(
            m,
            "unknown key `verify_cert` (expected `verify_certs` or `x`)"
        );
        assert_eq!(fix, "fix the spelling or remove it");
        let (m, _) = reword(
            "mcp.tools",
            "unknown variant `all`, expected `search` or `direct`",
        );
        assert_eq!(m, "unknown value `all` (expected `search` or `direct`)");
        assert_eq!(
            reword("x", "missing field `limit`").0,
            "missing key `limit`"
        );
    }

    #[test]
    fn type_errors_on_secrets_do_not_echo_the_value() {
        let (m, _) = reword(
            "mcp.servers.a.auth.token",
            "invalid type: integer `1234`, expected a string",
        );
        assert_eq!(m, "must be a string");
    }

    #[test]
    fn problems_inside_an_unset_variable_value_are_follow_ons() {
        let mut p = problems("url = \"{{ env.URL }}\"\n");
        p.unset_variable(6..21, "url", "URL");
        p.push(6..21, "url", "invalid URL".into(), "fix it");
        assert_eq!(p.list.len(), 1);
        assert_eq!(p.list[0].message, "environment variable URL is not set");
    }
}
