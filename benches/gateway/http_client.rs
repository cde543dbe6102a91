//! A Streamable HTTP MCP client for load: one hyper connection pool shared by every session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::BenchError;

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "2025-11-25";

/// An MCP endpoint and the keep-alive connection pool used to reach it.
#[derive(Clone)]
pub struct McpHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
}

impl McpHttp {
    /// A client of the MCP endpoint at `endpoint` (e.g. `http://127.0.0.1:8000/mcp`).
    pub fn new(endpoint: Uri) -> Self {
        let mut connector = HttpConnector::new();
        // Without it, a request written in two segments waits for the peer's delayed ACK.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self { client, endpoint }
    }

    /// `GET path` on the endpoint's host: its JSON body, if it answered 200 with one.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        let authority = self.endpoint.authority().expect("BUG: endpoint has a host");
        let Ok(uri) = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
        else {
            return None;
        };
        let request = Request::get(uri)
            .body(Full::default())
            .expect("BUG: static request");
        let response = self.client.request(request).await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// Initializes a new MCP session (`initialize`, then `notifications/initialized`).
    pub async fn open_session(&self) -> Result<HttpSession, BenchError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "nexus-bench", "version": "0"},
        });
        let initialize =
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        let response = self.post(&initialize, None).await?;
        let session_id = response.headers().get(SESSION_HEADER).cloned();
        let answer = read_answer(response, 0).await?;
        answer
            .get("result")
            .ok_or_else(|| format!("initialize failed: {answer}"))?;
        let session = HttpSession {
            http: self.clone(),
            session_id,
            next_id: AtomicU64::new(1),
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post(&initialized, session.session_id.as_ref()).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(format!("notifications/initialized: HTTP {}", response.status()).into());
        }
        Ok(session)
    }

    async fn post(
        &self,
        message: &Value,
        session_id: Option<&HeaderValue>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, BenchError> {
        let body = Bytes::from(serde_json::to_vec(message)?);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(id) = session_id {
            request = request.header(SESSION_HEADER, id);
        }
        Ok(self.client.request(request.body(Full::new(body))?).await?)
    }
}

/// One MCP session over the shared pool.
pub struct HttpSession {
    http: McpHttp,
    session_id: Option<HeaderValue>,
    next_id: AtomicU64,
}

impl HttpSession {
    /// Sends a request and returns its `result`; a JSON-RPC error becomes `Err`.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.http.post(&message, self.session_id.as_ref()).await?;
        let mut answer = read_answer(response, id).await?;
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(format!("{method} failed: {answer}").into()),
        }
    }
}

/// The JSON-RPC response with `id`, from a JSON body or an SSE stream.
async fn read_answer(
    response: hyper::Response<hyper::body::Incoming>,
    id: u64,
) -> Result<Value, BenchError> {
    let status = response.status();
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    if !is_sse {
        return Ok(serde_json::from_slice(&body)?);
    }
    // SSE allows CRLF line ends; the parser below splits on LF only.
    let text = std::str::from_utf8(&body)?.replace("\r\n", "\n");
    sse_data(&text)
        .filter_map(|data| serde_json::from_str::<Value>(&data).ok())
        .find(|message| message["id"] == id && message.get("method").is_none())
        .ok_or_else(|| format!("SSE stream ended without the response to {id}").into())
}

/// The `data` of each SSE event (multi-line data joined with `\n`), skipping empty ones.
fn sse_data(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n\n").filter_map(|event| {
        let lines = event.lines().filter_map(|line| line.strip_prefix("data:"));
        let data: Vec<&str> = lines.map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        let data = data.join("\n");
        (!data.is_empty()).then_some(data)
    })
}
