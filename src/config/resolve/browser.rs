//! `[server.cors]` and `[server.csrf]`: Nexus's keys, checked entry by entry, with warnings for
//! settings that browsers would silently defeat.

use std::net::Ipv6Addr;
use std::ops::Range;

use http::{HeaderName, Method};
use serde_spanned::Spanned;

use super::Cx;
use crate::config::model::{AnyOr, Cors, OriginPattern};
use crate::config::raw::{RawCors, RawCsrf, RawList};

/// `[server.csrf] header_name` when not set (Nexus's).
const DEFAULT_CSRF_HEADER: &str = "x-nexus-csrf-protection";
/// Characters that make an `allow_origins` entry a glob (Nexus's set, minus `?`, which ends
/// the authority of a URL).
const GLOB_CHARS: &[char] = &['*', '[', ']', '{', '}', '!', '\\'];
/// Methods `allow_methods` accepts (Nexus's set).
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "CONNECT", "PATCH", "TRACE",
];
/// Request headers a page may send without a preflight (Fetch's CORS-safelisted ones): a
/// CSRF header among them proves nothing.
const SAFELISTED: &[&str] = &[
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "range",
];

impl Cx<'_> {
    pub(super) fn cors(&mut self, raw: Spanned<RawCors>) -> Cors {
        let table = raw.span();
        let raw = raw.into_inner();
        let key = |name: &str| format!("server.cors.{name}");
        let allow_origins = match raw.allow_origins {
            Some(list) => self.any_or(list, &key("allow_origins"), origin),
            None => AnyOr::List(Vec::new()),
        };
        let cors = Cors {
            allow_methods: raw
                .allow_methods
                .map(|list| self.any_or(list, &key("allow_methods"), method)),
            allow_headers: self.header_list(raw.allow_headers, &key("allow_headers")),
            expose_headers: self.header_list(raw.expose_headers, &key("expose_headers")),
            allow_credentials: raw.allow_credentials.as_ref().is_some_and(|c| *c.get_ref()),
            max_age: raw.max_age.map(|age| age.get_ref().0),
            allow_private_network: raw.allow_private_network.unwrap_or(false),
            allow_origins,
        };
        if cors.allow_origins == AnyOr::List(Vec::new()) {
            let message = "[server.cors] allows no origin, so no web page gets cross-origin access";
            let fix =
                "set allow_origins, e.g. [\"https://app.example.com\"], or remove [server.cors]";
            self.problems
                .warn(table, "server.cors", message.to_string(), fix);
        }
        if let Some(credentials) = raw.allow_credentials.filter(|c| *c.get_ref()) {
            self.credential_warnings(&cors, credentials.span());
        }
        cors
    }

    /// `allow_credentials = true` beside a `"*"` that browsers read literally on credentialed
    /// requests.
    fn credential_warnings(&mut self, cors: &Cors, at: Range<usize>) {
        let key = "server.cors.allow_credentials";
        if cors.allow_origins == AnyOr::Any {
            let message = "`allow_credentials = true` with `allow_origins = \"*\"`: browsers refuse \
                           a credentialed response that allows every origin, so requests with \
                           cookies or client certificates fail";
            let fix = "list the origins in allow_origins, or set allow_credentials = false";
            self.problems
                .warn(at.clone(), key, message.to_string(), fix);
        }
        if cors.expose_headers == AnyOr::Any {
            let message = "`allow_credentials = true` with `expose_headers = \"*\"`: on a \
                           credentialed response browsers read `*` as a header name, so pages see \
                           only Mcp-Session-Id, WWW-Authenticate and Retry-After";
            let fix = "list the headers to expose in expose_headers";
            self.problems.warn(at, key, message.to_string(), fix);
        }
    }

    fn header_list(&mut self, list: Option<Spanned<RawList>>, key: &str) -> AnyOr<HeaderName> {
        match list {
            Some(list) => self.any_or(list, key, header),
            None => AnyOr::List(Vec::new()),
        }
    }

    /// `"*"` or each entry parsed; an entry that does not parse is reported at its position.
    fn any_or<T>(
        &mut self,
        list: Spanned<RawList>,
        key: &str,
        parse: fn(&str) -> Result<T, (String, &'static str)>,
    ) -> AnyOr<T> {
        let span = list.span();
        let entries = match list.into_inner() {
            RawList::One(value) => vec![Spanned::new(span, value)],
            RawList::Many(values) => values,
        };
        if entries.iter().any(|entry| entry.get_ref() == "*") {
            return AnyOr::Any;
        }
        let mut parsed = Vec::new();
        for entry in entries {
            match parse(entry.get_ref()) {
                Ok(value) => parsed.push(value),
                Err((message, fix)) => self.problems.push(entry.span(), key, message, fix),
            }
        }
        AnyOr::List(parsed)
    }

    /// `[server.csrf]`: the header to require, when enabled.
    pub(super) fn csrf(&mut self, raw: Option<RawCsrf>) -> Option<HeaderName> {
        let raw = raw.unwrap_or_default();
        let key = "server.csrf.header_name";
        let name = match raw.header_name {
            None => HeaderName::from_static(DEFAULT_CSRF_HEADER),
            Some(written) => match header(written.get_ref()) {
                Ok(name) => {
                    if SAFELISTED.contains(&name.as_str()) {
                        let message = format!(
                            "a page may send `{name}` without a CORS preflight, so its presence does not show the request came from an allowed page"
                        );
                        let fix =
                            "use a header of your own, such as the default X-Nexus-CSRF-Protection";
                        self.problems.warn(written.span(), key, message, fix);
                    }
                    name
                }
                Err((message, fix)) => {
                    self.problems.push(written.span(), key, message, fix);
                    return None;
                }
            },
        };
        raw.enabled.unwrap_or(false).then_some(name)
    }
}

