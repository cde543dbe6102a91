//! Server-Sent Events: an incremental parser for downstream streams and the encoder for ours.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` (empty means the default, "message").
    pub event: String,
    /// `data:` lines joined with '\n'.
    pub data: String,
    /// `id:`, when the event carried one.
    pub id: Option<String>,
}

/// Incremental parser: feed chunks as they arrive, take events as they complete.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: BytesMut,
    pending: Event,
    has_data: bool,
}

impl Parser {
    /// Appends a chunk and returns every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let line = trim_line_end(&line);
            if let Some(event) = self.process_line(&String::from_utf8_lossy(line)) {
                events.push(event);
            }
        }
        events
    }

    fn process_line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let complete = std::mem::take(&mut self.pending);
            // An event with no data lines is not dispatched (e.g. a bare `id:`/`retry:` priming).
            return std::mem::take(&mut self.has_data).then_some(complete);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.pending.event = value.to_owned(),
            "id" => self.pending.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Encodes a JSON-RPC message as one `message` event.
pub fn encode_message(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 16);
    out.extend_from_slice(b"event: message\ndata: ");
    // serde_json never emits raw newlines, so one data line suffices.
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// A comment line that keeps idle connections (and proxies) from timing out.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_across_chunk_boundaries() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"event: message\r\nda").is_empty());
        let events = parser.feed(b"ta: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].data, "x\ny");
    }

    #[test]
    fn priming_event_without_data_is_skipped() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"id: 0\nretry: 3000\ndata:\n\n").len() == 1);
        assert!(parser.feed(b"id: 1\nretry: 3000\n\n").is_empty());
    }

    #[test]
    fn encodes_one_event() {
        assert_eq!(&encode_message(b"{}")[..], b"event: message\ndata: {}\n\n");
    }
}
