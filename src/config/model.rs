//! The resolved configuration: what the gateway runs on.
//!
//! Every value here has been checked, templated and defaulted by `resolve`. A half-configured
//! state (a client certificate without its key, a server with both `cmd` and `url`) cannot be
//! represented, so code downstream of the config never re-validates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// A loaded and validated `nexus.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages and reloads).
    pub path: PathBuf,
    /// `[server]`: the gateway's own listener.
    pub server: Server,
    /// `[mcp]`: the MCP endpoint and its downstream servers.
    pub mcp: Mcp,
    /// `[pkcs11]`: defaults for every `pkcs11:` URI.
    pub pkcs11: Pkcs11Defaults,
    /// `[audit]`: `None` unless `enabled = true`.
    pub audit: Option<Audit>,
    /// What `nexus check` warns about (and the gateway logs at start): allowed, but likely a
    /// mistake.
    pub warnings: Vec<super::Problem>,
}

/// `[audit]`: one record per call of a tool, prompt or resource, per denial and per rate-limit
/// refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `file`: JSON lines appended to this file; default none.
    pub file: Option<PathBuf>,
    /// `journal`, default true: each record also to the systemd journal, under
    /// `SYSLOG_IDENTIFIER=nexus-audit`.
    pub journal: bool,
    /// `include_arguments`, default false: argument values in records, those of secret-looking
    /// keys replaced by `"[REDACTED]"`.
    pub include_arguments: bool,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// `listen_address`, default `127.0.0.1:8000`.
    pub listen_address: SocketAddr,
    /// `[server.tls]`: HTTPS for clients when present.
    pub tls: Option<ServerTls>,
    /// `[server.health]`.
    pub health: Health,
    /// `[server.metrics]`: Prometheus text on the main listener.
    pub metrics: Health,
    /// `allowed_hosts`: `Host` header values accepted (DNS-rebinding protection). Empty means:
    /// loopback names when listening on loopback, anything otherwise.
    pub allowed_hosts: Vec<String>,
    /// `allowed_origins`: `Origin` header values accepted. Empty means: loopback origins when
    /// listening on loopback, otherwise only an origin whose host equals the `Host` header.
    pub allowed_origins: Vec<String>,
    /// `[server.limits]`: what one client may cost the gateway.
    pub limits: ServerLimits,
    /// `[server.rate_limits]`: `None` unless `enabled = true` and a quota is set.
    pub rate_limits: Option<FrontLimits>,
    /// `[server.client_ip]`: where a client's address is read from.
    pub client_ip: ClientIp,
    /// `[server.cors]`: which web pages may call the gateway from a browser; `None` (the table
    /// absent) grants no cross-origin access.
    pub cors: Option<Cors>,
    /// `[server.csrf]`: the header every state-changing request must carry; `None` when
    /// `enabled = false` (the default).
    pub csrf: Option<http::HeaderName>,
    /// `[server.oauth]`: when set, every MCP request needs a valid bearer token.
    pub oauth: Option<Oauth>,
    /// `[server.client_identification]`: who a caller is and which groups they are in.
    pub client_identification: ClientIdentification,
}

/// `[server.rate_limits]`: requests to the MCP endpoint (every POST, GET and DELETE, counted
/// once each) allowed per interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontLimits {
    /// `global`: all clients together.
    pub global: Option<Quota>,
    /// `per_ip`: per client address (see [`ClientIp`]).
    pub per_ip: Option<Quota>,
    /// `per_client`: per client identity (client id, else principal); anonymous callers are
    /// not counted here.
    pub per_client: Option<ClientQuota>,
}

/// `{ limit, interval }`: `limit` requests at once, and the whole `limit` back after
/// `interval` (one every `interval / limit` meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `limit`, at least 1.
    pub limit: u32,
    /// `interval`, longer than zero.
    pub interval: Duration,
}

/// `per_client`: the default quota and the overrides of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientQuota {
    /// `limit`, `interval`: for identities in no listed group.
    pub default: Quota,
    /// `groups.NAME`, in file order: a caller in several gets the most generous.
    pub groups: Vec<(String, Quota)>,
}

/// `[server.client_ip]` (Nexus's keys): whose address a request is counted under. Only set
/// these behind a proxy that writes the header: a client can send any value itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientIp {
    /// `x_real_ip`, default false: take `X-Real-IP` when it holds an address.
    pub x_real_ip: bool,
    /// `x_forwarded_for_trusted_hops`, default none: take the address this many entries from
    /// the right end of `X-Forwarded-For` (0: the last one).
    pub x_forwarded_for_trusted_hops: Option<usize>,
}

