//! The access policy end to end: callers identified by a trusted header or by their client
//! certificate see and use only what their groups are admitted to; what they may not use
//! answers exactly as a name that does not exist; a missing scope is a 403 challenge.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::pki::TestPki;
use crate::support::{
    Gateway, error, fixture_stdio_cmd, mcp_headers, names, ok, python_client, raw,
};

/// One fixture server `a` with a rule of each kind. Contractors are outside the server's
/// `allow`, but the `pid` entry replaces the server's rules and admits them.
fn rules() -> String {
    format!(
        "[mcp.servers.a]\ncmd = {}\nallow = [\"admins\", \"users\"]\n\
         [mcp.servers.a.tools.echo]\nallow = [\"admins\"]\n\
         [mcp.servers.a.tools.get_env]\nallow = [\"admins\", \"users\"]\ndeny = [\"users\"]\n\
         [mcp.servers.a.tools.pid]\nallow = [\"contractors\"]\n\
         [mcp.servers.a.tools.sleep]\nrequired_scopes = [\"fixture:sleep\"]\n\
         [mcp.servers.a.prompts.greet]\nallow = [\"admins\"]\n\
         [mcp.servers.a.resources.\"fixture://static/hello\"]\nallow = [\"admins\"]\n\
         [mcp.servers.a.resources.\"fixture://item/{{id}}\"]\ndeny = [\"users\"]\n",
        fixture_stdio_cmd(&[])
    )
}

fn header_identity(tools: &str) -> String {
    format!(
        "[server.client_identification]\nenabled = true\n\
         client_id = {{ http_header = \"X-Client-Id\" }}\ngroup_id = {{ http_header = \"X-Group-Id\" }}\n\
         validation.group_values = [\"admins\", \"users\", \"contractors\"]\n\
         [mcp]\ntools = \"{tools}\"\n{}",
        rules()
    )
}

/// A handshake-era session opened by one identity (headers `X-Client-Id`, `X-Group-Id`).
struct Caller {
    url: String,
    identity: HeaderMap,
    session: String,
}

fn identity(client: &str, group: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-client-id", client.parse().unwrap());
    if let Some(group) = group {
        headers.insert("x-group-id", group.parse().unwrap());
    }
    headers
}

