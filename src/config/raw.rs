//! The raw layer: serde types mirroring `nexus.toml` key for key.
//!
//! These types only say what was typed: every key is optional here, and cross-key rules
//! (exactly one of `cmd` and `url`, certificate with key, files that must exist) belong to
//! `resolve`. Unknown keys are rejected everywhere. Values that `resolve` checks later keep their
//! [`Spanned`] position so its problems point at the right `line:col`. There is no `untagged` and
//! no `flatten`: both buffer the input and lose the spans and the precise serde error.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_spanned::Spanned;

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawServer {
    /// Socket address to listen on; default `127.0.0.1:8000`.
    pub listen_address: Option<Spanned<String>>,
    /// Accepted `Host` values; default empty (see the model).
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted `Origin` values; default empty (see the model).
    pub allowed_origins: Option<Vec<String>>,
    /// `[server.health]`; default enabled at `/health`.
    pub health: Option<RawHealth>,
    /// `[server.metrics]`; default enabled at `/metrics`.
    pub metrics: Option<RawHealth>,
    /// `[server.tls]`; default plain HTTP.
    pub tls: Option<Spanned<RawServerTls>>,
    /// `[server.limits]`; defaults in the model's `ServerLimits`.
    pub limits: Option<RawServerLimits>,
    /// `[server.rate_limits]` (Nexus's keys plus `per_client`); default off.
    pub rate_limits: Option<Spanned<RawFrontLimits>>,
    /// `[server.client_ip]` (Nexus's keys); default the connection's address.
    pub client_ip: Option<RawClientIp>,
    /// `[server.cors]`; default no cross-origin access.
    pub cors: Option<Spanned<RawCors>>,
    /// `[server.csrf]`; default disabled.
    pub csrf: Option<RawCsrf>,
    /// `[server.oauth]`; default none (no token asked for).
    pub oauth: Option<Spanned<RawOauth>>,
    /// `[server.client_identification]`; default off.
    pub client_identification: Option<Spanned<RawClientIdentification>>,
}

/// `[server.client_identification]` (Nexus's keys, plus `certificate_groups`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawClientIdentification {
    /// Default false.
    pub enabled: Option<bool>,
    /// Default `{ jwt_claim = "sub" }`.
    pub client_id: Option<Spanned<RawIdentitySource>>,
    /// Default none.
    pub group_id: Option<Spanned<RawIdentitySource>>,
    /// `[validation]`; default no restriction.
    pub validation: Option<RawIdentityValidation>,
    /// Certificate identity -> groups; default none.
    pub certificate_groups: Option<BTreeMap<String, Vec<Spanned<String>>>>,
}

/// `client_id` / `group_id`: exactly one of the keys (checked by `resolve`).
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { jwt_claim = \"sub\" }"
)]
pub(crate) struct RawIdentitySource {
    /// A claim of the verified access token, dotted for nested claims.
    pub jwt_claim: Option<Spanned<String>>,
    /// A request header set by a trusted proxy.
    pub http_header: Option<Spanned<String>>,
    /// A field of the verified client certificate: "cn", "san:dns", "san:email", "san:uri".
    pub certificate: Option<Spanned<String>>,
}

/// `[server.client_identification.validation]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawIdentityValidation {
    /// The groups that exist; default empty (any group).
    pub group_values: Option<Vec<Spanned<String>>>,
}

/// `[server.cors]` (Nexus's keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawCors {
    /// Default false.
    pub allow_credentials: Option<Spanned<bool>>,
    /// `"*"`, one origin or a list; default none.
    pub allow_origins: Option<Spanned<RawList>>,
    /// Default unset.
    pub max_age: Option<Spanned<RawDuration>>,
    /// `"*"`, one method or a list; default the MCP endpoint's methods.
    pub allow_methods: Option<Spanned<RawList>>,
    /// `"*"`, one header or a list; default the MCP request headers.
    pub allow_headers: Option<Spanned<RawList>>,
    /// `"*"`, one header or a list; default the MCP response headers.
    pub expose_headers: Option<Spanned<RawList>>,
    /// Default false.
    pub allow_private_network: Option<bool>,
}

