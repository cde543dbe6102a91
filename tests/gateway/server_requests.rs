//! Server-to-client requests between a handshake-era client and a handshake-era downstream:
//! server-everything's sampling and elicitation tools ask the official Python client through
//! the gateway, over stdio (the only call in flight) and Streamable HTTP (the call's stream).

use serde_json::{Value, json};

use crate::support::{
    Gateway, Server, everything_stdio_cmd, everything_unprefixed, ok, python_client, text,
};

/// Calls the sampling and elicitation tools with a client that answers both.
async fn ask_the_client(url: &str) -> Value {
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "trigger-sampling-request", "arguments": {"prompt": "Say hi"}},
        {"op": "call_tool", "name": "trigger-elicitation-request", "arguments": {}},
    ]);
    let options = [
        "--sampling-reply",
        "hi from the client",
        "--elicitation-action",
        "accept",
        "--elicitation-content",
        r#"{"name": "Ada"}"#,
    ];
    python_client(url, steps, &options).await
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
    let asked: Vec<&str> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == "request")
        .map(|event| event["method"].as_str().unwrap())
        .collect();
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

#[tokio::test(flavor = "multi_thread")]
async fn sampling_and_elicitation_reach_the_client_over_streamable_http() {
    let everything = Server::everything_http().await;
    let toml = everything_unprefixed(&format!("url = \"{}\"", everything.url()));
    let gateway = Gateway::start(&toml, 1).await;
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
