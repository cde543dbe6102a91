//! The 2024-11-05 HTTP+SSE transport beside Streamable HTTP: `GET /sse` opens the one stream
//! that carries every server message, `POST /messages` sends a client message (answered 202;
//! its response comes on the stream). The stream announces `/messages` in an `endpoint` event
//! unless the server was started with `--sse-silent`, like servers that expect their clients
//! to be told the POST URL by configuration. One session at a time: a new GET replaces it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::handlers::{Fixture, Outbox, Session, is_request};
use crate::http::{Body, sse_event, sse_response, status};

/// The HTTP+SSE side of the fixture.
pub struct LegacySse {
    announce: bool,
    // The open stream's session and its sender. A std Mutex: swapped or cloned, never held
    // across an `.await`.
    current: Mutex<Option<(Arc<Session>, Outbox)>>,
}

impl LegacySse {
    /// `announce`: whether the stream starts with the `endpoint` event.
    pub fn new(announce: bool) -> Self {
        Self {
            announce,
            current: Mutex::default(),
        }
    }

    /// `GET /sse`: a new session and its stream.
    pub fn open(&self) -> Response {
        let (outbox, messages) = mpsc::unbounded_channel();
        *self.lock() = Some((Arc::default(), outbox));
        let endpoint = Bytes::from_static(b"event: endpoint\ndata: /messages\n\n");
        let opened = match self.announce {
            true => endpoint,
            false => Bytes::from_static(b": stream open\n\n"),
        };
        let rest = stream::unfold(messages, |mut messages| async move {
            messages
                .recv()
                .await
                .map(|m: Value| (sse_event(&m), messages))
        });
        sse_response(stream::once(async { opened }).chain(rest))
    }

    /// `POST /messages`: one client message for the open session.
    pub async fn post(&self, fixture: &Arc<Fixture>, body: Incoming) -> Response {
        use http_body_util::BodyExt;
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let Some((session, outbox)) = self.lock().clone() else {
            return status(StatusCode::NOT_FOUND);
        };
        if is_request(&message) {
            session.spawn_request(fixture, message, outbox);
        } else {
            session.on_notification(&message);
        }
        status(StatusCode::ACCEPTED)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<Session>, Outbox)>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Response = http::Response<Body>;