/// `[server.csrf]` (Nexus's keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawCsrf {
    /// Default false.
    pub enabled: Option<bool>,
    /// Default `X-Nexus-CSRF-Protection`.
    pub header_name: Option<Spanned<String>>,
}

/// A string or an array of strings, as Nexus's CORS keys take them (`"*"` is read by
/// `resolve`).
#[derive(Debug)]
pub(crate) enum RawList {
    /// `key = "value"`.
    One(String),
    /// `key = ["value", ...]`, each with its position.
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = RawList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"*\", a string or an array of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawList, E> {
        Ok(RawList::One(v.to_owned()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawList, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element()? {
            values.push(value);
        }
        Ok(RawList::Many(values))
    }
}

/// `[server.oauth]`: Nexus's keys, plus `leeway`, `scopes_supported` and `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawOauth {
    /// The JWKS URL; default discovered from `expected_issuer`.
    pub url: Option<Spanned<String>>,
    /// How often the JWKS is re-read; default 5 min.
    pub poll_interval: Option<Spanned<RawDuration>>,
    /// Required `iss`; default any.
    pub expected_issuer: Option<Spanned<String>>,
    /// Required `aud`; default the protected resource's URL.
    pub expected_audience: Option<Spanned<String>>,
    /// Clock skew allowed for `exp` and `nbf`; default 60 s.
    pub leeway: Option<Spanned<RawDuration>>,
    /// Scopes announced in the RFC 9728 metadata; default none.
    pub scopes_supported: Option<Vec<String>>,
    /// `[protected_resource]`; default derived (see `resolve`).
    pub protected_resource: Option<Spanned<RawProtectedResource>>,
    /// `[tls]` for fetching the JWKS and discovery documents; default full verification.
    pub tls: Option<Spanned<RawClientTls>>,
}

/// `[server.oauth.protected_resource]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawProtectedResource {
    /// This gateway's resource URL; default from the request's `Host`.
    pub resource: Option<Spanned<String>>,
    /// Authorization servers announced to clients; default `[expected_issuer]`.
    pub authorization_servers: Option<Vec<Spanned<String>>>,
}

/// `[server.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawServerLimits {
    /// Default 1024.
    pub max_connections: Option<Spanned<u64>>,
    /// Default 10 s.
    pub header_read_timeout: Option<Spanned<RawDuration>>,
    /// Default 30 s.
    pub body_read_timeout: Option<Spanned<RawDuration>>,
    /// Default 60 s.
    pub idle_timeout: Option<Spanned<RawDuration>>,
    /// Bytes; default 8 MiB.
    pub max_request_body: Option<Spanned<RawSize>>,
    /// Bytes; default 256 MiB.
    pub max_request_bodies_total: Option<Spanned<RawSize>>,
    /// Default 10000.
    pub max_sessions: Option<Spanned<u64>>,
    /// Default 1 h.
    pub session_idle_timeout: Option<Spanned<RawDuration>>,
    /// Default 100.
    pub max_sessions_per_identity: Option<Spanned<u64>>,
    /// Default 4.
    pub max_streams_per_session: Option<Spanned<u64>>,
}

/// `[server.rate_limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawFrontLimits {
    /// Default false (as in Nexus).
    pub enabled: Option<bool>,
    /// `"memory"` or `{ type = "memory" }`; default memory. Nexus's Redis is refused.
    pub storage: Option<Spanned<RawStorage>>,
    /// All requests together; default none.
    pub global: Option<RawQuota>,
    /// Per client address; default none.
    pub per_ip: Option<RawQuota>,
    /// Per client identity, with per-group overrides; default none.
    pub per_client: Option<RawClientQuota>,
}

/// `{ limit, interval }` (also `tools.NAME` in `[mcp.servers.NAME.rate_limits]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with `limit` and `interval`")]
pub(crate) struct RawQuota {
    /// Requests (calls) per interval; required.
    pub limit: Spanned<u32>,
    /// Required.
    pub interval: Spanned<RawDuration>,
}