/// `[server.client_identification]` (Nexus's keys): where a caller's client id and groups
/// come from. Off by default: callers then have no client id and no groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentification {
    /// `enabled`, default false.
    pub enabled: bool,
    /// `client_id`, default `{ jwt_claim = "sub" }`. When enabled, a request without one is
    /// refused (400 `missing_client_id`).
    pub client_id: IdentitySource,
    /// `group_id`, default none: groups from a claim or a header.
    pub group_id: Option<IdentitySource>,
    /// `validation.group_values`, default empty (any group): the groups that exist.
    pub group_values: std::collections::BTreeSet<String>,
    /// `certificate_groups`, default none: groups of a client certificate's identity.
    pub certificate_groups: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for ClientIdentification {
    fn default() -> Self {
        Self {
            enabled: false,
            client_id: IdentitySource::JwtClaim(ClaimPath(vec!["sub".to_owned()])),
            group_id: None,
            group_values: Default::default(),
            certificate_groups: Default::default(),
        }
    }
}

/// Where one identity value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `{ jwt_claim = "a.b" }`: a claim of the verified access token.
    JwtClaim(ClaimPath),
    /// `{ http_header = "X-Client-Id" }`: a header, trusted as set by a proxy in front.
    HttpHeader(http::HeaderName),
    /// `{ certificate = "cn" }`: a field of the verified client certificate.
    Certificate(CertificateField),
}

/// A claim path split at its dots (`realm_access.roles`): never empty, no empty segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

/// The field of a client certificate that identifies its holder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertificateField {
    /// "cn" (default): the subject's common name.
    #[default]
    CommonName,
    /// "san:dns": the first DNS subject alternative name.
    SanDns,
    /// "san:email": the first email (rfc822Name) subject alternative name.
    SanEmail,
    /// "san:uri": the first URI subject alternative name.
    SanUri,
}

impl CertificateField {
    /// The name written in `nexus.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CommonName => "cn",
            Self::SanDns => "san:dns",
            Self::SanEmail => "san:email",
            Self::SanUri => "san:uri",
        }
    }
}

/// Group and scope rules of every `[mcp.servers.NAME]` that has any (`allow`, `deny`,
/// `required_scopes`, `[tools.T]`, `[prompts.P]`, `[resources."URI"]`). Kept apart from
/// [`Downstream`] so that changing a rule never restarts a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Server name -> its rules.
    pub servers: std::collections::BTreeMap<String, ServerAccess>,
}

/// One server's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerAccess {
    /// `allow`, `deny`, `required_scopes` of the server.
    pub rule: AccessRule,
    /// `[tools.NAME]`, by the tool's name on the server.
    pub tools: std::collections::BTreeMap<String, AccessRule>,
    /// `[prompts.NAME]`, by the prompt's name on the server.
    pub prompts: std::collections::BTreeMap<String, AccessRule>,
    /// `[resources."URI"]`: a resource URI or a template's `uriTemplate`.
    pub resources: std::collections::BTreeMap<String, AccessRule>,
}

/// `allow`, `deny` and `required_scopes` of a server or of one of its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRule {
    /// `allow`: only these groups (empty: nobody).
    pub allow: Option<std::collections::BTreeSet<String>>,
    /// `deny`: never these groups, even when allowed.
    pub deny: Option<std::collections::BTreeSet<String>>,
    /// `required_scopes`: OAuth scopes a call needs.
    pub required_scopes: Option<Vec<String>>,
}

/// `[server.cors]`: the CORS grant for browser clients (keys and defaults as in Nexus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// `allow_origins`: `"*"` or a list of origins, each exact (`https://app.example.com`,
    /// lowercase, default port dropped) or a glob (`https://*.example.com`); default none.
    pub allow_origins: AnyOr<OriginPattern>,
    /// `allow_methods`; default `GET, POST, DELETE` (the MCP endpoint's). OPTIONS is always
    /// added to a list.
    pub allow_methods: Option<AnyOr<http::Method>>,
    /// `allow_headers`; default none beyond the MCP request headers, which are always allowed.
    pub allow_headers: AnyOr<http::HeaderName>,
    /// `expose_headers`; default none beyond `Mcp-Session-Id`, `WWW-Authenticate` and
    /// `Retry-After`, which are always exposed.
    pub expose_headers: AnyOr<http::HeaderName>,
    /// `allow_credentials`, default false: browsers may send cookies and client certificates.
    pub allow_credentials: bool,
    /// `max_age`: how long a browser may cache a preflight answer; default unset (the
    /// browser's own default, 5 s in Chromium).
    pub max_age: Option<Duration>,
    /// `allow_private_network`, default false: answer Private Network Access preflights, so
    /// a public page may reach a gateway on a private address.
    pub allow_private_network: bool,
}

