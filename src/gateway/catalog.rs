//! The one catalog clients see, rebuilt from every downstream's lists whenever one changes.
//!
//! Tools and prompts are renamed `server__name` (unless prefixing is off); resources and
//! templates keep their URIs, and a URI offered by two servers goes to the first in config order.
//! Each item carries the [`Access`] rules in force for it, resolved when the catalog is built.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Member;
use super::search;
use super::visibility::{Listing, Views};
use crate::access::policy::{self, Item};
use crate::access::{Access, Caller, Policy};

/// Separates the server name from the tool or prompt name.
pub const SEPARATOR: &str = "__";

/// Where an exposed name leads: a downstream (by config position) and its own name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Position of the downstream in config order.
    pub server: usize,
    /// The name the downstream knows.
    pub name: String,
    /// The rules in force for it; `None`: everyone may use it.
    pub access: Option<Arc<Access>>,
}

/// Where a resource URI or template leads, and its rules.
type Owner = (usize, Option<Arc<Access>>);

/// An immutable snapshot of everything the downstreams offer, with the downstreams it was built
/// from (routes index into them, so a snapshot stays consistent across a reload).
#[derive(Default)]
pub struct Catalog {
    /// The downstreams, in config order.
    pub members: Vec<Arc<Member>>,
    /// Everything, as a caller whom no rule restricts sees it.
    all: Arc<Listing>,
    /// The rules of each item of `all`, list by list, in the same order.
    rules: Rules,
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, Owner>,
    template_routes: Vec<(Template, Owner)>,
    /// Each server's own rules (whether a caller may learn why it is not connected).
    server_rules: Vec<Option<Arc<Access>>>,
    policy: Arc<Policy>,
    views: Views,
    /// Names and URIs offered twice, described for the log.
    pub clashes: Vec<String>,
}

/// Per item of a [`Listing`], its rules.
#[derive(Default)]
pub(super) struct Rules {
    pub tools: Vec<Option<Arc<Access>>>,
    pub prompts: Vec<Option<Arc<Access>>>,
    pub resources: Vec<Option<Arc<Access>>>,
    pub templates: Vec<Option<Arc<Access>>>,
}

impl Catalog {
    /// Builds the catalog from the downstreams' last lists. `prefix` decides naming; `policy`
    /// gives each item its rules.
    pub fn build(members: Vec<Arc<Member>>, prefix: bool, policy: Arc<Policy>) -> Self {
        let mut catalog = Catalog::default();
        let mut all = Listing::default();
        for (server, member) in members.iter().enumerate() {
            let downstream = &member.downstream;
            let lists = downstream.lists();
            let name = downstream.name();
            catalog.server_rules.push(policy.server(name));
            for tool in &lists.tools {
                catalog.add_named(Kind::Tool, &mut all, (server, name), tool, prefix, &policy);
            }
            for prompt in &lists.prompts {
                catalog.add_named(
                    Kind::Prompt,
                    &mut all,
                    (server, name),
                    prompt,
                    prefix,
                    &policy,
                );
            }
            for resource in &lists.resources {
                catalog.add_resource(&mut all, server, &members, resource, &policy);
            }
            for template in &lists.templates {
                catalog.add_template(&mut all, (server, name), template, &policy);
            }
        }
        all.search = search::Index::build(&all.tools);
        catalog.all = Arc::new(all);
        catalog.members = members;
        catalog.policy = policy;
        catalog
    }

    /// What `caller` may see: everything when no rule restricts anyone (no copy), else the
    /// items its groups are admitted to, built once per set of groups that matter.
    pub fn listing(&self, caller: &Caller) -> Arc<Listing> {
        if self.policy.is_empty() {
            return self.all.clone();
        }
        let groups = self.policy.relevant(&caller.groups);
        self.views
            .get_or_build(groups, |groups| self.all.filtered(&self.rules, groups))
    }

    /// The route of an exposed tool name, if `caller` may see it.
    pub fn tool(&self, name: &str, caller: &Caller) -> Option<&Route> {
        visible_route(self.tool_routes.get(name), caller)
    }

    /// The exposed definition of a tool `caller` may see (its `inputSchema` as the client
    /// sees it).
    pub fn tool_definition(&self, name: &str, caller: &Caller) -> Option<&Value> {
        self.tool(name, caller)?;
        self.all
            .tools
            .iter()
            .find(|tool| tool.get("name").and_then(Value::as_str) == Some(name))
    }

    /// Whether any caller may see a tool of this exposed name.
    pub fn has_tool(&self, name: &str) -> bool {
        self.tool_routes.contains_key(name)
    }

    /// Whether any caller may see a prompt of this exposed name.
    pub fn has_prompt(&self, name: &str) -> bool {
        self.prompt_routes.contains_key(name)
    }

    /// The route of an exposed prompt name, if `caller` may see it.
    pub fn prompt(&self, name: &str, caller: &Caller) -> Option<&Route> {
        visible_route(self.prompt_routes.get(name), caller)
    }

    /// The downstream serving a resource URI and its rules: a listed resource first, then a
    /// template match.
    pub fn resource(&self, uri: &str) -> Option<&Owner> {
        self.resource_routes.get(uri).or_else(|| {
            self.template_routes
                .iter()
                .find(|(template, _)| template.matches(uri))
                .map(|(_, owner)| owner)
        })
    }

