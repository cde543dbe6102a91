//! Server-to-client requests reaching a handshake-era client. From a handshake-era downstream:
//! server-everything's sampling and elicitation tools ask the official Python client through
//! the gateway, over stdio (the only call in flight) and Streamable HTTP (the call's stream).
//! From a stateless (2026-07-28) downstream, the conformance fixture: its `input_required`
//! results become requests to the client, and reach a stateless client unchanged. And the
//! other way round: server-everything's request becomes `input_required` for a stateless
//! client, whose retry answers it.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance::fixture_gateway_toml;
use crate::support::{
    Gateway, Server, everything_stdio_cmd, everything_unprefixed, ok, python_client, raw,
    sse_messages, text,
};

/// Options of a client that declares sampling and elicitation, replies "hi from the client"
/// to sampling and accepts elicitations with `content` (JSON).
fn answering(content: &str) -> [&str; 6] {
    [
        "--sampling-reply",
        "hi from the client",
        "--elicitation-action",
        "accept",
        "--elicitation-content",
        content,
    ]
}

/// Calls the sampling and elicitation tools with a client that answers both.
async fn ask_the_client(url: &str) -> Value {
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "trigger-sampling-request", "arguments": {"prompt": "Say hi"}},
        {"op": "call_tool", "name": "trigger-elicitation-request", "arguments": {}},
    ]);
    python_client(url, steps, &answering(r#"{"name": "Ada"}"#)).await
}

/// The methods of the requests the client was sent, in order.
fn asked(run: &Value) -> Vec<&str> {
    run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == "request")
        .map(|event| event["method"].as_str().unwrap())
        .collect()
}

