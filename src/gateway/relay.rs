//! A call relayed to a downstream, seen from the client's side: ids and progress tokens put back,
//! a timeout that progress restarts.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::downstream::{Call, CallEvent};
use crate::mcp::jsonrpc::{self, DOWNSTREAM_UNAVAILABLE};

/// A downstream call relayed to one client request.
pub struct Relay {
    call: Call,
    client_id: Value,
    client_token: Option<Value>,
    method: String,
    timeout: Duration,
    deadline: Instant,
    finished: bool,
}

impl Relay {
    /// Wraps a started call.
    pub fn new(
        call: Call,
        client_id: Value,
        client_token: Option<Value>,
        method: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            call,
            client_id,
            client_token,
            method: method.to_owned(),
            timeout,
            deadline: Instant::now() + timeout,
            finished: false,
        }
    }

    /// The next message for the client: notifications, then the response, then `None`.
    pub async fn next(&mut self) -> Option<Value> {
        if self.finished {
            return None;
        }
        let event = tokio::time::timeout_at(self.deadline, self.call.next()).await;
        match event {
            Ok(Some(CallEvent::Notification(notification))) => {
                Some(self.restore_token(notification))
            }
            Ok(Some(CallEvent::Response(mut response))) => {
                self.finished = true;
                response["id"] = self.client_id.clone();
                Some(response)
            }
            Ok(None) => {
                self.finished = true;
                Some(jsonrpc::error(
                    self.client_id.clone(),
                    DOWNSTREAM_UNAVAILABLE,
                    "the downstream connection was lost",
                ))
            }
            Err(_) => {
                self.finished = true;
                let error = self.call.timed_out(&self.method, self.timeout);
                Some(error.to_response(self.client_id.clone()))
            }
        }
    }

    /// The id the client gave the request.
    pub fn client_id(&self) -> Value {
        self.client_id.clone()
    }

    /// Whether the response has been produced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn restore_token(&mut self, mut notification: Value) -> Value {
        if jsonrpc::method(&notification) == Some("notifications/progress") {
            // Progress shows the call is alive: the timeout starts again.
            self.deadline = Instant::now() + self.timeout;
            if let (Some(token), Some(slot)) = (
                &self.client_token,
                notification.pointer_mut("/params/progressToken"),
            ) {
                *slot = token.clone();
            }
        }
        notification
    }
}
