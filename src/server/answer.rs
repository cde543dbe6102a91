//! Turning a relayed call into the HTTP answer: JSON when the response comes first (one write),
//! an SSE stream when notifications come before it. Shared by both protocol eras, which differ
//! only in how messages are shaped ([`Era`]).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::body::{self, Body};
use super::session::Session;
use crate::gateway::{Outgoing, Relay};
use crate::mcp::jsonrpc::{self, RpcError};
use crate::mcp::{era, sse};

/// Events buffered per SSE response before the relay waits for the client.
pub const STREAM_BUFFER: usize = 64;
/// JSON-RPC code for a request the client cancelled.
const REQUEST_CANCELLED: i64 = -32800;

/// The protocol era of the client a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: messages go as the downstream sent them, but log messages
    /// only at or above the level the session set (`logging/setLevel` is per client, while
    /// the downstream's session is shared by every client).
    Handshake {
        /// Index into the RFC 5424 levels (0, everything, until the client sets one).
        log_level: usize,
    },
    /// 2026-07-28: results carry `resultType` and the server's identity; log messages reach
    /// the client only at or above the level its request asked for (`None`: not at all).
    Stateless {
        /// Index into the RFC 5424 levels, from the request's `_meta`.
        log_level: Option<usize>,
        /// The result must say how long it may be cached (lists, `resources/read`), which
        /// a handshake-era downstream never does.
        cacheable: bool,
    },
}

impl Era {
    /// Shapes a message for the client, or `None` when it must not be sent.
    pub fn shape(&self, message: Value) -> Option<Value> {
        if jsonrpc::method(&message) == Some("notifications/message") {
            let wanted = match self {
                // The same rule as the session's notification stream.
                Era::Handshake { log_level } => era::log_wanted(&message, *log_level),
                Era::Stateless { log_level, .. } => {
                    let level = message
                        .pointer("/params/level")
                        .and_then(Value::as_str)
                        .and_then(era::level_index);
                    matches!((level, log_level), (Some(level), Some(wanted)) if level >= *wanted)
                }
            };
            return wanted.then_some(message);
        }
        let Era::Stateless { cacheable, .. } = self else {
            return Some(message);
        };
        Some(if message.get("result").is_some() {
            let mut message = era::stateless_result(message);
            if *cacheable {
                era::add_cache_hints(&mut message);
            }
            message
        } else {
            era::stateless_error(message)
        })
    }

    /// The HTTP status of an answer (the stateless era maps some JSON-RPC errors to 4xx).
    pub fn status(&self, message: &Value) -> StatusCode {
        match (self, RpcError::from_response(message)) {
            (Era::Stateless { .. }, Some(error)) => era::http_status(error.code),
            _ => StatusCode::OK,
        }
    }
}

/// Answers a relayed call. `cancelled` fires when the client cancels it (handshake era's
/// `notifications/cancelled`); `done` gets the relay once this answer is over, however it
/// ended (a suspended call lives on). The downstream's requests reach the client only
/// through its `session` (the handshake era), on this response's stream.
pub async fn relayed(
    mut relay: Relay,
    era: Era,
    streaming: bool,
    session: Option<Arc<Session>>,
    cancelled: CancellationToken,
    done: impl FnOnce(Relay) + Send + 'static,
) -> Response<Body> {
    let asks = session.as_deref().filter(|_| streaming);
    let first = tokio::select! {
        first = next_message(&mut relay, era, streaming, asks) => first,
        _ = cancelled.cancelled() => {
            let id = relay.client_id();
            done(relay);
            return cancelled_response(id);
        }
    };
    if relay.is_finished() {
        done(relay);
        return body::json(era.status(&first), &first);
    }
    let (sender, response) = body::event_stream(STREAM_BUFFER);
    tokio::spawn(async move {
        let relay = stream(relay, era, first, sender, session, cancelled).await;
        done(relay);
    });
    response
}

/// The next message to send. Without SSE (or when the era filters them) notifications are
/// dropped and only the response is returned. The downstream's requests go to `asks` (the
/// session of a client on an SSE response) or are refused.
pub async fn next_message(
    relay: &mut Relay,
    era: Era,
    streaming: bool,
    asks: Option<&Session>,
) -> Value {
    loop {
        let outgoing = relay
            .next()
            .await
            .expect("BUG: a relay ends with its response");
        let message = match (outgoing, asks) {
            (Outgoing::Message(message), _) => message,
            (Outgoing::Request(request), Some(session)) => match session.forward(request) {
                Some(request) => return request,
                None => continue,
            },
            (Outgoing::Request(request), None) => {
                let method = request.method().to_owned();
                request.refuse(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("the gateway's client cannot receive `{method}` on this request"),
                );
                continue;
            }
        };
        let finished = relay.is_finished();
        if let Some(message) = era.shape(message)
            && (streaming || finished)
        {
            return message;
        }
    }
}

async fn stream(
    mut relay: Relay,
    era: Era,
    first: Value,
    sender: mpsc::Sender<Bytes>,
    session: Option<Arc<Session>>,
    cancelled: CancellationToken,
) -> Relay {
    let mut next = Some(first);
    while let Some(message) = next {
        let event = sse::encode_message(
            &serde_json::to_vec(&message).expect("BUG: JSON always serializes"),
        );
        if sender.send(event).await.is_err() {
            // The client went away: `done` drops the relay, which cancels the downstream call.
            return relay;
        }
        if relay.is_finished() {
            return relay;
        }
        next = tokio::select! {
            message = next_message(&mut relay, era, true, session.as_deref()) => Some(message),
            _ = cancelled.cancelled() => None,
        };
    }
    relay
}

/// The answer to a request the client cancelled.
pub fn cancelled_response(id: Value) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &jsonrpc::error(id, REQUEST_CANCELLED, "Request cancelled"),
    )
}

/// A scope refusal: 403 with its `WWW-Authenticate` challenge and the JSON-RPC error.
/// `resource_metadata` is the RFC 9728 document's URL (from `[server.oauth]`).
pub fn challenged(
    challenge: &crate::access::Challenge,
    response: &Value,
    resource_metadata: Option<&str>,
) -> Response<Body> {
    let mut answer = body::json(challenge.status(), response);
    answer.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        challenge.header(resource_metadata),
    );
    answer
}
