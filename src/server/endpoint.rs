//! The MCP endpoint (Streamable HTTP, handshake era): POST messages, GET the notification
//! stream, DELETE the session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::App;
use super::answer::{self, Era};
use super::body::{self, Body};
use super::request_body;
use super::session::{self, Session};
use super::stateless;
use crate::access::Caller;
use crate::gateway::{Asking, Gateway, Reply, RequestContext};
use crate::mcp::jsonrpc::{self, INVALID_REQUEST, Kind, PARSE_ERROR};
use crate::mcp::{sse, version};

/// How often an idle GET stream sends a comment, so proxies and clients keep it open.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// POST: one JSON-RPC message (or a 2025-03-26 batch).
pub async fn post(
    app: &Arc<App>,
    request: Request<Incoming>,
    caller: Arc<Caller>,
) -> Response<Body> {
    let (parts, incoming) = request.into_parts();
    let received = match request_body::read(&app.limits, &app.bodies, &parts, incoming).await {
        Ok(received) => received,
        Err(response) => return *response,
    };
    // The body's share of `max_request_bodies_total` is held until it is parsed.
    let message: Value = match parse(received).await {
        Ok(message) => message,
        Err(error) => {
            return body::rpc_error(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                format!("Parse error: {error}"),
            );
        }
    };
    let context = RequestContext {
        authorization: parts.headers.get(AUTHORIZATION).cloned(),
        audit: app.audit.clone(),
        resource_metadata: app.resource_metadata(&parts.uri, &parts.headers),
        ..RequestContext::new(caller)
    };
    if stateless::applies(&parts.headers, &message) {
        return stateless::post(app, &parts.headers, message, context).await;
    }
    if is_initialize(&message) {
        return initialize(app, &message, &context.caller);
    }
    let session = match session_of(app, &parts.headers, &context.caller) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let streaming = accepts_event_stream(&parts.headers);
    match message {
        Value::Array(batch) => post_batch(app, &session, batch, &context).await,
        message => post_one(app, session, message, context, streaming).await,
    }
}

/// Bodies from this size on are parsed on the blocking pool: parsing megabytes takes long
/// enough to stall every other connection served by the same I/O worker.
const PARSE_OFF_WORKER_FROM: usize = 256 * 1024;

async fn parse(received: request_body::Received) -> serde_json::Result<Value> {
    if received.bytes.len() < PARSE_OFF_WORKER_FROM {
        return serde_json::from_slice(&received.bytes);
    }
    tokio::task::spawn_blocking(move || serde_json::from_slice(&received.bytes))
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
}

async fn post_one(
    app: &Arc<App>,
    session: Arc<Session>,
    message: Value,
    context: RequestContext,
    streaming: bool,
) -> Response<Body> {
    match jsonrpc::kind(&message) {
        Some(Kind::Request) => request(app, session, message, context, streaming).await,
        Some(Kind::Notification) => {
            notification(&session, &message);
            body::empty(StatusCode::ACCEPTED)
        }
        // The client's answer to a downstream's request the gateway forwarded.
        Some(Kind::Response) => {
            session.answer(message);
            body::empty(StatusCode::ACCEPTED)
        }
        None => body::json(StatusCode::BAD_REQUEST, &jsonrpc::invalid_request(&message)),
    }
}

fn is_initialize(message: &Value) -> bool {
    jsonrpc::kind(message) == Some(Kind::Request) && jsonrpc::method(message) == Some("initialize")
}

fn initialize(app: &Arc<App>, message: &Value, caller: &Caller) -> Response<Body> {
    let requested = message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str);
    let agreed = version::negotiate(requested);
    let capabilities = message
        .pointer("/params/capabilities")
        .unwrap_or(&Value::Null);
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let session = match app
        .sessions
        .create(agreed, capabilities, caller.principal.clone())
    {
        Ok(session) => session,
        Err(refused) => {
            tracing::warn!(%refused, "initialize refused");
            let (status, code) = match refused {
                session::Refused::Full { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, jsonrpc::SERVER_BUSY)
                }
                session::Refused::TooManyForIdentity { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, jsonrpc::SERVER_BUSY)
                }
                session::Refused::CapabilitiesTooLarge { .. } => {
                    (StatusCode::BAD_REQUEST, jsonrpc::INVALID_PARAMS)
                }
            };
            return body::json(status, &jsonrpc::error(id, code, refused.to_string()));
        }
    };
    forget_when_closed(app, &session);
    let mut response = body::json(
        StatusCode::OK,
        &jsonrpc::result(id, app.gateway.initialize_result(agreed)),
    );
    let header = HeaderValue::from_str(&session.id).expect("BUG: session ids are hex");
    response.headers_mut().insert(SESSION_HEADER, header);
    response
}

