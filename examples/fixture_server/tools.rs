//! The fixture's tools: their definitions (`tools/list`) and behaviour (`tools/call`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::handlers::{Fixture, Outbox, RpcError, notification};

/// The tools every fixture has: name, description, input properties (a JSON object).
const BUILTIN: [(&str, &str, &str); 9] = [
    (
        "echo",
        "Returns its message",
        r#"{"message":{"type":"string"}}"#,
    ),
    (
        "sleep",
        "Sleeps for ms milliseconds",
        r#"{"ms":{"type":"integer"}}"#,
    ),
    (
        "inflight_max",
        "Most sleep calls ever running at once",
        "{}",
    ),
    (
        "progress",
        "Reports progress steps, then a log message",
        r#"{"steps":{"type":"integer"},"delay_ms":{"type":"integer"}}"#,
    ),
    (
        "add_tool",
        "Adds a tool and announces tools/list_changed",
        r#"{"name":{"type":"string"}}"#,
    ),
    ("crash", "stdio: exits with code 3 without answering", "{}"),
    ("fail", "Answers with JSON-RPC error -32603", "{}"),
    (
        "get_env",
        "Value of an environment variable",
        r#"{"name":{"type":"string"}}"#,
    ),
    ("pid", "The fixture's process id", "{}"),
];

/// Prefix of `tools/list` cursors; the rest is the offset of the page.
const CURSOR_PREFIX: &str = "fx-";

/// Every tool of one fixture process, with the counters the tests read back.
pub struct ToolCatalog {
    generated: usize,
    // A std mutex: pushed to and cloned under it, never held across an `.await`.
    dynamic: Mutex<Vec<String>>,
    sleeping: AtomicUsize,
    sleeping_max: AtomicUsize,
}

impl ToolCatalog {
    /// The built-in tools plus `generated` tools `tool_0..`.
    pub fn new(generated: usize) -> Self {
        Self {
            generated,
            dynamic: Mutex::default(),
            sleeping: AtomicUsize::new(0),
            sleeping_max: AtomicUsize::new(0),
        }
    }

    /// `tools/list`, one page of `page_size` tools when set.
    pub fn list(&self, params: &Value, page_size: Option<usize>) -> Result<Value, RpcError> {
        let all = self.definitions();
        let start = match params["cursor"].as_str() {
            None => 0,
            Some(cursor) => cursor
                .strip_prefix(CURSOR_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n <= all.len())
                .ok_or_else(|| RpcError::invalid_params(format!("bad cursor: {cursor}")))?,
        };
        let end = page_size.map_or(all.len(), |k| (start + k.max(1)).min(all.len()));
        let mut result = json!({"tools": all[start..end]});
        if end < all.len() {
            result["nextCursor"] = json!(format!("{CURSOR_PREFIX}{end}"));
        }
        Ok(result)
    }

    fn definitions(&self) -> Vec<Value> {
        let builtin = BUILTIN.iter().map(|&(name, description, properties)| {
            let properties: Value =
                serde_json::from_str(properties).expect("BUG: builtin tool schema is not JSON");
            let mut tool = definition(name, description, properties);
            if name == "echo" {
                // A field no spec defines: tests check that a relay keeps it.
                tool["x-fixture"] = json!({"kept": true});
            }
            tool
        });
        let generated = (0..self.generated).map(|i| {
            let description = format!("Generated tool number {i}");
            definition(
                &format!("tool_{i}"),
                &description,
                json!({"value": {"type": "string"}}),
            )
        });
        let dynamic = self
            .dynamic
            .lock()
            .expect("BUG: dynamic tools lock poisoned")
            .clone();
        let dynamic = dynamic
            .into_iter()
            .map(|name| definition(&name, "Added by add_tool", json!({})));
        builtin.chain(generated).chain(dynamic).collect()
    }

