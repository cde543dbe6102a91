//! Rate limits counted per caller: the front door's `[server.rate_limits]` (`global`, `per_ip`,
//! `per_client` with group overrides) and the keyed quotas the gateway applies per server and
//! per tool. The counting is governor's GCRA: a quota of `limit` per `interval` admits `limit`
//! requests at once and gives one back every `interval / limit`, so a caller that used it all
//! has all of it again one `interval` later.
//!
//! Memory: every key (address, identity) is a map entry while its state differs from a fresh
//! one, i.e. for at most one `interval` after its last request. [`FrontDoor::retain`] and
//! [`Limiter::retain`] drop the others; the server and the gateway call them periodically.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;

use super::{Caller, Principal};
use crate::config::{FrontLimits, Quota};

/// Whom a per-caller quota counts a request against: the client id when there is one, else the
/// principal. Anonymous callers have no key of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// `[server.client_identification] client_id`.
    Client(Arc<str>),
    /// A verified principal without a client id.
    Principal(Principal),
}

impl LimitKey {
    /// The key `caller` is counted under, `None` for an anonymous caller.
    pub fn of(caller: &Caller) -> Option<Self> {
        if let Some(client) = &caller.client_id {
            return Some(Self::Client(client.clone()));
        }
        (caller.principal != Principal::Anonymous)
            .then(|| Self::Principal(caller.principal.clone()))
    }
}

/// A quota refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The configuration key of the quota, e.g. `server.rate_limits.per_ip`.
    pub limit: String,
    /// The quota, e.g. "100 per 1m".
    pub quota: String,
    /// How long until the quota admits a request again.
    pub wait: Duration,
}

impl Refusal {
    /// The wait in whole seconds, rounded up (at least 1), as `Retry-After` says it.
    pub fn retry_after(&self) -> u64 {
        let seconds = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        seconds.max(1)
    }

    /// The message for the client.
    pub fn message(&self) -> String {
        format!(
            "rate limit [{}] reached ({}); retry in {} s",
            self.limit,
            self.quota,
            self.retry_after()
        )
    }
}

/// One quota counted separately per key.
pub struct Limiter<K: Hash + Eq + Clone> {
    name: String,
    quota: Quota,
    state: governor::RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `quota` under the configuration key `name` (for messages).
    pub fn new(name: String, quota: Quota) -> Self {
        // `resolve` refuses a zero limit or interval; clamping keeps this total anyway.
        let limit = NonZeroU32::new(quota.limit).unwrap_or(NonZeroU32::MIN);
        let period = (quota.interval / limit.get()).max(Duration::from_nanos(1));
        let gcra = governor::Quota::with_period(period)
            .expect("BUG: the period is positive")
            .allow_burst(limit);
        Self {
            name,
            quota,
            state: governor::RateLimiter::keyed(gcra),
        }
    }

    /// Counts one request of `key`, or says how long until one is admitted.
    pub fn check(&self, key: &K) -> Result<(), Refusal> {
        self.state.check_key(key).map_err(|not_until| Refusal {
            limit: self.name.clone(),
            quota: describe(&self.quota),
            wait: not_until.wait_time_from(self.state.clock().now()),
        })
    }

    /// Forgets the keys whose state is that of a fresh key.
    pub fn retain(&self) {
        self.state.retain_recent();
        self.state.shrink_to_fit();
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// The quota's interval.
    pub fn interval(&self) -> Duration {
        self.quota.interval
    }
}

/// "100 per 1m".
fn describe(quota: &Quota) -> String {
    format!(
        "{} per {}",
        quota.limit,
        humantime::format_duration(quota.interval)
    )
}

/// `[server.rate_limits]`: every request to the MCP endpoint is counted once against each
/// quota that applies to its caller.
pub struct FrontDoor {
    global: Option<Limiter<()>>,
    per_ip: Option<Limiter<IpAddr>>,
    per_client: Option<Limiter<LimitKey>>,
    // Most generous first, so a caller in several groups gets the best of them.
    groups: Vec<(String, Limiter<LimitKey>)>,
    config: FrontLimits,
}

const KEY: &str = "server.rate_limits";

impl FrontDoor {
    /// The limiters of a configuration.
    pub fn new(config: &FrontLimits) -> Self {
        let named = |name: &str| format!("{KEY}.{name}");
        let mut groups: Vec<(String, Limiter<LimitKey>)> = config
            .per_client
            .iter()
            .flat_map(|client| &client.groups)
            .map(|(group, quota)| {
                let name = format!("{KEY}.per_client.groups.{group}");
                (group.clone(), Limiter::new(name, *quota))
            })
            .collect();
        groups.sort_by(|(_, a), (_, b)| rate(&b.quota).total_cmp(&rate(&a.quota)));
        Self {
            global: config
                .global
                .map(|quota| Limiter::new(named("global"), quota)),
            per_ip: config
                .per_ip
                .map(|quota| Limiter::new(named("per_ip"), quota)),
            per_client: config
                .per_client
                .as_ref()
                .map(|client| Limiter::new(named("per_client"), client.default)),
            groups,
            config: config.clone(),
        }
    }

    /// The `[server.rate_limits]` it counts.
    pub fn config(&self) -> &FrontLimits {
        &self.config
    }

