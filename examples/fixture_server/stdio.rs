//! MCP over stdin/stdout: newline-delimited JSON-RPC.
//!
//! Each request runs on its own task, so many can be in flight; one writer thread owns stdout and
//! writes messages as they finish. Reading and writing use dedicated threads with std's blocking
//! I/O rather than tokio's stdio, which hops through the blocking pool on every read and write.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::handlers::{Fixture, Outbox, Session, is_request};

/// Serves MCP on stdin/stdout until stdin closes.
pub async fn serve(fixture: Arc<Fixture>) -> io::Result<()> {
    let (outbox, messages) = mpsc::unbounded_channel();
    // Detached: a write error means the client is gone, and reading then ends too.
    std::thread::spawn(move || write_messages(messages));
    tokio::spawn(forward_list_changed(fixture.subscribe(), outbox.clone()));
    let runtime = tokio::runtime::Handle::current();
    let reader = tokio::task::spawn_blocking(move || {
        // `Session::spawn_request` spawns tasks: it needs the runtime's context on this thread.
        let _context = runtime.enter();
        read_messages(&fixture, &outbox)
    });
    // Once stdin closes the client is gone: in-flight answers have no reader, so stop here.
    reader.await.expect("BUG: stdin reader panicked")
}

fn read_messages(fixture: &Arc<Fixture>, outbox: &Outbox) -> io::Result<()> {
    let session = Arc::new(Session::default());
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(message) if is_request(&message) => {
                session.spawn_request(fixture, message, outbox.clone())
            }
            Ok(message) => session.on_notification(&message),
            Err(e) => {
                let error = json!({"code": -32700, "message": format!("parse error: {e}")});
                let _ = outbox.send(json!({"jsonrpc": "2.0", "id": null, "error": error}));
            }
        }
    }
    Ok(())
}

/// Writes each message as one line; messages already queued go out in the same write.
fn write_messages(mut messages: mpsc::UnboundedReceiver<Value>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    let mut buffer = Vec::with_capacity(8192);
    while let Some(message) = messages.blocking_recv() {
        buffer.clear();
        append_line(&mut buffer, &message);
        while let Ok(more) = messages.try_recv() {
            append_line(&mut buffer, &more);
        }
        stdout.write_all(&buffer)?;
        stdout.flush()?;
    }
    Ok(())
}

fn append_line(buffer: &mut Vec<u8>, message: &Value) {
    serde_json::to_writer(&mut *buffer, message).expect("BUG: a JSON value always serializes");
    buffer.push(b'\n');
}

async fn forward_list_changed(mut changes: broadcast::Receiver<Value>, outbox: Outbox) {
    loop {
        match changes.recv().await {
            Ok(note) => {
                if outbox.send(note).is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
            // Missing a repeat of the same notification is harmless: clients re-list anyway.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}
