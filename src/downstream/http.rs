//! Streamable HTTP downstreams: one POST per message, answered by JSON or an SSE stream, and an
//! optional GET stream for server notifications.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::backoff::Backoff;
use super::dispatch::Dispatcher;
use super::link::{Lifeline, TransportError};
use crate::mcp::{era, sse};
use crate::tls::Connector;
use tokio_util::sync::CancellationToken;

/// The pooled hyper client of one downstream.
pub type HttpClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A Streamable HTTP session with one downstream.
#[derive(Clone)]
pub struct HttpLink(Arc<Inner>);

struct Inner {
    client: HttpClient,
    url: Uri,
    auth: Option<HeaderValue>,
    // Written once after initialize, read by every request: a std lock never held across await.
    session: RwLock<Option<HeaderValue>>,
    version: RwLock<Option<HeaderValue>>,
    dispatcher: Arc<Dispatcher>,
    lifeline: Arc<Lifeline>,
}

impl HttpLink {
    /// A link that has not yet sent `initialize`.
    pub fn new(
        client: HttpClient,
        url: Uri,
        auth: Option<HeaderValue>,
        dispatcher: Arc<Dispatcher>,
        lifeline: Arc<Lifeline>,
    ) -> Self {
        Self(Arc::new(Inner {
            client,
            url,
            auth,
            session: RwLock::default(),
            version: RwLock::default(),
            dispatcher,
            lifeline,
        }))
    }

    /// Sends `MCP-Protocol-Version` on every later request.
    pub fn set_protocol_version(&self, version: &str) {
        *write(&self.0.version) = HeaderValue::from_str(version).ok();
    }

    /// POSTs one message and routes whatever comes back through the dispatcher.
    pub async fn post(
        &self,
        message: &Value,
        call: Option<u64>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), TransportError> {
        self.post_with(message, call, authorization, &http::HeaderMap::new())
            .await
    }