    /// Counts one request of `caller`. The quotas are tried from the most specific to the
    /// global one and counting stops at the first refusal, so a client over its own quota
    /// does not use up everyone's.
    pub fn admit(&self, caller: &Caller) -> Result<(), Refusal> {
        if let Some(key) = LimitKey::of(caller) {
            let group = self
                .groups
                .iter()
                .find(|(group, _)| caller.in_group(group))
                .map(|(_, limiter)| limiter);
            if let Some(limiter) = group.or(self.per_client.as_ref()) {
                limiter.check(&key)?;
            }
        }
        if let Some(limiter) = &self.per_ip {
            limiter.check(&caller.address)?;
        }
        if let Some(limiter) = &self.global {
            limiter.check(&())?;
        }
        Ok(())
    }

    /// Forgets addresses and identities whose quota is whole again.
    pub fn retain(&self) {
        if let Some(limiter) = &self.per_ip {
            limiter.retain();
        }
        let clients = self
            .per_client
            .iter()
            .chain(self.groups.iter().map(|(_, l)| l));
        clients.for_each(Limiter::retain);
    }

    /// How often [`FrontDoor::retain`] should run: often enough that an entry outlives its
    /// usefulness by at most about one of the shortest intervals (between 1 s and 1 min).
    pub fn retain_every(&self) -> Duration {
        let intervals = self
            .per_ip
            .iter()
            .map(Limiter::interval)
            .chain(self.per_client.iter().map(Limiter::interval))
            .chain(self.groups.iter().map(|(_, limiter)| limiter.interval()));
        intervals
            .min()
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Addresses the per-IP quota remembers now.
    pub fn addresses(&self) -> usize {
        self.per_ip.as_ref().map_or(0, Limiter::len)
    }
}

fn rate(quota: &Quota) -> f64 {
    f64::from(quota.limit) / quota.interval.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientQuota;

    fn quota(limit: u32, seconds: u64) -> Quota {
        Quota {
            limit,
            interval: Duration::from_secs(seconds),
        }
    }

    fn certified(name: &str, groups: &[&str]) -> Caller {
        let mut caller = Caller::anonymous("127.0.0.1".parse().unwrap());
        caller.principal = Principal::Certificate(name.into());
        caller.groups = groups.iter().map(|group| Arc::from(*group)).collect();
        caller
    }

    #[test]
    fn the_whole_limit_is_admitted_then_refused_with_a_rounded_up_wait() {
        let limiter = Limiter::new("x".into(), quota(3, 3600));
        for _ in 0..3 {
            limiter.check(&()).unwrap();
        }
        let refusal = limiter.check(&()).unwrap_err();
        assert!(refusal.wait > Duration::from_secs(1190), "{refusal:?}");
        assert!(refusal.wait <= Duration::from_secs(1200), "{refusal:?}");
        assert_eq!(refusal.retry_after(), refusal.wait.as_secs() + 1);
        assert_eq!(
            refusal.message(),
            format!(
                "rate limit [x] reached (3 per 1h); retry in {} s",
                refusal.retry_after()
            )
        );
    }

    #[test]
    fn clients_are_counted_apart_and_groups_get_their_quota() {
        let door = FrontDoor::new(&FrontLimits {
            per_client: Some(ClientQuota {
                default: quota(1, 60),
                groups: vec![
                    ("basic".into(), quota(2, 60)),
                    ("premium".into(), quota(3, 60)),
                ],
            }),
            ..FrontLimits::default()
        });
        let (alice, bob) = (certified("alice", &[]), certified("bob", &[]));
        door.admit(&alice).unwrap();
        door.admit(&bob).unwrap();
        let refusal = door.admit(&alice).unwrap_err();
        assert_eq!(refusal.limit, "server.rate_limits.per_client");
        let both = certified("carol", &["basic", "premium"]);
        for _ in 0..3 {
            door.admit(&both).unwrap();
        }
        let refusal = door.admit(&both).unwrap_err();
        assert_eq!(
            refusal.limit,
            "server.rate_limits.per_client.groups.premium"
        );
        let anonymous = Caller::anonymous("127.0.0.1".parse().unwrap());
        for _ in 0..10 {
            door.admit(&anonymous)
                .expect("anonymous callers have no per-client quota");
        }
    }

    #[test]
    fn a_refused_client_does_not_use_up_the_global_quota() {
        let door = FrontDoor::new(&FrontLimits {
            global: Some(quota(3, 60)),
            per_client: Some(ClientQuota {
                default: quota(1, 60),
                groups: vec![],
            }),
            ..FrontLimits::default()
        });
        let alice = certified("alice", &[]);
        door.admit(&alice).unwrap();
        for _ in 0..5 {
            assert_eq!(
                door.admit(&alice).unwrap_err().limit,
                "server.rate_limits.per_client"
            );
        }
        door.admit(&certified("bob", &[])).unwrap();
        door.admit(&certified("carol", &[])).unwrap();
        let refusal = door.admit(&certified("dave", &[])).unwrap_err();
        assert_eq!(refusal.limit, "server.rate_limits.global");
    }

    #[test]
    fn retain_forgets_addresses_whose_quota_is_whole() {
        let door = FrontDoor::new(&FrontLimits {
            per_ip: Some(Quota {
                limit: 5,
                interval: Duration::from_millis(50),
            }),
            ..FrontLimits::default()
        });
        for n in 0..1000u32 {
            door.admit(&Caller::anonymous(IpAddr::from(n.to_be_bytes())))
                .unwrap();
        }
        assert_eq!(door.addresses(), 1000);
        std::thread::sleep(Duration::from_millis(100));
        door.retain();
        assert_eq!(door.addresses(), 0);
    }
}
