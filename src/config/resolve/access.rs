//! `[server.client_identification]` and the access rules of `[mcp.servers.NAME]` (`allow`,
//! `deny`, `required_scopes`, `[tools.T]`, `[prompts.P]`, `[resources."URI"]`).
//!
//! Entries name tools, prompts and resources as their server lists them; those lists are known
//! only at run time, so an entry for a name the server does not offer is not a problem (it
//! never matches). What is checked: every group named in a rule exists (is in
//! `validation.group_values`, when that is set) and has a source (identification enabled,
//! with `group_id` or `certificate_groups`); claim paths, header names and certificate fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_spanned::Spanned;

use super::Cx;
use crate::config::model::{
    AccessRule, CertificateField, ClaimPath, ClientIdentification, IdentitySource, ServerAccess,
};
use crate::config::raw::{RawAccessRule, RawClientIdentification, RawIdentitySource};
use crate::config::template::join;

const IDENTIFICATION: &str = "server.client_identification";

impl Cx<'_> {
    /// `[server.client_identification]`; `client_ca` says whether clients present certificates.
    pub(super) fn client_identification(
        &mut self,
        raw: Option<Spanned<RawClientIdentification>>,
        client_ca: bool,
    ) -> ClientIdentification {
        let Some(raw) = raw else {
            return ClientIdentification::default();
        };
        let (span, raw) = (raw.span(), raw.into_inner());
        let sets_more = raw.client_id.is_some()
            || raw.group_id.is_some()
            || raw.validation.is_some()
            || raw.certificate_groups.is_some();
        if raw.enabled != Some(true) && sets_more {
            let message = "is not enabled, so its other keys have no effect: no caller gets a client id or groups";
            let fix = "add `enabled = true`, or remove the table";
            self.problems
                .warn(span, IDENTIFICATION, message.to_string(), fix);
        }
        let defaults = ClientIdentification::default();
        let client_id = raw
            .client_id
            .and_then(|source| self.identity_source(source, "client_id", client_ca))
            .unwrap_or(defaults.client_id);
        let group_id = raw
            .group_id
            .and_then(|source| self.identity_source(source, "group_id", client_ca));
        let group_values: BTreeSet<String> = raw
            .validation
            .and_then(|validation| validation.group_values)
            .unwrap_or_default()
            .into_iter()
            .map(Spanned::into_inner)
            .collect();
        let mut identification = ClientIdentification {
            enabled: raw.enabled.unwrap_or(false),
            client_id,
            group_id,
            group_values,
            certificate_groups: BTreeMap::new(),
        };
        let key = join(IDENTIFICATION, "certificate_groups");
        for (identity, groups) in raw.certificate_groups.unwrap_or_default() {
            let entry_key = join(&key, &identity);
            let groups = groups
                .into_iter()
                .map(|group| {
                    self.known_group(&identification, &group, &entry_key);
                    group.into_inner()
                })
                .collect();
            identification.certificate_groups.insert(identity, groups);
        }
        identification
    }

    /// One `client_id` / `group_id` table: exactly one source, well formed.
    fn identity_source(
        &mut self,
        raw: Spanned<RawIdentitySource>,
        name: &str,
        client_ca: bool,
    ) -> Option<IdentitySource> {
        let (span, raw) = (raw.span(), raw.into_inner());
        let key = join(IDENTIFICATION, name);
        match (raw.jwt_claim, raw.http_header, raw.certificate) {
            (Some(claim), None, None) => self.claim_path(claim, &join(&key, "jwt_claim")),
            (None, Some(header), None) => self.header_name(header, &join(&key, "http_header")),
            (None, None, Some(field)) => {
                self.certificate_field(field, &join(&key, "certificate"), name, client_ca)
            }
            _ => {
                let message = "set exactly one of `jwt_claim`, `http_header` or `certificate`";
                let fix = format!("write e.g. {name} = {{ jwt_claim = \"sub\" }}");
                self.problems.push(span, &key, message.to_string(), &fix);
                None
            }
        }
    }

    fn claim_path(&mut self, claim: Spanned<String>, key: &str) -> Option<IdentitySource> {
        let segments: Vec<String> = claim.get_ref().split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            let message = format!(
                "claim path `{}` has an empty segment (paths are claim names joined by `.`)",
                claim.get_ref()
            );
            let fix =
                "write a claim name such as \"sub\" or a nested one such as \"realm_access.roles\"";
            self.problems.push(claim.span(), key, message, fix);
            return None;
        }
        Some(IdentitySource::JwtClaim(ClaimPath(segments)))
    }

    fn header_name(&mut self, header: Spanned<String>, key: &str) -> Option<IdentitySource> {
        match http::HeaderName::from_bytes(header.get_ref().as_bytes()) {
            Ok(name) => Some(IdentitySource::HttpHeader(name)),
            Err(_) => {
                let message = format!("`{}` is not a valid header name", header.get_ref());
                let fix = "use a header name such as \"X-Client-Id\"";
                self.problems.push(header.span(), key, message, fix);
                None
            }
        }
    }

    fn certificate_field(
        &mut self,
        field: Spanned<String>,
        key: &str,
        name: &str,
        client_ca: bool,
    ) -> Option<IdentitySource> {
        let parsed = match field.get_ref().as_str() {
            "cn" => Some(CertificateField::CommonName),
            "san:dns" => Some(CertificateField::SanDns),
            "san:email" => Some(CertificateField::SanEmail),
            "san:uri" => Some(CertificateField::SanUri),
            _ => None,
        };
        let problem = match parsed {
            None => Some((
                format!("unknown certificate field `{}`", field.get_ref()),
                "use \"cn\", \"san:dns\", \"san:email\" or \"san:uri\"",
            )),
            Some(_) if name == "group_id" => Some((
                "a certificate names its holder, not groups".to_string(),
                "map certificate identities to groups in [server.client_identification.certificate_groups]",
            )),
            Some(_) if !client_ca => Some((
                "clients present no certificate: [server.tls] has no `client_ca_cert_path`"
                    .to_string(),
                "set [server.tls] client_ca_cert_path, or read the client id from a claim or header",
            )),
            Some(_) => None,
        };
        if let Some((message, fix)) = problem {
            self.problems.push(field.span(), key, message, fix);
            return None;
        }
        parsed.map(IdentitySource::Certificate)
    }

    /// The rules of one server (`key` is `mcp.servers.NAME`): its own, then its `tools`,
    /// `prompts` and `resources` entries; `None` when it has none.
    pub(super) fn server_access(
        &mut self,
        key: &str,
        rule: RawAccessRule,
        [tools, prompts, resources]: [Option<BTreeMap<String, RawAccessRule>>; 3],
    ) -> Option<ServerAccess> {
        let access = ServerAccess {
            rule: self.access_rule(rule, key),
            tools: self.access_entries(tools, &join(key, "tools")),
            prompts: self.access_entries(prompts, &join(key, "prompts")),
            resources: self.access_entries(resources, &join(key, "resources")),
        };
        (access != ServerAccess::default()).then_some(access)
    }

    fn access_entries(
        &mut self,
        raw: Option<BTreeMap<String, RawAccessRule>>,
        key: &str,
    ) -> BTreeMap<String, AccessRule> {
        raw.unwrap_or_default()
            .into_iter()
            .map(|(name, rule)| {
                let rule = self.access_rule(rule, &join(key, &name));
                (name, rule)
            })
            .collect()
    }

    fn access_rule(&mut self, raw: RawAccessRule, key: &str) -> AccessRule {
        AccessRule {
            allow: raw
                .allow
                .map(|groups| self.groups(groups, &join(key, "allow"))),
            deny: raw
                .deny
                .map(|groups| self.groups(groups, &join(key, "deny"))),
            required_scopes: raw.required_scopes,
        }
    }

    /// The groups of an `allow` or `deny` list, each checked against the identification.
    fn groups(&mut self, groups: Vec<Spanned<String>>, key: &str) -> BTreeSet<String> {
        let identification = self.identification.clone();
        if let Some(first) = groups.first()
            && let Some(missing) = group_source_missing(&identification)
        {
            let fix = "enable it with a group source, e.g. [server.client_identification] enabled = true, \
                       group_id = { jwt_claim = \"groups\" }";
            self.problems.push(
                first.span(),
                key,
                format!("groups are named here, but {missing}"),
                fix,
            );
            return groups.into_iter().map(Spanned::into_inner).collect();
        }
        groups
            .into_iter()
            .map(|group| {
                self.known_group(&identification, &group, key);
                group.into_inner()
            })
            .collect()
    }

    /// Reports a group that `validation.group_values` (when set) does not list.
    fn known_group(
        &mut self,
        identification: &ClientIdentification,
        group: &Spanned<String>,
        key: &str,
    ) {
        let values = &identification.group_values;
        if values.is_empty() || values.contains(group.get_ref()) {
            return;
        }
        let known: Vec<&str> = values.iter().map(String::as_str).collect();
        let message = format!(
            "group `{}` is not in server.client_identification.validation.group_values ({})",
            group.get_ref(),
            known.join(", ")
        );
        let fix = "fix the group's spelling, or add it to group_values";
        self.problems.push(group.span(), key, message, fix);
    }
}

