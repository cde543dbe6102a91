//! The gateway proper: one catalog over every downstream, the routing of client requests, and
//! reconfiguration without dropping what did not change.

pub mod builtin;
pub mod catalog;
mod handler;
pub mod input;
mod log_levels;
pub mod rate_limit;
pub mod relay;
pub mod search;
pub mod subscriptions;
pub mod visibility;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::access::{Caller, Challenge, Policy};
use crate::config::{self, PrefixMode, ToolsMode, Transport};
use crate::downstream::{Change, ChangeSignal, Downstream, Events};
use crate::mcp::jsonrpc;
use crate::metrics::Metrics;
use crate::tls::{ClientContext, ClientHandle, Connector};
pub use catalog::Catalog;
pub use relay::{Bridge, Outgoing, Relay};

/// How often per-caller server and tool quotas drop callers whose quota is whole again.
const RETAIN_RATE_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How many server notifications a slow client may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 1024;

/// What a client request turned into.
pub enum Reply {
    /// Answered by the gateway itself.
    Immediate(Value),
    /// Relayed to a downstream: notifications may come before the response.
    Relayed(Relay),
    /// Refused for a missing scope: HTTP 403 with the challenge, so the client can step up.
    Challenged {
        /// The `WWW-Authenticate` refusal.
        challenge: Challenge,
        /// The JSON-RPC error (with the request's id), the body, or a batch's item.
        response: Value,
    },
}

/// Per-request facts from the front end.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Arc<Caller>,
    /// The RFC 9728 metadata URL a scope challenge points at (with `[server.oauth]`).
    pub resource_metadata: Option<Arc<str>>,
    /// The client's `Authorization` header, for servers with `auth.type = "forward"`.
    pub authorization: Option<HeaderValue>,
    /// Lowest log level the client wants relayed with this request's answer.
    pub log_level: Option<&'static str>,
    /// The client's capabilities as a stateless downstream is to see them: a stateless
    /// client's own (from its request's `_meta`), or those a handshake-era session declared
    /// and the gateway can relay.
    pub client_capabilities: Option<Value>,
    /// How the client can be asked for input on this request.
    pub asking: Asking,
    /// Who subscribes when this request is `resources/subscribe`: the handshake-era session.
    pub subscriber: Option<Arc<str>>,
    /// The audit trail, when `[audit]` is enabled.
    pub audit: Option<Arc<crate::access::audit::Audit>>,
}

impl RequestContext {
    /// The facts of a request by `caller` that the front end has not refined yet.
    pub fn new(caller: Arc<Caller>) -> Self {
        Self {
            caller,
            resource_metadata: None,
            authorization: None,
            log_level: None,
            client_capabilities: None,
            asking: Asking::default(),
            subscriber: None,
            audit: None,
        }
    }
}

/// How a client can be asked for input (sampling, elicitation, roots) during a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// Not at all (a batch): a downstream's requests are refused, `input_required` results
    /// pass through.
    #[default]
    Never,
    /// With server-to-client requests (a handshake-era session).
    Requests,
    /// With `input_required` results (a stateless client).
    InputRequired,
}

/// Why the gateway could not start (or apply a new configuration).
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
    /// `[audit]`'s file could not be opened.
    #[error(transparent)]
    Audit(crate::access::audit::sink::OpenError),
    /// `[server.oauth.tls]` (for fetching the signing keys) could not be loaded.
    #[error("[server.oauth.tls]: {0}")]
    OauthTls(crate::tls::Error),
}

/// The outcome of reloading one downstream's TLS material.
#[derive(Debug)]
pub struct TlsReload {
    /// The downstream.
    pub server: String,
    /// `Err` when the new material was refused (the old material stays in use).
    pub result: Result<(), crate::tls::Error>,
}

