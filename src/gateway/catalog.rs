//! The one catalog clients see, rebuilt from every downstream's lists whenever one changes.
//!
//! Tools and prompts are renamed `server__name` (unless prefixing is off); resources and
//! templates keep their URIs, and a URI offered by two servers goes to the first in config order.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Member;
use super::search;

/// Separates the server name from the tool or prompt name.
pub const SEPARATOR: &str = "__";

/// Where an exposed name leads: a downstream (by config position) and its own name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Position of the downstream in config order.
    pub server: usize,
    /// The name the downstream knows.
    pub name: String,
}

/// An immutable snapshot of everything the downstreams offer, with the downstreams it was built
/// from (routes index into them, so a snapshot stays consistent across a reload).
#[derive(Default)]
pub struct Catalog {
    /// The downstreams, in config order.
    pub members: Vec<Arc<Member>>,
    /// Exposed tool definitions, in config order then downstream order.
    pub tools: Vec<Value>,
    tool_routes: HashMap<String, Route>,
    /// Exposed prompt definitions.
    pub prompts: Vec<Value>,
    prompt_routes: HashMap<String, Route>,
    /// Resources (URIs unchanged).
    pub resources: Vec<Value>,
    resource_routes: HashMap<String, usize>,
    /// Resource templates (URIs unchanged).
    pub templates: Vec<Value>,
    template_routes: Vec<(Template, usize)>,
    /// Keyword index over `tools`.
    pub search: search::Index,
    /// Names and URIs offered twice, described for the log.
    pub clashes: Vec<String>,
}

impl Catalog {
    /// Builds the catalog from the downstreams' last lists. `prefix` decides naming.
    pub fn build(members: Vec<Arc<Member>>, prefix: bool) -> Self {
        let mut catalog = Catalog::default();
        for (server, member) in members.iter().enumerate() {
            let downstream = &member.downstream;
            let lists = downstream.lists();
            let name = downstream.name();
            for tool in &lists.tools {
                catalog.add_named(Kind::Tool, server, name, tool, prefix);
            }
            for prompt in &lists.prompts {
                catalog.add_named(Kind::Prompt, server, name, prompt, prefix);
            }
            for resource in &lists.resources {
                catalog.add_resource(server, &members, resource);
            }
            for template in &lists.templates {
                catalog.add_template(server, template);
            }
        }
        catalog.search = search::Index::build(&catalog.tools);
        catalog.members = members;
        catalog
    }

    /// The route of an exposed tool name.
    pub fn tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// The exposed definition of a tool (its `inputSchema` as the client sees it).
    pub fn tool_definition(&self, name: &str) -> Option<&Value> {
        self.tools
            .iter()
            .find(|tool| tool.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The route of an exposed prompt name.
    pub fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// The downstream serving a resource URI: a listed resource first, then a template match.
    pub fn resource(&self, uri: &str) -> Option<usize> {
        self.resource_routes.get(uri).copied().or_else(|| {
            self.template_routes
                .iter()
                .find(|(template, _)| template.matches(uri))
                .map(|(_, server)| *server)
        })
    }

    /// The downstream that listed a template (by its `uriTemplate` text).
    pub fn template(&self, uri_template: &str) -> Option<usize> {
        self.template_routes
            .iter()
            .find(|(template, _)| template.source == uri_template)
            .map(|(_, server)| *server)
    }

    fn add_named(
        &mut self,
        kind: Kind,
        server: usize,
        server_name: &str,
        item: &Value,
        prefix: bool,
    ) {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            return;
        };
        let exposed = if prefix {
            format!("{server_name}{SEPARATOR}{name}")
        } else {
            name.to_owned()
        };
        let (items, routes) = match kind {
            Kind::Tool => (&mut self.tools, &mut self.tool_routes),
            Kind::Prompt => (&mut self.prompts, &mut self.prompt_routes),
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
        routes.insert(
            exposed,
            Route {
                server,
                name: name.to_owned(),
            },
        );
    }

    fn add_resource(&mut self, server: usize, members: &[Arc<Member>], resource: &Value) {
        let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
            return;
        };
        if let Some(&first) = self.resource_routes.get(uri) {
            let (kept, ignored) = (
                members[first].downstream.name(),
                members[server].downstream.name(),
            );
            self.clashes.push(format!(
                "servers '{kept}' and '{ignored}' both offer resource {uri}; '{kept}' (first in config order) serves it"
            ));
            return;
        }
        self.resources.push(resource.clone());
        self.resource_routes.insert(uri.to_owned(), server);
    }

    fn add_template(&mut self, server: usize, template: &Value) {
        let Some(source) = template.get("uriTemplate").and_then(Value::as_str) else {
            return;
        };
        if self.template(source).is_some() {
            return;
        }
        self.templates.push(template.clone());
        self.template_routes.push((Template::parse(source), server));
    }
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
