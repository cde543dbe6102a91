//! The HTTP front end: the MCP endpoint, `/health`, and the accept loop with graceful drain.

mod answer;
mod body;
mod endpoint;
pub mod guard;
pub mod session;
mod stateless;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::gateway::Gateway;
use body::Body;
use guard::Guard;
use session::Sessions;

/// What every connection's requests are served from.
pub struct App {
    gateway: Arc<Gateway>,
    sessions: Sessions,
    guard: arc_swap::ArcSwap<Guard>,
    mcp_path: Option<String>,
    health_path: Option<String>,
    /// Cancelled at shutdown: ends `subscriptions/listen` streams, which never end by themselves.
    streams_closed: tokio_util::sync::CancellationToken,
}

impl App {
    /// The front end for a configuration and a started gateway.
    pub fn new(config: &config::Config, gateway: Arc<Gateway>) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            sessions: Sessions::default(),
            guard: arc_swap::ArcSwap::from_pointee(Guard::new(&config.server)),
            mcp_path: config.mcp.enabled.then(|| config.mcp.path.clone()),
            health_path: config
                .server
                .health
                .enabled
                .then(|| config.server.health.path.clone()),
            streams_closed: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Applies the reloadable parts of `[server]` (allowed hosts and origins). The listen
    /// address and the endpoint paths need a restart, which is logged.
    pub fn reload(&self, config: &config::Config) {
        self.guard.store(Arc::new(Guard::new(&config.server)));
        let mcp_path = config.mcp.enabled.then(|| config.mcp.path.clone());
        let health_path = config
            .server
            .health
            .enabled
            .then(|| config.server.health.path.clone());
        if self.mcp_path != mcp_path || self.health_path != health_path {
            tracing::warn!(
                "[mcp] path/enabled or [server.health] changed: restart the gateway to apply"
            );
        }
    }

    async fn route(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let path = request.uri().path();
        if self.health_path.as_deref() == Some(path) && request.method() == Method::GET {
            return Ok(endpoint::health(&self));
        }
        if self.mcp_path.as_deref() != Some(path) {
            return Ok(body::empty(StatusCode::NOT_FOUND));
        }
        if let Err(refused) = self.guard.load().check(request.headers()) {
            tracing::warn!(%refused, "request refused");
            return Ok(body::rpc_error(
                StatusCode::FORBIDDEN,
                crate::mcp::jsonrpc::INVALID_REQUEST,
                refused.to_string(),
            ));
        }
        let response = match *request.method() {
            Method::POST => endpoint::post(&self, request).await,
            Method::GET => endpoint::get(&self, &request),
            Method::DELETE => endpoint::delete(&self, &request),
            _ => {
                let mut response = body::empty(StatusCode::METHOD_NOT_ALLOWED);
                response.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, POST, DELETE"),
                );
                response
            }
        };
        Ok(response)
    }
}

/// Serves `listener` until `shutdown`, then drains requests in flight for at most `drain`.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let expiry = tokio::spawn(expire_sessions(app.clone(), shutdown.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Nagle plus delayed ACK would hold small responses for ~40 ms.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| app.clone().route(request));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    expiry.abort();
    // Notification streams never end by themselves: close them so their connections can drain.
    app.sessions.close_all();
    app.streams_closed.cancel();
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = drain.as_secs(),
            "requests still in flight after the drain deadline; closing them"
        );
    }
}

async fn expire_sessions(app: Arc<App>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    while tokio::select! { _ = tick.tick() => true, _ = shutdown.cancelled() => false } {
        app.sessions.expire_idle();
    }
}
