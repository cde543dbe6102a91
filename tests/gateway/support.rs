//! Test harness: the gateway in-process on a pre-bound loopback port, real downstreams (the
//! in-repo fixture server, `@modelcontextprotocol/server-everything`), the official Python
//! client, and a raw HTTP client for protocol-level checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on any wait in these tests, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

/// The tools `tests/run` installs (`NEXUS_TEST_TOOLS`, default `target/test-tools`).
pub fn tools() -> PathBuf {
    let root = std::env::var_os("NEXUS_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools"));
    assert!(
        root.join("bin/node").exists(),
        "{} has no test tools: run tests/run first",
        root.display()
    );
    root
}

/// Node 22 from the test tools.
pub fn node() -> PathBuf {
    tools().join("bin/node")
}

/// `server-everything`'s entry point.
pub fn everything_js() -> PathBuf {
    tools().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The node preload that keeps servers on loopback.
pub fn loopback_preload() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bind-loopback.cjs")
}

/// The in-repo fixture server (`cargo test` builds examples beside the test binaries).
pub fn fixture_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let program = profile.join("examples/fixture_server");
    assert!(
        program.exists(),
        "{} missing: run through `cargo test`",
        program.display()
    );
    program
}

/// A TOML array of strings.
pub fn toml_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `cmd = [...]` for the fixture over stdio with extra arguments.
pub fn fixture_stdio_cmd(extra: &[&str]) -> String {
    let program = fixture_program();
    let mut items = vec![program.to_str().unwrap(), "stdio"];
    items.extend_from_slice(extra);
    toml_array(&items)
}

/// `cmd = [...]` for server-everything over stdio.
pub fn everything_stdio_cmd() -> String {
    let (node, js) = (node(), everything_js());
    toml_array(&[node.to_str().unwrap(), js.to_str().unwrap(), "stdio"])
}

/// server-everything as the only downstream, names unprefixed; `target` is its `cmd = …` or
/// `url = …` line.
pub fn everything_unprefixed(target: &str) -> String {
    unprefixed("everything", target)
}

/// A gateway in front of one downstream `name` (`target`: its `cmd` or `url` and more keys),
/// with `tools = "direct"` and names unprefixed.
pub fn unprefixed(name: &str, target: &str) -> String {
    format!("[mcp]\ntools = \"direct\"\nprefix = \"when-needed\"\n[mcp.servers.{name}]\n{target}\n")
}

/// A free loopback port (bound, then released; the race is harmless on loopback in tests).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on {port} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gateway, in-process, on a loopback port chosen by the OS.
pub struct Gateway {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    nexus: std::sync::Arc<nexus::Nexus>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway on `toml` (`[server] listen_address` is ignored) and waits until
    /// `connected` downstreams are up.
    pub async fn start(toml: &str, connected: usize) -> Self {
        let gateway = Self::start_unconnected(toml).await;
        gateway.wait_connected(connected).await;
        gateway
    }

