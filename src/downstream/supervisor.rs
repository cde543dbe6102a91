//! Keeps one downstream connected: connect with backoff, refresh its lists, reconnect when it
//! drops, stop it at shutdown. Each downstream has its own task, so one slow or dead server never
//! delays another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::http::HeaderValue;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::changes::{Change, ChangeSignal};
use super::connection::{Call, CallOptions, Connection, Watch};
use super::dispatch::Dispatcher;
use super::http::{HttpClient, HttpLink};
use super::intake::{Intake, NOTIFICATION_BACKLOG};
use super::link::{Lifeline, Link, TransportError};
use super::sse::SseLink;
use super::stdio::StdioLink;
use crate::config::{self, Auth, HttpProtocol, Transport};
use crate::mcp::jsonrpc::{DOWNSTREAM_UNAVAILABLE, RpcError};
use crate::metrics::Metrics;

/// Upper bound on pages followed for one list (a server that never stops paginating).
const MAX_PAGES: usize = 1000;
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the supervisors tell the rest of the gateway.
#[derive(Clone)]
pub struct Events {
    /// What changed (the catalog is rebuilt from every downstream's lists): flags, so a
    /// downstream announcing changes in a loop costs one rebuild at a time.
    pub changes: Arc<ChangeSignal>,
    /// Notifications for every connected client (log messages, resource updates).
    pub broadcast: broadcast::Sender<Value>,
}

/// The last lists fetched from a downstream (kept while it reconnects, so the catalog does not
/// flap when a child restarts).
#[derive(Debug, Default)]
pub struct Lists {
    /// Tools, as the downstream sent them.
    pub tools: Vec<Value>,
    /// Prompts.
    pub prompts: Vec<Value>,
    /// Resources.
    pub resources: Vec<Value>,
    /// Resource templates.
    pub templates: Vec<Value>,
    /// The server's capabilities.
    pub capabilities: Value,
}

/// One configured downstream and its current connection.
pub struct Downstream {
    name: Arc<str>,
    config: config::Downstream,
    client: Option<HttpClient>,
    current: ArcSwapOption<Connection>,
    lists: ArcSwap<Lists>,
    last_error: Mutex<Option<String>>,
    // URI -> its watch on the current connection; renewed on each new connection, since a
    // session's subscriptions die with it. A std Mutex: never held across `.await`.
    watched: Mutex<HashMap<String, Watch>>,
    metrics: Arc<Metrics>,
}

