//! Where audit records go: a bounded queue drained by one writer thread, so a slow disk or a
//! busy journal never holds up a request. When the queue is full a record is dropped, counted
//! in `nexus_audit_dropped_total`, and a warning is logged (at most every 10 s).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

use crate::metrics::AuditCounters;

/// Records that may wait for the writer.
pub const QUEUE: usize = 4096;
/// journald's socket for the native protocol (systemd.journal-fields(7)).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The journal's `SYSLOG_IDENTIFIER` of audit records (`journalctl -t nexus-audit`).
pub const IDENTIFIER: &str = "nexus-audit";

/// One record for the writer: the JSON line and its outcome label (a journal field).
pub struct Line {
    /// The record as one line of JSON, without the newline.
    pub json: String,
    /// `ok`, `error`, ...
    pub outcome: &'static str,
}

/// What the writer's queue carries.
enum Message {
    Record(Line),
    /// Everything queued before it is written and flushed, then the sender is told.
    Flush(SyncSender<()>),
}

/// The sending side of the writer's queue.
pub struct Sink {
    queue: SyncSender<Message>,
    counters: Arc<AuditCounters>,
    last_warning: AtomicU64,
}

/// Why the audit trail could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be created or appended to.
    #[error("[audit] file {path}: {source}; check the directory and its permissions")]
    File {
        /// `file`.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("[audit]: could not start the writer thread: {0}")]
    Thread(std::io::Error),
}

impl Sink {
    /// Opens `file` (appending) and the journal socket at `journal`, and starts the writer.
    pub fn open(
        file: Option<&Path>,
        journal: Option<&Path>,
        counters: Arc<AuditCounters>,
    ) -> Result<Self, OpenError> {
        let file = file
            .map(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| OpenError::File {
                        path: path.to_path_buf(),
                        source,
                    })
            })
            .transpose()?;
        let journal = journal.and_then(Journal::connect);
        let (queue, messages) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            file: file.map(BufWriter::new),
            journal,
        };
        std::thread::Builder::new()
            .name("nexus-audit".into())
            .spawn(move || writer.run(messages))
            .map_err(OpenError::Thread)?;
        Ok(Self {
            queue,
            counters,
            last_warning: AtomicU64::new(0),
        })
    }

    /// Queues a record, or drops and counts it when the writer is behind.
    pub fn send(&self, line: Line) {
        let outcome = line.outcome;
        match self.queue.try_send(Message::Record(line)) {
            Ok(()) => self.counters.recorded(outcome),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.counters.dropped();
                self.warn_dropped(dropped);
            }
        }
    }

    /// Blocks until every record queued before the call is written and flushed (waiting for
    /// room in a full queue), or the writer is gone.
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    fn warn_dropped(&self, dropped: u64) {
        let now = crate::access::audit::unix_seconds();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped,
                queue = QUEUE,
                "audit records dropped: the audit writer is behind (slow disk or journal)"
            );
        }
    }
}

struct Writer {
    file: Option<BufWriter<File>>,
    journal: Option<Journal>,
}

impl Writer {
    /// Writes until every sender is gone; flushes whenever the queue is empty, and when asked.
    fn run(mut self, messages: Receiver<Message>) {
        while let Ok(message) = messages.recv() {
            self.take(message);
            loop {
                match messages.try_recv() {
                    Ok(message) => self.take(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.flush(),
                }
            }
            self.flush();
        }
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Record(line) => self.write(&line),
            Message::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, line: &Line) {
        if let Some(file) = &mut self.file
            && let Err(error) = writeln!(file, "{}", line.json)
        {
            tracing::error!(%error, "audit file write failed");
        }
        if let Some(journal) = &self.journal {
            journal.send(line);
        }
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.file
            && let Err(error) = file.flush()
        {
            tracing::error!(%error, "audit file write failed");
        }
    }
}

/// The journal's native protocol: one datagram of `FIELD=value` lines per record.
struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    /// `None` (with a warning) when no journal listens at `path`.
    fn connect(path: &Path) -> Option<Self> {
        let socket = UnixDatagram::unbound().ok()?;
        if !path.exists() {
            tracing::warn!(
                socket = %path.display(),
                "[audit] journal = true, but no systemd journal listens here; records go only to the file"
            );
            return None;
        }
        Some(Self {
            socket,
            path: path.to_path_buf(),
        })
    }

    fn send(&self, line: &Line) {
        // JSON text has no raw newline, so the simple `FIELD=value\n` form carries it.
        let datagram = format!(
            "SYSLOG_IDENTIFIER={IDENTIFIER}\nPRIORITY=6\nNEXUS_AUDIT_OUTCOME={}\nMESSAGE={}\n",
            line.outcome, line.json
        );
        if let Err(error) = self.socket.send_to(datagram.as_bytes(), &self.path) {
            tracing::warn!(%error, "audit record not sent to the journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_and_the_journal_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (file, socket) = (dir.path().join("audit.jsonl"), dir.path().join("journal"));
        let journal = UnixDatagram::bind(&socket).unwrap();
        let counters = Arc::new(AuditCounters::default());
        let sink = Sink::open(Some(&file), Some(&socket), counters.clone()).unwrap();
        sink.send(Line {
            json: "{\"outcome\":\"ok\"}".into(),
            outcome: "ok",
        });
        let mut buffer = vec![0; 4096];
        journal
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let read = journal.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..read]).unwrap(),
            "SYSLOG_IDENTIFIER=nexus-audit\nPRIORITY=6\nNEXUS_AUDIT_OUTCOME=ok\nMESSAGE={\"outcome\":\"ok\"}\n"
        );
        sink.flush();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{\"outcome\":\"ok\"}\n"
        );
        assert_eq!(counters.snapshot().0, vec![("ok", 1)]);
    }

    #[test]
    fn flush_returns_once_every_queued_record_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let sink = Sink::open(Some(&file), None, Arc::new(AuditCounters::default())).unwrap();
        for id in 0..QUEUE {
            sink.send(Line {
                json: format!("{{\"id\":{id}}}"),
                outcome: "ok",
            });
        }
        sink.flush();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), QUEUE);
        assert_eq!(
            text.lines().last(),
            Some(format!("{{\"id\":{}}}", QUEUE - 1).as_str())
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, _never_read) = std::sync::mpsc::sync_channel(1);
        let counters = Arc::new(AuditCounters::default());
        let sink = Sink {
            queue,
            counters: counters.clone(),
            last_warning: AtomicU64::new(0),
        };
        for _ in 0..3 {
            sink.send(Line {
                json: "{}".into(),
                outcome: "limited",
            });
        }
        assert_eq!(counters.snapshot(), (vec![("limited", 1)], 2));
    }
}
