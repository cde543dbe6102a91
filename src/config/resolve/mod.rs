//! Raw input to the resolved [`model`](super::model), collecting every problem before failing.
//!
//! serde stops at its first error, so the document is parsed once into toml's span-carrying tree
//! and each top-level section, and each `[mcp.servers.NAME]`, is deserialized on its own: one bad
//! server does not hide the problems of another. Cross-key rules and file checks follow, each
//! recorded as a problem with the key's position.

mod access;
mod audit;
mod browser;
mod downstream;
mod files;
mod front_limits;
mod limits;
mod oauth;
mod server;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ClientIdentification, Pkcs11Defaults};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostics::{ConfigError, Problems};
use super::model::{Config, Limits, Mcp, PrefixMode, ToolsMode};
use super::raw::{RawDuration, RawLimits, RawMcp, RawPrefix, RawSize, RawTools};
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
    let credentials = env("CREDENTIALS_DIRECTORY")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    let mut cx = Cx {
        problems,
        base,
        credentials,
        unchecked_credentials: env(template::UNCHECKED_CREDENTIALS).is_some(),
        pkcs11: Pkcs11Defaults::default(),
        oauth: false,
        identification: ClientIdentification::default(),
    };
    let mut config = cx.document(doc, path);
    config.warnings = cx.problems.take_warnings();
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

