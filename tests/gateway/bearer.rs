//! `[server.oauth]`: the gateway as an OAuth resource server. The authorization server's keys
//! are served over HTTPS by a real server (`tests/servers/jwks_server.py`, Python's OpenSSL)
//! with a CA made at test time; tokens are signed here with the openssl crate. Each refusal is
//! checked for its status and its exact `WWW-Authenticate` parameters.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::Serving;
use crate::pki::TestPki;
use crate::support::{WAIT, fixture_stdio_cmd, free_port, mcp_headers, raw, tools, wait_for};

const ISSUER: &str = "https://as.test";
const RESOURCE: &str = "https://gw.test/mcp";
const METADATA: &str = "https://gw.test/.well-known/oauth-protected-resource/mcp";

/// A signing key of the test authorization server and its public JWK.
struct Key {
    kid: String,
    alg: &'static str,
    key: PKey<Private>,
}

impl Key {
    fn rsa(kid: &str, alg: &'static str) -> Self {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    fn ec(kid: &str, alg: &'static str) -> Self {
        let curve = if alg == "ES256" {
            Nid::X9_62_PRIME256V1
        } else {
            Nid::SECP384R1
        };
        let group = EcGroup::from_curve_name(curve).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    fn ed25519(kid: &str) -> Self {
        let key = PKey::generate_ed25519().unwrap();
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            key,
        }
    }

    fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.key.id() {
            Id::RSA => {
                let rsa = self.key.rsa().unwrap();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                       "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
            }
            Id::EC => {
                let ec = self.key.ec_key().unwrap();
                let width = if self.alg == "ES256" { 65 } else { 97 };
                let point = ec
                    .public_key()
                    .to_bytes(
                        ec.group(),
                        PointConversionForm::UNCOMPRESSED,
                        &mut BigNumContext::new().unwrap(),
                    )
                    .unwrap();
                assert_eq!(point.len(), width);
                let half = (width - 1) / 2;
                let crv = if self.alg == "ES256" {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "kid": self.kid, "crv": crv,
                       "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            _ => json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519",
                        "x": b64(&self.key.raw_public_key().unwrap())}),
        }
    }

    /// A compact JWS of `claims` with this key.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}),
            claims,
        )
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(self.signature(input.as_bytes()))
        )
    }

    fn signature(&self, input: &[u8]) -> Vec<u8> {
        if self.alg == "EdDSA" {
            let mut signer = Signer::new_without_digest(&self.key).unwrap();
            return signer.sign_oneshot_to_vec(input).unwrap();
        }
        let digest = match &self.alg[2..] {
            "256" => MessageDigest::sha256(),
            "384" => MessageDigest::sha384(),
            _ => MessageDigest::sha512(),
        };
        let mut signer = Signer::new(digest, &self.key).unwrap();
        if self.alg.starts_with("PS") {
            signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            signer
                .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .unwrap();
        }
        signer.update(input).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        if !self.alg.starts_with("ES") {
            return signature;
        }
        // JOSE wants fixed-width r || s, OpenSSL gives DER.
        let width = if self.alg == "ES256" { 32 } else { 48 };
        let sig = EcdsaSig::from_der(&signature).unwrap();
        let mut raw = sig.r().to_vec_padded(width).unwrap();
        raw.extend(sig.s().to_vec_padded(width).unwrap());
        raw
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims the test gateway accepts.
fn claims() -> Value {
    json!({"iss": ISSUER, "aud": RESOURCE, "sub": "alice", "exp": now() + 300,
           "iat": now(), "scope": "tools:read tools:call"})
}

fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

/// The test authorization server: a directory of documents served over HTTPS.
struct AuthServer {
    dir: tempfile::TempDir,
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl AuthServer {
    /// Serves `keys` as `/jwks.json` on `port` (0: any) with the PKI's server certificate.
    async fn start(pki: &TestPki, port: u16, keys: &[&Key]) -> Self {
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        Self::launch(&cert, &key, port, keys, None).await
    }

    /// [`Self::start`] requiring client certificates issued by the test root CA.
    async fn start_mutual(pki: &TestPki, keys: &[&Key]) -> Self {
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        Self::launch(&cert, &key, 0, keys, Some(&pki.path("ca.pem"))).await
    }

    /// Serves `keys` with `cert` and `key`, requiring client certificates issued by `ca`
    /// when given.
    async fn launch(cert: &Path, key: &Path, port: u16, keys: &[&Key], ca: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        publish_in(dir.path(), keys);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/jwks_server.py");
        let mut child = Command::new(tools().join("bin/python"))
            .arg(script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--certfile")
            .arg(cert)
            .arg("--keyfile")
            .arg(key)
            .args(["--port", &port.to_string()])
            .args(ca.iter().flat_map(|ca| [Path::new("--cafile"), ca]))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("jwks_server.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("jwks_server.py did not start")
            .unwrap()
            .expect("jwks_server.py exited");
        let port = first.strip_prefix("LISTENING ").unwrap().parse().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        });
        Self {
            dir,
            port,
            requests,
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn publish(&self, keys: &[&Key]) {
        publish_in(self.dir.path(), keys);
    }

    /// Writes a document (atomically: a fetch never sees half a file).
    fn write(&self, path: &str, document: &Value) {
        write_atomically(&self.dir.path().join(path), document);
    }

    /// Requests for `path` so far.
    fn fetches(&self, path: &str) -> usize {
        let line = format!("GET {path}");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == line)
            .count()
    }
}

fn publish_in(dir: &Path, keys: &[&Key]) {
    let keys: Vec<Value> = keys.iter().map(|key| key.jwk()).collect();
    write_atomically(&dir.join("jwks.json"), &json!({ "keys": keys }));
}

fn write_atomically(path: &Path, document: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let partial = path.with_extension("partial");
    std::fs::write(&partial, document.to_string()).unwrap();
    std::fs::rename(partial, path).unwrap();
}

/// `[server.oauth]` in front of one stdio fixture `fx`, keys from `jwks` (`url = ...` or
/// `expected_issuer = ...` lines).
fn config(pki: &TestPki, jwks: &str) -> String {
    format!(
        "[server.oauth]\n{jwks}\npoll_interval = \"10m\"\n\
         [server.oauth.protected_resource]\nresource = \"{RESOURCE}\"\n\
         authorization_servers = [\"{ISSUER}\"]\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        pki.path("ca.pem").display(),
        fixture_stdio_cmd(&[])
    )
}

fn url_config(pki: &TestPki, server: &AuthServer) -> String {
    let jwks = format!(
        "url = \"{}\"\nexpected_issuer = \"{ISSUER}\"",
        server.url("/jwks.json")
    );
    config(pki, &jwks)
}

fn with_token(token: Option<&str>, session: Option<&str>) -> HeaderMap {
    let mut headers = mcp_headers(session);
    if let Some(token) = token {
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    headers
}

/// `initialize` with `token`: status, headers, body.
async fn initialize(url: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, body) =
        raw(Method::POST, url, with_token(token, None), Some(&init)).await;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, body)
}

/// The tool names the gateway lists to a client with `token` (a session opened with it).
async fn tool_names(url: &str, token: &str) -> Vec<String> {
    let (status, headers, body) = initialize(url, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, body) = raw(
        Method::POST,
        url,
        with_token(Some(token), Some(&session)),
        Some(&list),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the gateway has fetched the keys and accepts `token`.
async fn ready(url: &str, token: &str) {
    wait_for("the gateway to accept a good token", || async move {
        (initialize(url, Some(token)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

/// The log line of the gateway's first failed key fetch, once there is one; stops the gateway.
async fn failed_fetch_line(serving: Serving) -> String {
    const FAILED: &str = "cannot fetch the OAuth signing keys";
    let logs = wait_for("a failed key fetch in the log", || {
        let logs = serving.logs();
        async move { logs.contains(FAILED).then_some(logs) }
    })
    .await;
    serving.stop().await;
    let line = logs.lines().find(|line| line.contains(FAILED)).unwrap();
    line.to_owned()
}

/// The refusal of `initialize` with `token`: status, `WWW-Authenticate`, JSON-RPC message.
async fn refusal(url: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let (status, headers, body) = initialize(url, token).await;
    let challenge = headers
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, challenge, message)
}

fn invalid_token(description: &str) -> (StatusCode, String, String) {
    (
        StatusCode::UNAUTHORIZED,
        format!(
            "Bearer resource_metadata=\"{METADATA}\", error=\"invalid_token\", error_description=\"{description}\""
        ),
        format!("Unauthorized: {description}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn good_tokens_of_every_key_type_reach_the_tools() {
    let pki = TestPki::generate();
    let keys = [
        Key::rsa("rs256", "RS256"),
        Key::rsa("ps256", "PS256"),
        Key::rsa("rs512", "RS512"),
        Key::ec("es256", "ES256"),
        Key::ec("es384", "ES384"),
        Key::ed25519("ed"),
    ];
    let refs: Vec<&Key> = keys.iter().collect();
    let server = AuthServer::start(&pki, 0, &refs).await;
    let gateway = crate::support::Gateway::start(&url_config(&pki, &server), 1).await;
    ready(&gateway.url, &keys[0].sign(&claims())).await;
    for key in &keys {
        let names = tool_names(&gateway.url, &key.sign(&claims())).await;
        assert!(
            names.iter().any(|name| name.starts_with("fx__")),
            "{}: {names:?}",
            key.alg
        );
    }
    // Without a kid, the keys of the algorithm's type are tried.
    let no_kid = keys[3].sign_with_header(&json!({"alg": "ES256"}), &claims());
    assert!(!tool_names(&gateway.url, &no_kid).await.is_empty());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_with_the_invalid_token_challenge() {
    let pki = TestPki::generate();
    let key = Key::rsa("k1", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let gateway = crate::support::Gateway::start(&url_config(&pki, &server), 1).await;
    let url = &gateway.url;
    ready(url, &key.sign(&claims())).await;
    let pem = key.key.public_key_to_pem().unwrap();
    let hs256 = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "k1"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let hmac = PKey::hmac(&pem).unwrap();
        let mut signer = Signer::new(MessageDigest::sha256(), &hmac).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signer.sign_to_vec().unwrap())
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let tampered = {
        let good = key.sign(&claims());
        let parts: Vec<&str> = good.split('.').collect();
        let payload = URL_SAFE_NO_PAD.encode(claims_with("sub", json!("mallory")).to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let stranger = Key::rsa("k1", "RS256").sign(&claims());
    let cases = [
        (
            None,
            "no access token: send Authorization: Bearer <token>".to_owned(),
        ),
        (
            Some(key.sign(&claims_with("exp", json!(now() - 120)))),
            "the token expired 120 s ago".to_owned(),
        ),
        (
            Some(key.sign(&claims_with("nbf", json!(now() + 600)))),
            "the token is not valid for another 600 s (nbf)".to_owned(),
        ),
        (
            Some(key.sign(&claims_with("aud", json!(["https://other.test"])))),
            format!("the token is not meant for this resource (aud does not contain {RESOURCE})"),
        ),
        (
            Some(key.sign(&claims_with("iss", json!("https://evil.test")))),
            format!("the token was issued by another issuer than {ISSUER}"),
        ),
        (
            Some(tampered),
            "the token's signature is not valid".to_owned(),
        ),
        (
            Some(stranger),
            "the token's signature is not valid".to_owned(),
        ),
        (
            Some(none),
            "unsigned tokens (alg none) are refused".to_owned(),
        ),
        (
            Some(hs256),
            "HMAC-signed tokens (HS256) are refused: only public-key signatures are accepted"
                .to_owned(),
        ),
        (
            Some(Key::rsa("k9", "RS256").sign(&claims())),
            "no signing key of the authorization server has the token's kid".to_owned(),
        ),
        (
            Some("not-a-jwt".to_owned()),
            "the access token is not a JWT (JWS compact serialization): expected three \
             dot-separated parts"
                .to_owned(),
        ),
        (
            Some("a".repeat(17 * 1024)),
            "the access token is longer than 16384 bytes".to_owned(),
        ),
    ];
    for (token, description) in cases {
        assert_eq!(
            refusal(url, token.as_deref()).await,
            invalid_token(&description),
            "{description}"
        );
    }
    // GET and DELETE need the token as much as POST.
    for method in [Method::GET, Method::DELETE] {
        let (status, headers, _) =
            raw(method.clone(), url, with_token(None, Some("x")), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // A token in the query string is refused, even a good one.
    let query = format!("{url}?access_token={}", key.sign(&claims()));
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    let (status, _, body) = raw(Method::POST, &query, with_token(None, None), Some(&init)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["message"],
        "Bad request: an access token in the URL (access_token=) is refused, since URLs are \
         logged; send it as Authorization: Bearer <token>"
    );
    // /health stays open.
    assert_eq!(gateway.health().await["status"], "healthy");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_cannot_force_more_fetches() {
    let pki = TestPki::generate();
    let old = Key::ec("old", "ES256");
    let server = AuthServer::start(&pki, 0, &[&old]).await;
    let gateway = crate::support::Gateway::start(&url_config(&pki, &server), 1).await;
    ready(&gateway.url, &old.sign(&claims())).await;
    assert!(
        !tool_names(&gateway.url, &old.sign(&claims()))
            .await
            .is_empty()
    );
    assert_eq!(server.fetches("/jwks.json"), 1);
    let new = Key::rsa("new", "PS256");
    server.publish(&[&old, &new]);
    // The first fetch was at start, so a refetch within 10 s of it would be refused.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let good = new.sign(&claims());
    let forged: Vec<String> = (0..40)
        .map(|i| {
            old.sign_with_header(
                &json!({"alg": "ES256", "kid": format!("nope-{i}")}),
                &claims(),
            )
        })
        .collect();
    let url = gateway.url.clone();
    let attempts = forged
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::repeat_n(Some(good.clone()), 10));
    let outcomes = futures_util::future::join_all(attempts.map(|token| {
        let url = url.clone();
        async move { initialize(&url, token.as_deref()).await.0 }
    }))
    .await;
    let (refused, accepted) = outcomes.split_at(40);
    assert!(
        refused
            .iter()
            .all(|status| *status == StatusCode::UNAUTHORIZED),
        "{refused:?}"
    );
    assert!(
        accepted.iter().all(|status| *status == StatusCode::OK),
        "{accepted:?}"
    );
    assert_eq!(
        server.fetches("/jwks.json"),
        2,
        "the misses share one fetch"
    );
    // Right after that fetch, more unknown kids fetch nothing.
    for token in &forged[..10] {
        assert_eq!(refusal(&url, Some(token)).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        server.fetches("/jwks.json"),
        2,
        "refetches are rate-limited"
    );
    assert!(!tool_names(&url, &good).await.is_empty());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_keys_answer_503_until_they_can_be_fetched() {
    let pki = TestPki::generate();
    let key = Key::ed25519("k");
    let port = free_port().await;
    let jwks =
        format!("url = \"https://127.0.0.1:{port}/jwks.json\"\nexpected_issuer = \"{ISSUER}\"");
    let gateway = crate::support::Gateway::start(&config(&pki, &jwks), 1).await;
    let token = key.sign(&claims());
    let (status, headers, body) = initialize(&gateway.url, Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(
        body["error"]["message"],
        "Service unavailable: the gateway has not yet fetched the authorization server's signing \
         keys, so it cannot verify access tokens; try again shortly"
    );
    // No token is still a 401: the client is told to get one.
    assert_eq!(
        refusal(&gateway.url, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gateway.health().await["status"], "healthy");
    let server = AuthServer::start(&pki, port, &[&key]).await;
    ready(&gateway.url, &token).await;
    assert!(server.fetches("/jwks.json") >= 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issuer_metadata_names_the_keys_and_our_metadata_needs_no_token() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS384");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let issuer = server.url("");
    server.write(
        ".well-known/oauth-authorization-server",
        &json!({"issuer": issuer, "jwks_uri": server.url("/jwks.json")}),
    );
    let toml = format!(
        "[server.oauth]\nexpected_issuer = \"{issuer}\"\nexpected_audience = \"gw\"\n\
         scopes_supported = [\"tools:call\"]\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        pki.path("ca.pem").display(),
        fixture_stdio_cmd(&[])
    );
    let gateway = crate::support::Gateway::start(&toml, 1).await;
    let token = key.sign(&json!({"iss": issuer, "aud": "gw", "sub": "svc", "exp": now() + 60}));
    ready(&gateway.url, &token).await;
    assert!(!tool_names(&gateway.url, &token).await.is_empty());
    assert_eq!(server.fetches("/.well-known/oauth-authorization-server"), 1);
    // No resource configured: the metadata and challenges name this endpoint on the Host used.
    let expected = json!({
        "resource": "http://127.0.0.1/mcp",
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools:call"],
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, _, body) = raw(
            Method::GET,
            &format!("{}{path}", gateway.base),
            mcp_headers(None),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            expected,
            "{path}"
        );
    }
    let (_, challenge, _) = refusal(&gateway.url, None).await;
    assert!(
        challenge.starts_with(
            "Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource/mcp\""
        ),
        "{challenge}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_never_reach_the_log() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let serving =
        Serving::start_with_env(&url_config(&pki, &server), &[("NEXUS_LOG", "debug")]).await;
    let good = key.sign(&claims());
    let expired = key.sign(&claims_with("exp", json!(now() - 3600)));
    let unknown = Key::rsa("other", "RS256").sign(&claims());
    ready(&serving.url(), &good).await;
    for token in [&expired, &unknown] {
        assert_eq!(
            refusal(&serving.url(), Some(token)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let query = format!("{}?access_token={good}", serving.url());
    let (status, ..) = raw(
        Method::POST,
        &query,
        with_token(None, None),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let logs = serving.logs();
    serving.stop().await;
    assert!(logs.contains("access token refused"), "{logs}");
    for token in [&good, &expired, &unknown] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token is in the log:{logs}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_over_1_mib_is_not_taken() {
    let pki = TestPki::generate();
    let key = Key::ec("k", "ES256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let padding = "x".repeat(1024 * 1024);
    server.write(
        "jwks.json",
        &json!({"keys": [key.jwk()], "padding": padding}),
    );
    let gateway = crate::support::Gateway::start(&url_config(&pki, &server), 1).await;
    // Taken, it would not be fetched again for poll_interval (10 min): a second fetch, after
    // backoff, shows the first was refused.
    wait_for("a second fetch of the oversized JWKS", || async {
        (server.fetches("/jwks.json") >= 2).then_some(())
    })
    .await;
    let token = key.sign(&claims());
    assert_eq!(
        initialize(&gateway.url, Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.publish(&[&key]);
    ready(&gateway.url, &token).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_key_server_is_logged_with_the_fix() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "RS256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    let without_ca = url_config(&pki, &server).replace(
        &format!(
            "[server.oauth.tls]\nroot_ca_cert_path = \"{}\"\n",
            pki.path("ca.pem").display()
        ),
        "",
    );
    let serving = Serving::start(&without_ca).await;
    let token = key.sign(&claims());
    assert_eq!(
        initialize(&serving.url(), Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let line = failed_fetch_line(serving).await;
    assert!(line.contains(&server.url("/jwks.json")), "{line}");
    assert!(line.contains("root_ca_cert_path"), "{line}");
}

/// The most memory the gateway may hold while it is fed a 256 MiB JWKS and a flood of 16 KiB
/// bad tokens (a debug build starts at about 37 MiB; without the JWKS bound it reached 833 MiB).
const PEAK_RSS_CEILING_MIB: u64 = 64;

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_jwks_and_a_flood_of_big_tokens_cost_little_memory() {
    let pki = TestPki::generate();
    let key = Key::ec("k", "ES256");
    let server = AuthServer::start(&pki, 0, &[&key]).await;
    // Sparse: no disk is used, but 256 MiB are served.
    std::fs::File::create(server.dir.path().join("jwks.json"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let serving = Serving::start(&url_config(&pki, &server)).await;
    let start = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    wait_for("three refused fetches of the huge JWKS", || async {
        (server.fetches("/jwks.json") >= 3).then_some(())
    })
    .await;
    let after_jwks = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    server.publish(&[&key]);
    ready(&serving.url(), &key.sign(&claims())).await;
    let big = |i: usize| {
        let claims = claims_with("padding", json!("x".repeat(12 * 1024 + i)));
        key.sign(&claims)
    };
    let url = serving.url();
    for round in 0..25 {
        let tokens: Vec<String> = (0..40).map(|i| big(round * 40 + i)).collect();
        let statuses =
            futures_util::future::join_all(tokens.iter().map(|token| refusal(&url, Some(token))))
                .await;
        // Good signatures, but bigger than the bound once signed: refused unread.
        assert!(
            statuses
                .iter()
                .all(|(status, ..)| *status == StatusCode::UNAUTHORIZED)
        );
    }
    let peak = crate::hostile_client::status_kib(serving.pid(), "VmHWM") / 1024;
    serving.stop().await;
    println!(
        "peak RSS: {start} MiB at start, {after_jwks} MiB after the 256 MiB JWKS, {peak} MiB after \
         1000 big tokens"
    );
    assert!(peak < PEAK_RSS_CEILING_MIB, "peak RSS {peak} MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_server_may_require_the_gateways_client_certificate() {
    let pki = TestPki::generate();
    let key = Key::rsa("k", "PS384");
    let server = AuthServer::start_mutual(&pki, &[&key]).await;
    let identity = format!(
        "client_cert_path = \"{}\"\nclient_key_path = \"{}\"\n[mcp]",
        pki.path("client-rsa.pem").display(),
        pki.path("client-rsa.key").display()
    );
    let mutual = url_config(&pki, &server).replacen("[mcp]", &identity, 1);
    let gateway = crate::support::Gateway::start(&mutual, 1).await;
    ready(&gateway.url, &key.sign(&claims())).await;
    gateway.stop().await;
    // Without the certificate the server refuses the gateway, which says what it lacked.
    let serving = Serving::start(&url_config(&pki, &server)).await;
    let line = failed_fetch_line(serving).await;
    assert!(line.contains("client certificate"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_server_that_never_answers_is_given_up_on_after_10_s() {
    let pki = TestPki::generate();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let holding = accepted.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holding.lock().unwrap().push(stream);
        }
    });
    let jwks =
        format!("url = \"https://127.0.0.1:{port}/jwks.json\"\nexpected_issuer = \"{ISSUER}\"");
    let gateway = crate::support::Gateway::start(&config(&pki, &jwks), 1).await;
    // A second connection means the first fetch timed out and was retried.
    wait_for("a retry after the fetch timeout", || {
        let count = accepted.lock().unwrap().len();
        async move { (count >= 2).then_some(()) }
    })
    .await;
    let token = Key::ed25519("k").sign(&claims());
    assert_eq!(
        initialize(&gateway.url, Some(&token)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gateway.stop().await;
    acceptor.abort();
}

#[test]
fn check_warns_about_plain_http_keys_and_a_missing_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    let text = "[server.oauth]\nurl = \"http://as.example/jwks.json\"\n\
                [server.oauth.protected_resource]\nresource = \"https://gw.example/mcp\"\n\
                authorization_servers = [\"https://as.example\"]\n";
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let at = path.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "warning: {at}:1:1: server.oauth: `expected_issuer` is not set: tokens of any issuer \
                 signed with these keys are accepted (some providers share keys between tenants); set \
                 `expected_issuer` to the authorization server's issuer URL"
            ),
            format!(
                "warning: {at}:2:7: server.oauth.url: `http://as.example/jwks.json` is http://: it can \
                 be read and altered on the way (keys, tokens, metadata); use https:// outside loopback"
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_client_key_for_the_key_server_may_live_in_the_hsm() {
    use crate::pkcs11_support::{KEYS, Pki, private_uri};
    let token = Pki::new();
    let key = Key::ec("k", "ES256");
    let (cert, server_key, ca) = (
        token.path("server.crt"),
        token.path("server.key"),
        token.path("ca.crt"),
    );
    let server = AuthServer::launch(&cert, &server_key, 0, &[&key], Some(&ca)).await;
    let toml = format!(
        "[pkcs11]\nmodule_path = \"{}\"\npin_file = \"{}\"\n\
         [server.oauth]\nurl = \"{}\"\nexpected_issuer = \"{ISSUER}\"\n\
         [server.oauth.protected_resource]\nresource = \"{RESOURCE}\"\n\
         [server.oauth.tls]\nroot_ca_cert_path = \"{}\"\nserver_name = \"localhost\"\n\
         client_cert_path = \"{}\"\nclient_key_path = \"{}\"\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        token.module.display(),
        token.pin_file.display(),
        server.url("/jwks.json"),
        ca.display(),
        token.cert(KEYS[1]),
        private_uri(KEYS[1]),
        fixture_stdio_cmd(&[])
    );
    let conf = token.conf.display().to_string();
    let serving = Serving::start_with_env(&toml, &[("SOFTHSM2_CONF", &conf)]).await;
    ready(&serving.url(), &key.sign(&claims())).await;
    assert_eq!(server.fetches("/jwks.json"), 1);
    serving.stop().await;
}