/// `per_client = { limit, interval, groups.NAME = { limit, interval } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with `limit` and `interval`")]
pub(crate) struct RawClientQuota {
    /// Requests per interval; required.
    pub limit: Spanned<u32>,
    /// Required.
    pub interval: Spanned<RawDuration>,
    /// Per-group overrides; default none.
    pub groups: Option<BTreeMap<String, RawQuota>>,
}

/// `storage` in `[server.rate_limits]`: the backend's `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawStorage(pub String);

impl<'de> Deserialize<'de> for RawStorage {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StorageVisitor)
    }
}

struct StorageVisitor;

impl<'de> Visitor<'de> for StorageVisitor {
    type Value = RawStorage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"memory\" or { type = \"memory\" }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStorage, E> {
        Ok(RawStorage(v.to_owned()))
    }

    // Nexus's Redis table has more keys (`url`, `pool`...): only `type` decides here, the
    // rest is refused with it by `resolve`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStorage, A::Error> {
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "type" {
                kind = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        kind.map(RawStorage)
            .ok_or_else(|| de::Error::missing_field("type"))
    }
}

/// `[server.client_ip]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawClientIp {
    /// Default false.
    pub x_real_ip: Option<bool>,
    /// Default none (`X-Forwarded-For` not read).
    pub x_forwarded_for_trusted_hops: Option<Spanned<u64>>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAudit {
    /// Default false.
    pub enabled: Option<bool>,
    /// JSON-lines file; default none.
    pub file: Option<Spanned<String>>,
    /// To the systemd journal; default true.
    pub journal: Option<bool>,
    /// Argument values in records (secret-looking keys redacted); default false.
    pub include_arguments: Option<bool>,
}

/// `[server.health]` and `[server.metrics]` (same keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHealth {
    /// Default true.
    pub enabled: Option<bool>,
    /// Default `/health` (`/metrics` for `[server.metrics]`).
    pub path: Option<Spanned<String>>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawServerTls {
    /// PEM file or `pkcs11:` URI; required.
    pub certificate: Option<Spanned<String>>,
    /// PEM file or `pkcs11:` URI; required.
    pub key: Option<Spanned<String>>,
    /// Passphrase of an encrypted PEM key; default none.
    pub key_password: Option<Spanned<SecretString>>,
    /// File holding that passphrase; default none.
    pub key_password_file: Option<Spanned<String>>,
    /// CA for client certificates; default none (no client certificates asked for).
    pub client_ca_cert_path: Option<Spanned<String>>,
    /// "1.2" or "1.3"; default "1.2".
    pub min_tls_version: Option<Spanned<String>>,
    /// OpenSSL TLS 1.2 cipher string; default OpenSSL's.
    pub cipher_list: Option<String>,
    /// OpenSSL TLS 1.3 suites; default OpenSSL's.
    pub ciphersuites: Option<String>,
}

/// `[pkcs11]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawPkcs11 {
    /// The PKCS#11 module (`.so`); default none.
    pub module_path: Option<Spanned<String>>,
    /// File holding the user PIN; default none.
    pub pin_file: Option<Spanned<String>>,
    /// The user PIN itself; default none.
    pub pin: Option<Spanned<SecretString>>,
}

/// `[mcp]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawMcp {
    /// `[mcp.servers.NAME]`: skipped here because `resolve` deserializes each server on its own
    /// (one bad server must not hide another); declared so unknown-key messages list `servers`.
    #[serde(rename = "servers")]
    pub _servers: Option<de::IgnoredAny>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Default `/mcp`.
    pub path: Option<Spanned<String>>,
    /// Default search.
    pub tools: Option<RawTools>,
    /// Default always.
    pub prefix: Option<RawPrefix>,
    /// Default 60 s.
    pub call_timeout: Option<Spanned<RawDuration>>,
    /// `[mcp.limits]`: defaults for every server's limits (see [`RawLimits`]).
    pub limits: Option<RawLimits>,
}

