//! `Host` and `Origin` validation against DNS rebinding: a web page must not be able to reach a
//! gateway on loopback through a name that resolves there.
//!
//! The host a request names is its `Host` header (HTTP/1.1) or its `:authority` (HTTP/2, which
//! hyper puts in the URI; HTTP/1.1 absolute-form targets land there too). Both are parsed
//! strictly: a value this guard cannot parse is refused, never guessed at.

use std::net::{Ipv6Addr, SocketAddr};

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, Uri};

use crate::config;

const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]"];
/// How much of a refused value is echoed in the error (and the log).
const ECHO_LIMIT: usize = 256;

/// The checks for one listener.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    loopback: bool,
    /// `[server.cors] allow_origins`: an origin granted there is accepted here too.
    cors_origins: Option<config::AnyOr<config::OriginPattern>>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The request names a host this gateway does not serve.
    #[error("Host `{0}` is not allowed; add it to [server] allowed_hosts")]
    Host(String),
    /// `Host` or `:authority` is not `host[:port]`.
    #[error(
        "Host `{0}` is not a valid host[:port] (a name, an IPv4 address or a bracketed IPv6 address, then a port from 1 to 65535)"
    )]
    MalformedHost(String),
    /// Neither a `Host` header nor an `:authority`.
    #[error("the request names no host: send a Host header")]
    MissingHost,
    /// Two or more `Host` headers.
    #[error("the request has more than one Host header")]
    DuplicateHost,
    /// The request target's authority (absolute form or `:authority`) and `Host` differ.
    #[error("the request target names `{authority}` but the Host header `{host}`")]
    AuthorityMismatch {
        /// The `Host` header.
        host: String,
        /// The authority of the request target.
        authority: String,
    },
    /// The `Origin` header names a site that may not call this gateway.
    #[error(
        "Origin `{0}` is not allowed; add it to [server.cors] allow_origins (a web page) or [server] allowed_origins"
    )]
    Origin(String),
    /// `Origin` is not `scheme://host[:port]`, or there are several.
    #[error("Origin `{0}` is not a valid scheme://host[:port] origin")]
    MalformedOrigin(String),
}

/// A parsed `host[:port]`: the host lowercased (IPv6 in brackets), the port if given.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Guard {
    /// The guard for `[server]`.
    pub fn new(server: &config::Server) -> Self {
        let guard = Self::for_address(
            server.listen_address,
            &server.allowed_hosts,
            &server.allowed_origins,
        );
        Self {
            cors_origins: server.cors.as_ref().map(|cors| cors.allow_origins.clone()),
            ..guard
        }
    }

    /// The guard for a listener on `address` with explicit allow-lists (empty = defaults).
    pub fn for_address(address: SocketAddr, hosts: &[String], origins: &[String]) -> Self {
        Self {
            allowed_hosts: hosts.iter().map(|host| host.to_ascii_lowercase()).collect(),
            allowed_origins: origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            loopback: address.ip().is_loopback(),
            cors_origins: None,
        }
    }

    /// Checks a request's target and headers.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refused> {
        let named = requested_host(uri, headers)?;
        let host = Authority::parse(named).ok_or_else(|| Refused::MalformedHost(echo(named)))?;
        if !self.host_allowed(named, &host) {
            return Err(Refused::Host(echo(named)));
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        let text = visible(origin);
        if origins.next().is_some() {
            return Err(Refused::MalformedOrigin(echo(text)));
        }
        let granted = self.cors_origins.as_ref();
        if granted.is_some_and(|origins| super::browser::allows(origins, text)) {
            return Ok(());
        }
        let lowered = text.trim_end_matches('/').to_ascii_lowercase();
        if !self.allowed_origins.is_empty() {
            let listed = self
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || *allowed == lowered);
            return if listed {
                Ok(())
            } else {
                Err(Refused::Origin(echo(text)))
            };
        }
        let origin = parse_origin(&lowered).ok_or_else(|| Refused::MalformedOrigin(echo(text)))?;
        let allowed = if self.loopback {
            LOOPBACK_NAMES.contains(&origin.host.as_str())
        } else {
            origin.host == host.host
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused::Origin(echo(text)))
        }
    }

    fn host_allowed(&self, named: &str, host: &Authority) -> bool {
        if !self.allowed_hosts.is_empty() {
            return self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(named) || *allowed == host.host);
        }
        !self.loopback || LOOPBACK_NAMES.contains(&host.host.as_str())
    }
}

