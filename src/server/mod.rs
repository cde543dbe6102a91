//! The HTTP(S) front end: the MCP endpoint, `/health`, `/metrics`, and the accept loop with
//! graceful drain. With `[server.tls]` each connection's OpenSSL handshake runs in its own task,
//! never in the accept loop.

mod answer;
mod bearer;
mod body;
mod browser;
mod connection;
mod endpoint;
mod front_door;
pub mod guard;
mod held;
mod listener;
mod request_body;
pub mod session;
mod stateless;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::audit::Audit;
use crate::access::limits::FrontDoor;
use crate::access::{
    Caller, ClientCertificate, Credentials, IdentityError, VerifiedToken, client_ip,
};
use crate::config;
use crate::gateway::Gateway;
use crate::tls::server::AcceptorHandle;
use body::Body;
use connection::{Activity, Tracked};
use guard::Guard;
use listener::{AcceptBackoff, ConnectionCap};
use session::Sessions;

/// What every connection's requests are served from.
pub struct App {
    gateway: Arc<Gateway>,
    sessions: Sessions,
    held: held::HeldCalls,
    guard: arc_swap::ArcSwap<Guard>,
    /// `[server.cors]` and `[server.csrf]`, swapped on reload with the guard.
    browser: arc_swap::ArcSwap<browser::Browser>,
    mcp_path: Option<String>,
    health_path: Option<String>,
    /// Cancelled at shutdown: ends `subscriptions/listen` streams, which never end by themselves.
    streams_closed: tokio_util::sync::CancellationToken,
    metrics_path: Option<String>,
    /// `[server.limits]`, fixed at start.
    limits: config::ServerLimits,
    bodies: request_body::BodyBudget,
    /// `[server.rate_limits]`, fixed at start.
    front_door: Option<FrontDoor>,
    /// `[server.client_ip]`, fixed at start.
    client_ip: config::ClientIp,
    audit: Option<Arc<Audit>>,
    // Swapped on reload; whether HTTPS is on at all is fixed at start (it is the listener's
    // protocol).
    tls: Option<AcceptorHandle>,
    /// `[server.oauth]`, fixed at start: every MCP request needs a valid bearer token.
    bearer: Option<Arc<crate::access::Bearer>>,
    /// `[server.client_identification]`, swapped on reload.
    identification: arc_swap::ArcSwap<config::ClientIdentification>,
}

/// The connection a request came on, in each request's extensions.
#[derive(Debug, Clone)]
struct Peer {
    address: std::net::SocketAddr,
    /// The verified client certificate (mutual TLS).
    certificate: Option<Arc<ClientCertificate>>,
}

