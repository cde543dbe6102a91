//! Asking the client across the eras: multi-round-trip requests (2026-07-28) and
//! server-to-client requests (handshake era) turned into each other.
//!
//! A stateless downstream that needs the client (sampling, elicitation, roots) answers a call
//! with an `input_required` result listing `inputRequests` by key. A handshake-era client
//! knows nothing of that: it expects server-to-client requests. So the gateway sends each
//! input request to the client as such (through the session, like a handshake downstream's
//! own requests), gathers the answers by key and re-issues the call with `inputResponses`
//! and the opaque `requestState`, until the downstream's result is complete ([`InputRounds`]).
//!
//! The other way round, a handshake-era downstream's request during a stateless client's call
//! becomes an `input_required` result; the downstream call is suspended meanwhile under a
//! `requestState` of the gateway's, and the client's retry carrying it answers the request
//! ([`Suspending`]).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::downstream::{Call, CallOptions, Downstream, ServerRequest};
use crate::mcp::jsonrpc::{self, INTERNAL_ERROR, INVALID_PARAMS, RpcError};

/// How many `input_required` results one client request may go through: a downstream that
/// keeps asking is stopped rather than looping for ever.
pub const MAX_ROUNDS: usize = 16;

/// The input rounds of one relayed call.
pub struct InputRounds {
    downstream: Arc<Downstream>,
    method: String,
    params: Value,
    options: CallOptions,
    rounds: usize,
    // Input requests not yet handed to the client.
    unasked: VecDeque<ServerRequest>,
    // How many asked requests still wait for their answer.
    unanswered: usize,
    answers: Map<String, Value>,
    request_state: Option<Value>,
    replies: mpsc::UnboundedSender<Value>,
    replied: mpsc::UnboundedReceiver<Value>,
}

impl InputRounds {
    /// Rounds for a call of `method` with `params` (as sent before the first round).
    pub fn new(
        downstream: Arc<Downstream>,
        method: &str,
        params: Value,
        options: CallOptions,
    ) -> Self {
        let (replies, replied) = mpsc::unbounded_channel();
        Self {
            downstream,
            method: method.to_owned(),
            params,
            options,
            rounds: 0,
            unasked: VecDeque::new(),
            unanswered: 0,
            answers: Map::new(),
            request_state: None,
            replies,
            replied,
        }
    }

    /// Opens a round when `response` is an `input_required` result: returns whether it was.
    /// Fails when the downstream asked too often or asked nothing.
    pub fn open(&mut self, response: &Value) -> Result<bool, RpcError> {
        let Some(result) = response.get("result") else {
            return Ok(false);
        };
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(false);
        }
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(self.failure(format!("asked for input more than {MAX_ROUNDS} times")));
        }
        let requests = result.get("inputRequests").and_then(Value::as_object);
        let requests = requests.filter(|requests| !requests.is_empty());
        let Some(requests) = requests else {
            return Err(self.failure("asked for input without `inputRequests`".into()));
        };
        self.request_state = result.get("requestState").cloned();
        self.answers.clear();
        for (key, request) in requests {
            self.unasked.push_back(self.input_request(key, request));
        }
        self.unanswered = self.unasked.len();
        Ok(true)
    }

    /// The next input request to send to the client.
    pub fn next_request(&mut self) -> Option<ServerRequest> {
        self.unasked.pop_front()
    }

    /// Whether answers are still awaited.
    pub fn waiting(&self) -> bool {
        self.unanswered > 0
    }

    /// Waits for one answer. A refusal (the client lacks the capability, cannot be asked on
    /// this request) or the client's error ends the call with that error.
    pub async fn collect(&mut self) -> Result<(), RpcError> {
        let answer = self
            .replied
            .recv()
            .await
            .expect("BUG: the rounds hold a sender");
        self.unanswered -= 1;
        if let Some(error) = RpcError::from_response(&answer) {
            return Err(error);
        }
        let key = answer.get("id").and_then(Value::as_str).unwrap_or_default();
        let result = answer.get("result").cloned().unwrap_or_else(|| json!({}));
        self.answers.insert(key.to_owned(), result);
        Ok(())
    }

    /// Re-issues the call with the answers gathered and the downstream's `requestState`.
    pub async fn retry(&mut self) -> Result<Call, RpcError> {
        let mut params = self.params.clone();
        params["inputResponses"] = Value::Object(std::mem::take(&mut self.answers));
        if let Some(state) = &self.request_state {
            params["requestState"] = state.clone();
        }
        let started = self
            .downstream
            .start(&self.method, Some(params), &self.options)
            .await?;
        Ok(started.0)
    }

    /// One input request as a server-to-client request whose id is its key, so its answer
    /// names the key it answers.
    fn input_request(&self, key: &str, request: &Value) -> ServerRequest {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
        let message = jsonrpc::request(Value::from(key), method, params);
        ServerRequest::new(message, self.replies.clone())
    }

    fn failure(&self, what: String) -> RpcError {
        let server = self.downstream.name();
        RpcError::new(INTERNAL_ERROR, format!("server '{server}' {what}"))
    }
}

