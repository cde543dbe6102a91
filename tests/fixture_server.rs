//! The fixture server itself, over both transports: the tests and the benchmark rely on it
//! behaving like a real MCP server (pagination, unknown fields, progress order, list_changed,
//! many calls in flight).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

/// Bound on any single wait, so a broken fixture fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// Tools every fixture lists before the generated ones.
const BUILTIN_TOOLS: [&str; 9] = [
    "echo",
    "sleep",
    "inflight_max",
    "progress",
    "add_tool",
    "crash",
    "fail",
    "get_env",
    "pid",
];

/// `cargo test` builds examples next to the test binaries' `deps` directory.
fn fixture_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let program = profile_dir.join("examples").join("fixture_server");
    assert!(
        program.exists(),
        "{} missing: run through `cargo test`, which builds examples",
        program.display()
    );
    program
}

fn expected_tool_names(generated: usize) -> Vec<String> {
    let generated = (0..generated).map(|i| format!("tool_{i}"));
    BUILTIN_TOOLS
        .iter()
        .map(|t| t.to_string())
        .chain(generated)
        .collect()
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
}

fn first_text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

// === stdio ===

/// A fixture spoken to over stdio, one message at a time.
struct StdioFixture {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl StdioFixture {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new(fixture_program())
            .arg("stdio")
            .args(args)
            .env("FIXTURE_TEST_VALUE", "from the test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start fixture_server stdio");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut fixture = Self {
            child,
            stdin,
            stdout,
        };
        let (_, init) = fixture
            .exchange(request(
                0,
                "initialize",
                json!({"protocolVersion": "2025-06-18"}),
            ))
            .await;
        assert_eq!(
            init["result"]["protocolVersion"], "2025-06-18",
            "the client's supported version is echoed"
        );
        fixture
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        fixture
    }

    async fn send(&mut self, message: &Value) {
        let line = format!("{message}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to fixture stdin");
    }

    async fn next(&mut self) -> Value {
        let line = timeout(WAIT, self.stdout.next_line())
            .await
            .expect("fixture answered in time");
        let line = line
            .expect("read fixture stdout")
            .expect("fixture stdout still open");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fixture wrote non-JSON {line:?}: {e}"))
    }

    /// Sends a request; returns the notifications that came before its response, and the response.
    async fn exchange(&mut self, message: Value) -> (Vec<Value>, Value) {
        self.send(&message).await;
        let mut notifications = Vec::new();
        loop {
            let next = self.next().await;
            if next.get("method").is_none() && next["id"] == message["id"] {
                return (notifications, next);
            }
            notifications.push(next);
        }
    }

    async fn result(&mut self, message: Value) -> Value {
        let (_, response) = self.exchange(message).await;
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("expected a result, got {response}"))
    }
}

#[tokio::test]
async fn stdio_lists_every_tool_across_pages_and_keeps_unknown_fields() {
    let mut fixture = StdioFixture::start(&["--tools", "5", "--page-size", "2"]).await;
    let (mut names, mut cursor, mut id) = (Vec::new(), None::<Value>, 1);
    loop {
        let params = cursor.map_or(json!({}), |c| json!({"cursor": c}));
        let page = fixture.result(request(id, "tools/list", params)).await;
        let tools = page["tools"].as_array().expect("tools array");
        assert!(tools.len() <= 2, "page size 2 respected: {page}");
        if let Some(echo) = tools.iter().find(|t| t["name"] == "echo") {
            assert_eq!(
                echo["x-fixture"],
                json!({"kept": true}),
                "echo definition carries x-fixture"
            );
        }
        names.extend(
            tools
                .iter()
                .map(|t| t["name"].as_str().expect("tool name").to_owned()),
        );
        id += 1;
        match page.get("nextCursor") {
            Some(next) => cursor = Some(next.clone()),
            None => break,
        }
    }
    assert_eq!(names, expected_tool_names(5));

    let echoed = fixture
        .result(call(100, "echo", json!({"message": "hi"})))
        .await;
    assert_eq!(first_text(&echoed), "hi");
    assert_eq!(
        echoed["x-fixture"],
        json!({"kept": true}),
        "echo result carries x-fixture"
    );

    let (_, failed) = fixture.exchange(call(101, "fail", json!({}))).await;
    assert_eq!(failed["error"]["code"], -32603);
    let (_, unknown) = fixture
        .exchange(request(102, "no/such/method", json!({})))
        .await;
    assert_eq!(unknown["error"]["code"], -32601);
}

