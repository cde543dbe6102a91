//! The systemd service protocol (sd_notify(3)): readiness, status, watchdog, reload, stop.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (run by hand, in tests), so callers
//! never ask whether they run under systemd. Failures to notify are logged, never fatal: a
//! gateway that serves but cannot tell systemd is better than one that exits.
//!
//! The unit uses `Type=notify` and `NotifyAccess=main`: only this process may notify, so a stdio
//! downstream that inherits `NOTIFY_SOCKET` cannot mark the service ready or feed its watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// How often the downstream status is polled for `STATUS=`.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// Set when another `STATUS=` replaced the downstream count (reload, ready): the status task
/// then sends the count again at its next poll even if it did not change.
static STATUS_REPLACED: AtomicBool = AtomicBool::new(false);

/// True when a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1` with `status`: the listener is bound and the configuration loaded (at start and
/// after each reload, which also ends a `RELOADING=1`).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
    STATUS_REPLACED.store(true, Ordering::Relaxed);
}

/// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253+ wants the timestamp; 252 ignores it).
/// Follow it with [`ready`] whether the reload succeeded or not.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
    STATUS_REPLACED.store(true, Ordering::Relaxed);
}

/// `STOPPING=1`: the drain has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `STATUS=` alone, shown by `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The status line for `connected` of `total` downstreams.
pub fn status_text(connected: usize, total: usize) -> String {
    format!("{connected}/{total} downstreams connected")
}

/// Sends `WATCHDOG=1` every half `WatchdogSec=` until `shutdown`, when the unit has a watchdog.
///
/// The pings come from a task on the async runtime on purpose: a runtime that no longer polls
/// its tasks (deadlock, a worker stuck in a blocking call) stops pinging, and systemd restarts
/// the gateway (SIGABRT, then `Restart=on-failure`).
pub fn spawn_watchdog(shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()? / 2;
    tracing::debug!(?period, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = ticks.tick() => send(&[NotifyState::Watchdog]),
                () = shutdown.cancelled() => return,
            }
        }
    }))
}

/// Keeps `STATUS=` at "N/M downstreams connected", polling `gateway` every second and sending
/// changes (and the count again after [`ready`] or [`reloading`] replaced it), until
/// `shutdown`. Does nothing outside systemd.
pub fn spawn_status(gateway: Arc<Gateway>, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    spawn_status_with(move || gateway.status(), shutdown)
}

/// [`spawn_status`] over any source of (connected, total), e.g. a reloadable gateway handle.
pub fn spawn_status_with<F>(poll: F, shutdown: CancellationToken) -> Option<JoinHandle<()>>
where
    F: Fn() -> (usize, usize) + Send + 'static,
{
    if !enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut last = None;
        let mut ticks = tokio::time::interval(STATUS_POLL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = poll();
            if last != Some(now) || STATUS_REPLACED.swap(false, Ordering::Relaxed) {
                status(&status_text(now.0, now.1));
                last = Some(now);
            }
        }
    }))
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_as_a_fraction() {
        assert_eq!(status_text(2, 3), "2/3 downstreams connected");
    }
}
