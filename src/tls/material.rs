//! `nexus check`'s TLS step: every certificate, key (decrypted with its password) and CA file is
//! loaded into the same contexts serve builds, so a wrong password or a certificate that does not
//! match its key fails the check, not the start.

use std::sync::Arc;

use super::{ClientContext, Error};
use crate::config::{Config, Transport};
use crate::metrics::Metrics;

/// TLS material of one table that serve would refuse.
#[derive(Debug, thiserror::Error)]
#[error("{table}: {error}")]
pub struct Refused {
    /// `[server.tls]` or `[mcp.servers.NAME.tls]`.
    pub table: String,
    /// Why, naming the key and file (never a password).
    pub error: Error,
}

/// Builds the gateway's acceptor and each HTTPS downstream's client context as serve does, and
/// returns every one that fails. Nothing is served or connected to.
pub fn check(config: &Config) -> Vec<Refused> {
    let mut refused = Vec::new();
    if let Some(tls) = &config.server.tls
        && let Err(error) = super::server::acceptor(tls)
    {
        let table = "[server.tls]".to_owned();
        refused.push(Refused { table, error });
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(oauth) = &config.server.oauth
        && let Err(error) = ClientContext::new("server.oauth", &oauth.tls, metrics.clone())
    {
        let table = "[server.oauth.tls]".to_owned();
        refused.push(Refused { table, error });
    }
    for server in &config.mcp.servers {
        let Transport::Http(http) = &server.transport else {
            continue;
        };
        if http.url.scheme_str() != Some("https") {
            continue;
        }
        if let Err(error) = ClientContext::new(&server.name, &http.tls, metrics.clone()) {
            let table = format!("[mcp.servers.{}.tls]", server.name);
            refused.push(Refused { table, error });
        }
    }
    refused
}
