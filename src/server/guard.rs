//! `Host` and `Origin` validation against DNS rebinding: a web page must not be able to reach a
//! gateway on loopback through a name that resolves there.

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

use crate::config;

const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// The checks for one listener.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    loopback: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The `Host` header names a host this gateway does not serve.
    #[error("Host `{0}` is not allowed; add it to [server] allowed_hosts")]
    Host(String),
    /// The `Origin` header names a site that may not call this gateway.
    #[error("Origin `{0}` is not allowed; add it to [server] allowed_origins")]
    Origin(String),
}

impl Guard {
    /// The guard for `[server]`.
    pub fn new(server: &config::Server) -> Self {
        Self::for_address(
            server.listen_address,
            &server.allowed_hosts,
            &server.allowed_origins,
        )
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
        }
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let host = headers
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(Refused::Host(host));
        }
        match headers
            .get(ORIGIN)
            .map(|value| value.to_str().unwrap_or(""))
        {
            None => Ok(()),
            Some(origin) if self.origin_allowed(&origin.to_ascii_lowercase(), &host) => Ok(()),
            Some(origin) => Err(Refused::Origin(origin.to_owned())),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        if !self.allowed_hosts.is_empty() {
            return self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == host || allowed == hostname(host));
        }
        !self.loopback || LOOPBACK_NAMES.contains(&hostname(host))
    }

    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        if !self.allowed_origins.is_empty() {
            return self
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed == origin);
        }
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        if self.loopback {
            LOOPBACK_NAMES.contains(&hostname(authority))
        } else {
            hostname(authority) == hostname(host)
        }
    }
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn hostname(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
        assert!(guard.check(&headers("127.0.0.1:8000", None)).is_ok());
        assert!(
            guard
                .check(&headers("localhost:8000", Some("http://localhost:3000")))
                .is_ok()
        );
        assert!(guard.check(&headers("[::1]:8000", None)).is_ok());
        assert_eq!(
            guard.check(&headers("evil.example:8000", None)),
            Err(Refused::Host("evil.example:8000".into()))
        );
        assert_eq!(
            guard.check(&headers("localhost:8000", Some("http://evil.example"))),
            Err(Refused::Origin("http://evil.example".into()))
        );
    }

    #[test]
    fn public_listener_requires_same_host_origins() {
        let guard = Guard::for_address("0.0.0.0:8000".parse().unwrap(), &[], &[]);
        assert!(
            guard
                .check(&headers("gw.corp:8000", Some("https://gw.corp")))
                .is_ok()
        );
        assert!(
            guard
                .check(&headers("gw.corp:8000", Some("https://evil.example")))
                .is_err()
        );
    }

    #[test]
    fn allow_lists_replace_the_defaults() {
        let guard = Guard::for_address(
            "127.0.0.1:8000".parse().unwrap(),
            &["gw.corp".into()],
            &["https://app.corp".into()],
        );
        assert!(
            guard
                .check(&headers("gw.corp:8000", Some("https://app.corp/")))
                .is_ok()
        );
        assert!(guard.check(&headers("localhost:8000", None)).is_err());
    }
}
