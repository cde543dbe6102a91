//! Log output: journal-friendly text under systemd, plain text or JSON otherwise.
//!
//! systemd connects a service's stderr to the journal and says so in `JOURNAL_STREAM`
//! (`device:inode` of that stream). Lines there start with a syslog priority, `<3>` error ...
//! `<7>` debug (sd-daemon(3), `SD_JOURNAL_PREFIX`), so `journalctl -p warning` and the colours
//! of `journalctl` work; timestamps and ANSI colours are left out because the journal adds its
//! own. Every line of a multi-line message gets the prefix: the journal stores each line as an
//! entry of its own.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogStyle;

/// Installs the global subscriber: `filter` as for `--log`, written to stderr in `style`.
pub fn init(filter: &str, style: LogStyle) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("invalid --log filter {filter:?} ({error}); using `info`");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match style {
        LogStyle::Json => builder.json().flatten_event(true).init(),
        LogStyle::Text if stderr_is_journal() => builder.event_format(JournalFormat::new()).init(),
        LogStyle::Text => builder.init(),
    }
}

/// True when stderr is the journal stream systemd set up (not redirected since).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(parse_stream) else {
        return false;
    };
    stderr_identity().is_some_and(|id| id == (device, inode))
}

/// `(device, inode)` from `JOURNAL_STREAM`'s `DEVICE:INODE`.
fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Prints `message` to stderr as an error: each line with the `<3>` prefix when stderr is the
/// journal, unchanged otherwise. For output before (or instead of) the log subscriber, such as
/// `nexus check` run by `ExecStartPre=` / `ExecReload=`.
pub fn eprint_error(message: &str) {
    if stderr_is_journal() {
        for line in message.lines() {
            eprintln!("<3>{line}");
        }
    } else {
        eprintln!("{message}");
    }
}

/// The syslog priority of a level: err, warning, info, debug.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Text lines with a `<N>` priority prefix and no time, level word or colours.
pub struct JournalFormat {
    inner: Format<Full, ()>,
}

impl JournalFormat {
    /// The format used under systemd.
    pub fn new() -> Self {
        Self {
            inner: Format::default()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

impl Default for JournalFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let prefix = priority(event.metadata().level());
        for part in line.lines() {
            writeln!(writer, "<{prefix}>{part}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` collecting everything written.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn journal_lines(emit: impl FnOnce()) -> Vec<String> {
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(move || sink.clone())
            .event_format(JournalFormat::new())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_level_gets_its_syslog_priority() {
        let lines = journal_lines(|| {
            tracing::error!(target: "t", "e");
            tracing::warn!(target: "t", "w");
            tracing::info!(target: "t", server = "a", "i");
            tracing::debug!(target: "t", "d");
            tracing::trace!(target: "t", "x");
        });
        assert_eq!(
            lines,
            [
                "<3>t: e",
                "<4>t: w",
                "<6>t: i server=\"a\"",
                "<7>t: d",
                "<7>t: x"
            ]
        );
    }

    #[test]
    fn every_line_of_a_multi_line_message_is_prefixed() {
        let lines = journal_lines(|| tracing::error!(target: "t", "first\nsecond"));
        assert_eq!(lines, ["<3>t: first", "<3>second"]);
    }

    #[test]
    fn no_colour_escapes_or_timestamps() {
        let lines = journal_lines(|| tracing::warn!(target: "t", "plain"));
        assert!(!lines[0].contains('\u{1b}'), "{lines:?}");
        assert_eq!(lines[0], "<4>t: plain");
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream("8-12345"), None);
        assert_eq!(parse_stream("x:1"), None);
    }
}
