//! `[server.limits]`: every key optional, each replacing one default of [`ServerLimits`].

use serde_spanned::Spanned;

use super::Cx;
use crate::config::model::ServerLimits;
use crate::config::raw::RawServerLimits;

impl Cx<'_> {
    pub(super) fn server_limits(&mut self, raw: RawServerLimits) -> ServerLimits {
        let default = ServerLimits::default();
        let key = |name: &str| format!("server.limits.{name}");
        // A body limit that no body could meet is shown where the user wrote a key of it.
        let body_limit_at = [&raw.max_request_body, &raw.max_request_bodies_total]
            .into_iter()
            .find_map(|written| written.as_ref().map(Spanned::span))
            .unwrap_or_default();
        let limits = ServerLimits {
            max_connections: self
                .count(raw.max_connections, &key("max_connections"))
                .unwrap_or(default.max_connections),
            header_read_timeout: self
                .timeout(raw.header_read_timeout, &key("header_read_timeout"))
                .unwrap_or(default.header_read_timeout),
            body_read_timeout: self
                .timeout(raw.body_read_timeout, &key("body_read_timeout"))
                .unwrap_or(default.body_read_timeout),
            idle_timeout: self
                .timeout(raw.idle_timeout, &key("idle_timeout"))
                .unwrap_or(default.idle_timeout),
            max_request_body: self
                .size(raw.max_request_body, &key("max_request_body"))
                .unwrap_or(default.max_request_body),
            max_request_bodies_total: self
                .size(
                    raw.max_request_bodies_total,
                    &key("max_request_bodies_total"),
                )
                .unwrap_or(default.max_request_bodies_total),
            max_sessions: self
                .count(raw.max_sessions, &key("max_sessions"))
                .unwrap_or(default.max_sessions),
            session_idle_timeout: self
                .timeout(raw.session_idle_timeout, &key("session_idle_timeout"))
                .unwrap_or(default.session_idle_timeout),
            max_sessions_per_identity: self
                .count(
                    raw.max_sessions_per_identity,
                    &key("max_sessions_per_identity"),
                )
                .unwrap_or(default.max_sessions_per_identity),
            max_streams_per_session: self
                .count(raw.max_streams_per_session, &key("max_streams_per_session"))
                .unwrap_or(default.max_streams_per_session),
        };
        if limits.max_request_body > limits.max_request_bodies_total {
            let message = format!(
                "{} bytes is more than max_request_bodies_total ({}), so no such body could be received",
                limits.max_request_body, limits.max_request_bodies_total
            );
            let fix = "lower max_request_body or raise max_request_bodies_total";
            self.problems
                .push(body_limit_at, &key("max_request_body"), message, fix);
        }
        limits
    }

    /// A count of at least 1 (a limit of 0 would refuse everything, which is never meant).
    pub(super) fn count(&mut self, value: Option<Spanned<u64>>, key: &str) -> Option<usize> {
        let value = value?;
        match usize::try_from(*value.get_ref()) {
            Ok(count) if count > 0 => Some(count),
            _ => {
                let fix = "use a positive number, or remove the key for its default";
                self.zero_refused(value.span(), key, fix);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::model::ServerLimits;

    fn resolve(text: &str) -> Result<ServerLimits, Vec<String>> {
        let file = Path::new("/nonexistent/n.toml");
        super::super::resolve(text, file, &|_| None)
            .map(|config| config.server.limits)
            .map_err(|error| error.problems().iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn absent_keys_keep_their_defaults() {
        let limits = resolve("[server.limits]\nmax_sessions = 3\nidle_timeout = \"5s\"\n").unwrap();
        assert_eq!(
            limits,
            ServerLimits {
                max_sessions: 3,
                idle_timeout: Duration::from_secs(5),
                ..ServerLimits::default()
            }
        );
        assert_eq!(resolve("").unwrap(), ServerLimits::default());
    }

    #[test]
    fn zero_limits_and_unknown_keys_are_refused_with_their_position() {
        let problems =
            resolve("[server.limits]\nmax_connections = 0\nheader_read_timeout = 0\n").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains(":2:19: server.limits.max_connections: must be at least 1"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("server.limits.header_read_timeout: must be longer than zero"),
            "{problems:?}"
        );
        let problems =
            resolve("[server.limits]\nmax_request_bodies_total = \"4KiB\"\n").unwrap_err();
        assert!(
            problems[0].contains(
                "max_request_body: 8388608 bytes is more than max_request_bodies_total (4096)"
            ),
            "{problems:?}"
        );
        let problems = resolve("[server.limits]\nmax_body = 1\n").unwrap_err();
        assert!(
            problems[0].contains("unknown key `max_body`"),
            "{problems:?}"
        );
    }
}
