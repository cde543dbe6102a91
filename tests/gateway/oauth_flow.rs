//! OAuth 2.1 end to end with real parts: npm `oidc-provider` as the authorization server and the
//! official Python `mcp` client's `OAuthClientProvider` / `ClientCredentialsOAuthProvider` (see
//! `oidc.rs`). First the harness on its own (the provider's tokens; the client against the SDK's
//! own resource server), then the gateway's `[server.oauth]` in front of the fixture: 401 →
//! protected-resource metadata → authorization-server metadata → registration → authorization
//! code with PKCE → token → tools, the client-credentials grant, and a key rotation at the
//! provider that the running gateway follows.

use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::Serving;
use crate::oidc::{
    ACCOUNT, AUTH_CODE_STEPS, CLIENT_CREDENTIALS_STEPS, Flow, Provider, ResourceServer, SCOPE,
    SERVICE_CLIENT, resource_url, steps,
};
use crate::support::{fixture_stdio_cmd, free_port, mcp_headers, raw};

/// `kid` of a summary's token (`{"header": ...}` or `{"token": {"header": ...}}`).
fn kid(summary: &Value) -> &str {
    let header = summary
        .get("token")
        .map_or(&summary["header"], |token| &token["header"]);
    header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in {summary:#}"))
}

/// The text of a summary's tool call.
fn call_text(summary: &Value) -> &str {
    summary["call"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no call result in {summary:#}"))
}

/// The claims of a token a run obtained for `resource` from `provider`, checked.
fn assert_token_for(summary: &Value, provider: &Provider, resource: &str, subject: &str) {
    let token = summary.get("token").unwrap_or(summary);
    assert_eq!(token["header"]["typ"], "at+jwt", "{summary:#}");
    assert_eq!(token["header"]["alg"], "RS256", "{summary:#}");
    let claims = &token["claims"];
    assert_eq!(claims["iss"], provider.issuer(), "{summary:#}");
    assert_eq!(claims["aud"], resource, "{summary:#}");
    assert_eq!(claims["sub"], subject, "{summary:#}");
    assert_eq!(claims["scope"], SCOPE, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_issues_jwt_access_tokens_for_the_resource_and_rotates_its_key() {
    let resource = resource_url(free_port().await);
    let provider = Provider::start(&resource).await;
    eprintln!("oidc-provider listening after {:?}", provider.started_in);

    let begun = Instant::now();
    let user = provider.token(Flow::AuthCode, &resource).await;
    eprintln!(
        "registration + auth code with PKCE + token: {:?}",
        begun.elapsed()
    );
    assert_token_for(&user, &provider, &resource, ACCOUNT);
    let prompts: Vec<&str> = user["authorization"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|request| request["url"].as_str())
        .filter_map(|url| url.rsplit('/').next())
        .filter(|last| ["login", "consent"].contains(last))
        .collect();
    assert_eq!(prompts, ["login", "consent"], "{user:#}");
    let first = kid(&user).to_owned();
    assert_eq!(user["jwks_kids"], json!([first]), "one signing key so far");

    let begun = Instant::now();
    let service = provider.token(Flow::ClientCredentials, &resource).await;
    eprintln!("client credentials: {:?}", begun.elapsed());
    assert_token_for(&service, &provider, &resource, SERVICE_CLIENT);
    assert_eq!(service["claims"]["client_id"], SERVICE_CLIENT);
    assert_eq!(kid(&service), first);

    let kids = provider.rotate().await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_ne!(kids[0], first, "rotation made a new key");
    assert_eq!(kids[1], first, "the old key stays published");
    let rotated = provider.token(Flow::ClientCredentials, &resource).await;
    assert_eq!(kid(&rotated), kids[0], "tokens are signed with the new key");
    assert_eq!(rotated["jwks_kids"], json!(kids));
    let user = provider.token(Flow::AuthCode, &resource).await;
    assert_eq!(kid(&user), kids[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_oauth_client_completes_each_flow_against_the_sdk_resource_server() {
    let port = free_port().await;
    let provider = Provider::start(&resource_url(port)).await;
    let server = ResourceServer::start(port, &provider).await;

    let begun = Instant::now();
    let user = provider
        .mcp(&server.url, Flow::AuthCode, "whoami", "{}")
        .await;
    eprintln!(
        "auth-code flow + tools/list + tools/call: {:?}",
        begun.elapsed()
    );
    assert_eq!(
        steps(&user, &server.url, &provider.issuer()),
        AUTH_CODE_STEPS
    );
    assert_eq!(user["tools"], json!(["add", "whoami"]));
    assert_eq!(call_text(&user), format!("{ACCOUNT} {}", kid(&user)));
    assert_token_for(&user, &provider, &server.url, ACCOUNT);

    let begun = Instant::now();
    let service = provider
        .mcp(&server.url, Flow::ClientCredentials, "whoami", "{}")
        .await;
    eprintln!("client-credentials flow + tools: {:?}", begun.elapsed());
    assert_eq!(
        steps(&service, &server.url, &provider.issuer()),
        CLIENT_CREDENTIALS_STEPS
    );
    assert_eq!(
        call_text(&service),
        format!("{SERVICE_CLIENT} {}", kid(&user))
    );

    let kids = provider.rotate().await;
    let rotated = provider
        .mcp(&server.url, Flow::ClientCredentials, "whoami", "{}")
        .await;
    assert_eq!(kid(&rotated), kids[0]);
    assert_eq!(
        call_text(&rotated),
        format!("{SERVICE_CLIENT} {}", kids[0]),
        "the running resource server verified a token of the new key"
    );
}

/// A gateway on `port` in front of the fixture, its `[server.oauth]` trusting `provider`;
/// `jwks_url` absent: discovered from the issuer. It announces [`SCOPE`] in its metadata, which
/// the client then asks for (without it the client asks for the provider's `scopes_supported`,
/// `openid` among them, which the client-credentials grant refuses).
fn gateway_config(port: u16, provider: &Provider, jwks_url: Option<&str>) -> String {
    let resource = resource_url(port);
    let issuer = provider.issuer();
    let url = jwks_url.map_or_else(String::new, |url| format!("url = {url:?}\n"));
    let ca = provider.ca();
    format!(
        "[server.oauth]\n{url}expected_issuer = {issuer:?}\nexpected_audience = {resource:?}\n\
         scopes_supported = [{SCOPE:?}]\n\n\
         [server.oauth.protected_resource]\nresource = {resource:?}\nauthorization_servers = [{issuer:?}]\n\n\
         [server.oauth.tls]\nroot_ca_cert_path = {ca:?}\n\n\
         [mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    )
}

/// The gateway on `port` with `jwks_url` (see [`gateway_config`]), and its provider.
async fn gateway(jwks_url: impl Fn(&Provider) -> Option<String>) -> (Provider, Serving) {
    let port = free_port().await;
    let provider = Provider::start(&resource_url(port)).await;
    let config = gateway_config(port, &provider, jwks_url(&provider).as_deref());
    let serving = Serving::start_on(port, &config).await;
    (provider, serving)
}

const ECHO: &str = r#"{"message": "through the front door"}"#;

/// The gateway's refusal of a request without a token, and its RFC 9728 metadata at the
/// path-inserted and the root form.
async fn assert_challenge_and_metadata(provider: &Provider, serving: &Serving) {
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, headers, _) =
        raw(Method::POST, &serving.url(), mcp_headers(None), Some(&ping)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", serving.logs());
    let metadata_url = metadata_url(serving);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let root = format!("{}/.well-known/oauth-protected-resource", serving.base());
    for url in [metadata_url, root] {
        let (status, _, body) = raw(Method::GET, &url, HeaderMap::new(), None).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        let metadata: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(metadata["resource"], serving.url(), "{url}: {metadata}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([provider.issuer()]),
            "{url}"
        );
    }
}

/// The RFC 9728 metadata URL for the gateway's `/mcp` (the path-inserted form).
fn metadata_url(serving: &Serving) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        serving.base()
    )
}

/// Checks a run of the Python client through the gateway: the flow's steps from the first 401
/// to the tools (the metadata found through `resource_metadata`), the echo, the token's claims.
fn assert_gateway_run(run: &Value, flow: Flow, provider: &Provider, serving: &Serving) {
    let (expected, subject) = match flow {
        Flow::AuthCode => (AUTH_CODE_STEPS, ACCOUNT),
        Flow::ClientCredentials => (CLIENT_CREDENTIALS_STEPS, SERVICE_CLIENT),
    };
    assert_eq!(
        steps(run, &serving.url(), &provider.issuer()),
        expected,
        "{run:#}"
    );
    assert_eq!(
        run["requests"][1]["url"],
        metadata_url(serving),
        "the client followed resource_metadata"
    );
    let tools = run["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("fx__echo")), "{run:#}");
    assert_eq!(call_text(run), "through the front door");
    assert_token_for(run, provider, &serving.url(), subject);
}

/// One timed run of the Python client through the gateway by `flow`, checked.
async fn through_gateway(provider: &Provider, serving: &Serving, flow: Flow) -> Value {
    let begun = Instant::now();
    let run = provider.mcp(&serving.url(), flow, "fx__echo", ECHO).await;
    eprintln!(
        "gateway: {flow:?} flow + tools/list + tools/call: {:?}",
        begun.elapsed()
    );
    assert_gateway_run(&run, flow, provider, serving);
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_oauth_python_client_auth_code_flow_with_a_configured_jwks_url() {
    let (provider, serving) = gateway(|provider| Some(provider.jwks_uri())).await;
    assert_challenge_and_metadata(&provider, &serving).await;
    through_gateway(&provider, &serving, Flow::AuthCode).await;
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_oauth_discovers_the_jwks_from_the_issuer_for_both_flows() {
    let (provider, serving) = gateway(|_| None).await;
    assert_challenge_and_metadata(&provider, &serving).await;
    through_gateway(&provider, &serving, Flow::AuthCode).await;
    through_gateway(&provider, &serving, Flow::ClientCredentials).await;
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_oauth_follows_a_key_rotation_at_the_provider_without_restart() {
    let (provider, serving) = gateway(|provider| Some(provider.jwks_uri())).await;
    let pid = serving.pid();
    let before = through_gateway(&provider, &serving, Flow::ClientCredentials).await;

    let kids = provider.rotate().await;
    assert_ne!(kids[0], kid(&before));
    // The gateway re-reads the JWKS when a token names an unknown kid; only such re-reads are
    // rate-limited (not the fetch at start), so the first token of the new key goes through.
    let rotated = Instant::now();
    let after = provider
        .try_mcp(&serving.url(), Flow::ClientCredentials, "fx__echo", ECHO)
        .await;
    assert!(
        after.get("fatal").is_none(),
        "a token of the new key refused right after the rotation: {after:#}{}",
        serving.logs()
    );
    eprintln!(
        "gateway: new key accepted {:?} after the rotation",
        rotated.elapsed()
    );
    assert_eq!(kid(&after), kids[0], "signed with the new key");
    assert_gateway_run(&after, Flow::ClientCredentials, &provider, &serving);
    assert_eq!(serving.pid(), pid, "the same gateway process");
    serving.stop().await;
}
