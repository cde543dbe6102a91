//! The direct stdio baseline: the bench drives a fixture's stdin/stdout itself, with many
//! requests in flight multiplexed by id, as a gateway's stdio downstream client would.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::BenchError;

/// Requests waiting for their response, by id.
// A std mutex: insert/remove only, never held across an `.await`.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A fixture child process spoken to over stdio.
pub struct StdioMcp {
    lines: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    /// The child's process id.
    pub pid: u32,
    // Held so the child is killed when the client is dropped.
    _child: Child,
}

impl StdioMcp {
    /// Starts `program args` and initializes an MCP session with it.
    pub async fn spawn(program: &Path, args: &[&str]) -> Result<Self, BenchError> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut stdin = child.stdin.take().expect("BUG: stdin is piped");
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        let (lines, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
        // One writer task owns stdin; lines queued meanwhile go out in the same write.
        tokio::spawn(async move {
            while let Some(mut buffer) = to_write.recv().await {
                while let Ok(more) = to_write.try_recv() {
                    buffer.extend_from_slice(&more);
                }
                if stdin.write_all(&buffer).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        let pending = Pending::default();
        tokio::spawn(route_responses(stdout, Arc::clone(&pending)));
        let client = Self {
            lines,
            pending,
            next_id: AtomicU64::new(0),
            pid: child.id().ok_or("the stdio fixture exited at once")?,
            _child: child,
        };
        let params = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "nexus-bench", "version": "0"},
        });
        client.request("initialize", params).await?;
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(client)
    }

    /// Sends a request and returns its `result`; a JSON-RPC error becomes `Err`.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("BUG: pending lock poisoned")
            .insert(id, answer_tx);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let mut answer = answer_rx.await.map_err(|_| "the stdio server exited")?;
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(format!("{method} failed: {answer}").into()),
        }
    }

    fn send(&self, message: &Value) -> Result<(), BenchError> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.lines
            .send(line)
            .map_err(|_| "the stdio writer stopped".into())
    }
}

/// Reads stdout lines and hands each response to the request waiting for its id.
async fn route_responses(stdout: ChildStdout, pending: Pending) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        // Notifications (no id) are not measured here.
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let waiter = pending
            .lock()
            .expect("BUG: pending lock poisoned")
            .remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(message);
        }
    }
}