/// The `host[:port]` a request names: its one `Host` header, its target's authority, or both
/// when they agree.
fn requested_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Result<&'a str, Refused> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = hosts.next().map(visible);
    if hosts.next().is_some() {
        return Err(Refused::DuplicateHost);
    }
    let authority = uri.authority().map(|authority| authority.as_str());
    match (header, authority) {
        (Some(host), Some(authority)) if !host.eq_ignore_ascii_case(authority) => {
            Err(Refused::AuthorityMismatch {
                host: echo(host),
                authority: echo(authority),
            })
        }
        (Some(named), _) | (None, Some(named)) => Ok(named),
        (None, None) => Err(Refused::MissingHost),
    }
}

impl Authority {
    /// `host[:port]` per RFC 3986 (a registered name of letters, digits, `-`, `.` and `_`, an
    /// IPv4 address, or an IPv6 literal in brackets), or `None`.
    fn parse(text: &str) -> Option<Self> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (literal, after) = rest.split_once(']')?;
            literal.parse::<Ipv6Addr>().ok()?;
            (&text[..literal.len() + 2], after)
        } else {
            let end = text.find(':').unwrap_or(text.len());
            let host = &text[..end];
            let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if host.is_empty() || !host.chars().all(name_char) {
                return None;
            }
            (host, &text[end..])
        };
        let port = match port {
            "" => None,
            port => Some(parse_port(port.strip_prefix(':')?)?),
        };
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A port from 1 to 65535 in at most five digits.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|port| *port != 0)
}

/// `scheme://host[:port]` (lowercase, no trailing slash), or `None`.
fn parse_origin(origin: &str) -> Option<Authority> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    if scheme.is_empty() || !scheme.chars().all(scheme_char) {
        return None;
    }
    Authority::parse(authority)
}

/// A header's text; values that are not visible ASCII read as empty, which no check accepts.
fn visible(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("")
}

