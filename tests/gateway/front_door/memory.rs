//! A flood of requests from distinct forwarded addresses: the per-IP quota forgets addresses
//! whose quota is whole again, so memory follows the addresses of the last interval, not every
//! address ever seen.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cli::Serving;
use crate::hostile_client::status_kib;

const ADDRESSES: u32 = 300_000;
const CLIENTS: u32 = 16;
/// Bound on the flood, so a slow machine fails instead of hanging.
const FLOOD_LIMIT: Duration = Duration::from_secs(300);

/// Sends `count` GETs, each from its own forwarded address starting at `first`.
async fn flood(url: String, first: u32, count: u32, started: Instant) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    for n in first..first + count {
        assert!(
            started.elapsed() < FLOOD_LIMIT,
            "flood not done after {FLOOD_LIMIT:?}"
        );
        // 10.0.0.0/8 and beyond: distinct addresses, never dialled (only written in a header).
        let address = std::net::Ipv4Addr::from(0x0a00_0000 + n);
        let request = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header("host", "127.0.0.1")
            .header("x-forwarded-for", address.to_string())
            .body(Full::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(
            response.status(),
            http::StatusCode::BAD_REQUEST,
            "a GET without a session"
        );
        response.into_body().collect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_forwarded_addresses_keeps_memory_bounded() {
    let config = "[server.client_ip]\nx_forwarded_for_trusted_hops = 0\n\
        [server.rate_limits]\nenabled = true\nper_ip = { limit = 100, interval = \"1s\" }\n";
    let serving = Serving::start(config).await;
    let pid = serving.pid();
    flood(serving.url(), 0, 1000, Instant::now()).await;
    let before = status_kib(pid, "VmRSS");
    let started = Instant::now();
    let per_client = ADDRESSES / CLIENTS;
    let floods: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(flood(
                serving.url(),
                1000 + n * per_client,
                per_client,
                started,
            ))
        })
        .collect();
    for flood in floods {
        flood.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (after, peak) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    println!(
        "per_ip flood: {ADDRESSES} addresses in {elapsed:?}: RSS {before} KiB before, {after} KiB after, peak {peak} KiB"
    );
    // Measured (debug build, 25-45 s floods): peak +2 to 8 MiB with forgetting (the faster the
    // flood, the more addresses fall within one interval), +29 MiB without (every address kept).
    let ceiling = before + 16 * 1024;
    assert!(
        peak < ceiling,
        "peak RSS {peak} KiB, more than {ceiling} KiB"
    );
}
