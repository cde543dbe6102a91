//! The audit trail: one JSON record per `tools/call`, `prompts/get` and `resources/read` (calls
//! through the builtin `execute` included), per denial and per rate-limit refusal, written by
//! [`sink`] to a JSON-lines file and/or the journal (`[audit]`).
//!
//! A record says who (principal, client id, groups, certificate subject, address), where
//! (session, server), what (method and name, the size of the arguments, and their values only
//! with `include_arguments`, secret-looking keys redacted), how it ended and how long it took.
//! A relayed call is recorded when its response is known, however long it streams; one that
//! ends without a response (the client left, the call was cancelled) is recorded as
//! `cancelled`. Tokens are never recorded: no header is.

mod redact;
pub mod sink;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::limits::Refusal;
use super::{Caller, Principal};
use crate::config;
use crate::mcp::jsonrpc::{self, DOWNSTREAM_TIMEOUT, RATE_LIMITED};
use crate::metrics::AuditCounters;
pub use redact::{REDACTED, redacted};
use sink::{Line, Sink};

/// JSON-RPC code of a request the client cancelled.
const REQUEST_CANCELLED: i64 = -32800;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A JSON-RPC error other than the ones below.
    Error {
        /// Its code.
        code: i64,
    },
    /// A tool's result with `isError: true`.
    ToolError,
    /// The access policy refused it.
    Denied,
    /// A rate limit refused it.
    Limited,
    /// The client cancelled it or went away before the response.
    Cancelled,
    /// The downstream did not answer in time.
    Timeout,
}

impl Outcome {
    /// The label in records and in `nexus_audit_records_total{outcome}`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error { .. } => "error",
            Outcome::ToolError => "tool_error",
            Outcome::Denied => "denied",
            Outcome::Limited => "limited",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
        }
    }

    /// Every label, in the order `/metrics` lists them.
    pub const LABELS: [&'static str; 7] = [
        "ok",
        "error",
        "tool_error",
        "denied",
        "limited",
        "cancelled",
        "timeout",
    ];

    /// The outcome a response to the client says.
    pub fn of_response(response: &Value) -> Self {
        if let Some(error) = jsonrpc::RpcError::from_response(response) {
            return Self::of_error(error.code);
        }
        let is_error = response.pointer("/result/isError") == Some(&Value::Bool(true));
        if is_error {
            Outcome::ToolError
        } else {
            Outcome::Ok
        }
    }

    /// The outcome a JSON-RPC error code says.
    pub fn of_error(code: i64) -> Self {
        match code {
            RATE_LIMITED => Outcome::Limited,
            DOWNSTREAM_TIMEOUT => Outcome::Timeout,
            REQUEST_CANCELLED => Outcome::Cancelled,
            code => Outcome::Error { code },
        }
    }
}

/// What is known of a call when it starts.
#[derive(Debug, Clone)]
pub struct Call {
    /// `tools/call`, `prompts/get` or `resources/read` (`None`: an HTTP request refused before
    /// its body was read).
    pub method: Option<&'static str>,
    /// The tool or prompt name, or resource URI, as the client sent it.
    pub name: Option<String>,
    /// The downstream it was routed to, once known.
    pub server: Option<String>,
    /// `execute` when the builtin tool made the call.
    pub via: Option<&'static str>,
    /// `arguments` of a tool call or prompt.
    pub arguments: Option<Value>,
    /// The key of the quota that refused it, if one did.
    pub limit: Option<String>,
}

impl Call {
    /// A call of `method` with `params` as the client sent them.
    pub fn of(method: &'static str, params: Option<&Value>) -> Self {
        let name_key = if method == "resources/read" {
            "uri"
        } else {
            "name"
        };
        let param = |key: &str| params.and_then(|params| params.get(key));
        Self {
            method: Some(method),
            name: param(name_key).and_then(Value::as_str).map(str::to_owned),
            server: None,
            via: None,
            arguments: param("arguments").cloned(),
            limit: None,
        }
    }
}

/// The open audit trail.
pub struct Audit {
    sink: Sink,
    include_arguments: bool,
    config: config::Audit,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("include_arguments", &self.include_arguments)
            .finish_non_exhaustive()
    }
}

/// Whether `method` gets a record of its own.
pub fn audited(method: &str) -> Option<&'static str> {
    ["tools/call", "prompts/get", "resources/read"]
        .into_iter()
        .find(|audited| *audited == method)
}

