//! Nexus: an MCP gateway on native OpenSSL.
//!
//! Layout (data flows one way, top to bottom):
//! - [`config`]: `nexus.toml` read, templated and resolved into types that cannot be half-set.
//! - [`downstream`]: connections to downstream MCP servers (stdio children, Streamable HTTP,
//!   legacy SSE), each supervised (timeouts, restart with backoff).
//! - [`gateway`]: the catalog built from every downstream (naming, routing, search/execute).
//! - [`pkcs11`]: keys and certificates on PKCS#11 tokens, signed through an in-process OpenSSL
//!   provider (the crate's only `unsafe` code).
//! - [`server`]: the hyper listener: the MCP endpoint, `/health`, `/metrics`.
#![warn(missing_docs)]

pub mod config;
pub mod downstream;
pub mod gateway;
pub mod mcp;
pub mod pkcs11;
pub mod server;
pub mod service;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use gateway::{Gateway, ReloadReport, StartError};

/// How long requests in flight may run after a shutdown request (below systemd's default
/// 30 s stop timeout, so children are still stopped in order).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// A started gateway with its front end, ready to serve a listener.
pub struct Nexus {
    gateway: Arc<Gateway>,
    app: Arc<server::App>,
    listen_address: std::net::SocketAddr,
}

impl Nexus {
    /// Builds everything the configuration describes (failing on bad TLS material) and starts
    /// connecting to the downstreams in the background.
    pub fn start(config: &config::Config) -> Result<Self, StartError> {
        let gateway = Gateway::start(&config.mcp)?;
        let app = server::App::new(config, gateway.clone());
        Ok(Self {
            gateway,
            app,
            listen_address: config.server.listen_address,
        })
    }

    /// Serves `listener` until `shutdown`, drains requests in flight, then stops every
    /// downstream (stdio children included).
    pub async fn run(&self, listener: TcpListener, shutdown: CancellationToken) {
        server::run(listener, self.app.clone(), shutdown, DRAIN_TIMEOUT).await;
        self.gateway.stop().await;
    }

    /// Applies a new configuration: downstreams added, removed or changed; unchanged ones
    /// keep their sessions. On error nothing was changed.
    pub async fn reload(&self, config: &config::Config) -> Result<ReloadReport, StartError> {
        if config.server.listen_address != self.listen_address {
            tracing::warn!(
                current = %self.listen_address,
                configured = %config.server.listen_address,
                "listen_address changed: restart the gateway to apply"
            );
        }
        let report = self.gateway.reload(&config.mcp).await?;
        self.app.reload(config);
        Ok(report)
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
