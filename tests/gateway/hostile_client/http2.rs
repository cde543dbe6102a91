//! HTTP/2 through curl: cleartext with prior knowledge (h2c) and over the gateway's own TLS
//! (ALPN offers h2 first). The `:authority` stands for `Host`, and is checked the same way.

use std::path::Path;

use serde_json::{Value, json};

use crate::pki::TestPki;
use crate::support::Gateway;

/// Runs curl with `args`; returns (HTTP version, status, body) from its `-w` line.
async fn curl(args: &[&str]) -> (String, u16, String) {
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .await
        .expect("curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or_else(|| {
        panic!(
            "curl printed {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let (version, code) = status.split_once(' ').unwrap();
    (version.to_owned(), code.parse().unwrap(), body.to_owned())
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}})
    .to_string()
}

/// `/health`, `initialize`, and a foreign `:authority`, all over HTTP/2 with `mode` (curl's
/// option) and `extra` arguments.
async fn served_over_http2(base: &str, mode: &str, extra: &[&str]) {
    let health = format!("{base}/health");
    let (version, status, body) = curl(&[&[mode], extra, &[health.as_str()]].concat()).await;
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "healthy");

    let mcp = format!("{base}/mcp");
    let init = initialize();
    let post = [
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data",
        init.as_str(),
        mcp.as_str(),
    ];
    let (version, status, body) = curl(&[&[mode], extra, &post].concat()).await;
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["result"]["serverInfo"]["name"], "nexus", "{answer}");

    // curl derives :authority from a Host header it is given.
    let foreign = ["-H", "host: evil.example", health.as_str()];
    let (version, status, body) = curl(&[&[mode], extra, &foreign].concat()).await;
    assert_eq!((version.as_str(), status), ("2", 403), "{body}");
    assert!(body.contains("evil.example"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_with_prior_knowledge_is_served_and_guarded() {
    let gateway = Gateway::start_unconnected("").await;
    served_over_http2(&gateway.base, "--http2-prior-knowledge", &[]).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_over_the_gateways_tls_is_served_and_guarded() {
    let pki = TestPki::generate();
    let path = |name: &str| pki.path(name).to_str().unwrap().to_owned();
    let toml = format!(
        "[server.tls]\ncertificate = {:?}\nkey = {:?}\n",
        path("server.pem"),
        path("server.key")
    );
    let gateway = Gateway::start_unconnected(&toml).await;
    let base = gateway.base.replacen("http://", "https://", 1);
    let ca = path("ca.pem");
    assert!(Path::new(&ca).exists());
    served_over_http2(&base, "--http2", &["--cacert", &ca]).await;
    gateway.stop().await;
}