/// `"*"` (anything) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyOr<T> {
    /// `"*"`.
    Any,
    /// The values listed (possibly none).
    List(Vec<T>),
}

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `scheme://host[:port]`, compared with a request's `Origin` exactly.
    Exact(String),
    /// An entry with glob characters (`*?[]{}!\`), matched with `fast-glob` as Nexus does.
    Glob(String),
}

/// `[server.oauth]`: the gateway as an OAuth 2.1 resource server.
#[derive(Debug, Clone, PartialEq)]
pub struct Oauth {
    /// `url`, or the issuer whose metadata names the JWKS.
    pub jwks: JwksSource,
    /// `poll_interval`, default 5 min: how often the JWKS is re-read (a token with an unknown
    /// `kid` also triggers a re-read, at most once per 10 s).
    pub poll_interval: Duration,
    /// `expected_issuer`: the `iss` a token must carry; `None` accepts any.
    pub expected_issuer: Option<String>,
    /// `expected_audience`, else `protected_resource.resource`: a token's `aud` must contain it.
    pub audience: String,
    /// `leeway`, default 60 s: clock skew allowed when checking `exp` and `nbf`.
    pub leeway: Duration,
    /// `protected_resource.resource`: this gateway's URL; `None` takes it from each request.
    pub resource: Option<http::Uri>,
    /// `protected_resource.authorization_servers`, default `[expected_issuer]`.
    pub authorization_servers: Vec<String>,
    /// `scopes_supported`, default none: announced in the protected-resource metadata.
    pub scopes_supported: Vec<String>,
    /// `[server.oauth.tls]`: how the JWKS and discovery documents are fetched.
    pub tls: ClientTls,
}

/// Where the token-signing keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// `url`: the JWKS itself.
    Url(http::Uri),
    /// No `url`: `jwks_uri` from the issuer's RFC 8414 or OpenID Connect discovery document.
    Discover(http::Uri),
}

/// `[server.limits]`: bounds on connections, requests and sessions, so that no client (with
/// or without a session) can exhaust memory, file descriptors or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `max_connections`, default 1024: client connections open at once. The listener lowers
    /// it to half the open-file limit, leaving the rest to downstreams and files.
    pub max_connections: usize,
    /// `header_read_timeout`, default 10 s: to receive a request's headers, counted from the
    /// connection's start or the previous response (so also how long an idle HTTP/1.1
    /// keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// `body_read_timeout`, default 30 s: to receive a request's whole body.
    pub body_read_timeout: Duration,
    /// `idle_timeout`, default 60 s: a connection with no request in flight (an HTTP/2 one
    /// included) is closed after this long.
    pub idle_timeout: Duration,
    /// `max_request_body`, default 8 MiB: largest request body, in bytes.
    pub max_request_body: usize,
    /// `max_request_bodies_total`, default 256 MiB: bytes of request bodies being received at
    /// once, all connections together.
    pub max_request_bodies_total: usize,
    /// `max_sessions`, default 10000: handshake-era sessions live at once.
    pub max_sessions: usize,
    /// `session_idle_timeout`, default 1 h: a session unused this long is forgotten.
    pub session_idle_timeout: Duration,
    /// `max_sessions_per_identity`, default 100: sessions one principal holds at once
    /// (anonymous callers count only against `max_sessions`).
    pub max_sessions_per_identity: usize,
    /// `max_streams_per_session`, default 4: GET notification streams open at once per session.
    pub max_streams_per_session: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_request_body: 8 * 1024 * 1024,
            max_request_bodies_total: 256 * 1024 * 1024,
            max_sessions: 10_000,
            session_idle_timeout: Duration::from_secs(3600),
            max_sessions_per_identity: 100,
            max_streams_per_session: 4,
        }
    }
}

/// `[server.health]` or `[server.metrics]`: an endpoint that can be moved or turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `path`, default `/health` (`/metrics`).
    pub path: String,
}

/// `[server.tls]`: the gateway's own HTTPS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// `certificate`: leaf then chain.
    pub certificate: CertSource,
    /// `key`.
    pub key: KeySource,
    /// `client_ca_cert_path`: when set, clients must present a certificate issued by it.
    pub client_ca: Option<PathBuf>,
    /// `min_tls_version`, `cipher_list`, `ciphersuites`.
    pub params: TlsParams,
}

