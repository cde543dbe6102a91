//! Sessions are bounded in count, in what each keeps, and in how long an unused one lives.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::status_kib;
use crate::cli::Serving;
use crate::support::{Gateway, RawSession, mcp_headers, raw};

fn initialize(capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "raw", "version": "1"}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_beyond_max_sessions_is_refused_and_idle_sessions_expire() {
    let toml = "[server.limits]\nmax_sessions = 3\nsession_idle_timeout = \"2s\"\n";
    let gateway = Gateway::start_unconnected(toml).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(RawSession::open(&gateway.url).await);
    }
    let init = initialize(json!({}));
    let (status, _, body) = raw(Method::POST, &gateway.url, mcp_headers(None), Some(&init)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["id"], 0, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_sessions") && message.contains('3'),
        "{message}"
    );

    let (status, ..) = raw(
        Method::DELETE,
        &gateway.url,
        mcp_headers(Some(&open[0].id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = RawSession::open(&gateway.url).await;

    // Unused for twice its idle limit (expiry runs every second here), a session is gone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, ..) = fresh.post(&ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an idle session must expire");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn megabytes_of_declared_capabilities_are_not_kept() {
    const SESSIONS: usize = 50;
    let serving = Serving::start("").await;
    let pid = serving.pid();
    let bulk = "x".repeat(4 * 1024 * 1024);
    let warm = initialize(json!({}));
    raw(Method::POST, &serving.url(), mcp_headers(None), Some(&warm)).await;
    let before = status_kib(pid, "VmRSS");
    let init = initialize(json!({"sampling": {}, "experimental": {"bulk": bulk}}));
    // Enough sessions that keeping their capabilities (+6 MiB each as parsed JSON) would stand
    // far above what the allocator keeps cached after parsing requests this large.
    for _ in 0..SESSIONS {
        let (status, ..) = raw(Method::POST, &serving.url(), mcp_headers(None), Some(&init)).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The parsed requests are freed at once, but mimalloc returns their pages to the system
    // after a delay, longer on a loaded machine: look for up to 10 s.
    let ceiling = before + 100 * 1024;
    let mut after = status_kib(pid, "VmRSS");
    for _ in 0..100 {
        if after < ceiling {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = status_kib(pid, "VmRSS");
    }
    let peak = status_kib(pid, "VmHWM");
    println!(
        "sessions: {SESSIONS} with 4 MiB capabilities: RSS {before} KiB before, {after} KiB after, peak {peak} KiB"
    );
    assert!(
        after < ceiling,
        "{SESSIONS} sessions kept {} KiB",
        after - before
    );

    let oversized = initialize(json!({"sampling": {"bulk": "x".repeat(64 * 1024)}}));
    let (status, _, body) = raw(
        Method::POST,
        &serving.url(),
        mcp_headers(None),
        Some(&oversized),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16384"),
        "{answer}"
    );
}
