//! Connections that never finish their headers or bodies, connections that idle, and more
//! connections than the gateway can hold: each closed or refused within its configured bound,
//! while another client is still served.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{health_request, http1, read_until_closed, status_kib};
use crate::cli::Serving;
use crate::support::{Gateway, RawSession};

/// Added to every configured timeout: scheduling on two shared cores, not the bound itself.
const SLACK: Duration = Duration::from_secs(3);

fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_and_silent_connections_close_within_the_header_read_timeout() {
    let serving = Serving::start("[server.limits]\nheader_read_timeout = \"1s\"\n").await;
    let address = address(&serving.base);
    let before = status_kib(serving.pid(), "VmRSS");
    let started = Instant::now();
    let attackers = (0..200).map(|n| {
        let address = address.clone();
        async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            match n % 4 {
                // Nothing at all, or the start of an HTTP/2 preface: before hyper's own timer.
                0 => {}
                1 => stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
                // A head that never ends, a header byte every 200 ms.
                _ => {
                    stream
                        .write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
                        .await
                        .unwrap();
                    for _ in 0..40 {
                        if stream.write_all(b"a").await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            read_until_closed(&mut stream, started, Duration::from_secs(1) + SLACK).await
        }
    });
    let attack = tokio::spawn(join_all(attackers));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = Instant::now();
    assert_eq!(http1(&address, health_request()).await.0, 200);
    let health_took = served.elapsed();
    let closed = attack.await.unwrap();
    let slowest = closed.iter().map(|(_, after)| *after).max().unwrap();
    let peak = status_kib(serving.pid(), "VmHWM");
    println!(
        "slowloris: 200 connections closed by {slowest:?}; /health took {health_took:?}; RSS {before} KiB before, peak {peak} KiB"
    );
    assert!(
        health_took < SLACK,
        "/health took {health_took:?} during the attack"
    );
    assert!(peak < 80 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_are_dropped_within_the_body_read_timeout_and_sizes_are_capped() {
    const MAX: usize = 4 * 1024 * 1024;
    let serving = Serving::start(&format!(
        "[server.limits]\nbody_read_timeout = \"1s\"\nmax_request_body = {MAX}\n"
    ))
    .await;
    let address = address(&serving.base);
    let before = status_kib(serving.pid(), "VmRSS");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {MAX}\r\n\r\n"
    );
    let almost = vec![b' '; MAX - 1];
    let stalls = (0..20).map(|_| {
        let (address, head, almost) = (address.clone(), head.clone(), almost.clone());
        async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&almost).await.unwrap();
            let stalled = Instant::now();
            let (answer, after) =
                read_until_closed(&mut stream, stalled, Duration::from_secs(1) + SLACK).await;
            (String::from_utf8_lossy(&answer).into_owned(), after)
        }
    });
    let answers = join_all(stalls).await;
    let peak = status_kib(serving.pid(), "VmHWM");
    for (answer, _) in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_read_timeout"), "{answer}");
    }
    let slowest = answers.iter().map(|(_, after)| *after).max().unwrap();
    println!(
        "stalled bodies: 20 x {} bytes closed by {slowest:?} after the stall; RSS {before} KiB before, peak {peak} KiB",
        MAX - 1
    );
    // 20 bodies of 4 MiB in flight at once, plus the process itself.
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");

    let declared = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        MAX + 1
    );
    let (status, body) = http1(&address, &declared).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_request_body"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_connection_cap_clients_are_refused_cleanly_and_then_served() {
    let config = "[server.limits]\nmax_connections = 1000\nheader_read_timeout = \"2s\"\n";
    let serving = Serving::start_under(&["prlimit", "--nofile=128:128", "--"], config).await;
    let address = address(&serving.base);
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    let refused_at = Instant::now();
    let (status, body) = http1(&address, health_request()).await;
    assert_eq!(status, 503, "at the cap a new client is refused: {body}");
    assert!(body.contains("max_connections"), "{body}");
    let refused_idle = join_all(
        idle.iter_mut()
            .map(|stream| read_until_closed(stream, refused_at, Duration::from_secs(2) + SLACK)),
    )
    .await
    .iter()
    .filter(|(answer, _)| answer.starts_with(b"HTTP/1.1 503"))
    .count();
    let (status, _) = http1(&address, health_request()).await;
    assert_eq!(
        status, 200,
        "once idle connections are closed, clients are served"
    );
    let logs = serving.logs();
    println!("connection cap: {refused_idle} of 150 idle connections refused with 503");
    assert!(
        (150 - 64..150).contains(&refused_idle),
        "half of 128 descriptors admitted: {refused_idle} refused"
    );
    assert!(
        logs.contains("max_connections lowered to half the open-file limit"),
        "{logs}"
    );
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(
        logs.matches("connection cap reached").count() <= 3,
        "the cap is logged once per episode: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_closes_but_a_long_stream_stays_open() {
    let toml = "[server.limits]\nidle_timeout = \"1s\"\nheader_read_timeout = \"1s\"\n";
    let gateway = Gateway::start_unconnected(toml).await;
    let stream = TcpStream::connect(address(&gateway.base)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let closed = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    let request = http::Request::get(format!("{}/health", gateway.base))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let answered = Instant::now();

    let session = RawSession::open(&gateway.url).await;
    let mut stream = session.notifications().await;
    assert!(
        stream
            .next_message_within(Duration::from_secs(3))
            .await
            .is_none(),
        "no notification expected; the stream must stay open past idle_timeout"
    );
    let closed = tokio::time::timeout(SLACK, closed)
        .await
        .expect("an idle HTTP/2 connection must be closed")
        .unwrap();
    let idle_for = closed - answered;
    println!("idle HTTP/2 connection closed {idle_for:?} after its last answer");
    assert!(idle_for >= Duration::from_millis(900), "{idle_for:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_received_at_once_share_one_budget() {
    const MAX: usize = 4 * 1024 * 1024;
    let serving = Serving::start(&format!(
        "[server.limits]\nbody_read_timeout = \"2s\"\nmax_request_body = {MAX}\nmax_request_bodies_total = {}\n",
        2 * MAX
    ))
    .await;
    let address = address(&serving.base);
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {MAX}\r\n\r\n"
    );
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b' '; MAX - 1]).await.unwrap();
        stalled.push(stream);
    }
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
    .to_string();
    let small = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{init}",
        init.len()
    );
    // Wait until both stalled bodies hold their share: then a third body is refused.
    let refused = crate::support::wait_for("the budget to fill", || async {
        let (status, body) = http1(&address, &small).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(refused.contains("max_request_bodies_total"), "{refused}");
    for stream in &mut stalled {
        let (answer, _) =
            read_until_closed(stream, Instant::now(), Duration::from_secs(2) + SLACK).await;
        assert!(answer.starts_with(b"HTTP/1.1 408"));
    }
    let (status, body) = http1(&address, &small).await;
    assert_eq!(status, 200, "the budget is given back: {body}");
}
