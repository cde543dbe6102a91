//! Handshake-era client sessions (`initialize` mints an `Mcp-Session-Id`).
//!
//! The store is a sharded map, so looking up a session never serializes unrelated requests.
//! A stateless (2026-07-28) request simply has no session; nothing here is required to serve it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::access::Principal;
use crate::config::ServerLimits;
use crate::downstream::ServerRequest;

/// The client capabilities a session keeps: the ones that decide which downstream requests it
/// may be sent. Anything else the client declares is not stored.
const KEPT_CAPABILITIES: [&str; 3] = ["sampling", "elicitation", "roots"];
/// Most bytes (as JSON) of kept capabilities per session; real clients send under 200.
pub const MAX_CAPABILITIES_BYTES: usize = 16 * 1024;

/// Why `initialize` did not get a session.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `max_sessions` sessions are live.
    #[error(
        "the gateway holds {max} sessions, its [server.limits] max_sessions; end unused sessions (DELETE) or retry later"
    )]
    Full {
        /// The limit.
        max: usize,
    },
    /// The principal already holds `max_sessions_per_identity` sessions.
    #[error(
        "{principal} holds {max} sessions, the [server.limits] max_sessions_per_identity; end unused sessions (DELETE) or retry later"
    )]
    TooManyForIdentity {
        /// Who.
        principal: Principal,
        /// The limit.
        max: usize,
    },
    /// The client's sampling/elicitation/roots capabilities are implausibly large.
    #[error(
        "the client's sampling, elicitation and roots capabilities take {bytes} bytes, more than the {MAX_CAPABILITIES_BYTES} a session keeps"
    )]
    CapabilitiesTooLarge {
        /// Their size as JSON.
        bytes: usize,
    },
}

/// One client session.
pub struct Session {
    /// `Mcp-Session-Id` (also its name as a resource subscriber).
    pub id: Arc<str>,
    /// The revision agreed in `initialize`.
    pub protocol_version: &'static str,
    /// Who opened it: only the same principal may use it.
    owner: Principal,
    /// Of the `capabilities` the client declared in `initialize`, the ones that say which
    /// downstream requests it may be sent ([`KEPT_CAPABILITIES`]).
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
    // GET notification streams open now.
    streams_open: Arc<AtomicUsize>,
}

