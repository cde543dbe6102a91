//! `[server.rate_limits]` at the HTTP level, and per-caller `[mcp.servers.X.rate_limits]`.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::{CertClient, assert_limited, initialize, mtls_server, wait_out};
use crate::pki::TestPki;
use crate::support::{Gateway, RawSession, fixture_stdio_cmd, mcp_headers, raw};

/// Headers of a request a proxy forwarded for `address` (after an entry the client made up,
/// which one trusted hop makes the gateway ignore).
fn forwarded_for(address: &str) -> HeaderMap {
    let mut headers = mcp_headers(None);
    let value = format!("192.0.2.66, {address}");
    headers.insert("x-forwarded-for", value.parse().unwrap());
    headers
}

async fn initialize_from(url: &str, address: &str) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, body) = raw(
        Method::POST,
        url,
        forwarded_for(address),
        Some(&initialize()),
    )
    .await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn per_ip_quota_is_hit_exactly_at_the_limit_and_whole_again_after_the_interval() {
    let interval = Duration::from_secs(3);
    let toml = "[server.client_ip]\nx_forwarded_for_trusted_hops = 0\n\
        [server.rate_limits]\nenabled = true\nper_ip = { limit = 3, interval = \"3s\" }\n";
    let gateway = Gateway::start_unconnected(toml).await;
    for round in 0..2 {
        for n in 0..3 {
            let (status, _, body) = initialize_from(&gateway.url, "198.51.100.7").await;
            assert_eq!(status, StatusCode::OK, "round {round}, request {n}: {body}");
        }
        let (status, headers, body) = initialize_from(&gateway.url, "198.51.100.7").await;
        assert_limited(status, &headers, &body, "server.rate_limits.per_ip", 1);
        let (status, _, body) = initialize_from(&gateway.url, "198.51.100.8").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "another address has its own quota: {body}"
        );
        wait_out(interval).await;
    }
    gateway.stop().await;
}

/// Nexus counts a tool call twice against `global` (at the HTTP layer and again when routing
/// it); here the session's two requests and three calls through `execute` are five, and only
/// the sixth request is refused. `/health` (polled while starting) is not counted.
#[tokio::test(flavor = "multi_thread")]
async fn each_tool_call_counts_once_against_the_global_quota() {
    let toml = format!(
        "[server.rate_limits]\nenabled = true\nglobal = {{ limit = 5, interval = \"60s\" }}\n\
         [mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&toml, 1).await;
    let session = RawSession::open(&gateway.url).await;
    for n in 0..3 {
        let arguments = json!({"name": "fx__echo", "arguments": {"message": format!("{n}")}});
        assert_eq!(
            session.call_text("execute", arguments).await,
            format!("{n}")
        );
    }
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let (status, headers, body) = session.post(&ping).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_limited(status, &headers, &body, "server.rate_limits.global", 60);
    gateway.stop().await;
}

/// Two client certificates are two callers: each has its own `per_client` quota and its own
/// share of the server's quota; a tool-level refusal is a JSON-RPC error with the seconds to
/// wait, an HTTP-level one a 429.
#[tokio::test(flavor = "multi_thread")]
async fn quotas_count_per_client_certificate() {
    let pki = TestPki::generate();
    let toml = format!(
        "{}[server.rate_limits]\nenabled = true\n\
         per_client = {{ limit = 4, interval = \"4s\" }}\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n\
         [mcp.servers.fx.rate_limits]\nlimit = 2\ninterval = \"60s\"\n",
        mtls_server(&pki),
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start_unconnected(&toml).await;
    let alice = CertClient::new(&pki, "client-ec", &gateway.url);
    let bob = CertClient::new(&pki, "client-b", &gateway.url);
    alice.wait_connected(1).await;
    let (status, session, _) = alice.initialize().await;
    assert_eq!(status, StatusCode::OK);
    let session = session.unwrap();
    for n in 0..2 {
        let (status, body) = alice
            .call(&session, "fx__echo", json!({"message": "hi"}))
            .await;
        assert_eq!(
            (status, &body["result"]["content"][0]["text"]),
            (StatusCode::OK, &json!("hi")),
            "call {n}: {body}"
        );
    }
    let (status, body) = alice
        .call(&session, "fx__echo", json!({"message": "hi"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = &body["error"];
    assert_eq!(error["code"], -32029, "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("[mcp.servers.fx.rate_limits] reached (2 per 1m)"),
        "{message}"
    );
    let seconds = error["data"]["retryAfterSeconds"].as_u64().unwrap();
    assert!((1..=30).contains(&seconds), "{body}");
    assert!(
        message.ends_with(&format!("retry in {seconds} s")),
        "{message}"
    );

    let (status, headers, body) = alice.post(mcp_headers(None), &initialize()).await;
    assert_limited(status, &headers, &body, "server.rate_limits.per_client", 1);

    let (status, session, _) = bob.initialize().await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another certificate has its own quota"
    );
    let (_, body) = bob
        .call(&session.unwrap(), "fx__echo", json!({"message": "bob"}))
        .await;
    assert_eq!(body["result"]["content"][0]["text"], "bob", "{body}");

    wait_out(Duration::from_secs(4)).await;
    let (status, ..) = alice.initialize().await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the quota is whole again after its interval"
    );
    gateway.stop().await;
}
