//! JWT access tokens (RFC 7519, RFC 9068) in JWS compact form: bounded parsing, signature
//! verification against a key set, and the claim checks of a resource server.
//!
//! Nothing here ever puts the token, or a part of it, into an error: the descriptions go back
//! to the client and into logs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::jwk::{self, Alg, AlgRefused, KeySet};

/// Longest token accepted, in bytes; a longer one is refused before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused; the text is the `error_description` sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the access token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts, or a part that is not JSON.
    #[error("the access token is not a JWT (JWS compact serialization): {0}")]
    Malformed(&'static str),
    /// `alg` refused.
    #[error("{0}")]
    Alg(AlgRefused),
    /// A `crit` header names extensions the gateway does not implement (RFC 7515 §4.1.11).
    #[error("the token's header has critical extensions (crit), which are not supported")]
    Critical,
    /// No key in the JWKS has the token's `kid`.
    #[error("no signing key of the authorization server has the token's kid")]
    UnknownKid,
    /// No key of the token's type (and `kid`) verifies the signature.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` missing or not a number.
    #[error("the token has no exp (expiry) claim")]
    NoExpiry,
    /// `exp` (plus leeway) is past.
    #[error("the token expired {0} s ago")]
    Expired(u64),
    /// `nbf` (minus leeway) is ahead.
    #[error("the token is not valid for another {0} s (nbf)")]
    NotYetValid(u64),
    /// `iss` differs from `expected_issuer`.
    #[error("the token was issued by another issuer than {0}")]
    WrongIssuer(String),
    /// `aud` does not contain the expected audience.
    #[error("the token is not meant for this resource (aud does not contain {0})")]
    WrongAudience(String),
    /// `sub` missing.
    #[error("the token has no sub (subject) claim")]
    NoSubject,
}

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub struct Jws<'t> {
    /// The verified-to-be-acceptable algorithm.
    pub alg: Alg,
    /// `kid`.
    pub kid: Option<String>,
    /// `header.payload`, what the signature covers.
    signing_input: &'t [u8],
    signature: Vec<u8>,
    /// The payload's claims.
    pub claims: Map<String, Value>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Splits and decodes a compact JWS; refuses `none`, HMAC and unknown algorithms here, before
/// any key is looked at.
pub fn parse(token: &str) -> Result<Jws<'_>, Invalid> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed("expected three dot-separated parts"));
    };
    let header: Header = json_part(
        header,
        "the header is not base64url",
        "the header is not a JSON object with alg",
    )?;
    let alg = Alg::from_name(&header.alg).map_err(Invalid::Alg)?;
    if header.crit.is_some() {
        return Err(Invalid::Critical);
    }
    let claims: Map<String, Value> = json_part(
        payload,
        "the payload is not base64url",
        "the payload is not a JSON object",
    )?;
    let signature =
        jwk::decode(signature).ok_or(Invalid::Malformed("the signature is not base64url"))?;
    Ok(Jws {
        alg,
        kid: header.kid,
        signing_input: &token.as_bytes()[..token.len() - signature_len(token)],
        signature,
        claims,
    })
}

fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn json_part<T: serde::de::DeserializeOwned>(
    part: &str,
    not_base64: &'static str,
    not_json: &'static str,
) -> Result<T, Invalid> {
    let bytes = jwk::decode(part).ok_or(Invalid::Malformed(not_base64))?;
    serde_json::from_slice(&bytes).map_err(|_| Invalid::Malformed(not_json))
}

impl Jws<'_> {
    /// Checks the signature with the keys that may have made it: the key with the token's
    /// `kid`, or without a `kid`, every key of the algorithm's type.
    pub fn verify(&self, keys: &KeySet) -> Result<(), Invalid> {
        if let Some(kid) = &self.kid
            && !keys.has_kid(kid)
        {
            return Err(Invalid::UnknownKid);
        }
        let verified = keys
            .candidates(self.kid.as_deref(), self.alg)
            .any(|key| key.verify(self.alg, self.signing_input, &self.signature));
        if verified {
            Ok(())
        } else {
            Err(Invalid::BadSignature)
        }
    }
}

