//! `[mcp.servers.NAME]`: one downstream each, stdio (`cmd`) or HTTP (`url`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::DeValue;

use super::Cx;
use crate::config::model::{
    AccessPolicy, Auth, Downstream, Http, HttpProtocol, Limits, RateLimit, ServerAccess,
    StderrTarget, Stdio, Transport,
};
use crate::config::raw::{
    RawAccessRule, RawAuth, RawAuthKind, RawClientTls, RawDownstream, RawDuration, RawProtocol,
    RawRateLimits, RawStderr,
};
use crate::config::template::join;
use crate::mcp::{era, version};

impl Cx<'_> {
    /// Every server of `[mcp.servers]`, in file order, and their access rules.
    pub(super) fn servers(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        timeout: Duration,
        limits: Limits,
    ) -> (Vec<Downstream>, AccessPolicy) {
        let mut access = AccessPolicy::default();
        let Some(value) = value else {
            return (Vec::new(), access);
        };
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            let fix = "declare each server as a table: [mcp.servers.NAME]";
            self.problems.push(
                span,
                "mcp.servers",
                "must be a table of servers".to_string(),
                fix,
            );
            return (Vec::new(), access);
        };
        let mut entries: Vec<_> = table.into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let servers = entries
            .into_iter()
            .filter_map(|(name, value)| {
                let name = Spanned::new(name.span(), name.into_inner().into_owned());
                let (server, rules) = self.downstream(name, value, timeout, limits)?;
                if let Some(rules) = rules {
                    access.servers.insert(server.name.clone(), rules);
                }
                Some(server)
            })
            .collect();
        (servers, access)
    }

    fn downstream(
        &mut self,
        name: Spanned<String>,
        value: Spanned<DeValue<'_>>,
        timeout: Duration,
        limits: Limits,
    ) -> Option<(Downstream, Option<ServerAccess>)> {
        let key = join("mcp.servers", name.get_ref());
        self.check_name(&name, &key);
        let raw: RawDownstream = self.section(value, &key)?;
        let rule = RawAccessRule {
            allow: raw.allow,
            deny: raw.deny,
            required_scopes: raw.required_scopes,
        };
        let entries = [raw.tools, raw.prompts, raw.resources];
        let access = self.server_access(&key, rule, entries);
        let call_timeout = self
            .timeout(raw.call_timeout, &join(&key, "call_timeout"))
            .unwrap_or(timeout);
        let protocol_version = raw
            .protocol_version
            .and_then(|value| self.protocol_version(value, &join(&key, "protocol_version")));
        if let (Some(version), Some(protocol)) = (protocol_version, &raw.protocol)
            && era::STATELESS_REVISIONS.contains(&version)
            && matches!(protocol.get_ref(), RawProtocol::Sse)
        {
            let message = format!("the HTTP+SSE transport has no {version} revision");
            let fix =
                "remove `protocol = \"sse\"`, or set a handshake revision such as \"2025-11-25\"";
            self.problems
                .push(protocol.span(), &join(&key, "protocol"), message, fix);
        }
        let rate_limit = raw
            .rate_limits
            .map(|limits| self.rate_limit(limits, &join(&key, "rate_limits")));
        let limits = self.limits(raw.limits, limits, &join(&key, "limits"));
        let transport = match (raw.cmd, raw.url) {
            (Some(cmd), None) => {
                let http_only = [
                    ("protocol", raw.protocol.map(|p| p.span())),
                    ("message_url", raw.message_url.map(|m| m.span())),
                    ("auth", raw.auth.map(|a| a.span())),
                    ("tls", raw.tls.map(|t| t.span())),
                ];
                self.reject(&key, true, &http_only);
                let mut stdio = self.stdio(&key, cmd, raw.env, raw.cwd, raw.stderr)?;
                stdio.inherit_env = raw.inherit_env.is_some_and(|inherit| *inherit.get_ref());
                Transport::Stdio(stdio)
            }
            (None, Some(url)) => {
                let stdio_only = [
                    ("env", raw.env.map(|e| e.span())),
                    ("cwd", raw.cwd.map(|c| c.span())),
                    ("stderr", raw.stderr.map(|s| s.span())),
                    ("inherit_env", raw.inherit_env.map(|i| i.span())),
                ];
                self.reject(&key, false, &stdio_only);
                let protocol = (raw.protocol, raw.message_url);
                Transport::Http(self.http(&key, url, protocol, raw.auth, raw.tls)?)
            }
            (cmd, _) => {
                self.not_one_transport(&name, &key, cmd.is_some());
                return None;
            }
        };
        let server = Downstream {
            name: name.into_inner(),
            transport,
            rate_limit,
            call_timeout,
            protocol_version,
            limits,
        };
        Some((server, access))
    }

    /// A revision the gateway speaks, as one of its own constants.
    fn protocol_version(&mut self, value: Spanned<String>, key: &str) -> Option<&'static str> {
        let known = version::HANDSHAKE_REVISIONS
            .iter()
            .chain(era::STATELESS_REVISIONS)
            .find(|known| **known == value.get_ref().as_str());
        if known.is_none() {
            let mut revisions: Vec<&str> = era::STATELESS_REVISIONS.to_vec();
            revisions.extend(version::HANDSHAKE_REVISIONS);
            let message = format!(
                "`{}` is not a protocol revision the gateway speaks",
                value.get_ref()
            );
            let fix = format!(
                "use one of {}, or remove the key to let the gateway choose",
                revisions.join(", ")
            );
            self.problems.push(value.span(), key, message, &fix);
        }
        known.copied()
    }

    fn not_one_transport(&mut self, name: &Spanned<String>, key: &str, both: bool) {
        let fix = if both {
            "remove one of them"
        } else {
            "add `cmd = [\"program\", \"arg\"]` for a child process or `url = \"https://host/mcp\"`"
        };
        let message = format!(
            "server '{}': set exactly one of `cmd` (stdio) or `url` (HTTP)",
            name.get_ref()
        );
        self.problems.push(name.span(), key, message, fix);
    }

    fn http(
        &mut self,
        key: &str,
        url: Spanned<String>,
        (protocol, message_url): (Option<Spanned<RawProtocol>>, Option<Spanned<String>>),
        auth: Option<Spanned<RawAuth>>,
        tls: Option<Spanned<RawClientTls>>,
    ) -> Option<Http> {
        let url = self.url(url, &join(key, "url"))?;
        let https = url.scheme_str() == Some("https");
        let message_key = join(key, "message_url");
        if let (Some(message_url), Some(RawProtocol::StreamableHttp)) =
            (&message_url, protocol.as_ref().map(|p| *p.get_ref()))
        {
            let message = "`message_url` applies only to HTTP+SSE servers".to_string();
            let fix = "remove it, or set `protocol = \"sse\"`";
            self.problems
                .push(message_url.span(), &message_key, message, fix);
        }
        let message_url = message_url.and_then(|value| self.url(value, &message_key).map(Box::new));
        let protocol = match protocol.map(Spanned::into_inner) {
            Some(RawProtocol::StreamableHttp) => Some(HttpProtocol::StreamableHttp),
            Some(RawProtocol::Sse) => Some(HttpProtocol::Sse),
            // As in Nexus: a POST URL of its own is what only HTTP+SSE has.
            None => message_url.as_ref().map(|_| HttpProtocol::Sse),
        };
        Some(Http {
            protocol,
            message_url,
            auth: auth.and_then(|auth| self.auth(auth, &join(key, "auth"))),
            tls: self.client_tls(tls, &join(key, "tls"), https),
            url,
        })
    }

    /// Server names become tool-name prefixes (`server__tool`), so they are kept simple.
    fn check_name(&mut self, name: &Spanned<String>, key: &str) {
        let text = name.get_ref();
        let (message, fix) = if text.is_empty() {
            (
                "server name is empty".to_string(),
                "name the server, e.g. [mcp.servers.github]",
            )
        } else if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            let message = format!(
                "server name `{text}` may contain only letters, digits, `_` and `-` (it prefixes tool names)"
            );
            (message, "rename the server")
        } else if text.contains("__") {
            let message = format!(
                "server name `{text}` contains `__`, which separates server and tool in tool names (`server__tool`)"
            );
            (message, "rename the server, e.g. with a single `_`")
        } else {
            return;
        };
        self.problems.push(name.span(), key, message, fix);
    }

    /// Records each key set that belongs to the other transport.
    fn reject(&mut self, key: &str, on_stdio: bool, keys: &[(&str, Option<Range<usize>>)]) {
        let (needs, this, fix) = match on_stdio {
            true => (
                "HTTP servers (`url`)",
                "a stdio",
                "remove it, or use `url` instead of `cmd`",
            ),
            false => (
                "stdio servers (`cmd`)",
                "an HTTP",
                "remove it, or use `cmd` instead of `url`",
            ),
        };
        for (name, span) in keys {
            if let Some(span) = span {
                let message =
                    format!("`{name}` applies only to {needs}, and this is {this} server");
                self.problems
                    .push(span.clone(), &join(key, name), message, fix);
            }
        }
    }

    fn stdio(
        &mut self,
        key: &str,
        cmd: Spanned<Vec<String>>,
        env: Option<Spanned<BTreeMap<String, String>>>,
        cwd: Option<Spanned<String>>,
        stderr: Option<Spanned<RawStderr>>,
    ) -> Option<Stdio> {
        let span = cmd.span();
        let mut args = cmd.into_inner().into_iter();
        let program = args.next().filter(|p| !p.is_empty());
        if program.is_none() {
            let fix = "put the program first, e.g. cmd = [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]";
            self.problems.push(
                span,
                &join(key, "cmd"),
                "must start with a program name".to_string(),
                fix,
            );
        }
        let cwd = cwd.map(|dir| self.directory(&dir, &join(key, "cwd")));
        let stderr = stderr.map_or(StderrTarget::Null, |target| {
            self.stderr(target, &join(key, "stderr"))
        });
        Some(Stdio {
            program: program?,
            args: args.collect(),
            env: env
                .map(|e| e.into_inner().into_iter().collect())
                .unwrap_or_default(),
            inherit_env: false,
            cwd,
            stderr,
        })
    }

    fn stderr(&mut self, target: Spanned<RawStderr>, key: &str) -> StderrTarget {
        let span = target.span();
        match target.into_inner() {
            RawStderr::Null => StderrTarget::Null,
            RawStderr::Inherit => StderrTarget::Inherit,
            RawStderr::Pipe => StderrTarget::Pipe,
            RawStderr::File(path) => {
                StderrTarget::File(self.output_file(&Spanned::new(span, path), key))
            }
        }
    }

    /// An absolute http or https URL with a host.
    fn url(&mut self, url: Spanned<String>, key: &str) -> Option<http::Uri> {
        let problem = match url.get_ref().parse::<http::Uri>() {
            Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) => {
                "must start with https:// or http://".to_string()
            }
            Ok(uri) if uri.host().is_none_or(str::is_empty) => "has no host".to_string(),
            Ok(uri) => return Some(uri),
            Err(e) => format!("invalid URL: {e}"),
        };
        self.problems.push(
            url.span(),
            key,
            problem,
            "use a URL such as \"https://mcp.example.com/mcp\"",
        );
        None
    }

    /// `[auth]`: exactly one of `token` and `type = "forward"`.
    fn auth(&mut self, auth: Spanned<RawAuth>, key: &str) -> Option<Auth> {
        let span = auth.span();
        let (message, fix) = match auth.into_inner() {
            RawAuth {
                token: Some(token),
                kind: None,
            } => return Some(Auth::Token(token)),
            RawAuth {
                token: None,
                kind: Some(kind),
            } => {
                let RawAuthKind::Forward = kind.get_ref();
                return Some(self.forward(kind.span(), &join(key, "type")));
            }
            RawAuth {
                token: Some(_),
                kind: Some(_),
            } => (
                "`token` and `type` are both set",
                "keep `token` to send a fixed token, or `type = \"forward\"` to pass on the client's",
            ),
            RawAuth {
                token: None,
                kind: None,
            } => (
                "[auth] sets neither `token` nor `type`",
                "add `token = \"{{ env.NAME }}\"` or `type = \"forward\"`, or remove [auth]",
            ),
        };
        self.problems.push(span, key, message.to_string(), fix);
        None
    }

    fn rate_limit(&mut self, raw: RawRateLimits, key: &str) -> RateLimit {
        let mut tools: Vec<_> = raw.tools.unwrap_or_default().into_iter().collect();
        tools.sort_by_key(|(_, limit)| limit.limit.span().start);
        RateLimit {
            limit: self.positive_limit(&raw.limit, &join(key, "limit")),
            interval: self.interval(&raw.interval, &join(key, "interval")),
            tools: tools
                .into_iter()
                .map(|(tool, limit)| {
                    let tool_key = join(&join(key, "tools"), &tool);
                    let limit = RateLimit {
                        limit: self.positive_limit(&limit.limit, &join(&tool_key, "limit")),
                        interval: self.interval(&limit.interval, &join(&tool_key, "interval")),
                        tools: Vec::new(),
                    };
                    (tool, limit)
                })
                .collect(),
        }
    }

    fn positive_limit(&mut self, limit: &Spanned<u32>, key: &str) -> u32 {
        if *limit.get_ref() == 0 {
            let fix = "set the number of calls allowed per interval";
            self.zero_refused(limit.span(), key, fix);
        }
        *limit.get_ref()
    }

    fn interval(&mut self, interval: &Spanned<RawDuration>, key: &str) -> Duration {
        self.timeout(Some(interval.clone()), key)
            .unwrap_or_default()
    }
}