/// A GET stream's place in its session's `max_streams_per_session`, given back on drop.
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    fn new(protocol_version: &'static str, capabilities: Value, owner: Principal) -> Self {
        let closed = CancellationToken::new();
        Self {
            id: format!("{:032x}", rand::random::<u128>()).into(),
            protocol_version,
            owner,
            capabilities,
            asked: Mutex::default(),
            next_ask: AtomicU64::new(1),
            streams: closed.child_token(),
            closed,
            in_flight: Mutex::default(),
            min_log_level: AtomicU8::new(0),
            last_seen: AtomicU64::new(now()),
            streams_open: Arc::default(),
        }
    }

    /// A place for one more GET stream, unless `max` are open.
    pub fn open_stream(&self, max: usize) -> Option<StreamSlot> {
        self.streams_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        Some(StreamSlot(self.streams_open.clone()))
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
        crate::mcp::era::log_wanted(notification, self.log_level_index())
    }

    /// The declared capabilities the gateway can relay to a stateless downstream (which then
    /// asks through `input_required` results): sampling, elicitation and roots.
    pub fn relayable_capabilities(&self) -> Value {
        self.capabilities.clone()
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
pub struct Sessions {
    map: DashMap<String, Arc<Session>>,
    // Counted apart from the map so that concurrent `initialize`s cannot overshoot the limit.
    live: AtomicUsize,
    max: usize,
    // Sessions per principal (anonymous callers are not counted here).
    owned: DashMap<Principal, usize>,
    max_per_identity: usize,
    idle_limit: Duration,
}

impl Sessions {
    /// An empty store bounded by `max_sessions` and `session_idle_timeout`.
    pub fn new(limits: &ServerLimits) -> Self {
        Self {
            map: DashMap::new(),
            live: AtomicUsize::new(0),
            max: limits.max_sessions,
            owned: DashMap::new(),
            max_per_identity: limits.max_sessions_per_identity,
            idle_limit: limits.session_idle_timeout,
        }
    }

    /// Creates a session for a client that agreed on `protocol_version` and declared
    /// `capabilities` (of which only [`KEPT_CAPABILITIES`] are kept).
    pub fn create(
        &self,
        protocol_version: &'static str,
        capabilities: &Value,
        owner: Principal,
    ) -> Result<Arc<Session>, Refused> {
        let kept: serde_json::Map<String, Value> = KEPT_CAPABILITIES
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), capabilities.get(name)?.clone())))
            .collect();
        let kept = Value::Object(kept);
        let bytes = serde_json::to_vec(&kept).map_or(0, |json| json.len());
        if bytes > MAX_CAPABILITIES_BYTES {
            return Err(Refused::CapabilitiesTooLarge { bytes });
        }
        self.claim(&owner)?;
        let admitted = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            })
            .is_ok();
        if !admitted {
            self.release(&owner);
            return Err(Refused::Full { max: self.max });
        }
        let session = Arc::new(Session::new(protocol_version, kept, owner));
        self.map.insert(session.id.to_string(), session.clone());
        Ok(session)
    }

    /// Counts one more session of `owner`, unless it holds `max_sessions_per_identity`.
    fn claim(&self, owner: &Principal) -> Result<(), Refused> {
        if *owner == Principal::Anonymous {
            return Ok(());
        }
        // The entry's shard lock makes check and increment one step.
        let mut count = self.owned.entry(owner.clone()).or_default();
        if *count >= self.max_per_identity {
            return Err(Refused::TooManyForIdentity {
                principal: owner.clone(),
                max: self.max_per_identity,
            });
        }
        *count += 1;
        Ok(())
    }

    fn release(&self, owner: &Principal) {
        if *owner == Principal::Anonymous {
            return;
        }
        self.owned.remove_if_mut(owner, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }

    /// Finds a session of `caller` and marks it used. Another principal's session is not
    /// found: its id is no key to it.
    pub fn get(&self, id: &str, caller: &Principal) -> Option<Arc<Session>> {
        let session = self
            .map
            .get(id)
            .filter(|entry| entry.value().owner == *caller)
            .map(|entry| entry.value().clone())?;
        session.touch();
        Some(session)
    }

    /// Ends a session; returns whether it existed.
    /// Ends a session of `caller`; `false` when it has none by that id.
    pub fn remove(&self, id: &str, caller: &Principal) -> bool {
        match self
            .map
            .remove_if(id, |_, session| session.owner == *caller)
        {
            Some((_, session)) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                self.release(&session.owner);
                session.closed.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends sessions idle longer than `session_idle_timeout`.
    pub fn expire_idle(&self) {
        let cutoff = now().saturating_sub(self.idle_limit.as_secs());
        self.map.retain(|_, session| {
            let keep = session.last_seen.load(Ordering::Relaxed) >= cutoff;
            if !keep {
                self.live.fetch_sub(1, Ordering::AcqRel);
                self.release(&session.owner);
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
        let sessions = Sessions::new(&ServerLimits::default());
        let session = sessions
            .create("2025-11-25", &Value::Null, Principal::Anonymous)
            .unwrap();
        let token = session.track(&json!(7));
        session.cancel(&json!(7));
        assert!(token.is_cancelled());
        assert!(sessions.get(&session.id, &Principal::Anonymous).is_some());
        assert!(sessions.remove(&session.id, &Principal::Anonymous));
        assert!(session.closed().is_cancelled());
        assert!(sessions.get(&session.id, &Principal::Anonymous).is_none());
    }

    #[test]
    fn a_session_is_found_and_ended_only_by_its_owner() {
        let sessions = Sessions::new(&ServerLimits::default());
        let alice = Principal::Certificate("CN=alice".into());
        let bob = Principal::Certificate("CN=bob".into());
        let session = sessions
            .create("2025-11-25", &Value::Null, alice.clone())
            .unwrap();
        assert!(sessions.get(&session.id, &bob).is_none());
        assert!(sessions.get(&session.id, &Principal::Anonymous).is_none());
        assert!(!sessions.remove(&session.id, &bob));
        assert!(!session.closed().is_cancelled());
        assert!(sessions.get(&session.id, &alice).is_some());
        assert!(sessions.remove(&session.id, &alice));
    }

    #[test]
    fn shutdown_ends_streams_but_not_requests_in_flight() {
        let sessions = Sessions::new(&ServerLimits::default());
        let session = sessions
            .create("2025-11-25", &Value::Null, Principal::Anonymous)
            .unwrap();
        let request = session.track(&json!(1));
        sessions.close_all();
        assert!(session.streams_closed().is_cancelled());
        assert!(
            !request.is_cancelled(),
            "draining waits for requests in flight"
        );
        assert!(sessions.remove(&session.id, &Principal::Anonymous));
        assert!(
            request.is_cancelled(),
            "an ended session cancels its requests"
        );
    }

    #[test]
    fn log_level_filters_messages_only() {
        let session = Session::new("2025-11-25", Value::Null, Principal::Anonymous);
        session.set_log_level("warning");
        let log =
            |level: &str| json!({"method": "notifications/message", "params": {"level": level}});
        assert!(!session.wants(&log("info")));
        assert!(session.wants(&log("error")));
        assert!(session.wants(&json!({"method": "notifications/tools/list_changed"})));
    }

    #[test]
    fn the_count_is_capped_and_freed_by_ending_a_session() {
        let limits = ServerLimits {
            max_sessions: 2,
            ..ServerLimits::default()
        };
        let sessions = Sessions::new(&limits);
        let first = sessions
            .create("2025-11-25", &json!({}), Principal::Anonymous)
            .unwrap();
        sessions
            .create("2025-11-25", &json!({}), Principal::Anonymous)
            .unwrap();
        assert_eq!(
            sessions
                .create("2025-11-25", &json!({}), Principal::Anonymous)
                .err(),
            Some(Refused::Full { max: 2 })
        );
        assert!(sessions.remove(&first.id, &Principal::Anonymous));
        assert!(
            sessions
                .create("2025-11-25", &json!({}), Principal::Anonymous)
                .is_ok()
        );
    }

    #[test]
    fn an_identity_holds_at_most_its_share_and_anonymous_callers_only_the_total() {
        let limits = ServerLimits {
            max_sessions: 4,
            max_sessions_per_identity: 2,
            ..ServerLimits::default()
        };
        let sessions = Sessions::new(&limits);
        let create = |owner: &Principal| sessions.create("2025-11-25", &json!({}), owner.clone());
        let alice = Principal::Certificate("CN=alice".into());
        let first = create(&alice).unwrap();
        create(&alice).unwrap();
        assert!(matches!(
            create(&alice),
            Err(Refused::TooManyForIdentity { max: 2, .. })
        ));
        create(&Principal::Anonymous).unwrap();
        create(&Principal::Anonymous).unwrap();
        assert_eq!(
            create(&Principal::Anonymous).err(),
            Some(Refused::Full { max: 4 })
        );
        assert!(sessions.remove(&first.id, &alice));
        create(&Principal::Anonymous).unwrap();
        assert_eq!(create(&alice).err(), Some(Refused::Full { max: 4 }));
        assert_eq!(
            *sessions.owned.get(&alice).unwrap(),
            1,
            "a refusal of the total gives the identity's place back"
        );
    }

    #[test]
    fn streams_are_counted_per_session_and_freed_on_drop() {
        let session = Session::new("2025-11-25", Value::Null, Principal::Anonymous);
        let first = session.open_stream(2).unwrap();
        let _second = session.open_stream(2).unwrap();
        assert!(session.open_stream(2).is_none());
        drop(first);
        assert!(session.open_stream(2).is_some());
    }

    #[test]
    fn only_the_capabilities_in_use_are_kept_and_they_are_bounded() {
        let sessions = Sessions::new(&ServerLimits::default());
        let declared = json!({
            "sampling": {}, "roots": {"listChanged": true},
            "experimental": {"blob": "x".repeat(1 << 20)},
        });
        let session = sessions
            .create("2025-11-25", &declared, Principal::Anonymous)
            .unwrap();
        assert_eq!(
            session.relayable_capabilities(),
            json!({"sampling": {}, "roots": {"listChanged": true}})
        );
        let huge = json!({"sampling": {"blob": "x".repeat(MAX_CAPABILITIES_BYTES)}});
        assert!(matches!(
            sessions.create("2025-11-25", &huge, Principal::Anonymous),
            Err(Refused::CapabilitiesTooLarge { .. })
        ));
        assert_eq!(sessions.len(), 1, "a refused session is not counted");
    }
}
