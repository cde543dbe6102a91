//! `[mcp.servers.NAME.rate_limits]`: a quota per server and per tool, counted per caller when
//! the caller has an identity (client id, else principal) and for all anonymous callers
//! together otherwise.

use std::collections::HashMap;

use crate::access::Caller;
use crate::access::limits::{LimitKey, Limiter as Quota, Refusal};
use crate::config::{self, RateLimit};

/// Who a server's or tool's quota counts a call against (`None`: the anonymous callers).
type Counted = Option<LimitKey>;

/// The quotas of one server.
pub struct Limiter {
    server: Quota<Counted>,
    tools: HashMap<String, Quota<Counted>>,
}

impl Limiter {
    /// The quotas of server `name`'s configuration.
    pub fn new(name: &str, config: &RateLimit) -> Self {
        let key = format!("mcp.servers.{name}.rate_limits");
        let quota = |limit: &RateLimit| config::Quota {
            limit: limit.limit,
            interval: limit.interval,
        };
        let tools = config
            .tools
            .iter()
            .map(|(tool, limit)| {
                let name = format!("{key}.tools.{tool}");
                (tool.clone(), Quota::new(name, quota(limit)))
            })
            .collect();
        Self {
            server: Quota::new(key, quota(config)),
            tools,
        }
    }

    /// Counts one call of `tool` (the downstream's name) by `caller`, once: against the tool's
    /// own quota when it has one, else against the server's.
    pub fn admit(&self, tool: &str, caller: &Caller) -> Result<(), Refusal> {
        let quota = self.tools.get(tool).unwrap_or(&self.server);
        quota.check(&LimitKey::of(caller))
    }

    /// Forgets callers whose quotas are whole again.
    pub fn retain(&self) {
        self.server.retain();
        self.tools.values().for_each(Quota::retain);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::access::Principal;

    fn limit(limit: u32, seconds: u64, tools: Vec<(String, RateLimit)>) -> RateLimit {
        RateLimit {
            limit,
            interval: Duration::from_secs(seconds),
            tools,
        }
    }

    fn anonymous() -> Caller {
        Caller::anonymous("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn refuses_past_the_limit_naming_it_with_a_wait() {
        let limiter = Limiter::new("files", &limit(2, 3600, vec![]));
        limiter.admit("echo", &anonymous()).unwrap();
        limiter.admit("other", &anonymous()).unwrap();
        let refusal = limiter.admit("echo", &anonymous()).unwrap_err();
        assert!(
            refusal.wait > Duration::from_secs(1700) && refusal.wait <= Duration::from_secs(1800)
        );
        assert_eq!(refusal.limit, "mcp.servers.files.rate_limits");
        assert_eq!(refusal.quota, "2 per 1h");
    }

    #[test]
    fn tool_limits_are_separate_and_identities_are_counted_apart() {
        let tools = vec![("slow".to_owned(), limit(1, 60, vec![]))];
        let limiter = Limiter::new("files", &limit(5, 60, tools));
        limiter.admit("slow", &anonymous()).unwrap();
        let refusal = limiter.admit("slow", &anonymous()).unwrap_err();
        assert_eq!(refusal.limit, "mcp.servers.files.rate_limits.tools.slow");
        limiter.admit("fast", &anonymous()).unwrap();
        let mut alice = anonymous();
        alice.principal = Principal::Certificate("CN=alice".into());
        limiter.admit("slow", &alice).unwrap();
        let mut client = anonymous();
        client.client_id = Some(Arc::from("app-1"));
        limiter.admit("slow", &client).unwrap();
        assert!(limiter.admit("slow", &alice).is_err());
    }
}
