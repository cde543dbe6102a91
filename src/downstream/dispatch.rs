//! Routing of a downstream's messages to the calls waiting for them.
//!
//! Every transport feeds what it reads into one [`Dispatcher`]. The gateway gives each call its own
//! numeric id (and, when the client asked for progress, a progress token equal to that id), so
//! responses and progress find their call by a map lookup, whatever ids clients used.
//!
//! A downstream's own requests (sampling, elicitation, roots) go to the call they serve: the
//! one whose HTTP response stream carried them, or, when the transport has no such streams
//! (stdio, HTTP+SSE), the only client call in flight (the gateway's own calls, such as a list
//! refresh, never ask); with several in flight nothing says which call asked, so the request is
//! refused. Every reply to the downstream goes out through one
//! channel, which the connection drains onto its link.
//!
//! What the downstream sends on its own passes its [`Intake`] first. A call's events wait in a
//! bounded channel (a client that does not read its progress loses some, the gateway holds no
//! more than [`CALL_EVENTS`] of them); a slot of it is reserved for the response, so that is
//! never lost, and comes after every event sent before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use super::intake::{Dropped, Intake};
use crate::mcp::jsonrpc::{self, INTERNAL_ERROR, Kind, METHOD_NOT_FOUND, RpcError};

/// Notifications and requests that may wait for one call's reader.
pub const CALL_EVENTS: usize = 128;
/// Replies to the downstream's own requests that may wait to be sent; past it, its further
/// requests are dropped unanswered (a server that pings faster than it reads the answers).
pub const UNSENT_REPLIES: usize = 256;

/// Something a downstream sent about one in-flight call.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification addressed to the call (progress, a log message on its stream).
    Notification(Value),
    /// The final response (or an error the gateway made up for it, e.g. the child exited).
    Response(Value),
    /// A request of the downstream made while serving the call (sampling, elicitation, roots).
    Request(ServerRequest),
}

/// A downstream's request waiting for its answer: one it sent (handshake era) or one of the
/// `inputRequests` of its `input_required` result (stateless era). Dropped unanswered, it
/// answers itself with an error, so the downstream never waits for a reply that cannot come.
#[derive(Debug)]
pub struct ServerRequest {
    message: Value,
    replies: mpsc::UnboundedSender<Value>,
    answered: bool,
}

impl ServerRequest {
    /// A request whose answer (or refusal) is sent, with the request's own id, to `replies`.
    pub fn new(message: Value, replies: mpsc::UnboundedSender<Value>) -> Self {
        Self {
            message,
            replies,
            answered: false,
        }
    }

    /// The request as the downstream sent it.
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The method, e.g. `sampling/createMessage`.
    pub fn method(&self) -> &str {
        jsonrpc::method(&self.message).unwrap_or_default()
    }

    /// Sends `response` (a client's answer, whatever id it carries) back with the downstream's id.
    pub fn answer(mut self, mut response: Value) {
        response["id"] = self.id();
        self.send(response);
    }

    /// Answers with an error.
    pub fn refuse(mut self, code: i64, reason: impl Into<String>) {
        let error = jsonrpc::error(self.id(), code, reason);
        self.send(error);
    }

    /// The request itself when the client's declared `capabilities` allow sending it;
    /// otherwise it is refused, naming what is missing.
    pub fn permitted_by(self, capabilities: &Value) -> Option<Self> {
        let needed = match self.method() {
            "sampling/createMessage" => "/sampling",
            "elicitation/create"
                if self.message.pointer("/params/mode") == Some(&Value::from("url")) =>
            {
                "/elicitation/url"
            }
            "elicitation/create" => "/elicitation",
            "roots/list" => "/roots",
            method => {
                let reason = format!("Method not found: {method}");
                self.refuse(METHOD_NOT_FOUND, reason);
                return None;
            }
        };
        if capabilities.pointer(needed).is_none() {
            let capability = needed[1..].replace('/', ".");
            let reason =
                format!("the gateway's client did not declare the `{capability}` capability");
            self.refuse(METHOD_NOT_FOUND, reason);
            return None;
        }
        Some(self)
    }

    fn id(&self) -> Value {
        self.message.get("id").cloned().unwrap_or(Value::Null)
    }

    fn send(&mut self, reply: Value) {
        self.answered = true;
        let _ = self.replies.send(reply);
    }
}

impl Drop for ServerRequest {
    fn drop(&mut self) {
        if !self.answered {
            let reason = format!("the gateway's client did not answer `{}`", self.method());
            let error = jsonrpc::error(self.id(), INTERNAL_ERROR, reason);
            self.send(error);
        }
    }
}

