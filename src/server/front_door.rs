//! `[server.rate_limits]` at the MCP endpoint: every request (POST, GET, DELETE) is counted
//! once, after its caller is known and before its body is read, so a refused flood costs no
//! parsing. A refusal is 429 with `Retry-After` and a JSON-RPC error naming the limit, and is
//! recorded in the audit trail.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::App;
use super::body::{self, Body};
use crate::access::Caller;
use crate::mcp::jsonrpc::{self, RATE_LIMITED};

/// `None` when the request may go on; else the 429 to answer with.
pub fn admit(app: &App, caller: &Caller) -> Option<Response<Body>> {
    let refusal = app.front_door.as_ref()?.admit(caller).err()?;
    tracing::debug!(limit = %refusal.limit, address = %caller.address, "request rate-limited");
    if let Some(audit) = &app.audit {
        audit.refused(caller, &refusal);
    }
    let mut error = jsonrpc::RpcError::new(RATE_LIMITED, refusal.message());
    error.data = Some(json!({
        "limit": refusal.limit,
        "retryAfterSeconds": refusal.retry_after(),
    }));
    let mut response = body::json(
        StatusCode::TOO_MANY_REQUESTS,
        &error.to_response(serde_json::Value::Null),
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(refusal.retry_after()),
    );
    Some(response)
}

/// Forgets addresses and identities whose quota is whole again, until `shutdown`.
pub async fn retain(app: Arc<App>, shutdown: CancellationToken) {
    let Some(front_door) = &app.front_door else {
        return;
    };
    let mut tick = tokio::time::interval(front_door.retain_every());
    while tokio::select! { _ = tick.tick() => true, _ = shutdown.cancelled() => false } {
        front_door.retain();
    }
}
