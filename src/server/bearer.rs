//! `[server.oauth]` at the front door: the protected-resource metadata (reachable without a
//! token), and the bearer check every MCP request passes before the endpoint sees it.

use http::header::{HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::Peer;
use super::body::{self, Body};
use crate::access::jwks::MIN_REFETCH;
use crate::access::{Bearer, Refusal, VerifiedToken};
use crate::mcp::jsonrpc::{INTERNAL_ERROR, INVALID_REQUEST};

/// Seconds a client is told to wait while the signing keys are being fetched.
const RETRY_AFTER_SECONDS: &str = "5";

/// The metadata document, when `request` asks for it.
pub fn metadata<B>(bearer: &Bearer, request: &Request<B>) -> Option<Response<Body>> {
    if request.method() != Method::GET || !bearer.is_metadata_path(request.uri().path()) {
        return None;
    }
    Some(body::json(
        StatusCode::OK,
        &bearer.metadata(host(request).as_deref()),
    ))
}

/// The verified access token of an MCP request, or the refusal to send.
pub async fn authenticate<B>(
    bearer: &Bearer,
    peer: &Peer,
    request: &Request<B>,
) -> Result<VerifiedToken, Response<Body>> {
    match bearer.authenticate(request.uri(), request.headers()).await {
        Ok(token) => Ok(token),
        Err(refusal) => {
            let host = host(request);
            Err(refused(bearer, &refusal, peer, host.as_deref()))
        }
    }
}

fn refused(bearer: &Bearer, refusal: &Refusal, peer: &Peer, host: Option<&str>) -> Response<Body> {
    match refusal {
        Refusal::Token(challenge) => {
            tracing::info!(peer = %peer.address, reason = %challenge.message(), "access token refused");
            let mut response =
                body::rpc_error(challenge.status(), INVALID_REQUEST, challenge.message());
            let url = bearer.metadata_url(host);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, challenge.header(Some(&url)));
            response
        }
        Refusal::TokenInQuery => {
            tracing::info!(peer = %peer.address, "access token in the query string refused");
            body::rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Bad request: an access token in the URL (access_token=) is refused, since URLs \
                 are logged; send it as Authorization: Bearer <token>",
            )
        }
        Refusal::Unavailable => unavailable(
            "Service unavailable: the gateway has not yet fetched the authorization server's \
             signing keys, so it cannot verify access tokens; try again shortly",
            RETRY_AFTER_SECONDS,
        ),
        Refusal::KeysBehind(wait) => {
            // Whole seconds, rounded up, so a client that waits as told finds the re-read allowed.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::info!(peer = %peer.address, seconds, "access token signed by a key newer than the fetched ones; the client is asked to retry");
            unavailable(
                &format!(
                    "Service unavailable: the token is signed with a key the gateway has not \
                     fetched yet (the authorization server's keys are re-read at most every \
                     {} s); try again in {seconds} s",
                    MIN_REFETCH.as_secs()
                ),
                &seconds.to_string(),
            )
        }
    }
}

fn unavailable(message: &str, retry_after: &str) -> Response<Body> {
    let mut response = body::rpc_error(StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR, message);
    if let Ok(value) = HeaderValue::from_str(retry_after) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// The host the request names (`:authority` or `Host`), as the Host guard accepted it.
fn host<B>(request: &Request<B>) -> Option<String> {
    host_of(request.uri(), request.headers())
}

/// The host a request was sent to: HTTP/2's `:authority`, else `Host`.
pub(super) fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    uri.authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            let host = headers.get(HOST)?.to_str().ok()?;
            Some(host.to_owned())
        })
}
