//! The stateless revision (2026-07-28) on the gateway's endpoint: the official Python client in
//! `2026-07-28` and `auto` modes, and the request ladder's errors on the wire.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Gateway, Server, fixture_stdio_cmd, names, ok, python_client, raw, text};

fn config() -> String {
    format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    )
}

const REVISION: &str = "2026-07-28";

/// A stateless `tools/call` of `name` with matching headers, then `tweak` applied to them.
fn call(name: &str, tweak: impl FnOnce(&mut HeaderMap)) -> (HeaderMap, Value) {
    let (mut headers, body) = tools_call(name, json!({"message": "m"}));
    tweak(&mut headers);
    (headers, body)
}

/// A stateless `tools/call` of `name` with `arguments`: one POST, no session to set up first.
pub(crate) fn tools_call(name: &str, arguments: Value) -> (HeaderMap, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": name, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": REVISION, "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut headers = HeaderMap::new();
    for (key, value) in [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("host", "127.0.0.1"),
        ("mcp-protocol-version", REVISION),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ] {
        headers.insert(key, value.parse().unwrap());
    }
    (headers, body)
}

async fn post(url: &str, (headers, body): (HeaderMap, Value)) -> (StatusCode, Value) {
    let (status, _, bytes) = raw(Method::POST, url, headers, Some(&body)).await;
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes))),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_speaks_2026_07_28_through_the_gateway() {
    let gateway = Gateway::start(&config(), 1).await;
    for mode in ["2026-07-28", "auto"] {
        let steps = json!([
            {"op": "list_tools"},
            {"op": "call_tool", "name": "fx__echo", "arguments": {"message": "stateless"}},
            {"op": "call_tool", "name": "fx__progress", "arguments": {"steps": 3, "delay_ms": 5}, "progress": true},
            {"op": "read_resource", "uri": "fixture://static/hello"},
            {"op": "get_prompt", "name": "fx__greet", "arguments": {"name": "ada"}},
            {"op": "call_tool", "name": "fx__add_tool", "arguments": {"name": format!("new_{}", mode.len())}},
            {"op": "wait_tools_changed", "timeout": 10},
        ]);
        let run = python_client(&gateway.url, steps, &["--mode", mode]).await;
        assert_eq!(run["protocol_version"], REVISION, "{mode}: {run:#}");
        assert!(names(ok(&run, 0), "tools").contains(&"fx__echo".to_owned()));
        assert_eq!(ok(&run, 0)["cacheScope"], "private");
        assert_eq!(text(ok(&run, 1)), "stateless");
        assert_eq!(ok(&run, 1)["resultType"], "complete");
        assert_eq!(
            run["results"][2]["progress"].as_array().map(Vec::len),
            Some(3),
            "{run:#}"
        );
        assert_eq!(ok(&run, 3)["contents"][0]["text"], "hello");
        assert!(ok(&run, 4).to_string().contains("ada"));
        assert_eq!(
            ok(&run, 6),
            &json!(true),
            "list_changed reached the subscriptions/listen stream"
        );
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_ladder_rejects_mismatches_and_unknown_revisions() {
    let gateway = Gateway::start(&config(), 1).await;
    let (status, answer) = post(&gateway.url, call("fx__echo", |_| {})).await;
    assert_eq!(
        (status, answer["result"]["content"][0]["text"].as_str()),
        (StatusCode::OK, Some("m"))
    );

    let (status, answer) = post(
        &gateway.url,
        call("fx__echo", |h| {
            h.insert("mcp-name", "fx__other".parse().unwrap());
        }),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32020))
    );
    assert_eq!(
        answer["error"]["message"],
        "Mcp-Name header does not match params.name"
    );

    let (status, answer) = post(
        &gateway.url,
        call("fx__echo", |h| {
            h.insert("mcp-method", "tools/list".parse().unwrap());
        }),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32020))
    );

    let (headers, mut body) = call("fx__echo", |h| {
        h.insert("mcp-protocol-version", "2099-01-01".parse().unwrap());
    });
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (status, answer) = post(&gateway.url, (headers, body)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32022))
    );
    assert_eq!(answer["error"]["data"]["supported"], json!([REVISION]));

    let (headers, mut body) = call("x", |h| {
        h.insert("mcp-method", "no/such".parse().unwrap());
    });
    body["method"] = json!("no/such");
    let (status, answer) = post(&gateway.url, (headers, body)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (StatusCode::NOT_FOUND, Some(-32601))
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_describes_the_gateway_and_get_is_not_allowed() {
    let gateway = Gateway::start(&config(), 1).await;
    let (mut headers, mut body) = call("", |h| {
        h.insert("mcp-method", "server/discover".parse().unwrap());
        h.remove("mcp-name");
    });
    body["method"] = json!("server/discover");
    body["params"]
        .as_object_mut()
        .unwrap()
        .retain(|key, _| key == "_meta");
    let (status, answer) = post(&gateway.url, (headers.clone(), body)).await;
    assert_eq!(status, StatusCode::OK);
    let result = &answer["result"];
    assert_eq!(result["supportedVersions"], json!([REVISION]));
    assert_eq!(result["resultType"], "complete");
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "nexus"
    );

    headers.remove("content-type");
    let (status, response_headers, _) = raw(Method::GET, &gateway.url, headers, None).await;
    assert_eq!(
        (status, &response_headers["allow"]),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            &"POST".parse::<http::HeaderValue>().unwrap()
        )
    );
    gateway.stop().await;
}