/// `[mcp.limits]` and `[mcp.servers.NAME.limits]`: what one downstream may send or make the
/// gateway hold. A server's table overrides `[mcp.limits]` key by key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawLimits {
    /// Largest message read from a downstream (stdio line, HTTP body, SSE event); default 16 MiB.
    pub max_message_size: Option<Spanned<RawSize>>,
    /// stdio: bytes that may wait for a child that does not read its stdin; default 64 MiB.
    pub max_stdin_queue: Option<Spanned<RawSize>>,
    /// Notifications a downstream may send per second, the rest dropped; default 1000.
    pub notifications_per_second: Option<Spanned<u32>>,
}

/// `tools`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawTools {
    /// "search".
    Search,
    /// "direct".
    Direct,
}

/// `prefix`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawPrefix {
    /// "always".
    Always,
    /// "when-needed".
    WhenNeeded,
}

/// One `[mcp.servers.NAME]`: stdio and HTTP keys side by side, sorted out by `resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawDownstream {
    /// stdio: program and arguments; default none.
    pub cmd: Option<Spanned<Vec<String>>>,
    /// stdio: extra environment; default none.
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// stdio: working directory; default the gateway's.
    pub cwd: Option<Spanned<String>>,
    /// stdio: where stderr goes; default "null".
    pub stderr: Option<Spanned<RawStderr>>,
    /// stdio: pass the gateway's whole environment to the child; default false.
    pub inherit_env: Option<Spanned<bool>>,
    /// HTTP: the server's URL; default none.
    pub url: Option<Spanned<String>>,
    /// HTTP: transport; default detect.
    pub protocol: Option<Spanned<RawProtocol>>,
    /// HTTP+SSE: the POST URL when the server announces none; default none.
    pub message_url: Option<Spanned<String>>,
    /// Per-call timeout; default `[mcp] call_timeout`.
    pub call_timeout: Option<Spanned<RawDuration>>,
    /// The protocol revision to speak; default chosen at connect (see `resolve`).
    pub protocol_version: Option<Spanned<String>>,
    /// HTTP: `[auth]`; default no credentials.
    pub auth: Option<Spanned<RawAuth>>,
    /// HTTP: `[tls]`; default full verification against the system store.
    pub tls: Option<Spanned<RawClientTls>>,
    /// `[rate_limits]`; default unlimited.
    pub rate_limits: Option<RawRateLimits>,
    /// `[limits]`; default `[mcp.limits]`.
    pub limits: Option<RawLimits>,
    /// Groups that may use the server; default everyone.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Groups that may not; default none.
    pub deny: Option<Vec<Spanned<String>>>,
    /// OAuth scopes every request to the server needs; default none.
    pub required_scopes: Option<Vec<String>>,
    /// `[tools.NAME]`: rules of one tool (its name on the server); default the server's.
    pub tools: Option<BTreeMap<String, RawAccessRule>>,
    /// `[prompts.NAME]`; default the server's.
    pub prompts: Option<BTreeMap<String, RawAccessRule>>,
    /// `[resources."URI"]` (a resource URI or a template's `uriTemplate`); default the server's.
    pub resources: Option<BTreeMap<String, RawAccessRule>>,
}

/// `[mcp.servers.NAME.tools.TOOL]` and the same for prompts and resources.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAccessRule {
    /// Replaces the server's `allow`/`deny` when this or `deny` is set.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Replaces the server's `allow`/`deny` when this or `allow` is set.
    pub deny: Option<Vec<Spanned<String>>>,
    /// Replaces the server's `required_scopes` when set.
    pub required_scopes: Option<Vec<String>>,
}

/// `protocol`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawProtocol {
    /// "streamable-http".
    StreamableHttp,
    /// "sse".
    Sse,
}

/// `[mcp.servers.NAME.auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAuth {
    /// Bearer token; default none.
    pub token: Option<SecretString>,
    /// "forward"; default none.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<RawAuthKind>>,
}

/// `type` in `[auth]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawAuthKind {
    /// "forward".
    Forward,
}

