//! MCP over Streamable HTTP at `/mcp`.
//!
//! `POST` carries one JSON-RPC message. A request whose task sends nothing before its response is
//! answered `application/json` in one write; one that sends notifications first (progress, logs)
//! is answered `text/event-stream`. `GET` opens a stream of server notifications (`list_changed`),
//! `DELETE` ends the session. Accepted sockets get `TCP_NODELAY`, so no reply waits for Nagle.
//! The legacy HTTP+SSE transport is served beside it at `/sse` and `/messages` (`legacy_sse`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::handlers::{Fixture, Session, is_request};
use crate::legacy_sse::LegacySse;

/// A response body of either transport.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

const SESSION_HEADER: &str = "mcp-session-id";

/// Binds `addr`, prints `LISTENING ADDR` on stdout, then serves until the process ends;
/// `legacy` serves HTTP+SSE beside Streamable HTTP.
pub async fn serve(fixture: Arc<Fixture>, addr: SocketAddr, legacy: LegacySse) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "LISTENING {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    let server = Arc::new(Server {
        fixture,
        sessions: RwLock::default(),
        minted: AtomicU64::new(0),
        legacy,
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("fixture_server: accept failed: {e}");
                continue;
            }
        };
        stream.set_nodelay(true)?;
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(server.route(request).await) }
            });
            // A client hanging up mid-request is normal for a test fixture; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The HTTP front of one fixture: its sessions by `Mcp-Session-Id`.
struct Server {
    fixture: Arc<Fixture>,
    // A std lock: lookups and inserts only, never held across an `.await`.
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    minted: AtomicU64,
    legacy: LegacySse,
}

impl Server {
    async fn route(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/sse") => return self.legacy.open(),
            (&Method::POST, "/messages") => {
                return self.legacy.post(&self.fixture, request.into_body()).await;
            }
            (_, "/mcp") => {}
            _ => return status(StatusCode::NOT_FOUND),
        }
        match *request.method() {
            Method::POST => self.post(request).await,
            Method::GET => self.get(request.headers()),
            Method::DELETE => self.delete(request.headers()),
            _ => status(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    async fn post(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    &format!("parse error: {e}"),
                );
            }
        };
        if message["method"] == "initialize" {
            return self.initialize(&message).await;
        }
        let session = match self.session(&parts.headers) {
            Ok(session) => session,
            Err(e) => return e.into_response(),
        };
        if !is_request(&message) {
            session.on_notification(&message);
            return status(StatusCode::ACCEPTED);
        }
        let (outbox, messages) = mpsc::unbounded_channel();
        session.spawn_request(&self.fixture, message, outbox);
        answer(accepts(&parts.headers), messages).await
    }

    async fn initialize(&self, message: &Value) -> Response<Body> {
        let id = format!(
            "fx-{}-{}",
            std::process::id(),
            self.minted.fetch_add(1, Ordering::Relaxed)
        );
        let (outbox, _) = mpsc::unbounded_channel();
        let mut response = json_response(&self.fixture.handle(message, &outbox).await);
        self.sessions
            .write()
            .expect("BUG: sessions lock poisoned")
            .insert(id.clone(), Arc::default());
        let id = HeaderValue::from_str(&id).expect("BUG: session ids are ASCII");
        response.headers_mut().insert(SESSION_HEADER, id);
        response
    }

    /// The session named by the request.
    fn session(&self, headers: &HeaderMap) -> Result<Arc<Session>, NoSession> {
        let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return Err(NoSession::Missing);
        };
        let sessions = self.sessions.read().expect("BUG: sessions lock poisoned");
        sessions.get(id).cloned().ok_or(NoSession::Unknown)
    }

    fn get(&self, headers: &HeaderMap) -> Response<Body> {
        if let Err(e) = self.session(headers) {
            return e.into_response();
        }
        if !accepts(headers).sse {
            return status(StatusCode::NOT_ACCEPTABLE);
        }
        // Subscribe before answering: once the client sees the headers, no change is missed.
        let changes = stream::unfold(self.fixture.subscribe(), |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(note) => return Some((note, changes)),
                    // A missed repeat of list_changed is harmless: clients re-list anyway.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        // A comment first, so the client's read of the head is not left waiting for an event.
        let opened = stream::once(async { Bytes::from_static(b": stream open\n\n") });
        sse_response(opened.chain(changes.map(|note| sse_event(&note))))
    }

    fn delete(&self, headers: &HeaderMap) -> Response<Body> {
        let id = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match self
            .sessions
            .write()
            .expect("BUG: sessions lock poisoned")
            .remove(id)
        {
            Some(_) => status(StatusCode::OK),
            None => status(StatusCode::NOT_FOUND),
        }
    }
}

/// Why a request names no live session.
enum NoSession {
    Missing,
    Unknown,
}

impl NoSession {
    fn into_response(self) -> Response<Body> {
        match self {
            Self::Missing => rpc_error(StatusCode::BAD_REQUEST, -32600, "missing Mcp-Session-Id"),
            // 404 tells the client to initialize again, as the spec says for an ended session.
            Self::Unknown => status(StatusCode::NOT_FOUND),
        }
    }
}

/// Which answer formats the client's `Accept` allows (no header: anything).
struct Accepts {
    json: bool,
    sse: bool,
}

fn accepts(headers: &HeaderMap) -> Accepts {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let any = accept.contains("*/*");
    Accepts {
        json: any || accept.contains("application/json"),
        sse: any || accept.contains("text/event-stream"),
    }
}

/// Answers a request from what its task sends: JSON when the response comes first, else SSE.
async fn answer(accepts: Accepts, mut messages: mpsc::UnboundedReceiver<Value>) -> Response<Body> {
    let first = messages.recv().await;
    let first_is_response = first.as_ref().is_some_and(|m| m.get("method").is_none());
    if accepts.json && (first_is_response || !accepts.sse) {
        // A JSON-only client cannot receive notifications: skip them, keep the response.
        let mut message = first;
        while message.as_ref().is_some_and(|m| m.get("method").is_some()) {
            message = messages.recv().await;
        }
        return match message {
            Some(response) => json_response(&response),
            // Cancelled before answering: nothing will come.
            None => status(StatusCode::ACCEPTED),
        };
    }
    let rest = stream::unfold(messages, |mut messages| async move {
        messages.recv().await.map(|m| (m, messages))
    });
    sse_response(stream::iter(first).chain(rest).map(|m| sse_event(&m)))
}

/// One SSE `message` event.
pub fn sse_event(message: &Value) -> Bytes {
    let mut event = b"event: message\ndata: ".to_vec();
    serde_json::to_writer(&mut event, message).expect("BUG: a JSON value always serializes");
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// An SSE response of `events`.
pub fn sse_response(events: impl Stream<Item = Bytes> + Send + 'static) -> Response<Body> {
    let body = StreamBody::new(events.map(|event| Ok::<_, Infallible>(Frame::data(event))));
    let mut response = Response::new(BodyExt::boxed_unsync(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn json_response(message: &Value) -> Response<Body> {
    let body = serde_json::to_vec(message).expect("BUG: a JSON value always serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn rpc_error(code: StatusCode, rpc_code: i64, message: &str) -> Response<Body> {
    let error =
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": rpc_code, "message": message}});
    let mut response = json_response(&error);
    *response.status_mut() = code;
    response
}

/// An empty response with `code`.
pub fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = code;
    response
}
