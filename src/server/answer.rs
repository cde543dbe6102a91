//! Turning a relayed call into the HTTP answer: JSON when the response comes first (one write),
//! an SSE stream when notifications come before it. Shared by both protocol eras, which differ
//! only in how messages are shaped ([`Era`]).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{self, Body};
use crate::gateway::Relay;
use crate::mcp::jsonrpc::{self, RpcError};
use crate::mcp::{era, sse};

/// Events buffered per SSE response before the relay waits for the client.
pub const STREAM_BUFFER: usize = 64;
/// JSON-RPC code for a request the client cancelled.
const REQUEST_CANCELLED: i64 = -32800;

/// The protocol era of the client a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: messages go as the downstream sent them.
    Handshake,
    /// 2026-07-28: results carry `resultType` and the server's identity; log messages reach
    /// the client only at or above the level its request asked for (`None`: not at all).
    Stateless {
        /// Index into the RFC 5424 levels, from the request's `_meta`.
        log_level: Option<usize>,
    },
}

impl Era {
    /// Shapes a message for the client, or `None` when it must not be sent.
    pub fn shape(&self, message: Value) -> Option<Value> {
        let Era::Stateless { log_level } = self else {
            return Some(message);
        };
        if jsonrpc::method(&message) == Some("notifications/message") {
            let level = message
                .pointer("/params/level")
                .and_then(Value::as_str)
                .and_then(era::level_index);
            return match (level, log_level) {
                (Some(level), Some(wanted)) if level >= *wanted => Some(message),
                _ => None,
            };
        }
        Some(if message.get("result").is_some() {
            era::stateless_result(message)
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
/// `notifications/cancelled`); `done` runs once the call is over, however it ended.
pub async fn relayed(
    mut relay: Relay,
    era: Era,
    streaming: bool,
    cancelled: CancellationToken,
    done: impl FnOnce() + Send + 'static,
) -> Response<Body> {
    let first = tokio::select! {
        first = next_message(&mut relay, era, streaming) => first,
        _ = cancelled.cancelled() => {
            done();
            return cancelled_response(relay.client_id());
        }
    };
    if relay.is_finished() {
        done();
        return body::json(era.status(&first), &first);
    }
    let (sender, response) = body::event_stream(STREAM_BUFFER);
    tokio::spawn(async move {
        stream(relay, era, first, sender, cancelled).await;
        done();
    });
    response
}

/// The next message to send. Without SSE (or when the era filters them) notifications are
/// dropped and only the response is returned.
pub async fn next_message(relay: &mut Relay, era: Era, streaming: bool) -> Value {
    loop {
        let message = relay
            .next()
            .await
            .expect("BUG: a relay ends with its response");
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
    cancelled: CancellationToken,
) {
    let mut next = Some(first);
    while let Some(message) = next {
        let event = sse::encode_message(
            &serde_json::to_vec(&message).expect("BUG: JSON always serializes"),
        );
        if sender.send(event).await.is_err() {
            return; // the client went away: dropping the relay cancels the downstream call
        }
        if relay.is_finished() {
            return;
        }
        next = tokio::select! {
            message = next_message(&mut relay, era, true) => Some(message),
            _ = cancelled.cancelled() => None,
        };
    }
}

/// The answer to a request the client cancelled.
pub fn cancelled_response(id: Value) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &jsonrpc::error(id, REQUEST_CANCELLED, "Request cancelled"),
    )
}