/// A stateless client's call, which a handshake-era downstream's request suspends.
#[derive(Debug)]
pub struct Suspending {
    capabilities: Value,
    suspension: Option<Suspension>,
}

impl Suspending {
    /// For a client that declared `capabilities` (in its request's `_meta`).
    pub fn new(capabilities: Value) -> Self {
        Self {
            capabilities,
            suspension: None,
        }
    }

    /// Suspends the call for `request`: returns the `input_required` result asking the
    /// client, or `None` when the client did not declare what it needs (refused).
    pub fn suspend(&mut self, request: ServerRequest) -> Option<Value> {
        let (suspension, result) = Suspension::new(request.permitted_by(&self.capabilities)?);
        self.suspension = Some(suspension);
        Some(result)
    }

    /// The `requestState` the client's retry carries, while suspended.
    pub fn state(&self) -> Option<&str> {
        self.suspension
            .as_ref()
            .map(|suspension| suspension.state.as_str())
    }

    /// Answers the downstream from the retry's `params`.
    pub fn resume(&mut self, params: &Value) {
        if let Some(suspension) = self.suspension.take() {
            suspension.resume(params);
        }
    }
}

/// A handshake-era downstream's request put to a stateless client as an `input_required`
/// result; the call waits for the client's retry.
#[derive(Debug)]
struct Suspension {
    state: String,
    key: String,
    request: ServerRequest,
}

impl Suspension {
    /// Suspends a call for `request`; returns the suspension and the `input_required` result
    /// that asks the client.
    fn new(request: ServerRequest) -> (Self, Value) {
        // The key names what is asked (`sampling`, `elicitation`, `roots`); one at a time,
        // since a downstream waits for each answer.
        let key = request
            .method()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        // Random, so a client cannot take over another's call by guessing.
        let state = format!("nexus-{:032x}", rand::random::<u128>());
        let message = request.message();
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        let asked = json!({"method": request.method(), "params": params});
        let result = json!({
            "resultType": "input_required",
            "inputRequests": {key.as_str(): asked},
            "requestState": state,
        });
        (
            Self {
                state,
                key,
                request,
            },
            result,
        )
    }

