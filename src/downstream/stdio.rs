//! Downstream MCP servers as child processes: newline-delimited JSON-RPC on stdin/stdout.
//!
//! One writer task owns stdin and one reader task owns stdout, so any number of calls can be in
//! flight at once (they are told apart by id, see [`super::dispatch`]). What waits for stdin is
//! bounded (`StdinQueue`), and so is every line read ([`LineReader`]); a line that is not JSON
//! is skipped, whatever bytes it holds.
//!
//! A child starts from a clean environment, as systemd starts a service: the variables of
//! [`BASE_ENV`] (and `LC_*`) taken from the gateway's, then the server's `env`. Secrets the
//! gateway reads with `{{ env.X }}` are not passed on unless the server sets `inherit_env`.

use std::process::Stdio as ProcessStdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::lines::{Line, LineReader};
use super::link::{Lifeline, TransportError};
use super::stdin_queue::{Refused, StdinQueue};
use crate::config::{StderrTarget, Stdio};
use crate::mcp::jsonrpc::{DOWNSTREAM_UNAVAILABLE, RpcError};

/// How long a child gets to exit after its stdin is closed, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The variables a child gets from the gateway's environment (when set there), besides `LC_*`.
pub const BASE_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];
/// `PATH` of a child when the gateway has none (systemd's default for services).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest stderr line logged whole ("pipe"); longer ones are logged truncated.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// The running child of one stdio downstream.
pub struct StdioLink {
    queue: Arc<StdinQueue>,
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
        let limits = *dispatcher.intake().limits();
        let queue = Arc::new(StdinQueue::new(limits.max_stdin_queue));
        let (stop, stop_requested) = oneshot::channel();
        let close_stdin = CancellationToken::new();
        tokio::spawn(write_loop(stdin, queue.clone(), close_stdin.clone()));
        let stdout_closed = CancellationToken::new();
        let reader = LineReader::new(stdout, limits.max_message_size);
        tokio::spawn(read_loop(reader, dispatcher.clone(), stdout_closed.clone()));
        let waiter = Waiter {
            server: server.clone(),
            dispatcher,
            lifeline: lifeline.clone(),
            close_stdin,
            stdout_closed,
        };
        tokio::spawn(waiter.run(child, stop_requested));
        Ok(Self {
            queue,
            stop: std::sync::Mutex::new(Some(stop)),
            lifeline,
        })
    }

    /// Queues one encoded line for the child's stdin; `call` is the call it starts, if any.
    pub fn send(&self, call: Option<u64>, line: Bytes) -> Result<(), TransportError> {
        if self.lifeline.is_ended() {
            return Err(TransportError::Closed("the process has exited".into()));
        }
        self.queue
            .push(call, line)
            .map_err(|refused| match refused {
                Refused::Full { queued } => TransportError::Limit(format!(
                    "cannot take the call: {queued} bytes already wait for the process to read its \
                 stdin (limit: `max_stdin_queue` = {} bytes); it may be stuck",
                    self.queue.max_bytes()
                )),
                Refused::Closed => TransportError::Closed("the process's stdin is closed".into()),
            })
    }

    /// Takes back the message of `call` if it was not written yet; returns whether it was.
    pub fn withdraw(&self, call: u64) -> bool {
        self.queue.withdraw(call)
    }

    /// The stdin queue, for messages sent later by other tasks.
    pub fn queue(&self) -> Arc<StdinQueue> {
        self.queue.clone()
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
    if !config.inherit_env {
        command.env_clear().envs(base_env(std::env::vars_os()));
    }
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

/// The clean environment's variables out of the gateway's `environment`.
fn base_env(
    environment: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut kept: Vec<_> = environment
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            BASE_ENV.contains(&key.as_ref()) || key.starts_with("LC_")
        })
        .collect();
    if !kept.iter().any(|(key, _)| key == "PATH") {
        kept.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    kept
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

async fn write_loop(stdin: ChildStdin, queue: Arc<StdinQueue>, close: CancellationToken) {
    let mut stdin = BufWriter::new(stdin);
    // A write blocked on a child that does not read is dropped with its message at `close`.
    let write = async {
        while let Some(line) = queue.pop().await {
            if stdin.write_all(&line).await.is_err() {
                return;
            }
            // Flush only when nothing else is queued: one write carries a burst of calls.
            if queue.is_empty() && stdin.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = write => {}
        _ = close.cancelled() => {}
    }
    queue.close();
}

async fn read_loop(
    mut reader: LineReader<ChildStdout>,
    dispatcher: Arc<Dispatcher>,
    stdout_closed: CancellationToken,
) {
    while let Ok(Some(line)) = reader.next_line().await {
        match line {
            Line::Complete(line) if line.trim_ascii().is_empty() => {}
            Line::Complete(line) => dispatcher.dispatch_bytes(line, None),
            Line::Oversized(head) => dispatcher.oversized(head, None),
        }
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
    let mut lines = LineReader::new(stderr, MAX_STDERR_LINE);
    while let Ok(Some(line)) = lines.next_line().await {
        let (Line::Complete(text) | Line::Oversized(text)) = &line;
        let cut = if matches!(line, Line::Oversized(_)) {
            " [truncated]"
        } else {
            ""
        };
        let text = String::from_utf8_lossy(text);
        tracing::info!(server = %server, "stderr: {text}{cut}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clean_environment_keeps_only_the_base_variables() {
        let gateway = [
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("LC_TIME", "C"),
            ("API_TOKEN", "s3cret"),
        ];
        let kept = base_env(gateway.iter().map(|(k, v)| (k.into(), v.into())));
        let keys: Vec<_> = kept.iter().map(|(key, _)| key.to_str().unwrap()).collect();
        assert_eq!(keys, ["PATH", "HOME", "LC_TIME"]);
        let without_path = base_env(std::iter::empty());
        assert_eq!(without_path, [("PATH".into(), DEFAULT_PATH.into())]);
    }
}