/// Protocol and cipher settings shared by both TLS directions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `min_tls_version`: "1.2" (default) or "1.3". TLS 1.0/1.1 are never offered.
    pub min_version: TlsVersion,
    /// `cipher_list`: OpenSSL cipher string for TLS 1.2.
    pub cipher_list: Option<String>,
    /// `ciphersuites`: OpenSSL TLS 1.3 suites.
    pub ciphersuites: Option<String>,
}

/// Lowest TLS version offered or accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Where a certificate (leaf then chain) comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CertSource {
    /// A PEM file.
    Pem(PathBuf),
    /// A certificate stored on a PKCS#11 token.
    Pkcs11(Pkcs11Ref),
}

/// An RFC 7512 `pkcs11:` URI (kept verbatim: it may carry `pin-value`, so never log it whole)
/// with the `[pkcs11]` defaults its module and PIN fall back to.
#[derive(Debug, Clone, PartialEq)]
pub struct Pkcs11Ref {
    /// The URI as written.
    pub uri: String,
    /// `[pkcs11]` (shared by every reference of one configuration).
    pub defaults: std::sync::Arc<Pkcs11Defaults>,
}

/// Where a private key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// A PEM file (PKCS#8, PKCS#1 RSA, SEC1 EC; encrypted PKCS#8 with a password).
    Pem {
        /// The key file.
        path: PathBuf,
        /// Passphrase of an encrypted key.
        password: Option<SecretSource>,
    },
    /// A key on a PKCS#11 token.
    Pkcs11(Pkcs11Ref),
}

/// A secret given inline (usually through `{{ env.X }}`) or as a file to read.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The value itself.
    Value(SecretString),
    /// A file holding the value (trailing newline stripped when read).
    File(PathBuf),
}

/// `[pkcs11]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pkcs11Defaults {
    /// `module_path`.
    pub module_path: Option<PathBuf>,
    /// `pin_file` or `pin`.
    pub pin: Option<SecretSource>,
}

/// `[mcp]`.
#[derive(Debug, Clone)]
pub struct Mcp {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `path`, default `/mcp`.
    pub path: String,
    /// `tools`: "search" (default) or "direct".
    pub tools: ToolsMode,
    /// `prefix`: "always" (default) or "when-needed".
    pub prefix: PrefixMode,
    /// `call_timeout`, default 60 s: how long one downstream call may take (progress
    /// notifications restart the clock).
    pub call_timeout: Duration,
    /// `[mcp.limits]`: every server's limits unless its own `[limits]` overrides them.
    pub limits: Limits,
    /// `[mcp.servers.NAME]`, in the order they appear in the file.
    pub servers: Vec<Downstream>,
    /// The servers' `allow`/`deny`/`required_scopes` and their tool, prompt and resource entries.
    pub access: AccessPolicy,
}

/// How tools are presented to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolsMode {
    /// Only `search` and `execute` are listed.
    #[default]
    Search,
    /// Every downstream tool is listed.
    Direct,
}

/// When tool and prompt names get the `server__` prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrefixMode {
    /// Always.
    #[default]
    Always,
    /// Only when more than one server is configured.
    WhenNeeded,
}

/// One `[mcp.servers.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Downstream {
    /// The table name.
    pub name: String,
    /// Child process or remote server.
    pub transport: Transport,
    /// `rate_limits`.
    pub rate_limit: Option<RateLimit>,
    /// `call_timeout` of this server, else `[mcp] call_timeout`.
    pub call_timeout: Duration,
    /// `protocol_version`: the revision this server is spoken to in, overriding the choice
    /// made at connect; `None` (default) chooses (the handshake era first).
    pub protocol_version: Option<&'static str>,
    /// `[limits]` of this server over `[mcp.limits]`.
    pub limits: Limits,
}

/// `[mcp.limits]` with a server's `[limits]` over it: what one downstream may send or make
/// the gateway hold, so that a broken or hostile server cannot exhaust the gateway's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_message_size`, default 16 MiB: the largest message read from the server (a stdio
    /// line, an HTTP response body, one SSE event). A bigger one is discarded as it arrives and
    /// the call waiting for it fails.
    pub max_message_size: usize,
    /// `max_stdin_queue`, default 64 MiB (stdio): bytes that may wait to be written to a child
    /// that does not read its stdin. A call that would queue more fails at once; a message is
    /// always admitted to an empty queue.
    pub max_stdin_queue: usize,
    /// `notifications_per_second`, default 1000: notifications the server may send per second
    /// (progress included); the rest are dropped, and counted in `/metrics`.
    pub notifications_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_stdin_queue: 64 << 20,
            notifications_per_second: 1000,
        }
    }
}

