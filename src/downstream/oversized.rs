//! A message over `max_message_size`: which call it answered, and the error that call gets.
//!
//! Such a message is discarded as it arrives, so only its first bytes are known. Servers write
//! `"jsonrpc"` and `"id"` before a big `result`, so the id can usually be read from there and the
//! waiting call fails at once instead of at its timeout.

use crate::config::Limits;
use crate::mcp::jsonrpc::{INTERNAL_ERROR, RpcError};

/// The numeric `id` of the top-level object that `head` (the start of a JSON text) begins,
/// when it appears in `head` and the object is a response: a `method` key makes it a request
/// of the server's own, whose id is in the server's numbering, not the gateway's.
pub fn top_level_id(head: &[u8]) -> Option<u64> {
    let mut id = None;
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut key: Option<(usize, usize)> = None;
    let mut string_start = None;
    let mut i = 0;
    while i < head.len() {
        let byte = head[i];
        if let Some(start) = string_start {
            match byte {
                b'\\' => i += 1,
                b'"' => {
                    string_start = None;
                    if depth == 1 && expect_key {
                        key = Some((start, i));
                        expect_key = false;
                    }
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match byte {
            b'"' => string_start = Some(i + 1),
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && byte == b'{';
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => expect_key = true,
            b':' if depth == 1 => match key.map(|(s, e)| &head[s..e]) {
                Some(b"id") => {
                    let value = head[i + 1..].trim_ascii_start();
                    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
                    id = std::str::from_utf8(&value[..digits]).ok()?.parse().ok();
                }
                Some(b"method") => return None,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    id
}

/// What happened, after "server 'x' ".
pub fn describe(server: &str, limits: &Limits) -> String {
    format!(
        "sent a message larger than {} bytes, which the gateway discarded; raise \
         `max_message_size` in [mcp.servers.{server}.limits] or [mcp.limits] if such answers \
         are expected",
        limits.max_message_size
    )
}

/// The error of a call whose answer from `server` exceeded its limit.
pub fn error(server: &str, limits: &Limits) -> RpcError {
    RpcError::new(
        INTERNAL_ERROR,
        format!("server '{server}' {}", describe(server, limits)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id_before_the_payload() {
        let head = br#"{"jsonrpc":"2.0","id": 42,"result":{"content":[{"text":"xxxx"#;
        assert_eq!(top_level_id(head), Some(42));
        let nested = br#"{"result":{"id":7,"s":"\"id\":9"},"id":3}"#;
        assert_eq!(top_level_id(nested), Some(3));
    }

    #[test]
    fn a_request_of_the_servers_names_no_call() {
        let head = br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"x"#;
        assert_eq!(top_level_id(head), None);
        let first = br#"{"method":"roots/list","id":1,"params":{"x"#;
        assert_eq!(top_level_id(first), None);
    }

    #[test]
    fn no_id_in_the_head_is_none() {
        assert_eq!(top_level_id(br#"{"jsonrpc":"2.0","result":{"id":1"#), None);
        assert_eq!(top_level_id(br#"{"id":"text"}"#), None);
        assert_eq!(top_level_id(b"xxxx}}}}"), None);
    }
}