    /// Starts a gateway without waiting for downstreams.
    pub async fn start_unconnected(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexus.toml");
        std::fs::write(&path, toml).unwrap();
        let config = nexus::config::load(&path)
            .unwrap_or_else(|error| panic!("bad test config:\n{error}\n{toml}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let nexus =
            std::sync::Arc::new(nexus::Nexus::start(&config).expect("gateway failed to start"));
        let (running, stop) = (nexus.clone(), shutdown.clone());
        let task = tokio::spawn(async move { running.run(listener, stop).await });
        Self {
            url: format!("{base}/mcp"),
            base,
            nexus,
            shutdown,
            task: Some(task),
            dir,
        }
    }

    /// Rewrites the configuration file and reloads it, as SIGHUP does.
    pub async fn reload(&self, toml: &str) -> nexus::gateway::ReloadReport {
        let path = self.dir.path().join("nexus.toml");
        std::fs::write(&path, toml).unwrap();
        let config =
            nexus::config::load(&path).unwrap_or_else(|error| panic!("bad test config:\n{error}"));
        self.nexus.reload(&config).await.expect("reload failed").0
    }

    /// Polls `/health` until `count` downstreams are connected.
    pub async fn wait_connected(&self, count: usize) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let health = self.health().await;
            if health["downstreams"]["connected"].as_u64() == Some(count as u64) {
                return health;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "downstreams not connected: {health}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Value {
        health_at(&self.base).await
    }

    /// Drains and stops (downstream children included).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("gateway did not stop")
                .unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `GET {base}/health` of any gateway (in-process or a child), which must answer 200.
pub async fn health_at(base: &str) -> Value {
    let (status, _, body) = raw(
        Method::GET,
        &format!("{base}/health"),
        HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// One HTTP request; returns status, headers and the whole body.
pub async fn raw(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Option<&Value>,
) -> (StatusCode, HeaderMap, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let bytes = body
        .map(|body| Bytes::from(body.to_string()))
        .unwrap_or_default();
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(bytes))
        .unwrap();
    *request.headers_mut() = headers;
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("HTTP timeout")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body timeout")
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// A raw Streamable HTTP session with the gateway, for protocol-level assertions.
pub struct RawSession {
    /// The endpoint.
    pub url: String,
    /// `Mcp-Session-Id`.
    pub id: String,
}

impl RawSession {
    /// `initialize` + `notifications/initialized`, at 2025-11-25.
    pub async fn open(url: &str) -> Self {
        Self::open_at(url, "2025-11-25").await
    }

    /// [`Self::open`] at `version`.
    pub async fn open_at(url: &str, version: &str) -> Self {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        let (status, headers, body) = raw(Method::POST, url, mcp_headers(None), Some(&init)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let session = Self {
            url: url.to_owned(),
            id,
        };
        let mut headers = mcp_headers(Some(&session.id));
        headers.insert("mcp-protocol-version", version.parse().unwrap());
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, ..) = raw(Method::POST, url, headers, Some(&initialized)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        session
    }

    /// POSTs one message in this session.
    pub async fn post(&self, message: &Value) -> (StatusCode, HeaderMap, Bytes) {
        raw(
            Method::POST,
            &self.url,
            mcp_headers(Some(&self.id)),
            Some(message),
        )
        .await
    }

    /// A request whose answer is JSON; returns the response message.
    pub async fn request(&self, method: &str, params: Value) -> Value {
        self.request_with_id(1, method, params).await
    }

    /// [`Self::request`] with a chosen id, for requests in flight together in one session.
    pub async fn request_with_id(&self, id: u64, method: &str, params: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, headers, body) = self.post(&message).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            headers["content-type"], "application/json",
            "a single answer comes as JSON"
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// `tools/call`; returns the response message (a `result` or an `error`).
    pub async fn call(&self, id: u64, name: &str, arguments: Value) -> Value {
        self.request_with_id(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// The text of a tool call that must succeed.
    pub async fn call_text(&self, name: &str, arguments: Value) -> String {
        let response = self.call(1, name, arguments).await;
        let result = response
            .get("result")
            .unwrap_or_else(|| panic!("{name} failed: {response}"));
        text(result).to_owned()
    }

    /// Opens the GET stream of server notifications.
    pub async fn notifications(&self) -> EventStream {
        let mut headers = mcp_headers(Some(&self.id));
        headers.insert("accept", "text/event-stream".parse().unwrap());
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut request = Request::get(&self.url).body(Full::default()).unwrap();
        *request.headers_mut() = headers;
        let response = tokio::time::timeout(WAIT, client.request(request))
            .await
            .expect("GET stream timeout")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            body: response.into_body(),
            buffer: String::new(),
        }
    }
}

/// An SSE response read as it arrives.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    /// The next JSON-RPC message on the stream (comments and keep-alives skipped); panics after
    /// [`WAIT`] or when the stream ends.
    pub async fn next_message(&mut self) -> Value {
        self.next_message_within(WAIT)
            .await
            .expect("no event on the stream in time")
    }

    /// The next JSON-RPC message within `limit`, or `None`; panics when the stream ends.
    pub async fn next_message_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = sse_messages(&event).pop() {
                    return Some(message);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()?
                .expect("the stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

/// The JSON messages of an SSE body, in order (`data:` lines of each event joined).
pub fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`]; panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Headers of an MCP POST (optionally in a session).
pub fn mcp_headers(session: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert(
        "accept",
        "application/json, text/event-stream".parse().unwrap(),
    );
    headers.insert("host", "127.0.0.1".parse().unwrap());
    if let Some(session) = session {
        headers.insert("mcp-session-id", session.parse().unwrap());
        headers.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    }
    headers
}

/// Runs the official Python client (`tests/clients/mcp_client.py`) with `steps` against `url`.
/// Returns its JSON document; panics with its stderr when it fails.
pub async fn python_client(url: &str, steps: Value, extra: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_client.py");
    let mut child = Command::new(tools().join("bin/python"))
        .arg(script)
        .arg(url)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(steps.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("python client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "python client printed no JSON ({}):\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The `ok` value of step `index`, or a panic showing the whole run.
pub fn ok(run: &Value, index: usize) -> &Value {
    run["results"][index]
        .get("ok")
        .unwrap_or_else(|| panic!("step {index} failed: {run:#}"))
}

/// The `error` value of step `index`, or a panic showing the whole run.
pub fn error(run: &Value, index: usize) -> &Value {
    run["results"][index]
        .get("error")
        .unwrap_or_else(|| panic!("step {index} did not fail: {run:#}"))
}

/// The first text content of a tool result.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

/// Names in a list result (`tools`, `prompts`).
pub fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The port of a test server that announces `LISTENING <port>` as its first line on (piped)
/// stdout; panics naming `what` when it prints anything else or nothing within [`WAIT`].
pub async fn listening_port(child: &mut Child, what: &str) -> u16 {
    let stdout = child.stdout.take().expect("stdout piped");
    let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} did not start within {WAIT:?}"))
        .unwrap();
    let port = line
        .as_deref()
        .and_then(|line| line.strip_prefix("LISTENING "))
        .and_then(|port| port.trim().parse().ok());
    port.unwrap_or_else(|| panic!("{what} printed {line:?}"))
}

/// A child process that is killed when the test ends.
pub struct Server {
    /// The child.
    pub child: Child,
    /// Its port, for HTTP servers.
    pub port: u16,
}

impl Server {
    /// `server-everything streamableHttp` on a free loopback port, ready.
    pub async fn everything_http() -> Self {
        let port = free_port().await;
        let child = Command::new(node())
            .arg("-r")
            .arg(loopback_preload())
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("server-everything");
        wait_for_port(port).await;
        Self { child, port }
    }

    /// The fixture over HTTP on a free port; `extra` are more fixture options. When `wait` is
    /// false the caller handles readiness (e.g. a server that starts late).
    pub async fn fixture_http(extra: &[&str], wait: bool) -> Self {
        let mut server = Self::fixture_http_on(free_port().await, extra);
        if wait {
            let stdout = server.child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("fixture start")
                .unwrap();
            assert!(line.is_some_and(|line| line.starts_with("LISTENING")));
        }
        server
    }

    /// The fixture over HTTP on `port` (e.g. one a gateway already points at), not waited for.
    pub fn fixture_http_on(port: u16, extra: &[&str]) -> Self {
        let child = Command::new(fixture_program())
            .args(["http", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("fixture server");
        Self { child, port }
    }

    /// The Python `mcp` server (`tests/servers/py_server.py`, both protocol eras) over plain
    /// HTTP on a port it picks, ready once it printed `LISTENING <port>`.
    pub async fn python_http(extra: &[&str]) -> Self {
        Self::python_script_http("tests/servers/py_server.py", extra).await
    }

    /// A Python server script of `tests/servers` (one that takes `--port 0` and prints
    /// `LISTENING <port>`) over plain HTTP, ready.
    pub async fn python_script_http(script: &str, extra: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        let mut child = Command::new(tools().join("bin/python"))
            .arg(script)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python server");
        let port = listening_port(&mut child, "python server").await;
        Self { child, port }
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}