impl Caller {
    async fn open(url: &str, client: &str, group: Option<&str>) -> Self {
        let identity = identity(client, group);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        let mut headers = mcp_headers(None);
        headers.extend(identity.clone());
        let (status, headers, body) = raw(Method::POST, url, headers, Some(&init)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
        Self {
            url: url.to_owned(),
            identity,
            session,
        }
    }

    /// POSTs in this session as `identity`.
    async fn post_as(
        &self,
        identity: &HeaderMap,
        message: &Value,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut headers = mcp_headers(Some(&self.session));
        headers.extend(identity.clone());
        raw(Method::POST, &self.url, headers, Some(message)).await
    }

    async fn send(&self, method: &str, params: Value) -> (StatusCode, HeaderMap, Bytes) {
        let message = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        self.post_as(&self.identity, &message).await
    }

    /// The JSON answer of a request that HTTP accepted.
    async fn request(&self, method: &str, params: Value) -> Value {
        let (status, _, body) = self.send(method, params).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    async fn list(&self, method: &str, key: &str) -> Vec<String> {
        let field = if key == "resources" || key == "resourceTemplates" {
            if key == "resources" {
                "uri"
            } else {
                "uriTemplate"
            }
        } else {
            "name"
        };
        let answer = self.request(method, json!({})).await;
        answer["result"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{method}: {answer}"))
            .iter()
            .map(|item| item[field].as_str().unwrap().to_owned())
            .collect()
    }

    async fn tools(&self) -> Vec<String> {
        self.list("tools/list", "tools").await
    }
}

/// An answer and the name or URI it was asked about.
type Answer<'a> = (StatusCode, &'a [u8], &'a str);

/// The answer about a hidden item is the answer about a missing one, byte for byte, once the
/// one thing that must differ (the name or URI asked for) is put in place of the other.
fn assert_same_answer(hidden: Answer<'_>, missing: Answer<'_>) {
    assert_eq!(hidden.0, missing.0);
    let text = |(_, body, name): Answer<'_>| String::from_utf8_lossy(body).replace(name, "NAME");
    let missing_text = text(missing);
    assert!(
        missing_text.contains("\"error\""),
        "should fail: {missing_text}"
    );
    assert_eq!(text(hidden), missing_text);
}

async fn assert_hidden_as_missing(
    caller: &Caller,
    method: &str,
    key: &str,
    hidden: &str,
    missing: &str,
) {
    let (status_hidden, _, body_hidden) = caller.send(method, json!({key: hidden})).await;
    let (status_missing, _, body_missing) = caller.send(method, json!({key: missing})).await;
    assert_same_answer(
        (status_hidden, &body_hidden, hidden),
        (status_missing, &body_missing, missing),
    );
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_group_may_not_use_is_invisible_and_answers_as_missing() {
    let gateway = Gateway::start(&header_identity("direct"), 1).await;
    let users = Caller::open(&gateway.url, "ursula", Some("users")).await;
    let admins = Caller::open(&gateway.url, "ada", Some("admins")).await;
    let contractors = Caller::open(&gateway.url, "carl", Some("contractors")).await;

    let user_tools = users.tools().await;
    for hidden in ["a__echo", "a__get_env", "a__pid"] {
        assert!(
            !user_tools.contains(&hidden.to_owned()),
            "{hidden} listed: {user_tools:?}"
        );
    }
    assert!(
        user_tools.contains(&"a__sleep".to_owned()),
        "{user_tools:?}"
    );
    let admin_tools = admins.tools().await;
    for visible in ["a__echo", "a__get_env", "a__sleep"] {
        assert!(
            admin_tools.contains(&visible.to_owned()),
            "{visible} missing: {admin_tools:?}"
        );
    }
    // Deny beats allow: users are in get_env's allow and its deny.
    assert!(!admin_tools.contains(&"a__pid".to_owned()));
    // The tool entry replaces the server's rules: contractors see pid and nothing else.
    assert_eq!(contractors.tools().await, ["a__pid"]);

    assert!(users.list("prompts/list", "prompts").await.is_empty());
    assert_eq!(admins.list("prompts/list", "prompts").await, ["a__greet"]);
    assert!(users.list("resources/list", "resources").await.is_empty());
    assert_eq!(
        admins.list("resources/list", "resources").await,
        ["fixture://static/hello"]
    );
    let templates = ("resources/templates/list", "resourceTemplates");
    assert!(users.list(templates.0, templates.1).await.is_empty());
    assert_eq!(
        admins.list(templates.0, templates.1).await,
        ["fixture://item/{id}"]
    );

    let call = "tools/call";
    assert_hidden_as_missing(&users, call, "name", "a__echo", "a__nope").await;
    assert_hidden_as_missing(&users, call, "name", "a__get_env", "a__nope").await;
    assert_hidden_as_missing(&contractors, call, "name", "a__echo", "a__nope").await;
    assert_hidden_as_missing(&users, "prompts/get", "name", "a__greet", "a__nope").await;
    let read = "resources/read";
    assert_hidden_as_missing(
        &users,
        read,
        "uri",
        "fixture://static/hello",
        "fixture://none",
    )
    .await;
    assert_hidden_as_missing(&users, read, "uri", "fixture://item/5", "fixture://none/5").await;
    let (status, _, body) = users.send(call, json!({"name": "a__echo"})).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["error"]["message"], "Unknown tool: a__echo",
        "{answer}"
    );

    let echo = json!({"name": "a__echo", "arguments": {"message": "hi"}});
    assert_eq!(text_of(&admins.request(call, echo).await), "hi");
    let greeting = admins
        .request(
            "prompts/get",
            json!({"name": "a__greet", "arguments": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(
        greeting["result"]["messages"][0]["content"]["text"],
        "Hello, Ada!"
    );
    let hello = admins
        .request(read, json!({"uri": "fixture://static/hello"}))
        .await;
    assert_eq!(hello["result"]["contents"][0]["text"], "hello");
    let pid = contractors
        .request(call, json!({"name": "a__pid", "arguments": {}}))
        .await;
    assert!(pid["result"].is_object(), "{pid}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_only_what_the_caller_may_use() {
    let gateway = Gateway::start(&header_identity("search"), 1).await;
    let users = Caller::open(&gateway.url, "ursula", Some("users")).await;
    let admins = Caller::open(&gateway.url, "ada", Some("admins")).await;
    let found = |answer: Value| -> Vec<String> {
        answer["result"]["structuredContent"]["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|result| result["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let search = json!({"name": "search", "arguments": {"keywords": ["echo", "pid", "env"]}});
    let user_results = found(users.request("tools/call", search.clone()).await);
    assert!(user_results.is_empty(), "{user_results:?}");
    let admin_results = found(admins.request("tools/call", search).await);
    assert!(
        admin_results.contains(&"a__echo".to_owned()),
        "{admin_results:?}"
    );
    assert!(
        admin_results.contains(&"a__get_env".to_owned()),
        "{admin_results:?}"
    );
    assert!(
        !admin_results.contains(&"a__pid".to_owned()),
        "{admin_results:?}"
    );
    // `execute` of a hidden tool answers as `execute` of a missing one.
    let execute =
        |name: &str| json!({"name": "execute", "arguments": {"name": name, "arguments": {}}});
    let (hidden_status, _, hidden) = users.send("tools/call", execute("a__echo")).await;
    let (missing_status, _, missing) = users.send("tools/call", execute("a__nope")).await;
    assert_same_answer(
        (hidden_status, &hidden, "a__echo"),
        (missing_status, &missing, "a__nope"),
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_scope_is_a_403_challenge_for_a_listed_tool() {
    let gateway = Gateway::start(&header_identity("direct"), 1).await;
    let users = Caller::open(&gateway.url, "ursula", Some("users")).await;
    assert!(users.tools().await.contains(&"a__sleep".to_owned()));
    let (status, headers, body) = users
        .send(
            "tools/call",
            json!({"name": "a__sleep", "arguments": {"ms": 1}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"fixture:sleep\", \
         error_description=\"the tool a__sleep needs scope fixture:sleep\""
    );
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["error"]["message"],
        "Forbidden: the tool a__sleep needs scope fixture:sleep"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_identities_own_their_sessions_and_are_read_only_when_configured() {
    let gateway = Gateway::start(&header_identity("direct"), 1).await;
    let alice = Caller::open(&gateway.url, "alice", Some("admins")).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, ..) = alice
        .post_as(&identity("alice", Some("admins")), &ping)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = alice.post_as(&identity("bob", Some("admins")), &ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without a client id the request is refused as Nexus refuses it; an unknown group too.
    let (status, _, body) = raw(Method::POST, &gateway.url, mcp_headers(None), Some(&ping)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("missing_client_id"));
    let mut headers = mcp_headers(None);
    headers.extend(identity("eve", Some("root")));
    let (status, _, body) = raw(Method::POST, &gateway.url, headers, Some(&ping)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("invalid_group"));
    gateway.stop().await;

    // Not configured: the same headers identify nobody (both are the anonymous caller).
    let plain = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.a]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&plain, 1).await;
    let alice = Caller::open(&gateway.url, "alice", Some("admins")).await;
    let (status, ..) = alice.post_as(&identity("bob", None), &ping).await;
    assert_eq!(status, StatusCode::OK);
    gateway.stop().await;
}

/// `[server.tls]` asking for client certificates; identities and groups from them.
fn mtls_identity(pki: &TestPki) -> String {
    let path = |name: &str| pki.path(name).display().to_string();
    format!(
        "[server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nclient_ca_cert_path = \"{}\"\n\
         [server.client_identification]\nenabled = true\nclient_id = {{ certificate = \"cn\" }}\n\
         [server.client_identification.certificate_groups]\n\"nexus-client-ec\" = [\"admins\"]\n\
         \"nexus-client-b\" = [\"users\"]\n[mcp]\ntools = \"direct\"\n{}",
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
        rules()
    )
}

fn client_args<'a>(pki: &TestPki, client: &str, keep: &'a mut Vec<String>) -> Vec<&'a str> {
    *keep = vec![
        "--cafile".into(),
        pki.path("chain-bundle.pem").display().to_string(),
        "--cert".into(),
        pki.path(&format!("{client}.pem")).display().to_string(),
        "--key".into(),
        pki.path(&format!("{client}.key")).display().to_string(),
    ];
    keep.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_callers_get_groups_from_the_mapping() {
    let pki = TestPki::generate();
    let (gateway, url) = start_https(&pki).await;
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "a__echo", "arguments": {"message": "hi"}},
        {"op": "call_tool", "name": "a__nope", "arguments": {"message": "hi"}},
        {"op": "list_prompts"},
    ]);
    let mut keep = Vec::new();
    let admin = python_client(
        &url,
        steps.clone(),
        &client_args(&pki, "client-ec", &mut keep),
    )
    .await;
    assert!(names(ok(&admin, 0), "tools").contains(&"a__echo".to_owned()));
    assert_eq!(crate::support::text(ok(&admin, 1)), "hi");
    assert_eq!(names(ok(&admin, 3), "prompts"), ["a__greet"]);
    let user = python_client(&url, steps, &client_args(&pki, "client-b", &mut keep)).await;
    assert!(!names(ok(&user, 0), "tools").contains(&"a__echo".to_owned()));
    assert!(names(ok(&user, 0), "tools").contains(&"a__sleep".to_owned()));
    let (hidden, missing) = (error(&user, 1), error(&user, 2));
    assert_eq!(hidden["code"], missing["code"]);
    assert_eq!(
        hidden["message"]
            .as_str()
            .unwrap()
            .replace("a__echo", "NAME"),
        missing["message"]
            .as_str()
            .unwrap()
            .replace("a__nope", "NAME")
    );
    assert!(names(ok(&user, 3), "prompts").is_empty());
    // The RSA client's certificate is not in the mapping: no groups, so outside the server's allow.
    let stranger = python_client(
        &url,
        json!([{"op": "list_tools"}]),
        &client_args(&pki, "client-rsa", &mut keep),
    )
    .await;
    assert!(names(ok(&stranger, 0), "tools").is_empty());
    gateway.stop().await;
}

/// One HTTPS request (POST with a body, else GET) with a client certificate, through curl:
/// (status, lowercased head, body).
async fn curl(
    pki: &TestPki,
    client: &str,
    url: &str,
    headers: &[&str],
    body: Option<&Value>,
) -> (u16, String, String) {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-sS", "-i", "--max-time", "30", "--cacert"])
        .arg(pki.path("chain-bundle.pem"))
        .arg("--cert")
        .arg(pki.path(&format!("{client}.pem")))
        .arg("--key")
        .arg(pki.path(&format!("{client}.key")))
        .args(["-H", "content-type: application/json"])
        .args(["-H", "accept: application/json, text/event-stream"]);
    for header in headers {
        command.args(["-H", header]);
    }
    if let Some(body) = body {
        command.args(["--data-binary", &body.to_string()]);
    }
    let output = command.arg(url).output().await.expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or_else(|| {
        panic!(
            "no HTTP answer: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

/// Starts the HTTPS gateway and waits (bounded) until its downstream is connected.
async fn start_https(pki: &TestPki) -> (Gateway, String) {
    let gateway = Gateway::start_unconnected(&mtls_identity(pki)).await;
    let base = gateway.base.replacen("http://", "https://", 1);
    for _ in 0..200 {
        let (_, _, body) = curl(pki, "client-ec", &format!("{base}/health"), &[], None).await;
        if serde_json::from_str::<Value>(&body).is_ok_and(|h| h["downstreams"]["connected"] == 1) {
            return (gateway, format!("{base}/mcp"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the downstream did not connect");
}

fn session_id(head: &str) -> String {
    head.lines()
        .find_map(|line| line.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("no session id in {head}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_the_certificate_that_opened_it() {
    let pki = TestPki::generate();
    let (gateway, url) = start_https(&pki).await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}});
    let (status, head, body) = curl(&pki, "client-ec", &url, &[], Some(&init)).await;
    assert_eq!(status, 200, "{body}");
    let session = format!("mcp-session-id: {}", session_id(&head));
    let version = "mcp-protocol-version: 2025-11-25";
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, body) = curl(&pki, "client-ec", &url, &[&session, version], Some(&list)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("a__echo"), "{body}");
    let (status, _, body) = curl(&pki, "client-b", &url, &[&session, version], Some(&list)).await;
    assert_eq!(status, 404, "{body}");
    // Headers are no identity here: the certificate and its mapping alone decide.
    let claims = ["x-client-id: nexus-client-ec", "x-group-id: admins"];
    let (status, head, body) = curl(&pki, "client-b", &url, &claims, Some(&init)).await;
    assert_eq!(status, 200, "{body}");
    let own = format!("mcp-session-id: {}", session_id(&head));
    let (status, _, body) = curl(
        &pki,
        "client-b",
        &url,
        &[&own, version, claims[1]],
        Some(&list),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("a__echo") && body.contains("a__sleep"),
        "{body}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stateless_era_hides_and_challenges_the_same_way() {
    let gateway = Gateway::start(&header_identity("direct"), 1).await;
    let post = |name: &str| {
        let (mut headers, body) = crate::stateless::tools_call(name, json!({"message": "m"}));
        headers.extend(identity("ursula", Some("users")));
        let url = gateway.url.clone();
        async move { raw(Method::POST, &url, headers, Some(&body)).await }
    };
    let (hidden_status, _, hidden) = post("a__echo").await;
    let (missing_status, _, missing) = post("a__nope").await;
    assert_eq!(missing_status, StatusCode::BAD_REQUEST);
    assert_same_answer(
        (hidden_status, &hidden, "a__echo"),
        (missing_status, &missing, "a__nope"),
    );
    let (status, headers, body) = post("a__sleep").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("scope=\"fixture:sleep\""), "{challenge}");
    gateway.stop().await;
}
