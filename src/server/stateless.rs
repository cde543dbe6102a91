//! The stateless revision (2026-07-28) on the same endpoint: every POST is self-contained (the
//! `_meta` envelope names revision and client capabilities), headers must agree with the body,
//! there is no session, and `subscriptions/listen` replaces the GET stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::App;
use super::answer::{self, Era};
use super::body::{self, Body};
use crate::access::{Caller, Principal};
use crate::gateway::{Asking, Relay, Reply, RequestContext};
use crate::mcp::era::{self, HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION};
use crate::mcp::jsonrpc::{
    self, INVALID_PARAMS, INVALID_REQUEST, Kind, METHOD_NOT_FOUND, RpcError,
};
use crate::mcp::{param_headers, sse, version};

const VERSION_HEADER: &str = "mcp-protocol-version";
const SESSION_HEADER: &str = "mcp-session-id";
/// The `subscriptions/listen` filter key listing resource URIs to watch.
const RESOURCE_SUBSCRIPTIONS: &str = "resourceSubscriptions";
/// How often an idle subscription stream sends a comment.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// Whether a POST belongs to the stateless era: its body carries the `_meta` envelope (a stray
/// `Mcp-Session-Id` is ignored), or, outside any session, its `MCP-Protocol-Version` header
/// names a revision that is not a handshake one (so the ladder can explain what is wrong).
pub fn applies(headers: &HeaderMap, message: &Value) -> bool {
    if era::envelope_version(message).is_some() {
        return true;
    }
    let version = headers
        .get(VERSION_HEADER)
        .and_then(|value| value.to_str().ok());
    !headers.contains_key(SESSION_HEADER)
        && version.is_some_and(|version| !version::is_supported(version))
}

/// Serves one stateless POST.
pub async fn post(
    app: &Arc<App>,
    headers: &HeaderMap,
    message: Value,
    context: RequestContext,
) -> Response<Body> {
    match jsonrpc::kind(&message) {
        // No client-to-server notification means anything on this wire: cancelling is closing
        // the response stream.
        Some(Kind::Notification) => return body::empty(StatusCode::ACCEPTED),
        Some(Kind::Request) => {}
        _ => {
            return reject(
                Value::Null,
                RpcError::new(
                    INVALID_REQUEST,
                    "a stateless POST carries one JSON-RPC request",
                ),
            );
        }
    }
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let checked = check(headers, &message)
        .and_then(|()| check_params(app, headers, &message, &context.caller));
    if let Err(error) = checked {
        return reject(id, error);
    }
    let method = jsonrpc::method(&message).unwrap_or_default().to_owned();
    let streaming = super::endpoint::accepts_event_stream(headers);
    match method.as_str() {
        "server/discover" => answer_now(&id, discover(app)),
        "subscriptions/listen" => listen(app, id, &message).await,
        // Removed in 2026-07-28 (log levels travel in each request's `_meta`).
        "ping"
        | "logging/setLevel"
        | "initialize"
        | "resources/subscribe"
        | "resources/unsubscribe" => reject(
            id,
            RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method} (not part of 2026-07-28)"),
            ),
        ),
        _ => relay(app, message, context, streaming).await,
    }
}

/// The request ladder: envelope present, headers equal to the body, revision served.
fn check(headers: &HeaderMap, message: &Value) -> Result<(), RpcError> {
    let meta = message.pointer("/params/_meta").and_then(Value::as_object);
    let missing = [era::PROTOCOL_VERSION_KEY, era::CLIENT_CAPABILITIES_KEY]
        .into_iter()
        .filter(|key| !meta.is_some_and(|meta| meta.contains_key(*key)))
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        let keys = missing.join(", ");
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("params._meta is missing the required key(s): {keys}"),
        ));
    }
    let requested = era::envelope_version(message);
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if header(VERSION_HEADER) != requested {
        return Err(mismatch(
            "MCP-Protocol-Version header does not match params._meta's protocol version",
        ));
    }
    let method = jsonrpc::method(message).unwrap_or_default();
    if header(era::METHOD_HEADER) != Some(method) {
        return Err(mismatch(
            "Mcp-Method header does not match the request's method",
        ));
    }
    if let Some(parameter) = era::name_parameter(method)
        && let Some(expected) = message
            .pointer(&format!("/params/{parameter}"))
            .and_then(Value::as_str)
        && header(era::NAME_HEADER)
            .and_then(era::decode_header_value)
            .as_deref()
            != Some(expected)
    {
        return Err(mismatch(&format!(
            "Mcp-Name header does not match params.{parameter}"
        )));
    }
    let Some(requested) = requested else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            "the protocol version in params._meta must be a string",
        ));
    };
    if !era::STATELESS_REVISIONS.contains(&requested) {
        let mut error = RpcError::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version");
        error.data = Some(json!({"supported": era::STATELESS_REVISIONS, "requested": requested}));
        return Err(error);
    }
    Ok(())
}

