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

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete event within the size limit.
    Event(Event),
    /// An event over the limit, reported as soon as it crosses it (the rest of it is skipped):
    /// the first [`HEAD`] bytes of its data.
    Oversized(Vec<u8>),
}

/// How much of an oversized event's data is kept (enough to find a JSON-RPC `id`).
pub const HEAD: usize = 4096;
/// The size limit of [`Parser::default`].
pub const DEFAULT_MAX_EVENT: usize = 16 << 20;

/// Incremental parser: feed chunks as they arrive, take events as they complete.
///
/// Linear in its input: each byte is scanned for a line end once, however the stream is cut
/// into chunks. An event (its data, or a line still incomplete) that grows beyond the limit is
/// dropped on the spot, and the rest of it skipped without being stored.
#[derive(Debug)]
pub struct Parser {
    buffer: BytesMut,
    // `buffer[..scanned]` holds no line end.
    scanned: usize,
    pending: Event,
    has_data: bool,
    max_event: usize,
    // Skipping the rest of an oversized event, up to its blank line.
    skipping: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT)
    }
}

impl Parser {
    /// A parser that drops events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            scanned: 0,
            pending: Event::default(),
            has_data: false,
            max_event,
            skipping: false,
        }
    }

    /// Appends a chunk and returns every event it completed (oversized ones are left out).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        self.feed_with(chunk, |item| {
            if let Item::Event(event) = item {
                events.push(event);
            }
        });
        events
    }

    /// Appends a chunk and hands every event it completed, or dropped as oversized, to `on_item`.
    pub fn feed_with(&mut self, chunk: &[u8], mut on_item: impl FnMut(Item)) {
        self.buffer.extend_from_slice(chunk);
        loop {
            let Some(offset) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') else {
                self.scanned = self.buffer.len();
                if self.pending.data.len() + self.buffer.len() > self.max_event {
                    let line = std::mem::take(&mut self.buffer);
                    self.scanned = 0;
                    if let Some(item) = self.overflow(field_value(&line, b"data")) {
                        on_item(item);
                    }
                }
                return;
            };
            let line = self.buffer.split_to(self.scanned + offset + 1);
            self.scanned = 0;
            if let Some(item) = self.process_line(trim_line_end(&line)) {
                on_item(item);
            }
        }
    }

    /// Drops the event in progress (`more` is the start of its latest data line, if any) and
    /// skips the rest of it; reports it the first time.
    fn overflow(&mut self, more: &[u8]) -> Option<Item> {
        let item = (!self.skipping).then(|| {
            let mut head = std::mem::take(&mut self.pending.data).into_bytes();
            head.truncate(HEAD);
            let room = HEAD - head.len();
            head.extend_from_slice(&more[..more.len().min(room)]);
            Item::Oversized(head)
        });
        self.skipping = true;
        self.pending = Event::default();
        self.has_data = false;
        item
    }

    fn process_line(&mut self, line: &[u8]) -> Option<Item> {
        if line.is_empty() {
            if std::mem::take(&mut self.skipping) {
                return None;
            }
            let complete = std::mem::take(&mut self.pending);
            // An event with no data lines is not dispatched (e.g. a bare `id:`/`retry:` priming).
            return std::mem::take(&mut self.has_data).then_some(Item::Event(complete));
        }
        if self.skipping || line.starts_with(b":") {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if self.pending.data.len() + value.len() + 1 > self.max_event {
                    return self.overflow(value.as_bytes());
                }
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

/// The value of `line` when it is the field `name` (`data: {...}` gives `{...}`), else nothing.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> &'a [u8] {
    let Some(value) = line
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(b":"))
    else {
        return &[];
    };
    value.strip_prefix(b" ").unwrap_or(value)
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
    fn an_oversized_event_is_dropped_and_the_stream_goes_on() {
        let mut parser = Parser::new(1000);
        let mut items = Vec::new();
        parser.feed_with(b"data: {\"id\":5,\"result\":\"", |item| items.push(item));
        for _ in 0..100 {
            parser.feed_with(&[b'x'; 100], |item| items.push(item));
            assert!(parser.buffer.len() <= 1000, "the partial line is not kept");
        }
        assert_eq!(items.len(), 1, "reported as soon as it crosses the limit");
        parser.feed_with(b"\"}\ndata: more\n\ndata: {}\n\n", |item| items.push(item));
        let Item::Oversized(head) = &items[0] else {
            panic!("{items:?}")
        };
        assert!(head.starts_with(b"{\"id\":5,"), "{head:?}");
        assert_eq!(
            items[1..],
            [Item::Event(Event {
                data: "{}".into(),
                ..Event::default()
            })]
        );
        let mut parser = Parser::new(10);
        let events = parser.feed(b"data: 12345\ndata: 67890\n\ndata: ok\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "ok");
    }

    #[test]
    fn a_long_line_in_small_chunks_is_scanned_once() {
        let mut parser = Parser::new(usize::MAX);
        parser.feed(b"data: ");
        for _ in 0..10_000 {
            parser.feed(b"x");
            // Everything buffered is known to hold no line end: the next chunk starts there.
            assert_eq!(parser.scanned, parser.buffer.len());
        }
        let events = parser.feed(b"\n\n");
        assert_eq!(events[0].data.len(), 10_000);
    }

    #[test]
    fn encodes_one_event() {
        assert_eq!(&encode_message(b"{}")[..], b"event: message\ndata: {}\n\n");
    }
}