/// What a token must say to be accepted here.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` (a string or an array) must contain this.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `iss` (empty when the token has none and no issuer is required).
    pub issuer: Arc<str>,
    /// `sub`.
    pub subject: Arc<str>,
    /// `scope` (space-separated) or `scp` (an array).
    pub scopes: Vec<Arc<str>>,
    /// Every claim, for client identification and audit.
    pub claims: Map<String, Value>,
}

impl Rules {
    /// Checks the claims of a token with a valid signature, at `now` (seconds since the epoch).
    pub fn check(&self, claims: Map<String, Value>, now: u64) -> Result<VerifiedToken, Invalid> {
        let leeway = self.leeway.as_secs();
        let exp = number(&claims, "exp").ok_or(Invalid::NoExpiry)?;
        if now > exp.saturating_add(leeway) {
            return Err(Invalid::Expired(now - exp));
        }
        if let Some(nbf) = number(&claims, "nbf")
            && now.saturating_add(leeway) < nbf
        {
            return Err(Invalid::NotYetValid(nbf - now));
        }
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if let Some(expected) = &self.issuer
            && issuer != expected
        {
            return Err(Invalid::WrongIssuer(expected.clone()));
        }
        if !audiences(&claims).any(|aud| same_resource(aud, &self.audience)) {
            return Err(Invalid::WrongAudience(self.audience.clone()));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or(Invalid::NoSubject)?;
        Ok(VerifiedToken {
            issuer: issuer.into(),
            subject: subject.into(),
            scopes: scopes(&claims),
            claims,
        })
    }
}

/// A NumericDate claim as whole seconds; negative or non-numeric values count as absent.
fn number(claims: &Map<String, Value>, name: &str) -> Option<u64> {
    let value = claims.get(name)?.as_f64()?;
    (value >= 0.0).then_some(value as u64)
}

fn audiences(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let (one, many) = match claims.get("aud") {
        Some(Value::String(aud)) => (Some(aud.as_str()), None),
        Some(Value::Array(auds)) => (None, Some(auds.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

/// Audiences compare as written, except that a URL's trailing `/` does not matter
/// (`https://gw.example` and `https://gw.example/` name the same resource).
fn same_resource(aud: &str, expected: &str) -> bool {
    aud == expected || aud.trim_end_matches('/') == expected.trim_end_matches('/')
}

fn scopes(claims: &Map<String, Value>) -> Vec<Arc<str>> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(scope)), _) => scope.split_ascii_whitespace().map(Arc::from).collect(),
        (_, Some(Value::Array(scp))) => scp
            .iter()
            .filter_map(Value::as_str)
            .map(Arc::from)
            .collect(),
        (_, Some(Value::String(scp))) => scp.split_ascii_whitespace().map(Arc::from).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn token(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(b"sig")
        )
    }

    fn rules() -> Rules {
        Rules {
            issuer: Some("https://as".into()),
            audience: "https://gw/mcp".into(),
            leeway: Duration::from_secs(60),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn oversized_and_malformed_tokens_are_refused_before_decoding() {
        assert_eq!(
            parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(),
            Invalid::TooLarge
        );
        assert_eq!(
            parse("a.b").unwrap_err(),
            Invalid::Malformed("expected three dot-separated parts")
        );
        assert_eq!(
            parse("a.b.c.d").unwrap_err(),
            Invalid::Malformed("expected three dot-separated parts")
        );
        assert_eq!(
            parse("!!.b.c").unwrap_err(),
            Invalid::Malformed("the header is not base64url")
        );
        let no_alg = token(&json!({"kid": "a"}), &json!({}));
        assert_eq!(
            parse(&no_alg).unwrap_err(),
            Invalid::Malformed("the header is not a JSON object with alg")
        );
    }

    #[test]
    fn none_hmac_and_crit_are_refused_in_the_header() {
        let none = token(&json!({"alg": "none"}), &json!({}));
        assert_eq!(
            parse(&none).unwrap_err(),
            Invalid::Alg(AlgRefused::Unsigned)
        );
        let hs = token(&json!({"alg": "HS256"}), &json!({}));
        assert_eq!(
            parse(&hs).unwrap_err(),
            Invalid::Alg(AlgRefused::Hmac("HS256"))
        );
        let crit = token(
            &json!({"alg": "RS256", "crit": ["b64"], "b64": false}),
            &json!({}),
        );
        assert_eq!(parse(&crit).unwrap_err(), Invalid::Critical);
        let ok = token(&json!({"alg": "ES256", "kid": "k"}), &json!({"sub": "a"}));
        let jws = parse(&ok).unwrap();
        assert_eq!((jws.alg, jws.kid.as_deref()), (Alg::Es256, Some("k")));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, ok.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn time_claims_allow_the_leeway_and_no_more() {
        let now = 1_000_000;
        let good = |extra: Value| {
            let mut c = json!({"iss": "https://as", "aud": "https://gw/mcp", "sub": "alice"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            rules().check(claims(c), now)
        };
        assert!(good(json!({"exp": now - 60})).is_ok());
        assert_eq!(
            good(json!({"exp": now - 61})).unwrap_err(),
            Invalid::Expired(61)
        );
        assert_eq!(good(json!({})).unwrap_err(), Invalid::NoExpiry);
        assert_eq!(good(json!({"exp": "soon"})).unwrap_err(), Invalid::NoExpiry);
        assert!(good(json!({"exp": now + 10, "nbf": now + 60})).is_ok());
        assert_eq!(
            good(json!({"exp": now + 500, "nbf": now + 61})).unwrap_err(),
            Invalid::NotYetValid(61)
        );
    }

    #[test]
    fn issuer_audience_and_subject_are_required() {
        let now = 1_000;
        let check = |c: Value| rules().check(claims(c), now);
        let base = json!({"exp": 2_000, "iss": "https://as", "sub": "alice"});
        let with = |key: &str, value: Value| {
            let mut c = base.clone();
            c[key] = value;
            c
        };
        assert!(check(with("aud", json!("https://gw/mcp/"))).is_ok());
        assert!(check(with("aud", json!(["other", "https://gw/mcp"]))).is_ok());
        assert_eq!(
            check(with("aud", json!(["other"]))).unwrap_err(),
            Invalid::WrongAudience("https://gw/mcp".into())
        );
        assert_eq!(
            check(base.clone()).unwrap_err(),
            Invalid::WrongAudience("https://gw/mcp".into())
        );
        let mut wrong_iss = with("aud", json!("https://gw/mcp"));
        wrong_iss["iss"] = json!("https://evil");
        assert_eq!(
            check(wrong_iss).unwrap_err(),
            Invalid::WrongIssuer("https://as".into())
        );
        let mut no_sub = with("aud", json!("https://gw/mcp"));
        no_sub.as_object_mut().unwrap().remove("sub");
        assert_eq!(check(no_sub).unwrap_err(), Invalid::NoSubject);
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let base =
            json!({"exp": 2_000, "iss": "https://as", "sub": "alice", "aud": "https://gw/mcp"});
        let mut spaced = base.clone();
        spaced["scope"] = json!("files:read  files:write");
        let token = rules().check(claims(spaced), 1_000).unwrap();
        assert_eq!(
            token.scopes,
            [Arc::from("files:read"), Arc::from("files:write")]
        );
        assert_eq!((&*token.issuer, &*token.subject), ("https://as", "alice"));
        let mut scp = base;
        scp["scp"] = json!(["a", "b"]);
        let token = rules().check(claims(scp), 1_000).unwrap();
        assert_eq!(token.scopes, [Arc::from("a"), Arc::from("b")]);
        assert_eq!(token.claims["sub"], "alice");
    }
}