/// A `tools/call`'s `Mcp-Param-*` headers against its arguments, per the called tool's schema
/// (SEP-2243).
fn check_params(
    app: &App,
    headers: &HeaderMap,
    message: &Value,
    caller: &Caller,
) -> Result<(), RpcError> {
    if jsonrpc::method(message) != Some("tools/call") {
        return Ok(());
    }
    let params = message.get("params").unwrap_or(&Value::Null);
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Ok(());
    };
    let catalog = app.gateway.catalog();
    let Some(schema) = catalog
        .tool_definition(name, caller)
        .and_then(|tool| tool.get("inputSchema"))
    else {
        return Ok(());
    };
    let arguments = params.get("arguments").unwrap_or(&Value::Null);
    param_headers::check(schema, arguments, headers).map_err(|reason| mismatch(&reason))
}

fn mismatch(message: &str) -> RpcError {
    RpcError::new(HEADER_MISMATCH, message)
}

fn reject(id: Value, error: RpcError) -> Response<Body> {
    body::json(era::http_status(error.code), &error.to_response(id))
}

fn answer_now(id: &Value, result: Value) -> Response<Body> {
    let response = era::stateless_result(jsonrpc::result(id.clone(), result));
    body::json(StatusCode::OK, &response)
}

fn discover(app: &App) -> Value {
    let initialize = app.gateway.initialize_result(era::STATELESS_REVISIONS[0]);
    json!({
        "supportedVersions": era::STATELESS_REVISIONS,
        "capabilities": initialize["capabilities"],
        "ttlMs": era::UNCACHED_TTL_MS,
        "cacheScope": "private",
    })
}

async fn relay(
    app: &Arc<App>,
    mut message: Value,
    context: RequestContext,
    streaming: bool,
) -> Response<Body> {
    let log_level = message
        .pointer("/params/_meta")
        .and_then(|meta| meta.get(era::LOG_LEVEL_KEY))
        .and_then(Value::as_str)
        .and_then(era::level_index);
    let client_capabilities = message
        .pointer("/params/_meta")
        .and_then(|meta| meta.get(era::CLIENT_CAPABILITIES_KEY))
        .cloned();
    let context = RequestContext {
        log_level: log_level.map(|level| era::LEVELS[level]),
        client_capabilities,
        asking: Asking::InputRequired,
        ..context
    };
    let method = jsonrpc::method(&message).unwrap_or_default().to_owned();
    if let Some(params) = message.get_mut("params") {
        era::strip_envelope(params);
    }
    let cacheable = method.ends_with("/list") || method == "resources/read";
    let shape = Era::Stateless {
        log_level,
        cacheable,
    };
    let reply = match resumed(app, &message, &context.caller.principal) {
        Some(relay) => Reply::Relayed(relay),
        None => app.gateway.handle(message, &context).await,
    };
    match reply {
        Reply::Immediate(response) => {
            let response = shape
                .shape(response)
                .expect("BUG: responses are never filtered");
            body::json(shape.status(&response), &response)
        }
        Reply::Challenged {
            challenge,
            response,
        } => answer::challenged(&challenge, &response, context.resource_metadata.as_deref()),
        // No session, so nothing to cancel by notification: closing the stream cancels.
        Reply::Relayed(relay) => {
            let cancelled = CancellationToken::new();
            let app = app.clone();
            let owner = context.caller.principal.clone();
            let done = move |relay| app.held.hold(relay, owner);
            answer::relayed(relay, shape, streaming, None, cancelled, done).await
        }
    }
}

/// The suspended call that this request retries (it carries a `requestState` of the
/// gateway's), continued with the client's answer and the request's id.
fn resumed(app: &App, message: &Value, caller: &Principal) -> Option<Relay> {
    let params = message.get("params");
    let method = jsonrpc::method(message).unwrap_or_default();
    let mut relay = app.held.take(method, params, caller)?;
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    relay.resume(id, params.unwrap_or(&Value::Null));
    Some(relay)
}