    /// [`HttpLink::post`] with `extra` headers (a call's `Mcp-Param-*`).
    pub async fn post_with(
        &self,
        message: &Value,
        call: Option<u64>,
        authorization: Option<&HeaderValue>,
        extra: &http::HeaderMap,
    ) -> Result<(), TransportError> {
        let body = Bytes::from(serde_json::to_vec(message).expect("BUG: JSON always serializes"));
        let mut request = self.request(Method::POST, Full::new(body), authorization);
        add_routing_headers(request.headers_mut(), message);
        request.headers_mut().extend(extra.clone());
        let response = self
            .0
            .client
            .request(request)
            .await
            .map_err(connect_error)?;
        self.remember_session(&response);
        let status = response.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        if status == StatusCode::NOT_FOUND && read(&self.0.session).is_some() {
            self.0
                .lifeline
                .end("the server ended the session (HTTP 404)");
        }
        let sent = authorization.or(self.0.auth.as_ref());
        if !status.is_success() {
            return Err(status_error(response, sent).await);
        }
        if is_event_stream(&response) {
            let link = self.clone();
            tokio::spawn(async move { link.pump(response.into_body(), call).await });
            return Ok(());
        }
        let body = self.read_body(response.into_body()).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|error| TransportError::Invalid(format!("the body is not JSON: {error}")))?;
        self.0.dispatcher.dispatch_all(answer, call);
        Ok(())
    }

    /// A JSON answer, read only up to `max_message_size`.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, TransportError> {
        let intake = self.0.dispatcher.intake();
        let max = intake.limits().max_message_size;
        match Limited::new(body, max).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                intake.dropped(super::intake::Dropped::Oversized);
                Err(TransportError::Limit(super::oversized::describe(
                    intake.server(),
                    intake.limits(),
                )))
            }
            Err(error) => Err(TransportError::Connect(format!(
                "reading the answer failed: {error}"
            ))),
        }
    }

    /// Keeps a stateless `subscriptions/listen` request open (re-sent when the server ends
    /// its stream) until `stop` fires; its notifications go to the dispatcher. Closing the
    /// stream is how the stateless revision ends a subscription.
    pub fn listen(&self, request: Value, stop: CancellationToken) {
        let link = self.clone();
        tokio::spawn(keep_streaming(stop, move || {
            let (link, request) = (link.clone(), request.clone());
            async move {
                let body =
                    Bytes::from(serde_json::to_vec(&request).expect("BUG: JSON always serializes"));
                let mut post = link.request(Method::POST, Full::new(body), None);
                add_routing_headers(post.headers_mut(), &request);
                link.stream(link.0.client.request(post).await).await
            }
        }));
    }

    /// Opens the GET stream for server-initiated notifications and keeps it open while the
    /// session lives. A server without one (405) is fine.
    pub fn open_notification_stream(&self) {
        let link = self.clone();
        let token = self.0.lifeline.token();
        tokio::spawn(keep_streaming(token, move || {
            let link = link.clone();
            async move {
                let request = link.request(Method::GET, Full::default(), None);
                let response = link.0.client.request(request).await;
                if let Ok(response) = &response
                    && response.status() == StatusCode::NOT_FOUND
                {
                    link.0
                        .lifeline
                        .end("the server ended the session (HTTP 404)");
                }
                link.stream(response).await
            }
        }));
    }

    /// Delivers the events of a stream's response until it ends; says what to do next.
    async fn stream(
        &self,
        response: Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
    ) -> Attempt {
        let Ok(response) = response else {
            return Attempt::Failed; // down or restarting
        };
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Failed;
        }
        if !status.is_success() || !is_event_stream(&response) {
            return Attempt::Refused;
        }
        self.pump(response.into_body(), None).await;
        Attempt::Ended
    }

    /// Ends the session with DELETE (best effort, bounded).
    pub async fn close(&self) {
        if read(&self.0.session).is_some() {
            let request = self.request(Method::DELETE, Full::default(), None);
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.0.client.request(request)).await;
        }
        self.0.lifeline.end("closed by the gateway");
    }

    fn request(
        &self,
        method: Method,
        body: Full<Bytes>,
        authorization: Option<&HeaderValue>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = self.0.url.clone();
        let headers = request.headers_mut();
        if method == Method::GET {
            headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        } else {
            headers.insert(ACCEPT, ACCEPT_BOTH);
            headers.insert(CONTENT_TYPE, JSON);
        }
        if let Some(auth) = authorization.or(self.0.auth.as_ref()) {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        if let Some(session) = read(&self.0.session).clone() {
            headers.insert(SESSION_HEADER, session);
        }
        if let Some(version) = read(&self.0.version).clone() {
            headers.insert(VERSION_HEADER, version);
        }
        request
    }

    fn remember_session(&self, response: &http::Response<Incoming>) {
        if let Some(session) = response.headers().get(SESSION_HEADER) {
            let mut slot = write(&self.0.session);
            if slot.is_none() {
                *slot = Some(session.clone());
            }
        }
    }

    async fn pump(&self, body: Incoming, call: Option<u64>) {
        let token = self.0.lifeline.token();
        tokio::select! {
            _ = read_events(body, event_parser(&self.0.dispatcher), &self.0.dispatcher, call) => {}
            _ = token.cancelled() => {}
        }
    }
}

/// The stateless revision's routing headers, derived from the request's own envelope, method
/// and name (after the gateway renamed it, so `Mcp-Name` always matches the body).
fn add_routing_headers(headers: &mut http::HeaderMap, message: &Value) {
    let Some(version) =
        era::envelope_version(message).and_then(|version| HeaderValue::from_str(version).ok())
    else {
        return;
    };
    headers.insert(VERSION_HEADER, version);
    headers.remove(SESSION_HEADER);
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Ok(value) = HeaderValue::from_str(method) {
        headers.insert(era::METHOD_HEADER, value);
    }
    let name = era::name_parameter(method)
        .and_then(|parameter| message.get("params")?.get(parameter)?.as_str());
    if let Some(value) =
        name.and_then(|name| HeaderValue::from_str(&era::encode_header_value(name)).ok())
    {
        headers.insert(era::NAME_HEADER, value);
    }
}