impl Audit {
    /// Opens `[audit]`'s destinations; a file that cannot be appended to stops startup.
    pub fn open(
        config: &config::Audit,
        counters: Arc<AuditCounters>,
    ) -> Result<Self, sink::OpenError> {
        let journal = config
            .journal
            .then_some(std::path::Path::new(sink::JOURNAL_SOCKET));
        Ok(Self {
            sink: Sink::open(config.file.as_deref(), journal, counters)?,
            include_arguments: config.include_arguments,
            config: config.clone(),
        })
    }

    /// Waits at most `deadline` until every record queued so far is written: at shutdown,
    /// after the drain, so the records of the last calls are not lost with the process.
    pub async fn finish(self: &Arc<Self>, deadline: std::time::Duration) {
        let audit = self.clone();
        let flushed = tokio::task::spawn_blocking(move || audit.sink.flush());
        if tokio::time::timeout(deadline, flushed).await.is_err() {
            tracing::warn!(
                seconds = deadline.as_secs(),
                "audit records not yet written at exit are lost: the audit writer is behind (slow disk or journal)"
            );
        }
    }

    /// The `[audit]` it was opened with.
    pub fn config(&self) -> &config::Audit {
        &self.config
    }

    /// Starts the record of a call by `caller` in `session`; it is written when the returned
    /// [`Pending`] is finished (or dropped: `cancelled`).
    pub fn begin(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        session: Option<&Arc<str>>,
        call: Call,
    ) -> Pending {
        Pending {
            audit: self.clone(),
            caller: caller.clone(),
            session: session.cloned(),
            call,
            time: SystemTime::now(),
            started: Instant::now(),
            denied: false,
            written: false,
        }
    }

    /// Records a call the access policy refused.
    pub fn denied(self: &Arc<Self>, caller: &Arc<Caller>, session: Option<&Arc<str>>, call: Call) {
        self.begin(caller, session, call).finish(Outcome::Denied);
    }

    /// Records an HTTP request refused by `[server.rate_limits]`.
    pub fn refused(&self, caller: &Caller, refusal: &Refusal) {
        let call = Call {
            method: None,
            name: None,
            server: None,
            via: None,
            arguments: None,
            limit: Some(refusal.limit.clone()),
        };
        let record = self.record(caller, None, &call, SystemTime::now(), 0, Outcome::Limited);
        self.write(record, Outcome::Limited);
    }

    fn record(
        &self,
        caller: &Caller,
        session: Option<&Arc<str>>,
        call: &Call,
        time: SystemTime,
        duration_ms: u128,
        outcome: Outcome,
    ) -> Value {
        let argument_bytes = call.arguments.as_ref().map_or(0, |arguments| {
            serde_json::to_vec(arguments).map_or(0, |json| json.len())
        });
        let mut record = json!({
            "time": humantime::format_rfc3339_millis(time).to_string(),
            "identity": identity(caller),
            "address": caller.address.to_string(),
            "session": session.map(|id| id.to_string()),
            "method": call.method,
            "server": call.server,
            "name": call.name,
            "via": call.via,
            "outcome": outcome.label(),
            "code": match outcome { Outcome::Error { code } => Some(code), _ => None },
            "limit": call.limit,
            "duration_ms": duration_ms as u64,
            "argument_bytes": argument_bytes,
        });
        if self.include_arguments
            && let Some(arguments) = &call.arguments
        {
            record["arguments"] = redacted(arguments);
        }
        record
    }

    fn write(&self, record: Value, outcome: Outcome) {
        let json = serde_json::to_string(&record).expect("BUG: JSON always serializes");
        self.sink.send(Line {
            json,
            outcome: outcome.label(),
        });
    }
}

/// A call whose record is written when it ends.
pub struct Pending {
    audit: Arc<Audit>,
    caller: Arc<Caller>,
    session: Option<Arc<str>>,
    call: Call,
    time: SystemTime,
    started: Instant,
    denied: bool,
    written: bool,
}

impl Pending {
    /// The call as recorded, to add what routing learns (server, `via`).
    pub fn call_mut(&mut self) -> &mut Call {
        &mut self.call
    }

    /// Marks the call as refused by the access policy: however it is answered (as for a name
    /// that does not exist), the record says `denied`.
    pub fn deny(&mut self) {
        self.denied = true;
    }

    /// Writes the record with `outcome` (`denied` after [`Pending::deny`]).
    pub fn finish(mut self, outcome: Outcome) {
        self.write(outcome);
    }

    /// Writes the record with the outcome `response` says.
    pub fn answered(self, response: &Value) {
        self.finish(Outcome::of_response(response));
    }