#[tokio::test]
async fn stdio_serves_prompts_resources_completion_env_and_pid() {
    let mut fixture = StdioFixture::start(&["--name", "fx-stdio"]).await;
    let greeting = fixture
        .result(request(
            1,
            "prompts/get",
            json!({"name": "greet", "arguments": {"name": "Ada"}}),
        ))
        .await;
    assert_eq!(greeting["messages"][0]["content"]["text"], "Hello, Ada!");
    let hello = fixture
        .result(request(
            2,
            "resources/read",
            json!({"uri": "fixture://static/hello"}),
        ))
        .await;
    assert_eq!(hello["contents"][0]["text"], "hello");
    let item = fixture
        .result(request(
            3,
            "resources/read",
            json!({"uri": "fixture://item/42"}),
        ))
        .await;
    assert_eq!(item["contents"][0]["text"], "item 42");
    let completion = json!({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name", "value": "al"}});
    let completed = fixture
        .result(request(4, "completion/complete", completion))
        .await;
    assert_eq!(
        completed["completion"]["values"],
        json!(["alice", "albert"])
    );
    let env = fixture
        .result(call(5, "get_env", json!({"name": "FIXTURE_TEST_VALUE"})))
        .await;
    assert_eq!(first_text(&env), "from the test");
    let pid = fixture.result(call(6, "pid", json!({}))).await;
    assert_eq!(
        first_text(&pid),
        fixture.child.id().expect("running child").to_string()
    );
    assert_eq!(
        fixture.result(request(7, "ping", json!({}))).await,
        json!({})
    );
}

#[tokio::test]
async fn stdio_sends_progress_in_order_before_the_response() {
    let mut fixture = StdioFixture::start(&[]).await;
    let params = json!({"name": "progress", "arguments": {"steps": 3, "delay_ms": 1}, "_meta": {"progressToken": "p1"}});
    let (notifications, response) = fixture.exchange(request(1, "tools/call", params)).await;
    assert_eq!(first_text(&response["result"]), "done 3");
    let progress: Vec<&Value> = notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .map(|n| &n["params"])
        .collect();
    let steps: Vec<u64> = progress
        .iter()
        .map(|p| p["progress"].as_u64().expect("progress number"))
        .collect();
    assert_eq!(steps, [1, 2, 3], "progress in order: {notifications:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["progressToken"] == "p1" && p["total"] == 3)
    );
    let log = notifications
        .iter()
        .find(|n| n["method"] == "notifications/message")
        .expect("a log message");
    assert_eq!(log["params"]["logger"], "fixture");
    assert_eq!(log["params"]["level"], "info");
}

#[tokio::test]
async fn stdio_runs_64_sleeps_at_once() {
    let mut fixture = StdioFixture::start(&[]).await;
    // One write for all 64, so a loaded machine cannot spread them over more than 50 ms.
    let batch: String = (1..=64)
        .map(|id| format!("{}\n", call(id, "sleep", json!({"ms": 50}))))
        .collect();
    fixture
        .stdin
        .write_all(batch.as_bytes())
        .await
        .expect("write to fixture stdin");
    let mut answered = Vec::new();
    while answered.len() < 64 {
        let response = fixture.next().await;
        assert_eq!(first_text(&response["result"]), "slept 50", "{response}");
        answered.push(response["id"].as_u64().expect("numeric id"));
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=64).collect::<Vec<_>>());
    let most = fixture.result(call(65, "inflight_max", json!({}))).await;
    assert_eq!(
        first_text(&most),
        "64",
        "all 64 sleeps were running at the same time"
    );
}

#[tokio::test]
async fn stdio_crash_exits_with_code_3_without_answering() {
    let mut fixture = StdioFixture::start(&[]).await;
    fixture.send(&call(1, "crash", json!({}))).await;
    let status = timeout(WAIT, fixture.child.wait())
        .await
        .expect("fixture exited")
        .expect("wait for fixture");
    assert_eq!(status.code(), Some(3));
    assert!(
        fixture
            .stdout
            .next_line()
            .await
            .expect("read stdout")
            .is_none(),
        "no answer to crash"
    );
}

// === Streamable HTTP ===

/// A fixture serving Streamable HTTP, and one MCP session with it.
struct HttpFixture {
    _child: Child,
    endpoint: String,
    client: Client<HttpConnector, Full<Bytes>>,
    session: String,
}

/// An HTTP answer, its body read whole.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    /// The JSON-RPC messages of the body: one for JSON, every `data:` event for SSE.
    fn messages(&self) -> Vec<Value> {
        if self.content_type.starts_with("text/event-stream") {
            let data = self.body.lines().filter_map(|l| l.strip_prefix("data: "));
            data.map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
                .collect()
        } else {
            vec![
                serde_json::from_str(&self.body)
                    .unwrap_or_else(|e| panic!("body {:?}: {e}", self.body)),
            ]
        }
    }
}

