//! Response bodies: whole (JSON, errors) or streamed (SSE), and the responses built from them.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

/// Every response body the server sends.
pub type Body = Either<Full<Bytes>, ChannelBody>;

/// A streamed body fed by a channel; it ends when every sender is dropped.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A JSON response, written in one piece.
pub fn json(status: StatusCode, message: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(message).expect("BUG: JSON always serializes"));
    let mut response = Response::new(Either::Left(Full::new(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `text/plain` 200 response (the Prometheus text format).
pub fn text(text: String) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(text))));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::default()));
    *response.status_mut() = status;
    response
}

/// An HTTP error carrying a JSON-RPC error object (id null: the request was not processed).
pub fn rpc_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &crate::mcp::jsonrpc::error(Value::Null, code, message),
    )
}

/// An SSE response and the sender that feeds it.
pub fn event_stream(capacity: usize) -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let mut response = Response::new(Either::Right(ChannelBody(receiver)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (sender, response)
}
