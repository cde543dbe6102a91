//! Configuration problems: where (file, `line:col`, key path), what is wrong, and what to do.
//!
//! Resolution never stops at the first problem: [`Problems`] collects them all, then becomes one
//! [`ConfigError`] listing every problem, so a user fixes a file in one pass.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::template::Substitution;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {}", path.display(), super::bounded::explain(source))]
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
    /// Allowed but suspicious settings.
    warnings: Vec<Problem>,
    /// Spans of values that referenced an unset variable. Their text was expanded with the
    /// variable empty, so anything else wrong with them is a consequence already reported.
    unset: Vec<Range<usize>>,
    /// Values with something put in for a placeholder: no message may show what was put in.
    templated: Vec<Templated>,
}

/// A string value after `{{ env.X }}` / `{{ credential.X }}` expansion.
struct Templated {
    span: Range<usize>,
    /// As written in the file, placeholders and all.
    written: String,
    /// After expansion.
    expanded: String,
    substituted: Vec<Substitution>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            list: Vec::new(),
            warnings: Vec::new(),
            unset: Vec::new(),
            templated: Vec::new(),
        }
    }

    /// Records a problem at `span` unless it lies in a value already blamed on an unset variable.
    pub(crate) fn push(&mut self, span: Range<usize>, key: &str, message: String, fix: &str) {
        if let Some(problem) = self.problem(span, key, message, fix) {
            self.list.push(problem);
        }
    }

    /// Records a warning: allowed, but probably not meant (`nexus check` shows it, the
    /// gateway logs it at start).
    pub(crate) fn warn(&mut self, span: Range<usize>, key: &str, message: String, fix: &str) {
        if let Some(problem) = self.problem(span, key, message, fix) {
            self.warnings.push(problem);
        }
    }

    /// The warnings recorded so far, in file order.
    pub(crate) fn take_warnings(&mut self) -> Vec<Problem> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|p| (p.line, p.column));
        warnings
    }

    fn problem(
        &self,
        span: Range<usize>,
        key: &str,
        message: String,
        fix: &str,
    ) -> Option<Problem> {
        if self
            .unset
            .iter()
            .any(|u| u.start <= span.start && span.end <= u.end)
        {
            return None;
        }
        let message = self.redact(&span, message);
        let fix = self.redact_fix(fix);
        let (line, column) = self.locate(span.start);
        Some(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
            fix,
        })
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

    /// Records that the value at `span`, written as `written`, expanded to `expanded` by putting
    /// in `substituted`.
    pub(crate) fn templated(
        &mut self,
        span: Range<usize>,
        written: &str,
        expanded: &str,
        substituted: Vec<Substitution>,
    ) {
        self.templated.push(Templated {
            span,
            written: written.to_string(),
            expanded: expanded.to_string(),
            substituted,
        });
    }

    /// `message` without any value put in for a placeholder: an expanded value it quotes is
    /// shown as written (`invalid socket address `{{ env.ADDR }}``), and a message that still
    /// shows part of one is replaced by a generic one naming where the value came from. Any
    /// message is checked, not only those at a templated value: a cross-key rule may quote it.
    fn redact(&self, span: &Range<usize>, message: String) -> String {
        let message = self.as_written(message);
        let leaked = self.leaked(&message);
        if leaked.is_empty() {
            return message;
        }
        let here = self
            .templated
            .iter()
            .find(|value| value.span.start <= span.start && span.end <= value.span.end);
        let expected = message
            .rfind("expected ")
            .map(|at| message[at..].trim_end_matches(')'))
            .filter(|tail| self.leaked(tail).is_empty())
            .map(|tail| format!(" ({tail})"))
            .unwrap_or_default();
        let sources = sources(here.into_iter().chain(leaked));
        format!("the value from {sources} is not valid here{expected}")
    }

    /// Like [`Self::redact`], for the fix.
    fn redact_fix(&self, fix: &str) -> String {
        let fix = self.as_written(fix.to_string());
        match self.leaked(&fix) {
            leaked if leaked.is_empty() => fix,
            leaked => format!("fix the value of {}", sources(leaked.into_iter())),
        }
    }

    /// `text` with each expanded value it quotes shown as written.
    fn as_written(&self, mut text: String) -> String {
        for value in &self.templated {
            // A short value could match unrelated text; `leaked` catches it instead.
            if value.expanded.chars().count() < LONG_ENOUGH {
                continue;
            }
            let escaped = value.expanded.escape_debug().to_string();
            text = text
                .replace(&value.expanded, &value.written)
                .replace(&escaped, &value.written);
        }
        text
    }

    /// The templated values `text` shows a part of.
    fn leaked(&self, text: &str) -> Vec<&Templated> {
        let shown = |value: &&Templated| value.substituted.iter().any(|s| shows(text, &s.value));
        self.templated.iter().filter(shown).collect()
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

/// `env.A, credential.B`: where the values came from.
fn sources<'t>(values: impl Iterator<Item = &'t Templated>) -> String {
    let mut sources: Vec<&str> = values
        .flat_map(|value| value.substituted.iter().map(|s| s.source.as_str()))
        .collect();
    sources.sort_unstable();
    sources.dedup();
    sources.join(", ")
}

