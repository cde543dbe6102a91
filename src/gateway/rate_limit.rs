//! `[mcp.servers.NAME.rate_limits]`: token buckets per server and per tool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// A token bucket refilled continuously: `limit` calls per `interval`, bursts up to `limit`.
#[derive(Debug)]
pub struct Bucket {
    limit: f64,
    interval: Duration,
    // (tokens left, last refill). A std Mutex: two float updates, never held across await.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(limit: u32, interval: Duration) -> Self {
        Self {
            limit: f64::from(limit),
            interval,
            state: Mutex::new((f64::from(limit), Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let per_second = self.limit / self.interval.as_secs_f64();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * per_second).min(self.limit);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / per_second))
        }
    }

    /// "100 per 1h" for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} per {}",
            self.limit,
            humantime::format_duration(self.interval)
        )
    }
}

/// The buckets of one server.
#[derive(Debug)]
pub struct Limiter {
    server: Bucket,
    tools: HashMap<String, Bucket>,
}

impl Limiter {
    /// Buckets for a server's configuration.
    pub fn new(config: &RateLimit) -> Self {
        let tools = config
            .tools
            .iter()
            .map(|(name, limit)| (name.clone(), Bucket::new(limit.limit, limit.interval)))
            .collect();
        Self {
            server: Bucket::new(config.limit, config.interval),
            tools,
        }
    }

    /// Admits one call of `tool` (the downstream's name), or returns the bucket that refused
    /// and the wait. A tool with its own limit is not counted against the server's.
    pub fn admit(&self, tool: Option<&str>) -> Result<(), (&Bucket, Duration)> {
        let bucket = tool
            .and_then(|tool| self.tools.get(tool))
            .unwrap_or(&self.server);
        bucket.try_take().map_err(|wait| (bucket, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_with_a_wait() {
        let limiter = Limiter::new(&RateLimit {
            limit: 2,
            interval: Duration::from_secs(3600),
            tools: vec![],
        });
        assert!(limiter.admit(Some("echo")).is_ok());
        assert!(limiter.admit(None).is_ok());
        let Err((bucket, wait)) = limiter.admit(Some("echo")) else {
            panic!("third call admitted")
        };
        assert!(wait > Duration::from_secs(1700) && wait <= Duration::from_secs(1800));
        assert_eq!(bucket.describe(), "2 per 1h");
    }

    #[test]
    fn tool_limits_are_separate() {
        let tools = vec![(
            "slow".to_owned(),
            RateLimit {
                limit: 1,
                interval: Duration::from_secs(60),
                tools: vec![],
            },
        )];
        let limiter = Limiter::new(&RateLimit {
            limit: 5,
            interval: Duration::from_secs(60),
            tools,
        });
        assert!(limiter.admit(Some("slow")).is_ok());
        assert!(limiter.admit(Some("slow")).is_err());
        assert!(limiter.admit(Some("fast")).is_ok());
    }
}
