//! An initialized MCP session with one downstream, and the calls running on it.

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::dispatch::{CallEvent, Dispatcher};
use super::link::{Lifeline, Link};
use crate::mcp::jsonrpc::{self, DOWNSTREAM_TIMEOUT, DOWNSTREAM_UNAVAILABLE, RpcError};
use crate::mcp::version::LATEST_HANDSHAKE;

/// What the downstream said about itself in `initialize`.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The agreed protocol revision.
    pub protocol_version: String,
    /// The server's `capabilities`.
    pub capabilities: Value,
    /// The server's `serverInfo`.
    pub info: Value,
}

/// A live session with one downstream.
pub struct Connection {
    server: Arc<str>,
    link: Link,
    dispatcher: Arc<Dispatcher>,
    lifeline: Arc<Lifeline>,
    peer: Peer,
}

impl Connection {
    /// Runs the `initialize` handshake over a fresh link.
    pub async fn establish(
        server: Arc<str>,
        link: Link,
        dispatcher: Arc<Dispatcher>,
        lifeline: Arc<Lifeline>,
        timeout: Duration,
    ) -> Result<Arc<Self>, RpcError> {
        let mut connection = Self {
            server,
            link,
            dispatcher,
            lifeline,
            peer: Peer::default(),
        };
        let params = json!({
            "protocolVersion": LATEST_HANDSHAKE,
            // Sampling, elicitation and roots are not offered: the gateway cannot yet relay them.
            "capabilities": {},
            "clientInfo": {"name": "nexus", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = connection
            .request_inner("initialize", Some(params), timeout)
            .await?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LATEST_HANDSHAKE);
        connection.link.set_protocol_version(version);
        connection.peer = Peer {
            protocol_version: version.to_owned(),
            capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
        };
        connection.notify("notifications/initialized", None).await?;
        if let Link::Http(link) = &connection.link {
            link.open_notification_stream();
        }
        Ok(Arc::new(connection))
    }

    /// What the downstream said about itself.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The connection's end signal.
    pub fn lifeline(&self) -> &Arc<Lifeline> {
        &self.lifeline
    }

    /// Starts a call. A progress token in `params._meta` is swapped for the gateway's own (the
    /// original is returned, to be put back on the notifications relayed to the client).
    pub async fn start(
        self: &Arc<Self>,
        method: &str,
        mut params: Option<Value>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(Call, Option<Value>), RpcError> {
        let (id, events) = self.dispatcher.register();
        let client_token = params
            .as_mut()
            .and_then(|params| params.pointer_mut("/_meta/progressToken"))
            .map(|token| std::mem::replace(token, Value::from(id)));
        let message =
            jsonrpc::request(Value::from(id), method, params.unwrap_or_else(|| json!({})));
        let call = Call {
            id,
            events,
            connection: self.clone(),
            finished: false,
        };
        if let Err(error) = self.link.send(&message, Some(id), authorization).await {
            self.dispatcher.unregister(id);
            return Err(self.unavailable(error));
        }
        Ok((call, client_token))
    }

    /// A call whose notifications are not wanted: waits for its result.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let (mut call, _) = self.start(method, params, None).await?;
        let response = call.response(timeout).await?;
        into_result(response)
    }

    async fn request_inner(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let (id, mut events) = self.dispatcher.register();
        let message =
            jsonrpc::request(Value::from(id), method, params.unwrap_or_else(|| json!({})));
        if let Err(error) = self.link.send(&message, Some(id), None).await {
            self.dispatcher.unregister(id);
            return Err(self.unavailable(error));
        }
        let response = wait_response(&mut events, timeout).await;
        self.dispatcher.unregister(id);
        into_result(response.ok_or_else(|| self.timed_out(method, timeout))?)
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        let message = jsonrpc::notification(method, params);
        self.link
            .send(&message, None, None)
            .await
            .map_err(|error| self.unavailable(error))
    }

    /// Ends the session politely.
    pub async fn close(&self) {
        self.link.close().await;
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> RpcError {
        RpcError::new(
            DOWNSTREAM_UNAVAILABLE,
            format!("server '{}' is unavailable: {error}", self.server),
        )
    }

    fn timed_out(&self, method: &str, timeout: Duration) -> RpcError {
        RpcError::new(
            DOWNSTREAM_TIMEOUT,
            format!(
                "server '{}' did not answer `{method}` within {}",
                self.server,
                humantime::format_duration(timeout)
            ),
        )
    }
}

/// One request in flight on a downstream. Dropping it before its response cancels it there.
pub struct Call {
    id: u64,
    events: mpsc::UnboundedReceiver<CallEvent>,
    connection: Arc<Connection>,
    finished: bool,
}

impl Call {
    /// The next event, or `None` when the connection dropped the call.
    pub async fn next(&mut self) -> Option<CallEvent> {
        let event = self.events.recv().await;
        self.finished |= matches!(event, Some(CallEvent::Response(_)) | None);
        event
    }

    /// Waits for the response, skipping notifications.
    pub async fn response(&mut self, timeout: Duration) -> Result<Value, RpcError> {
        let response = wait_response(&mut self.events, timeout).await;
        self.finished = true;
        response.ok_or_else(|| self.connection.timed_out("request", timeout))
    }

    /// A timeout error for this call's server.
    pub fn timed_out(&self, method: &str, timeout: Duration) -> RpcError {
        self.connection.timed_out(method, timeout)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.finished || !self.connection.dispatcher.unregister(self.id) {
            return;
        }
        let connection = self.connection.clone();
        let params = json!({"requestId": self.id, "reason": "cancelled by the gateway's client"});
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = connection
                    .notify("notifications/cancelled", Some(params))
                    .await;
            });
        }
    }
}

async fn wait_response(
    events: &mut mpsc::UnboundedReceiver<CallEvent>,
    timeout: Duration,
) -> Option<Value> {
    let wait = async {
        while let Some(event) = events.recv().await {
            if let CallEvent::Response(response) = event {
                return Some(response);
            }
        }
        None
    };
    tokio::time::timeout(timeout, wait).await.ok().flatten()
}

fn into_result(response: Value) -> Result<Value, RpcError> {
    match RpcError::from_response(&response) {
        Some(error) => Err(error),
        None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
    }
}
