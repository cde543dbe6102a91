//! The gateway proper: one catalog over every downstream, and the routing of client requests.

pub mod builtin;
pub mod catalog;
mod handler;
pub mod rate_limit;
pub mod relay;
pub mod search;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, PrefixMode, ToolsMode, Transport};
use crate::downstream::{Change, Downstream, Events};
use crate::metrics::Metrics;
use crate::tls::{ClientContext, ClientHandle, Connector};
pub use catalog::Catalog;
pub use relay::Relay;

/// How many server notifications a slow client may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 1024;

/// What a client request turned into.
pub enum Reply {
    /// Answered by the gateway itself.
    Immediate(Value),
    /// Relayed to a downstream: notifications may come before the response.
    Relayed(Relay),
}

/// Per-request facts from the front end.
#[derive(Debug, Default, Clone)]
pub struct RequestContext {
    /// The client's `Authorization` header, for servers with `auth.type = "forward"`.
    pub authorization: Option<HeaderValue>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A downstream's TLS material or settings could not be loaded.
    #[error("server '{server}': {source}")]
    Tls {
        /// The downstream.
        server: String,
        /// What is wrong and how to fix it.
        source: crate::tls::Error,
    },
    /// The gateway's own `[server.tls]` could not be loaded.
    #[error("[server.tls]: {0}")]
    ServerTls(crate::tls::Error),
}

/// The outcome of reloading one downstream's TLS material.
#[derive(Debug)]
pub struct TlsReload {
    /// The downstream.
    pub server: String,
    /// `Err` when the new material was refused (the old material stays in use).
    pub result: Result<(), crate::tls::Error>,
}

/// The running gateway.
pub struct Gateway {
    downstreams: Vec<Arc<Downstream>>,
    // The TLS context of each HTTPS downstream, by index, with its settings for reload.
    tls: Vec<Option<(ClientHandle, config::ClientTls)>>,
    metrics: Arc<Metrics>,
    limiters: Vec<Option<rate_limit::Limiter>>,
    catalog: ArcSwap<Catalog>,
    tools_mode: ToolsMode,
    prefix: bool,
    broadcast: broadcast::Sender<Value>,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl Gateway {
    /// Builds every downstream (TLS contexts included, so bad material fails here) and starts
    /// their supervisors. Returns at once: downstreams connect in the background.
    pub fn start(config: &config::Mcp, metrics: Arc<Metrics>) -> Result<Arc<Self>, StartError> {
        let mut downstreams = Vec::new();
        let mut tls = Vec::new();
        for server in &config.servers {
            let (client, handle) = http_client(server, &metrics)?.unzip();
            downstreams.push(Arc::new(Downstream::new(server.clone(), client)));
            tls.push(handle.flatten());
        }
        let limiters = config
            .servers
            .iter()
            .map(|server| server.rate_limit.as_ref().map(rate_limit::Limiter::new))
            .collect();
        let prefix = config.prefix == PrefixMode::Always || config.servers.len() > 1;
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let gateway = Arc::new(Self {
            downstreams,
            tls,
            metrics,
            limiters,
            catalog: ArcSwap::default(),
            tools_mode: config.tools,
            prefix,
            broadcast,
            shutdown: CancellationToken::new(),
            tasks: tokio::sync::Mutex::default(),
        });
        gateway.spawn_tasks();
        Ok(gateway)
    }

    fn spawn_tasks(self: &Arc<Self>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let events = Events {
            changes,
            broadcast: self.broadcast.clone(),
        };
        let mut tasks = JoinSet::new();
        for (index, downstream) in self.downstreams.iter().enumerate() {
            tasks.spawn(
                downstream
                    .clone()
                    .supervise(index, events.clone(), self.shutdown.clone()),
            );
        }
        tasks.spawn(self.clone().maintain_catalog(receiver));
        *self
            .tasks
            .try_lock()
            .expect("BUG: tasks are spawned once, before anyone waits") = tasks;
    }

    /// Rebuilds the catalog on every change and tells clients what changed.
    async fn maintain_catalog(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<(usize, Change)>,
    ) {
        loop {
            let first = tokio::select! {
                change = changes.recv() => change,
                _ = self.shutdown.cancelled() => None,
            };
            let Some((_, first)) = first else { return };
            // Coalesce a burst (a new server reports all three lists at once).
            let mut kinds = vec![first];
            while let Ok((_, change)) = changes.try_recv() {
                if !kinds.contains(&change) {
                    kinds.push(change);
                }
            }
            self.catalog
                .store(Arc::new(Catalog::build(&self.downstreams, self.prefix)));
            for kind in kinds {
                let method = match kind {
                    Change::Tools => "notifications/tools/list_changed",
                    Change::Prompts => "notifications/prompts/list_changed",
                    Change::Resources => "notifications/resources/list_changed",
                };
                let _ = self
                    .broadcast
                    .send(crate::mcp::jsonrpc::notification(method, None));
            }
        }
    }

    /// Stops every supervisor (and so every stdio child) and waits for them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }

    /// Server notifications for clients' GET streams.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.broadcast.subscribe()
    }

    /// (connected, configured) downstreams.
    pub fn status(&self) -> (usize, usize) {
        let connected = self
            .downstreams
            .iter()
            .filter(|downstream| downstream.is_connected())
            .count();
        (connected, self.downstreams.len())
    }

    /// Per-server connection state, in config order.
    pub fn servers(&self) -> impl Iterator<Item = (&str, bool)> {
        self.downstreams
            .iter()
            .map(|downstream| (downstream.name(), downstream.is_connected()))
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-reads every downstream's certificates, keys and CA files. A server whose new material
    /// loads gets it for its next connections (established ones keep theirs); one whose material
    /// fails keeps the old and the failure is logged. One result per HTTPS downstream.
    pub fn reload_tls(&self) -> Vec<TlsReload> {
        self.downstreams
            .iter()
            .zip(&self.tls)
            .filter_map(|(downstream, tls)| {
                let (handle, settings) = tls.as_ref()?;
                let server = downstream.name().to_owned();
                let result = ClientContext::new(&server, settings, self.metrics.clone()).map(|context| {
                    context.announce();
                    handle.store(Arc::new(context));
                });
                match &result {
                    Ok(()) => tracing::info!(server = %server, "TLS material reloaded"),
                    Err(error) => tracing::error!(server = %server, %error, "TLS reload failed; keeping the previous certificates and keys"),
                }
                Some(TlsReload { server, result })
            })
            .collect()
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }
}

type HttpParts = (
    crate::downstream::http::HttpClient,
    Option<(ClientHandle, config::ClientTls)>,
);

fn http_client(
    server: &config::Downstream,
    metrics: &Arc<Metrics>,
) -> Result<Option<HttpParts>, StartError> {
    let Transport::Http(http) = &server.transport else {
        return Ok(None);
    };
    let tls = if http.url.scheme_str() == Some("https") {
        let handle =
            ClientContext::handle(&server.name, &http.tls, metrics.clone()).map_err(|source| {
                StartError::Tls {
                    server: server.name.clone(),
                    source,
                }
            })?;
        Some(handle)
    } else {
        None
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(Connector::new(tls.clone()));
    Ok(Some((client, tls.map(|handle| (handle, http.tls.clone())))))
}
