//! `[audit]`: the JSON-lines file after known traffic, field by field, with argument values off
//! and on; secrets (an argument's password, the `Authorization` header) never in it.

use std::path::Path;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Gateway, RawSession, fixture_stdio_cmd, mcp_headers, raw, wait_for};

const BEARER: &str = "Bearer sekrit-bearer-value-123";
const PASSWORD: &str = "hunter2-pass-value";
const API_KEY: &str = "k-123-value";

fn config(file: &Path, include_arguments: bool, tools: &str) -> String {
    format!(
        "[server.client_ip]\nx_forwarded_for_trusted_hops = 0\n\
         [server.rate_limits]\nenabled = true\nper_ip = {{ limit = 10, interval = \"60s\" }}\n\
         [audit]\nenabled = true\nfile = \"{}\"\njournal = false\ninclude_arguments = {include_arguments}\n\
         [mcp]\ntools = \"{tools}\"\nprefix = \"when-needed\"\n[mcp.servers.fx]\ncmd = {}\n\
         [mcp.servers.fx.rate_limits]\nlimit = 100\ninterval = \"60s\"\n\
         tools = {{ echo = {{ limit = 1, interval = \"60s\" }} }}\n",
        file.display(),
        fixture_stdio_cmd(&[])
    )
}

/// Calls `name` in `session` with an `Authorization` header, directly or through `execute`.
async fn call(session: &RawSession, via_execute: bool, name: &str, arguments: Value) -> Value {
    let params = if via_execute {
        json!({"name": "execute", "arguments": {"name": name, "arguments": arguments}})
    } else {
        json!({"name": name, "arguments": arguments})
    };
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let mut headers = mcp_headers(Some(&session.id));
    headers.insert("authorization", BEARER.parse().unwrap());
    let (status, _, body) = raw(Method::POST, &session.url, headers, Some(&message)).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

fn secret_arguments() -> Value {
    json!({"message": "hello", "password": PASSWORD, "nested": {"api_key": API_KEY}})
}

/// The known traffic: ok, limited (echo's quota is 1), tool error, JSON-RPC error, unknown
/// tool, then an address over its per-IP quota.
async fn traffic(gateway: &Gateway, via_execute: bool) -> String {
    let session = RawSession::open(&gateway.url).await;
    let ok = call(&session, via_execute, "echo", secret_arguments()).await;
    assert_eq!(ok["result"]["content"][0]["text"], "hello", "{ok}");
    let limited = call(&session, via_execute, "echo", json!({"message": "again"})).await;
    assert_eq!(limited["error"]["code"], -32029, "{limited}");
    let unset = json!({"name": "NEXUS_AUDIT_SURELY_UNSET"});
    let tool_error = call(&session, via_execute, "get_env", unset).await;
    assert_eq!(tool_error["result"]["isError"], true, "{tool_error}");
    let failed = call(&session, via_execute, "fail", json!({})).await;
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    let unknown = call(&session, via_execute, "nope", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let mut forwarded = HeaderMap::new();
    forwarded.insert("x-forwarded-for", "198.51.100.9".parse().unwrap());
    forwarded.insert("host", "127.0.0.1".parse().unwrap());
    for _ in 0..10 {
        let (status, ..) = raw(Method::GET, &gateway.url, forwarded.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a GET without a session");
    }
    let (status, ..) = raw(Method::GET, &gateway.url, forwarded, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    session.id
}

async fn records(file: &Path, count: usize) -> Vec<Value> {
    wait_for("audit records", || async {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        (text.lines().count() >= count).then_some(text)
    })
    .await
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

/// Asserts one record of a tool call from loopback in `session`.
fn assert_call(
    record: &Value,
    session: &str,
    server: Option<&str>,
    name: &str,
    outcome: &str,
    code: Option<i64>,
) {
    assert_eq!(record["method"], "tools/call", "{record}");
    assert_eq!(record["server"], json!(server), "{record}");
    assert_eq!(record["name"], name, "{record}");
    assert_eq!(record["outcome"], outcome, "{record}");
    assert_eq!(record["code"], json!(code), "{record}");
    assert_eq!(record["session"], session, "{record}");
    assert_eq!(record["address"], "127.0.0.1", "{record}");
    assert_eq!(
        record["identity"],
        json!({"kind": "anonymous", "subject": null, "issuer": null, "client_id": null, "groups": [], "certificate": null}),
        "{record}"
    );
    let time = record["time"].as_str().unwrap();
    humantime::parse_rfc3339(time).unwrap_or_else(|error| panic!("{time}: {error}"));
    assert!(record["duration_ms"].as_u64().unwrap() < 30_000, "{record}");
}

/// The HTTP-level refusal's record: no method, no session, the address from the header.
fn assert_refusal(record: &Value) {
    assert_eq!(record["outcome"], "limited", "{record}");
    assert_eq!(record["limit"], "server.rate_limits.per_ip", "{record}");
    assert_eq!(record["address"], "198.51.100.9", "{record}");
    assert_eq!(record["method"], Value::Null, "{record}");
    assert_eq!(record["session"], Value::Null, "{record}");
    assert_eq!(record["argument_bytes"], 0, "{record}");
}

fn assert_no_secrets(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    for secret in [PASSWORD, API_KEY, "sekrit-bearer-value-123"] {
        assert!(
            !text.contains(secret),
            "{secret} in the audit file:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_say_who_called_what_and_how_it_ended_without_argument_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let gateway = Gateway::start(&config(&file, false, "direct"), 1).await;
    let session = traffic(&gateway, false).await;
    let records = records(&file, 6).await;
    assert_eq!(records.len(), 6, "{records:#?}");
    assert_call(&records[0], &session, Some("fx"), "echo", "ok", None);
    let bytes = serde_json::to_vec(&secret_arguments()).unwrap().len();
    assert_eq!(records[0]["argument_bytes"], bytes, "{}", records[0]);
    assert_eq!(records[0]["via"], Value::Null);
    assert_call(&records[1], &session, Some("fx"), "echo", "limited", None);
    assert_call(
        &records[2],
        &session,
        Some("fx"),
        "get_env",
        "tool_error",
        None,
    );
    assert_call(
        &records[3],
        &session,
        Some("fx"),
        "fail",
        "error",
        Some(-32603),
    );
    assert_call(&records[4], &session, None, "nope", "error", Some(-32602));
    assert_refusal(&records[5]);
    assert!(
        records
            .iter()
            .all(|record| record.get("arguments").is_none()),
        "{records:#?}"
    );
    assert_no_secrets(&file);

    let (_, _, metrics) = raw(
        Method::GET,
        &format!("{}/metrics", gateway.base),
        HeaderMap::new(),
        None,
    )
    .await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    for line in [
        "nexus_audit_records_total{outcome=\"ok\"} 1",
        "nexus_audit_records_total{outcome=\"error\"} 2",
        "nexus_audit_records_total{outcome=\"tool_error\"} 1",
        "nexus_audit_records_total{outcome=\"limited\"} 2",
        "nexus_audit_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_on_request_are_recorded_redacted_also_through_execute() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let gateway = Gateway::start(&config(&file, true, "search"), 1).await;
    let session = traffic(&gateway, true).await;
    let records = records(&file, 6).await;
    assert_call(&records[0], &session, Some("fx"), "echo", "ok", None);
    assert_eq!(records[0]["via"], "execute", "{}", records[0]);
    assert_eq!(
        records[0]["arguments"],
        json!({"message": "hello", "password": "[REDACTED]", "nested": {"api_key": "[REDACTED]"}})
    );
    assert_call(&records[1], &session, Some("fx"), "echo", "limited", None);
    assert_eq!(records[1]["arguments"], json!({"message": "again"}));
    assert_call(&records[4], &session, None, "nope", "error", Some(-32602));
    assert_refusal(&records[5]);
    assert_no_secrets(&file);
    gateway.stop().await;
}

/// Prompts and resources get records too; a call the client cancels is `cancelled`, one the
/// downstream does not answer in time `timeout`, each recorded when that is known.
#[tokio::test(flavor = "multi_thread")]
async fn prompts_resources_cancelled_and_timed_out_calls_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let toml = format!(
        "[audit]\nenabled = true\nfile = \"{}\"\njournal = false\n\
         [mcp]\ntools = \"direct\"\nprefix = \"when-needed\"\n\
         [mcp.servers.fx]\ncmd = {}\ncall_timeout = \"1s\"\n",
        file.display(),
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&toml, 1).await;
    let session = RawSession::open(&gateway.url).await;
    let prompt = session
        .request(
            "prompts/get",
            json!({"name": "greet", "arguments": {"name": "Ada"}}),
        )
        .await;
    assert!(prompt.get("result").is_some(), "{prompt}");
    let resource = session
        .request("resources/read", json!({"uri": "fixture://static/hello"}))
        .await;
    assert!(resource.get("result").is_some(), "{resource}");
    let sleeper = RawSession {
        url: session.url.clone(),
        id: session.id.clone(),
    };
    let call = tokio::spawn(async move { sleeper.call(4, "sleep", json!({"ms": 60_000})).await });
    wait_for("the sleep call is in flight", || async {
        let running = session.call_text("inflight_max", json!({})).await;
        (running != "0").then_some(())
    })
    .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 4, "reason": "test"}});
    let (status, ..) = session.post(&cancel).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cancelled = call.await.unwrap();
    assert_eq!(cancelled["error"]["code"], -32800, "{cancelled}");
    let timed_out = session.call(5, "sleep", json!({"ms": 5000})).await;
    assert_eq!(timed_out["error"]["code"], -32001, "{timed_out}");

    // The timeout is the last record queued (inflight_max may have been called more than once).
    wait_for("the timeout's record", || async {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        text.contains("\"outcome\":\"timeout\"").then_some(())
    })
    .await;
    let records = records(&file, 5).await;
    let find = |method: &str, outcome: &str| {
        records
            .iter()
            .find(|record| record["method"] == method && record["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {method} {outcome} in {records:#?}"))
    };
    let prompt = find("prompts/get", "ok");
    assert_eq!(
        (&prompt["server"], &prompt["name"]),
        (&json!("fx"), &json!("greet"))
    );
    let bytes = serde_json::to_vec(&json!({"name": "Ada"})).unwrap().len();
    assert_eq!(prompt["argument_bytes"], bytes, "{prompt}");
    let resource = find("resources/read", "ok");
    assert_eq!(resource["name"], "fixture://static/hello", "{resource}");
    assert_eq!(resource["argument_bytes"], 0, "{resource}");
    let timeout = find("tools/call", "timeout");
    assert!(
        timeout["duration_ms"].as_u64().unwrap() >= 1000,
        "{timeout}"
    );
    let cancelled = find("tools/call", "cancelled");
    assert_eq!(cancelled["name"], "sleep", "{cancelled}");
    assert_eq!(cancelled["session"], session.id, "{cancelled}");
    gateway.stop().await;
}