/// `[mcp.servers.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawClientTls {
    /// Default true.
    pub verify_certs: Option<bool>,
    /// Default false.
    pub accept_invalid_hostnames: Option<bool>,
    /// Default: the system trust store.
    pub root_ca_cert_path: Option<Spanned<String>>,
    /// PEM file or `pkcs11:` URI; default none.
    pub client_cert_path: Option<Spanned<String>>,
    /// PEM file or `pkcs11:` URI; default none.
    pub client_key_path: Option<Spanned<String>>,
    /// Passphrase of an encrypted PEM key; default none.
    pub client_key_password: Option<Spanned<SecretString>>,
    /// File holding that passphrase; default none.
    pub client_key_password_file: Option<Spanned<String>>,
    /// "1.2" or "1.3"; default "1.2".
    pub min_tls_version: Option<Spanned<String>>,
    /// OpenSSL TLS 1.2 cipher string; default OpenSSL's.
    pub cipher_list: Option<String>,
    /// OpenSSL TLS 1.3 suites; default OpenSSL's.
    pub ciphersuites: Option<String>,
    /// SNI and verification name; default the URL's host.
    pub server_name: Option<String>,
}

/// `[mcp.servers.NAME.rate_limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRateLimits {
    /// Calls per interval; required.
    pub limit: Spanned<u32>,
    /// Required.
    pub interval: Spanned<RawDuration>,
    /// Per-tool overrides; default none.
    pub tools: Option<BTreeMap<String, RawQuota>>,
}

/// A duration written as "30s", "2m", "1h 30m" (humantime) or as an integer number of seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = RawDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\" or \"2m\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
        humantime::parse_duration(v).map(RawDuration).map_err(|_| {
            E::custom(format!(
                "invalid duration `{v}` (expected e.g. \"30s\", \"2m\" or a number of seconds)"
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
        Ok(RawDuration(Duration::from_secs(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
        u64::try_from(v)
            .map(|secs| RawDuration(Duration::from_secs(secs)))
            .map_err(|_| {
                E::custom(format!(
                    "invalid duration `{v}` (a duration cannot be negative)"
                ))
            })
    }
}

/// A size written as a number of bytes or as "16MiB", "512 KiB", "1GiB" (binary units).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawSize(pub u64);

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = RawSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"16MiB\" or \"512KiB\", or a number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
        parse_size(v).map(RawSize).ok_or_else(|| {
            E::custom(format!(
                "invalid size `{v}` (expected e.g. \"16MiB\", \"512KiB\", \"1GiB\" or a number of bytes)"
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
        Ok(RawSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
        u64::try_from(v)
            .map(RawSize)
            .map_err(|_| E::custom(format!("invalid size `{v}` (a size cannot be negative)")))
    }
}

/// "16MiB", "512 KiB", "100B", "4096": binary units, case-insensitive.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `stderr`: "null", "inherit", "pipe" or `{ file = "path" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawStderr {
    /// "null".
    Null,
    /// "inherit".
    Inherit,
    /// "pipe".
    Pipe,
    /// `{ file = "path" }`.
    File(String),
}

impl<'de> Deserialize<'de> for RawStderr {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StderrVisitor)
    }
}

struct StderrVisitor;

impl<'de> Visitor<'de> for StderrVisitor {
    type Value = RawStderr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"null\", \"inherit\", \"pipe\" or { file = \"path\" }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStderr, E> {
        match v {
            "null" => Ok(RawStderr::Null),
            "inherit" => Ok(RawStderr::Inherit),
            "pipe" => Ok(RawStderr::Pipe),
            other => Err(E::custom(format!(
                "unknown value `{other}` (expected \"null\", \"inherit\", \"pipe\" or {{ file = \"path\" }})"
            ))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStderr, A::Error> {
        let mut file = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "file" {
                return Err(de::Error::unknown_field(&key, &["file"]));
            }
            file = Some(map.next_value::<String>()?);
        }
        file.map(RawStderr::File)
            .ok_or_else(|| de::Error::missing_field("file"))
    }
}
