//! JSON-RPC as the specification has it, whatever the client sends: ids kept byte for byte,
//! malformed batches answered with -32600, and the session's revision enforced.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Gateway, RawSession, fixture_stdio_cmd, mcp_headers, raw};

const BIG_ID: &str = "123456789012345678901234567890";

async fn gateway() -> Gateway {
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    Gateway::start(&toml, 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_beyond_64_bits_comes_back_byte_exact() {
    let gateway = gateway().await;
    let init: Value = serde_json::from_str(&format!(
        r#"{{"jsonrpc":"2.0","id":{BIG_ID},"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#
    ))
    .unwrap();
    let (status, _, body) = raw(Method::POST, &gateway.url, mcp_headers(None), Some(&init)).await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains(&format!(r#""id":{BIG_ID},"#)), "{body}");

    let session = RawSession::open(&gateway.url).await;
    let call: Value = serde_json::from_str(&format!(
        r#"{{"jsonrpc":"2.0","id":{BIG_ID},"method":"tools/call","params":{{"name":"fx__echo","arguments":{{"message":"big"}}}}}}"#
    ))
    .unwrap();
    let (status, _, body) = session.post(&call).await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.contains(&format!(r#""id":{BIG_ID},"#)) && body.contains("big"),
        "a relayed call's answer must carry the id as sent: {body}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_and_malformed_batches_get_invalid_request_errors() {
    let gateway = gateway().await;
    let session = RawSession::open(&gateway.url).await;
    let (status, _, body) = session.post(&json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");

    let batch = json!([1, {"foo": "bar"}, {"jsonrpc": "2.0", "id": 7, "method": "ping"}]);
    let (status, _, body) = session.post(&batch).await;
    assert_eq!(status, StatusCode::OK);
    let answers: Value = serde_json::from_slice(&body).unwrap();
    let answers = answers.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 3, "one answer per entry: {answers:?}");
    for invalid in &answers[..2] {
        assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
        assert_eq!(invalid["id"], Value::Null, "{invalid}");
    }
    assert_eq!(answers[2]["id"], 7);
    assert_eq!(answers[2]["result"], json!({}));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protocol_version_newer_than_the_sessions_is_refused() {
    let gateway = gateway().await;
    let session = RawSession::open_at(&gateway.url, "2025-06-18").await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let post_with = |version: &'static str| {
        let mut headers = mcp_headers(Some(&session.id));
        headers.insert("mcp-protocol-version", version.parse().unwrap());
        raw(Method::POST, &gateway.url, headers, Some(&ping))
    };
    let (status, _, body) = post_with("2025-11-25").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`2025-11-25`") && message.contains("`2025-06-18`"),
        "{message}"
    );
    for served in ["2025-06-18", "2025-03-26"] {
        let (status, ..) = post_with(served).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{served} is within the session's revision"
        );
    }
    gateway.stop().await;
}
