//! Nexus: an MCP gateway on native OpenSSL.
//!
//! Layout (data flows one way, top to bottom):
//! - [`config`]: `nexus.toml` read, templated and resolved into types that cannot be half-set.
//! - [`tls`]: OpenSSL contexts for downstreams and the gateway's own HTTPS, error mapping,
//!   certificate health, `nexus tls probe`.
//! - [`downstream`]: connections to downstream MCP servers (stdio children, Streamable HTTP,
//!   legacy SSE), each supervised (timeouts, restart with backoff).
//! - [`gateway`]: the catalog built from every downstream (naming, routing, search/execute).
//! - [`server`]: the hyper listener: the MCP endpoint, `/health`, `/metrics`.
#![warn(missing_docs)]

pub mod config;
pub mod downstream;
pub mod gateway;
pub mod mcp;
pub mod metrics;
pub mod server;
pub mod service;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long requests in flight may run after a shutdown request (below systemd's default
/// 30 s stop timeout, so children are still stopped in order).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Runs the gateway on a bound listener until `shutdown`, then drains and stops every
/// downstream. The caller binds (tests bind port 0) and owns shutdown.
pub async fn serve(
    config: &config::Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), gateway::StartError> {
    Service::start(config)?.run(listener, shutdown).await;
    Ok(())
}

/// A started gateway (downstreams, front end, TLS material), ready to serve and to reload.
pub struct Service {
    gateway: Arc<gateway::Gateway>,
    app: Arc<server::App>,
    certificates: Vec<tls::expiry::Watched>,
}

/// What a TLS reload did, per downstream and for `[server.tls]`.
#[derive(Debug)]
pub struct TlsReport {
    /// One entry per HTTPS downstream.
    pub downstreams: Vec<gateway::TlsReload>,
    /// `None` without `[server.tls]`; `Err` when the new material was refused.
    pub server: Option<Result<(), tls::Error>>,
}

impl Service {
    /// Loads all TLS material and starts every downstream's supervisor. Bad material fails here,
    /// before anything is served.
    pub fn start(config: &config::Config) -> Result<Self, gateway::StartError> {
        let metrics = Arc::new(metrics::Metrics::default());
        let acceptor = config
            .server
            .tls
            .as_ref()
            .map(tls::server::handle)
            .transpose()
            .map_err(gateway::StartError::ServerTls)?;
        let gateway = gateway::Gateway::start(&config.mcp, metrics)?;
        let app = server::App::new(config, gateway.clone(), acceptor);
        Ok(Self {
            gateway,
            app,
            certificates: tls::expiry::watched(config),
        })
    }

    /// Serves `listener` until `shutdown`, then drains and stops every downstream. Certificate
    /// health is checked now and every 12 hours meanwhile.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let health = tokio::spawn(tls::expiry::monitor(
            self.certificates.clone(),
            self.gateway.metrics().clone(),
            shutdown.clone(),
        ));
        server::run(listener, self.app.clone(), shutdown, DRAIN_TIMEOUT).await;
        health.abort();
        self.gateway.stop().await;
    }

    /// A handle for reloading while [`Service::run`] serves.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            gateway: self.gateway.clone(),
            app: self.app.clone(),
            certificates: self.certificates.clone(),
        }
    }
}

/// Reloads TLS material of a running [`Service`] (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    gateway: Arc<gateway::Gateway>,
    app: Arc<server::App>,
    certificates: Vec<tls::expiry::Watched>,
}

impl Reloader {
    /// Re-reads every certificate, key and CA file of the running configuration: new
    /// connections use the new material, established ones are not dropped, and material that
    /// fails to load is kept in its old version (the reason is logged and returned).
    pub fn reload_tls(&self) -> TlsReport {
        let report = TlsReport {
            downstreams: self.gateway.reload_tls(),
            server: self.app.reload_tls(),
        };
        tls::expiry::check(&self.certificates, self.gateway.metrics());
        report
    }
}