    fn write(&mut self, outcome: Outcome) {
        let outcome = if self.denied {
            Outcome::Denied
        } else {
            outcome
        };
        self.written = true;
        let elapsed = self.started.elapsed().as_millis();
        let record = self.audit.record(
            &self.caller,
            self.session.as_ref(),
            &self.call,
            self.time,
            elapsed,
            outcome,
        );
        self.audit.write(record, outcome);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.written {
            self.write(Outcome::Cancelled);
        }
    }
}

/// The caller's identity as recorded: never a token.
fn identity(caller: &Caller) -> Value {
    let (kind, subject, issuer) = match &caller.principal {
        Principal::Anonymous => ("anonymous", None, None),
        Principal::Token { issuer, subject } => ("token", Some(subject), Some(issuer)),
        Principal::Certificate(name) => ("certificate", Some(name), None),
        Principal::Header(name) => ("header", Some(name), None),
    };
    json!({
        "kind": kind,
        "subject": subject.map(|s| s.to_string()),
        "issuer": issuer.map(|s| s.to_string()),
        "client_id": caller.client_id.as_ref().map(|id| id.to_string()),
        "groups": caller.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "certificate": caller.certificate.as_ref().map(|c| c.to_string()),
    })
}

/// Seconds since the epoch (0 before it).
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_response() {
        let of = |response: Value| Outcome::of_response(&response);
        assert_eq!(of(json!({"id": 1, "result": {"content": []}})), Outcome::Ok);
        assert_eq!(
            of(json!({"id": 1, "result": {"isError": true}})),
            Outcome::ToolError
        );
        assert_eq!(
            of(json!({"id": 1, "error": {"code": -32602, "message": "x"}})),
            Outcome::Error { code: -32602 }
        );
        assert_eq!(
            of(json!({"id": 1, "error": {"code": RATE_LIMITED, "message": "x"}})),
            Outcome::Limited
        );
        assert_eq!(
            of(json!({"id": 1, "error": {"code": DOWNSTREAM_TIMEOUT, "message": "x"}})),
            Outcome::Timeout
        );
        assert_eq!(Outcome::LABELS.len(), 7);
    }

    fn trail(dir: &std::path::Path, include_arguments: bool) -> Arc<Audit> {
        let config = config::Audit {
            file: Some(dir.join("audit.jsonl")),
            journal: false,
            include_arguments,
        };
        Arc::new(Audit::open(&config, Arc::default()).unwrap())
    }

    fn lines(dir: &std::path::Path, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
            if text.lines().count() >= count {
                return text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{count} records not written: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn denials_dropped_calls_and_identities_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let audit = trail(dir.path(), true);
        let mut caller = Caller::anonymous("192.0.2.1".parse().unwrap());
        caller.principal = Principal::Token {
            issuer: "https://issuer.example".into(),
            subject: "alice".into(),
        };
        caller.client_id = Some("app-1".into());
        caller.groups = vec!["premium".into()];
        let caller = Arc::new(caller);
        let session: Arc<str> = "s-1".into();
        let params = json!({"name": "files__read", "arguments": {"path": "/x", "token": "t0p"}});
        let mut pending = audit.begin(
            &caller,
            Some(&session),
            Call::of("tools/call", Some(&params)),
        );
        pending.deny();
        pending.answered(&json!({"id": 1, "error": {"code": -32602, "message": "Unknown tool"}}));
        drop(audit.begin(
            &caller,
            None,
            Call::of("resources/read", Some(&json!({"uri": "f://a"}))),
        ));
        audit.denied(
            &caller,
            None,
            Call::of("prompts/get", Some(&json!({"name": "p"}))),
        );
        let records = lines(dir.path(), 3);
        assert_eq!(records[0]["outcome"], "denied");
        assert_eq!(records[0]["code"], Value::Null);
        assert_eq!(records[0]["session"], "s-1");
        assert_eq!(
            records[0]["arguments"],
            json!({"path": "/x", "token": REDACTED})
        );
        assert_eq!(
            records[0]["identity"],
            json!({"kind": "token", "subject": "alice", "issuer": "https://issuer.example",
                "client_id": "app-1", "groups": ["premium"], "certificate": null})
        );
        assert_eq!(
            records[1]["outcome"], "cancelled",
            "a call dropped unanswered"
        );
        assert_eq!(records[1]["name"], "f://a");
        assert_eq!(
            (&records[2]["method"], &records[2]["outcome"]),
            (&json!("prompts/get"), &json!("denied"))
        );
    }
}
