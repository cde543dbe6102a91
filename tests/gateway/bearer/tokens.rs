//! Tokens as clients send them: every algorithm accepted, every kind of bad token refused with
//! its challenge, the metadata that tells a client where to get one, and no token in the log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::{Value, json};

use super::authority::{AuthServer, Key, claims, claims_with, now};
use super::*;
use crate::support::Gateway;

#[tokio::test(flavor = "multi_thread")]
async fn good_tokens_of_every_key_type_reach_the_tools() {
    let pki = TestPki::generate();
    let keys = [
        Key::rsa("rs256", "RS256"),
        Key::rsa("ps256", "PS256"),
        Key::rsa("rs512", "RS512"),
        Key::ec("es256", "ES256"),
        Key::ec("es384", "ES384"),
        Key::ed25519("ed"),
    ];
    let refs: Vec<&Key> = keys.iter().collect();
    let server = AuthServer::start(&pki, 0, &refs).await;
    let gateway = Gateway::start(&url_config(&pki, &server), 1).await;
    ready(&gateway.url, &keys[0].sign(&claims())).await;
    for key in &keys {
        let names = tool_names(&gateway.url, &key.sign(&claims())).await;
        assert!(
            names.iter().any(|name| name.starts_with("fx__")),
            "{}: {names:?}",
            key.alg
        );
    }
    // Without a kid, the keys of the algorithm's type are tried.
    let no_kid = keys[3].sign_with_header(&json!({"alg": "ES256"}), &claims());
    assert!(!tool_names(&gateway.url, &no_kid).await.is_empty());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_with_the_invalid_token_challenge() {
    let pki = TestPki::generate();
    let key = Key::rsa("k1", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let gateway = Gateway::start(&url_config(&pki, &server), 1).await;
    let url = &gateway.url;
    ready(url, &key.sign(&claims())).await;
    let pem = key.key.public_key_to_pem().unwrap();
    let hs256 = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "k1"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let hmac = PKey::hmac(&pem).unwrap();
        let mut signer = Signer::new(MessageDigest::sha256(), &hmac).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signer.sign_to_vec().unwrap())
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let tampered = {
        let good = key.sign(&claims());
        let parts: Vec<&str> = good.split('.').collect();
        let payload = URL_SAFE_NO_PAD.encode(claims_with("sub", json!("mallory")).to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let stranger = Key::rsa("k1", "RS256").sign(&claims());
    let cases = [
        (
            None,
            "no access token: send Authorization: Bearer <token>".to_owned(),
        ),
        (
            Some(key.sign(&claims_with("aud", json!(["https://other.test"])))),
            format!("the token is not meant for this resource (aud does not contain {RESOURCE})"),
        ),
        (
            Some(key.sign(&claims_with("iss", json!("https://evil.test")))),
            format!("the token was issued by another issuer than {ISSUER}"),
        ),
        (
            Some(tampered),
            "the token's signature is not valid".to_owned(),
        ),
        (
            Some(stranger),
            "the token's signature is not valid".to_owned(),
        ),
        (
            Some(none),
            "unsigned tokens (alg none) are refused".to_owned(),
        ),
        (
            Some(hs256),
            "HMAC-signed tokens (HS256) are refused: only public-key signatures are accepted"
                .to_owned(),
        ),
        (
            Some(Key::rsa("k9", "RS256").sign(&claims())),
            "no signing key of the authorization server has the token's kid".to_owned(),
        ),
        (
            Some("not-a-jwt".to_owned()),
            "the access token is not a JWT (JWS compact serialization): expected three \
             dot-separated parts"
                .to_owned(),
        ),
        (
            Some("a".repeat(17 * 1024)),
            "the access token is longer than 16384 bytes".to_owned(),
        ),
    ];
    for (token, description) in cases {
        assert_eq!(
            refusal(url, token.as_deref()).await,
            invalid_token(&description),
            "{description}"
        );
    }
    // The seconds named are counted when the gateway checks, which may be a clock tick after
    // the token was signed.
    fn describe(claim: &str, seconds: i64) -> String {
        match claim {
            "exp" => format!("the token expired {seconds} s ago"),
            _ => format!("the token is not valid for another {seconds} s (nbf)"),
        }
    }
    for (claim, offset) in [("exp", -120), ("nbf", 600)] {
        let token = key.sign(&claims_with(claim, json!(now() as i64 + offset)));
        let refused = refusal(url, Some(&token)).await;
        let seconds = offset.abs();
        assert!(
            [seconds, seconds - offset.signum()]
                .iter()
                .any(|&s| refused == invalid_token(&describe(claim, s))),
            "{claim}: {refused:?}"
        );
    }
    // GET and DELETE need the token as much as POST.
    for method in [Method::GET, Method::DELETE] {
        let (status, headers, _) =
            raw(method.clone(), url, with_token(None, Some("x")), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // A token in the query string is refused, even a good one.
    let query = format!("{url}?access_token={}", key.sign(&claims()));
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    let (status, _, body) = raw(Method::POST, &query, with_token(None, None), Some(&init)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["message"],
        "Bad request: an access token in the URL (access_token=) is refused, since URLs are \
         logged; send it as Authorization: Bearer <token>"
    );
    // /health stays open.
    assert_eq!(gateway.health().await["status"], "healthy");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issuer_metadata_names_the_keys_and_our_metadata_needs_no_token() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS384");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let issuer = server.url("");
    server.write(
        ".well-known/oauth-authorization-server",
        &json!({"issuer": issuer, "jwks_uri": server.url("/jwks.json")}),
    );
    let toml = format!(
        "[server.oauth]\nexpected_issuer = \"{issuer}\"\nexpected_audience = \"gw\"\n\
         scopes_supported = [\"tools:call\"]\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        pki.path("ca.pem").display(),
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&toml, 1).await;
    let token = key.sign(&json!({"iss": issuer, "aud": "gw", "sub": "svc", "exp": now() + 60}));
    ready(&gateway.url, &token).await;
    assert!(!tool_names(&gateway.url, &token).await.is_empty());
    assert_eq!(server.fetches("/.well-known/oauth-authorization-server"), 1);
    // No resource configured: the metadata and challenges name this endpoint on the Host used.
    let expected = json!({
        "resource": "http://127.0.0.1/mcp",
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools:call"],
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, _, body) = raw(
            Method::GET,
            &format!("{}{path}", gateway.base),
            mcp_headers(None),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            expected,
            "{path}"
        );
    }
    let (_, challenge, _) = refusal(&gateway.url, None).await;
    assert!(
        challenge.starts_with(
            "Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource/mcp\""
        ),
        "{challenge}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_never_reach_the_log() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let serving =
        Serving::start_with_env(&url_config(&pki, &server), &[("NEXUS_LOG", "debug")]).await;
    let good = key.sign(&claims());
    let expired = key.sign(&claims_with("exp", json!(now() - 3600)));
    let unknown = Key::rsa("other", "RS256").sign(&claims());
    ready(&serving.url(), &good).await;
    for token in [&expired, &unknown] {
        assert_eq!(
            refusal(&serving.url(), Some(token)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let query = format!("{}?access_token={good}", serving.url());
    let (status, ..) = raw(
        Method::POST,
        &query,
        with_token(None, None),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let logs = serving.logs();
    serving.stop().await;
    assert!(logs.contains("access token refused"), "{logs}");
    for token in [&good, &expired, &unknown] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token is in the log:{logs}");
    }
}
