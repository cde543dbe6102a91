//! Admission at the accept loop: a cap on client connections open at once, kept below the
//! open-file limit so the gateway never starves itself (or its downstreams) of descriptors;
//! a clean refusal beyond it; and accept errors that back off and are logged once per episode
//! rather than once per attempt.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Answer to a plain-HTTP connection over the cap, written without waiting.
const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n\
    content-type: text/plain\r\ncontent-length: 68\r\n\r\n\
    too many connections; the gateway's [server.limits] max_connections\n";
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Connections open at once, at most `max`.
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: usize,
    // Whether "cap reached" was logged since the last admission; the accept loop is one task.
    full_logged: bool,
}

impl ConnectionCap {
    /// A cap of `configured`, lowered to half the process's open-file limit (the other half is
    /// left to downstream connections, stdio pipes and files), with a warning when lowered.
    pub fn new(configured: usize) -> Self {
        let max = match open_file_limit() {
            Some(files) if configured > files / 2 => {
                let max = (files / 2).max(1);
                tracing::warn!(
                    max_connections = configured,
                    open_file_limit = files,
                    lowered_to = max,
                    "[server.limits] max_connections lowered to half the open-file limit; raise LimitNOFILE to allow more"
                );
                max
            }
            _ => configured,
        };
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            full_logged: false,
        }
    }

    /// A slot for a new connection, held until the connection ends; `None` at the cap.
    pub fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.full_logged = false;
                Some(permit)
            }
            Err(_) => {
                if !self.full_logged {
                    self.full_logged = true;
                    tracing::warn!(
                        max_connections = self.max,
                        "connection cap reached; refusing new connections until some close"
                    );
                }
                None
            }
        }
    }

    /// Waits until every admitted connection has ended.
    pub async fn drained(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }
}

/// Closes a connection over the cap; plain HTTP clients first get a 503 saying why.
pub fn refuse(stream: TcpStream, plain_http: bool) {
    if plain_http {
        // Best effort and never waiting: a fresh socket's send buffer takes this at once.
        let _ = stream.try_write(REFUSAL);
    }
}

/// Exponential back-off after failed accepts (out of descriptors, out of memory), logging the
/// first failure of a run and the recovery, not every attempt.
#[derive(Default)]
pub struct AcceptBackoff {
    failures: u64,
    delay: Duration,
}

impl AcceptBackoff {
    /// Records a failed accept; returns how long to wait before the next one.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::error!(%error, "accepting a connection failed; backing off until it works again");
            self.delay = FIRST_BACKOFF;
        } else {
            self.delay = (self.delay * 2).min(MAX_BACKOFF);
        }
        self.failures += 1;
        self.delay
    }

    /// Records a successful accept.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failed = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// The soft `RLIMIT_NOFILE`, when there is a finite one.
fn open_file_limit() -> Option<usize> {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    usize::try_from(soft).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_declares_its_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let error = std::io::Error::from_raw_os_error(24);
        let delays: Vec<Duration> = (0..10).map(|_| backoff.failed(&error)).collect();
        assert_eq!(delays[0], FIRST_BACKOFF);
        assert_eq!(delays[1], FIRST_BACKOFF * 2);
        assert_eq!(delays[9], MAX_BACKOFF);
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), FIRST_BACKOFF);
    }

    #[test]
    fn admission_stops_at_the_cap_and_resumes() {
        let mut cap = ConnectionCap::new(2);
        let first = cap.admit().unwrap();
        let _second = cap.admit().unwrap();
        assert!(cap.admit().is_none());
        drop(first);
        assert!(cap.admit().is_some());
    }
}
