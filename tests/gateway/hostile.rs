//! One bad downstream must never take the gateway or another server down. Each test runs the
//! real `nexus` binary with two servers: `bad` (`tests/servers/hostile_server.py`, whose tools
//! are attacks) and `fx` (the fixture, a bystander), then attacks through `bad` while `fx` is
//! called in a loop. It asserts the gateway's peak RSS (`VmHWM`) stays under a stated ceiling,
//! that every bystander call answers within [`BYSTANDER_CEILING`], and what the attacking
//! calls get back. The figures measured are printed (`--nocapture`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::Serving;
use crate::support::{RawSession, Server, fixture_stdio_cmd, raw, toml_array, tools, wait_for};
use serde_json::{Value, json};

/// The slowest a bystander call may be while an attack runs (a generous "stays responsive").
const BYSTANDER_CEILING: Duration = Duration::from_secs(3);

fn hostile_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/hostile_server.py")
}

/// `cmd = [...]` for the hostile server over stdio.
fn hostile_stdio_cmd() -> String {
    let (python, script) = (tools().join("bin/python"), hostile_script());
    toml_array(&[python.to_str().unwrap(), script.to_str().unwrap(), "stdio"])
}

/// A configuration with the bystander `fx` and `bad`, whose table gets `bad` (e.g. its
/// `cmd` or `url`, and limits).
fn config(bad: &str) -> String {
    format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n[mcp.servers.bad]\n{bad}\n",
        fixture_stdio_cmd(&[])
    )
}

/// The peak resident set of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM value");
    kib / 1024
}

/// Runs `attack` while `fx__echo` is called in a loop (on a task of its own); returns the
/// attack's output after checking every bystander call answered correctly within
/// [`BYSTANDER_CEILING`].
async fn with_bystander<T>(gateway: &Serving, attack: impl Future<Output = T>) -> T {
    let bystander = RawSession::open(&gateway.url()).await;
    let done = tokio_util::sync::CancellationToken::new();
    let calling = tokio::spawn({
        let done = done.clone();
        async move {
            let (mut calls, mut slowest) = (0, Duration::ZERO);
            while !done.is_cancelled() {
                let started = Instant::now();
                let response = bystander
                    .call(1, "fx__echo", json!({"message": "still here"}))
                    .await;
                assert_eq!(
                    response["result"]["content"][0]["text"], "still here",
                    "{response}"
                );
                slowest = slowest.max(started.elapsed());
                calls += 1;
            }
            (calls, slowest)
        }
    });
    let output = attack.await;
    done.cancel();
    let (calls, slowest) = calling.await.expect("the bystander failed");
    println!("bystander: {calls} calls during the attack, slowest {slowest:?}");
    assert!(calls > 0, "no bystander call completed");
    assert!(
        slowest < BYSTANDER_CEILING,
        "a bystander call took {slowest:?}"
    );
    output
}

/// Asserts the gateway's peak RSS is under `ceiling_mib`, and prints it.
fn assert_peak_rss(gateway: &Serving, attack: &str, ceiling_mib: u64) {
    let peak = peak_rss_mib(gateway.pid());
    println!("{attack}: gateway peak RSS {peak} MiB (ceiling {ceiling_mib} MiB)");
    assert!(
        peak < ceiling_mib,
        "{attack}: the gateway's peak RSS is {peak} MiB{}",
        gateway.logs()
    );
}

/// The text of a tool call that must succeed.
async fn text_of(session: &RawSession, name: &str, arguments: Value) -> String {
    let response = session.call(1, name, arguments).await;
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} failed: {response}"))
        .to_owned()
}

