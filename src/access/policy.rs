//! Who may use which server, tool, prompt and resource: `allow`/`deny` groups and
//! `required_scopes`, resolved once per configuration into one [`Access`] per rule.
//!
//! Nexus's semantics, for callers with several groups: with `allow` set, a caller needs one
//! of its groups in it (an empty `allow` admits nobody, a caller without groups is not
//! admitted); a caller with any group in `deny` is refused, allowed or not (deny wins); no
//! rules admit everyone. An entry (`[tools.T]`, `[prompts.P]`, `[resources."URI"]`) that
//! sets `allow` or `deny` replaces the server's `allow` and `deny` (Nexus); one that sets
//! neither keeps them (Nexus would admit everyone: write `deny = []` for that).
//! `required_scopes` of an entry replaces the server's.
//!
//! What a caller is not admitted to is invisible to it; what it is admitted to but lacks
//! scopes for is listed and refused when used with a scope challenge (403), so that the
//! client can ask its authorization server for the scope and retry (the MCP authorization
//! spec's step-up).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Caller, Challenge};
use crate::config::{AccessPolicy, AccessRule, ServerAccess};

/// The rules in force for one item (or one server): never all empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    allow: Option<BTreeSet<String>>,
    deny: Option<BTreeSet<String>>,
    required_scopes: Vec<String>,
}

impl Access {
    /// The rules of `entry` over those of `server`; `None` when nothing is restricted.
    fn merged(entry: Option<&AccessRule>, server: &AccessRule) -> Option<Arc<Self>> {
        let groups = match entry {
            Some(entry) if entry.allow.is_some() || entry.deny.is_some() => entry,
            _ => server,
        };
        let scopes = entry
            .and_then(|entry| entry.required_scopes.as_ref())
            .or(server.required_scopes.as_ref());
        let access = Self {
            allow: groups.allow.clone(),
            deny: groups.deny.clone(),
            required_scopes: scopes.cloned().unwrap_or_default(),
        };
        let open = access.allow.is_none()
            && access.deny.as_ref().is_none_or(BTreeSet::is_empty)
            && access.required_scopes.is_empty();
        (!open).then(|| Arc::new(access))
    }

    /// Whether a caller in `groups` may see and use the item.
    pub fn admits(&self, groups: &[Arc<str>]) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|allow| groups.iter().any(|group| allow.contains(&**group)));
        let denied = self
            .deny
            .as_ref()
            .is_some_and(|deny| groups.iter().any(|group| deny.contains(&**group)));
        allowed && !denied
    }

    /// The refusal for a caller without every required scope; `what` names the item.
    pub fn challenge(&self, caller: &Caller, what: &str) -> Option<Challenge> {
        let missing: Vec<&str> = self
            .required_scopes
            .iter()
            .map(String::as_str)
            .filter(|scope| !caller.has_scope(scope))
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(Challenge::InsufficientScope {
            required: self.required_scopes.clone(),
            description: format!("{what} needs scope {}", missing.join(" ")),
        })
    }
}

/// Whether `access` (none: no rules) admits `caller`.
pub fn admits(access: Option<&Arc<Access>>, caller: &Caller) -> bool {
    access.is_none_or(|access| access.admits(&caller.groups))
}

/// The access policy of every server, resolved: one [`Access`] per server and entry.
#[derive(Debug)]
pub struct Policy {
    servers: HashMap<String, ServerRules>,
    /// Every group an `allow` or `deny` names: the only ones that change what a caller sees.
    named: BTreeSet<String>,
    /// No rule restricts anything (read on every list, so computed once).
    open: bool,
}

#[derive(Debug, Default)]
struct ServerRules {
    server: Option<Arc<Access>>,
    tools: HashMap<String, Option<Arc<Access>>>,
    prompts: HashMap<String, Option<Arc<Access>>>,
    resources: HashMap<String, Option<Arc<Access>>>,
}

/// What kind of item a rule is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A tool, by its name on the server.
    Tool,
    /// A prompt, by its name on the server.
    Prompt,
    /// A resource URI or a template's `uriTemplate`.
    Resource,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(&AccessPolicy::default())
    }
}