fn header(text: &str) -> Result<HeaderName, (String, &'static str)> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
        let message = format!("`{text}` is not a valid header name");
        (
            message,
            "use letters, digits and `-` (e.g. \"X-Request-Id\")",
        )
    })
}

fn method(text: &str) -> Result<Method, (String, &'static str)> {
    let upper = text.to_ascii_uppercase();
    match METHODS.contains(&upper.as_str()) {
        true => Ok(Method::from_bytes(upper.as_bytes()).expect("BUG: listed methods parse")),
        false => Err((
            format!(
                "unknown HTTP method `{text}` (expected one of {})",
                METHODS.join(", ")
            ),
            "fix the spelling, or use \"*\" for every method",
        )),
    }
}

/// An `allow_origins` entry as the `Origin` header a browser sends for it: lowercase, without
/// path, query or default port (a URL such as `https://app.example.com/path` is accepted, as
/// Nexus does, and stands for its origin).
fn origin(text: &str) -> Result<OriginPattern, (String, &'static str)> {
    const FIX: &str = "write it as scheme://host[:port], e.g. \"https://app.example.com\"";
    let invalid = || (format!("`{text}` is not an origin"), FIX);
    let lowered = text.trim().to_ascii_lowercase();
    let (scheme, rest) = lowered.split_once("://").ok_or_else(invalid)?;
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) || !scheme.chars().all(scheme_char) {
        return Err(invalid());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = match (scheme, rest[..end].rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host,
        _ => &rest[..end],
    };
    if authority.is_empty() {
        return Err(invalid());
    }
    let origin = format!("{scheme}://{authority}");
    if ipv6_literal(authority) || !authority.contains(GLOB_CHARS) {
        return match valid_authority(authority) {
            true => Ok(OriginPattern::Exact(origin)),
            false => Err(invalid()),
        };
    }
    fast_glob::validate(&origin).map_err(|error| {
        let message = format!("`{text}` is not a valid glob ({:?})", error.kind);
        let fix = "close every `[` and `{`, or escape the character with `\\`";
        (message, fix)
    })?;
    Ok(OriginPattern::Glob(origin))
}

/// `[v6]` or `[v6]:port`: brackets that are not a glob's.
fn ipv6_literal(authority: &str) -> bool {
    authority
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(literal, _)| literal.parse::<Ipv6Addr>().is_ok())
}