    /// The downstream that listed a template (by its `uriTemplate` text) and its rules.
    pub fn template(&self, uri_template: &str) -> Option<&Owner> {
        self.template_routes
            .iter()
            .find(|(template, _)| template.source == uri_template)
            .map(|(_, owner)| owner)
    }

    /// Whether `caller` may learn anything about server `server` as a whole.
    pub fn server_visible(&self, server: usize, caller: &Caller) -> bool {
        policy::admits(
            self.server_rules.get(server).and_then(Option::as_ref),
            caller,
        )
    }

    fn add_named(
        &mut self,
        kind: Kind,
        all: &mut Listing,
        (server, server_name): (usize, &str),
        item: &Value,
        prefix: bool,
        policy: &Policy,
    ) {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            return;
        };
        let exposed = if prefix {
            format!("{server_name}{SEPARATOR}{name}")
        } else {
            name.to_owned()
        };
        let (items, rules, routes, item_kind) = match kind {
            Kind::Tool => (
                &mut all.tools,
                &mut self.rules.tools,
                &mut self.tool_routes,
                Item::Tool,
            ),
            Kind::Prompt => (
                &mut all.prompts,
                &mut self.rules.prompts,
                &mut self.prompt_routes,
                Item::Prompt,
            ),
        };
        if routes.contains_key(&exposed) {
            self.clashes.push(format!(
                "{kind:?} `{exposed}` is listed twice by server '{server_name}'; the first is kept"
            ));
            return;
        }
        let mut item = item.clone();
        item["name"] = Value::String(exposed.clone());
        items.push(item);
        let access = policy.item(server_name, item_kind, name);
        rules.push(access.clone());
        routes.insert(
            exposed,
            Route {
                server,
                name: name.to_owned(),
                access,
            },
        );
    }

    fn add_resource(
        &mut self,
        all: &mut Listing,
        server: usize,
        members: &[Arc<Member>],
        resource: &Value,
        policy: &Policy,
    ) {
        let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
            return;
        };
        if let Some(&(first, _)) = self.resource_routes.get(uri) {
            let (kept, ignored) = (
                members[first].downstream.name(),
                members[server].downstream.name(),
            );
            self.clashes.push(format!(
                "servers '{kept}' and '{ignored}' both offer resource {uri}; '{kept}' (first in config order) serves it"
            ));
            return;
        }
        let access = policy.item(members[server].downstream.name(), Item::Resource, uri);
        all.resources.push(resource.clone());
        self.rules.resources.push(access.clone());
        self.resource_routes
            .insert(uri.to_owned(), (server, access));
    }

    fn add_template(
        &mut self,
        all: &mut Listing,
        (server, server_name): (usize, &str),
        template: &Value,
        policy: &Policy,
    ) {
        let Some(source) = template.get("uriTemplate").and_then(Value::as_str) else {
            return;
        };
        if self.template(source).is_some() {
            return;
        }
        let access = policy.item(server_name, Item::Resource, source);
        all.templates.push(template.clone());
        self.rules.templates.push(access.clone());
        self.template_routes
            .push((Template::parse(source), (server, access)));
    }
}

fn visible_route<'a>(route: Option<&'a Route>, caller: &Caller) -> Option<&'a Route> {
    route.filter(|route| policy::admits(route.access.as_ref(), caller))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tool,
    Prompt,
}

/// An RFC 6570 URI template reduced to what routing needs: its literal parts, in order.
/// Each expression matches any non-empty text.
#[derive(Debug)]
struct Template {
    source: String,
    literals: Vec<String>,
}

impl Template {
    fn parse(source: &str) -> Self {
        let mut literals = vec![String::new()];
        let mut in_expression = false;
        for character in source.chars() {
            match (character, in_expression) {
                ('{', false) => in_expression = true,
                ('}', true) => {
                    in_expression = false;
                    literals.push(String::new());
                }
                (_, false) => literals
                    .last_mut()
                    .expect("BUG: never empty")
                    .push(character),
                (_, true) => {}
            }
        }
        Self {
            source: source.to_owned(),
            literals,
        }
    }

    fn matches(&self, uri: &str) -> bool {
        let Some((first, rest)) = self.literals.split_first() else {
            return false;
        };
        let Some(mut remaining) = uri.strip_prefix(first.as_str()) else {
            return false;
        };
        for (position, literal) in rest.iter().enumerate() {
            let last = position + 1 == rest.len();
            if last {
                // The final expression runs to where the last literal starts at the end.
                return remaining.len() > literal.len() && remaining.ends_with(literal.as_str());
            }
            // Each expression takes at least one character.
            match remaining
                .get(1..)
                .and_then(|tail| tail.find(literal.as_str()))
            {
                Some(found) => remaining = &remaining[1 + found + literal.len()..],
                None => return false,
            }
        }
        remaining.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_uris() {
        let template = Template::parse("demo://resource/dynamic/text/{resourceId}");
        assert!(template.matches("demo://resource/dynamic/text/3"));
        assert!(!template.matches("demo://resource/dynamic/text/"));
        assert!(!template.matches("demo://other/3"));
        let two = Template::parse("test://template/{id}/data");
        assert!(two.matches("test://template/42/data"));
        assert!(!two.matches("test://template/42/other"));
        assert!(Template::parse("fixed://a").matches("fixed://a"));
    }
}