/// One configured downstream as the gateway runs it: the connection owner, its rate limits,
/// and the switch that stops its supervisor.
pub struct Member {
    /// The supervised downstream.
    pub downstream: Arc<Downstream>,
    // The TLS context of an HTTPS downstream, swapped on reload, with the settings it is
    // re-read from.
    tls: Option<(ClientHandle, config::ClientTls)>,
    limiter: Option<rate_limit::Limiter>,
    stop: CancellationToken,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Member {
    fn new(
        config: &config::Downstream,
        parent: &CancellationToken,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let (client, tls) = http_client(config, metrics)?.unzip();
        Ok(Self {
            downstream: Arc::new(Downstream::new(config.clone(), client, metrics.clone())),
            tls: tls.flatten(),
            limiter: config
                .rate_limit
                .as_ref()
                .map(|limits| rate_limit::Limiter::new(&config.name, limits)),
            stop: parent.child_token(),
            supervisor: std::sync::Mutex::default(),
        })
    }

    fn reload_tls(&self, metrics: &Arc<Metrics>) -> Option<TlsReload> {
        let (handle, settings) = self.tls.as_ref()?;
        let server = self.downstream.name().to_owned();
        let result = ClientContext::new(&server, settings, metrics.clone()).map(|context| {
            context.announce();
            handle.store(Arc::new(context));
        });
        match &result {
            Ok(()) => tracing::info!(server = %server, "TLS material reloaded"),
            Err(error) => {
                tracing::error!(server = %server, %error, "TLS reload failed; keeping the previous certificates and keys")
            }
        }
        Some(TlsReload { server, result })
    }

    /// Stops the supervisor (and so the child process or session) and waits for it.
    async fn shut_down(&self) {
        self.stop.cancel();
        let handle = self
            .supervisor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// The `[mcp]` choices that shape the catalog.
#[derive(Debug, Clone)]
struct Settings {
    tools: ToolsMode,
    prefix: bool,
    policy: Arc<Policy>,
}

impl Settings {
    fn of(config: &config::Mcp) -> Self {
        let prefix = config.prefix == PrefixMode::Always || config.servers.len() > 1;
        Self {
            tools: config.tools,
            prefix,
            policy: Arc::new(Policy::new(&config.access)),
        }
    }
}

/// What a reload did, for the log and the systemd status.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Servers started.
    pub added: Vec<String>,
    /// Servers stopped.
    pub removed: Vec<String>,
    /// Servers restarted because their connection settings changed.
    pub changed: Vec<String>,
    /// Servers kept as they were (sessions untouched).
    pub kept: Vec<String>,
}

/// The running gateway.
pub struct Gateway {
    members: ArcSwap<Vec<Arc<Member>>>,
    catalog: ArcSwap<Catalog>,
    settings: ArcSwap<Settings>,
    broadcast: broadcast::Sender<Value>,
    subscriptions: subscriptions::Subscriptions,
    log_levels: log_levels::LogLevels,
    events: Events,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    // Serializes reloads (SIGHUP is rare; two at once would race on `members`).
    reloading: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// Builds every downstream (TLS contexts included, so bad material fails here) and starts
    /// their supervisors. Returns at once: downstreams connect in the background.
    pub fn start(config: &config::Mcp, metrics: Arc<Metrics>) -> Result<Arc<Self>, StartError> {
        let shutdown = CancellationToken::new();
        let members = config
            .servers
            .iter()
            .map(|server| Member::new(server, &shutdown, &metrics).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let changes = Arc::new(ChangeSignal::default());
        let events = Events {
            changes: changes.clone(),
            broadcast: broadcast.clone(),
        };
        let settings = Settings::of(config);
        let gateway = Arc::new(Self {
            members: ArcSwap::from_pointee(members.clone()),
            // Empty lists until the downstreams connect, but it knows them already: a call to
            // one that is not up yet is told why.
            catalog: ArcSwap::from_pointee(Catalog::build(
                members.clone(),
                settings.prefix,
                settings.policy.clone(),
            )),
            settings: ArcSwap::from_pointee(settings),
            broadcast,
            subscriptions: subscriptions::Subscriptions::default(),
            log_levels: log_levels::LogLevels::default(),
            events,
            metrics,
            shutdown,
            reloading: tokio::sync::Mutex::new(()),
        });
        for member in &members {
            gateway.supervise(member);
        }
        tokio::spawn(gateway.clone().maintain_catalog(changes));
        tokio::spawn(gateway.clone().retain_rate_limits());
        Ok(gateway)
    }

    /// Forgets, now and then, the callers whose per-server and per-tool quotas are whole again,
    /// so memory follows the callers of the last interval, not every caller ever seen.
    async fn retain_rate_limits(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RETAIN_RATE_LIMITS_EVERY);
        while tokio::select! { _ = tick.tick() => true, _ = self.shutdown.cancelled() => false } {
            for member in self.members.load().iter() {
                if let Some(limiter) = &member.limiter {
                    limiter.retain();
                }
            }
        }
    }

    fn supervise(&self, member: &Arc<Member>) {
        let task = member
            .downstream
            .clone()
            .supervise(self.events.clone(), member.stop.clone());
        *member
            .supervisor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tokio::spawn(task));
    }

    /// Applies a new `[mcp]`: starts added servers, stops removed ones, restarts those whose
    /// connection settings changed, and leaves the others (and their sessions) alone.
    pub async fn reload(&self, config: &config::Mcp) -> Result<ReloadReport, StartError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.members.load_full();
        let mut report = ReloadReport::default();
        let mut next = Vec::with_capacity(config.servers.len());
        let mut started = Vec::new();
        for server in &config.servers {
            let existing = current
                .iter()
                .find(|member| member.downstream.name() == server.name);
            match existing {
                Some(member) if member.downstream.config() == server => {
                    report.kept.push(server.name.clone());
                    next.push(member.clone());
                }
                _ => {
                    // Built before anything is stopped: a bad new server leaves all running.
                    let member = Arc::new(Member::new(server, &self.shutdown, &self.metrics)?);
                    let list = if existing.is_some() {
                        &mut report.changed
                    } else {
                        &mut report.added
                    };
                    list.push(server.name.clone());
                    started.push(member.clone());
                    next.push(member);
                }
            }
        }
        let retired: Vec<Arc<Member>> = current
            .iter()
            .filter(|member| !next.iter().any(|kept| Arc::ptr_eq(kept, member)))
            .cloned()
            .collect();
        report.removed = retired
            .iter()
            .map(|member| member.downstream.name().to_owned())
            .filter(|name| !report.changed.contains(name))
            .collect();
        self.settings.store(Arc::new(Settings::of(config)));
        self.members.store(Arc::new(next));
        for member in &started {
            self.supervise(member);
        }
        futures_util::future::join_all(retired.iter().map(|member| member.shut_down())).await;
        self.rebuild_catalog(&Change::ALL);
        Ok(report)
    }

