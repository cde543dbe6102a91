//! Nexus: an MCP gateway on native OpenSSL.
//!
//! Layout (data flows one way, top to bottom):
//! - [`config`]: `nexus.toml` read, templated and resolved into types that cannot be half-set.
//! - [`downstream`]: connections to downstream MCP servers (stdio children, Streamable HTTP,
//!   legacy SSE), each supervised (timeouts, restart with backoff).
//! - [`gateway`]: the catalog built from every downstream (naming, routing, search/execute).
//! - [`server`]: the hyper listener: the MCP endpoint, `/health`, `/metrics`.
//! - [`service`]: life under systemd: signals, sd_notify readiness and watchdog, journal logs.
//! - [`cli`]: the command line (shared by the binary and the man page generator).
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod downstream;
pub mod gateway;
pub mod mcp;
pub mod server;
pub mod service;
pub mod tls;

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
    let gateway = gateway::Gateway::start(&config.mcp)?;
    let app = server::App::new(config, gateway.clone());
    // Ready: the caller bound the listener, the configuration and TLS material are loaded.
    let (connected, total) = gateway.status();
    service::notify::ready(&service::notify::status_text(connected, total));
    service::notify::spawn_status(gateway.clone(), shutdown.clone());
    server::run(listener, app, shutdown, DRAIN_TIMEOUT).await;
    gateway.stop().await;
    Ok(())
}
