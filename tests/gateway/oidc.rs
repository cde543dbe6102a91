//! A real authorization server for the OAuth tests: npm `oidc-provider`
//! (`tests/servers/oidc_provider.mjs`) over HTTPS with a test CA made at test time, and the
//! official Python client's OAuth flows against it (`tests/servers/oauth_client.py`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::pki::TestPki;
use crate::support::{listening_port, node, tools};

/// Bound on one run of the Python client (a whole OAuth flow and the MCP calls).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// The scope the provider grants for the resource.
pub const SCOPE: &str = "mcp:tools";

/// The client-credentials client the provider has registered (its secret is made per test).
pub const SERVICE_CLIENT: &str = "nexus-test-service";

/// Who logs in at the provider in the authorization-code flow.
pub const ACCOUNT: &str = "alice";

/// How the Python client obtains its token.
#[derive(Clone, Copy, Debug)]
pub enum Flow {
    /// Dynamic client registration, then authorization code with PKCE (login and consent
    /// driven over HTTP).
    AuthCode,
    /// The client-credentials grant of [`SERVICE_CLIENT`].
    ClientCredentials,
}

impl Flow {
    fn arg(self) -> &'static str {
        match self {
            Self::AuthCode => "auth-code",
            Self::ClientCredentials => "client-credentials",
        }
    }
}

/// `oidc-provider` on a loopback port, issuing JWT access tokens for one resource.
pub struct Provider {
    child: Child,
    port: u16,
    pki: TestPki,
    secret: String,
    /// From spawning node to `LISTENING`.
    pub started_in: Duration,
}