impl Policy {
    /// Resolves `[mcp.servers.*]` rules.
    pub fn new(config: &AccessPolicy) -> Self {
        let servers: HashMap<String, ServerRules> = config
            .servers
            .iter()
            .map(|(name, access)| (name.clone(), ServerRules::new(access)))
            .collect();
        let rules = config.servers.values().flat_map(|server| {
            let entries = [&server.tools, &server.prompts, &server.resources];
            std::iter::once(&server.rule).chain(entries.into_iter().flat_map(|e| e.values()))
        });
        let named = rules
            .flat_map(|rule| rule.allow.iter().chain(&rule.deny).flatten())
            .cloned()
            .collect();
        let open = servers.values().all(ServerRules::is_open);
        Self {
            servers,
            named,
            open,
        }
    }

    /// The caller's groups that some rule names, sorted and once each: callers with the same
    /// relevant groups see the same items, however many other groups they have.
    pub fn relevant(&self, groups: &[Arc<str>]) -> Box<[Arc<str>]> {
        let mut relevant: Vec<Arc<str>> = groups
            .iter()
            .filter(|group| self.named.contains(&***group))
            .cloned()
            .collect();
        relevant.sort();
        relevant.dedup();
        relevant.into()
    }

    /// Whether no rule restricts anything: then nobody's view needs filtering.
    pub fn is_empty(&self) -> bool {
        self.open
    }

    /// The rules of a server as a whole (what decides whether it may be named to a caller).
    pub fn server(&self, server: &str) -> Option<Arc<Access>> {
        self.servers.get(server)?.server.clone()
    }

    /// The rules in force for an item of `server`: its entry over the server's.
    pub fn item(&self, server: &str, item: Item, name: &str) -> Option<Arc<Access>> {
        let rules = self.servers.get(server)?;
        let entries = match item {
            Item::Tool => &rules.tools,
            Item::Prompt => &rules.prompts,
            Item::Resource => &rules.resources,
        };
        match entries.get(name) {
            Some(entry) => entry.clone(),
            None => rules.server.clone(),
        }
    }
}

impl ServerRules {
    fn new(access: &ServerAccess) -> Self {
        let entries = |entries: &std::collections::BTreeMap<String, AccessRule>| {
            entries
                .iter()
                .map(|(name, entry)| (name.clone(), Access::merged(Some(entry), &access.rule)))
                .collect()
        };
        Self {
            server: Access::merged(None, &access.rule),
            tools: entries(&access.tools),
            prompts: entries(&access.prompts),
            resources: entries(&access.resources),
        }
    }

    fn is_open(&self) -> bool {
        self.server.is_none()
            && [&self.tools, &self.prompts, &self.resources]
                .iter()
                .all(|entries| entries.values().all(Option::is_none))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn set(groups: &[&str]) -> Option<BTreeSet<String>> {
        Some(groups.iter().map(|g| (*g).to_owned()).collect())
    }

    fn rule(allow: Option<&[&str]>, deny: Option<&[&str]>) -> AccessRule {
        AccessRule {
            allow: allow.and_then(set),
            deny: deny.and_then(set),
            required_scopes: None,
        }
    }

    fn groups(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|name| Arc::from(*name)).collect()
    }

    fn policy(server: AccessRule, tools: &[(&str, AccessRule)]) -> Policy {
        let access = ServerAccess {
            rule: server,
            tools: tools
                .iter()
                .map(|(name, rule)| ((*name).to_owned(), rule.clone()))
                .collect(),
            ..ServerAccess::default()
        };
        Policy::new(&AccessPolicy {
            servers: [("s".to_owned(), access)].into(),
        })
    }

    fn may(policy: &Policy, tool: &str, caller: &[&str]) -> bool {
        policy
            .item("s", Item::Tool, tool)
            .is_none_or(|access| access.admits(&groups(caller)))
    }

    #[test]
    fn no_rules_admit_everyone_and_need_no_filtering() {
        let open = policy(AccessRule::default(), &[("t", rule(None, Some(&[])))]);
        assert!(open.is_empty());
        assert!(may(&open, "t", &[]));
        assert!(Policy::default().is_empty());
    }

