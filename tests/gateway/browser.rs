//! Browser clients through the real `nexus` binary, on the wire as a browser speaks it: CORS
//! preflights and grants (`[server.cors]`), the CSRF header (`[server.csrf]`), and how both sit
//! with the Host/Origin guard. Also `nexus check`'s warnings about settings browsers defeat.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::Serving;
use crate::support::{Gateway, fixture_stdio_cmd, mcp_headers, raw};

/// The page origin the tests allow: not loopback, so the guard alone would refuse it.
const APP: &str = "http://app.example:3000";

/// A gateway config: one stdio fixture and `extra` tables.
fn config(extra: &str) -> String {
    format!(
        "{extra}\n[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    )
}

/// POSTs `initialize` to `url` with `headers`.
async fn post_initialize(url: &str, headers: HeaderMap) -> (StatusCode, HeaderMap, bytes::Bytes) {
    raw(Method::POST, url, headers, Some(&initialize())).await
}

/// `[server.cors]` granting `origins` (a TOML value).
fn granting(origins: &str) -> String {
    format!("[server.cors]\nallow_origins = {origins}\n")
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}})
}

/// The headers of a browser's preflight from `origin` for a POST with `headers`.
fn preflight_headers(origin: &str, headers: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("host", HeaderValue::from_static("127.0.0.1"));
    map.insert("origin", origin.parse().unwrap());
    map.insert("access-control-request-method", "POST".parse().unwrap());
    map.insert("access-control-request-headers", headers.parse().unwrap());
    map
}

/// MCP headers as a page at `origin` sends them.
fn page_headers(origin: &str, session: Option<&str>) -> HeaderMap {
    let mut headers = mcp_headers(session);
    headers.insert("origin", origin.parse().unwrap());
    headers
}

/// A header's comma-separated values, lowercased.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap().split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

fn assert_lists(headers: &HeaderMap, name: &str, expected: &[&str]) {
    let listed = listed(headers, name);
    for item in expected {
        assert!(
            listed.iter().any(|got| got == item),
            "{name} lacks {item}: {headers:?}"
        );
    }
}

fn message(body: &[u8]) -> String {
    let error: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    error["error"]["message"].as_str().unwrap().to_owned()
}

/// Every header an MCP client in a browser sends, as Chromium writes them in a preflight.
const MCP_REQUEST_HEADERS: &str = "authorization,content-type,last-event-id,mcp-method,mcp-name,mcp-protocol-version,mcp-session-id";

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_from_an_allowed_origin_gets_the_grant_on_any_route() {
    let gateway = Serving::start(&config(&format!(
        "[server.cors]\nallow_origins = [\"{APP}\"]\nmax_age = \"10m\"\nallow_credentials = true\n"
    )))
    .await;
    let paths = [
        "/mcp",
        "/.well-known/oauth-protected-resource/mcp",
        "/health",
    ];
    for path in paths {
        let url = format!("{}{path}", gateway.base());
        let headers = preflight_headers(APP, MCP_REQUEST_HEADERS);
        let (status, headers, body) = raw(Method::OPTIONS, &url, headers, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.is_empty());
        assert_eq!(headers["access-control-allow-origin"], APP, "{path}");
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["access-control-max-age"], "600");
        assert_lists(
            &headers,
            "access-control-allow-methods",
            &["get", "post", "delete", "options"],
        );
        let mcp: Vec<&str> = MCP_REQUEST_HEADERS.split(',').collect();
        assert_lists(&headers, "access-control-allow-headers", &mcp);
        assert_lists(
            &headers,
            "vary",
            &["origin", "access-control-request-method"],
        );
        assert!(!headers.contains_key("access-control-allow-private-network"));
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_from_another_origin_gets_no_grant() {
    let gateway = Serving::start(&config(&granting(&format!("[\"{APP}\"]")))).await;
    // A foreign origin: the guard refuses it before anything else, as without CORS.
    let headers = preflight_headers("https://evil.example", "content-type");
    let (status, headers, body) = raw(Method::OPTIONS, &gateway.url(), headers, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message(&body).contains("https://evil.example"),
        "{}",
        message(&body)
    );
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
    // A loopback page passes the guard (its default on a loopback listener) but is not granted.
    let headers = preflight_headers("http://localhost:5173", "content-type");
    let (status, headers, _) = raw(Method::OPTIONS, &gateway.url(), headers, None).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert!(!headers.contains_key(name), "{name}: {headers:?}");
    }
    // And its POST is answered, without a grant the browser would let it read.
    let headers = page_headers("http://localhost:5173", None);
    let (status, headers, _) = post_initialize(&gateway.url(), headers).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert_lists(&headers, "vary", &["origin"]);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_page_reads_the_session_id_errors_and_the_stream() {
    let gateway = Serving::start(&config(&granting(&format!("\"{APP}\"")))).await;
    let (status, headers, body) = post_initialize(&gateway.url(), page_headers(APP, None)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["access-control-allow-origin"], APP);
    assert!(!headers.contains_key("access-control-allow-credentials"));
    assert_lists(
        &headers,
        "access-control-expose-headers",
        &["mcp-session-id", "www-authenticate"],
    );
    assert_lists(&headers, "vary", &["origin"]);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();

    // An error answer carries the grant too, so the page can read why.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, headers, body) = raw(
        Method::POST,
        &gateway.url(),
        page_headers(APP, None),
        Some(&list),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("Mcp-Session-Id"));
    assert_eq!(headers["access-control-allow-origin"], APP);

    // The GET stream (SSE): the head is all a test can wait for; the grant is in it.
    let client = open_stream(&gateway.url(), &session).await;
    assert_eq!(client.status(), StatusCode::OK);
    assert_eq!(client.headers()["content-type"], "text/event-stream");
    assert_eq!(client.headers()["access-control-allow-origin"], APP);
    drop(client);
    gateway.stop().await;
}

