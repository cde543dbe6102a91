//! A real browser: headless Chromium (Debian's `chromium`, installed by `tests/run`) loads a
//! page from another origin that speaks MCP to the gateway with `fetch`, so the browser itself
//! enforces CORS: its preflights, which headers the page may send and read, and its refusal of
//! an origin the gateway does not grant.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cli::Serving;
use crate::support::{WAIT, fixture_stdio_cmd};

/// The page: initialize without and with the CSRF header, list tools in the session, open the
/// GET stream, end the session; the outcome goes into the DOM (base64 JSON) for `--dump-dom`.
const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  const gateway = decodeURIComponent(location.hash.slice(1));
  const out = {};
  const init = {jsonrpc: "2.0", id: 0, method: "initialize", params: {protocolVersion: "2025-11-25",
    capabilities: {}, clientInfo: {name: "page", version: "1"}}};
  const post = (body, headers) => fetch(gateway, {method: "POST", body: JSON.stringify(body),
    headers: Object.assign({"content-type": "application/json",
      "accept": "application/json, text/event-stream"}, headers)});
  try {
    let response = await post(init, {});
    out.refused = {status: response.status, message: (await response.json()).error.message};
    response = await post(init, {"x-nexus-csrf-protection": "1"});
    out.session = response.headers.get("mcp-session-id");
    const session = {"x-nexus-csrf-protection": "1", "mcp-session-id": out.session,
      "mcp-protocol-version": "2025-11-25"};
    response = await post({jsonrpc: "2.0", id: 1, method: "tools/list"}, session);
    out.tools = (await response.json()).result.tools.map(tool => tool.name);
    const abort = new AbortController();
    response = await fetch(gateway, {signal: abort.signal, headers: {"accept": "text/event-stream",
      "mcp-session-id": out.session, "mcp-protocol-version": "2025-11-25"}});
    out.stream = {status: response.status, type: response.headers.get("content-type")};
    abort.abort();
    response = await fetch(gateway, {method: "DELETE", headers: session});
    out.deleted = response.status;
  } catch (error) {
    out.error = String(error);
  }
  document.getElementById("out").textContent = "RESULT " + btoa(JSON.stringify(out));
})();
</script></body></html>"#;

/// Serves [`PAGE`] to every request on a loopback port; returns the port.
async fn serve_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0; 8192];
                let _ = stream.read(&mut head).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// Loads the page as `http://{host}:{port}/` (every `*.example` name is mapped to loopback)
/// and returns what it wrote.
async fn run_page(host: &str, port: u16, gateway: &str) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{host}:{port}/#{gateway}");
    let mut command = tokio::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--host-resolver-rules=MAP *.example 127.0.0.1")
        .args(["--virtual-time-budget=20000", "--dump-dom", &url])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("chromium did not finish")
        .expect("cannot run chromium: install Debian's chromium (tests/run does)");
    let dom = String::from_utf8_lossy(&output.stdout);
    let Some(encoded) = dom
        .split("RESULT ")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
    else {
        panic!(
            "the page wrote no result\nstdout:\n{dom}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let json = openssl::base64::decode_block(encoded.trim()).unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_speaks_mcp_from_a_granted_origin_and_is_stopped_from_another() {
    let port = serve_page().await;
    let config = format!(
        "[server.cors]\nallow_origins = [\"http://app.example:{port}\"]\n[server.csrf]\nenabled = true\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    let gateway = Serving::start(&config).await;

    let granted = run_page("app.example", port, &gateway.url()).await;
    assert_eq!(granted["error"], Value::Null, "{granted}");
    assert_eq!(granted["refused"]["status"], 403, "{granted}");
    let refused = granted["refused"]["message"].as_str().unwrap();
    assert!(refused.contains("x-nexus-csrf-protection"), "{refused}");
    let session = granted["session"]
        .as_str()
        .expect("the page reads Mcp-Session-Id");
    assert!(session.len() >= 16, "{granted}");
    let tools = granted["tools"].as_array().unwrap();
    assert!(
        !tools.is_empty()
            && tools
                .iter()
                .all(|name| name.as_str().unwrap().starts_with("fx__")),
        "{granted}"
    );
    assert_eq!(granted["stream"]["status"], 200, "{granted}");
    assert_eq!(granted["stream"]["type"], "text/event-stream", "{granted}");
    assert_eq!(granted["deleted"], 200, "{granted}");

    // Another origin: the guard refuses it and no grant is given, so the browser shows the
    // page only a network error.
    let other = run_page("other.example", port, &gateway.url()).await;
    assert_eq!(other["error"], "TypeError: Failed to fetch", "{other}");
    gateway.stop().await;
}