    fn is_extra_tool(&self, name: &str) -> bool {
        let generated = name
            .strip_prefix("tool_")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n < self.generated);
        generated
            || self
                .dynamic
                .lock()
                .expect("BUG: dynamic tools lock poisoned")
                .iter()
                .any(|t| t == name)
    }
}

fn definition(name: &str, description: &str, properties: Value) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties},
    })
}

/// `tools/call`.
pub async fn call(fixture: &Fixture, params: &Value, outbox: &Outbox) -> Result<Value, RpcError> {
    let args = &params["arguments"];
    let name = params["name"].as_str().unwrap_or_default();
    let tools = &fixture.tools;
    match name {
        "echo" => {
            let mut result = text_result(string_arg(args, "message")?);
            result["x-fixture"] = json!({"kept": true});
            Ok(result)
        }
        "sleep" => sleep(tools, integer_arg(args, "ms")?).await,
        "inflight_max" => Ok(text_result(
            tools.sleeping_max.load(Ordering::SeqCst).to_string(),
        )),
        "progress" => progress(params, outbox).await,
        "add_tool" => {
            let added = string_arg(args, "name")?;
            tools
                .dynamic
                .lock()
                .expect("BUG: dynamic tools lock poisoned")
                .push(added.to_owned());
            fixture.announce_tools_changed();
            Ok(text_result(format!("added {added}")))
        }
        "crash" if fixture.exit_on_crash => std::process::exit(3),
        "crash" => Ok(error_result("crash only exits over stdio")),
        "fail" => Err(RpcError::new(-32603, "the fail tool always fails")),
        "get_env" => Ok(match std::env::var(string_arg(args, "name")?) {
            Ok(value) => text_result(value),
            Err(e) => error_result(&e.to_string()),
        }),
        "pid" => Ok(text_result(std::process::id().to_string())),
        _ if tools.is_extra_tool(name) => Ok(text_result(format!(
            "{name} {}",
            args["value"].as_str().unwrap_or_default()
        ))),
        _ => Err(RpcError::invalid_params(format!("unknown tool: {name}"))),
    }
}

async fn sleep(tools: &ToolCatalog, ms: u64) -> Result<Value, RpcError> {
    let running = tools.sleeping.fetch_add(1, Ordering::SeqCst) + 1;
    tools.sleeping_max.fetch_max(running, Ordering::SeqCst);
    // A guard, so a cancelled (aborted) sleep still leaves the count.
    let _leave = SleepGuard(&tools.sleeping);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(text_result(format!("slept {ms}")))
}

/// Decrements the running-sleeps count when a sleep ends or is aborted.
struct SleepGuard<'a>(&'a AtomicUsize);

impl Drop for SleepGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn progress(params: &Value, outbox: &Outbox) -> Result<Value, RpcError> {
    let steps = integer_arg(&params["arguments"], "steps")?;
    let delay = Duration::from_millis(params["arguments"]["delay_ms"].as_u64().unwrap_or(0));
    let token = params["_meta"].get("progressToken");
    for step in 1..=steps {
        tokio::time::sleep(delay).await;
        if let Some(token) = token {
            let progress = json!({
                "progressToken": token, "progress": step, "total": steps,
                "message": format!("step {step} of {steps}"),
            });
            let _ = outbox.send(notification("notifications/progress", progress));
        }
    }
    let log = json!({"level": "info", "logger": "fixture", "data": format!("progress done after {steps} steps")});
    let _ = outbox.send(notification("notifications/message", log));
    Ok(text_result(format!("done {steps}")))
}

fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    args[name]
        .as_str()
        .ok_or_else(|| RpcError::invalid_params(format!("argument `{name}` must be a string")))
}

fn integer_arg(args: &Value, name: &str) -> Result<u64, RpcError> {
    args[name]
        .as_u64()
        .ok_or_else(|| RpcError::invalid_params(format!("argument `{name}` must be an integer")))
}

fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": false})
}

fn error_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}