impl Downstream {
    /// A downstream that is not connected yet. `client` is required for HTTP transports.
    pub fn new(
        config: config::Downstream,
        client: Option<HttpClient>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name: config.name.as_str().into(),
            config,
            client,
            current: ArcSwapOption::empty(),
            lists: ArcSwap::default(),
            last_error: Mutex::default(),
            watched: Mutex::default(),
            metrics,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &config::Downstream {
        &self.config
    }

    /// The last lists fetched.
    pub fn lists(&self) -> Arc<Lists> {
        self.lists.load_full()
    }

    /// Whether a session is up.
    pub fn is_connected(&self) -> bool {
        self.current.load().is_some()
    }

    /// Whether the current session speaks the stateless revision.
    pub fn is_stateless(&self) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|connection| connection.is_stateless())
    }

    /// The protocol revision of the current session, if one is up.
    pub fn protocol_version(&self) -> Option<String> {
        self.current
            .load()
            .as_ref()
            .map(|connection| connection.peer().protocol_version.clone())
    }

    /// Starts a call on the current connection.
    pub async fn start(
        &self,
        method: &str,
        params: Option<Value>,
        options: &CallOptions,
    ) -> Result<(Call, Option<Value>), RpcError> {
        let Some(connection) = self.current.load_full() else {
            return Err(self.not_connected());
        };
        connection.start(method, params, options).await
    }

    /// Starts watching a resource (see [`Connection::watch`]), on this connection and on every
    /// later one until [`Downstream::unwatch`].
    pub async fn watch(&self, uri: &str) -> Result<(), RpcError> {
        let Some(connection) = self.current.load_full() else {
            return Err(self.not_connected());
        };
        let watch = connection.watch(uri, self.config.call_timeout).await?;
        lock(&self.watched).insert(uri.to_owned(), watch);
        Ok(())
    }

    /// Stops watching a resource.
    pub async fn unwatch(&self, uri: &str) -> Result<(), RpcError> {
        let watch = lock(&self.watched).remove(uri);
        let (Some(watch), Some(connection)) = (watch, self.current.load_full()) else {
            return Ok(());
        };
        connection.unwatch(watch, self.config.call_timeout).await
    }

    /// Watches again, on a new connection, every resource watched on the one before.
    async fn renew_watches(&self, connection: &Arc<Connection>) {
        let uris: Vec<String> = lock(&self.watched).keys().cloned().collect();
        for uri in uris {
            match connection.watch(&uri, self.config.call_timeout).await {
                Ok(watch) => {
                    lock(&self.watched).insert(uri, watch);
                }
                Err(error) => {
                    tracing::warn!(server = %self.name, %uri, %error, "could not renew a resource subscription");
                }
            }
        }
    }

    /// Sends a notification to the current connection, if any.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        match self.current.load_full() {
            Some(connection) => connection.notify(method, params).await,
            None => Err(self.not_connected()),
        }
    }

    /// The error for a call to this server while it is not connected, with the reason of the
    /// last failed attempt (e.g. a mapped TLS error).
    pub fn not_connected(&self) -> RpcError {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let reason = last
            .map(|error| format!(" (last error: {error})"))
            .unwrap_or_default();
        RpcError::new(
            DOWNSTREAM_UNAVAILABLE,
            format!(
                "server '{}' is not connected{reason}; the gateway keeps retrying",
                self.name
            ),
        )
    }

    /// Runs until `shutdown`: connects, serves, reconnects with backoff.
    pub async fn supervise(self: Arc<Self>, events: Events, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let (notifications, receiver) = mpsc::channel(NOTIFICATION_BACKLOG);
            let lists = Arc::new(ChangeSignal::default());
            let intake = Intake::new(
                self.name.clone(),
                self.config.limits,
                &self.metrics,
                lists.clone(),
                notifications,
            );
            let attempt = tokio::select! {
                attempt = self.connect(Arc::new(intake)) => attempt,
                _ = shutdown.cancelled() => return,
            };
            match attempt {
                Ok(connection) => {
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    let incoming = Incoming {
                        lists,
                        notifications: receiver,
                    };
                    let served = self.serve(&events, connection, incoming, &shutdown).await;
                    let Some(reason) = served else { return };
                    tracing::warn!(server = %self.name, %reason, "downstream disconnected; reconnecting");
                    if started.elapsed() > STABLE_AFTER {
                        backoff = Backoff::default();
                    }
                }
                Err(error) => self.record_failure(error),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Serves one connection until it ends (returns the reason) or shutdown (returns `None`).
    async fn serve(
        &self,
        events: &Events,
        connection: Arc<Connection>,
        mut incoming: Incoming,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        for change in Change::ALL {
            self.refresh(&connection, change).await;
        }
        self.current.store(Some(connection.clone()));
        self.renew_watches(&connection).await;
        let tools = self.lists.load().tools.len();
        tracing::info!(server = %self.name, tools, version = %connection.peer().protocol_version, "downstream connected");
        for change in Change::ALL {
            events.changes.raise(change);
        }
        let lifeline = connection.lifeline().clone();
        // Refreshes and relayed notifications run side by side: a slow listing does not hold
        // up log messages, and changes raised meanwhile are refreshed once, next.
        let reason = tokio::select! {
            reason = lifeline.ended() => Some(reason),
            () = self.follow_changes(events, &connection, &incoming.lists) => None,
            () = self.relay(events, &mut incoming.notifications) => None,
            _ = shutdown.cancelled() => None,
        };
        self.current.store(None);
        if reason.is_none() {
            connection.close().await;
        }
        reason
    }

    /// Refreshes each list the downstream says changed, one refresh at a time per connection.
    async fn follow_changes(
        &self,
        events: &Events,
        connection: &Arc<Connection>,
        lists: &ChangeSignal,
    ) {
        loop {
            for change in lists.take().await {
                self.refresh(connection, change).await;
                events.changes.raise(change);
            }
        }
    }

    /// Relays the downstream's other notifications to every client.
    async fn relay(&self, events: &Events, notifications: &mut mpsc::Receiver<Value>) {
        while let Some(mut notification) = notifications.recv().await {
            match notification.get("method").and_then(Value::as_str) {
                // For a call that is already gone, or the acknowledgement of our own
                // `subscriptions/listen`: nothing for clients.
                Some("notifications/progress" | "notifications/subscriptions/acknowledged") => {}
                Some("notifications/message") => {
                    tag_logger(&mut notification, &self.name);
                    let _ = events.broadcast.send(notification);
                }
                _ => {
                    let _ = events.broadcast.send(notification);
                }
            }
        }
        // The intake that feeds the channel lives as long as the connection: not reached.
        std::future::pending::<()>().await;
    }

    async fn connect(&self, intake: Arc<Intake>) -> Result<Arc<Connection>, String> {
        let (replies, replied) = mpsc::unbounded_channel();
        let dispatcher = Arc::new(Dispatcher::new(intake, replies));
        let lifeline = Lifeline::new();
        let link = Arc::new(self.open_link(&dispatcher, &lifeline).await?);
        tokio::spawn(send_replies(
            link.clone(),
            dispatcher.clone(),
            replied,
            lifeline.clone(),
        ));
        let timeout = self.config.call_timeout;
        let established = Connection::establish(
            self.name.clone(),
            link,
            dispatcher,
            lifeline.clone(),
            timeout,
            self.config.protocol_version,
        )
        .await;
        if established.is_err() {
            lifeline.end("initialize failed");
        }
        established.map_err(|error| error.message)
    }

    async fn open_link(
        &self,
        dispatcher: &Arc<Dispatcher>,
        lifeline: &Arc<Lifeline>,
    ) -> Result<Link, String> {
        match &self.config.transport {
            Transport::Stdio(stdio) => {
                StdioLink::spawn(&self.name, stdio, dispatcher.clone(), lifeline.clone())
                    .map(Link::Stdio)
            }
            Transport::Http(http) => {
                let client = self
                    .client
                    .clone()
                    .expect("BUG: HTTP downstream without a client");
                let auth = match &http.auth {
                    Some(Auth::Token(token)) => Some(bearer(token)?),
                    _ => None,
                };
                let streamable = || {
                    Link::Http(HttpLink::new(
                        client.clone(),
                        http.url.clone(),
                        auth.clone(),
                        dispatcher.clone(),
                        lifeline.clone(),
                    ))
                };
                match http.protocol {
                    Some(HttpProtocol::StreamableHttp) => Ok(streamable()),
                    Some(HttpProtocol::Sse) => SseLink::connect(
                        client.clone(),
                        &http.url,
                        http.message_url.as_deref(),
                        auth,
                        dispatcher.clone(),
                        lifeline.clone(),
                    )
                    .await
                    .map(Link::Sse)
                    .map_err(|error| error.to_string()),
                    None => {
                        let sse = self
                            .detect(
                                &streamable(),
                                &client,
                                &http.url,
                                auth.clone(),
                                dispatcher,
                                lifeline,
                            )
                            .await?;
                        Ok(sse.unwrap_or_else(streamable))
                    }
                }
            }
        }
    }

    /// No `protocol` configured: Streamable HTTP when the server accepts a POST (`None`: the
    /// caller builds a fresh link, since the probe may have been given a session of its own
    /// that a later `initialize` must not carry), else the HTTP+SSE link.
    async fn detect(
        &self,
        probe: &Link,
        client: &HttpClient,
        url: &::http::Uri,
        auth: Option<HeaderValue>,
        dispatcher: &Arc<Dispatcher>,
        lifeline: &Arc<Lifeline>,
    ) -> Result<Option<Link>, String> {
        let Link::Http(probe) = probe else {
            unreachable!("BUG: streamable() builds Http")
        };
        let ping = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        match probe.post(&ping, None, None).await {
            // A server that speaks Streamable HTTP accepts or rejects the notification as MCP
            // (2xx, or 400 for "not initialized"); an SSE-only server has no POST on this URL.
            Err(TransportError::Status {
                status: 404 | 405, ..
            }) => SseLink::connect(
                client.clone(),
                url,
                None,
                auth,
                dispatcher.clone(),
                lifeline.clone(),
            )
            .await
            .map(|link| Some(Link::Sse(link)))
            .map_err(|error| {
                format!("neither Streamable HTTP (POST: 404/405) nor SSE works: {error}")
            }),
            Err(TransportError::Connect(error)) => Err(error),
            _ => Ok(None),
        }
    }

    async fn refresh(&self, connection: &Arc<Connection>, change: Change) {
        let capabilities = connection.peer().capabilities.clone();
        let mut lists = Lists::clone_from(&self.lists.load());
        let offered = |name: &str| capabilities.get(name).is_some();
        let timeout = self.config.call_timeout;
        let result = match change {
            Change::Tools if offered("tools") => {
                list_all(connection, "tools/list", "tools", timeout)
                    .await
                    .map(|tools| lists.tools = tools)
            }
            Change::Prompts if offered("prompts") => {
                list_all(connection, "prompts/list", "prompts", timeout)
                    .await
                    .map(|prompts| lists.prompts = prompts)
            }
            Change::Resources if offered("resources") => {
                let resources = list_all(connection, "resources/list", "resources", timeout).await;
                // Templates are optional even for servers with resources.
                let templates = list_all(
                    connection,
                    "resources/templates/list",
                    "resourceTemplates",
                    timeout,
                )
                .await;
                lists.templates = templates.unwrap_or_default();
                resources.map(|resources| lists.resources = resources)
            }
            _ => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(server = %self.name, ?change, %error, "listing failed; keeping the previous list");
        }
        lists.capabilities = capabilities;
        self.lists.store(Arc::new(lists));
    }

    fn record_failure(&self, error: String) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // Log a failure once, not at every retry, until it changes.
        if last.as_deref() != Some(error.as_str()) {
            tracing::warn!(server = %self.name, %error, "cannot connect to downstream; retrying with backoff");
        }
        *last = Some(error);
    }
}

