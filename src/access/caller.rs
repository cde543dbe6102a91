//! The identity a request was made under.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Who owns what a caller opens (sessions, held `input_required` states): two requests act for
/// the same party exactly when their principals are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No identity was established (the gateway asks for none).
    Anonymous,
    /// A verified access token: its issuer and subject.
    Token {
        /// `iss`.
        issuer: Arc<str>,
        /// `sub` (or the configured client id claim).
        subject: Arc<str>,
    },
    /// A verified client certificate, by its whole subject (`CN=...,O=...`).
    Certificate(Arc<str>),
    /// A header set by a trusted proxy in front of the gateway.
    Header(Arc<str>),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Token { issuer, subject } => write!(f, "token {subject} from {issuer}"),
            Principal::Certificate(name) => write!(f, "certificate {name}"),
            Principal::Header(name) => write!(f, "header {name}"),
        }
    }
}

/// One request's caller: the principal plus what policy, limits and audit read.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who owns what this caller opens.
    pub principal: Principal,
    /// The client's address (after `[server.client_ip]`, when configured).
    pub address: IpAddr,
    /// The client id limits count under (`[server.client_identification] client_id`).
    pub client_id: Option<Arc<str>>,
    /// Groups, for `allow`/`deny` and per-group limits.
    pub groups: Vec<Arc<str>>,
    /// OAuth scopes granted by the access token.
    pub scopes: Vec<Arc<str>>,
    /// The verified client certificate's subject (mutual TLS), for the audit trail.
    pub certificate: Option<Arc<str>>,
}

impl Caller {
    /// A caller with no identity beyond its address.
    pub fn anonymous(address: IpAddr) -> Self {
        Self {
            principal: Principal::Anonymous,
            address,
            client_id: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            certificate: None,
        }
    }

    /// Whether the caller is a member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }

    /// Whether the access token granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }
}
