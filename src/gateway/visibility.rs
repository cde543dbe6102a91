//! What one caller sees of a catalog: the items its groups are admitted to, with a search
//! index over exactly those tools (so neither results nor scores depend on hidden tools).
//!
//! Built once per set of relevant groups (those some rule names) and per catalog snapshot, so
//! a list costs one map lookup; a snapshot keeps at most [`MAX_VIEWS`] of them, and a caller
//! beyond that gets its listing built for the request.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use super::catalog::Rules;
use super::search;
use crate::access::Access;

/// Most group sets one catalog snapshot keeps a listing for.
pub const MAX_VIEWS: usize = 256;

/// The lists a caller sees, as exposed names and URIs.
#[derive(Debug, Default)]
pub struct Listing {
    /// Tool definitions.
    pub tools: Vec<Value>,
    /// Prompt definitions.
    pub prompts: Vec<Value>,
    /// Resources.
    pub resources: Vec<Value>,
    /// Resource templates.
    pub templates: Vec<Value>,
    /// Keyword index over `tools`.
    pub search: search::Index,
}

impl Listing {
    /// The items of `self` (the whole catalog, with `rules` in the same order) that callers
    /// in `groups` are admitted to.
    pub(super) fn filtered(&self, rules: &Rules, groups: &[Arc<str>]) -> Listing {
        let keep = |items: &[Value], rules: &[Option<Arc<Access>>]| -> Vec<Value> {
            items
                .iter()
                .zip(rules)
                .filter(|(_, access)| access.as_ref().is_none_or(|a| a.admits(groups)))
                .map(|(item, _)| item.clone())
                .collect()
        };
        let tools = keep(&self.tools, &rules.tools);
        Listing {
            search: search::Index::build(&tools),
            tools,
            prompts: keep(&self.prompts, &rules.prompts),
            resources: keep(&self.resources, &rules.resources),
            templates: keep(&self.templates, &rules.templates),
        }
    }
}

/// The listings built so far, by relevant groups.
#[derive(Default)]
pub struct Views {
    built: DashMap<Box<[Arc<str>]>, Arc<Listing>>,
}

impl Views {
    /// The listing for `groups`, built by `build` the first time.
    pub fn get_or_build(
        &self,
        groups: Box<[Arc<str>]>,
        build: impl FnOnce(&[Arc<str>]) -> Listing,
    ) -> Arc<Listing> {
        if let Some(listing) = self.built.get(&groups) {
            return listing.clone();
        }
        let listing = Arc::new(build(&groups));
        if self.built.len() < MAX_VIEWS {
            self.built.insert(groups, listing.clone());
        }
        listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_built_once_per_group_set_and_their_number_is_capped() {
        let views = Views::default();
        let mut builds = 0;
        for round in 0..2 {
            for n in 0..MAX_VIEWS + 10 {
                let key: Box<[Arc<str>]> = vec![Arc::from(format!("g{n}"))].into();
                views.get_or_build(key, |_| {
                    builds += 1;
                    Listing::default()
                });
            }
            assert_eq!(views.built.len(), MAX_VIEWS, "round {round}");
        }
        // The first round builds every set; the second only those beyond the cap.
        assert_eq!(builds, MAX_VIEWS + 10 + 10);
    }
}
