//! Raw input to the resolved [`model`](super::model), collecting every problem before failing.
//!
//! serde stops at its first error, so the document is parsed once into toml's span-carrying tree
//! and each top-level section, and each `[mcp.servers.NAME]`, is deserialized on its own: one bad
//! server does not hide the problems of another. Cross-key rules and file checks follow, each
//! recorded as a problem with the key's position.

mod downstream;
mod files;
mod server;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostics::{ConfigError, Problems};
use super::model::{Config, Mcp, PrefixMode, ToolsMode};
use super::raw::{RawDuration, RawMcp, RawPrefix, RawTools};
use super::template::{self, Env, join};

/// `[mcp] call_timeout` when not set.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses, expands and resolves `text`, read from `path`.
pub(crate) fn resolve(text: &str, path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(path, text);
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc.into_inner(),
        Err(error) => {
            syntax_problem(&mut problems, text, &error);
            return Err(problems.into_error());
        }
    };
    template::expand_table(&mut doc, "", env, &mut problems);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Cx { problems, base };
    let config = cx.document(doc, path);
    cx.problems.finish(config)
}

/// Reports a TOML syntax error. A duplicate table gets its own wording: it is how TOML
/// rejects two servers with the same name.
fn syntax_problem(problems: &mut Problems<'_>, text: &str, error: &toml::de::Error) {
    let span = error.span().unwrap_or(0..0);
    if error.message() != "duplicate key" {
        let message = format!("invalid TOML: {}", error.message());
        problems.push(span, "", message, "fix the TOML syntax");
        return;
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let Some(header) = line.strip_prefix('[') else {
        let message = format!(
            "key `{}` is set twice in the same table",
            &text[span.clone()]
        );
        problems.push(span, "", message, "remove one of them");
        return;
    };
    let table: String = header
        .trim_matches(['[', ']'])
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match table.strip_prefix("mcp.servers.") {
        Some(name) if !name.contains('.') => problems.push(
            span,
            &table,
            format!("server `{name}` is defined twice (TOML allows each table once)"),
            "rename one of the two servers, or merge them into one table",
        ),
        _ => problems.push(
            span,
            &table,
            format!("table `[{table}]` is defined twice"),
            "merge the two tables",
        ),
    }
}

/// Resolution state: the problems so far and the directory relative paths are resolved against.
pub(crate) struct Cx<'a> {
    problems: Problems<'a>,
    base: PathBuf,
}

impl Cx<'_> {
    fn document(&mut self, doc: DeTable<'_>, path: &Path) -> Config {
        let (mut server, mut pkcs11, mut mcp) = (None, None, None);
        for (key, value) in doc {
            match key.get_ref().as_ref() {
                "server" => server = Some(value),
                "pkcs11" => pkcs11 = Some(value),
                "mcp" => mcp = Some(value),
                other => self.problems.push(
                    key.span(),
                    "",
                    format!("unknown key `{other}` (expected `server`, `pkcs11` or `mcp`)"),
                    "fix the spelling or remove it",
                ),
            }
        }
        Config {
            path: path.to_path_buf(),
            server: self.server(server),
            pkcs11: self.pkcs11(pkcs11),
            mcp: self.mcp(mcp),
        }
    }

    /// Deserializes one value; on error records it at the failing key and returns `None`.
    fn section<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        let span = value.span();
        match serde_path_to_error::deserialize(ValueDeserializer::from(value)) {
            Ok(raw) => Some(raw),
            Err(error) => {
                let inner = error.inner();
                // serde_path_to_error ends the path of an unknown key with the key itself; the
                // message names it, and the path should name the table it appeared in.
                let unknown = inner.message().starts_with("unknown field");
                let key = error_path(path, error.path(), unknown);
                self.problems
                    .schema(inner.span().unwrap_or(span), &key, inner.message());
                None
            }
        }
    }

    fn mcp(&mut self, value: Option<Spanned<DeValue<'_>>>) -> Mcp {
        let servers = value
            .as_ref()
            .and_then(|v| v.get_ref().get("servers"))
            .cloned();
        let raw: RawMcp = value
            .and_then(|v| self.section(v, "mcp"))
            .unwrap_or_default();
        let call_timeout = self
            .timeout(raw.call_timeout, "mcp.call_timeout")
            .unwrap_or(DEFAULT_CALL_TIMEOUT);
        Mcp {
            enabled: raw.enabled.unwrap_or(true),
            path: self.url_path(raw.path, "mcp.path", "/mcp"),
            tools: match raw.tools {
                Some(RawTools::Direct) => ToolsMode::Direct,
                Some(RawTools::Search) | None => ToolsMode::Search,
            },
            prefix: match raw.prefix {
                Some(RawPrefix::WhenNeeded) => PrefixMode::WhenNeeded,
                Some(RawPrefix::Always) | None => PrefixMode::Always,
            },
            call_timeout,
            servers: self.servers(servers, call_timeout),
        }
    }

    /// An HTTP path such as `/mcp`, or `default` when not set.
    fn url_path(&mut self, value: Option<Spanned<String>>, key: &str, default: &str) -> String {
        let Some(value) = value else {
            return default.to_string();
        };
        if !value.get_ref().starts_with('/') {
            let message = format!("path `{}` must start with `/`", value.get_ref());
            self.problems.push(
                value.span(),
                key,
                message,
                &format!("write it like \"{default}\""),
            );
        }
        value.into_inner()
    }

    /// A duration that must be positive; `None` when not set.
    fn timeout(&mut self, value: Option<Spanned<RawDuration>>, key: &str) -> Option<Duration> {
        let value = value?;
        if value.get_ref().0.is_zero() {
            let fix = "use a positive duration such as \"30s\"";
            self.problems.push(
                value.span(),
                key,
                "must be longer than zero".to_string(),
                fix,
            );
        }
        Some(value.get_ref().0)
    }
}

/// The dotted key path of a serde error under `base`, without serde_spanned's internal keys.
fn error_path(base: &str, path: &serde_path_to_error::Path, drop_last: bool) -> String {
    let mut segments: Vec<String> = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } if !key.starts_with("$__") => {
                Some(key.clone())
            }
            _ => None,
        })
        .collect();
    if drop_last {
        segments.pop();
    }
    segments.iter().fold(base.to_string(), |acc, segment| {
        if segment.starts_with('[') {
            acc + segment
        } else {
            join(&acc, segment)
        }
    })
}