impl App {
    /// The front end for a configuration and a started gateway, recording to `audit`.
    pub fn new(
        config: &config::Config,
        gateway: Arc<Gateway>,
        acceptor: Option<AcceptorHandle>,
        audit: Option<Arc<Audit>>,
        bearer: Option<Arc<crate::access::Bearer>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            sessions: Sessions::new(&config.server.limits),
            held: held::HeldCalls::default(),
            guard: arc_swap::ArcSwap::from_pointee(Guard::new(&config.server)),
            browser: arc_swap::ArcSwap::from_pointee(browser::Browser::new(&config.server)),
            mcp_path: config.mcp.enabled.then(|| config.mcp.path.clone()),
            health_path: config
                .server
                .health
                .enabled
                .then(|| config.server.health.path.clone()),
            streams_closed: tokio_util::sync::CancellationToken::new(),
            metrics_path: config
                .server
                .metrics
                .enabled
                .then(|| config.server.metrics.path.clone()),
            limits: config.server.limits,
            bodies: request_body::BodyBudget::new(&config.server.limits),
            front_door: config.server.rate_limits.as_ref().map(FrontDoor::new),
            client_ip: config.server.client_ip,
            audit,
            tls: acceptor,
            bearer,
            identification: arc_swap::ArcSwap::from_pointee(
                config.server.client_identification.clone(),
            ),
        })
    }

    /// Applies the reloadable parts of `[server]` (allowed hosts and origins, CORS, CSRF). The listen
    /// address and the endpoint paths need a restart, which is logged.
    pub fn reload(&self, config: &config::Config) {
        self.guard.store(Arc::new(Guard::new(&config.server)));
        self.browser
            .store(Arc::new(browser::Browser::new(&config.server)));
        self.identification
            .store(Arc::new(config.server.client_identification.clone()));
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
        if self.limits != config.server.limits {
            tracing::warn!("[server.limits] changed: restart the gateway to apply");
        }
        let counted = self.front_door.as_ref().map(FrontDoor::config);
        if counted != config.server.rate_limits.as_ref()
            || self.client_ip != config.server.client_ip
        {
            tracing::warn!(
                "[server.rate_limits] or [server.client_ip] changed: restart the gateway to apply"
            );
        }
        let oauth_changed = match (&self.bearer, &config.server.oauth) {
            (Some(bearer), Some(oauth)) => !bearer.is_built_from(oauth),
            (bearer, oauth) => bearer.is_some() != oauth.is_some(),
        };
        if oauth_changed {
            tracing::warn!("[server.oauth] changed: restart the gateway to apply");
        }
    }

    /// The RFC 9728 metadata URL for a request to `uri` (with `[server.oauth]`).
    fn resource_metadata(&self, uri: &http::Uri, headers: &http::HeaderMap) -> Option<Arc<str>> {
        let bearer = self.bearer.as_ref()?;
        let host = bearer::host_of(uri, headers);
        Some(bearer.metadata_url(host.as_deref()).into())
    }

    /// Re-reads `[server.tls]` material (from `settings`, the configuration now in force): new
    /// connections get it, established ones keep theirs; on failure the old acceptor stays.
    /// `None` when the gateway serves plain HTTP.
    pub fn reload_tls(
        &self,
        settings: Option<&config::ServerTls>,
    ) -> Option<Result<(), crate::tls::Error>> {
        let Some(handle) = &self.tls else {
            if settings.is_some() {
                tracing::warn!("[server.tls] was added: restart the gateway to serve HTTPS");
            }
            return None;
        };
        let Some(settings) = settings else {
            tracing::warn!(
                "[server.tls] was removed: restart the gateway to serve plain HTTP; HTTPS stays on"
            );
            return None;
        };
        let result =
            crate::tls::server::acceptor(settings).map(|acceptor| handle.store(Arc::new(acceptor)));
        match &result {
            Ok(()) => tracing::info!("[server.tls] material reloaded"),
            Err(error) => {
                tracing::error!(%error, "[server.tls] reload failed; keeping the previous certificate and key")
            }
        }
        Some(result)
    }

    async fn route(
        self: Arc<Self>,
        request: Request<Incoming>,
        browser: &browser::Browser,
    ) -> Result<Response<Body>, Infallible> {
        let path = request.uri().path();
        let peer = request
            .extensions()
            .get::<Peer>()
            .cloned()
            .expect("BUG: every connection tags its requests with its peer");
        if let Some(certificate) = &peer.certificate {
            let subject = &certificate.subject;
            tracing::info!(client = %subject, method = %request.method(), path, "request");
        }
        // Before any route: `/health` and `/metrics` must not be readable through a rebound name.
        if let Err(refused) = self.guard.load().check(request.uri(), request.headers()) {
            tracing::warn!(%refused, "request refused");
            return Ok(body::rpc_error(
                StatusCode::FORBIDDEN,
                crate::mcp::jsonrpc::INVALID_REQUEST,
                refused.to_string(),
            ));
        }
        if let Some(answer) = browser.intercept(&request) {
            return Ok(answer);
        }
        if self.health_path.as_deref() == Some(path) && request.method() == Method::GET {
            return Ok(endpoint::health(&self));
        }
        if self.metrics_path.as_deref() == Some(path) && request.method() == Method::GET {
            return Ok(body::text(self.gateway.metrics().render()));
        }
        if let Some(bearer) = &self.bearer
            && let Some(document) = bearer::metadata(bearer, &request)
        {
            return Ok(document);
        }
        if self.mcp_path.as_deref() != Some(path) {
            return Ok(body::empty(StatusCode::NOT_FOUND));
        }
        let token = match &self.bearer {
            None => None,
            Some(bearer) => match bearer::authenticate(bearer, &peer, &request).await {
                Ok(token) => Some(token),
                Err(refused) => return Ok(refused),
            },
        };
        let identification = self.identification.load();
        let caller = caller(
            &peer,
            request.headers(),
            &self.client_ip,
            &identification,
            token.as_ref(),
        );
        let caller = match caller {
            Ok(caller) => Arc::new(caller),
            Err(refused) => {
                tracing::warn!(%refused, "request refused");
                return Ok(body::rpc_error(
                    StatusCode::BAD_REQUEST,
                    crate::mcp::jsonrpc::INVALID_REQUEST,
                    refused.to_string(),
                ));
            }
        };
        if let Some(refused) = front_door::admit(&self, &caller) {
            return Ok(refused);
        }
        let response = match *request.method() {
            Method::POST => endpoint::post(&self, request, caller).await,
            Method::GET => endpoint::get(&self, &request, &caller),
            Method::DELETE => endpoint::delete(&self, &request, &caller),
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

/// The caller a request acts for (see [`crate::access::identity`]), at the address
/// `[server.client_ip]` takes from the headers, with the scopes of its verified access token.
fn caller(
    peer: &Peer,
    headers: &http::HeaderMap,
    client_ip: &config::ClientIp,
    identification: &config::ClientIdentification,
    token: Option<&VerifiedToken>,
) -> Result<Caller, IdentityError> {
    let credentials = Credentials {
        address: client_ip::resolve(client_ip, headers, peer.address.ip()),
        certificate: peer.certificate.as_deref(),
        headers,
        claims: token.map(|token| &token.claims),
    };
    let mut caller = crate::access::identity::identify(identification, credentials)?;
    if let Some(token) = token {
        caller.scopes = token.scopes.clone();
    }
    Ok(caller)
}

/// Serves `listener` until `shutdown`, then drains requests in flight for at most `drain`.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let builder = http_builder(&app.limits);
    let mut cap = ConnectionCap::new(app.limits.max_connections);
    let mut backoff = AcceptBackoff::default();
    let expiry = tokio::spawn(expire_sessions(app.clone(), shutdown.clone()));
    let retain = tokio::spawn(front_door::retain(app.clone(), shutdown.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let pause = backoff.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        backoff.succeeded();
        let Some(permit) = cap.admit() else {
            listener::refuse(stream, app.tls.is_none());
            continue;
        };
        // Nagle plus delayed ACK would hold small responses for ~40 ms.
        let _ = stream.set_nodelay(true);
        let (app, builder, shutdown) = (app.clone(), builder.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match app.tls.as_ref().map(|acceptor| acceptor.load_full()) {
                None => serve_connection(&builder, &shutdown, app, stream, None, peer).await,
                Some(acceptor) => {
                    let handshake =
                        accept_tls(&acceptor, stream, peer, app.limits.header_read_timeout);
                    let accepted = tokio::select! {
                        accepted = handshake => accepted,
                        () = shutdown.cancelled() => None,
                    };
                    let Some((stream, certificate)) = accepted else {
                        return;
                    };
                    serve_connection(&builder, &shutdown, app, stream, certificate, peer).await;
                }
            }
        });
    }
    expiry.abort();
    retain.abort();
    // Notification streams never end by themselves: close them so their connections can drain.
    app.sessions.close_all();
    app.streams_closed.cancel();
    if tokio::time::timeout(drain, cap.drained()).await.is_err() {
        tracing::warn!(
            seconds = drain.as_secs(),
            "requests still in flight after the drain deadline; closing them"
        );
    }
}

type Builder = auto::Builder<TokioExecutor>;

/// Largest request head (HTTP/1.1 read buffer) or header list (HTTP/2) accepted, in bytes.
const MAX_HEADER_BYTES: usize = 64 * 1024;

fn http_builder(limits: &config::ServerLimits) -> Builder {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

async fn serve_connection<I>(
    builder: &Builder,
    shutdown: &CancellationToken,
    app: Arc<App>,
    io: I,
    certificate: Option<Arc<ClientCertificate>>,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let limits = app.limits;
    let requests = activity.clone();
    let tag = Peer {
        address: peer,
        certificate,
    };
    let service = service_fn(move |mut request: Request<Incoming>| {
        let in_flight = requests.begin();
        request.extensions_mut().insert(tag.clone());
        let app = app.clone();
        async move {
            let response = browser::serve(app, request).await?;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    connection::supervise(connection, activity, limits, shutdown.clone(), peer).await;
}

/// The server side of the handshake; the verified client certificate when client certificates
/// are required. A failed handshake is logged and the connection dropped.
async fn accept_tls(
    acceptor: &openssl::ssl::SslAcceptor,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    timeout: Duration,
) -> Option<(
    tokio_openssl::SslStream<tokio::net::TcpStream>,
    Option<Arc<ClientCertificate>>,
)> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
    let mut stream = tokio_openssl::SslStream::new(ssl, stream).ok()?;
    let accepted = tokio::time::timeout(timeout, std::pin::Pin::new(&mut stream).accept()).await;
    match accepted {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let reason = match error.ssl_error() {
                Some(stack) => crate::tls::errors::reasons(stack),
                None => error.to_string(),
            };
            let verify = stream.ssl().verify_result();
            tracing::warn!(%peer, %reason, %verify, "client TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "client TLS handshake timed out");
            return None;
        }
    }
    let certificate = stream
        .ssl()
        .peer_certificate()
        .map(|cert| Arc::new(ClientCertificate::from_x509(&cert)));
    Some((stream, certificate))
}

async fn expire_sessions(app: Arc<App>, shutdown: CancellationToken) {
    // Often enough that a session outlives its idle limit by at most half of it.
    let period = (app.limits.session_idle_timeout / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    while tokio::select! { _ = tick.tick() => true, _ = shutdown.cancelled() => false } {
        app.sessions.expire_idle();
    }
}