/// Characters of a secret that, shown, count as showing it.
const LONG_ENOUGH: usize = 6;

/// Whether `message` shows `secret` or a part of it long enough to matter ([`LONG_ENOUGH`]
/// characters, or all of a shorter one), as written or as escaped in a quoted string.
fn shows(message: &str, secret: &str) -> bool {
    [secret.to_string(), secret.escape_debug().to_string()]
        .iter()
        .any(|form| {
            let chars: Vec<char> = form.chars().collect();
            !chars.is_empty()
                && chars
                    .windows(chars.len().min(LONG_ENOUGH))
                    .any(|part| message.contains(&part.iter().collect::<String>()))
        })
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

    fn substitution(source: &str, value: &str) -> Substitution {
        Substitution {
            source: source.into(),
            value: value.into(),
        }
    }

    #[test]
    fn an_expanded_value_is_shown_as_written() {
        let mut p = problems("a = \"{{ env.ADDR }}\"\n");
        let secret = "sk-live-0123456789";
        p.templated(
            4..19,
            "{{ env.ADDR }}",
            secret,
            vec![substitution("env.ADDR", secret)],
        );
        p.push(
            4..19,
            "a",
            format!("invalid socket address `{secret}`"),
            "fix",
        );
        assert_eq!(p.list[0].message, "invalid socket address `{{ env.ADDR }}`");
    }

    #[test]
    fn a_message_showing_part_of_a_secret_is_replaced() {
        let mut p = problems("url = \"https://{{ env.T }}@h\"\n");
        let secret = "tok\"en-0123456789";
        let expanded = format!("https://{secret}@h");
        p.templated(
            6..28,
            "https://{{ env.T }}@h",
            &expanded,
            vec![substitution("env.T", secret)],
        );
        // A quoted part of the value, escaped as serde quotes strings.
        let message = format!(
            "invalid host \"{}\", expected a URL",
            &secret.escape_debug().to_string()[..9]
        );
        p.push(6..28, "url", message, "fix");
        assert_eq!(
            p.list[0].message,
            "the value from env.T is not valid here (expected a URL)"
        );
        // Elsewhere in the file too.
        p.push(0..1, "x", "short tok\\\"en-0 here".into(), "fix");
        assert_eq!(p.list[1].message, "the value from env.T is not valid here");
    }

    #[test]
    fn a_short_secret_is_never_shown_either() {
        let mut p = problems("a = \"{{ env.P }}\"\n");
        p.templated(
            4..15,
            "{{ env.P }}",
            "x9",
            vec![substitution("env.P", "x9")],
        );
        p.push(4..15, "a", "invalid socket address `x9`".into(), "fix");
        assert_eq!(p.list[0].message, "the value from env.P is not valid here");
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
