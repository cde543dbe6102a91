//! Downstream MCP servers as child processes: newline-delimited JSON-RPC on stdin/stdout.
//!
//! One writer task owns stdin and one reader task owns stdout, so any number of calls can be in
//! flight at once (they are told apart by id, see [`super::dispatch`]).

use std::process::Stdio as ProcessStdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::link::{Lifeline, TransportError};
use crate::config::{StderrTarget, Stdio};
use crate::mcp::jsonrpc::{DOWNSTREAM_UNAVAILABLE, RpcError};

/// How long a child gets to exit after its stdin is closed, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The running child of one stdio downstream.
pub struct StdioLink {
    writer: mpsc::UnboundedSender<Bytes>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    lifeline: Arc<Lifeline>,
}

impl StdioLink {
    /// Starts the child and its reader, writer and waiter tasks.
    pub fn spawn(
        server: &Arc<str>,
        config: &Stdio,
        dispatcher: Arc<Dispatcher>,
        lifeline: Arc<Lifeline>,
    ) -> Result<Self, String> {
        let mut child = command(config)
            .spawn()
            .map_err(|error| format!("cannot start `{}`: {error}", config.program))?;
        let stdin = child.stdin.take().expect("BUG: stdin is piped");
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(server.clone(), stderr));
        }
        let (writer, queue) = mpsc::unbounded_channel();
        let (stop, stop_requested) = oneshot::channel();
        let close_stdin = CancellationToken::new();
        tokio::spawn(write_loop(stdin, queue, close_stdin.clone()));
        let stdout_closed = CancellationToken::new();
        tokio::spawn(read_loop(stdout, dispatcher.clone(), stdout_closed.clone()));
        let waiter = Waiter {
            server: server.clone(),
            dispatcher,
            lifeline: lifeline.clone(),
            close_stdin,
            stdout_closed,
        };
        tokio::spawn(waiter.run(child, stop_requested));
        Ok(Self {
            writer,
            stop: std::sync::Mutex::new(Some(stop)),
            lifeline,
        })
    }

    /// Queues one encoded line for the child's stdin.
    pub fn send(&self, line: Bytes) -> Result<(), TransportError> {
        if self.lifeline.is_ended() {
            return Err(TransportError::Closed("the process has exited".into()));
        }
        self.writer
            .send(line)
            .map_err(|_| TransportError::Closed("the process's stdin is closed".into()))
    }

    /// A handle on the stdin queue, for messages sent later by other tasks.
    pub fn writer(&self) -> mpsc::UnboundedSender<Bytes> {
        self.writer.clone()
    }

    /// Stops the child: close stdin, then SIGTERM, then SIGKILL, each after a grace period.
    pub async fn close(&self) {
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        self.lifeline.ended().await;
    }
}

fn command(config: &Stdio) -> Command {
    let mut command = Command::new(&config.program);
    command
        .args(&config.args)
        .envs(config.env.iter().map(|(key, value)| (key, value)))
        .stdin(ProcessStdio::piped())
        .stdout(ProcessStdio::piped())
        .stderr(stderr(&config.stderr))
        // Its own process group, so that stopping it also stops what it started (npx -> node),
        // and a Ctrl-C in the gateway's terminal reaches only the gateway, which stops it in order.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    command
}

fn stderr(target: &StderrTarget) -> ProcessStdio {
    match target {
        StderrTarget::Null => ProcessStdio::null(),
        StderrTarget::Inherit => ProcessStdio::inherit(),
        StderrTarget::Pipe => ProcessStdio::piped(),
        StderrTarget::File(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(ProcessStdio::from)
            .unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "cannot open the stderr file; discarding the child's stderr");
                ProcessStdio::null()
            }),
    }
}

async fn write_loop(
    stdin: ChildStdin,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    close: CancellationToken,
) {
    let mut stdin = BufWriter::new(stdin);
    while let Some(line) = tokio::select! {
        line = queue.recv() => line,
        _ = close.cancelled() => None,
    } {
        if stdin.write_all(&line).await.is_err() {
            return;
        }
        // Flush only when nothing else is queued: one write carries a burst of calls.
        if queue.is_empty() && stdin.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop(
    stdout: ChildStdout,
    dispatcher: Arc<Dispatcher>,
    stdout_closed: CancellationToken,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str(&line) else {
            tracing::debug!("ignoring a stdout line that is not JSON");
            continue;
        };
        dispatcher.dispatch(message, None);
    }
    stdout_closed.cancel();
}

/// Owns the child: reports its exit, or stops it when asked.
struct Waiter {
    server: Arc<str>,
    dispatcher: Arc<Dispatcher>,
    lifeline: Arc<Lifeline>,
    close_stdin: CancellationToken,
    stdout_closed: CancellationToken,
}

impl Waiter {
    async fn run(self, mut child: Child, stop_requested: oneshot::Receiver<()>) {
        let stdout_closed = self.stdout_closed.clone();
        let reason = tokio::select! {
            status = child.wait() => exit_reason(status),
            _ = stop_requested => self.stop(&mut child).await,
            // stdout closed while the process lives on: it can no longer answer, so stop it.
            _ = stdout_closed.cancelled() => self.stop(&mut child).await,
        };
        let server = &self.server;
        let error = RpcError::new(
            DOWNSTREAM_UNAVAILABLE,
            format!("server '{server}' {reason}"),
        );
        self.dispatcher.fail_all(&error);
        self.lifeline.end(reason);
    }

    /// Closing stdin is how MCP asks a stdio server to exit; SIGTERM and SIGKILL follow, to the
    /// whole process group, each after a grace period.
    async fn stop(&self, child: &mut Child) -> String {
        self.close_stdin.cancel();
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        for signal in [None, Some(Signal::SIGTERM), Some(Signal::SIGKILL)] {
            if let (Some(signal), Some(group)) = (signal, group) {
                let _ = killpg(group, signal);
            }
            if let Ok(status) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
                return exit_reason(status);
            }
        }
        "did not exit after SIGKILL".into()
    }
}

fn exit_reason(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("exited ({status})"),
        Err(error) => format!("could not be waited for: {error}"),
    }
}

async fn log_stderr(server: Arc<str>, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(server = %server, "stderr: {line}");
    }
}