impl HttpFixture {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new(fixture_program())
            .args(["http", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start fixture_server http");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = timeout(WAIT, stdout.next_line())
            .await
            .expect("LISTENING in time")
            .expect("read stdout");
        let line = line.expect("a LISTENING line");
        let addr = line
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut fixture = Self {
            _child: child,
            endpoint: format!("http://{addr}/mcp"),
            client,
            session: String::new(),
        };
        let response = fixture
            .send(Method::POST, Some(request(0, "initialize", json!({}))))
            .await;
        let session = response
            .headers()
            .get("mcp-session-id")
            .expect("initialize mints Mcp-Session-Id");
        fixture.session = session.to_str().expect("ASCII session id").to_owned();
        let answer = read(response).await;
        assert_eq!(
            answer.messages()[0]["result"]["protocolVersion"],
            "2025-11-25",
            "latest version by default"
        );
        let initialized = fixture
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(initialized.status, StatusCode::ACCEPTED);
        fixture
    }

    async fn send(&self, method: Method, body: Option<Value>) -> hyper::Response<Incoming> {
        let request = Request::builder()
            .method(method)
            .uri(&self.endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .body(Full::new(
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            ))
            .expect("valid request");
        timeout(WAIT, self.client.request(request))
            .await
            .expect("answer in time")
            .expect("HTTP exchange")
    }

    async fn post(&self, message: Value) -> Answer {
        read(self.send(Method::POST, Some(message)).await).await
    }

    async fn result(&self, message: Value) -> Value {
        let answer = self.post(message).await;
        let response = answer.messages().pop().expect("a response");
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("expected a result, got {response}"))
    }
}

async fn read(response: hyper::Response<Incoming>) -> Answer {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map_or("", |v| v.to_str().unwrap_or(""))
        .to_owned();
    let body = timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("read body");
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8 body"),
    }
}

#[tokio::test]
async fn http_pages_tools_and_answers_echo_as_one_json_body() {
    let fixture =
        HttpFixture::start(&["--tools", "5", "--page-size", "2", "--name", "fx-http"]).await;
    let (mut names, mut cursor) = (Vec::new(), None::<Value>);
    for id in 1.. {
        let params = cursor.take().map_or(json!({}), |c| json!({"cursor": c}));
        let page = fixture.result(request(id, "tools/list", params)).await;
        names.extend(
            page["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match page.get("nextCursor") {
            Some(next) => cursor = Some(next.clone()),
            None => break,
        }
    }
    assert_eq!(names, expected_tool_names(5));

    let answer = fixture
        .post(call(50, "echo", json!({"message": "over http"})))
        .await;
    assert_eq!(
        answer.content_type, "application/json",
        "a call without notifications is plain JSON"
    );
    let result = &answer.messages()[0]["result"];
    assert_eq!(first_text(result), "over http");
    assert_eq!(result["x-fixture"], json!({"kept": true}));
}

#[tokio::test]
async fn http_streams_progress_in_order_then_the_response() {
    let fixture = HttpFixture::start(&[]).await;
    let params =
        json!({"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 7}});
    let answer = fixture.post(request(1, "tools/call", params)).await;
    assert_eq!(answer.content_type, "text/event-stream");
    let messages = answer.messages();
    let methods: Vec<&str> = messages
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("(response)"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/progress",
            "notifications/progress",
            "notifications/message",
            "(response)"
        ]
    );
    let steps: Vec<&Value> = messages[..3]
        .iter()
        .map(|m| &m["params"]["progress"])
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    assert_eq!(first_text(&messages[4]["result"]), "done 3");
}

#[tokio::test]
async fn http_announces_added_tools_on_the_get_stream_and_ends_sessions_on_delete() {
    let fixture = HttpFixture::start(&[]).await;
    let stream = fixture.send(Method::GET, None).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();

    let added = fixture
        .result(call(1, "add_tool", json!({"name": "late_tool"})))
        .await;
    assert_eq!(first_text(&added), "added late_tool");
    let mut seen = String::new();
    while !seen.contains("notifications/tools/list_changed") {
        let frame = timeout(WAIT, stream.frame())
            .await
            .expect("list_changed in time");
        let frame = frame.expect("stream still open").expect("read stream");
        seen.push_str(&String::from_utf8_lossy(
            frame.data_ref().map_or(&[][..], |d| &d[..]),
        ));
    }
    let tools = fixture.result(request(2, "tools/list", json!({}))).await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "late_tool"),
        "{tools}"
    );

    assert_eq!(
        read(fixture.send(Method::DELETE, None).await).await.status,
        StatusCode::OK
    );
    let after = fixture.post(request(3, "ping", json!({}))).await;
    assert_eq!(
        after.status,
        StatusCode::NOT_FOUND,
        "an ended session is unknown"
    );
}
