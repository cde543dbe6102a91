//! Handshake-era client sessions (`initialize` mints an `Mcp-Session-Id`).
//!
//! The store is a sharded map, so looking up a session never serializes unrelated requests.
//! A stateless (2026-07-28) request simply has no session; nothing here is required to serve it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::downstream::ServerRequest;

/// Sessions idle this long are forgotten (clients re-initialize on 404).
pub const IDLE_LIMIT: Duration = Duration::from_secs(3600);

/// One client session.
pub struct Session {
    /// `Mcp-Session-Id` (also its name as a resource subscriber).
    pub id: Arc<str>,
    /// The revision agreed in `initialize`.
    pub protocol_version: &'static str,
    /// The `capabilities` the client declared in `initialize`: which downstream requests
    /// (sampling, elicitation, roots) it may be sent.
    capabilities: Value,
    // Gateway-minted request id (as JSON text) -> the downstream request it stands for.
    asked: Mutex<HashMap<String, ServerRequest>>,
    next_ask: AtomicU64,
    closed: CancellationToken,
    // A child of `closed`: also cancelled alone at shutdown, which must end GET streams (so
    // connections can drain) but not the requests in flight (they are what draining waits for).
    streams: CancellationToken,
    // Client request id (as JSON text) -> cancellation of its relay. A std Mutex: insert/remove
    // only, never held across `.await`.
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    min_log_level: AtomicU8,
    last_seen: AtomicU64,
}

impl Session {
    fn new(protocol_version: &'static str, capabilities: Value) -> Self {
        let closed = CancellationToken::new();
        Self {
            id: format!("{:032x}", rand::random::<u128>()).into(),
            protocol_version,
            capabilities,
            asked: Mutex::default(),
            next_ask: AtomicU64::new(1),
            streams: closed.child_token(),
            closed,
            in_flight: Mutex::default(),
            min_log_level: AtomicU8::new(0),
            last_seen: AtomicU64::new(now()),
        }
    }

    /// Cancelled when the session ends (DELETE, expiry, shutdown).
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Cancelled when the session's notification streams must end (session ended, shutdown).
    pub fn streams_closed(&self) -> &CancellationToken {
        &self.streams
    }

    /// Records a request in flight; its token fires on `notifications/cancelled`.
    pub fn track(&self, id: &Value) -> CancellationToken {
        let token = self.closed.child_token();
        self.lock().insert(id.to_string(), token.clone());
        token
    }

    /// Forgets a finished request.
    pub fn untrack(&self, id: &Value) {
        self.lock().remove(&id.to_string());
    }

    /// Cancels a request in flight (client's `notifications/cancelled`).
    pub fn cancel(&self, id: &Value) {
        if let Some(token) = self.lock().remove(&id.to_string()) {
            token.cancel();
        }
    }

    /// `logging/setLevel`: log notifications below `level` are no longer sent to this client.
    pub fn set_log_level(&self, level: &str) {
        if let Some(position) = crate::mcp::era::level_index(level) {
            self.min_log_level.store(position as u8, Ordering::Relaxed);
        }
    }