/// Reads an SSE body to its end, handing each message to `dispatcher` (as carried by the stream
/// of `call`, if any). Events without data (priming events) are skipped, non-JSON data and
/// events over `max_message_size` are dropped and counted.
pub async fn read_events(
    mut body: Incoming,
    mut parser: sse::Parser,
    dispatcher: &Dispatcher,
    call: Option<u64>,
) {
    while let Some(Ok(frame)) = body.frame().await {
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        parser.feed_with(chunk, |item| deliver(item, dispatcher, call));
    }
}

/// The parser for one event stream of `dispatcher`'s downstream (its `max_message_size`).
pub fn event_parser(dispatcher: &Dispatcher) -> sse::Parser {
    sse::Parser::new(dispatcher.intake().limits().max_message_size)
}

/// Routes one item of an event stream: message events to the dispatcher, an oversized one to
/// the call it answered; events of other types are not MCP messages.
pub fn deliver(item: sse::Item, dispatcher: &Dispatcher, call: Option<u64>) {
    match item {
        sse::Item::Event(event) if event.event.is_empty() || event.event == "message" => {
            dispatcher.dispatch_bytes(event.data.as_bytes(), call);
        }
        sse::Item::Event(_) => {}
        sse::Item::Oversized(head) => dispatcher.oversized(&head, call),
    }
}

/// Whether a response is an SSE stream.
pub fn is_event_stream<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"))
}

/// How one attempt to hold a stream open went.
enum Attempt {
    /// The stream ran and the server closed it, as it may at will (SSE polling).
    Ended,
    /// The server was unreachable or failing: try again after a backoff.
    Failed,
    /// The server does not offer this stream (e.g. 405): stop asking.
    Refused,
}

/// Re-opens a stream with `attempt` until `stop` fires or the server refuses it: a second
/// after it ended, after a growing backoff while the server is down, so a downstream that
/// restarts slowly gets its streams back.
async fn keep_streaming<F, A>(stop: CancellationToken, mut attempt: F)
where
    F: FnMut() -> A,
    A: Future<Output = Attempt>,
{
    let mut backoff = Backoff::default();
    loop {
        let pause = tokio::select! {
            outcome = attempt() => match outcome {
                Attempt::Ended => {
                    backoff = Backoff::default();
                    Duration::from_secs(1)
                }
                Attempt::Failed => backoff.next_delay(),
                Attempt::Refused => return,
            },
            _ = stop.cancelled() => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Describes a failed request with its whole cause chain (hyper's top error says only
/// "client error (Connect)").
/// A TLS failure is shown as the TLS layer classified it (message and fix), nothing around it.
pub fn connect_error(error: hyper_util::client::legacy::Error) -> TransportError {
    TransportError::Connect(describe_request_error(&error))
}

/// The text of [`connect_error`]: the TLS layer's classification, else the cause chain.
pub fn describe_request_error(error: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = crate::tls::errors::find(error) {
        return tls.to_string();
    }
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// An unexpected status with a sanitized excerpt of its body, which never holds `sent`, the
/// `Authorization` the request carried (see `downstream::excerpt`).
pub async fn status_error(
    response: http::Response<Incoming>,
    sent: Option<&HeaderValue>,
) -> TransportError {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut start = Vec::new();
    let read = async {
        while start.len() < super::excerpt::READ_LIMIT
            && let Some(Ok(frame)) = body.frame().await
        {
            if let Some(chunk) = frame.data_ref() {
                let room = super::excerpt::READ_LIMIT - start.len();
                start.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    let body = super::excerpt::excerpt(&start, sent);
    TransportError::Status { status, body }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
