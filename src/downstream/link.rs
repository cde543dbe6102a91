//! The transports a downstream connection runs over, behind one enum.

use std::sync::{Arc, Mutex};

use ::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{http, sse, stdio};

/// Why a message could not be delivered to a downstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The connection is gone (child exited, stream closed).
    #[error("connection closed: {0}")]
    Closed(String),
    /// The HTTP request failed before any answer (refused, reset, TLS failure).
    #[error("{0}")]
    Connect(String),
    /// The server answered with an unexpected HTTP status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the message.
        body: String,
    },
    /// The server answered with something that is not JSON-RPC.
    #[error("invalid answer: {0}")]
    Invalid(String),
    /// A limit of `[mcp.limits]` was reached (the message says which and how to raise it).
    #[error("{0}")]
    Limit(String),
}

/// A connection's transport.
pub enum Link {
    /// A child process.
    Stdio(stdio::StdioLink),
    /// Streamable HTTP.
    Http(http::HttpLink),
    /// The 2024-11-05 HTTP+SSE transport.
    Sse(sse::SseLink),
}

impl Link {
    /// Sends one message. `call` is the gateway id of the call it starts, if any, so that a
    /// response stream can be tied to it; `authorization` overrides the configured header.
    pub async fn send(
        &self,
        message: &Value,
        call: Option<u64>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), TransportError> {
        self.send_with(message, call, authorization, &HeaderMap::new())
            .await
    }

    /// [`Link::send`] with more HTTP headers for a Streamable HTTP request (a call's
    /// `Mcp-Param-*`); other transports have no headers per message.
    pub async fn send_with(
        &self,
        message: &Value,
        call: Option<u64>,
        authorization: Option<&HeaderValue>,
        extra: &HeaderMap,
    ) -> Result<(), TransportError> {
        match self {
            Link::Stdio(link) => link.send(call, encode_line(message)),
            Link::Http(link) => link.post_with(message, call, authorization, extra).await,
            Link::Sse(link) => link.post(message, authorization).await,
        }
    }

    /// Takes back the request of `call` if it was not sent yet (a stdio child that is behind
    /// on reading); returns whether it was, so that no cancellation follows it.
    pub fn withdraw(&self, call: u64) -> bool {
        match self {
            Link::Stdio(link) => link.withdraw(call),
            Link::Http(_) | Link::Sse(_) => false,
        }
    }

    /// Ends the connection politely (DELETE the session, close the child's stdin).
    pub async fn close(&self) {
        match self {
            Link::Stdio(link) => link.close().await,
            Link::Http(link) => link.close().await,
            Link::Sse(link) => link.close(),
        }
    }

    /// Opens a stateless downstream's `subscriptions/listen` stream, kept until `stop` fires.
    pub fn listen(&self, request: Value, stop: CancellationToken) {
        match self {
            Link::Stdio(link) => {
                // Over stdio the stream's notifications simply arrive on stdout; it ends with
                // a cancellation of the listen request.
                let _ = link.send(None, encode_line(&request));
                let cancelled = crate::mcp::jsonrpc::notification(
                    "notifications/cancelled",
                    Some(serde_json::json!({"requestId": request["id"]})),
                );
                let queue = link.queue();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    let _ = queue.push(None, encode_line(&cancelled));
                });
            }
            Link::Http(link) => link.listen(request, stop),
            // HTTP+SSE predates the stateless revision: never reached.
            Link::Sse(_) => {}
        }
    }

    /// Called once the protocol revision is agreed, for transports that send it in headers.
    pub fn set_protocol_version(&self, version: &str) {
        if let Link::Http(link) = self {
            link.set_protocol_version(version);
        }
    }
}

fn encode_line(message: &Value) -> Bytes {
    let mut line = serde_json::to_vec(message).expect("BUG: a JSON value always serializes");
    line.push(b'\n');
    Bytes::from(line)
}

/// The end of a connection: signalled once by whichever part notices first, with the reason.
#[derive(Default)]
pub struct Lifeline {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Lifeline {
    /// A new, live lifeline.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Marks the connection as ended; the first reason given wins.
    pub fn end(&self, reason: impl Into<String>) {
        let mut slot = self
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        self.token.cancel();
    }

    /// Whether the connection has ended.
    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits for the end and returns its reason.
    pub async fn ended(&self) -> String {
        self.token.cancelled().await;
        self.reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// A token cancelled at the end, for tasks that select on it.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}
