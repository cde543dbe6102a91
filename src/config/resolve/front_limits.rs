//! `[server.rate_limits]` and `[server.client_ip]`: Nexus's keys, plus `per_client`.

use serde_spanned::Spanned;

use super::Cx;
use crate::config::model::{ClientIp, ClientQuota, FrontLimits, Quota};
use crate::config::raw::{RawClientIp, RawFrontLimits, RawQuota, RawStorage};
use crate::config::template::join;

const KEY: &str = "server.rate_limits";

impl Cx<'_> {
    /// `None` when rate limiting is off (`enabled` is false by default, as in Nexus) or no
    /// quota is set.
    pub(super) fn front_limits(&mut self, raw: Spanned<RawFrontLimits>) -> Option<FrontLimits> {
        let table = raw.span();
        let raw = raw.into_inner();
        if let Some(storage) = &raw.storage {
            self.storage(storage);
        }
        let limits = FrontLimits {
            global: raw.global.map(|raw| self.quota(&raw, &join(KEY, "global"))),
            per_ip: raw.per_ip.map(|raw| self.quota(&raw, &join(KEY, "per_ip"))),
            per_client: raw.per_client.map(|raw| {
                let key = join(KEY, "per_client");
                let default = self.quota_of(&raw.limit, &raw.interval, &key);
                let mut groups: Vec<_> = raw.groups.unwrap_or_default().into_iter().collect();
                groups.sort_by_key(|(_, quota)| quota.limit.span().start);
                let groups = groups
                    .into_iter()
                    .map(|(group, quota)| {
                        let quota = self.quota(&quota, &join(&join(&key, "groups"), &group));
                        (group, quota)
                    })
                    .collect();
                ClientQuota { default, groups }
            }),
        };
        let any = limits != FrontLimits::default();
        let enabled = raw.enabled.unwrap_or(false);
        if any && !enabled && raw.enabled.is_none() {
            let message = "quotas are set, but `enabled` is false (the default, as in Nexus), so no request is limited".to_string();
            let fix = "add `enabled = true`, or `enabled = false` to say it is meant";
            self.problems.warn(table, KEY, message, fix);
        }
        (enabled && any).then_some(limits)
    }

    fn storage(&mut self, storage: &Spanned<RawStorage>) {
        if storage.get_ref().0 != "memory" {
            let message = format!(
                "storage `{}` is not supported: limits are counted in this gateway's memory",
                storage.get_ref().0
            );
            let fix = "remove `storage` or set it to \"memory\"";
            let key = join(KEY, "storage");
            self.problems.push(storage.span(), &key, message, fix);
        }
    }

    fn quota(&mut self, raw: &RawQuota, key: &str) -> Quota {
        self.quota_of(&raw.limit, &raw.interval, key)
    }

    fn quota_of(
        &mut self,
        limit: &Spanned<u32>,
        interval: &Spanned<crate::config::raw::RawDuration>,
        key: &str,
    ) -> Quota {
        if *limit.get_ref() == 0 {
            let fix = "set the number of requests allowed per interval";
            self.zero_refused(limit.span(), &join(key, "limit"), fix);
        }
        Quota {
            limit: *limit.get_ref(),
            interval: self
                .timeout(Some(interval.clone()), &join(key, "interval"))
                .unwrap_or_default(),
        }
    }

    pub(super) fn client_ip(&mut self, raw: RawClientIp) -> ClientIp {
        let hops = raw.x_forwarded_for_trusted_hops.map(|hops| {
            usize::try_from(*hops.get_ref()).unwrap_or_else(|_| {
                let key = "server.client_ip.x_forwarded_for_trusted_hops";
                let message = format!("{} hops is more than can be counted", hops.get_ref());
                let fix = "set the number of proxies in front of the gateway";
                self.problems.push(hops.span(), key, message, fix);
                0
            })
        });
        ClientIp {
            x_real_ip: raw.x_real_ip.unwrap_or(false),
            x_forwarded_for_trusted_hops: hops,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::model::{ClientIp, ClientQuota, FrontLimits, Quota};

    fn resolve(text: &str) -> Result<crate::config::Server, Vec<String>> {
        let file = Path::new("/nonexistent/n.toml");
        super::super::resolve(text, file, &|_| None)
            .map(|config| config.server)
            .map_err(|error| error.problems().iter().map(|p| p.to_string()).collect())
    }

    fn quota(limit: u32, seconds: u64) -> Quota {
        Quota {
            limit,
            interval: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_nexus_table_starts_unchanged_and_per_client_groups_keep_file_order() {
        let text = "[server.rate_limits]\nenabled = true\nstorage = \"memory\"\n\
            [server.rate_limits.global]\nlimit = 1000\ninterval = \"60s\"\n\
            [server.rate_limits.per_ip]\nlimit = 100\ninterval = \"60s\"\n\
            [server.rate_limits.per_client]\nlimit = 10\ninterval = \"1m\"\n\
            [server.rate_limits.per_client.groups.premium]\nlimit = 100\ninterval = \"1m\"\n\
            [server.rate_limits.per_client.groups.basic]\nlimit = 5\ninterval = \"1m\"\n\
            [server.client_ip]\nx_real_ip = true\nx_forwarded_for_trusted_hops = 1\n";
        let server = resolve(text).unwrap();
        assert_eq!(
            server.rate_limits,
            Some(FrontLimits {
                global: Some(quota(1000, 60)),
                per_ip: Some(quota(100, 60)),
                per_client: Some(ClientQuota {
                    default: quota(10, 60),
                    groups: vec![
                        ("premium".to_owned(), quota(100, 60)),
                        ("basic".to_owned(), quota(5, 60))
                    ],
                }),
            })
        );
        assert_eq!(
            server.client_ip,
            ClientIp {
                x_real_ip: true,
                x_forwarded_for_trusted_hops: Some(1)
            }
        );
    }

    #[test]
    fn limits_are_off_unless_enabled_as_in_nexus_with_a_warning() {
        let text = "[server.rate_limits]\nglobal = { limit = 1, interval = \"1s\" }\n";
        let file = Path::new("/nonexistent/n.toml");
        let config = super::super::resolve(text, file, &|_| None).unwrap();
        assert_eq!(config.server.rate_limits, None);
        let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("server.rate_limits: quotas are set, but `enabled` is false"),
            "{warnings:?}"
        );
        let text =
            "[server.rate_limits]\nenabled = false\nglobal = { limit = 1, interval = \"1s\" }\n";
        let config = super::super::resolve(text, file, &|_| None).unwrap();
        assert!(
            config.warnings.is_empty(),
            "an explicit `enabled = false` is meant"
        );
        assert_eq!(resolve("").unwrap().client_ip, ClientIp::default());
    }

    #[test]
    fn redis_zero_limits_and_unknown_keys_are_refused_with_their_position() {
        let text = "[server.rate_limits]\nenabled = true\n\
            storage = { type = \"redis\", url = \"redis://localhost:6379\" }\n\
            per_ip = { limit = 0, interval = \"0s\" }\n";
        let problems = resolve(text).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0]
                .contains(":3:11: server.rate_limits.storage: storage `redis` is not supported"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("server.rate_limits.per_ip.limit: must be at least 1"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("server.rate_limits.per_ip.interval: must be longer than zero"),
            "{problems:?}"
        );
        let problems = resolve("[server.rate_limits]\nper_user = 1\n").unwrap_err();
        assert!(
            problems[0].contains("unknown key `per_user`"),
            "{problems:?}"
        );
    }
}