/// `host[:port]` with a name, an IPv4 or a bracketed IPv6 host and a port from 1 to 65535.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, after)) if literal.parse::<Ipv6Addr>().is_ok() => ("[]", after),
            _ => return false,
        },
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            (&authority[..end], &authority[end..])
        }
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let host_ok = host == "[]" || (!host.is_empty() && host.chars().all(name_char));
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => {
            digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u16>().is_ok_and(|port| port != 0)
        }
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;

    fn resolve(text: &str) -> Result<Config, Vec<String>> {
        let file = Path::new("/nonexistent/n.toml");
        super::super::resolve(text, file, &|_| None)
            .map_err(|error| error.problems().iter().map(|p| p.to_string()).collect())
    }

    fn warnings(text: &str) -> Vec<String> {
        let config = resolve(text).unwrap();
        config.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn a_nexus_cors_table_resolves_key_for_key() {
        let text = "[server.cors]\nallow_credentials = true\nallow_origins = [\"https://App.example.com/\", \
                    \"https://*.example.org\", \"http://[::1]:3000\", \"https://x.example:443\"]\n\
                    max_age = \"1h\"\nallow_methods = [\"GET\", \"post\"]\nallow_headers = \"X-Custom\"\n\
                    expose_headers = [\"X-Rate-Limit\"]\nallow_private_network = true\n";
        let config = resolve(text).unwrap();
        let cors = config.server.cors.unwrap();
        assert_eq!(
            cors,
            Cors {
                allow_origins: AnyOr::List(vec![
                    OriginPattern::Exact("https://app.example.com".into()),
                    OriginPattern::Glob("https://*.example.org".into()),
                    OriginPattern::Exact("http://[::1]:3000".into()),
                    OriginPattern::Exact("https://x.example".into()),
                ]),
                allow_methods: Some(AnyOr::List(vec![Method::GET, Method::POST])),
                allow_headers: AnyOr::List(vec![HeaderName::from_static("x-custom")]),
                expose_headers: AnyOr::List(vec![HeaderName::from_static("x-rate-limit")]),
                allow_credentials: true,
                max_age: Some(Duration::from_secs(3600)),
                allow_private_network: true,
            }
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.server.csrf, None);
    }

    #[test]
    fn stars_mean_any_and_absent_keys_their_defaults() {
        let config =
            resolve("[server.cors]\nallow_origins = \"*\"\nallow_methods = \"*\"\n").unwrap();
        let cors = config.server.cors.unwrap();
        assert_eq!(cors.allow_origins, AnyOr::Any);
        assert_eq!(cors.allow_methods, Some(AnyOr::Any));
        assert_eq!(cors.allow_headers, AnyOr::List(Vec::new()));
        assert!(!cors.allow_credentials && !cors.allow_private_network);
        assert_eq!(cors.max_age, None);
        assert!(resolve("").unwrap().server.cors.is_none());
    }

    #[test]
    fn bad_entries_are_reported_where_they_are() {
        let problems = resolve(
            "[server.cors]\nallow_origins = [\"foo\", \"https://a:99999\", \"https://{a\"]\n\
             allow_methods = [\"MEOW\"]\nallow_headers = [\"a b\"]\n[server.csrf]\nheader_name = \"\"\n",
        )
        .unwrap_err();
        let expected = [
            "2:18: server.cors.allow_origins: `foo` is not an origin",
            "2:25: server.cors.allow_origins: `https://a:99999` is not an origin",
            "2:44: server.cors.allow_origins: `https://{a` is not a valid glob",
            "3:18: server.cors.allow_methods: unknown HTTP method `MEOW` (expected one of GET, POST",
            "4:18: server.cors.allow_headers: `a b` is not a valid header name",
            "6:15: server.csrf.header_name: `` is not a valid header name",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(problem.contains(expected), "{problem} lacks {expected}");
        }
        let problems = resolve("[server.cors]\nallow_origin = \"*\"\n").unwrap_err();
        assert!(
            problems[0].contains("unknown key `allow_origin`"),
            "{problems:?}"
        );
    }

    #[test]
    fn contradictions_are_warned_about_at_their_key() {
        let shown = warnings(
            "[server.cors]\nallow_origins = \"*\"\nexpose_headers = \"*\"\nallow_credentials = true\n",
        );
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].contains("4:21: server.cors.allow_credentials: `allow_credentials = true` with `allow_origins = \"*\"`"),
            "{shown:?}"
        );
        assert!(shown[1].contains("expose_headers = \"*\""), "{shown:?}");
        let shown = warnings("[server.cors]\nmax_age = 60\n");
        assert!(
            shown[0].contains("1:1: server.cors: [server.cors] allows no origin"),
            "{shown:?}"
        );
        let shown = warnings("[server.csrf]\nenabled = true\nheader_name = \"Content-Type\"\n");
        assert!(
            shown[0].contains("3:15: server.csrf.header_name: a page may send `content-type`"),
            "{shown:?}"
        );
    }

    #[test]
    fn csrf_is_off_unless_enabled_and_defaults_to_nexus_header() {
        let on = resolve("[server.csrf]\nenabled = true\n").unwrap();
        assert_eq!(on.server.csrf.unwrap(), "x-nexus-csrf-protection");
        let named = resolve("[server.csrf]\nenabled = true\nheader_name = \"X-CSRF\"\n").unwrap();
        assert_eq!(named.server.csrf.unwrap(), "x-csrf");
        let off = resolve("[server.csrf]\nheader_name = \"X-CSRF\"\n").unwrap();
        assert_eq!(off.server.csrf, None);
    }
}
