//! `[server.limits] max_sessions_per_identity` and `max_streams_per_session`.

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{CertClient, mtls_server};
use crate::pki::TestPki;
use crate::support::{Gateway, RawSession, WAIT, mcp_headers, raw, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_opens_at_most_its_share_of_sessions() {
    let pki = TestPki::generate();
    let toml = format!(
        "{}[server.limits]\nmax_sessions_per_identity = 2\n",
        mtls_server(&pki)
    );
    let gateway = Gateway::start_unconnected(&toml).await;
    let alice = CertClient::new(&pki, "client-ec", &gateway.url);
    for _ in 0..2 {
        assert_eq!(alice.initialize().await.0, StatusCode::OK);
    }
    let (status, session, body) = alice.initialize().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(session.is_none());
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_sessions_per_identity") && message.contains("holds 2 sessions"),
        "{message}"
    );
    let bob = CertClient::new(&pki, "client-b", &gateway.url);
    assert_eq!(
        bob.initialize().await.0,
        StatusCode::OK,
        "another identity has its own share"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_holds_at_most_its_streams_and_a_closed_one_frees_its_place() {
    let toml = "[server.limits]\nmax_streams_per_session = 2\n";
    let gateway = Gateway::start_unconnected(toml).await;
    let session = RawSession::open(&gateway.url).await;
    let first = session.notifications().await;
    let _second = session.notifications().await;
    let mut headers = mcp_headers(Some(&session.id));
    headers.insert("accept", "text/event-stream".parse().unwrap());
    let (status, _, body) = raw(Method::GET, &gateway.url, headers.clone(), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_streams_per_session") && message.contains("2 GET streams"),
        "{message}"
    );

    let other = RawSession::open(&gateway.url).await;
    let _elsewhere = other.notifications().await;

    drop(first);
    wait_for("a GET stream after one closed", || async {
        (stream_status(&gateway.url, headers.clone()).await == StatusCode::OK).then_some(())
    })
    .await;
    gateway.stop().await;
}

/// The status of a GET stream, which is then closed.
async fn stream_status(url: &str, headers: http::HeaderMap) -> StatusCode {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::get(url).body(Full::default()).unwrap();
    *request.headers_mut() = headers;
    tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("GET timeout")
        .unwrap()
        .status()
}
