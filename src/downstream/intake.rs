//! What one downstream connection may send the gateway unasked, and what becomes of the rest.
//!
//! Every transport's reader hands what it reads to the dispatcher, which asks the [`Intake`]
//! first: a server's own messages (notifications and requests) are admitted up to
//! `notifications_per_second`; list changes only raise a flag ([`ChangeSignal`]); other
//! notifications wait in a bounded backlog. What is refused, too big or malformed is dropped,
//! counted in `/metrics` (`nexus_downstream_dropped_total{server,reason}`) and logged at most
//! once per burst, so a flood costs neither memory nor a log line per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::changes::{Change, ChangeSignal};
use super::dispatch::{CALL_EVENTS, UNSENT_REPLIES};
use crate::config::Limits;
use crate::metrics::Metrics;

/// Server notifications (log messages, resource updates) that may wait for the supervisor.
pub const NOTIFICATION_BACKLOG: usize = 256;
/// After the first line about a kind of drop, at most one more per this period (with a count).
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Why something a downstream sent was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Over `notifications_per_second`.
    RateLimited,
    /// Over `max_message_size`.
    Oversized,
    /// Not JSON, not UTF-8, or not JSON-RPC.
    Malformed,
    /// A queue of what it sent was full: server notifications, a call's events, or replies.
    Backlog,
}

impl Dropped {
    const ALL: [Dropped; 4] = [
        Dropped::RateLimited,
        Dropped::Oversized,
        Dropped::Malformed,
        Dropped::Backlog,
    ];

    /// The `reason` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Dropped::RateLimited => "rate_limited",
            Dropped::Oversized => "oversized",
            Dropped::Malformed => "malformed",
            Dropped::Backlog => "backlog_full",
        }
    }

    fn explain(self, limits: &Limits) -> String {
        match self {
            Dropped::RateLimited => format!(
                "the server sends more than {} notifications and requests per second \
                 (`notifications_per_second` in [mcp.limits] or the server's [limits])",
                limits.notifications_per_second
            ),
            Dropped::Oversized => format!(
                "a message exceeded {} bytes (`max_message_size` in [mcp.limits] or the server's [limits])",
                limits.max_message_size
            ),
            Dropped::Malformed => "a message is not JSON-RPC (or not UTF-8)".to_owned(),
            // Raised by three queues: name each bound, not only the notification backlog's.
            Dropped::Backlog => format!(
                "messages waited faster than they were relayed: more than \
                 {NOTIFICATION_BACKLOG} server notifications, {CALL_EVENTS} events of one call, \
                 or {UNSENT_REPLIES} replies to its own requests"
            ),
        }
    }
}

/// A drop counter and its throttled log line.
struct Tally {
    total: Arc<AtomicU64>,
    // Seconds since `Intake::started` of the last log line, plus one (0: never logged).
    logged_at: AtomicU64,
    since_log: AtomicU64,
}

/// The admission policy of one downstream connection.
pub struct Intake {
    server: Arc<str>,
    limits: Limits,
    started: Instant,
    // (second since `started` << 32) | messages admitted in that second.
    window: AtomicU64,
    lists: Arc<ChangeSignal>,
    notifications: mpsc::Sender<Value>,
    tallies: [Tally; 4],
}

impl Intake {
    /// An intake whose list changes raise `lists` and whose other server notifications go to
    /// `notifications`.
    pub fn new(
        server: Arc<str>,
        limits: Limits,
        metrics: &Metrics,
        lists: Arc<ChangeSignal>,
        notifications: mpsc::Sender<Value>,
    ) -> Self {
        let tallies = Dropped::ALL.map(|reason| Tally {
            total: metrics.downstream_dropped(&server, reason.label()),
            logged_at: AtomicU64::new(0),
            since_log: AtomicU64::new(0),
        });
        Self {
            server,
            limits,
            started: Instant::now(),
            window: AtomicU64::new(0),
            lists,
            notifications,
            tallies,
        }
    }

    /// The limits of this server.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The server's name.
    pub fn server(&self) -> &Arc<str> {
        &self.server
    }

    /// Admits one message the server sent on its own (a notification or request), or counts
    /// it as dropped. A fixed one-second window: cheap, and a burst at a window's edge is
    /// still bounded by twice the rate.
    pub fn admit(&self) -> bool {
        let second = self.started.elapsed().as_secs();
        let limit = u64::from(self.limits.notifications_per_second);
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, count) = (current >> 32, current & u64::from(u32::MAX));
            let next = if window == second {
                if count >= limit {
                    self.dropped(Dropped::RateLimited);
                    return false;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a notification addressed to no call: a list change raises its flag, anything
    /// else joins the bounded backlog.
    pub fn server_notification(&self, message: Value) {
        let method = crate::mcp::jsonrpc::method(&message).unwrap_or_default();
        if let Some(change) = Change::of_notification(method) {
            return self.lists.raise(change);
        }
        if self.notifications.try_send(message).is_err() {
            self.dropped(Dropped::Backlog);
        }
    }

    /// Counts a drop and logs it: the first at once, then at most once per 30 s with
    /// the number dropped since the previous line.
    pub fn dropped(&self, reason: Dropped) {
        let tally = &self.tallies[reason as usize];
        tally.total.fetch_add(1, Ordering::Relaxed);
        let since = tally.since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_secs() + 1;
        let last = tally.logged_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_secs();
        if due
            && tally
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tally.since_log.fetch_sub(since, Ordering::Relaxed);
            tracing::warn!(
                server = %self.server,
                reason = reason.label(),
                dropped = since,
                "dropping what the downstream sent: {}; further drops are counted in /metrics \
                 and logged at most every {}s",
                reason.explain(&self.limits),
                LOG_EVERY.as_secs()
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An intake for unit tests, with its list signal and backlog receiver.
    pub(crate) fn intake(rate: u32) -> (Intake, Arc<ChangeSignal>, mpsc::Receiver<Value>) {
        let limits = Limits {
            notifications_per_second: rate,
            ..Limits::default()
        };
        let lists = Arc::new(ChangeSignal::default());
        let (sender, receiver) = mpsc::channel(NOTIFICATION_BACKLOG);
        let metrics = Metrics::default();
        let intake = Intake::new("t".into(), limits, &metrics, lists.clone(), sender);
        (intake, lists, receiver)
    }

    #[test]
    fn admits_up_to_the_rate_then_drops() {
        let (intake, ..) = intake(100);
        let admitted = (0..1000).filter(|_| intake.admit()).count();
        // One window, or two when the loop straddles a second.
        assert!((100..=200).contains(&admitted), "{admitted}");
        let dropped = intake.tallies[Dropped::RateLimited as usize]
            .total
            .load(Ordering::Relaxed);
        assert_eq!(dropped as usize, 1000 - admitted);
    }

    #[test]
    fn the_backlog_is_bounded() {
        let (intake, _, receiver) = intake(u32::MAX);
        let log = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/message"});
        for _ in 0..NOTIFICATION_BACKLOG * 3 {
            intake.server_notification(log.clone());
        }
        assert_eq!(receiver.len(), NOTIFICATION_BACKLOG);
    }
}
