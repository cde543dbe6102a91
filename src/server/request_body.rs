//! Receiving a request body within its bounds: its own size (`max_request_body`), its time
//! (`body_read_timeout`), and the bytes of every body being received at once, all
//! connections together (`max_request_bodies_total`), so that many slow uploads cannot add up
//! to more memory than configured.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::{self, Body};
use crate::config::ServerLimits;
use crate::mcp::jsonrpc::{INVALID_REQUEST, SERVER_BUSY};

/// Most bytes reserved up front from a declared `Content-Length` (the rest as it arrives).
const PREALLOCATE: usize = 64 * 1024;

/// The bytes of request bodies being received, at most `max_request_bodies_total`.
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    /// A budget of `limits.max_request_bodies_total` bytes.
    pub fn new(limits: &ServerLimits) -> Self {
        let total = limits.max_request_bodies_total.min(Semaphore::MAX_PERMITS);
        Self(Arc::new(Semaphore::new(total)))
    }
}

/// A whole body and its share of the budget, given back when this drops.
pub struct Received {
    /// The body.
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

/// Reads the body of `request`; on any bound, the answer to send (the connection then closes,
/// dropping what was received).
pub async fn read(
    limits: &ServerLimits,
    budget: &BodyBudget,
    request: &http::request::Parts,
    mut incoming: Incoming,
) -> Result<Received, Box<Response<Body>>> {
    let refuse = |status, code, message: String| {
        Box::new(closing(
            request.version,
            body::rpc_error(status, code, message),
        ))
    };
    let max = limits.max_request_body;
    let too_large = || {
        let message = format!(
            "request body larger than {max} bytes, the gateway's [server.limits] max_request_body"
        );
        refuse(StatusCode::PAYLOAD_TOO_LARGE, INVALID_REQUEST, message)
    };
    let declared = request
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(PREALLOCATE));
    let mut share: Option<OwnedSemaphorePermit> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, incoming.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => {
                let message = format!("request body unreadable: {error}");
                return Err(refuse(StatusCode::BAD_REQUEST, INVALID_REQUEST, message));
            }
            Err(_) => {
                let seconds = limits.body_read_timeout.as_secs_f64();
                let message = format!(
                    "request body not received within {seconds} s, the gateway's [server.limits] body_read_timeout"
                );
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    INVALID_REQUEST,
                    message,
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > max {
            return Err(too_large());
        }
        let Some(more) = u32::try_from(data.len())
            .ok()
            .and_then(|len| budget.0.clone().try_acquire_many_owned(len).ok())
        else {
            let total = limits.max_request_bodies_total;
            let message = format!(
                "the gateway is receiving {total} bytes of request bodies at once, its [server.limits] max_request_bodies_total; retry later"
            );
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER_BUSY,
                message,
            ));
        };
        match &mut share {
            Some(share) => share.merge(more),
            None => share = Some(more),
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Received {
        bytes: Bytes::from(bytes),
        _share: share,
    })
}

/// `response` with `Connection: close` on HTTP/1: the rest of an unread body must not be
/// taken for the next request. (HTTP/2 has no such header; the stream is reset instead.)
fn closing(version: http::Version, mut response: Response<Body>) -> Response<Body> {
    if version < http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
