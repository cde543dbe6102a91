//! Unix signals the gateway acts on.

use tokio::signal::unix::{SignalKind, signal};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM (systemctl stop) or SIGINT (Ctrl-C): drain and exit.
    Shutdown,
    /// SIGHUP (systemctl reload).
    Reload,
}

/// Listens for the signals the gateway handles. Creating it installs the handlers, so a signal
/// arriving later is never lost (SIGHUP's default action would otherwise kill the process).
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.terminate.recv() => Request::Shutdown,
            _ = self.interrupt.recv() => Request::Shutdown,
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}
