//! `[server.oauth]` (the gateway as an OAuth 2.1 resource server), and the rule that
//! `auth.type = "forward"` needs it.

use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::Cx;
use crate::config::model::{Auth, JwksSource, Oauth};
use crate::config::raw::{RawDuration, RawOauth, RawProtectedResource};

/// `poll_interval` when not set (Nexus never re-reads; a key that is withdrawn should stop
/// working without a restart).
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// `leeway` when not set.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Re-reading more often than this would hammer the authorization server.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// A leeway beyond this keeps expired tokens working for too long to be clock skew.
const MAX_LEEWAY: Duration = Duration::from_secs(600);

impl Cx<'_> {
    /// `[server.oauth]`; `None` (after recording why) when it cannot be used. `any_host`: the
    /// listener accepts requests for any `Host` (not loopback, no `allowed_hosts`).
    pub(super) fn oauth(&mut self, raw: Spanned<RawOauth>, any_host: bool) -> Option<Oauth> {
        self.oauth = true;
        let span = raw.span();
        let raw = raw.into_inner();
        let issuer = raw
            .expected_issuer
            .and_then(|value| self.https_url(value, "server.oauth.expected_issuer"));
        let url = raw
            .url
            .and_then(|value| self.https_url(value, "server.oauth.url"));
        let (resource, servers) = self.protected_resource(raw.protected_resource);
        let poll_interval = self.poll_interval(raw.poll_interval);
        let leeway = self.leeway(raw.leeway);
        let https = [&url, &issuer]
            .into_iter()
            .flatten()
            .any(|(uri, _)| uri.scheme_str() == Some("https"));
        let tls = self.client_tls(raw.tls, "server.oauth.tls", https);
        let jwks = self.jwks_source(&span, url, issuer.as_ref());
        let issuer = issuer.map(|(_, text)| text);
        self.warn_without_issuer(&span, issuer.is_none());
        let audience = self.audience(&span, raw.expected_audience, resource.as_ref());
        if resource.is_none() && any_host {
            let message = "`protected_resource.resource` is not set and the gateway accepts any \
                           Host, so the metadata URL in challenges is built from whatever Host a \
                           client sends"
                .to_string();
            let fix = "set `[server.oauth.protected_resource] resource` to the gateway's public \
                       URL, or list the names it is reached by in [server] allowed_hosts";
            self.problems
                .warn(span.clone(), "server.oauth", message, fix);
        }
        let authorization_servers = self.authorization_servers(&span, servers, issuer.as_ref());
        Some(Oauth {
            jwks: jwks?,
            poll_interval,
            expected_issuer: issuer,
            audience: audience?,
            leeway,
            resource: resource.map(|(uri, _)| uri),
            authorization_servers,
            scopes_supported: raw.scopes_supported.unwrap_or_default(),
            tls,
        })
    }

    /// `url`, else discovery from `expected_issuer`; one of them is needed.
    fn jwks_source(
        &mut self,
        span: &Range<usize>,
        url: Option<(http::Uri, String)>,
        issuer: Option<&(http::Uri, String)>,
    ) -> Option<JwksSource> {
        match (url, issuer) {
            (Some((url, _)), _) => Some(JwksSource::Url(url)),
            (None, Some((issuer, _))) => Some(JwksSource::Discover(issuer.clone())),
            (None, None) => {
                let message = "neither `url` (the JWKS) nor `expected_issuer` is set".to_string();
                let fix = "set `url = \"https://auth.example.com/.well-known/jwks.json\"`, or \
                           `expected_issuer` to discover the JWKS from the issuer's metadata";
                self.problems
                    .push(span.clone(), "server.oauth", message, fix);
                None
            }
        }
    }

    fn warn_without_issuer(&mut self, span: &Range<usize>, missing: bool) {
        if missing {
            let message = "`expected_issuer` is not set: tokens of any issuer signed with these \
                           keys are accepted (some providers share keys between tenants)"
                .to_string();
            let fix = "set `expected_issuer` to the authorization server's issuer URL";
            self.problems
                .warn(span.clone(), "server.oauth", message, fix);
        }
    }

    /// `expected_audience`, else the resource URL: a token must always name this gateway.
    fn audience(
        &mut self,
        span: &Range<usize>,
        expected: Option<Spanned<String>>,
        resource: Option<&(http::Uri, String)>,
    ) -> Option<String> {
        match (expected, resource) {
            (Some(audience), _) => Some(audience.into_inner()),
            (None, Some((_, text))) => Some(text.clone()),
            (None, None) => {
                let message = "neither `expected_audience` nor `protected_resource.resource` is \
                               set, so a token issued for any other service would be accepted"
                    .to_string();
                let fix = "set `[server.oauth.protected_resource] resource` to this gateway's URL \
                           (tokens must name it in `aud`), or `expected_audience`";
                self.problems
                    .push(span.clone(), "server.oauth", message, fix);
                None
            }
        }
    }

    /// `authorization_servers`, else `[expected_issuer]`; clients need at least one.
    fn authorization_servers(
        &mut self,
        span: &Range<usize>,
        listed: Option<Vec<String>>,
        issuer: Option<&String>,
    ) -> Vec<String> {
        let servers = listed.unwrap_or_else(|| issuer.into_iter().cloned().collect());
        if servers.is_empty() {
            let message = "no authorization server to announce: clients would not know where to \
                           get a token"
                .to_string();
            let fix = "set `[server.oauth.protected_resource] authorization_servers`, or \
                       `expected_issuer`";
            self.problems
                .push(span.clone(), "server.oauth", message, fix);
        }
        servers
    }

    /// `auth.type = "forward"` at `span`: an error unless `[server.oauth]` verifies the tokens
    /// that would be passed on.
    pub(super) fn forward(&mut self, span: Range<usize>, key: &str) -> Auth {
        if !self.oauth {
            let message = "`type = \"forward\"` passes the client's Authorization header on, but \
                           [server.oauth] is not set, so the gateway would forward tokens it \
                           never verified"
                .to_string();
            let fix = "add [server.oauth] (url or expected_issuer, and protected_resource) so \
                       only verified tokens are forwarded, or use `token = \"{{ env.NAME }}\"`";
            self.problems.push(span, key, message, fix);
        }
        Auth::Forward
    }

    /// `(resource, authorization_servers)` of `[protected_resource]`.
    fn protected_resource(
        &mut self,
        raw: Option<Spanned<RawProtectedResource>>,
    ) -> (Option<(http::Uri, String)>, Option<Vec<String>>) {
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return (None, None);
        };
        let key = "server.oauth.protected_resource";
        let resource = raw
            .resource
            .and_then(|value| self.https_url(value, &format!("{key}.resource")));
        let servers = raw.authorization_servers.map(|servers| {
            let key = format!("{key}.authorization_servers");
            servers
                .into_iter()
                .filter_map(|value| self.https_url(value, &key).map(|(_, text)| text))
                .collect()
        });
        (resource, servers)
    }

    /// An absolute http(s) URL (as parsed, and as written); `http://` outside loopback is a
    /// warning: tokens, keys or metadata would travel in the clear.
    fn https_url(&mut self, value: Spanned<String>, key: &str) -> Option<(http::Uri, String)> {
        let span = value.span();
        let text = value.into_inner();
        let problem = match text.parse::<http::Uri>() {
            Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) => {
                "must start with https://".to_string()
            }
            Ok(uri) if uri.host().is_none_or(str::is_empty) => "has no host".to_string(),
            Ok(uri) => {
                if uri.scheme_str() == Some("http") && !is_loopback(uri.host().unwrap_or("")) {
                    let message = format!(
                        "`{text}` is http://: it can be read and altered on the way (keys, \
                         tokens, metadata)"
                    );
                    self.problems
                        .warn(span, key, message, "use https:// outside loopback");
                }
                return Some((uri, text));
            }
            Err(error) => format!("invalid URL: {error}"),
        };
        let fix = "use a URL such as \"https://auth.example.com\"";
        self.problems.push(span, key, problem, fix);
        None
    }

    fn poll_interval(&mut self, value: Option<Spanned<RawDuration>>) -> Duration {
        let Some(value) = value else {
            return DEFAULT_POLL_INTERVAL;
        };
        let interval = value.get_ref().0;
        if interval < MIN_POLL_INTERVAL {
            let message = format!(
                "{} re-reads the JWKS too often",
                humantime::format_duration(interval)
            );
            let fix =
                "use at least \"10s\" (an unknown `kid` triggers a re-read anyway), e.g. \"5m\"";
            self.problems
                .push(value.span(), "server.oauth.poll_interval", message, fix);
        }
        interval
    }

    fn leeway(&mut self, value: Option<Spanned<RawDuration>>) -> Duration {
        let Some(value) = value else {
            return DEFAULT_LEEWAY;
        };
        let leeway = value.get_ref().0;
        if leeway > MAX_LEEWAY {
            let message = format!(
                "{} would keep expired tokens working for that long",
                humantime::format_duration(leeway)
            );
            let fix = "use at most \"10m\" (clock skew), e.g. \"60s\"";
            self.problems
                .push(value.span(), "server.oauth.leeway", message, fix);
        }
        leeway
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::model::JwksSource;

    fn resolve(text: &str) -> Result<crate::config::Config, Vec<String>> {
        super::super::resolve(text, Path::new("n.toml"), &|_| None).map_err(|error| {
            error
                .problems()
                .iter()
                .map(|p| p.to_string().trim_start_matches("n.toml:").to_string())
                .collect()
        })
    }

    fn warnings(text: &str) -> Vec<String> {
        let config = resolve(text).expect("accepted");
        config
            .warnings
            .iter()
            .map(|p| p.to_string().trim_start_matches("n.toml:").to_string())
            .collect()
    }

    const NEXUS: &str = "[server.oauth]\nurl = \"https://auth.example.com/.well-known/jwks.json\"\n\
        poll_interval = \"5m\"\nexpected_issuer = \"https://auth.example.com\"\n\
        expected_audience = \"my-app\"\n\n[server.oauth.protected_resource]\n\
        resource = \"https://api.example.com\"\n\
        authorization_servers = [\"https://auth.example.com\"]\n";

    #[test]
    fn a_nexus_table_resolves_unchanged() {
        let config = resolve(NEXUS).unwrap();
        let oauth = config.server.oauth.unwrap();
        assert_eq!(
            oauth.jwks,
            JwksSource::Url(
                "https://auth.example.com/.well-known/jwks.json"
                    .parse()
                    .unwrap()
            )
        );
        assert_eq!(oauth.poll_interval.as_secs(), 300);
        assert_eq!(
            oauth.expected_issuer.as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(oauth.audience, "my-app");
        assert_eq!(oauth.leeway.as_secs(), 60);
        assert_eq!(oauth.authorization_servers, ["https://auth.example.com"]);
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn the_issuer_alone_discovers_the_keys_and_is_announced() {
        let text = "[server.oauth]\nexpected_issuer = \"https://as.example\"\n\
                    [server.oauth.protected_resource]\nresource = \"https://gw.example/mcp\"\n";
        let oauth = resolve(text).unwrap().server.oauth.unwrap();
        assert_eq!(
            oauth.jwks,
            JwksSource::Discover("https://as.example".parse().unwrap())
        );
        assert_eq!(oauth.audience, "https://gw.example/mcp");
        assert_eq!(oauth.authorization_servers, ["https://as.example"]);
    }

    #[test]
    fn missing_keys_audience_and_bad_durations_are_named() {
        assert_eq!(
            resolve("[server.oauth]\nexpected_audience = \"a\"\n").unwrap_err(),
            [
                "1:1: server.oauth: neither `url` (the JWKS) nor `expected_issuer` is set; set `url = \
                 \"https://auth.example.com/.well-known/jwks.json\"`, or `expected_issuer` to discover \
                 the JWKS from the issuer's metadata",
                "1:1: server.oauth: no authorization server to announce: clients would not know \
                 where to get a token; set `[server.oauth.protected_resource] authorization_servers`, \
                 or `expected_issuer`",
            ]
        );
        assert_eq!(
            resolve(
                "[server.oauth]\nurl = \"https://as/jwks\"\nexpected_issuer = \"https://as\"\n"
            )
            .unwrap_err(),
            [
                "1:1: server.oauth: neither `expected_audience` nor `protected_resource.resource` is set, \
                 so a token issued for any other service would be accepted; set \
                 `[server.oauth.protected_resource] resource` to this gateway's URL (tokens must name it \
                 in `aud`), or `expected_audience`"
            ]
        );
        let text = "[server.oauth]\nexpected_issuer = \"https://as\"\nexpected_audience = \"a\"\n\
                    poll_interval = \"1s\"\nleeway = \"1h\"\nurl = \"ftp://as/jwks\"\n";
        assert_eq!(
            resolve(text).unwrap_err(),
            [
                "4:17: server.oauth.poll_interval: 1s re-reads the JWKS too often; use at least \"10s\" \
                 (an unknown `kid` triggers a re-read anyway), e.g. \"5m\"",
                "5:10: server.oauth.leeway: 1h would keep expired tokens working for that long; use at \
                 most \"10m\" (clock skew), e.g. \"60s\"",
                "6:7: server.oauth.url: must start with https://; use a URL such as \"https://auth.example.com\"",
            ]
        );
        assert_eq!(
            resolve("[server.oauth]\nurl = \"https://as/jwks\"\nexpected_issuer = \"https://as\"\nexpected_audience = \"a\"\nwhatever = 1\n")
                .unwrap_err(),
            [
                "5:1: server.oauth: unknown key `whatever` (expected one of `url`, `poll_interval`, \
                 `expected_issuer`, `expected_audience`, `leeway`, `scopes_supported`, \
                 `protected_resource`, `tls`); fix the spelling or remove it"
            ]
        );
    }

    #[test]
    fn plain_http_outside_loopback_and_no_issuer_are_warnings() {
        let text = "[server.oauth]\nurl = \"http://as.example/jwks\"\n\
                    [server.oauth.protected_resource]\nresource = \"https://gw\"\n\
                    authorization_servers = [\"http://127.0.0.1:9000\"]\n";
        assert_eq!(
            warnings(text),
            [
                "1:1: server.oauth: `expected_issuer` is not set: tokens of any issuer signed with these \
                 keys are accepted (some providers share keys between tenants); set `expected_issuer` to \
                 the authorization server's issuer URL",
                "2:7: server.oauth.url: `http://as.example/jwks` is http://: it can be read and altered on \
                 the way (keys, tokens, metadata); use https:// outside loopback",
            ]
        );
    }

    #[test]
    fn a_resource_from_any_host_is_a_warning() {
        let text = "[server]\nlisten_address = \"0.0.0.0:8000\"\n[server.oauth]\n\
                    url = \"https://as/jwks\"\nexpected_issuer = \"https://as\"\n\
                    expected_audience = \"gw\"\n";
        assert_eq!(
            warnings(text),
            [
                "3:1: server.oauth: `protected_resource.resource` is not set and the gateway accepts \
                 any Host, so the metadata URL in challenges is built from whatever Host a client \
                 sends; set `[server.oauth.protected_resource] resource` to the gateway's public URL, \
                 or list the names it is reached by in [server] allowed_hosts"
            ]
        );
        let pinned = text.replace(
            "[server.oauth]",
            "allowed_hosts = [\"gw.example\"]\n[server.oauth]",
        );
        assert!(warnings(&pinned).is_empty());
    }

    #[test]
    fn forward_needs_oauth() {
        let text = "[mcp.servers.a]\nurl = \"https://h\"\nauth = { type = \"forward\" }\n";
        assert_eq!(
            resolve(text).unwrap_err(),
            [
                "3:17: mcp.servers.a.auth.type: `type = \"forward\"` passes the client's Authorization header on, \
                 but [server.oauth] is not set, so the gateway would forward tokens it never verified; add \
                 [server.oauth] (url or expected_issuer, and protected_resource) so only verified tokens \
                 are forwarded, or use `token = \"{{ env.NAME }}\"`"
            ]
        );
        assert!(resolve(&format!("{NEXUS}{text}")).is_ok());
    }
}
