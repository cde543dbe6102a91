//! Routing of a downstream's messages to the calls waiting for them.
//!
//! Every transport feeds what it reads into one [`Dispatcher`]. The gateway gives each call its own
//! numeric id (and, when the client asked for progress, a progress token equal to that id), so
//! responses and progress find their call by a map lookup, whatever ids clients used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::mcp::jsonrpc::{self, Kind, RpcError};

/// Something a downstream sent about one in-flight call.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification addressed to the call (progress, a log message on its stream).
    Notification(Value),
    /// The final response (or an error the gateway made up for it, e.g. the child exited).
    Response(Value),
}

/// Pending calls of one downstream connection.
pub struct Dispatcher {
    // A std Mutex: the critical sections are a map insert/remove, never an `.await`.
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<CallEvent>>>,
    next_id: AtomicU64,
    server_notifications: mpsc::UnboundedSender<Value>,
}

impl Dispatcher {
    /// A dispatcher whose unaddressed notifications go to `server_notifications`.
    pub fn new(server_notifications: mpsc::UnboundedSender<Value>) -> Self {
        Self {
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            server_notifications,
        }
    }

    /// Reserves an id for a new call and the channel its events arrive on.
    pub fn register(&self) -> (u64, mpsc::UnboundedReceiver<CallEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().insert(id, sender);
        (id, receiver)
    }

    /// Forgets a call (finished, timed out or abandoned). Returns whether it was still pending.
    pub fn unregister(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Routes one message read from the downstream. `stream_of` is the call whose HTTP response
    /// stream carried it, if any. Returns a reply to send back (for server-to-client requests).
    pub fn dispatch(&self, message: Value, stream_of: Option<u64>) -> Option<Value> {
        match jsonrpc::kind(&message) {
            Some(Kind::Response) => {
                if let Some(id) = message.get("id").and_then(Value::as_u64)
                    && let Some(call) = self.lock().remove(&id)
                {
                    let _ = call.send(CallEvent::Response(message));
                }
                None
            }
            Some(Kind::Notification) => {
                self.route_notification(message, stream_of);
                None
            }
            Some(Kind::Request) => Some(answer_server_request(&message)),
            None => {
                tracing::debug!("ignoring a message that is not JSON-RPC 2.0");
                None
            }
        }
    }

    fn route_notification(&self, message: Value, stream_of: Option<u64>) {
        let addressed = progress_token(&message).or(stream_of);
        if let Some(id) = addressed
            && let Some(call) = self.lock().get(&id)
        {
            let _ = call.send(CallEvent::Notification(message));
            return;
        }
        let _ = self.server_notifications.send(message);
    }

    /// Fails every pending call with `error` (the connection is gone).
    pub fn fail_all(&self, error: &RpcError) {
        for (id, call) in self.lock().drain() {
            let _ = call.send(CallEvent::Response(error.to_response(Value::from(id))));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<CallEvent>>> {
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

/// Requests from a downstream: `ping` is answered; anything else (sampling, elicitation, roots)
/// is refused, since the gateway does not advertise those capabilities to downstreams.
fn answer_server_request(request: &Value) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    match jsonrpc::method(request) {
        Some("ping") => jsonrpc::result(id, serde_json::json!({})),
        Some(method) => jsonrpc::error(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            format!("the gateway does not relay `{method}` requests from downstream servers"),
        ),
        None => jsonrpc::error(id, jsonrpc::INVALID_REQUEST, "request without a method"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dispatcher() -> (Dispatcher, mpsc::UnboundedReceiver<Value>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Dispatcher::new(sender), receiver)
    }

    #[test]
    fn routes_responses_and_progress_to_their_call() {
        let (dispatcher, mut server) = dispatcher();
        let (id, mut events) = dispatcher.register();
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken": id, "progress": 1}});
        assert!(dispatcher.dispatch(progress, None).is_none());
        dispatcher.dispatch(json!({"jsonrpc":"2.0","id": id, "result": {}}), None);
        assert!(matches!(events.try_recv(), Ok(CallEvent::Notification(_))));
        assert!(matches!(events.try_recv(), Ok(CallEvent::Response(_))));
        assert!(server.try_recv().is_err());
        assert!(!dispatcher.unregister(id), "a response completes the call");
    }

    #[test]
    fn unaddressed_notifications_go_to_the_server_channel() {
        let (dispatcher, mut server) = dispatcher();
        let changed = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        dispatcher.dispatch(changed.clone(), None);
        assert_eq!(server.try_recv().unwrap(), changed);
    }

    #[test]
    fn stream_notifications_follow_their_stream() {
        let (dispatcher, _server) = dispatcher();
        let (id, mut events) = dispatcher.register();
        let log =
            json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}});
        dispatcher.dispatch(log, Some(id));
        assert!(matches!(events.try_recv(), Ok(CallEvent::Notification(_))));
    }

    #[test]
    fn fail_all_answers_every_pending_call() {
        let (dispatcher, _server) = dispatcher();
        let (_, mut first) = dispatcher.register();
        let (_, mut second) = dispatcher.register();
        dispatcher.fail_all(&RpcError::new(-1, "gone"));
        for events in [&mut first, &mut second] {
            let Ok(CallEvent::Response(response)) = events.try_recv() else {
                panic!("no response")
            };
            assert_eq!(response["error"]["message"], "gone");
        }
    }

    #[test]
    fn server_ping_is_answered() {
        let (dispatcher, _server) = dispatcher();
        let reply = dispatcher.dispatch(json!({"jsonrpc":"2.0","id":"s1","method":"ping"}), None);
        assert_eq!(reply.unwrap()["result"], json!({}));
    }
}
