//! `[server.oauth]`: the gateway as an OAuth resource server. The authorization server's keys
//! are served over HTTPS by a real server (`tests/servers/jwks_server.py`, Python's OpenSSL)
//! with a CA made at test time; tokens are signed here with the openssl crate (`authority`).
//! `tokens`: what a client sends, each refusal checked for its status and its exact
//! `WWW-Authenticate` parameters; `keys`: how the gateway gets the keys (rotation, outages,
//! bounds, TLS to the key server).

mod authority;
mod keys;
mod tokens;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::Serving;
use crate::pki::TestPki;
use crate::support::{fixture_stdio_cmd, mcp_headers, raw, wait_for};
use authority::AuthServer;

const ISSUER: &str = "https://as.test";
const RESOURCE: &str = "https://gw.test/mcp";
const METADATA: &str = "https://gw.test/.well-known/oauth-protected-resource/mcp";

/// `[server.oauth]` in front of one stdio fixture `fx`, keys from `jwks` (`url = ...` or
/// `expected_issuer = ...` lines).
fn config(pki: &TestPki, jwks: &str) -> String {
    format!(
        "[server.oauth]\n{jwks}\npoll_interval = \"10m\"\n\
         [server.oauth.protected_resource]\nresource = \"{RESOURCE}\"\n\
         authorization_servers = [\"{ISSUER}\"]\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        pki.path("ca.pem").display(),
        fixture_stdio_cmd(&[])
    )
}

fn url_config(pki: &TestPki, server: &AuthServer) -> String {
    let jwks = format!(
        "url = \"{}\"\nexpected_issuer = \"{ISSUER}\"",
        server.url("/jwks.json")
    );
    config(pki, &jwks)
}

fn with_token(token: Option<&str>, session: Option<&str>) -> HeaderMap {
    let mut headers = mcp_headers(session);
    if let Some(token) = token {
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    headers
}

/// `initialize` with `token`: status, headers, body.
async fn initialize(url: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, body) =
        raw(Method::POST, url, with_token(token, None), Some(&init)).await;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, body)
}

/// The tool names the gateway lists to a client with `token` (a session opened with it).
async fn tool_names(url: &str, token: &str) -> Vec<String> {
    let (status, headers, body) = initialize(url, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, body) = raw(
        Method::POST,
        url,
        with_token(Some(token), Some(&session)),
        Some(&list),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the gateway has fetched the keys and accepts `token`.
async fn ready(url: &str, token: &str) {
    wait_for("the gateway to accept a good token", || async move {
        (initialize(url, Some(token)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

/// The log line of the gateway's first failed key fetch, once there is one; stops the gateway.
async fn failed_fetch_line(serving: Serving) -> String {
    const FAILED: &str = "cannot fetch the OAuth signing keys";
    let logs = wait_for("a failed key fetch in the log", || {
        let logs = serving.logs();
        async move { logs.contains(FAILED).then_some(logs) }
    })
    .await;
    serving.stop().await;
    let line = logs.lines().find(|line| line.contains(FAILED)).unwrap();
    line.to_owned()
}

/// The refusal of `initialize` with `token`: status, `WWW-Authenticate`, JSON-RPC message.
async fn refusal(url: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let (status, headers, body) = initialize(url, token).await;
    let challenge = headers
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, challenge, message)
}

fn invalid_token(description: &str) -> (StatusCode, String, String) {
    (
        StatusCode::UNAUTHORIZED,
        format!(
            "Bearer resource_metadata=\"{METADATA}\", error=\"invalid_token\", error_description=\"{description}\""
        ),
        format!("Unauthorized: {description}"),
    )
}
