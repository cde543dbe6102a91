//! One client connection, HTTP/1.1 or HTTP/2: its requests in flight are counted, and it is
//! closed once it has carried none for too long (`header_read_timeout` before its first
//! request, `idle_timeout` after), so an idle or silent peer never holds a slot for good. A
//! response body streaming (an SSE stream) counts as in flight, however long it lasts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ServerLimits;

/// How long a connection told to close for idleness may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection is doing, shared between its requests and its supervisor.
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    // Milliseconds from `opened` to when the last request in flight ended.
    idle_since: AtomicU64,
    served: AtomicBool,
}

impl Activity {
    /// A connection that just opened.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    /// Counts a request in flight until the returned guard drops (with its response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection is next due a look: the end of its allowed idleness, or, while
    /// requests are in flight, one period from now.
    fn next_check(&self, limits: &ServerLimits) -> Instant {
        let allowed = self.allowed_idle(limits);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + allowed;
        }
        self.idle_start() + allowed
    }

    fn expired(&self, limits: &ServerLimits) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && Instant::now() >= self.idle_start() + self.allowed_idle(limits)
    }

    fn allowed_idle(&self, limits: &ServerLimits) -> Duration {
        if self.served.load(Ordering::Relaxed) {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        }
    }

    fn idle_start(&self) -> Instant {
        self.opened + Duration::from_millis(self.idle_since.load(Ordering::Acquire))
    }
}

/// A request in flight on its connection (see [`Activity::begin`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since.store(elapsed, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until it is sent or dropped.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        in_flight: InFlight,
    }
}

impl<B> Tracked<B> {
    /// `body`, counted as part of the request `in_flight`.
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self { body, in_flight }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

enum State {
    Open,
    // Told to close for idleness; dropped if still open at this instant.
    Closing(Instant),
    // Told to close for shutdown; the drain deadline bounds it.
    Draining,
}

/// Drives `connection` to its end: closes it when idle past its limit, and gracefully at
/// `shutdown` (requests in flight finish first).
pub async fn supervise<C>(
    connection: C,
    activity: Arc<Activity>,
    limits: ServerLimits,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let mut state = State::Open;
    loop {
        let wake = match state {
            State::Open => Some(activity.next_check(&limits)),
            State::Closing(deadline) => Some(deadline),
            State::Draining => None,
        };
        let timer = async {
            match wake {
                Some(wake) => tokio::time::sleep_until(wake).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = timer => match state {
                State::Open if activity.expired(&limits) => {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    state = State::Closing(Instant::now() + CLOSE_GRACE);
                }
                State::Open | State::Draining => {}
                State::Closing(_) => {
                    tracing::debug!(%peer, "an idle connection did not close in time; dropped");
                    return;
                }
            },
            () = shutdown.cancelled(), if matches!(state, State::Open) => {
                connection.as_mut().graceful_shutdown();
                state = State::Draining;
            }
        }
    }
}
