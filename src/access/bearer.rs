//! The gateway as an OAuth 2.1 resource server (`[server.oauth]`): the bearer token of each
//! MCP request verified against the authorization server's keys, and the RFC 9728
//! protected-resource metadata that tells a client where to get one.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Uri};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::Challenge;
use super::jwks::{KeyStore, Refetch};
use super::jwt::{self, Invalid, Rules, VerifiedToken};
use crate::config::Oauth;
use crate::metrics::Metrics;

/// The RFC 9728 well-known path; the MCP path follows it in the path-inserted form.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or a bad one: 401 with the challenge.
    Token(Challenge),
    /// `access_token` in the query string (RFC 6750 §2.3 allows it; the MCP authorization
    /// spec forbids it, since URLs end up in logs): 400.
    TokenInQuery,
    /// The keys to verify with could not be fetched: 503 (the token may well be good).
    Unavailable,
    /// The token was issued after the keys in force were fetched, by a key they lack, and they
    /// may not be re-read for this long yet: 503 with `Retry-After` (likely a key rotation).
    KeysBehind(std::time::Duration),
}

/// The verifier and the metadata of `[server.oauth]`.
pub struct Bearer {
    rules: Rules,
    keys: Arc<KeyStore>,
    resource: Option<Uri>,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    mcp_path: String,
    scheme: &'static str,
    /// The table this was built from, for telling a reload that changes it.
    configured: Oauth,
    maintain: JoinHandle<()>,
}

impl Drop for Bearer {
    fn drop(&mut self) {
        self.maintain.abort();
    }
}

impl Bearer {
    /// Starts fetching the keys (in the background: the gateway serves meanwhile, answering
    /// 503). `https` says whether the gateway's own listener is HTTPS (for the resource URL
    /// taken from a request's `Host`). Fails when `[server.oauth.tls]` cannot be loaded.
    pub fn start(
        oauth: &Oauth,
        mcp_path: &str,
        https: bool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::tls::Error> {
        let keys = Arc::new(KeyStore::new(oauth, metrics)?);
        let maintain = tokio::spawn(keys.clone().maintain(oauth.poll_interval));
        Ok(Self {
            rules: Rules {
                issuer: oauth.expected_issuer.clone(),
                audience: oauth.audience.clone(),
                leeway: oauth.leeway,
            },
            keys,
            resource: oauth.resource.clone(),
            authorization_servers: oauth.authorization_servers.clone(),
            scopes_supported: oauth.scopes_supported.clone(),
            mcp_path: mcp_path.to_owned(),
            scheme: if https { "https" } else { "http" },
            configured: oauth.clone(),
            maintain,
        })
    }

    /// Whether this verifier was built from exactly `oauth`.
    pub fn is_built_from(&self, oauth: &Oauth) -> bool {
        self.configured == *oauth
    }

    /// The verified token of a request to the MCP endpoint.
    pub async fn authenticate(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<VerifiedToken, Refusal> {
        if token_in_query(uri) {
            return Err(Refusal::TokenInQuery);
        }
        let token = bearer_token(headers).map_err(invalid)?;
        let jws = jwt::parse(token).map_err(|error| invalid(error.to_string()))?;
        let keys = self.keys.current();
        let Ok(set) = &keys.set else {
            return Err(Refusal::Unavailable);
        };
        match jws.verify(set) {
            Ok(()) => {}
            // Perhaps the key was rotated in since the last fetch.
            Err(Invalid::UnknownKid) => {
                let (fresh, declined) = match self.keys.after_unknown_kid(keys.generation).await {
                    Refetch::Done(fresh) => (fresh, None),
                    Refetch::Declined(fresh, wait) => (fresh, Some(wait)),
                };
                let Ok(set) = &fresh.set else {
                    return Err(Refusal::Unavailable);
                };
                match jws.verify(set) {
                    Ok(()) => {}
                    Err(Invalid::UnknownKid)
                        if declined.is_some() && issued_after(&jws.claims, fresh.fetched_at) =>
                    {
                        return Err(Refusal::KeysBehind(declined.unwrap_or_default()));
                    }
                    Err(error) => return Err(invalid(error.to_string())),
                }
            }
            Err(error) => return Err(invalid(error.to_string())),
        }
        self.rules
            .check(jws.claims, now())
            .map_err(|error| invalid(error.to_string()))
    }

    /// The RFC 9728 document's URL (path-inserted form), for challenges; `host` is the
    /// request's (already checked by the Host guard), used when `resource` is not configured.
    pub fn metadata_url(&self, host: Option<&str>) -> String {
        format!("{}{METADATA_PATH}{}", self.origin(host), self.mcp_path)
    }

    /// Whether `path` is one of the two places the metadata is served: the path-inserted
    /// form for the MCP endpoint and the root form.
    pub fn is_metadata_path(&self, path: &str) -> bool {
        path == METADATA_PATH
            || path
                .strip_prefix(METADATA_PATH)
                .is_some_and(|rest| rest == self.mcp_path)
    }

    /// The RFC 9728 protected-resource metadata.
    pub fn metadata(&self, host: Option<&str>) -> Value {
        let mut document = json!({
            "resource": self.resource(host),
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !self.scopes_supported.is_empty() {
            document["scopes_supported"] = json!(self.scopes_supported);
        }
        document
    }

    /// `protected_resource.resource`, else this endpoint's URL on the request's host.
    fn resource(&self, host: Option<&str>) -> String {
        match &self.resource {
            Some(resource) => resource.to_string(),
            None => format!("{}{}", self.origin(host), self.mcp_path),
        }
    }

    fn origin(&self, host: Option<&str>) -> String {
        match &self.resource {
            Some(resource) => format!(
                "{}://{}",
                resource.scheme_str().unwrap_or("https"),
                resource.authority().map_or("", |a| a.as_str())
            ),
            None => format!("{}://{}", self.scheme, host.unwrap_or("localhost")),
        }
    }
}

/// Whether the (not yet verified) token says it was issued after `fetched_at`. A forged `iat`
/// only turns its 401 into a 503 until the next re-read, which then answers 401.
fn issued_after(claims: &serde_json::Map<String, Value>, fetched_at: u64) -> bool {
    claims
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(|iat| iat > fetched_at)
}

fn invalid(description: String) -> Refusal {
    Refusal::Token(Challenge::InvalidToken { description })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn token_in_query(uri: &Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    })
}

/// The token of the one `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(match headers.get_all(AUTHORIZATION).iter().count() {
            0 => "no access token: send Authorization: Bearer <token>".to_owned(),
            _ => "more than one Authorization header".to_owned(),
        });
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not visible ASCII".to_owned())?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(
            "the Authorization header is not a Bearer token: send Authorization: Bearer <token>"
                .to_owned(),
        );
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err("the Bearer token is empty".to_owned());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_required_once() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            bearer_token(&headers).unwrap_err(),
            "no access token: send Authorization: Bearer <token>"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR abc"));
        assert_eq!(bearer_token(&headers), Ok("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(
            bearer_token(&headers)
                .unwrap_err()
                .contains("not a Bearer token")
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(
            bearer_token(&headers).unwrap_err(),
            "the Bearer token is empty"
        );
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(
            bearer_token(&headers).unwrap_err(),
            "more than one Authorization header"
        );
    }

    #[test]
    fn a_query_token_is_recognised_by_its_parameter_name() {
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        assert!(token_in_query(&uri("/mcp?access_token=x")));
        assert!(token_in_query(&uri("/mcp?a=1&access_token")));
        assert!(!token_in_query(&uri("/mcp?my_access_token=x")));
        assert!(!token_in_query(&uri("/mcp")));
    }
}
