//! How the gateway gets the signing keys: rotation with one shared, rate-limited refetch; 503
//! while they cannot be fetched; the size, memory and time bounds; TLS to the key server (a CA,
//! a client certificate, an HSM key); `nexus check`'s warnings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::authority::{AuthServer, Key, claims, claims_with};
use super::*;
use crate::support::{Gateway, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_cannot_force_more_fetches() {
    let pki = TestPki::generate();
    let old = Key::ec("old", "ES256");
    let server = AuthServer::start(&pki, 0, &[&old]).await;
    let gateway = Gateway::start(&url_config(&pki, &server), 1).await;
    ready(&gateway.url, &old.sign(&claims())).await;
    assert!(
        !tool_names(&gateway.url, &old.sign(&claims()))
            .await
            .is_empty()
    );
    assert_eq!(server.fetches("/jwks.json"), 1);
    let new = Key::rsa("new", "PS256");
    // The fetch at start does not count against the re-reads unknown kids may cause, so the
    // rotated key is fetched at once.
    server.publish(&[&old, &new]);
    let good = new.sign(&claims());
    let forged: Vec<String> = (0..40)
        .map(|i| {
            old.sign_with_header(
                &json!({"alg": "ES256", "kid": format!("nope-{i}")}),
                &claims(),
            )
        })
        .collect();
    let url = gateway.url.clone();
    let attempts = forged
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::repeat_n(Some(good.clone()), 10));
    let outcomes = futures_util::future::join_all(attempts.map(|token| {
        let url = url.clone();
        async move { initialize(&url, token.as_deref()).await.0 }
    }))
    .await;
    let (refused, accepted) = outcomes.split_at(40);
    assert!(
        refused
            .iter()
            .all(|status| *status == StatusCode::UNAUTHORIZED),
        "{refused:?}"
    );
    assert!(
        accepted.iter().all(|status| *status == StatusCode::OK),
        "{accepted:?}"
    );
    assert_eq!(
        server.fetches("/jwks.json"),
        2,
        "the misses share one fetch"
    );
    // Right after that fetch, more unknown kids fetch nothing.
    for token in &forged[..10] {
        assert_eq!(refusal(&url, Some(token)).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        server.fetches("/jwks.json"),
        2,
        "refetches are rate-limited"
    );
    assert!(!tool_names(&url, &good).await.is_empty());
    // A second rotation within 10 s of that re-read: a token issued since it is told when to
    // come back (the re-read is then allowed), not that it is bad.
    let third = Key::ec("third", "ES384");
    server.publish(&[&old, &new, &third]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newest = third.sign(&claims());
    let (status, headers, body) = initialize(&url, Some(&newest)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "Retry-After: {retry}");
    assert_eq!(server.fetches("/jwks.json"), 2);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert!(!tool_names(&url, &newest).await.is_empty());
    assert_eq!(server.fetches("/jwks.json"), 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_keys_answer_503_until_they_can_be_fetched() {
    let pki = TestPki::generate();
    let key = Key::ed25519("k");
    let port = free_port().await;
    let jwks =
        format!("url = \"https://127.0.0.1:{port}/jwks.json\"\nexpected_issuer = \"{ISSUER}\"");
    let gateway = Gateway::start(&config(&pki, &jwks), 1).await;
    let token = key.sign(&claims());
    let (status, headers, body) = initialize(&gateway.url, Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(
        body["error"]["message"],
        "Service unavailable: the gateway has not yet fetched the authorization server's signing \
         keys, so it cannot verify access tokens; try again shortly"
    );
    // No token is still a 401: the client is told to get one.
    assert_eq!(
        refusal(&gateway.url, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gateway.health().await["status"], "healthy");
    let server = AuthServer::start(&pki, port, &[&key]).await;
    ready(&gateway.url, &token).await;
    assert!(server.fetches("/jwks.json") >= 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_over_1_mib_is_not_taken() {
    let pki = TestPki::generate();
    let key = Key::ec("k", "ES256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let padding = "x".repeat(1024 * 1024);
    server.write(
        "jwks.json",
        &json!({"keys": [key.jwk()], "padding": padding}),
    );
    let gateway = Gateway::start(&url_config(&pki, &server), 1).await;
    // Taken, it would not be fetched again for poll_interval (10 min): a second fetch, after
    // backoff, shows the first was refused.
    wait_for("a second fetch of the oversized JWKS", || async {
        (server.fetches("/jwks.json") >= 2).then_some(())
    })
    .await;
    let token = key.sign(&claims());
    assert_eq!(
        initialize(&gateway.url, Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.publish(&[&key]);
    ready(&gateway.url, &token).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_key_server_is_logged_with_the_fix() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let without_ca = url_config(&pki, &server).replace(
        &format!(
            "[server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n",
            pki.path("ca.pem").display()
        ),
        "",
    );
    let serving = Serving::start(&without_ca).await;
    let token = key.sign(&claims());
    assert_eq!(
        initialize(&serving.url(), Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let line = failed_fetch_line(serving).await;
    assert!(line.contains(&server.url("/jwks.json")), "{line}");
    assert!(line.contains("root_ca_cert_path"), "{line}");
}

/// The most memory the gateway may hold while it is fed a 256 MiB JWKS and a flood of 16 KiB
/// bad tokens (a debug build starts at about 37 MiB; without the JWKS bound it reached 833 MiB).
const PEAK_RSS_CEILING_MIB: u64 = 64;

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_jwks_and_a_flood_of_big_tokens_cost_little_memory() {
    let pki = TestPki::generate();
    let key = Key::ec("k", "ES256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    // Sparse: no disk is used, but 256 MiB are served.
    std::fs::File::create(server.dir.path().join("jwks.json"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let serving = Serving::start(&url_config(&pki, &server)).await;
    let start = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    wait_for("three refused fetches of the huge JWKS", || async {
        (server.fetches("/jwks.json") >= 3).then_some(())
    })
    .await;
    let after_jwks = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    server.publish(&[&key]);
    ready(&serving.url(), &key.sign(&claims())).await;
    let big = |i: usize| {
        let claims = claims_with("padding", json!("x".repeat(12 * 1024 + i)));
        key.sign(&claims)
    };
    let url = serving.url();
    for round in 0..25 {
        let tokens: Vec<String> = (0..40).map(|i| big(round * 40 + i)).collect();
        let statuses =
            futures_util::future::join_all(tokens.iter().map(|token| refusal(&url, Some(token))))
                .await;
        // Good signatures, but bigger than the bound once signed: refused unread.
        assert!(
            statuses
                .iter()
                .all(|(status, ..)| *status == StatusCode::UNAUTHORIZED)
        );
    }
    let peak = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    serving.stop().await;
    println!(
        "peak RSS: {start} MiB at start, {after_jwks} MiB after the 256 MiB JWKS, {peak} MiB after \
         1000 big tokens"
    );
    assert!(peak < PEAK_RSS_CEILING_MIB, "peak RSS {peak} MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_server_may_require_the_gateways_client_certificate() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "PS384");
    let server = AuthServer::start_mutual(&pki, &[&key]).await;
    let identity = format!(
        "client_cert_path = \"{}\"\nclient_key_path = \"{}\"\n[mcp]",
        pki.path("client-rsa.pem").display(),
        pki.path("client-rsa.key").display()
    );
    let mutual = url_config(&pki, &server).replacen("[mcp]", &identity, 1);
    let gateway = Gateway::start(&mutual, 1).await;
    ready(&gateway.url, &key.sign(&claims())).await;
    gateway.stop().await;
    // Without the certificate the server refuses the gateway, which says what it lacked.
    let serving = Serving::start(&url_config(&pki, &server)).await;
    let line = failed_fetch_line(serving).await;
    assert!(line.contains("client certificate"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_server_that_never_answers_is_given_up_on_after_10_s() {
    let pki = TestPki::generate();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let holding = accepted.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holding.lock().unwrap().push(stream);
        }
    });
    let jwks =
        format!("url = \"https://127.0.0.1:{port}/jwks.json\"\nexpected_issuer = \"{ISSUER}\"");
    let gateway = Gateway::start(&config(&pki, &jwks), 1).await;
    // A second connection means the first fetch timed out and was retried.
    wait_for("a retry after the fetch timeout", || {
        let count = accepted.lock().unwrap().len();
        async move { (count >= 2).then_some(()) }
    })
    .await;
    let token = Key::ed25519("k").sign(&claims());
    assert_eq!(
        initialize(&gateway.url, Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gateway.stop().await;
    acceptor.abort();
}

#[test]
fn check_warns_about_plain_http_keys_and_a_missing_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    let text = "[server.oauth]\nurl = \"http://as.example/jwks.json\"\n\
                [server.oauth.protected_resource]\nresource = \"https://gw.example/mcp\"\n\
                authorization_servers = [\"https://as.example\"]\n";
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let at = path.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "warning: {at}:1:1: server.oauth: `expected_issuer` is not set: tokens of any issuer \
                 signed with these keys are accepted (some providers share keys between tenants); set \
                 `expected_issuer` to the authorization server's issuer URL"
            ),
            format!(
                "warning: {at}:2:7: server.oauth.url: `http://as.example/jwks.json` is http://: it can \
                 be read and altered on the way (keys, tokens, metadata); use https:// outside loopback"
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_client_key_for_the_key_server_may_live_in_the_hsm() {
    use crate::pkcs11_support::{KEYS, Pki, private_uri};
    let token = Pki::new();
    let key = Key::ec("k", "ES256");
    let (cert, server_key, ca) = (
        token.path("server.crt"),
        token.path("server.key"),
        token.path("ca.crt"),
    );
    let server = AuthServer::launch(&cert, &server_key, 0, &[&key], Some(&ca)).await;
    let toml = format!(
        "[pkcs11]\nmodule_path = \"{}\"\npin_file = \"{}\"\n\
         [server.oauth]\nurl = \"{}\"\nexpected_issuer = \"{ISSUER}\"\n\
         [server.oauth.protected_resource]\nresource = \"{RESOURCE}\"\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\nserver_name = \"localhost\"\n\
         client_cert_path = \"{}\"\nclient_key_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        token.module.display(),
        token.pin_file.display(),
        server.url("/jwks.json"),
        ca.display(),
        token.cert(KEYS[1]),
        private_uri(KEYS[1]),
        fixture_stdio_cmd(&[])
    );
    let conf = token.conf.display().to_string();
    let serving = Serving::start_with_env(&toml, &[("SOFTHSM2_CONF", &conf)]).await;
    ready(&serving.url(), &key.sign(&claims())).await;
    assert_eq!(server.fetches("/jwks.json"), 1);
    serving.stop().await;
}
