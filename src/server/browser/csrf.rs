//! `[server.csrf]`: a state-changing request must carry a header of the operator's choosing
//! (any value). A page can make a browser send a cross-site form POST without asking, but not
//! one with a custom header: that needs a CORS preflight, which only allowed origins pass.
//!
//! Nexus also requires the header on `GET`; here safe methods (`GET`, `HEAD`) and preflights
//! are exempt: they change nothing, and the RFC 9728 metadata and `/health` must stay readable
//! by clients that know nothing of the header (an OAuth client's discovery, a health probe).

use http::{HeaderName, Method, Request, Response, StatusCode};

use crate::mcp::jsonrpc::INVALID_REQUEST;
use crate::server::body::{self, Body};

/// The 403 for `request` when `header` is required and missing; `None` when it may pass.
pub(super) fn refusal<B>(
    header: Option<&HeaderName>,
    request: &Request<B>,
) -> Option<Response<Body>> {
    let header = header?;
    let exempt = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if exempt || request.headers().contains_key(header) {
        return None;
    }
    let method = request.method();
    tracing::warn!(%method, path = request.uri().path(), "request refused: no CSRF header");
    Some(body::rpc_error(
        StatusCode::FORBIDDEN,
        INVALID_REQUEST,
        format!(
            "Forbidden: a {method} request must carry the `{header}` header ([server.csrf]); send it with any value"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, header: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/mcp");
        if let Some(name) = header {
            builder = builder.header(name, "1");
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_state_changing_requests_need_the_header() {
        let header = HeaderName::from_static("x-nexus-csrf-protection");
        let required = Some(&header);
        for method in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            let refused = refusal(required, &request(method.clone(), None)).unwrap();
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{method}");
            assert!(refusal(required, &request(method, Some("X-Nexus-CSRF-Protection"))).is_none());
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(refusal(required, &request(method, None)).is_none());
        }
        assert!(refusal(None, &request(Method::POST, None)).is_none());
        assert!(refusal(required, &request(Method::POST, Some("x-other"))).is_some());
    }
}
