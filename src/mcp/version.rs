//! Protocol revisions the gateway speaks, and negotiation.

/// Handshake-era revisions the front end accepts, newest first.
pub const HANDSHAKE_REVISIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The newest handshake-era revision; offered to downstreams and to clients that ask for an
/// unknown one.
pub const LATEST_HANDSHAKE: &str = HANDSHAKE_REVISIONS[0];

/// Assumed when a client sends no `MCP-Protocol-Version` header (the 2025-06-18 rule).
pub const DEFAULT_WITHOUT_HEADER: &str = "2025-03-26";

/// The revision to answer a client's `initialize` with: its own when supported, else our latest
/// (the client then decides whether to continue).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|wanted| HANDSHAKE_REVISIONS.iter().find(|known| **known == wanted))
        .copied()
        .unwrap_or(LATEST_HANDSHAKE)
}

/// Whether a revision is one we serve.
pub fn is_supported(revision: &str) -> bool {
    HANDSHAKE_REVISIONS.contains(&revision)
}

/// Whether `revision` is `agreed` or older (revisions are dates, so they compare as text).
pub fn is_within(revision: &str, agreed: &str) -> bool {
    revision <= agreed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_serves_its_revision_and_older_ones() {
        assert!(is_within("2025-11-25", "2025-11-25"));
        assert!(is_within("2025-03-26", "2025-11-25"));
        assert!(!is_within("2025-11-25", "2025-06-18"));
    }

    #[test]
    fn negotiation_prefers_the_clients_known_revision() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_HANDSHAKE);
        assert_eq!(negotiate(None), LATEST_HANDSHAKE);
    }
}