/// The error message of a tool call that must fail.
async fn error_of(session: &RawSession, name: &str, arguments: Value) -> String {
    let response = session.call(1, name, arguments).await;
    response["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} did not fail: {response}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_changed_flood_is_coalesced_rate_limited_and_bounded() {
    let gateway = Serving::start(&config(&format!("cmd = {}", hostile_stdio_cmd()))).await;
    let session = RawSession::open(&gateway.url()).await;
    let flood = 1_000_000;
    let started = Instant::now();
    with_bystander(&gateway, async {
        text_of(&session, "bad__flood", json!({"count": flood})).await;
        // The flood is over once the gateway has read it: `stats` answers behind it.
        wait_for("the flood is read", || async {
            let metrics = raw(
                http::Method::GET,
                &format!("{}/metrics", gateway.base()),
                http::HeaderMap::new(),
                None,
            )
            .await
            .2;
            let metrics = String::from_utf8_lossy(&metrics).into_owned();
            let dropped = metrics
                .lines()
                .find(|line| {
                    line.starts_with(
                        "nexus_downstream_dropped_total{server=\"bad\",reason=\"rate_limited\"}",
                    )
                })
                .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            (dropped >= flood - 100_000).then_some(())
        })
        .await;
    })
    .await;
    // Coalesced: once the flood is read, the refreshes stop (at most one was pending).
    let stats = || async {
        let text = text_of(&session, "bad__stats", json!({})).await;
        text.parse::<u64>().unwrap()
    };
    let refreshes = wait_for("the refreshes stop after the flood", || async {
        let before = stats().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = stats().await;
        (before == after).then_some(after)
    })
    .await;
    println!("list flood: {flood} notifications, {refreshes} tools/list refreshes");
    assert_peak_rss(&gateway, "list_changed flood", 120);
    let logs = gateway.logs();
    // The first drop is logged, then at most one line per 30 s, not one per message.
    let warnings = logs.matches("notifications_per_second").count() as u64;
    let allowed = 1 + started.elapsed().as_secs() / 30;
    assert!(
        (1..=allowed).contains(&warnings),
        "{warnings} log lines about the rate:{logs}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_stdio_line_is_discarded_and_fails_only_its_call() {
    let gateway = Serving::start(&config(&format!("cmd = {}", hostile_stdio_cmd()))).await;
    let session = RawSession::open(&gateway.url()).await;
    let error = with_bystander(&gateway, async {
        error_of(&session, "bad__huge_line", json!({"mb": 400})).await
    })
    .await;
    assert!(
        error.contains("larger than 16777216 bytes") && error.contains("`max_message_size`"),
        "{error}"
    );
    assert_eq!(text_of(&session, "bad__stats", json!({})).await, "1");
    assert_peak_rss(&gateway, "400 MiB stdio line", 150);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_that_are_not_utf8_are_skipped_and_logged_once() {
    let gateway = Serving::start(&config(&format!("cmd = {}", hostile_stdio_cmd()))).await;
    let session = RawSession::open(&gateway.url()).await;
    for _ in 0..3 {
        assert_eq!(
            text_of(&session, "bad__garbage", json!({})).await,
            "after garbage"
        );
    }
    let logs = gateway.logs();
    assert_eq!(logs.matches("not JSON-RPC").count(), 1, "{logs}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_that_stops_reading_holds_a_bounded_queue_that_timed_out_calls_leave() {
    let bad = format!(
        "cmd = {}\ncall_timeout = \"500ms\"\nlimits = {{ max_stdin_queue = \"8MiB\" }}",
        hostile_stdio_cmd()
    );
    let gateway = Serving::start(&config(&bad)).await;
    let session = RawSession::open(&gateway.url()).await;
    text_of(&session, "bad__stop_reading", json!({})).await;
    let pad = "x".repeat(7 << 20);
    let errors = with_bystander(&gateway, async {
        let mut errors = Vec::new();
        // Two at a time: the front end's parsing of 7 MiB bodies is not what is tested here.
        for _ in 0..30 {
            let calls = (0..2).map(|_| error_of(&session, "bad__stats", json!({"pad": pad})));
            errors.extend(futures_util::future::join_all(calls).await);
        }
        errors
    })
    .await;
    let refused = errors
        .iter()
        .filter(|e| e.contains("`max_stdin_queue`"))
        .count();
    let timed_out = errors
        .iter()
        .filter(|e| e.contains("did not answer"))
        .count();
    println!("stuck child: 60 calls of 7 MiB, {refused} refused at once, {timed_out} timed out");
    assert!(refused > 0, "a full queue refuses calls: {errors:?}");
    assert!(
        timed_out > 2,
        "timed-out calls leave the queue, so later calls are queued again: {errors:?}"
    );
    assert_peak_rss(&gateway, "child not reading stdin, 60 x 7 MiB calls", 300);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_children_get_a_clean_environment_unless_they_inherit() {
    let inherit = format!(
        "[mcp.servers.heir]\ncmd = {}\ninherit_env = true\n",
        hostile_stdio_cmd()
    );
    let toml = config(&format!(
        "cmd = {}\nenv = {{ ADDED = \"yes\" }}\n{inherit}",
        hostile_stdio_cmd()
    ));
    let secret = ("NEXUS_TEST_SECRET", "hunter2");
    let gateway = Serving::start_with_env(&toml, &[secret]).await;
    let session = RawSession::open(&gateway.url()).await;
    let env = |server: &'static str, name: &'static str| {
        let session = &session;
        async move {
            text_of(
                session,
                &format!("{server}__get_env"),
                json!({"name": name}),
            )
            .await
        }
    };
    assert_eq!(env("bad", "NEXUS_TEST_SECRET").await, "(unset)");
    assert_eq!(env("bad", "ADDED").await, "yes");
    assert_eq!(env("bad", "PATH").await, std::env::var("PATH").unwrap());
    assert_eq!(env("heir", "NEXUS_TEST_SECRET").await, "hunter2");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_http_bodies_and_sse_events_fail_only_their_call() {
    let hostile = Server::python_script_http("tests/servers/hostile_server.py", &["http"]).await;
    let gateway = Serving::start(&config(&format!("url = \"{}\"", hostile.url()))).await;
    let session = RawSession::open(&gateway.url()).await;
    let errors = with_bystander(&gateway, async {
        let body = error_of(&session, "bad__huge_body", json!({"mb": 400})).await;
        let event = error_of(&session, "bad__huge_event", json!({"mb": 400})).await;
        [body, event]
    })
    .await;
    for error in errors {
        assert!(error.contains("`max_message_size`"), "{error}");
    }
    assert_peak_rss(&gateway, "400 MiB HTTP body and SSE event", 200);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_body_is_relayed_sanitized_and_without_our_token() {
    let hostile = Server::python_script_http("tests/servers/hostile_server.py", &["http"]).await;
    let bad = format!(
        "url = \"{}\"\nauth = {{ token = \"{{{{ env.BAD_TOKEN }}}}\" }}",
        hostile.url()
    );
    let token = "tok-SECRET-4711";
    let gateway = Serving::start_with_env(&config(&bad), &[("BAD_TOKEN", token)]).await;
    let session = RawSession::open(&gateway.url()).await;
    let error = error_of(&session, "bad__echo_auth", json!({})).await;
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("invalid credentials"), "{error}");
    assert!(!error.contains("SECRET"), "{error}");
    assert!(
        !error.contains('\x1b') && !error.contains('\n'),
        "{error:?}"
    );
    assert!(!gateway.logs().contains("SECRET"), "{}", gateway.logs());
    gateway.stop().await;
}
