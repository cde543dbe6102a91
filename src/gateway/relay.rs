//! A call relayed to a downstream, seen from the client's side: ids and progress tokens put back,
//! a timeout that progress restarts, and requests for the client bridged between the eras
//! ([`Bridge`]).

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::input::{InputRounds, Suspending};
use crate::access::audit::Pending;
use crate::downstream::{Call, CallEvent, ServerRequest};
use crate::mcp::jsonrpc::{self, DOWNSTREAM_UNAVAILABLE, RpcError};

/// What a relay yields for the client.
#[derive(Debug)]
pub enum Outgoing {
    /// A notification or the final response, ids and tokens already the client's.
    Message(Value),
    /// A request of the downstream for the client (sampling, elicitation, roots): the front end
    /// gives it an id of its own, or refuses it.
    Request(ServerRequest),
}

/// How a relay puts the downstream's questions (sampling, elicitation, roots) to the client.
pub enum Bridge {
    /// As they come: requests are yielded to the front end, `input_required` results pass
    /// through (a stateless downstream and a stateless client understand each other).
    Direct,
    /// A handshake-era client: a stateless downstream's `input_required` results become
    /// requests to it.
    Rounds(Box<InputRounds>),
    /// A stateless client: a handshake-era downstream's request becomes an `input_required`
    /// result and suspends the call until the client's retry.
    Suspending(Box<Suspending>),
}

/// A downstream call relayed to one client request.
pub struct Relay {
    call: Call,
    client_id: Value,
    client_token: Option<Value>,
    method: String,
    timeout: Duration,
    deadline: Instant,
    finished: bool,
    bridge: Bridge,
    // Written with the response; dropped unwritten (the client left): `cancelled`.
    audit: Option<Box<Pending>>,
}

impl Relay {
    /// Wraps a started call.
    pub fn new(
        call: Call,
        client_id: Value,
        client_token: Option<Value>,
        method: &str,
        timeout: Duration,
        bridge: Bridge,
    ) -> Self {
        Self {
            call,
            client_id,
            client_token,
            method: method.to_owned(),
            timeout,
            deadline: Instant::now() + timeout,
            finished: false,
            bridge,
            audit: None,
        }
    }

    /// Records the call in the audit trail once its response is known.
    pub fn audit(&mut self, pending: Pending) {
        self.audit = Some(Box::new(pending));
    }

    /// The `requestState` under which a suspended call waits for the client's retry.
    pub fn suspended_state(&self) -> Option<&str> {
        match &self.bridge {
            Bridge::Suspending(suspending) => suspending.state(),
            _ => None,
        }
    }

    /// Continues a suspended call for the client's retry (request `client_id`, `params`
    /// carrying the answer in `inputResponses`).
    pub fn resume(&mut self, client_id: Value, params: &Value) {
        if let Bridge::Suspending(suspending) = &mut self.bridge {
            suspending.resume(params);
        }
        self.client_id = client_id;
        self.finished = false;
        self.deadline = Instant::now() + self.timeout;
    }

    /// The next thing for the client: notifications and requests, then the response, then
    /// `None`.
    pub async fn next(&mut self) -> Option<Outgoing> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(request) = self.rounds().and_then(InputRounds::next_request) {
                return Some(self.ask(request));
            }
            if self.rounds().is_some_and(|rounds| rounds.waiting()) {
                if let Some(failed) = self.gather_input().await {
                    return Some(Outgoing::Message(failed));
                }
                continue;
            }
            let event = tokio::time::timeout_at(self.deadline, self.call.next()).await;
            let message = match event {
                Ok(Some(CallEvent::Request(request))) => match self.put(request) {
                    Some(outgoing) => return Some(outgoing),
                    None => continue,
                },
                Ok(Some(CallEvent::Notification(notification))) => self.restore_token(notification),
                Ok(Some(CallEvent::Response(response))) => match self.open_round(&response) {
                    Ok(true) => continue,
                    Ok(false) => self.finish(response),
                    Err(error) => self.fail(&error),
                },
                Ok(None) => self.fail(&RpcError::new(
                    DOWNSTREAM_UNAVAILABLE,
                    "the downstream connection was lost",
                )),
                Err(_) => self.fail_timed_out(),
            };
            return Some(Outgoing::Message(message));
        }
    }

    /// A request for the client. The downstream now waits for the client, who may take long
    /// (a person answers an elicitation): the timeout starts again.
    fn ask(&mut self, request: ServerRequest) -> Outgoing {
        self.deadline = Instant::now() + self.timeout;
        Outgoing::Request(request)
    }

    /// Puts a downstream's request to the client: as a request, or for a stateless client as
    /// an `input_required` result suspending the call (`None`: refused, as not declared).
    fn put(&mut self, request: ServerRequest) -> Option<Outgoing> {
        let Bridge::Suspending(suspending) = &mut self.bridge else {
            return Some(self.ask(request));
        };
        let result = suspending.suspend(request)?;
        self.finished = true;
        let message = jsonrpc::result(self.client_id.clone(), result);
        Some(Outgoing::Message(message))
    }

    fn rounds(&mut self) -> Option<&mut InputRounds> {
        match &mut self.bridge {
            Bridge::Rounds(rounds) => Some(rounds),
            _ => None,
        }
    }

    fn open_round(&mut self, response: &Value) -> Result<bool, RpcError> {
        match self.rounds() {
            Some(rounds) => rounds.open(response),
            None => Ok(false),
        }
    }

    /// Takes one answer of the client; once all are in, re-issues the call. Returns the
    /// client's error response when the call cannot go on.
    async fn gather_input(&mut self) -> Option<Value> {
        let deadline = self.deadline;
        let rounds = self.rounds().expect("BUG: only called with input rounds");
        let outcome = match tokio::time::timeout_at(deadline, rounds.collect()).await {
            Ok(Ok(())) if rounds.waiting() => return None,
            Ok(Ok(())) => rounds.retry().await,
            Ok(Err(error)) => Err(error),
            Err(_) => return Some(self.fail_timed_out()),
        };
        match outcome {
            Ok(call) => {
                self.call = call;
                self.deadline = Instant::now() + self.timeout;
                None
            }
            Err(error) => Some(self.fail(&error)),
        }
    }

    fn finish(&mut self, mut response: Value) -> Value {
        self.finished = true;
        response["id"] = self.client_id.clone();
        self.answered(&response);
        response
    }

    fn fail(&mut self, error: &RpcError) -> Value {
        self.finished = true;
        let response = error.to_response(self.client_id.clone());
        self.answered(&response);
        response
    }

    fn answered(&mut self, response: &Value) {
        if let Some(pending) = self.audit.take() {
            pending.answered(response);
        }
    }

    fn fail_timed_out(&mut self) -> Value {
        let error = self.call.timed_out(&self.method, self.timeout);
        self.fail(&error)
    }

    /// The method relayed (`tools/call`, ...).
    pub fn method(&self) -> &str {
        &self.method
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