    /// The lowest log level this client wants (everything until it calls `logging/setLevel`).
    pub fn log_level(&self) -> &'static str {
        crate::mcp::era::LEVELS[self.log_level_index()]
    }

    /// [`Session::log_level`] as an index into the levels.
    pub fn log_level_index(&self) -> usize {
        usize::from(self.min_log_level.load(Ordering::Relaxed))
    }

    /// Whether a server notification should reach this client.
    pub fn wants(&self, notification: &Value) -> bool {
        if notification.get("method").and_then(Value::as_str) != Some("notifications/message") {
            return true;
        }
        let level = notification
            .pointer("/params/level")
            .and_then(Value::as_str)
            .unwrap_or("info");
        let position = crate::mcp::era::level_index(level).unwrap_or(0);
        position as u8 >= self.min_log_level.load(Ordering::Relaxed)
    }

    /// The declared capabilities the gateway can relay to a stateless downstream (which then
    /// asks through `input_required` results): sampling, elicitation and roots.
    pub fn relayable_capabilities(&self) -> Value {
        let relayable = ["sampling", "elicitation", "roots"]
            .into_iter()
            .filter_map(|name| {
                let capability = self.capabilities.get(name)?;
                Some((name.to_owned(), capability.clone()))
            });
        Value::Object(relayable.collect())
    }

    /// Forwards a downstream's request to this client: returns it with an id minted for the
    /// session, or refuses it when the client did not declare the capability it needs.
    pub fn forward(&self, request: ServerRequest) -> Option<Value> {
        let request = request.permitted_by(&self.capabilities)?;
        let id = Value::from(format!(
            "nexus-{}",
            self.next_ask.fetch_add(1, Ordering::Relaxed)
        ));
        let mut message = request.message().clone();
        message["id"] = id.clone();
        lock(&self.asked).insert(id.to_string(), request);
        Some(message)
    }

    /// Takes the client's answer to a forwarded request back to the downstream (answers
    /// to unknown ids are dropped).
    pub fn answer(&self, response: Value) {
        let key = response.get("id").map(Value::to_string).unwrap_or_default();
        let request = lock(&self.asked).remove(&key);
        if let Some(request) = request {
            request.answer(response);
        }
    }

    /// Marks the session as used now.
    pub fn touch(&self) {
        self.last_seen.store(now(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        lock(&self.in_flight)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts and removes: a poisoned map is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every live session.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<String, Arc<Session>>,
}

impl Sessions {
    /// Creates a session for a client that agreed on `protocol_version`.
    pub fn create(&self, protocol_version: &'static str, capabilities: Value) -> Arc<Session> {
        let session = Arc::new(Session::new(protocol_version, capabilities));
        self.map.insert(session.id.to_string(), session.clone());
        session
    }

    /// Finds a session and marks it used.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.map.get(id).map(|entry| entry.value().clone())?;
        session.touch();
        Some(session)
    }

    /// Ends a session; returns whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        match self.map.remove(id) {
            Some((_, session)) => {
                session.closed.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends sessions idle longer than [`IDLE_LIMIT`].
    pub fn expire_idle(&self) {
        let cutoff = now().saturating_sub(IDLE_LIMIT.as_secs());
        self.map.retain(|_, session| {
            let keep = session.last_seen.load(Ordering::Relaxed) >= cutoff;
            if !keep {
                session.closed.cancel();
            }
            keep
        });
    }

    /// Shutdown: closes every session's GET streams so connections can drain; requests in
    /// flight run on to their end.
    pub fn close_all(&self) {
        for entry in self.map.iter() {
            entry.value().streams.cancel();
        }
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cancel_fires_the_tracked_token() {
        let sessions = Sessions::default();
        let session = sessions.create("2025-11-25", Value::Null);
        let token = session.track(&json!(7));
        session.cancel(&json!(7));
        assert!(token.is_cancelled());
        assert!(sessions.get(&session.id).is_some());
        assert!(sessions.remove(&session.id));
        assert!(session.closed().is_cancelled());
        assert!(sessions.get(&session.id).is_none());
    }

    #[test]
    fn shutdown_ends_streams_but_not_requests_in_flight() {
        let sessions = Sessions::default();
        let session = sessions.create("2025-11-25", Value::Null);
        let request = session.track(&json!(1));
        sessions.close_all();
        assert!(session.streams_closed().is_cancelled());
        assert!(
            !request.is_cancelled(),
            "draining waits for requests in flight"
        );
        assert!(sessions.remove(&session.id));
        assert!(
            request.is_cancelled(),
            "an ended session cancels its requests"
        );
    }

    #[test]
    fn log_level_filters_messages_only() {
        let session = Session::new("2025-11-25", Value::Null);
        session.set_log_level("warning");
        let log =
            |level: &str| json!({"method": "notifications/message", "params": {"level": level}});
        assert!(!session.wants(&log("info")));
        assert!(session.wants(&log("error")));
        assert!(session.wants(&json!({"method": "notifications/tools/list_changed"})));
    }
}