    /// Answers the downstream from the retry's `inputResponses`; a retry without the answer
    /// refuses the request.
    fn resume(self, params: &Value) {
        let answer = params.pointer(&format!("/inputResponses/{}", self.key));
        match answer {
            Some(answer) => self
                .request
                .answer(jsonrpc::result(Value::Null, answer.clone())),
            None => {
                let reason = format!(
                    "the client's retry carried no `inputResponses.{}`",
                    self.key
                );
                self.request.refuse(INVALID_PARAMS, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mcp::jsonrpc::METHOD_NOT_FOUND;

    fn rounds() -> InputRounds {
        let toml = "[mcp.servers.up]\ncmd = [\"true\"]\n";
        let config = crate::config::parse(toml, Path::new("nexus.toml"), &|_| None).unwrap();
        let downstream = Arc::new(Downstream::new(
            config.mcp.servers[0].clone(),
            None,
            Arc::default(),
        ));
        InputRounds::new(
            downstream,
            "tools/call",
            json!({"name": "t"}),
            CallOptions::default(),
        )
    }

    fn input_required(requests: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "input_required", "inputRequests": requests, "requestState": "s1"}})
    }

    fn sampling() -> Value {
        json!({"method": "sampling/createMessage", "params": {"maxTokens": 5}})
    }

    #[tokio::test]
    async fn a_round_asks_every_input_request_and_gathers_the_answers_by_key() {
        let mut rounds = rounds();
        let complete = json!({"result": {"resultType": "complete", "content": []}});
        assert!(!rounds.open(&complete).unwrap());
        let roots = json!({"method": "roots/list"});
        let response = input_required(json!({"a": sampling(), "b": roots}));
        assert!(rounds.open(&response).unwrap());
        let (first, second) = (
            rounds.next_request().unwrap(),
            rounds.next_request().unwrap(),
        );
        assert!(rounds.next_request().is_none());
        assert_eq!(first.message()["id"], "a");
        assert_eq!(second.method(), "roots/list");
        second.answer(json!({"jsonrpc": "2.0", "id": "nexus-2", "result": {"roots": []}}));
        first.answer(json!({"jsonrpc": "2.0", "id": "nexus-1", "result": {"model": "m"}}));
        rounds.collect().await.unwrap();
        assert!(rounds.waiting());
        rounds.collect().await.unwrap();
        assert!(!rounds.waiting());
        assert_eq!(rounds.answers["a"]["model"], "m");
        assert_eq!(rounds.answers["b"]["roots"], json!([]));
        assert_eq!(rounds.request_state, Some(json!("s1")));
    }

    #[tokio::test]
    async fn a_refused_input_request_ends_the_call_with_its_error() {
        let mut rounds = rounds();
        assert!(
            rounds
                .open(&input_required(json!({"a": sampling()})))
                .unwrap()
        );
        let request = rounds.next_request().unwrap();
        request.refuse(METHOD_NOT_FOUND, "no sampling");
        let error = rounds.collect().await.unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (METHOD_NOT_FOUND, "no sampling")
        );
    }

    #[test]
    fn rounds_are_bounded_and_must_ask_something() {
        let mut rounds = rounds();
        assert!(rounds.open(&input_required(json!({}))).is_err());
        let mut rounds = self::rounds();
        let asking = input_required(json!({"a": sampling()}));
        for _ in 0..MAX_ROUNDS {
            assert!(rounds.open(&asking).unwrap());
        }
        let error = rounds.open(&asking).unwrap_err();
        assert!(
            error.message.contains("more than 16 times"),
            "{}",
            error.message
        );
    }

    fn downstream_request(method: &str) -> (ServerRequest, mpsc::UnboundedReceiver<Value>) {
        let (replies, replied) = mpsc::unbounded_channel();
        let message = jsonrpc::request(Value::from("d7"), method, json!({"maxTokens": 5}));
        (ServerRequest::new(message, replies), replied)
    }

    #[test]
    fn a_suspension_asks_with_input_required_and_the_retry_answers() {
        let mut suspending = Suspending::new(json!({"sampling": {}}));
        let (request, mut replied) = downstream_request("sampling/createMessage");
        let result = suspending.suspend(request).unwrap();
        assert_eq!(result["resultType"], "input_required");
        assert_eq!(
            result["inputRequests"]["sampling"]["params"]["maxTokens"],
            5
        );
        let state = suspending.state().unwrap().to_owned();
        assert_eq!(result["requestState"], state.as_str());
        suspending.resume(&json!({"inputResponses": {"sampling": {"model": "m"}}}));
        let answer = replied.try_recv().unwrap();
        assert_eq!(
            (&answer["id"], &answer["result"]["model"]),
            (&json!("d7"), &json!("m"))
        );
        assert!(suspending.state().is_none());
    }

    #[test]
    fn a_suspension_refuses_what_the_client_cannot_answer() {
        let mut suspending = Suspending::new(json!({"sampling": {}}));
        let (request, mut replied) = downstream_request("roots/list");
        assert!(suspending.suspend(request).is_none());
        assert_eq!(
            replied.try_recv().unwrap()["error"]["code"],
            METHOD_NOT_FOUND
        );
        let (request, mut replied) = downstream_request("sampling/createMessage");
        suspending.suspend(request).unwrap();
        suspending.resume(&json!({"inputResponses": {}}));
        assert_eq!(replied.try_recv().unwrap()["error"]["code"], INVALID_PARAMS);
    }
}