impl Provider {
    /// Starts it for `resource` (the audience of its access tokens) and waits until it listens.
    pub async fn start(resource: &str) -> Self {
        let modules = tools().join("node/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").exists(),
            "npm oidc-provider is not in {}: run tests/run to install the test tools",
            modules.display()
        );
        let pki = TestPki::generate();
        let secret = random_secret();
        let begun = Instant::now();
        let mut child = Command::new(node())
            .arg(script("tests/servers/oidc_provider.mjs"))
            .arg("--modules")
            .arg(&modules)
            .arg("--cert")
            .arg(pki.path("server.pem"))
            .arg("--key")
            .arg(pki.path("server.key"))
            .args(["--resource", resource, "--scope", SCOPE])
            .args(["--client-id", SERVICE_CLIENT])
            .env("OIDC_CLIENT_SECRET", &secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node for oidc-provider");
        let port = listening_port(&mut child, "oidc-provider").await;
        Self {
            child,
            port,
            pki,
            secret,
            started_in: begun.elapsed(),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Where it publishes its signing keys (as its discovery document says).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// The test CA its certificate chains to.
    pub fn ca(&self) -> PathBuf {
        self.pki.path("ca.pem")
    }

    /// Puts a new signing key first in its JWKS (the old ones stay); returns the kids, newest
    /// first.
    pub async fn rotate(&self) -> Vec<String> {
        let out = self.client(&["rotate"]).await;
        serde_json::from_value(out["kids"].clone()).unwrap_or_else(|_| panic!("rotate: {out}"))
    }

    /// A token for `resource` straight from the provider by `flow`, verified by the client
    /// against the JWKS: `{header, claims, jwks_kids, token_type, scope[, authorization]}`.
    pub async fn token(&self, flow: Flow, resource: &str) -> Value {
        self.client(&["token", "--flow", flow.arg(), "--resource", resource])
            .await
    }

    /// The Python MCP client with OAuth against `url`: lists the tools and calls `tool` with
    /// `arguments` (JSON). Returns its summary (see `tests/servers/oauth_client.py`).
    pub async fn mcp(&self, url: &str, flow: Flow, tool: &str, arguments: &str) -> Value {
        let args = mcp_args(url, flow, tool, arguments);
        self.client(&args).await
    }

    /// [`Self::mcp`] that may fail: the summary, with `fatal` when the run failed.
    pub async fn try_mcp(&self, url: &str, flow: Flow, tool: &str, arguments: &str) -> Value {
        self.run(&mcp_args(url, flow, tool, arguments)).await.0
    }

    /// Runs `oauth_client.py ARGS`, which must succeed.
    async fn client(&self, args: &[&str]) -> Value {
        let (out, stderr) = self.run(args).await;
        assert!(
            out.get("fatal").is_none(),
            "oauth_client.py {args:?} failed: {}\nstderr:\n{stderr}",
            out["fatal"]
        );
        out
    }

    /// Runs `oauth_client.py ARGS --cafile CA --issuer ISSUER [--client-id, --account]`;
    /// returns its summary and stderr.
    async fn run(&self, args: &[&str]) -> (Value, String) {
        let ca = self.ca();
        let mut command = Command::new(tools().join("bin/python"));
        command
            .arg(script("tests/servers/oauth_client.py"))
            .args(args)
            .arg("--cafile")
            .arg(&ca)
            .args(["--issuer", &self.issuer()]);
        if args[0] != "rotate" {
            command.args(["--client-id", SERVICE_CLIENT, "--account", ACCOUNT]);
        }
        let output = command
            .env("OIDC_CLIENT_SECRET", &self.secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(CLIENT_LIMIT, output)
            .await
            .expect("oauth_client.py timed out")
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let out: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            panic!(
                "oauth_client.py printed no JSON ({}):\n{stdout}\nstderr:\n{stderr}",
                output.status
            )
        });
        assert_eq!(
            output.status.success(),
            out.get("fatal").is_none(),
            "exit status {} and summary disagree: {out}",
            output.status
        );
        assert!(
            !stdout.contains(&self.secret) && !stderr.contains(&self.secret),
            "the client secret leaked into the client's output"
        );
        (out, stderr.into_owned())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The official SDK's own OAuth resource server (`tests/servers/oauth_resource_server.py`):
/// 401 with `resource_metadata`, RFC 9728 metadata, JWTs verified against the provider's JWKS.
pub struct ResourceServer {
    _child: Child,
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
}

impl ResourceServer {
    /// Starts it on `port` (the one the provider's resource names), trusting `provider`.
    pub async fn start(port: u16, provider: &Provider) -> Self {
        let mut child = Command::new(tools().join("bin/python"))
            .arg(script("tests/servers/oauth_resource_server.py"))
            .args(["--port", &port.to_string(), "--issuer", &provider.issuer()])
            .arg("--cafile")
            .arg(provider.ca())
            .args(["--scope", SCOPE])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python resource server");
        assert_eq!(listening_port(&mut child, "resource server").await, port);
        Self {
            _child: child,
            url: resource_url(port),
        }
    }
}

/// `oauth_client.py mcp` arguments.
fn mcp_args<'a>(url: &'a str, flow: Flow, tool: &'a str, arguments: &'a str) -> [&'a str; 8] {
    let flow = flow.arg();
    [
        "mcp",
        url,
        "--flow",
        flow,
        "--call",
        tool,
        "--arguments",
        arguments,
    ]
}

/// `http://127.0.0.1:PORT/mcp`: the resource (and audience) of a server on `port`.
pub fn resource_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp")
}

/// What each request of a client summary was, in order: `401`, `resource metadata`, `AS
/// metadata`, `registration`, `authorize`, `login`, `consent`, `token`, `mcp`; consecutive
/// `mcp` requests count once (the session's initialize, notifications, calls, stream, DELETE).
/// Panics on a request to anything else, or on an MCP request refused after the token.
pub fn steps(summary: &Value, mcp_url: &str, issuer: &str) -> Vec<&'static str> {
    let mut steps: Vec<&'static str> = Vec::new();
    for request in summary["requests"].as_array().expect("requests") {
        let url = request["url"].as_str().unwrap();
        let status = request["status"].as_u64().unwrap();
        let step = if url == mcp_url && status == 401 {
            "401"
        } else if url == mcp_url {
            assert!(status < 400, "MCP request refused: {request}\n{summary:#}");
            "mcp"
        } else if url.contains("/.well-known/oauth-protected-resource") {
            "resource metadata"
        } else if let Some(path) = url.strip_prefix(issuer) {
            match path {
                "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
                    "AS metadata"
                }
                "/reg" => "registration",
                "/token" => "token",
                _ if path == "/auth" || path.starts_with("/auth/") => "authorize",
                _ if path.ends_with("/login") => "login",
                _ if path.ends_with("/consent") => "consent",
                _ if path.starts_with("/interaction/") => continue, // reading the prompt
                _ => panic!("unexpected request {request}"),
            }
        } else {
            panic!("unexpected request {request}");
        };
        if !(step == "mcp" && steps.last() == Some(&"mcp")) {
            steps.push(step);
        }
    }
    steps
}

/// The sequence of the authorization-code flow from the first MCP request to the tools.
pub const AUTH_CODE_STEPS: &[&str] = &[
    "401",
    "resource metadata",
    "AS metadata",
    "registration",
    "authorize",
    "login",
    "authorize",
    "consent",
    "authorize",
    "token",
    "mcp",
];

/// The same for the client-credentials grant: no registration, no user agent.
pub const CLIENT_CREDENTIALS_STEPS: &[&str] =
    &["401", "resource metadata", "AS metadata", "token", "mcp"];

fn script(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