/// The tools exist (the gateway declared the capabilities downstream) and the client's answers
/// came back to the downstream.
fn check(run: &Value) {
    let tools = ok(run, 0).to_string();
    assert!(tools.contains("trigger-sampling-request"), "{run:#}");
    let sampled = text(ok(run, 1));
    assert!(sampled.contains("hi from the client"), "{run:#}");
    let elicited = ok(run, 2).to_string();
    assert!(elicited.contains("Ada"), "{run:#}");
    let asked = asked(run);
    assert!(
        asked.contains(&"sampling/createMessage") && asked.contains(&"elicitation/create"),
        "{run:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_and_elicitation_reach_the_client_over_stdio() {
    let toml = everything_unprefixed(&format!("cmd = {}", everything_stdio_cmd()));
    let gateway = Gateway::start(&toml, 1).await;
    check(&ask_the_client(&gateway.url).await);
    gateway.stop().await;
}

/// server-everything over Streamable HTTP as the gateway's only downstream (the server lives
/// as long as the first value is kept).
async fn everything_over_http() -> (Server, Gateway) {
    let everything = Server::everything_http().await;
    let toml = everything_unprefixed(&format!("url = \"{}\"", everything.url()));
    (everything, Gateway::start(&toml, 1).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_and_elicitation_reach_the_client_over_streamable_http() {
    let (_everything, gateway) = everything_over_http().await;
    check(&ask_the_client(&gateway.url).await);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_the_capability_is_not_asked() {
    let toml = everything_unprefixed(&format!("cmd = {}", everything_stdio_cmd()));
    let gateway = Gateway::start(&toml, 1).await;
    let steps = json!([
        {"op": "call_tool", "name": "trigger-sampling-request", "arguments": {"prompt": "Say hi"}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    let outcome = run["results"][0].to_string();
    assert!(outcome.contains("sampling"), "{run:#}");
    assert!(
        !run["events"].to_string().contains("\"request\""),
        "{run:#}"
    );
    gateway.stop().await;
}

/// Runs `steps` with the Python client (and its `options`) through a gateway in front of the
/// stateless conformance fixture.
async fn through_the_fixture(steps: Value, options: &[&str]) -> Value {
    let gateway = Gateway::start(&fixture_gateway_toml(), 1).await;
    let run = python_client(&gateway.url, steps, options).await;
    gateway.stop().await;
    run
}

/// The stateless fixture asks through `input_required`; the gateway asks the handshake-era
/// client on the call's stream and retries with its answers until the result is complete.
#[tokio::test(flavor = "multi_thread")]
async fn input_required_results_become_requests_to_a_handshake_client() {
    let steps = json!([
        {"op": "call_tool", "name": "test_sampling", "arguments": {"prompt": "Say hi"}},
        {"op": "call_tool", "name": "test_elicitation", "arguments": {"message": "Who are you?"}},
        {"op": "call_tool", "name": "test_elicitation_sep1034_defaults", "arguments": {}},
    ]);
    let content = r#"{"username": "ada", "email": "ada@example.org"}"#;
    let run = through_the_fixture(steps, &answering(content)).await;
    assert_eq!(text(ok(&run, 0)), "LLM response: hi from the client");
    assert!(
        text(ok(&run, 1)).contains(r#""username": "ada""#),
        "{run:#}"
    );
    assert!(text(ok(&run, 2)).contains("action=accept"), "{run:#}");
    assert_eq!(
        asked(&run),
        [
            "sampling/createMessage",
            "elicitation/create",
            "elicitation/create"
        ],
        "{run:#}"
    );
}

/// A client that declared neither capability: the downstream is told so and never asks.
#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_downstream_learns_what_the_handshake_client_lacks() {
    let steps = json!([
        {"op": "call_tool", "name": "test_sampling", "arguments": {"prompt": "Say hi"}},
    ]);
    let run = through_the_fixture(steps, &[]).await;
    assert_eq!(text(ok(&run, 0)), "Client does not support sampling");
    assert!(asked(&run).is_empty(), "{run:#}");
}

/// A stateless `tools/call` of `name` by a client that declared sampling, with `params`
/// merged in (a retry's `inputResponses` and `requestState`). Returns the final message of the
/// answer (JSON or SSE).
async fn stateless_call(url: &str, name: &str, params: Value) -> Value {
    let mut body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": name, "arguments": {"prompt": "Say hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}}});
    body["params"]
        .as_object_mut()
        .unwrap()
        .extend(params.as_object().unwrap().clone());
    let mut headers = HeaderMap::new();
    for (key, value) in [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("host", "127.0.0.1"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ] {
        headers.insert(key, value.parse().unwrap());
    }
    let (status, _, bytes) = raw(Method::POST, url, headers, Some(&body)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|_| sse_messages(&text).pop().unwrap())
}

/// A stateless client answers `input_required` itself: the result reaches it unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn input_required_results_pass_through_to_a_stateless_client() {
    let gateway = Gateway::start(&fixture_gateway_toml(), 1).await;
    let response = stateless_call(&gateway.url, "test_sampling", json!({})).await;
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response:#}");
    assert_eq!(
        result["inputRequests"]["sampling"]["method"], "sampling/createMessage",
        "{response:#}"
    );
    gateway.stop().await;
}

/// server-everything (handshake era) asks for sampling during a stateless client's call: the
/// client gets `input_required`, and its retry's answer reaches the waiting downstream.
#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_downstream_asks_a_stateless_client_with_input_required() {
    // Over Streamable HTTP the request comes on the call's own stream: over stdio it would be
    // refused whenever the gateway has another call in flight (a list refresh).
    let (_everything, gateway) = everything_over_http().await;
    let name = "trigger-sampling-request";
    let asked = stateless_call(&gateway.url, name, json!({})).await;
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked:#}");
    assert_eq!(
        result["inputRequests"]["sampling"]["method"], "sampling/createMessage",
        "{asked:#}"
    );
    let answer = json!({"role": "assistant", "model": "test",
        "content": {"type": "text", "text": "hi from the client"}});
    let retry = json!({
        "inputResponses": {"sampling": answer},
        "requestState": result["requestState"],
    });
    let done = stateless_call(&gateway.url, name, retry.clone()).await;
    assert_eq!(done["id"], 4, "{done:#}");
    assert!(
        text(&done["result"]).contains("hi from the client"),
        "{done:#}"
    );
    assert_eq!(done["result"]["resultType"], "complete", "{done:#}");
    // The state was used up: the same retry is now a fresh call, asked again.
    let again = stateless_call(&gateway.url, name, retry).await;
    assert_eq!(again["result"]["resultType"], "input_required", "{again:#}");
    gateway.stop().await;
}
