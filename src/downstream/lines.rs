//! A newline-delimited reader that never holds more than its limit.
//!
//! `BufRead::lines` keeps a line in memory however long it gets and fails on the first byte
//! that is not UTF-8; a stdio child could then pin gigabytes, or end its own link with one bad
//! byte. [`LineReader`] hands out raw bytes (the JSON parser checks UTF-8), and of a line longer
//! than the limit it keeps only the first [`HEAD`] bytes and skips the rest as it arrives.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How much of an oversized line is kept (enough to find a JSON-RPC `id` near the start).
pub const HEAD: usize = 4096;
/// A buffer grown past this by a big line is released afterwards rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One line, without its newline.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line within the limit.
    Complete(&'a [u8]),
    /// A line over the limit: its first [`HEAD`] bytes; the rest was discarded.
    Oversized(&'a [u8]),
}

/// Reads lines of at most `max` bytes from `inner`.
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader whose lines may be up to `max` bytes long.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner: BufReader::new(inner),
            max,
            line: Vec::new(),
        }
    }

    /// The next line; `None` at the end of the input (a last line without newline counts).
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        if self.line.capacity() > KEEP_CAPACITY {
            self.line = Vec::new();
        }
        self.line.clear();
        let mut oversized = false;
        let mut read_any = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let newline = available.iter().position(|&byte| byte == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !oversized && self.line.len() + chunk.len() > self.max {
                oversized = true;
                let room = HEAD.saturating_sub(self.line.len());
                self.line.truncate(HEAD);
                self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            } else if !oversized {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            if newline.is_some() {
                break;
            }
        }
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        Ok(Some(if oversized {
            Line::Oversized(line)
        } else {
            Line::Complete(line)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_only_the_head_of_an_oversized_line() {
        let mut input = b"{\"a\":1}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\n\xff\xfe\nlast");
        let mut reader = LineReader::new(&input[..], 10_000);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Line::Complete(b"{\"a\":1}"))
        );
        let Some(Line::Oversized(head)) = reader.next_line().await.unwrap() else {
            panic!("the long line is oversized")
        };
        assert_eq!(head.len(), HEAD);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Line::Complete(b"\xff\xfe"))
        );
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Line::Complete(b"last"))
        );
        assert_eq!(reader.next_line().await.unwrap(), None);
    }
}
