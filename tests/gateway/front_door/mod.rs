//! The front door's limits and audit trail, with the gateway in-process: `[server.rate_limits]`
//! per address (`[server.client_ip]` with `X-Forwarded-For` from loopback), per client
//! certificate and global; per-caller server and tool quotas; sessions per identity and
//! streams per session; the audit file after known traffic; memory under a flood of addresses.

mod audit;
mod memory;
mod rate_limits;
mod sessions;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use serde_json::{Value, json};

use crate::pki::TestPki;
use crate::support::{WAIT, mcp_headers};

/// `[server.tls]` with client certificates required from the test CA.
pub fn mtls_server(pki: &TestPki) -> String {
    let path = |name: &str| pki.path(name).display().to_string();
    format!(
        "[server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nclient_ca_cert_path = \"{}\"\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    )
}

/// A client presenting one of the test PKI's client certificates (`client-ec`, `client-b`):
/// one connection per request, so nothing but the certificate ties requests together.
pub struct CertClient {
    connector: SslConnector,
    /// `127.0.0.1:PORT` of the gateway.
    address: String,
}

impl CertClient {
    /// `name`'s certificate against the gateway at `url` (its `http://` base is replaced).
    pub fn new(pki: &TestPki, name: &str, url: &str) -> Self {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_ca_file(pki.path("chain-bundle.pem")).unwrap();
        builder
            .set_certificate_chain_file(pki.path(&format!("{name}.pem")))
            .unwrap();
        builder
            .set_private_key_file(pki.path(&format!("{name}.key")), SslFiletype::PEM)
            .unwrap();
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_owned();
        Self {
            connector: builder.build(),
            address,
        }
    }

    /// One POST of `message` to `/mcp`.
    pub async fn post(
        &self,
        headers: HeaderMap,
        message: &Value,
    ) -> (StatusCode, HeaderMap, Value) {
        self.request(Method::POST, "/mcp", headers, Some(message))
            .await
    }

    /// Waits until the gateway's `/health` says `count` downstreams are connected.
    pub async fn wait_connected(&self, count: u64) {
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost".parse().unwrap());
        crate::support::wait_for("downstreams connected over HTTPS", || {
            let headers = headers.clone();
            async move {
                let (_, _, health) = self.request(Method::GET, "/health", headers, None).await;
                (health["downstreams"]["connected"] == count).then_some(())
            }
        })
        .await;
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        message: Option<&Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let tcp = tokio::net::TcpStream::connect(&self.address).await.unwrap();
        let ssl = self
            .connector
            .configure()
            .unwrap()
            .into_ssl("localhost")
            .unwrap();
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut tls).connect().await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let body = message.map(|message| Bytes::from(message.to_string()));
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body.unwrap_or_default()))
            .unwrap();
        *request.headers_mut() = headers;
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .expect("HTTPS timeout")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (parts.status, parts.headers, value)
    }

    /// `initialize`: the status, and the session id when one was opened.
    pub async fn initialize(&self) -> (StatusCode, Option<String>, Value) {
        let (status, headers, body) = self.post(mcp_headers(None), &initialize()).await;
        let session = headers
            .get("mcp-session-id")
            .map(|id| id.to_str().unwrap().to_owned());
        (status, session, body)
    }

    /// `tools/call` in `session`.
    pub async fn call(&self, session: &str, name: &str, arguments: Value) -> (StatusCode, Value) {
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}});
        let (status, _, body) = self.post(mcp_headers(Some(session)), &message).await;
        (status, body)
    }
}

/// A 2025-11-25 `initialize` request.
pub fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "front-door", "version": "1"}}})
}

/// Asserts a front-door refusal: 429, `Retry-After` in whole seconds within `1..=max`, and a
/// JSON-RPC error naming `limit`. Returns the `Retry-After` seconds.
pub fn assert_limited(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    limit: &str,
    max: u64,
) -> u64 {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=max).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(body["error"]["code"], -32029, "{body}");
    assert_eq!(body["error"]["data"]["limit"], limit, "{body}");
    assert_eq!(
        body["error"]["data"]["retryAfterSeconds"], retry_after,
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("[{limit}]")), "{message}");
    retry_after
}

/// Sleeps `interval` and a little more: the quota is whole again after it.
pub async fn wait_out(interval: Duration) {
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
}
