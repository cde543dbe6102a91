//! An initialized MCP session with one downstream, and the calls running on it.

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::dispatch::{CallEvent, Dispatcher};
use super::link::{Lifeline, Link, TransportError};
use crate::mcp::era;
use crate::mcp::jsonrpc::{
    self, DOWNSTREAM_TIMEOUT, DOWNSTREAM_UNAVAILABLE, INTERNAL_ERROR, RpcError,
};
use crate::mcp::version::LATEST_HANDSHAKE;

/// How long a downstream may take to answer the `server/discover` probe before it is taken
/// for a handshake-era server (some ignore requests before `initialize`).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The client capabilities the gateway declares in stateless requests of its own: none, since
/// no client stands behind them to answer `input_required` results; a client's call carries
/// that client's capabilities instead ([`CallOptions::client_capabilities`]).
fn client_capabilities() -> Value {
    json!({})
}

/// The client capabilities the gateway advertises to handshake-era downstreams: those it
/// relays to the client of the call that asked (form elicitation, sampling, roots). Roots are
/// per client but the downstream's session is shared, so `roots/list` is answered by the
/// client of the call in flight, and no `listChanged` is promised.
fn relayed_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}}, "roots": {}})
}

/// The `_meta` envelope of every stateless request the gateway sends.
fn envelope() -> Value {
    json!({
        era::PROTOCOL_VERSION_KEY: era::STATELESS_REVISIONS[0],
        era::CLIENT_CAPABILITIES_KEY: client_capabilities(),
        "io.modelcontextprotocol/clientInfo": {"name": "nexus", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The request that opens a stateless downstream's notification stream. Its id is a string,
/// so the dispatcher (which matches numeric ids) never takes the stream's end for a call.
fn listen_request() -> Value {
    let notifications =
        json!({"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true});
    listen_for(Value::from("nexus-listen"), notifications)
}

/// A `subscriptions/listen` request with `id` (a string, see [`listen_request`]).
fn listen_for(id: Value, notifications: Value) -> Value {
    jsonrpc::request(
        id,
        "subscriptions/listen",
        json!({"notifications": notifications, "_meta": envelope()}),
    )
}

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
    link: Arc<Link>,
    dispatcher: Arc<Dispatcher>,
    lifeline: Arc<Lifeline>,
    peer: Peer,
    /// Speaks the stateless revision: every request carries the `_meta` envelope.
    stateless: bool,
}

impl Connection {
    /// Opens a session over a fresh link, in the era `forced` names (a configured
    /// `protocol_version`) or else in the one that keeps every capability of a server that
    /// serves both: the `initialize` handshake first, since only there can a tool written the
    /// usual way ask the client (sampling, elicitation, roots) in the middle of a call; the
    /// stateless revision (`server/discover`) when the server refuses the handshake. A
    /// server's choice is final for a stdio connection: the official SDK serves whichever era
    /// the connection's first request belongs to, and announces only 2026-07-28 in
    /// `server/discover` even though it speaks both.
    pub async fn establish(
        server: Arc<str>,
        link: Arc<Link>,
        dispatcher: Arc<Dispatcher>,
        lifeline: Arc<Lifeline>,
        timeout: Duration,
        forced: Option<&'static str>,
    ) -> Result<Arc<Self>, RpcError> {
        let mut connection = Self {
            server,
            link,
            dispatcher,
            lifeline,
            peer: Peer::default(),
            stateless: false,
        };
        let discover_timeout = timeout.min(DISCOVER_TIMEOUT);
        match forced {
            Some(revision) if era::STATELESS_REVISIONS.contains(&revision) => {
                match connection.discover(discover_timeout).await {
                    Some(peer) => connection.go_stateless(peer),
                    None => return Err(connection.not_stateless(revision)),
                }
            }
            Some(revision) => connection.initialize(revision, timeout).await?,
            None => match connection.initialize(LATEST_HANDSHAKE, timeout).await {
                Ok(()) => {}
                Err(refused) => match connection.discover(discover_timeout).await {
                    Some(peer) => connection.go_stateless(peer),
                    None => return Err(refused),
                },
            },
        }
        Ok(Arc::new(connection))
    }

    /// Speaks the stateless revision from now on, and opens the stream of its list changes.
    fn go_stateless(&mut self, peer: Peer) {
        self.stateless = true;
        self.peer = peer;
        self.link.set_protocol_version(era::STATELESS_REVISIONS[0]);
        let stop = self.lifeline.token();
        self.link.listen(listen_request(), stop);
    }

    fn not_stateless(&self, revision: &str) -> RpcError {
        RpcError::new(
            DOWNSTREAM_UNAVAILABLE,
            format!(
                "server '{}' is configured with `protocol_version = \"{revision}\"` but did not \
                 answer `server/discover` listing that revision; remove the key to let the gateway \
                 choose, or set a handshake revision such as \"{LATEST_HANDSHAKE}\"",
                self.server
            ),
        )
    }

    /// Probes for the stateless revision: a server that answers `server/discover` listing
    /// it is spoken to statelessly; any other answer (an error, a 4xx, silence) means the
    /// handshake era.
    async fn discover(&self, timeout: Duration) -> Option<Peer> {
        let result = self
            .request_inner(
                "server/discover",
                Some(json!({"_meta": envelope()})),
                timeout,
            )
            .await
            .ok()?;
        let versions = result.get("supportedVersions")?.as_array()?;
        if !versions
            .iter()
            .any(|version| version.as_str() == Some(era::STATELESS_REVISIONS[0]))
        {
            return None;
        }
        let info = result
            .pointer(&format!(
                "/_meta/{}",
                era::SERVER_INFO_KEY.replace('/', "~1")
            ))
            .cloned();
        Some(Peer {
            protocol_version: era::STATELESS_REVISIONS[0].to_owned(),
            capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            info: info.unwrap_or(Value::Null),
        })
    }

    async fn initialize(&mut self, revision: &str, timeout: Duration) -> Result<(), RpcError> {
        let params = json!({
            "protocolVersion": revision,
            "capabilities": relayed_capabilities(),
            "clientInfo": {"name": "nexus", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self
            .request_inner("initialize", Some(params), timeout)
            .await?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(revision);
        self.link.set_protocol_version(version);
        self.peer = Peer {
            protocol_version: version.to_owned(),
            capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
        };
        self.notify("notifications/initialized", None).await?;
        if let Link::Http(link) = self.link.as_ref() {
            link.open_notification_stream();
        }
        Ok(())
    }

    /// What the downstream said about itself.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Whether it speaks the stateless revision.
    pub fn is_stateless(&self) -> bool {
        self.stateless
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
        options: &CallOptions,
    ) -> Result<(Call, Option<Value>), RpcError> {
        if self.stateless {
            add_envelope(params.get_or_insert_with(|| json!({})), options);
        }
        let (id, events) = self.dispatcher.register(options.for_client);
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
        // `Mcp-Param-*` headers belong to the stateless revision's HTTP requests only.
        let no_headers = ::http::HeaderMap::new();
        let extra = match self.stateless {
            true => &options.param_headers,
            false => &no_headers,
        };
        let authorization = options.authorization.as_ref();
        if let Err(error) = self
            .link
            .send_with(&message, Some(id), authorization, extra)
            .await
        {
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
        let (mut call, _) = self.start(method, params, &CallOptions::default()).await?;
        let response = call.response(timeout).await?;
        into_result(response)
    }

    async fn request_inner(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let (id, mut events) = self.dispatcher.register(false);
        let message =
            jsonrpc::request(Value::from(id), method, params.unwrap_or_else(|| json!({})));
        if let Err(error) = self.link.send(&message, Some(id), None).await {
            self.dispatcher.unregister(id);
            return Err(self.unavailable(error));
        }
        let response = wait_response(&mut events, timeout).await;
        if self.dispatcher.unregister(id) {
            self.link.withdraw(id);
        }
        into_result(response.ok_or_else(|| self.timed_out(method, timeout))?)
    }

    /// Starts watching a resource: `resources/subscribe` in the handshake era, a
    /// `subscriptions/listen` stream of its own in the stateless one (which has no subscribe
    /// method). The updates arrive as server notifications.
    pub async fn watch(&self, uri: &str, timeout: Duration) -> Result<Watch, RpcError> {
        if !self.stateless {
            let params = json!({"uri": uri});
            self.request_inner("resources/subscribe", Some(params), timeout)
                .await?;
            return Ok(Watch::Subscribed(uri.to_owned()));
        }
        let stop = self.lifeline.token().child_token();
        let id = format!("nexus-watch-{:016x}", rand::random::<u64>());
        let filter = json!({"resourceSubscriptions": [uri]});
        self.link
            .listen(listen_for(Value::from(id), filter), stop.clone());
        Ok(Watch::Listening(stop.drop_guard()))
    }

    /// Ends a [`Watch`]: `resources/unsubscribe`, or closing its listen stream.
    pub async fn unwatch(&self, watch: Watch, timeout: Duration) -> Result<(), RpcError> {
        match watch {
            Watch::Subscribed(uri) => self
                .request_inner("resources/unsubscribe", Some(json!({"uri": uri})), timeout)
                .await
                .map(drop),
            Watch::Listening(guard) => {
                drop(guard);
                Ok(())
            }
        }
    }

    /// Sends a notification (none exist from client to server in the stateless revision,
    /// where cancelling is closing the stream: those are dropped).
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        if self.stateless {
            return Ok(());
        }
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

    /// The error of a call whose message could not be delivered (or whose answer was refused).
    fn unavailable(&self, error: TransportError) -> RpcError {
        match error {
            // The link is fine; this message was over a limit, which the text names.
            TransportError::Limit(reason) => {
                RpcError::new(INTERNAL_ERROR, format!("server '{}' {reason}", self.server))
            }
            error => RpcError::new(
                DOWNSTREAM_UNAVAILABLE,
                format!("server '{}' is unavailable: {error}", self.server),
            ),
        }
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

/// A downstream subscription to one resource (see [`Connection::watch`]).
pub enum Watch {
    /// Subscribed with `resources/subscribe` (handshake era).
    Subscribed(String),
    /// A `subscriptions/listen` stream, closed when the guard drops (stateless era).
    Listening(tokio_util::sync::DropGuard),
}

/// Per-call choices made by the front end.
#[derive(Debug, Default, Clone)]
pub struct CallOptions {
    /// Overrides the configured `Authorization` (servers with `auth.type = "forward"`).
    pub authorization: Option<HeaderValue>,
    /// Lowest log level the client wants on this call's stream; a stateless downstream sends
    /// log messages only when asked (`_meta` logLevel), a handshake-era one ignores it.
    pub log_level: Option<&'static str>,
    /// The client's capabilities, which a stateless downstream may use in `input_required`
    /// results: a stateless client answers those itself; for a handshake-era client the
    /// gateway turns them into requests, so only what it relays is declared. `None` declares
    /// nothing.
    pub client_capabilities: Option<Value>,
    /// The `Mcp-Param-*` headers of a `tools/call` (SEP-2243), from the downstream's own
    /// schema of the tool; sent to a stateless Streamable HTTP downstream.
    pub param_headers: ::http::HeaderMap,
    /// The call relays a client's request (not the gateway's own list refresh or level
    /// change): only such a call can be the one a stdio downstream's sampling, elicitation or
    /// roots request belongs to.
    pub for_client: bool,
}

/// One request in flight on a downstream. Dropping it before its response cancels it there.
pub struct Call {
    id: u64,
    events: mpsc::Receiver<CallEvent>,
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
        // Never written (a child behind on reading): nothing to cancel, and it is not written.
        if self.connection.link.withdraw(self.id) {
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

async fn wait_response(events: &mut mpsc::Receiver<CallEvent>, timeout: Duration) -> Option<Value> {
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

/// Puts the stateless envelope into a request's `_meta`, keeping what is there (a progress
/// token).
fn add_envelope(params: &mut Value, options: &CallOptions) {
    let Some(params) = params.as_object_mut() else {
        return;
    };
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if let (Some(meta), Value::Object(envelope)) = (meta.as_object_mut(), envelope()) {
        meta.extend(envelope);
        if let Some(level) = options.log_level {
            meta.insert(era::LOG_LEVEL_KEY.into(), Value::from(level));
        }
        if let Some(capabilities) = &options.client_capabilities {
            meta.insert(era::CLIENT_CAPABILITIES_KEY.into(), capabilities.clone());
        }
    }
}

fn into_result(response: Value) -> Result<Value, RpcError> {
    match RpcError::from_response(&response) {
        Some(error) => Err(error),
        None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
    }
}
