//! The MCP methods, independent of the transport.
//!
//! A request is handled on its own task; whatever it has to say before its response
//! (progress, log messages) goes into an [`Outbox`], followed by the response itself, so each
//! transport decides how to frame the sequence (stdout lines, one JSON body, or an SSE stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::Options;
use crate::tools::{self, ToolCatalog};

/// Where a request's notifications, then its response, are sent.
pub type Outbox = mpsc::UnboundedSender<Value>;

/// Protocol revisions we answer with the client's own version; others get the latest.
const SUPPORTED_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_VERSION: &str = "2025-11-25";

/// Names offered by `completion/complete` for the `greet` prompt's `name` argument.
const GREET_NAMES: [&str; 3] = ["alice", "albert", "bob"];

/// A JSON-RPC error, turned into an `error` member by [`Fixture::handle`].
pub struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    /// An error with the given JSON-RPC code.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `-32602`: the params are missing or wrong.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }
}

/// State shared by every session of one fixture process.
pub struct Fixture {
    /// The command-line options (generated tools, paging, name).
    pub options: Options,
    /// Whether `crash` exits the process (stdio) or fails the call (HTTP).
    pub exit_on_crash: bool,
    /// The tools, including those added at run time by `add_tool`.
    pub tools: ToolCatalog,
    /// `notifications/tools/list_changed`, fanned out to stdout or every GET stream.
    list_changed: broadcast::Sender<Value>,
}

impl Fixture {
    /// A fixture serving `options`.
    pub fn new(options: Options, exit_on_crash: bool) -> Self {
        let tools = ToolCatalog::new(options.generated_tools);
        let (list_changed, _) = broadcast::channel(16);
        Self {
            options,
            exit_on_crash,
            tools,
            list_changed,
        }
    }

    /// Server-initiated notifications not tied to a request (`list_changed`).
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.list_changed.subscribe()
    }

    /// Announces that the tool list changed to every listener.
    pub fn announce_tools_changed(&self) {
        let note = notification("notifications/tools/list_changed", json!({}));
        // No receiver (no GET stream open) is not an error: nobody needs telling.
        let _ = self.list_changed.send(note);
    }

    /// Handles one request and returns its JSON-RPC response.
    pub async fn handle(&self, request: &Value, outbox: &Outbox) -> Value {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = request.get("params").unwrap_or(&Value::Null);
        match self.dispatch(method, params, outbox).await {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => json!({
                "jsonrpc": "2.0", "id": id,
                "error": {"code": e.code, "message": e.message},
            }),
        }
    }

    async fn dispatch(
        &self,
        method: &str,
        params: &Value,
        outbox: &Outbox,
    ) -> Result<Value, RpcError> {
        match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" | "logging/setLevel" => Ok(json!({})),
            "tools/list" => self.tools.list(params, self.options.page_size),
            "tools/call" => tools::call(self, params, outbox).await,
            "prompts/list" => Ok(prompts_list()),
            "prompts/get" => prompts_get(params),
            "resources/list" => Ok(resources_list()),
            "resources/templates/list" => Ok(resource_templates_list()),
            "resources/read" => resources_read(params),
            "completion/complete" => Ok(complete(params)),
            _ => Err(RpcError::new(-32601, format!("method not found: {method}"))),
        }
    }

    fn initialize(&self, params: &Value) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = asked
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .unwrap_or(LATEST_VERSION);
        json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"subscribe": false, "listChanged": true},
                "logging": {},
                "completions": {},
            },
            "serverInfo": {"name": self.options.name, "version": env!("CARGO_PKG_VERSION")},
        })
    }
}

/// A JSON-RPC notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// Whether `message` is a request (expects a response), as opposed to a notification or a
/// response from the client.
pub fn is_request(message: &Value) -> bool {
    message.get("method").is_some() && message.get("id").is_some()
}

/// One client's requests in flight, so that `notifications/cancelled` can abort them.
#[derive(Default)]
pub struct Session {
    // A std mutex: only inserts and removals under it, never an `.await`.
    inflight: Mutex<HashMap<String, AbortHandle>>,
}

impl Session {
    /// Runs `request` on its own task; its notifications then response go to `outbox`,
    /// unless it is cancelled first (then nothing is sent).
    pub fn spawn_request(self: &Arc<Self>, fixture: &Arc<Fixture>, request: Value, outbox: Outbox) {
        let key = request["id"].to_string();
        let (session, fixture, task_key) = (Arc::clone(self), Arc::clone(fixture), key.clone());
        // Hold the lock across spawn and insert: a fast task must not remove its entry
        // before it exists (it would then stay in the map forever).
        let mut inflight = self.inflight.lock().expect("BUG: inflight lock poisoned");
        let task = tokio::spawn(async move {
            let response = fixture.handle(&request, &outbox).await;
            session
                .inflight
                .lock()
                .expect("BUG: inflight lock poisoned")
                .remove(&task_key);
            let _ = outbox.send(response);
        });
        inflight.insert(key, task.abort_handle());
    }

    /// Handles a client notification or response (no reply is ever sent for these).
    pub fn on_notification(&self, message: &Value) {
        if message.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            let key = message["params"]["requestId"].to_string();
            let task = self
                .inflight
                .lock()
                .expect("BUG: inflight lock poisoned")
                .remove(&key);
            if let Some(task) = task {
                task.abort();
            }
        }
    }
}

fn prompts_list() -> Value {
    json!({"prompts": [{
        "name": "greet",
        "description": "Greets someone by name",
        "arguments": [{"name": "name", "description": "Who to greet", "required": true}],
    }]})
}

fn prompts_get(params: &Value) -> Result<Value, RpcError> {
    if params["name"] != "greet" {
        return Err(RpcError::invalid_params(format!(
            "unknown prompt: {}",
            params["name"]
        )));
    }
    let name = params["arguments"]["name"].as_str().unwrap_or("world");
    Ok(json!({
        "description": "A greeting",
        "messages": [{"role": "user", "content": {"type": "text", "text": format!("Hello, {name}!")}}],
    }))
}

fn resources_list() -> Value {
    json!({"resources": [{"uri": "fixture://static/hello", "name": "hello", "mimeType": "text/plain"}]})
}

fn resource_templates_list() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": "fixture://item/{id}", "name": "item", "mimeType": "text/plain",
    }]})
}

fn resources_read(params: &Value) -> Result<Value, RpcError> {
    let uri = params["uri"].as_str().unwrap_or_default();
    let text = match uri.strip_prefix("fixture://item/") {
        Some(id) if !id.is_empty() => format!("item {id}"),
        _ if uri == "fixture://static/hello" => "hello".to_owned(),
        _ => return Err(RpcError::new(-32002, format!("resource not found: {uri}"))),
    };
    Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
}

fn complete(params: &Value) -> Value {
    let is_greet_name = params["ref"]["type"] == "ref/prompt"
        && params["ref"]["name"] == "greet"
        && params["argument"]["name"] == "name";
    let prefix = params["argument"]["value"].as_str().unwrap_or_default();
    let values: Vec<&str> = if is_greet_name {
        GREET_NAMES
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    } else {
        Vec::new()
    };
    json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
}