    /// Rebuilds the catalog on every change and tells clients what changed. Changes raised
    /// while a rebuild runs are taken together by the next one.
    async fn maintain_catalog(self: Arc<Self>, changes: Arc<ChangeSignal>) {
        loop {
            let kinds = tokio::select! {
                kinds = changes.take() => kinds,
                _ = self.shutdown.cancelled() => return,
            };
            self.rebuild_catalog(&kinds);
        }
    }

    fn rebuild_catalog(&self, kinds: &[Change]) {
        let members = self.members.load_full().as_ref().clone();
        let settings = self.settings.load();
        self.catalog.store(Arc::new(Catalog::build(
            members,
            settings.prefix,
            settings.policy.clone(),
        )));
        for kind in kinds {
            let method = match kind {
                Change::Tools => "notifications/tools/list_changed",
                Change::Prompts => "notifications/prompts/list_changed",
                Change::Resources => "notifications/resources/list_changed",
            };
            let _ = self.broadcast.send(jsonrpc::notification(method, None));
        }
    }

    /// Stops every supervisor (and so every stdio child) and waits for them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let members = self.members.load_full();
        futures_util::future::join_all(members.iter().map(|member| member.shut_down())).await;
    }

    /// Server notifications for clients' GET streams.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.broadcast.subscribe()
    }

    /// (connected, configured) downstreams.
    pub fn status(&self) -> (usize, usize) {
        let members = self.members.load();
        let connected = members
            .iter()
            .filter(|member| member.downstream.is_connected())
            .count();
        (connected, members.len())
    }

    /// Per-server state, in config order: the name and, when connected, the protocol
    /// revision of its session.
    pub fn servers(&self) -> Vec<(String, Option<String>)> {
        let members = self.members.load();
        members
            .iter()
            .map(|member| {
                (
                    member.downstream.name().to_owned(),
                    member.downstream.protocol_version(),
                )
            })
            .collect()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-reads every HTTPS downstream's certificates, keys and CA files. A server whose new
    /// material loads gets it for its next connections (established ones keep theirs); one
    /// whose material fails keeps the old, and the failure is logged. One result per HTTPS
    /// downstream.
    pub fn reload_tls(&self) -> Vec<TlsReload> {
        let members = self.members.load();
        members
            .iter()
            .filter_map(|member| member.reload_tls(&self.metrics))
            .collect()
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    fn tools_mode(&self) -> ToolsMode {
        self.settings.load().tools
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
