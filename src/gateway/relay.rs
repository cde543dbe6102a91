//! A call relayed to a downstream, seen from the client's side: ids and progress tokens put back,
//! a timeout that progress restarts, and (for a handshake-era client) a stateless downstream's
//! `input_required` results turned into requests to the client ([`InputRounds`]).

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::input::InputRounds;
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

/// A downstream call relayed to one client request.
pub struct Relay {
    call: Call,
    client_id: Value,
    client_token: Option<Value>,
    method: String,
    timeout: Duration,
    deadline: Instant,
    finished: bool,
    // Set when `input_required` results are answered by asking the client. Boxed: most
    // relays have none, and a `Reply` should stay small.
    input: Option<Box<InputRounds>>,
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
            input: None,
        }
    }

    /// Answers the downstream's `input_required` results by asking the client (which must
    /// then be able to receive requests) instead of passing them through.
    pub fn asking_the_client(mut self, input: InputRounds) -> Self {
        self.input = Some(Box::new(input));
        self
    }

    /// The next thing for the client: notifications and requests, then the response, then
    /// `None`.
    pub async fn next(&mut self) -> Option<Outgoing> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(request) = self
                .input
                .as_deref_mut()
                .and_then(InputRounds::next_request)
            {
                return Some(self.ask(request));
            }
            if self.input.as_deref().is_some_and(InputRounds::waiting) {
                if let Some(failed) = self.gather_input().await {
                    return Some(Outgoing::Message(failed));
                }
                continue;
            }
            let event = tokio::time::timeout_at(self.deadline, self.call.next()).await;
            let message = match event {
                Ok(Some(CallEvent::Request(request))) => return Some(self.ask(request)),
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

    fn open_round(&mut self, response: &Value) -> Result<bool, RpcError> {
        match &mut self.input {
            Some(input) => input.open(response),
            None => Ok(false),
        }
    }

    /// Takes one answer of the client; once all are in, re-issues the call. Returns the
    /// client's error response when the call cannot go on.
    async fn gather_input(&mut self) -> Option<Value> {
        let input = self
            .input
            .as_mut()
            .expect("BUG: only called with input rounds");
        let outcome = match tokio::time::timeout_at(self.deadline, input.collect()).await {
            Ok(Ok(())) if input.waiting() => return None,
            Ok(Ok(())) => input.retry().await,
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
        response
    }

    fn fail(&mut self, error: &RpcError) -> Value {
        self.finished = true;
        error.to_response(self.client_id.clone())
    }

    fn fail_timed_out(&mut self) -> Value {
        let error = self.call.timed_out(&self.method, self.timeout);
        self.fail(&error)
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
