//! Browser clients: the CORS grant (`[server.cors]`) and the CSRF header check
//! (`[server.csrf]`), applied to every route the app serves, whatever its path.
//!
//! Order for each request: the Host/Origin guard first (a disallowed `Origin` is refused before
//! anything else), then a CORS preflight is answered, then a state-changing request without the
//! CSRF header is refused, then the route runs. Whatever answers (a route, an error, an SSE
//! stream, a refusal) gets the CORS response headers, so a page can read why it was refused.
//!
//! How the guard and CORS agree: an origin that `[server.cors] allow_origins` grants is also
//! accepted by the guard (`[server] allowed_origins` need not repeat it); the guard's own list
//! and defaults (loopback origins on a loopback listener, same-host origins otherwise) still
//! admit requests, but without a CORS grant a browser does not let the page read the answer.
//!
//! Not tower-http's `CorsLayer`: the server runs hyper's `service_fn` without tower, and the
//! layer would still need our own code for everything MCP needs from it: the MCP request
//! headers always allowed and `Mcp-Session-Id` always exposed, `"*"` answered by mirroring the
//! request (so `Authorization`, which Fetch never covers by `*`, works), the origin list
//! shared with the guard, and reloading on SIGHUP. What is left of CORS itself is a few header
//! writes, smaller than the adapter (its preflight needs a `Default` body) would be.

mod cors;
mod csrf;

use std::convert::Infallible;
use std::sync::Arc;

use http::header::ORIGIN;
use http::{HeaderName, Request, Response};
use hyper::body::Incoming;

use super::App;
use super::body::Body;
use crate::config;
use cors::Cors;
pub(super) use cors::allows;

/// `[server.cors]` and `[server.csrf]` as the server applies them.
pub(super) struct Browser {
    cors: Option<Cors>,
    csrf: Option<HeaderName>,
}

impl Browser {
    /// The policy for `[server]`.
    pub(super) fn new(server: &config::Server) -> Self {
        Self {
            cors: server
                .cors
                .as_ref()
                .map(|cors| Cors::new(cors, server.csrf.as_ref())),
            csrf: server.csrf.clone(),
        }
    }

    /// The answer given before any route: to a CORS preflight, or the refusal of a request
    /// that lacks the CSRF header. Runs after the Host/Origin guard.
    pub(super) fn intercept<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        if let Some(cors) = &self.cors
            && cors::is_preflight(request)
        {
            return Some(cors.preflight(request.headers()));
        }
        csrf::refusal(self.csrf.as_ref(), request)
    }
}

/// Serves `request` on `app`, the CORS headers added to whatever answers it.
pub(super) async fn serve(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let browser = app.browser.load_full();
    let Some(cors) = &browser.cors else {
        return app.route(request, &browser).await;
    };
    let origin = request.headers().get(ORIGIN).cloned();
    let preflight = cors::is_preflight(&request);
    let mut response = app.route(request, &browser).await?;
    cors.decorate(origin.as_ref(), preflight, &mut response);
    Ok(response)
}