/// A refused value as shown to the client and in the log: at most [`ECHO_LIMIT`] characters.
fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_LIMIT) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn check(guard: &Guard, host: &str, origin: Option<&str>) -> Result<(), Refused> {
        guard.check(&Uri::from_static("/mcp"), &headers(host, origin))
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn loopback_listener_accepts_only_loopback_names() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        assert!(check(&guard, "127.0.0.1:8000", None).is_ok());
        assert!(check(&guard, "localhost:8000", Some("http://localhost:3000")).is_ok());
        assert!(check(&guard, "[::1]:8000", None).is_ok());
        assert_eq!(
            check(&guard, "evil.example:8000", None),
            Err(Refused::Host("evil.example:8000".into()))
        );
        assert_eq!(
            check(&guard, "localhost:8000", Some("http://evil.example")),
            Err(Refused::Origin("http://evil.example".into()))
        );
    }

    #[test]
    fn public_listener_requires_same_host_origins() {
        let guard = Guard::for_address("0.0.0.0:8000".parse().unwrap(), &[], &[]);
        assert!(check(&guard, "gw.corp:8000", Some("https://gw.corp")).is_ok());
        assert!(check(&guard, "gw.corp:8000", Some("https://evil.example")).is_err());
    }

    #[test]
    fn allow_lists_replace_the_defaults() {
        let guard = Guard::for_address(
            "127.0.0.1:8000".parse().unwrap(),
            &["gw.corp".into()],
            &["https://app.corp".into()],
        );
        assert!(check(&guard, "gw.corp:8000", Some("https://app.corp/")).is_ok());
        assert!(check(&guard, "localhost:8000", None).is_err());
    }

    #[test]
    fn an_origin_granted_by_cors_passes_beside_the_defaults() {
        let cors = config::AnyOr::List(vec![config::OriginPattern::Glob("https://*.corp".into())]);
        let guard = Guard {
            cors_origins: Some(cors),
            ..Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[])
        };
        assert!(check(&guard, "localhost:8000", Some("https://app.corp")).is_ok());
        assert!(check(&guard, "localhost:8000", Some("http://localhost:3000")).is_ok());
        assert!(check(&guard, "localhost:8000", Some("https://evil.example")).is_err());
        assert_eq!(
            check(&guard, "evil.example:8000", Some("https://app.corp")),
            Err(Refused::Host("evil.example:8000".into())),
            "the Host check still comes first"
        );
    }

    #[test]
    fn http2_authority_stands_for_host() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        let uri = Uri::from_static("http://127.0.0.1:8000/mcp");
        assert_eq!(guard.check(&uri, &HeaderMap::new()), Ok(()));
        let evil = Uri::from_static("http://evil.example:8000/mcp");
        assert_eq!(
            guard.check(&evil, &HeaderMap::new()),
            Err(Refused::Host("evil.example:8000".into()))
        );
        assert_eq!(
            guard.check(&Uri::from_static("/mcp"), &HeaderMap::new()),
            Err(Refused::MissingHost)
        );
    }

    #[test]
    fn an_absolute_target_must_agree_with_host() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        let uri = Uri::from_static("http://localhost:8000/mcp");
        assert_eq!(guard.check(&uri, &headers("LOCALHOST:8000", None)), Ok(()));
        assert_eq!(
            guard.check(&uri, &headers("127.0.0.1:8000", None)),
            Err(Refused::AuthorityMismatch {
                host: "127.0.0.1:8000".into(),
                authority: "localhost:8000".into()
            })
        );
    }

    #[test]
    fn malformed_hosts_and_origins_are_refused() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        for host in [
            "localhost:8000x",
            "localhost:8000:1",
            "[::1]x",
            "[::1]:8000junk",
            "[::1",
            "[nope]:80",
            "localhost:65536",
            "localhost:0",
            "localhost:",
            ":8000",
            "local host",
            "user@localhost",
            "",
        ] {
            assert_eq!(
                check(&guard, host, None),
                Err(Refused::MalformedHost(host.into())),
                "{host}"
            );
        }
        assert!(check(&guard, "localhost:65535", None).is_ok());
        for origin in [
            "http://localhost:3000/path",
            "http://localhost:99999",
            "http://[::1]x",
            "localhost",
            "null",
            "://localhost",
        ] {
            assert_eq!(
                check(&guard, "localhost:8000", Some(origin)),
                Err(Refused::MalformedOrigin(origin.into())),
                "{origin}"
            );
        }
        assert!(check(&guard, "localhost:8000", Some("http://[::1]:3000")).is_ok());
    }

    #[test]
    fn duplicate_host_or_origin_headers_are_refused() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        let mut twice = headers("localhost:8000", None);
        twice.append(HOST, HeaderValue::from_static("evil.example"));
        let uri = Uri::from_static("/mcp");
        assert_eq!(guard.check(&uri, &twice), Err(Refused::DuplicateHost));
        let mut origins = headers("localhost:8000", Some("http://localhost"));
        origins.append(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(matches!(
            guard.check(&uri, &origins),
            Err(Refused::MalformedOrigin(_))
        ));
    }

    #[test]
    fn refused_values_are_echoed_bounded() {
        let guard = Guard::for_address("127.0.0.1:8000".parse().unwrap(), &[], &[]);
        let long = format!("{}.example", "a".repeat(10_000));
        let Err(Refused::Host(echoed)) = check(&guard, &long, None) else {
            panic!("a foreign host must be refused");
        };
        assert_eq!(echoed.len(), ECHO_LIMIT + 3);
    }
}