/// A call waiting for its response.
struct Pending {
    events: mpsc::Sender<CallEvent>,
    response: mpsc::OwnedPermit<CallEvent>,
    for_client: bool,
}

impl Pending {
    fn respond(self, response: Value) {
        self.response.send(CallEvent::Response(response));
    }
}

/// Pending calls of one downstream connection.
pub struct Dispatcher {
    // A std Mutex: the critical sections are a map insert/remove, never an `.await`.
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    intake: Arc<Intake>,
    replies: mpsc::UnboundedSender<Value>,
    // Every admitted request yields exactly one reply (an unanswered one refuses itself), so
    // this counts what `replies` holds or is being sent; see [`Dispatcher::reply_sent`].
    unsent_replies: AtomicUsize,
}

impl Dispatcher {
    /// A dispatcher that admits what the downstream sends on its own through `intake` and
    /// whose replies to the downstream go to `replies`.
    pub fn new(intake: Arc<Intake>, replies: mpsc::UnboundedSender<Value>) -> Self {
        Self {
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            intake,
            replies,
            unsent_replies: AtomicUsize::new(0),
        }
    }

    /// Tells that one reply from `replies` has been sent (or given up on).
    pub fn reply_sent(&self) {
        self.unsent_replies.fetch_sub(1, Ordering::Relaxed);
    }

    /// The admission policy (and limits) of this connection's downstream.
    pub fn intake(&self) -> &Arc<Intake> {
        &self.intake
    }

    /// Reserves an id for a new call and the channels its events arrive on. `for_client` says
    /// whether it relays a client's request (see the module doc).
    pub fn register(&self, for_client: bool) -> (u64, mpsc::Receiver<CallEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = mpsc::channel(CALL_EVENTS + 1);
        let response = events
            .clone()
            .try_reserve_owned()
            .expect("BUG: a new channel has room");
        let pending = Pending {
            events,
            response,
            for_client,
        };
        self.lock().insert(id, pending);
        (id, receiver)
    }

    /// Answers call `id` with `error` (e.g. its response was too big to read). Returns whether
    /// the call was still pending.
    pub fn fail(&self, id: u64, error: &RpcError) -> bool {
        let Some(call) = self.lock().remove(&id) else {
            return false;
        };
        call.respond(error.to_response(Value::from(id)));
        true
    }

