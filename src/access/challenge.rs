//! Refusals of the front door as RFC 6750 / RFC 9728 `WWW-Authenticate: Bearer` challenges.

use http::{HeaderValue, StatusCode};

/// Why a request was refused by the bearer-token check or a scope requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No token, a bad one (signature, expiry, audience, issuer...), or one the gateway could
    /// not check: 401 `invalid_token`. A missing token gets the error code too (RFC 6750 §3.1
    /// would omit it), so every refusal tells the client what to fix.
    InvalidToken {
        /// What is wrong, for the client; never contains the token.
        description: String,
    },
    /// A valid token without every scope that the server or tool requires: 403.
    InsufficientScope {
        /// The scopes the request needs (all of them, space-separated in the header).
        required: Vec<String>,
        /// What is missing, for the client.
        description: String,
    },
}

impl Challenge {
    /// The status the refusal is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            Challenge::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            Challenge::InsufficientScope { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` value; `resource_metadata` is the RFC 9728 document's URL.
    pub fn header(&self, resource_metadata: Option<&str>) -> HeaderValue {
        let mut params = Vec::new();
        if let Some(url) = resource_metadata {
            params.push(("resource_metadata", url.to_owned()));
        }
        match self {
            Challenge::InvalidToken { description } => {
                params.push(("error", "invalid_token".to_owned()));
                params.push(("error_description", description.clone()));
            }
            Challenge::InsufficientScope {
                required,
                description,
            } => {
                params.push(("error", "insufficient_scope".to_owned()));
                params.push(("scope", required.join(" ")));
                params.push(("error_description", description.clone()));
            }
        }
        let params: Vec<String> = params
            .into_iter()
            .map(|(name, value)| format!("{name}=\"{}\"", quoted(&value)))
            .collect();
        HeaderValue::from_str(&format!("Bearer {}", params.join(", ")))
            .expect("BUG: quoted() leaves only visible ASCII")
    }

    /// The message for the JSON-RPC error body sent with the challenge.
    pub fn message(&self) -> String {
        match self {
            Challenge::InvalidToken { description } => format!("Unauthorized: {description}"),
            Challenge::InsufficientScope { description, .. } => format!("Forbidden: {description}"),
        }
    }
}

/// An RFC 7230 quoted-string body: `"` and `\` escaped, anything outside visible ASCII
/// replaced, so a description cannot break or smuggle header syntax.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_is_told_what_to_send_and_where_the_metadata_is() {
        let challenge = Challenge::InvalidToken {
            description: "no access token: send Authorization: Bearer <token>".to_owned(),
        };
        assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
        let url = "https://gw.example/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            challenge.header(Some(url)),
            format!(
                "Bearer resource_metadata=\"{url}\", error=\"invalid_token\", error_description=\"no access token: send Authorization: Bearer <token>\""
            )
        );
    }

    #[test]
    fn descriptions_are_quoted_safely() {
        let challenge = Challenge::InvalidToken {
            description: "bad \"kid\"\r\nx: y".to_owned(),
        };
        assert_eq!(
            challenge.header(None),
            "Bearer error=\"invalid_token\", error_description=\"bad \\\"kid\\\"??x: y\""
        );
    }

    #[test]
    fn insufficient_scope_names_every_required_scope() {
        let challenge = Challenge::InsufficientScope {
            required: vec!["files:read".to_owned(), "files:write".to_owned()],
            description: "the tool files__write needs scope files:write".to_owned(),
        };
        assert_eq!(challenge.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenge.header(None),
            "Bearer error=\"insufficient_scope\", scope=\"files:read files:write\", error_description=\"the tool files__write needs scope files:write\""
        );
    }
}
