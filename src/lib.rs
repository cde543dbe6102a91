//! Nexus: an MCP gateway on native OpenSSL.
//!
//! Layout (data flows one way, top to bottom):
//! - [`config`]: `nexus.toml` read, templated and resolved into types that cannot be half-set.
//! - [`tls`]: OpenSSL contexts for downstreams and the gateway's own HTTPS, error mapping,
//!   certificate health, `nexus tls probe`.
//! - [`pkcs11`]: keys and certificates on PKCS#11 tokens, signed through an in-process OpenSSL
//!   provider (with `tls::ffi`, the crate's only `unsafe` code).
//! - [`downstream`]: connections to downstream MCP servers (stdio children, Streamable HTTP,
//!   legacy SSE), each supervised (timeouts, restart with backoff).
//! - [`gateway`]: the catalog built from every downstream (naming, routing, search/execute).
//! - [`server`]: the hyper listener: the MCP endpoint, `/health`, `/metrics`.
//! - [`service`]: life under systemd: signals, sd_notify readiness and watchdog, journal logs.
//! - [`cli`]: the command line (shared by the binary and the man page generator).
#![warn(missing_docs)]

pub mod access;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod gateway;
pub mod mcp;
pub mod metrics;
pub mod pkcs11;
pub mod server;
pub mod service;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use gateway::{Gateway, ReloadReport, StartError};

/// How long requests in flight may run after a shutdown request (below systemd's default
/// 30 s stop timeout, so children are still stopped in order).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// How long the audit writer may take, at exit, to write the records still queued.
pub const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// A started gateway with its front end and TLS material, ready to serve a listener and to
/// reload.
pub struct Nexus {
    gateway: Arc<Gateway>,
    app: Arc<server::App>,
    audit: Option<Arc<access::audit::Audit>>,
    listen_address: std::net::SocketAddr,
    // What certificate health watches; replaced when a reload changes the files.
    certificates: ArcSwap<Vec<tls::expiry::Watched>>,
    server_tls: ArcSwap<Option<config::ServerTls>>,
}

/// What a TLS reload did, per downstream and for `[server.tls]`.
#[derive(Debug)]
pub struct TlsReport {
    /// One entry per HTTPS downstream.
    pub downstreams: Vec<gateway::TlsReload>,
    /// `None` without `[server.tls]`; `Err` when the new material was refused.
    pub server: Option<Result<(), tls::Error>>,
}

impl Nexus {
    /// Loads all TLS material (failing on bad material, before anything is served) and starts
    /// connecting to the downstreams in the background.
    pub fn start(config: &config::Config) -> Result<Self, StartError> {
        let metrics = Arc::new(metrics::Metrics::default());
        let acceptor = config
            .server
            .tls
            .as_ref()
            .map(tls::server::handle)
            .transpose()
            .map_err(StartError::ServerTls)?;
        let audit = config
            .audit
            .as_ref()
            .map(|audit| access::audit::Audit::open(audit, metrics.audit()).map(Arc::new))
            .transpose()
            .map_err(StartError::Audit)?;
        let bearer = config
            .server
            .oauth
            .as_ref()
            .map(|oauth| {
                let https = config.server.tls.is_some();
                access::Bearer::start(oauth, &config.mcp.path, https, metrics.clone()).map(Arc::new)
            })
            .transpose()
            .map_err(StartError::OauthTls)?;
        let gateway = Gateway::start(&config.mcp, metrics)?;
        let app = server::App::new(config, gateway.clone(), acceptor, audit.clone(), bearer);
        Ok(Self {
            gateway,
            app,
            audit,
            listen_address: config.server.listen_address,
            certificates: ArcSwap::from_pointee(tls::expiry::watched(config)),
            server_tls: ArcSwap::from_pointee(config.server.tls.clone()),
        })
    }

    /// Serves `listener` until `shutdown`, drains requests in flight, then stops every
    /// downstream (stdio children included) and waits for the audit writer. Certificate health
    /// is checked now and every 12 hours meanwhile.
    pub async fn run(&self, listener: TcpListener, shutdown: CancellationToken) {
        let health = tokio::spawn(tls::expiry::monitor(
            self.certificates.load_full().as_ref().clone(),
            self.gateway.metrics().clone(),
            shutdown.clone(),
        ));
        server::run(listener, self.app.clone(), shutdown, DRAIN_TIMEOUT).await;
        health.abort();
        self.gateway.stop().await;
        if let Some(audit) = &self.audit {
            audit.finish(AUDIT_FLUSH_TIMEOUT).await;
        }
    }

    /// Applies a new configuration: downstreams added, removed or changed; unchanged ones
    /// keep their sessions and have their TLS material re-read. On error nothing was changed.
    pub async fn reload(
        &self,
        config: &config::Config,
    ) -> Result<(ReloadReport, TlsReport), StartError> {
        if config.server.listen_address != self.listen_address {
            tracing::warn!(
                current = %self.listen_address,
                configured = %config.server.listen_address,
                "listen_address changed: restart the gateway to apply"
            );
        }
        let report = self.gateway.reload(&config.mcp).await?;
        self.app.reload(config);
        self.server_tls.store(Arc::new(config.server.tls.clone()));
        self.certificates
            .store(Arc::new(tls::expiry::watched(config)));
        Ok((report, self.reload_tls()))
    }

    /// Re-reads every certificate, key and CA file of the configuration in force: new
    /// connections use the new material, established ones are not dropped, and material that
    /// fails to load is kept in its old version (the reason is logged and returned).
    pub fn reload_tls(&self) -> TlsReport {
        let report = TlsReport {
            downstreams: self.gateway.reload_tls(),
            server: self
                .app
                .reload_tls(self.server_tls.load().as_ref().as_ref()),
        };
        tls::expiry::check(&self.certificates.load(), self.gateway.metrics());
        report
    }

    /// (connected, configured) downstreams.
    pub fn status(&self) -> (usize, usize) {
        self.gateway.status()
    }
}

/// Starts a gateway on a bound listener and runs it until `shutdown` (tests bind port 0 and
/// own the shutdown token).
pub async fn serve(
    config: &config::Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    Nexus::start(config)?.run(listener, shutdown).await;
    Ok(())
}