/// Why no caller can be in any group, if that is so.
fn group_source_missing(identification: &ClientIdentification) -> Option<&'static str> {
    if !identification.enabled {
        return Some("[server.client_identification] is not enabled, so no caller has a group");
    }
    if identification.group_id.is_none() && identification.certificate_groups.is_empty() {
        return Some(
            "[server.client_identification] sets neither `group_id` nor `certificate_groups`, so no caller has a group",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::resolve;
    use crate::config::model::{CertificateField, ClaimPath, IdentitySource};

    fn problems(text: &str) -> Vec<String> {
        let error = resolve(text, Path::new("n.toml"), &|_| None).expect_err("should be rejected");
        let lines = error.problems().iter().map(|p| p.to_string());
        lines
            .map(|line| line.trim_start_matches("n.toml:").to_string())
            .collect()
    }

    const IDENTIFICATION: &str = "[server.client_identification]\nenabled = true\n\
        client_id.jwt_claim = \"sub\"\ngroup_id.jwt_claim = \"realm_access.roles\"\n\
        validation.group_values = [\"admins\", \"users\"]\n";

    #[test]
    fn nexus_keys_resolve_with_dotted_claims() {
        let text = format!(
            "{IDENTIFICATION}[mcp.servers.a]\ncmd = [\"x\"]\nallow = [\"admins\"]\ndeny = [\"users\"]\n\
             required_scopes = [\"a:read\"]\n[mcp.servers.a.tools.echo]\nallow = [\"users\"]\n\
             [mcp.servers.a.resources.\"fixture://item/{{id}}\"]\ndeny = []\n"
        );
        let config = resolve(&text, Path::new("n.toml"), &|_| None).unwrap();
        let identification = &config.server.client_identification;
        assert!(identification.enabled);
        assert_eq!(
            identification.group_id,
            Some(IdentitySource::JwtClaim(ClaimPath(vec![
                "realm_access".into(),
                "roles".into()
            ])))
        );
        let access = &config.mcp.access.servers["a"];
        assert_eq!(
            access.rule.required_scopes.as_deref(),
            Some(&["a:read".to_owned()][..])
        );
        assert!(
            access.tools["echo"]
                .allow
                .as_ref()
                .unwrap()
                .contains("users")
        );
        assert!(access.resources.contains_key("fixture://item/{id}"));
        // A server without rules has no entry; changing rules never touches `servers`.
        let plain = resolve(
            "[mcp.servers.b]\ncmd = [\"x\"]\n",
            Path::new("n.toml"),
            &|_| None,
        );
        assert!(plain.unwrap().mcp.access.servers.is_empty());
    }

    #[test]
    fn groups_must_be_known_and_have_a_source() {
        let text = format!(
            "{IDENTIFICATION}[mcp.servers.a]\ncmd = [\"x\"]\nallow = [\"admins\", \"admns\"]\n\
             [mcp.servers.a.prompts.greet]\ndeny = [\"guests\"]\n"
        );
        assert_eq!(
            problems(&text),
            [
                "8:20: mcp.servers.a.allow: group `admns` is not in server.client_identification.validation.group_values \
                 (admins, users); fix the group's spelling, or add it to group_values",
                "10:9: mcp.servers.a.prompts.greet.deny: group `guests` is not in \
                 server.client_identification.validation.group_values (admins, users); fix the group's spelling, or add \
                 it to group_values",
            ]
        );
        assert_eq!(
            problems("[mcp.servers.a]\ncmd = [\"x\"]\nallow = [\"admins\"]\n"),
            [
                "3:10: mcp.servers.a.allow: groups are named here, but [server.client_identification] is not enabled, \
                 so no caller has a group; enable it with a group source, e.g. [server.client_identification] \
                 enabled = true, group_id = { jwt_claim = \"groups\" }"
            ]
        );
    }

    #[test]
    fn claim_paths_headers_and_certificate_fields_are_checked() {
        let text = "[server.client_identification]\nenabled = true\nclient_id.jwt_claim = \"realm..sub\"\n\
                    group_id = { http_header = \"X Group\" }\n";
        assert_eq!(
            problems(text),
            [
                "3:23: server.client_identification.client_id.jwt_claim: claim path `realm..sub` has an empty segment \
                 (paths are claim names joined by `.`); write a claim name such as \"sub\" or a nested one such as \
                 \"realm_access.roles\"",
                "4:28: server.client_identification.group_id.http_header: `X Group` is not a valid header name; use a \
                 header name such as \"X-Client-Id\"",
            ]
        );
        let text = "[server.client_identification]\nclient_id = { certificate = \"cn\" }\n\
                    [server.client_identification.certificate_groups]\nalice = [\"admins\"]\n";
        assert_eq!(
            problems(text),
            [
                "2:29: server.client_identification.client_id.certificate: clients present no certificate: [server.tls] \
                 has no `client_ca_cert_path`; set [server.tls] client_ca_cert_path, or read the client id from a claim \
                 or header"
            ]
        );
        let text = "[server.client_identification]\nclient_id = { jwt_claim = \"sub\", http_header = \"X\" }\n\
                    group_id = { certificate = \"san:dns\" }\n";
        assert_eq!(
            problems(text),
            [
                "2:13: server.client_identification.client_id: set exactly one of `jwt_claim`, `http_header` or \
                 `certificate`; write e.g. client_id = { jwt_claim = \"sub\" }",
                "3:28: server.client_identification.group_id.certificate: a certificate names its holder, not groups; \
                 map certificate identities to groups in [server.client_identification.certificate_groups]",
            ]
        );
        assert_eq!(CertificateField::default().name(), "cn");
    }

    #[test]
    fn a_table_that_is_not_enabled_is_a_warning() {
        let text = "[server.client_identification]
client_id = { jwt_claim = \"sub\" }
";
        let config = resolve(text, Path::new("n.toml"), &|_| None).unwrap();
        let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "n.toml:1:1: server.client_identification: is not enabled, so its other keys have no effect: no \
                 caller gets a client id or groups; add `enabled = true`, or remove the table"
            ]
        );
        let enabled = "[server.client_identification]\nenabled = true\n";
        let config = resolve(enabled, Path::new("n.toml"), &|_| None).unwrap();
        assert!(config.warnings.is_empty());
    }
}
