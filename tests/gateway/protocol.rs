//! The front end's Streamable HTTP (handshake era) on the wire, checked with raw HTTP: sessions,
//! version negotiation and headers, JSON versus SSE answers, the GET stream, cancellation,
//! batches, `Origin`/`Host` validation and `/health`.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Gateway, RawSession, fixture_stdio_cmd, mcp_headers, raw, sse_messages, text, wait_for,
};

/// A gateway in front of one stdio fixture named `fx`, tools listed directly.
async fn gateway() -> Gateway {
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    Gateway::start(&toml, 1).await
}

/// POSTs `initialize` asking for `version`; returns the session header and the result.
async fn initialize(url: &str, version: &str) -> (Option<String>, Value) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, headers, body) = raw(Method::POST, url, mcp_headers(None), Some(&init)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let session = headers
        .get("mcp-session-id")
        .map(|id| id.to_str().unwrap().to_owned());
    let response: Value = serde_json::from_slice(&body).unwrap();
    (session, response["result"].clone())
}

/// The JSON-RPC error of an HTTP error answer, with its status.
fn http_error(status: StatusCode, body: &[u8]) -> (StatusCode, String) {
    let response: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    let message = response["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON-RPC error: {response}"))
        .to_owned();
    (status, message)
}

fn tools_list() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_mints_a_session_and_negotiates_the_version() {
    let gateway = gateway().await;
    let (session, result) = initialize(&gateway.url, "2025-03-26").await;
    let session = session.expect("initialize must answer with Mcp-Session-Id");
    assert!(session.len() >= 16, "a guessable session id: {session}");
    assert_eq!(result["protocolVersion"], "2025-03-26");
    assert_eq!(result["serverInfo"]["name"], "nexus");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);

    let (other, result) = initialize(&gateway.url, "1999-01-01").await;
    assert_eq!(result["protocolVersion"], "2025-11-25");
    assert_ne!(other.unwrap(), session, "each initialize is a new session");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_need_a_known_session_and_a_supported_version() {
    let gateway = gateway().await;
    let (status, _, body) = raw(
        Method::POST,
        &gateway.url,
        mcp_headers(None),
        Some(&tools_list()),
    )
    .await;
    let (status, message) = http_error(status, &body);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("Mcp-Session-Id"), "{message}");

    let (status, _, body) = raw(
        Method::POST,
        &gateway.url,
        mcp_headers(Some("0123456789abcdef0123456789abcdef")),
        Some(&tools_list()),
    )
    .await;
    let (status, message) = http_error(status, &body);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains("Session not found"), "{message}");

    let session = RawSession::open(&gateway.url).await;
    let mut headers = mcp_headers(Some(&session.id));
    headers.insert("mcp-protocol-version", "2099-01-01".parse().unwrap());
    let (status, _, body) = raw(Method::POST, &gateway.url, headers, Some(&tools_list())).await;
    let (status, message) = http_error(status, &body);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("`2099-01-01`"), "{message}");
    assert!(
        message.contains("2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05"),
        "the supported revisions must be listed: {message}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_ends_the_session() {
    let gateway = gateway().await;
    let session = RawSession::open(&gateway.url).await;
    let (status, ..) = raw(
        Method::DELETE,
        &gateway.url,
        mcp_headers(Some(&session.id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = session.post(&tools_list()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = raw(
        Method::DELETE,
        &gateway.url,
        mcp_headers(Some(&session.id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a session ends once");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_answer_is_json_and_progress_makes_it_a_stream() {
    let gateway = gateway().await;
    let session = RawSession::open(&gateway.url).await;
    // `request` asserts `application/json` for a call without notifications.
    let echo = session
        .call(3, "fx__echo", json!({"message": "plain"}))
        .await;
    assert_eq!(echo["id"], 3);
    assert_eq!(text(&echo["result"]), "plain");

    let call = json!({"jsonrpc": "2.0", "id": "p-1", "method": "tools/call", "params": {
        "name": "fx__progress", "arguments": {"steps": 3, "delay_ms": 10},
        "_meta": {"progressToken": "client-token"}}});
    let (status, headers, body) = session.post(&call).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let messages = sse_messages(std::str::from_utf8(&body).unwrap());
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|message| message["method"] == "notifications/progress")
        .collect();
    let steps: Vec<u64> = progress
        .iter()
        .map(|message| message["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3], "{messages:#?}");
    for message in &progress {
        assert_eq!(
            message["params"]["progressToken"], "client-token",
            "the client's own token comes back"
        );
    }
    let response = messages.last().unwrap();
    assert_eq!(
        response["id"], "p-1",
        "the response ends the stream: {messages:#?}"
    );
    assert_eq!(text(&response["result"]), "done 3");
    assert_eq!(
        messages
            .iter()
            .filter(|message| message.get("id").is_some())
            .count(),
        1,
        "one response: {messages:#?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_get_stream_carries_list_changes() {
    let gateway = gateway().await;
    let session = RawSession::open(&gateway.url).await;
    let mut stream = session.notifications().await;
    assert_eq!(
        session
            .call_text("fx__add_tool", json!({"name": "fresh"}))
            .await,
        "added fresh"
    );
    // The stream may still carry the announcement of fx's first connection: read until the
    // change that lists the new tool (the catalog is rebuilt before it is announced).
    for _ in 0..10 {
        let message = stream.next_message().await;
        if message["method"] != "notifications/tools/list_changed" {
            continue;
        }
        let list = session.request("tools/list", json!({})).await;
        let tools = crate::support::names(&list["result"], "tools");
        if tools.contains(&"fx__fresh".to_owned()) {
            gateway.stop().await;
            return;
        }
    }
    panic!("no tools/list_changed announcing fx__fresh on the GET stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_call_is_answered_at_once_and_cancelled_downstream() {
    let gateway = gateway().await;
    let session = std::sync::Arc::new(RawSession::open(&gateway.url).await);
    let call = tokio::spawn({
        let session = session.clone();
        async move { session.call(7, "fx__sleep", json!({"ms": 60_000})).await }
    });
    wait_for("the sleep call runs in the fixture", || async {
        let running = session.call_text("fx__inflight_max", json!({})).await;
        (running == "1").then_some(())
    })
    .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "changed my mind"}});
    let (status, ..) = session.post(&cancel).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The call would sleep for a minute: an answer within WAIT is the cancellation's.
    let response = tokio::time::timeout(crate::support::WAIT, call)
        .await
        .expect("a cancelled call must be answered at once")
        .unwrap();
    assert_eq!(response["id"], 7);
    assert_eq!(response["error"]["code"], -32800, "{response}");
    // Had the fixture kept sleeping, this sleep would make two at once.
    assert_eq!(
        session.call_text("fx__sleep", json!({"ms": 50})).await,
        "slept 50"
    );
    assert_eq!(
        session.call_text("fx__inflight_max", json!({})).await,
        "1",
        "the downstream sleep was not cancelled"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_answered_with_a_batch() {
    let gateway = gateway().await;
    let (session, _) = initialize(&gateway.url, "2025-03-26").await;
    let mut headers = mcp_headers(session.as_deref());
    headers.insert("mcp-protocol-version", "2025-03-26".parse().unwrap());
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
         "params": {"name": "fx__echo", "arguments": {"message": "first"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "ping"},
    ]);
    let (status, headers, body) = raw(Method::POST, &gateway.url, headers, Some(&batch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let responses: Value = serde_json::from_slice(&body).unwrap();
    let responses = responses.as_array().expect("a batch answer is an array");
    assert_eq!(
        responses.len(),
        2,
        "one response per request: {responses:?}"
    );
    assert_eq!(responses[0]["id"], "a");
    assert_eq!(text(&responses[0]["result"]), "first");
    assert_eq!(responses[1]["id"], "b");
    assert_eq!(responses[1]["result"], json!({}));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_origins_and_hosts_are_refused() {
    let gateway = gateway().await;
    let mut headers = mcp_headers(None);
    headers.insert("origin", "http://evil.example".parse().unwrap());
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}});
    let (status, _, body) = raw(Method::POST, &gateway.url, headers, Some(&init)).await;
    let (status, message) = http_error(status, &body);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("http://evil.example"), "{message}");

    let mut headers = mcp_headers(None);
    headers.insert("host", "evil.example:8000".parse().unwrap());
    let (status, _, body) = raw(Method::POST, &gateway.url, headers, Some(&init)).await;
    let (status, message) = http_error(status, &body);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("evil.example:8000"), "{message}");

    let mut headers = mcp_headers(None);
    headers.insert("origin", "http://localhost:3000".parse().unwrap());
    let (status, ..) = raw(Method::POST, &gateway.url, headers, Some(&init)).await;
    assert_eq!(status, StatusCode::OK, "a loopback origin is allowed");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_every_downstream() {
    let gateway = gateway().await;
    let (status, headers, body) = raw(
        Method::GET,
        &format!("{}/health", gateway.base),
        HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        health,
        json!({"status": "healthy", "downstreams": {"connected": 1, "total": 1},
               "servers": {"fx": {"status": "connected", "protocolVersion": "2025-11-25"}}})
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_and_tools_are_json_rpc_errors() {
    let gateway = gateway().await;
    let session = RawSession::open(&gateway.url).await;
    let response = session.request("no/such/method", json!({})).await;
    assert_eq!(response["error"]["code"], -32601, "{response}");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no/such/method"),
        "{response}"
    );
    let response = session.call(2, "fx__nope", json!({})).await;
    assert_eq!(response["id"], 2);
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fx__nope"),
        "{response}"
    );
    gateway.stop().await;
}

/// `logging/setLevel` applies to the client that sent it: the second conformance fixture
/// (stdio, handshake era; log messages on its session reach the clients' GET streams) honours
/// the level it is given, and gets the most verbose one any client asked for, so a client
/// asking for debug keeps its info messages after another asked for errors only, and that
/// other one gets none.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_level_applies_to_its_own_client_only() {
    let toml = crate::support::unprefixed("hs", &crate::dual_era::fixture_cmd());
    let gateway = Gateway::start(&toml, 1).await;
    let (quiet, chatty) = (
        RawSession::open(&gateway.url).await,
        RawSession::open(&gateway.url).await,
    );
    let (mut quiet_stream, mut chatty_stream) =
        (quiet.notifications().await, chatty.notifications().await);
    for (session, level) in [(&chatty, "debug"), (&quiet, "error")] {
        let answer = session
            .request("logging/setLevel", json!({"level": level}))
            .await;
        assert_eq!(answer["result"], json!({}), "{answer}");
    }
    chatty.call_text("test_tool_with_logging", json!({})).await;
    for _ in 0..3 {
        let message = chatty_stream.next_message().await;
        assert_eq!(message["method"], "notifications/message", "{message}");
        assert_eq!(message["params"]["level"], "info", "{message}");
    }
    let leaked = quiet_stream
        .next_message_within(std::time::Duration::from_millis(500))
        .await;
    assert!(
        leaked.is_none(),
        "an info message reached the client that asked for errors: {leaked:?}"
    );
    gateway.stop().await;
}
