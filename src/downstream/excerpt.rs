//! The start of a downstream's error body, fit to show a client and to log.
//!
//! A server may echo the request in its error page, credentials included (a 401 that repeats
//! the bearer token). The excerpt is bounded ([`MAX_CHARS`]), has its control characters
//! replaced (no forged log lines, no terminal escapes), and never holds the credentials the
//! gateway sent, nor anything shaped like an `Authorization` value.

use http::HeaderValue;

/// Bytes of a body read for an excerpt (the rest is not read at all).
pub const READ_LIMIT: usize = 4096;
/// Characters of the body shown.
pub const MAX_CHARS: usize = 300;
const REDACTED: &str = "[redacted]";

/// The excerpt of `body`, without `sent` (the `Authorization` value the gateway sent) and
/// without anything after an authorization scheme or key.
pub fn excerpt(body: &[u8], sent: Option<&HeaderValue>) -> String {
    // A body cut at the read limit may end in part of the credential, which no longer matches
    // it whole: that tail is left out.
    let cut = sent.map_or(0, |sent| sent.len());
    let body = match body.len() >= READ_LIMIT {
        true => &body[..body.len().saturating_sub(cut)],
        false => body,
    };
    let mut text = String::from_utf8_lossy(body).into_owned();
    if let Some(sent) = sent.map(HeaderValue::as_bytes) {
        let sent = String::from_utf8_lossy(sent);
        // The whole value, then its credential alone (`Bearer <token>`), as either may be echoed.
        let credential = sent
            .split_once(' ')
            .map_or(&*sent, |(_, credential)| credential);
        for secret in [&*sent, credential.trim()] {
            if !secret.is_empty() {
                text = text.replace(secret, REDACTED);
            }
        }
    }
    let text = redact_authorization_values(&text);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    cleaned.trim().to_owned()
}

/// Replaces what follows `bearer` or `basic` (and a space), or `token` or `authorization` (and a
/// `:` or `=`), up to the next quote, comma, semicolon or line end.
fn redact_authorization_values(text: &str) -> String {
    const MARKERS: [&str; 4] = ["authorization", "bearer", "basic", "token"];
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < text.len() {
        let Some((marker, start)) = MARKERS
            .iter()
            .filter_map(|marker| lower[at..].find(marker).map(|i| (marker, at + i)))
            .min_by_key(|(_, start)| *start)
        else {
            break;
        };
        let after = start + marker.len();
        let rest = &text[after..];
        let gap = rest.len()
            - rest
                .trim_start_matches(|c: char| {
                    c == ' ' || c == ':' || c == '=' || c == '"' || c == '\''
                })
                .len();
        let value_start = after + gap;
        let value_len = text[value_start..]
            .find(['"', '\'', ',', ';', '\n', '\r', '<', '}'])
            .unwrap_or(text.len() - value_start);
        // A bare word ("token expired") has no `:` or `=` before its value: leave it.
        let separated = match *marker {
            "bearer" | "basic" => gap > 0,
            _ => text[after..value_start].contains([':', '=']),
        };
        if separated && value_len > 0 {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_start + value_len;
            at = copied;
        } else {
            at = after;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sent_token_and_authorization_values_never_appear() {
        let sent = HeaderValue::from_static("Bearer s3cr3t-T0ken");
        let body = b"{\"error\":\"invalid token s3cr3t-T0ken\",\"echo\":{\"authorization\":\"Bearer s3cr3t-T0ken\"}}\n\x1b[31mnext line";
        let shown = excerpt(body, Some(&sent));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains('\x1b') && !shown.contains('\n'), "{shown}");
        assert!(shown.contains("invalid token [redacted]"), "{shown}");
        let other = excerpt(b"Authorization: Basic dXNlcjpwYXNz\r\nfailed", None);
        assert_eq!(other, "Authorization: [redacted]  failed");
    }

    #[test]
    fn a_credential_cut_by_the_read_limit_is_left_out() {
        let sent = HeaderValue::from_static("Bearer abcdefghij");
        // A long value redacted in front brings the end of the read into the excerpt.
        let mut body = b"authorization: ".to_vec();
        body.resize(READ_LIMIT - 6, b'v');
        body.extend_from_slice(b"\nabcde");
        let shown = excerpt(&body, Some(&sent));
        assert_eq!(shown, "authorization: [redacted]");
    }

    #[test]
    fn the_excerpt_is_bounded_and_plain_words_stay() {
        let long = "a".repeat(10_000);
        assert_eq!(excerpt(long.as_bytes(), None).len(), MAX_CHARS);
        assert_eq!(
            excerpt(b"token expired, log in again", None),
            "token expired, log in again"
        );
    }
}