    #[test]
    fn allow_needs_one_of_the_callers_groups_and_empty_allow_admits_nobody() {
        let p = policy(rule(Some(&["admins", "ops"]), None), &[]);
        assert!(!p.is_empty());
        assert!(may(&p, "t", &["users", "ops"]));
        assert!(!may(&p, "t", &["users"]));
        assert!(!may(&p, "t", &[]));
        let nobody = policy(rule(Some(&[]), None), &[]);
        assert!(!may(&nobody, "t", &["admins"]));
    }

    #[test]
    fn only_groups_that_rules_name_tell_callers_apart() {
        let p = policy(rule(Some(&["admins"]), Some(&["contractors"])), &[]);
        let relevant = p.relevant(&groups(&["x", "contractors", "admins", "y", "admins"]));
        assert_eq!(&*relevant, &*groups(&["admins", "contractors"]));
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(rule(Some(&["admins"]), Some(&["contractors"])), &[]);
        assert!(may(&p, "t", &["admins"]));
        assert!(!may(&p, "t", &["admins", "contractors"]));
        let deny_only = policy(rule(None, Some(&["contractors"])), &[]);
        assert!(may(&deny_only, "t", &[]));
        assert!(!may(&deny_only, "t", &["contractors"]));
    }

    #[test]
    fn a_tool_entry_replaces_the_servers_groups() {
        let p = policy(
            rule(Some(&["admins"]), Some(&["contractors"])),
            &[
                ("open", rule(None, Some(&[]))),
                ("ops_only", rule(Some(&["ops"]), None)),
                (
                    "scoped",
                    AccessRule {
                        required_scopes: Some(vec!["files:write".into()]),
                        ..AccessRule::default()
                    },
                ),
            ],
        );
        assert!(may(&p, "open", &["contractors"]));
        assert!(may(&p, "ops_only", &["ops"]));
        assert!(!may(&p, "ops_only", &["admins"]));
        // The server's server-wide deny no longer applies to an entry with its own rules.
        assert!(may(&p, "ops_only", &["ops", "contractors"]));
        // An entry with neither allow nor deny keeps the server's.
        assert!(may(&p, "scoped", &["admins"]));
        assert!(!may(&p, "scoped", &["ops"]));
        assert!(!may(&p, "other", &["ops"]));
    }

    #[test]
    fn missing_scopes_give_a_challenge_naming_every_required_scope() {
        let server = AccessRule {
            required_scopes: Some(vec!["files:read".into(), "files:write".into()]),
            ..AccessRule::default()
        };
        let p = policy(server, &[]);
        let access = p.item("s", Item::Tool, "t").unwrap();
        let mut caller = Caller::anonymous(Ipv4Addr::LOCALHOST.into());
        caller.scopes = groups(&["files:read"]);
        assert!(access.admits(&caller.groups));
        assert_eq!(
            access.challenge(&caller, "the tool s__t"),
            Some(Challenge::InsufficientScope {
                required: vec!["files:read".into(), "files:write".into()],
                description: "the tool s__t needs scope files:write".into(),
            })
        );
        caller.scopes = groups(&["files:write", "files:read"]);
        assert_eq!(access.challenge(&caller, "the tool s__t"), None);
    }

    #[test]
    fn prompts_and_resources_have_entries_of_their_own() {
        let access = ServerAccess {
            prompts: [("secret".to_owned(), rule(Some(&["admins"]), None))].into(),
            resources: [(
                "file:///etc/{name}".to_owned(),
                rule(None, Some(&["users"])),
            )]
            .into(),
            ..ServerAccess::default()
        };
        let p = Policy::new(&AccessPolicy {
            servers: [("s".to_owned(), access)].into(),
        });
        assert!(p.server("s").is_none());
        let prompt = p.item("s", Item::Prompt, "secret").unwrap();
        assert!(!prompt.admits(&groups(&["users"])));
        assert!(p.item("s", Item::Tool, "secret").is_none());
        let template = p.item("s", Item::Resource, "file:///etc/{name}").unwrap();
        assert!(!template.admits(&groups(&["users"])));
        assert!(p.item("other", Item::Resource, "x").is_none());
    }
}