/// Opens the session's GET stream as the page at [`APP`] and returns the response head.
async fn open_stream(url: &str, session: &str) -> http::Response<hyper::body::Incoming> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::get(url).body(Full::default()).unwrap();
    *request.headers_mut() = page_headers(APP, Some(session));
    request
        .headers_mut()
        .insert("accept", HeaderValue::from_static("text/event-stream"));
    tokio::time::timeout(crate::support::WAIT, client.request(request))
        .await
        .expect("no answer to the GET stream")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_csrf_on_a_state_changing_request_needs_the_header() {
    let extra = format!(
        "[server.cors]\nallow_origins = [\"{APP}\"]\nallow_headers = [\"X-Trace\"]\n[server.csrf]\nenabled = true\n"
    );
    let gateway = Serving::start(&config(&extra)).await;
    let (status, headers, body) = post_initialize(&gateway.url(), page_headers(APP, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let refused = message(&body);
    assert!(
        refused.contains("`x-nexus-csrf-protection` header"),
        "{refused}"
    );
    assert_eq!(
        headers["access-control-allow-origin"], APP,
        "the page can read the refusal"
    );

    let mut with = page_headers(APP, None);
    with.insert("x-nexus-csrf-protection", HeaderValue::from_static("1"));
    let (status, headers, _) = post_initialize(&gateway.url(), with).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();

    let (status, _, _) = raw(
        Method::DELETE,
        &gateway.url(),
        page_headers(APP, Some(&session)),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "DELETE ends a session: it needs the header"
    );
    let mut delete = page_headers(APP, Some(&session));
    delete.insert("x-nexus-csrf-protection", HeaderValue::from_static("yes"));
    let (status, _, _) = raw(Method::DELETE, &gateway.url(), delete, None).await;
    assert_eq!(status, StatusCode::OK);

    // Preflights and safe methods do not: a browser sends no custom header in a preflight.
    let preflight = preflight_headers(APP, "content-type,x-nexus-csrf-protection");
    let (status, headers, _) = raw(Method::OPTIONS, &gateway.url(), preflight, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_lists(
        &headers,
        "access-control-allow-headers",
        &["x-nexus-csrf-protection", "x-trace", "mcp-session-id"],
    );
    let health = format!("{}/health", gateway.base());
    let mut get = HeaderMap::new();
    get.insert("host", HeaderValue::from_static("127.0.0.1"));
    let (status, ..) = raw(Method::GET, &health, get, None).await;
    assert_eq!(status, StatusCode::OK);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_tables_nothing_changes() {
    let gateway = Serving::start(&config("")).await;
    let (status, headers, _) = post_initialize(&gateway.url(), mcp_headers(None)).await;
    assert_eq!(status, StatusCode::OK, "no CSRF header needed");
    assert!(!headers.contains_key("vary") && !headers.contains_key("access-control-allow-origin"));
    let preflight = preflight_headers("http://localhost:5173", "content-type");
    let (status, headers, _) = raw(Method::OPTIONS, &gateway.url(), preflight, None).await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "no CORS: a preflight is a plain OPTIONS"
    );
    assert!(!headers.contains_key("access-control-allow-origin"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn star_mirrors_the_request_and_private_network_is_answered() {
    let extra = "[server.cors]\nallow_origins = \"*\"\nallow_methods = \"*\"\nallow_headers = \"*\"\n\
                 allow_private_network = true\n";
    let gateway = Serving::start(&config(extra)).await;
    let mut headers = preflight_headers("https://public.example", "authorization,x-anything");
    headers.insert(
        "access-control-request-private-network",
        HeaderValue::from_static("true"),
    );
    let (status, headers, _) = raw(Method::OPTIONS, &gateway.url(), headers, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-methods"], "POST");
    // `*` never covers Authorization in a browser; the request's own list does.
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization,x-anything"
    );
    assert_eq!(headers["access-control-allow-private-network"], "true");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_new_origins_to_cors_and_the_guard() {
    let gateway = Gateway::start(&config(""), 1).await;
    let (status, ..) = post_initialize(&gateway.url, page_headers(APP, None)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the guard refuses a foreign page"
    );
    gateway
        .reload(&config(&granting("[\"http://*.example:3000\"]")))
        .await;
    let (status, headers, _) = post_initialize(&gateway.url, page_headers(APP, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], APP);
    gateway.stop().await;
}

#[test]
fn check_warns_about_settings_browsers_defeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    let text = "[server.cors]\nallow_origins = \"*\"\nallow_credentials = true\n";
    std::fs::write(&path, config(text)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("NEXUS_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "a warning is not an error: {stderr}"
    );
    let expected = format!(
        "warning: {}:3:21: server.cors.allow_credentials: `allow_credentials = true` with `allow_origins = \"*\"`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