/// However a session ends (DELETE, expiry), its resource subscriptions end with it.
fn forget_when_closed(app: &Arc<App>, session: &Session) {
    let (gateway, closed, id) = (
        app.gateway.clone(),
        session.closed().clone(),
        session.id.clone(),
    );
    tokio::spawn(async move {
        closed.cancelled().await;
        gateway.forget_subscriber(&id);
    });
}

/// The session a request belongs to, or the HTTP error to answer with.
fn session_of(
    app: &App,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<Arc<Session>, Box<Response<Body>>> {
    let Some(id) = headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(Box::new(body::rpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        )));
    };
    let Some(session) = app.sessions.get(id, &caller.principal) else {
        return Err(Box::new(body::rpc_error(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "Session not found: initialize a new session",
        )));
    };
    if let Some(version) = headers.get(VERSION_HEADER) {
        let version = version.to_str().unwrap_or("");
        if !version::is_supported(version) {
            let supported = version::HANDSHAKE_REVISIONS.join(", ");
            return Err(Box::new(body::rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                format!(
                    "Bad Request: unsupported MCP-Protocol-Version `{version}` (supported: {supported})"
                ),
            )));
        }
        // An older revision is accepted, as the reference SDK servers do (the conformance
        // suite's own client sends one): it asks for nothing the session did not agree to.
        // A newer one would claim features the session never negotiated.
        if !version::is_within(version, session.protocol_version) {
            let agreed = session.protocol_version;
            return Err(Box::new(body::rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                format!(
                    "Bad Request: MCP-Protocol-Version `{version}` is newer than `{agreed}`, the revision this session agreed in initialize; send `{agreed}` or initialize a new session"
                ),
            )));
        }
    }
    Ok(session)
}

/// Client notifications: only cancellation needs action (`initialized` and others are noted).
fn notification(session: &Session, message: &Value) {
    if jsonrpc::method(message) == Some("notifications/cancelled")
        && let Some(id) = message.pointer("/params/requestId")
    {
        session.cancel(id);
    }
}

async fn request(
    app: &Arc<App>,
    session: Arc<Session>,
    message: Value,
    context: RequestContext,
    streaming: bool,
) -> Response<Body> {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    if jsonrpc::method(&message) == Some("logging/setLevel")
        && let Some(level) = message.pointer("/params/level").and_then(Value::as_str)
    {
        session.set_log_level(level);
    }
    let context = RequestContext {
        log_level: Some(session.log_level()),
        subscriber: Some(session.id.clone()),
        client_capabilities: Some(session.relayable_capabilities()),
        asking: Asking::Requests,
        ..context
    };
    let cancelled = session.track(&id);
    let reply = tokio::select! {
        reply = app.gateway.handle(message, &context) => reply,
        _ = cancelled.cancelled() => {
            session.untrack(&id);
            return answer::cancelled_response(id);
        }
    };
    match reply {
        Reply::Immediate(response) => {
            session.untrack(&id);
            body::json(StatusCode::OK, &response)
        }
        Reply::Challenged {
            challenge,
            response,
        } => {
            session.untrack(&id);
            answer::challenged(&challenge, &response, context.resource_metadata.as_deref())
        }
        Reply::Relayed(relay) => {
            let era = Era::Handshake {
                log_level: session.log_level_index(),
            };
            let asks = Some(session.clone());
            let done = move |_| session.untrack(&id);
            answer::relayed(relay, era, streaming, asks, cancelled, done).await
        }
    }
}

async fn post_batch(
    app: &Arc<App>,
    session: &Arc<Session>,
    batch: Vec<Value>,
    context: &RequestContext,
) -> Response<Body> {
    if batch.is_empty() {
        // JSON-RPC 2.0: an empty array is answered with one error, not with an empty batch.
        return body::rpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Invalid Request: an empty batch",
        );
    }
    let mut responses = Vec::new();
    for message in batch {
        match jsonrpc::kind(&message) {
            Some(Kind::Request) => {
                let reply = app.gateway.handle(message, context).await;
                responses.push(match reply {
                    // A batch has one status for all its answers: the refusal is an item.
                    Reply::Immediate(response) | Reply::Challenged { response, .. } => response,
                    Reply::Relayed(mut relay) => {
                        let era = Era::Handshake {
                            log_level: session.log_level_index(),
                        };
                        answer::next_message(&mut relay, era, false, None).await
                    }
                });
            }
            Some(Kind::Notification) => notification(session, &message),
            Some(Kind::Response) => session.answer(message),
            None => responses.push(jsonrpc::invalid_request(&message)),
        }
    }
    if responses.is_empty() {
        return body::empty(StatusCode::ACCEPTED);
    }
    body::json(StatusCode::OK, &Value::Array(responses))
}