    /// Forgets a call (finished, timed out or abandoned). Returns whether it was still pending.
    pub fn unregister(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Handles a message that exceeded `max_message_size`, of which only `head` was kept: the
    /// call it answered (the one whose stream carried it, or the one its id names) fails with
    /// an error naming the limit.
    pub fn oversized(&self, head: &[u8], stream_of: Option<u64>) {
        self.intake.dropped(Dropped::Oversized);
        let id = super::oversized::top_level_id(head).or(stream_of);
        if let Some(id) = id {
            let error = super::oversized::error(self.intake.server(), self.intake.limits());
            self.fail(id, &error);
        }
    }

    /// Parses and routes one message (a stdio line, an SSE event's data); one that is not JSON
    /// (or not UTF-8) is dropped and counted.
    pub fn dispatch_bytes(&self, line: &[u8], stream_of: Option<u64>) {
        match serde_json::from_slice(line) {
            Ok(message) => self.dispatch_all(message, stream_of),
            Err(_) => self.intake.dropped(Dropped::Malformed),
        }
    }

    /// Routes one message, or each message of a batch.
    pub fn dispatch_all(&self, message: Value, stream_of: Option<u64>) {
        match message {
            Value::Array(batch) => {
                for message in batch {
                    self.dispatch(message, stream_of);
                }
            }
            single => self.dispatch(single, stream_of),
        }
    }

    /// Routes one message read from the downstream. `stream_of` is the call whose HTTP response
    /// stream carried it, if any.
    pub fn dispatch(&self, message: Value, stream_of: Option<u64>) {
        match jsonrpc::kind(&message) {
            Some(Kind::Response) => {
                if let Some(id) = message.get("id").and_then(Value::as_u64)
                    && let Some(call) = self.lock().remove(&id)
                {
                    call.respond(message);
                }
            }
            Some(Kind::Notification) if self.intake.admit() => {
                self.route_notification(message, stream_of)
            }
            Some(Kind::Request) if self.intake.admit() => self.route_request(message, stream_of),
            // Over the rate: dropped unanswered, as a reply would queue what the limit bounds.
            Some(Kind::Notification | Kind::Request) => {}
            None => self.intake.dropped(Dropped::Malformed),
        }
    }

    /// `ping` is answered here; other requests go to the call they serve, if one can be told.
    fn route_request(&self, message: Value, stream_of: Option<u64>) {
        if self.unsent_replies.fetch_add(1, Ordering::Relaxed) >= UNSENT_REPLIES {
            self.unsent_replies.fetch_sub(1, Ordering::Relaxed);
            return self.intake.dropped(Dropped::Backlog);
        }
        let request = ServerRequest::new(message, self.replies.clone());
        if request.method() == "ping" {
            let id = request.id();
            return request.answer(jsonrpc::result(id, serde_json::json!({})));
        }
        let pending = self.lock();
        let call = match stream_of {
            Some(id) => pending.get(&id),
            None => {
                let mut clients = pending.values().filter(|call| call.for_client);
                match (clients.next(), clients.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        };
        match call {
            Some(call) => {
                // A call that is gone or not reading drops the request, which answers itself.
                let _ = call.events.try_send(CallEvent::Request(request));
            }
            None => {
                drop(pending);
                let method = request.method().to_owned();
                request.refuse(
                    METHOD_NOT_FOUND,
                    format!("the gateway cannot tell which call `{method}` belongs to"),
                );
            }
        }
    }

    fn route_notification(&self, message: Value, stream_of: Option<u64>) {
        let addressed = progress_token(&message).or(stream_of);
        if let Some(id) = addressed
            && let Some(call) = self.lock().get(&id)
        {
            if call
                .events
                .try_send(CallEvent::Notification(message))
                .is_err()
            {
                self.intake.dropped(Dropped::Backlog);
            }
            return;
        }
        self.intake.server_notification(message);
    }

    /// Fails every pending call with `error` (the connection is gone).
    pub fn fail_all(&self, error: &RpcError) {
        for (id, call) in self.lock().drain() {
            call.respond(error.to_response(Value::from(id)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent (single operations).
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The gateway's progress tokens are its numeric call ids.
fn progress_token(message: &Value) -> Option<u64> {
    if jsonrpc::method(message) != Some("notifications/progress") {
        return None;
    }
    message
        .pointer("/params/progressToken")
        .and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::downstream::changes::Change;

    fn dispatcher() -> (Dispatcher, mpsc::Receiver<Value>) {
        dispatcher_with_replies().0
    }

    type Channels = (
        (Dispatcher, mpsc::Receiver<Value>),
        mpsc::UnboundedReceiver<Value>,
    );

    fn dispatcher_with_replies() -> Channels {
        let (intake, _, receiver) = crate::downstream::intake::tests::intake(1000);
        let (replies, replied) = mpsc::unbounded_channel();
        (
            (Dispatcher::new(Arc::new(intake), replies), receiver),
            replied,
        )
    }

    #[test]
    fn routes_responses_and_progress_to_their_call() {
        let (dispatcher, mut server) = dispatcher();
        let (id, mut events) = dispatcher.register(true);
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken": id, "progress": 1}});
        dispatcher.dispatch(progress, None);
        dispatcher.dispatch(json!({"jsonrpc":"2.0","id": id, "result": {}}), None);
        assert!(matches!(events.try_recv(), Ok(CallEvent::Notification(_))));
        assert!(matches!(events.try_recv(), Ok(CallEvent::Response(_))));
        assert!(server.try_recv().is_err());
        assert!(!dispatcher.unregister(id), "a response completes the call");
    }

    #[test]
    fn unaddressed_notifications_go_to_the_server_channel() {
        let (dispatcher, mut server) = dispatcher();
        let log = json!({"jsonrpc":"2.0","method":"notifications/message","params":{}});
        dispatcher.dispatch(log.clone(), None);
        assert_eq!(server.try_recv().unwrap(), log);
    }

    #[tokio::test]
    async fn list_changes_only_raise_a_flag() {
        let (intake, lists, mut server) = crate::downstream::intake::tests::intake(u32::MAX);
        let (replies, _replied) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher::new(Arc::new(intake), replies);
        let changed = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        for _ in 0..10_000 {
            dispatcher.dispatch(changed.clone(), None);
        }
        assert!(server.try_recv().is_err(), "nothing is queued");
        assert_eq!(lists.take().await, [Change::Tools]);
    }

    #[test]
    fn a_flood_of_progress_keeps_a_bounded_backlog_and_the_response() {
        let (dispatcher, _server) = dispatcher();
        let (id, mut events) = dispatcher.register(true);
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken": id}});
        for _ in 0..CALL_EVENTS * 4 {
            dispatcher.dispatch(progress.clone(), None);
        }
        dispatcher.dispatch(json!({"jsonrpc":"2.0","id": id, "result": {}}), None);
        let mut notifications = 0;
        while let Ok(event) = events.try_recv() {
            match event {
                CallEvent::Notification(_) => notifications += 1,
                CallEvent::Response(_) => break,
                CallEvent::Request(_) => panic!("no request was sent"),
            }
        }
        assert_eq!(notifications, CALL_EVENTS);
    }

    #[test]
    fn a_failed_call_gets_the_error_as_its_response() {
        let (dispatcher, _server) = dispatcher();
        let (id, mut events) = dispatcher.register(true);
        assert!(dispatcher.fail(id, &RpcError::new(-1, "too big")));
        let Ok(CallEvent::Response(response)) = events.try_recv() else {
            panic!("no response")
        };
        assert_eq!(response["error"]["message"], "too big");
        assert!(!dispatcher.fail(id, &RpcError::new(-1, "again")));
    }

    #[test]
    fn stream_notifications_follow_their_stream() {
        let (dispatcher, _server) = dispatcher();
        let (id, mut events) = dispatcher.register(true);
        let log =
            json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}});
        dispatcher.dispatch(log, Some(id));
        assert!(matches!(events.try_recv(), Ok(CallEvent::Notification(_))));
    }

    #[test]
    fn fail_all_answers_every_pending_call() {
        let (dispatcher, _server) = dispatcher();
        let (_, mut first) = dispatcher.register(true);
        let (_, mut second) = dispatcher.register(true);
        dispatcher.fail_all(&RpcError::new(-1, "gone"));
        for events in [&mut first, &mut second] {
            let Ok(CallEvent::Response(response)) = events.try_recv() else {
                panic!("no response")
            };
            assert_eq!(response["error"]["message"], "gone");
        }
    }

    #[test]
    fn replies_waiting_to_be_sent_are_bounded() {
        let ((dispatcher, _server), replies) = dispatcher_with_replies();
        for i in 0..UNSENT_REPLIES * 2 {
            dispatcher.dispatch(json!({"jsonrpc":"2.0","id": i,"method":"ping"}), None);
        }
        assert_eq!(replies.len(), UNSENT_REPLIES);
        dispatcher.reply_sent();
        dispatcher.dispatch(
            json!({"jsonrpc":"2.0","id":"one more","method":"ping"}),
            None,
        );
        assert_eq!(replies.len(), UNSENT_REPLIES + 1);
    }

    #[test]
    fn server_ping_is_answered() {
        let ((dispatcher, _server), mut replies) = dispatcher_with_replies();
        dispatcher.dispatch(json!({"jsonrpc":"2.0","id":"s1","method":"ping"}), None);
        assert_eq!(replies.try_recv().unwrap()["result"], json!({}));
    }

    #[test]
    fn server_requests_reach_their_call_and_answer_with_the_original_id() {
        let ((dispatcher, _server), mut replies) = dispatcher_with_replies();
        let (id, mut events) = dispatcher.register(true);
        let sampling =
            json!({"jsonrpc":"2.0","id":"s7","method":"sampling/createMessage","params":{}});
        dispatcher.dispatch(sampling, Some(id));
        let Ok(CallEvent::Request(request)) = events.try_recv() else {
            panic!("no request event")
        };
        request.answer(json!({"jsonrpc":"2.0","id":99,"result":{"ok":true}}));
        assert_eq!(replies.try_recv().unwrap()["id"], "s7");
    }

    #[test]
    fn unassociated_or_dropped_server_requests_are_refused() {
        let ((dispatcher, _server), mut replies) = dispatcher_with_replies();
        let roots = json!({"jsonrpc":"2.0","id":1,"method":"roots/list"});
        dispatcher.dispatch(roots.clone(), None);
        assert_eq!(
            replies.try_recv().unwrap()["error"]["code"],
            METHOD_NOT_FOUND
        );
        // The only call in flight (stdio) gets it; dropping it unanswered refuses it.
        let (_, mut events) = dispatcher.register(true);
        dispatcher.dispatch(roots, None);
        drop(events.try_recv());
        assert_eq!(replies.try_recv().unwrap()["error"]["code"], INTERNAL_ERROR);
    }

    #[test]
    fn the_gateways_own_calls_do_not_make_a_stdio_request_ambiguous() {
        let ((dispatcher, _server), _replies) = dispatcher_with_replies();
        let (_, _refresh) = dispatcher.register(false);
        let (_, mut client) = dispatcher.register(true);
        let sampling =
            json!({"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}});
        dispatcher.dispatch(sampling, None);
        assert!(matches!(client.try_recv(), Ok(CallEvent::Request(_))));
    }
}