impl Lists {
    fn clone_from(other: &Lists) -> Self {
        Self {
            tools: other.tools.clone(),
            prompts: other.prompts.clone(),
            resources: other.resources.clone(),
            templates: other.templates.clone(),
            capabilities: other.capabilities.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every operation leaves the map consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a connection's intake passes on to its supervisor.
struct Incoming {
    lists: Arc<ChangeSignal>,
    notifications: mpsc::Receiver<Value>,
}

/// Sends the connection's replies to its downstream's requests, in order, while it lives.
async fn send_replies(
    link: Arc<Link>,
    dispatcher: Arc<Dispatcher>,
    mut replies: mpsc::UnboundedReceiver<Value>,
    lifeline: Arc<Lifeline>,
) {
    let token = lifeline.token();
    while let Some(reply) = tokio::select! {
        reply = replies.recv() => reply,
        _ = token.cancelled() => None,
    } {
        let _ = link.send(&reply, None, None).await;
        dispatcher.reply_sent();
    }
}

/// Fetches every page of a list (`nextCursor`), stopping on a repeated cursor.
async fn list_all(
    connection: &Arc<Connection>,
    method: &str,
    key: &str,
    timeout: Duration,
) -> Result<Vec<Value>, RpcError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = cursor.as_ref().map(|cursor| json!({"cursor": cursor}));
        let mut page = connection.request(method, params, timeout).await?;
        if let Some(Value::Array(page_items)) = page.get_mut(key).map(Value::take) {
            items.extend(page_items);
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() && seen.insert(next.to_owned()) => {
                cursor = Some(next.to_owned())
            }
            _ => break,
        }
    }
    Ok(items)
}

fn bearer(token: &secrecy::SecretString) -> Result<HeaderValue, String> {
    use secrecy::ExposeSecret;
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| "auth.token contains characters not allowed in an HTTP header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Names the origin server in relayed log messages (`logger` becomes `server` or `server/logger`).
fn tag_logger(notification: &mut Value, server: &str) {
    if let Some(params) = notification
        .get_mut("params")
        .and_then(Value::as_object_mut)
    {
        let logger = match params.get("logger").and_then(Value::as_str) {
            Some(logger) => format!("{server}/{logger}"),
            None => server.to_owned(),
        };
        params.insert("logger".into(), Value::String(logger));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_messages_name_their_server() {
        let mut message =
            json!({"method": "notifications/message", "params": {"level": "info", "logger": "db"}});
        tag_logger(&mut message, "local");
        assert_eq!(message["params"]["logger"], "local/db");
    }
}