/// Resolution state: the problems so far and the directories relative paths are resolved against.
pub(crate) struct Cx<'a> {
    problems: Problems<'a>,
    base: PathBuf,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`): relative secret files live there.
    credentials: Option<PathBuf>,
    /// Relative secret files in `credentials` are not checked (see `check_without_credentials`).
    unchecked_credentials: bool,
    /// `[pkcs11]`, resolved first: every `pkcs11:` key and certificate carries it.
    pkcs11: Pkcs11Defaults,
    /// Whether `[server.oauth]` is set (resolved before `[mcp]`): `auth.type = "forward"` needs it.
    oauth: bool,
    /// `[server.client_identification]`, resolved before `[mcp]`: access rules name its groups.
    identification: ClientIdentification,
}

impl Cx<'_> {
    fn document(&mut self, doc: DeTable<'_>, path: &Path) -> Config {
        let (mut server, mut pkcs11, mut mcp, mut audit) = (None, None, None, None);
        for (key, value) in doc {
            match key.get_ref().as_ref() {
                "server" => server = Some(value),
                "pkcs11" => pkcs11 = Some(value),
                "mcp" => mcp = Some(value),
                "audit" => audit = Some(value),
                other => self.problems.push(
                    key.span(),
                    "",
                    format!(
                        "unknown key `{other}` (expected `server`, `pkcs11`, `mcp` or `audit`)"
                    ),
                    "fix the spelling or remove it",
                ),
            }
        }
        self.pkcs11 = self.pkcs11(pkcs11);
        Config {
            path: path.to_path_buf(),
            server: self.server(server),
            pkcs11: self.pkcs11.clone(),
            mcp: self.mcp(mcp),
            audit: self.audit(audit),
            warnings: Vec::new(),
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
                let key = error_path(path, error.path(), inner.message());
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
        let limits = self.limits(raw.limits, Limits::default(), "mcp.limits");
        let (servers, access) = self.servers(servers, call_timeout, limits);
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
            limits,
            servers,
            access,
        }
    }

    /// `raw` over `base`, key by key.
    fn limits(&mut self, raw: Option<RawLimits>, base: Limits, key: &str) -> Limits {
        let Some(raw) = raw else { return base };
        let notifications = raw.notifications_per_second.map(|rate| {
            let value = *rate.get_ref();
            if value == 0 {
                let key = join(key, "notifications_per_second");
                let fix = "allow at least 1 (progress and list changes are notifications)";
                self.zero_refused(rate.span(), &key, fix);
            }
            value
        });
        Limits {
            max_message_size: self
                .size(raw.max_message_size, &join(key, "max_message_size"))
                .unwrap_or(base.max_message_size),
            max_stdin_queue: self
                .size(raw.max_stdin_queue, &join(key, "max_stdin_queue"))
                .unwrap_or(base.max_stdin_queue),
            notifications_per_second: notifications.unwrap_or(base.notifications_per_second),
        }
    }

    /// A size of at least 1 KiB (smaller would refuse even `initialize`); `None` when not set.
    fn size(&mut self, value: Option<Spanned<RawSize>>, key: &str) -> Option<usize> {
        let value = value?;
        let bytes = usize::try_from(value.get_ref().0).unwrap_or(usize::MAX);
        if bytes < 1024 {
            let fix = "use a size of at least \"1KiB\", e.g. \"16MiB\"";
            self.problems.push(
                value.span(),
                key,
                format!("{bytes} bytes is too small"),
                fix,
            );
        }
        Some(bytes)
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

    /// Reports a 0 where `key` needs at least 1 (a limit of 0 would refuse everything).
    fn zero_refused(&mut self, span: std::ops::Range<usize>, key: &str, fix: &str) {
        self.problems
            .push(span, key, "must be at least 1".to_string(), fix);
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
fn error_path(base: &str, path: &serde_path_to_error::Path, message: &str) -> String {
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
    // For a derived struct the path of an unknown key ends with the key itself; the message
    // names it, and the path should name the table it appeared in.
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    if unknown.is_some() && segments.last().map(String::as_str) == unknown {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{HttpProtocol, Transport};

    /// The problems (without the file name) reported for `text`, given a directory to resolve
    /// relative paths against.
    fn problems_in(dir: &Path, text: &str) -> Vec<String> {
        let file = dir.join("n.toml");
        let error = resolve(text, &file, &|_| None).expect_err("should be rejected");
        let prefix = format!("{}:", file.display());
        let lines = error.problems().iter().map(|p| p.to_string());
        lines
            .map(|line| line.trim_start_matches(&prefix).to_string())
            .collect()
    }

    fn problems(text: &str) -> Vec<String> {
        problems_in(Path::new("/nonexistent"), text)
    }

    #[test]
    fn unknown_top_level_keys_and_mcp_keys_list_what_is_accepted() {
        assert_eq!(
            problems("[mcp.server.a]\ncmd = [\"x\"]\n[serverr]\n"),
            [
                "1:6: mcp: unknown key `server` (expected one of `servers`, `enabled`, `path`, `tools`, \
                 `prefix`, `call_timeout`, `limits`); fix the spelling or remove it",
                "3:2: unknown key `serverr` (expected `server`, `pkcs11`, `mcp` or `audit`); fix the spelling or remove it",
            ]
        );
    }

    #[test]
    fn a_duplicate_key_is_not_mistaken_for_a_duplicate_server() {
        assert_eq!(
            problems("[mcp.servers.a]\nurl = \"https://a\"\nurl = \"https://b\"\n"),
            ["3:1: key `url` is set twice in the same table; remove one of them"]
        );
    }

    #[test]
    fn names_must_be_plain() {
        assert_eq!(
            problems(
                "[mcp.servers.\"my api\"]\ncmd = [\"x\"]\n[mcp.servers.\"\"]\ncmd = [\"x\"]\n"
            ),
            [
                "1:14: mcp.servers.\"my api\": server name `my api` may contain only letters, digits, `_` and `-` \
                 (it prefixes tool names); rename the server",
                "3:14: mcp.servers.\"\": server name is empty; name the server, e.g. [mcp.servers.github]",
            ]
        );
    }

    #[test]
    fn stdio_paths_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "[mcp.servers.a]\ncmd = [\"x\"]\ncwd = \"work\"\nstderr = { file = \"logs/a.log\" }\n";
        let shown = problems_in(dir.path(), text);
        let (work, logs) = (dir.path().join("work"), dir.path().join("logs"));
        assert_eq!(
            shown,
            [
                format!(
                    "3:7: mcp.servers.a.cwd: directory {} does not exist; create it or fix the path",
                    work.display()
                ),
                format!(
                    "4:10: mcp.servers.a.stderr: directory {} does not exist; create it or fix the path",
                    logs.display()
                ),
            ]
        );
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&logs).unwrap();
        let config = resolve(text, &dir.path().join("n.toml"), &|_| None).unwrap();
        let super::super::model::Transport::Stdio(stdio) = &config.mcp.servers[0].transport else {
            panic!("stdio expected")
        };
        assert_eq!(stdio.cwd.as_deref(), Some(work.as_path()));
        assert_eq!(
            stdio.stderr,
            super::super::model::StderrTarget::File(logs.join("a.log"))
        );
    }

    #[test]
    fn stderr_takes_a_name_or_a_file_table() {
        assert_eq!(
            problems("[mcp.servers.a]\ncmd = [\"x\"]\nstderr = \"log\"\n"),
            [
                "3:10: mcp.servers.a.stderr: unknown value `log` (expected \"null\", \"inherit\", \"pipe\" or \
              { file = \"path\" }); fix the value"
            ]
        );
        assert_eq!(
            problems("[mcp.servers.a]\ncmd = [\"x\"]\nstderr = { path = \"x\" }\n"),
            [
                "3:10: mcp.servers.a.stderr: unknown key `path` (expected `file`); fix the spelling or remove it"
            ]
        );
    }

    #[test]
    fn rate_limits_must_be_positive_and_complete() {
        let text = "[mcp.servers.a]\ncmd = [\"x\"]\n[mcp.servers.a.rate_limits]\nlimit = 0\ninterval = \"1m\"\n\
                    tools.search = { limit = 5 }\n";
        assert_eq!(
            problems(text),
            ["6:16: mcp.servers.a.rate_limits.tools.search: missing key `interval`; add it"]
        );
        let text =
            "[mcp.servers.a]\ncmd = [\"x\"]\nrate_limits = { limit = 0, interval = \"0s\" }\n";
        assert_eq!(
            problems(text),
            [
                "3:25: mcp.servers.a.rate_limits.limit: must be at least 1; set the number of calls allowed per interval",
                "3:39: mcp.servers.a.rate_limits.interval: must be longer than zero; use a positive duration such as \"30s\"",
            ]
        );
    }

    #[test]
    fn protocol_version_names_a_revision_the_gateway_speaks() {
        let config = |text: &str| resolve(text, Path::new("n.toml"), &|_| None).unwrap();
        let forced = config("[mcp.servers.a]\ncmd = [\"x\"]\nprotocol_version = \"2026-07-28\"\n");
        assert_eq!(forced.mcp.servers[0].protocol_version, Some("2026-07-28"));
        let chosen = config("[mcp.servers.a]\ncmd = [\"x\"]\n");
        assert_eq!(chosen.mcp.servers[0].protocol_version, None);
        assert_eq!(
            problems("[mcp.servers.a]\ncmd = [\"x\"]\nprotocol_version = \"2025-13-01\"\n"),
            [
                "3:20: mcp.servers.a.protocol_version: `2025-13-01` is not a protocol revision the gateway \
                 speaks; use one of 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05, or remove \
                 the key to let the gateway choose"
            ]
        );
        let text = "[mcp.servers.a]\nurl = \"http://h\"\nprotocol = \"sse\"\nprotocol_version = \"2026-07-28\"\n";
        assert_eq!(
            problems(text),
            [
                "3:12: mcp.servers.a.protocol: the HTTP+SSE transport has no 2026-07-28 revision; remove \
                 `protocol = \"sse\"`, or set a handshake revision such as \"2025-11-25\""
            ]
        );
    }

    #[test]
    fn message_url_is_an_sse_url() {
        let config = resolve(
            "[mcp.servers.a]\nurl = \"http://h/sse\"\nmessage_url = \"http://h/messages\"\n",
            Path::new("n.toml"),
            &|_| None,
        )
        .unwrap();
        let Transport::Http(http) = &config.mcp.servers[0].transport else {
            panic!("not HTTP")
        };
        assert_eq!(http.protocol, Some(HttpProtocol::Sse));
        assert_eq!(http.message_url.as_deref().unwrap(), "http://h/messages");
        let text = "[mcp.servers.a]\nurl = \"http://h/mcp\"\nprotocol = \"streamable-http\"\n\
                    message_url = \"http://h/m\"\n";
        assert_eq!(
            problems(text),
            [
                "4:15: mcp.servers.a.message_url: `message_url` applies only to HTTP+SSE servers; remove it, \
                 or set `protocol = \"sse\"`"
            ]
        );
        assert_eq!(
            problems("[mcp.servers.a]\ncmd = [\"x\"]\nmessage_url = \"http://h/m\"\n"),
            [
                "3:15: mcp.servers.a.message_url: `message_url` applies only to HTTP servers (`url`), and \
                 this is a stdio server; remove it, or use `url` instead of `cmd`"
            ]
        );
    }

    #[test]
    fn secrets_come_inline_or_from_a_file_not_both() {
        let text = "[pkcs11]\npin = \"1234\"\npin_file = \"/run/pin\"\n";
        assert_eq!(
            problems(text),
            ["3:12: pkcs11.pin_file: set either `pin` or `pin_file`, not both; remove one of them"]
        );
    }

    #[test]
    fn a_passphrase_without_a_client_key_is_reported() {
        let text = "[mcp.servers.a]\nurl = \"https://h\"\ntls = { client_key_password_file = \"/run/pw\" }\n";
        assert_eq!(
            problems(text),
            [
                "3:36: mcp.servers.a.tls.client_key_password_file: `client_key_password_file` is set without \
              `client_key_path`; set `client_cert_path` and `client_key_path`, or remove it"
            ]
        );
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert_eq!(
            problems("[mcp.servers.a]\nurl = \"ftp://h/mcp\"\n"),
            [
                "2:7: mcp.servers.a.url: must start with https:// or http://; use a URL such as \"https://mcp.example.com/mcp\""
            ]
        );
    }

    #[test]
    fn auth_needs_token_or_forward() {
        assert_eq!(
            problems("[mcp.servers.a]\nurl = \"https://h\"\n[mcp.servers.a.auth]\n"),
            [
                "3:1: mcp.servers.a.auth: [auth] sets neither `token` nor `type`; add `token = \"{{ env.NAME }}\"` or \
              `type = \"forward\"`, or remove [auth]"
            ]
        );
    }
}