/// How the gateway reaches a downstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// `cmd`: a child process speaking MCP over stdin/stdout.
    Stdio(Stdio),
    /// `url`: a remote server.
    Http(Http),
}

/// A stdio downstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Stdio {
    /// `cmd[0]`.
    pub program: String,
    /// `cmd[1..]`.
    pub args: Vec<String>,
    /// `env`, added to the child's environment.
    pub env: Vec<(String, String)>,
    /// `inherit_env`, default false: the child starts from the gateway's whole environment
    /// rather than the clean one (`PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `LANG`, `LC_*`,
    /// `TZ`, `TMPDIR` from the gateway's), so secrets used in `{{ env.X }}` stay out of it.
    pub inherit_env: bool,
    /// `cwd`.
    pub cwd: Option<PathBuf>,
    /// `stderr`.
    pub stderr: StderrTarget,
}

/// Where a child's stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrTarget {
    /// "null" (default): discarded.
    Null,
    /// "inherit": the gateway's own stderr.
    Inherit,
    /// "pipe": each line logged by the gateway with the server name.
    Pipe,
    /// `{ file = "..." }`: appended to a file.
    File(PathBuf),
}

/// An HTTP downstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    /// `url` (http or https).
    pub url: http::Uri,
    /// `protocol`; `None` means detect (Streamable HTTP first, then SSE). A `message_url`
    /// without `protocol` means SSE.
    pub protocol: Option<HttpProtocol>,
    /// `message_url`: the HTTP+SSE POST endpoint when the server's stream announces none.
    pub message_url: Option<Box<http::Uri>>,
    /// `[auth]`.
    pub auth: Option<Auth>,
    /// `[tls]` (defaults when absent; ignored for `http://`).
    pub tls: ClientTls,
}

/// `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    /// "streamable-http".
    StreamableHttp,
    /// "sse": the 2024-11-05 HTTP+SSE transport.
    Sse,
}

/// `[mcp.servers.NAME.auth]`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `token = "..."`: sent as `Authorization: Bearer`.
    Token(SecretString),
    /// `type = "forward"`: the client's own `Authorization` header is passed on.
    Forward,
}

/// `[mcp.servers.NAME.rate_limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// `limit`: calls allowed per interval.
    pub limit: u32,
    /// `interval`, e.g. "60s".
    pub interval: Duration,
    /// `tools.NAME = { limit, interval }`: per-tool overrides (tool names as the downstream
    /// knows them).
    pub tools: Vec<(String, RateLimit)>,
}

/// `[mcp.servers.NAME.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTls {
    /// `verify_certs`, `accept_invalid_hostnames`, `root_ca_cert_path`.
    pub verify: Verify,
    /// `client_cert_path` + `client_key_path` (+ `client_key_password[_file]`).
    pub identity: ClientIdentity,
    /// `min_tls_version`, `cipher_list`, `ciphersuites`.
    pub params: TlsParams,
    /// `server_name`: SNI and verification name when the URL's host differs.
    pub server_name: Option<String>,
}

/// How a downstream's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Chain and hostname (the default).
    Full(Trust),
    /// `accept_invalid_hostnames = true`: chain only.
    SkipHostname(Trust),
    /// `verify_certs = false`: nothing. Logged as a warning at every start and reload.
    Dangerous,
}

/// Which CAs are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system store (honours `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    System,
    /// `root_ca_cert_path`: exactly the CAs in this PEM file.
    Pinned(PathBuf),
}

/// The certificate the gateway presents to a downstream.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientIdentity {
    /// No client certificate.
    None,
    /// Certificate (leaf then chain) and key.
    Certificate {
        /// `client_cert_path`.
        cert: CertSource,
        /// `client_key_path`, with its passphrase.
        key: KeySource,
    },
}

// Secrets are compared by value so that a reload notices a changed token or passphrase; the
// comparison never leaves this module and nothing is printed.
impl PartialEq for SecretSource {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        match (self, other) {
            (Self::Value(a), Self::Value(b)) => a.expose_secret() == b.expose_secret(),
            (Self::File(a), Self::File(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Auth {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        match (self, other) {
            (Self::Token(a), Self::Token(b)) => a.expose_secret() == b.expose_secret(),
            (Self::Forward, Self::Forward) => true,
            _ => false,
        }
    }
}