/// SEP-2243: the second conformance fixture's `test_custom_header` marks `region` with
/// `x-mcp-header: Region`. The gateway checks the client's `Mcp-Param-Region` against the
/// body as a server must, and sends the header (for the renamed tool) to the fixture, spoken
/// to statelessly over Streamable HTTP, whose SDK rejects a call without it.
#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_are_checked_and_sent_downstream() {
    let fixture =
        Server::python_script_http("tests/servers/handshake_server.py", &["--http"]).await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.hs]\nurl = \"{}\"\nprotocol_version = \"{REVISION}\"\n",
        fixture.url()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let tool = "hs__test_custom_header";
    let request = |header: Option<&str>| {
        let (mut headers, body) = tools_call(tool, json!({"region": "Hello"}));
        if let Some(value) = header {
            headers.insert("mcp-param-region", value.parse().unwrap());
        }
        (headers, body)
    };
    for accepted in ["Hello", "=?base64?SGVsbG8=?="] {
        let (status, answer) = post(&gateway.url, request(Some(accepted))).await;
        assert_eq!(status, StatusCode::OK, "{accepted}: {answer}");
        assert_eq!(text(&answer["result"]), "region=Hello", "{answer}");
    }
    for rejected in [
        None,
        Some("Bye"),
        Some("=?base64?SGVsbG8?="),
        Some("=?base64?SGVs!!!bG8=?="),
    ] {
        let (status, answer) = post(&gateway.url, request(rejected)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_i64()),
            (StatusCode::BAD_REQUEST, Some(-32020)),
            "{rejected:?}: {answer}"
        );
    }
    // The official client in the 2026-07-28 mode sends the header from the listed schema.
    let steps = json!([{"op": "call_tool", "name": tool, "arguments": {"region": "été"}}]);
    let run = python_client(&gateway.url, steps, &["--mode", REVISION]).await;
    assert_eq!(text(ok(&run, 0)), "region=été", "{run:#}");
    gateway.stop().await;
}

/// An unknown tool is a protocol error, as the 2026-07-28 revision's tools page says
/// (`-32602`, "Unknown tool: NAME"), in both eras, whatever the downstream would answer (the
/// Python SDK answers an `isError` result instead). The `server-stateless` scenario's probes
/// of its diagnostic tools take such an error for "not testable".
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_tool_is_a_protocol_error_in_both_eras() {
    let gateway = Gateway::start(&config(), 1).await;
    let (status, answer) = post(&gateway.url, tools_call("fx__nope", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["error"]["message"], "Unknown tool: fx__nope");
    assert!(answer.get("result").is_none(), "{answer}");
    let session = crate::support::RawSession::open(&gateway.url).await;
    let answer = session.call(3, "fx__nope", json!({})).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["error"]["message"], "Unknown tool: fx__nope");
    gateway.stop().await;
}