/// GET: the stream of server notifications (list changes, log messages) for one session.
pub fn get(app: &Arc<App>, request: &Request<Incoming>, caller: &Caller) -> Response<Body> {
    if let Some(refused) = stateless_only_post(request.headers()) {
        return refused;
    }
    let session = match session_of(app, request.headers(), caller) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    if !accepts_event_stream(request.headers()) {
        return body::rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            INVALID_REQUEST,
            "Not Acceptable: the GET stream is text/event-stream",
        );
    }
    let max = app.limits.max_streams_per_session;
    let Some(slot) = session.open_stream(max) else {
        return body::rpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            jsonrpc::SERVER_BUSY,
            format!(
                "this session has {max} GET streams open, the [server.limits] max_streams_per_session; close one first"
            ),
        );
    };
    let (sender, response) = body::event_stream(answer::STREAM_BUFFER);
    let notifications = app.gateway.subscribe();
    tokio::spawn(notification_stream(
        app.gateway.clone(),
        session,
        notifications,
        sender,
        slot,
    ));
    response
}

async fn notification_stream(
    gateway: Arc<Gateway>,
    session: Arc<Session>,
    mut notifications: tokio::sync::broadcast::Receiver<Value>,
    sender: mpsc::Sender<Bytes>,
    _slot: session::StreamSlot,
) {
    let closed = session.streams_closed().clone();
    loop {
        let chunk = tokio::select! {
            received = notifications.recv() => match received {
                Ok(message) if session.wants(&message) && gateway.reaches(&session.id, &message) => {
                    sse::encode_message(&serde_json::to_vec(&message).expect("BUG: JSON always serializes"))
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(session = %session.id, missed, "a client fell behind its notification stream");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(KEEP_ALIVE_EVERY) => {
                session.touch();
                Bytes::from_static(sse::KEEP_ALIVE)
            }
            _ = closed.cancelled() => return,
            // The client went away: give its place in max_streams_per_session back now, not
            // at the next keep-alive.
            () = sender.closed() => return,
        };
        if sender.send(chunk).await.is_err() {
            return;
        }
    }
}

/// DELETE: ends the session.
pub fn delete(app: &Arc<App>, request: &Request<Incoming>, caller: &Caller) -> Response<Body> {
    if let Some(refused) = stateless_only_post(request.headers()) {
        return refused;
    }
    let Some(id) = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        return body::rpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        );
    };
    if app.sessions.remove(id, &caller.principal) {
        body::empty(StatusCode::OK)
    } else {
        body::rpc_error(StatusCode::NOT_FOUND, INVALID_REQUEST, "Session not found")
    }
}

/// The stateless era has neither a GET stream nor sessions to delete: 405, `Allow: POST`.
fn stateless_only_post(headers: &HeaderMap) -> Option<Response<Body>> {
    let version = headers.get(VERSION_HEADER)?.to_str().unwrap_or("");
    if version::is_supported(version) {
        return None;
    }
    let mut response = body::empty(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    Some(response)
}

/// Whether the client takes SSE answers (a missing Accept is read as "anything").
pub(super) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or("").trim())
        .any(|kind| kind == "text/event-stream" || kind == "*/*" || kind == "text/*")
}

/// The body of `GET /health`.
pub fn health(app: &App) -> Response<Body> {
    let (connected, total) = app.gateway.status();
    let servers: serde_json::Map<String, Value> = app
        .gateway
        .servers()
        .into_iter()
        .map(|(name, version)| {
            let state = match version {
                Some(version) => json!({"status": "connected", "protocolVersion": version}),
                None => json!({"status": "connecting"}),
            };
            (name, state)
        })
        .collect();
    body::json(
        StatusCode::OK,
        &json!({"status": "healthy", "downstreams": {"connected": connected, "total": total}, "servers": servers}),
    )
}