/// `subscriptions/listen`: the answer is a stream of the notifications the client asked for,
/// acknowledged first, each tagged with the listen request's id. The stream is a resource
/// subscriber of its own while it lasts.
async fn listen(app: &Arc<App>, id: Value, message: &Value) -> Response<Body> {
    let requested = message
        .pointer("/params/notifications")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let listener: Arc<str> = format!("listen-{:032x}", rand::random::<u128>()).into();
    let mut honored = honored(&requested);
    let uris = subscribe_all(app, &listener, &requested).await;
    if !uris.is_empty() {
        honored.insert(RESOURCE_SUBSCRIPTIONS.into(), Value::from(uris));
    }
    let (sender, response) = body::event_stream(answer::STREAM_BUFFER);
    let listening = Listening {
        app: app.clone(),
        listener,
        id,
        honored,
    };
    tokio::spawn(listening.serve(sender));
    response
}

/// Subscribes a listen stream to the `resourceSubscriptions` it asked for; returns the URIs
/// it got (unknown ones, or ones whose server offers no subscriptions, are left out).
async fn subscribe_all(
    app: &App,
    listener: &Arc<str>,
    requested: &Map<String, Value>,
) -> Vec<String> {
    let asked = requested
        .get(RESOURCE_SUBSCRIPTIONS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let mut subscribed = Vec::new();
    for uri in asked {
        if app.gateway.subscribe_resource(listener, uri).await.is_ok() {
            subscribed.push(uri.to_owned());
        }
    }
    subscribed
}

/// The subset of a subscription filter the gateway serves: list changes (resource updates are
/// added by [`subscribe_all`]).
fn honored(requested: &Map<String, Value>) -> Map<String, Value> {
    [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ]
    .into_iter()
    .filter(|key| requested.get(*key) == Some(&Value::Bool(true)))
    .map(|key| (key.to_owned(), Value::Bool(true)))
    .collect()
}

/// One open `subscriptions/listen` stream.
struct Listening {
    app: Arc<App>,
    listener: Arc<str>,
    id: Value,
    honored: Map<String, Value>,
}

impl Listening {
    fn wanted(&self, message: &Value) -> bool {
        let key = match jsonrpc::method(message).unwrap_or_default() {
            "notifications/tools/list_changed" => "toolsListChanged",
            "notifications/prompts/list_changed" => "promptsListChanged",
            "notifications/resources/list_changed" => "resourcesListChanged",
            "notifications/resources/updated" => {
                return self.app.gateway.reaches(&self.listener, message);
            }
            _ => return false,
        };
        self.honored.contains_key(key)
    }

    /// Streams until the client leaves or the gateway shuts down, then drops the stream's
    /// resource subscriptions.
    async fn serve(self, sender: mpsc::Sender<Bytes>) {
        self.stream(&sender).await;
        self.app.gateway.forget_subscriber(&self.listener);
    }

    async fn stream(&self, sender: &mpsc::Sender<Bytes>) {
        let meta = json!({era::SUBSCRIPTION_ID_KEY: self.id});
        let ack = jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            Some(json!({"notifications": self.honored, "_meta": meta})),
        );
        if send(sender, &ack).await.is_err() {
            return;
        }
        let mut notifications = self.app.gateway.subscribe();
        let closed = self.app.streams_closed.clone();
        loop {
            let chunk = tokio::select! {
                received = notifications.recv() => match received {
                    Ok(mut message) if self.wanted(&message) => {
                        tag(&mut message, &meta);
                        event(&message)
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(KEEP_ALIVE_EVERY) => Bytes::from_static(sse::KEEP_ALIVE),
                _ = closed.cancelled() => return,
            };
            if sender.send(chunk).await.is_err() {
                return;
            }
        }
    }
}

/// Adds the subscription's `_meta` to a notification, keeping its params (a resource URI).
fn tag(message: &mut Value, meta: &Value) {
    if !message.get("params").is_some_and(Value::is_object) {
        message["params"] = json!({});
    }
    message["params"]["_meta"] = meta.clone();
}

async fn send(
    sender: &mpsc::Sender<Bytes>,
    message: &Value,
) -> Result<(), mpsc::error::SendError<Bytes>> {
    sender.send(event(message)).await
}

fn event(message: &Value) -> Bytes {
    sse::encode_message(&serde_json::to_vec(message).expect("BUG: JSON always serializes"))
}
