//! The gateway against the in-repo fixture server when things go wrong or get big: paginated
//! lists, list changes, children that crash or are killed, servers that start late or answer
//! slowly, many calls at once, rate limits, and what must pass through untouched.

use serde_json::{Value, json};

use crate::support::{
    Gateway, RawSession, Server, error, fixture_program, fixture_stdio_cmd, names, ok,
    python_client, text, toml_array, wait_for, wait_for_port,
};

/// `[mcp.servers.fx]` over stdio with extra fixture options, direct tool mode.
fn stdio_fx(extra: &[&str]) -> String {
    format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(extra)
    )
}

/// `[mcp.servers.fx]` over HTTP, direct tool mode.
fn http_fx(server: &Server) -> String {
    format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\nurl = \"{}\"\n",
        server.url()
    )
}

/// The `fx__*` names a fixture with `generated` extra tools lists.
fn fixture_tool_names(generated: usize) -> Vec<String> {
    let builtin = [
        "echo",
        "sleep",
        "inflight_max",
        "progress",
        "add_tool",
        "crash",
        "fail",
        "get_env",
        "pid",
    ];
    builtin
        .iter()
        .map(|name| format!("fx__{name}"))
        .chain((0..generated).map(|i| format!("fx__tool_{i}")))
        .collect()
}

async fn every_page_is_listed(toml: &str) {
    let gateway = Gateway::start(toml, 1).await;
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "fx__tool_24", "arguments": {"value": "last page"}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    assert_eq!(names(ok(&run, 0), "tools"), fixture_tool_names(25));
    assert_eq!(text(ok(&run, 1)), "tool_24 last page");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_tools_is_listed_over_stdio() {
    every_page_is_listed(&stdio_fx(&["--tools", "25", "--page-size", "4"])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_tools_is_listed_over_http() {
    let fixture = Server::fixture_http(&["--tools", "25", "--page-size", "4"], true).await;
    every_page_is_listed(&http_fx(&fixture)).await;
}

async fn list_changed_round_trip(toml: &str) {
    let gateway = Gateway::start(toml, 1).await;
    let steps = json!([
        {"op": "call_tool", "name": "fx__add_tool", "arguments": {"name": "fresh"}},
        {"op": "wait_tools_changed", "timeout": 20},
        {"op": "list_tools"},
        {"op": "call_tool", "name": "fx__fresh", "arguments": {}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    assert_eq!(text(ok(&run, 0)), "added fresh");
    assert_eq!(ok(&run, 1), &json!(true), "{run:#}");
    assert!(
        names(ok(&run, 2), "tools").contains(&"fx__fresh".to_owned()),
        "{run:#}"
    );
    assert_eq!(text(ok(&run, 3)), "fresh ");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tool_is_announced_listed_and_callable_over_stdio() {
    list_changed_round_trip(&stdio_fx(&[])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tool_is_announced_listed_and_callable_over_http() {
    let fixture = Server::fixture_http(&[], true).await;
    list_changed_round_trip(&http_fx(&fixture)).await;
}

/// The fixture's pid, once the gateway can reach it; `not` skips a pid (the child before a restart).
async fn fixture_pid(session: &RawSession, not: Option<u32>) -> u32 {
    wait_for("the fixture answers `pid` (after a restart)", || async {
        let response = session.call(1, "fx__pid", json!({})).await;
        let pid: u32 = text(response.get("result")?).parse().unwrap();
        (Some(pid) != not).then_some(pid)
    })
    .await
}

/// After a child died: the gateway restarts it and calls work again.
async fn assert_restarted(session: &RawSession, old_pid: u32) {
    let new_pid = fixture_pid(session, Some(old_pid)).await;
    assert_ne!(new_pid, old_pid);
    assert_eq!(
        session
            .call_text("fx__echo", json!({"message": "back"}))
            .await,
        "back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_that_crashes_mid_call_is_named_and_restarted() {
    let gateway = Gateway::start(&stdio_fx(&[]), 1).await;
    let session = RawSession::open(&gateway.url).await;
    let pid = fixture_pid(&session, None).await;
    let response = session.call(2, "fx__crash", json!({})).await;
    let message = response["error"]["message"].as_str().unwrap_or_else(|| {
        panic!("a crash must answer with an error: {response}");
    });
    assert!(message.contains("server 'fx'"), "{message}");
    assert!(message.contains("exited"), "{message}");
    assert_restarted(&session, pid).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_killed_during_a_call_fails_that_call_and_is_restarted() {
    let gateway = Gateway::start(&stdio_fx(&[]), 1).await;
    let session = RawSession::open(&gateway.url).await;
    let pid = fixture_pid(&session, None).await;
    let sleeper = RawSession::open(&gateway.url).await;
    let call =
        tokio::spawn(async move { sleeper.call(7, "fx__sleep", json!({"ms": 60_000})).await });
    wait_for("the sleep call runs in the fixture", || async {
        let running = session.call_text("fx__inflight_max", json!({})).await;
        (running != "0").then_some(())
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The call would sleep for a minute: an answer within WAIT means the death was noticed.
    let response = tokio::time::timeout(crate::support::WAIT, call)
        .await
        .expect("the in-flight call was not failed when its server died")
        .unwrap();
    let message = response["error"]["message"].as_str().unwrap_or_else(|| {
        panic!("a killed server must fail the call: {response}");
    });
    assert!(message.contains("server 'fx'"), "{message}");
    assert!(message.contains("SIGKILL"), "{message}");
    assert_restarted(&session, pid).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_starts_late_joins_and_is_announced() {
    // `gate` is up from the start; its `sleep` shows when the Python client is connected (and so
    // listening for list changes) before `late` comes up.
    let late_port = crate::support::free_port().await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.late]\nurl = \"http://127.0.0.1:{late_port}/mcp\"\n\
         [mcp.servers.gate]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start_unconnected(&toml).await;
    let health = gateway.health().await;
    assert_eq!(health["downstreams"]["total"], 2);
    assert_eq!(
        health["servers"]["late"]["status"], "connecting",
        "{health}"
    );
    let health = gateway.wait_connected(1).await;
    assert_eq!(
        health["servers"]["late"]["status"], "connecting",
        "{health}"
    );
    assert_eq!(health["servers"]["gate"]["status"], "connected", "{health}");

    let url = gateway.url.clone();
    let client = tokio::spawn(async move {
        let steps = json!([
            {"op": "call_tool", "name": "gate__sleep", "arguments": {"ms": 100}},
            {"op": "list_tools"},
            {"op": "wait_tools_changed", "timeout": 30},
            {"op": "list_tools"},
            {"op": "call_tool", "name": "late__echo", "arguments": {"message": "made it"}},
        ]);
        python_client(&url, steps, &[]).await
    });
    let session = RawSession::open(&gateway.url).await;
    wait_for("the Python client is connected", || async {
        let running = session.call_text("gate__inflight_max", json!({})).await;
        (running != "0").then_some(())
    })
    .await;
    let _late = Server::fixture_http_on(late_port, &["--start-delay-ms", "1500"]);
    let health = gateway.wait_connected(2).await;
    assert_eq!(health["servers"]["late"]["status"], "connected", "{health}");

    let run = client.await.unwrap();
    let before = names(ok(&run, 1), "tools");
    assert!(
        !before.iter().any(|name| name.starts_with("late__")),
        "listed before it started: {run:#}"
    );
    assert_eq!(ok(&run, 2), &json!(true), "{run:#}");
    let after = names(ok(&run, 3), "tools");
    assert!(after.contains(&"late__echo".to_owned()), "{run:#}");
    assert_eq!(text(ok(&run, 4)), "made it");
    gateway.stop().await;
}

/// An HTTP server that goes away and comes back slowly (longer than one retry of its streams):
/// the gateway keeps trying on its own, finds the old session gone (404), starts a new one, and
/// list changes from the new server reach clients before any call went through the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_server_back_after_a_slow_restart_is_rejoined_without_a_call() {
    let port = crate::support::free_port().await;
    let mut first = Server::fixture_http_on(port, &[]);
    wait_for_port(port).await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    );
    let gateway = Gateway::start(&toml, 1).await;
    let url = gateway.url.clone();
    let client = tokio::spawn(async move {
        let steps = json!([
            {"op": "list_tools"},
            {"op": "wait_tools_changed", "timeout": 25},
            {"op": "call_tool", "name": "fx__pid", "arguments": {}},
        ]);
        python_client(&url, steps, &[]).await
    });

    first.child.kill().await.unwrap();
    let second = Server::fixture_http_on(port, &["--start-delay-ms", "2500"]);
    wait_for_port(port).await;
    // A change on the new server reaches the client only once the gateway holds a stream
    // there; repeat it until the client heard one (bounded by the client's own timeout).
    let direct = RawSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    for round in 0.. {
        if client.is_finished() {
            break;
        }
        assert!(round < 200, "the client is still waiting after 200 changes");
        let added = direct
            .call_text("add_tool", json!({"name": format!("fresh{round}")}))
            .await;
        assert_eq!(added, format!("added fresh{round}"));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let run = client.await.unwrap();
    assert_eq!(
        ok(&run, 1),
        &json!(true),
        "no list change reached the client: {run:#}"
    );
    let pid = second.child.id().unwrap().to_string();
    assert_eq!(text(ok(&run, 2)), pid, "{run:#}");
    gateway.stop().await;
}

/// 64 sleeps at once through the gateway to one downstream: the fixture saw all 64 running
/// together (its high-water mark), whatever the clock says.
async fn calls_run_concurrently(toml: &str) {
    const CALLS: u64 = 64;
    let gateway = Gateway::start(toml, 1).await;
    let session = std::sync::Arc::new(RawSession::open(&gateway.url).await);
    let calls: Vec<_> = (0..CALLS)
        .map(|id| {
            let session = session.clone();
            tokio::spawn(async move { session.call(id, "fx__sleep", json!({"ms": 200})).await })
        })
        .collect();
    for call in calls {
        let response = call.await.unwrap();
        assert_eq!(text(&response["result"]), "slept 200", "{response}");
    }
    assert_eq!(
        session.call_text("fx__inflight_max", json!({})).await,
        CALLS.to_string()
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_calls_run_at_once_on_one_stdio_downstream() {
    calls_run_concurrently(&stdio_fx(&[])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_calls_run_at_once_on_one_http_downstream() {
    let fixture = Server::fixture_http(&[], true).await;
    calls_run_concurrently(&http_fx(&fixture)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_server_times_out_without_delaying_another() {
    let toml = format!(
        "[mcp]\ntools = \"direct\"\ncall_timeout = \"1s\"\n\
         [mcp.servers.slow]\ncmd = {cmd}\n[mcp.servers.fast]\ncmd = {cmd}\n",
        cmd = fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&toml, 2).await;
    let session = std::sync::Arc::new(RawSession::open(&gateway.url).await);
    let slow = tokio::spawn({
        let session = session.clone();
        async move { session.call(1, "slow__sleep", json!({"ms": 5000})).await }
    });
    wait_for("the slow call runs", || async {
        let running = session.call_text("slow__inflight_max", json!({})).await;
        (running != "0").then_some(())
    })
    .await;
    let echo = session
        .call(2, "fast__echo", json!({"message": "quick"}))
        .await;
    assert_eq!(text(&echo["result"]), "quick", "{echo}");
    assert!(
        !slow.is_finished(),
        "the slow call ended before the other server's echo"
    );
    let response = slow.await.unwrap();
    let message = response["error"]["message"].as_str().unwrap_or_else(|| {
        panic!("a call past the timeout must fail: {response}");
    });
    assert_eq!(response["error"]["code"], -32001, "{response}");
    assert!(message.contains("server 'slow'"), "{message}");
    assert!(message.contains("within 1s"), "{message}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_unknown_to_the_gateway_survive_the_relay() {
    let gateway = Gateway::start(&stdio_fx(&[]), 1).await;
    let session = RawSession::open(&gateway.url).await;
    let list = session.request("tools/list", json!({})).await;
    let echo = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "fx__echo")
        .unwrap_or_else(|| panic!("no fx__echo in {list}"));
    assert_eq!(echo["x-fixture"], json!({"kept": true}), "{echo}");
    let call = session.call(2, "fx__echo", json!({"message": "m"})).await;
    assert_eq!(call["result"]["x-fixture"], json!({"kept": true}), "{call}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn env_and_cwd_of_a_stdio_server_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    // The shell sets PWD to its real working directory, and the fixture inherits it.
    let program = fixture_program();
    let cmd = toml_array(&[
        "/bin/sh",
        "-c",
        "exec \"$0\" stdio",
        program.to_str().unwrap(),
    ]);
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {cmd}\ncwd = {cwd:?}\n\
         env = {{ FX_GREETING = \"hello from the config\" }}\n",
        cwd = cwd.to_str().unwrap()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let steps = json!([
        {"op": "call_tool", "name": "fx__get_env", "arguments": {"name": "FX_GREETING"}},
        {"op": "call_tool", "name": "fx__get_env", "arguments": {"name": "PWD"}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    assert_eq!(text(ok(&run, 0)), "hello from the config");
    assert_eq!(text(ok(&run, 1)), cwd.to_str().unwrap());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_refuses_the_call_past_it_naming_server_and_limit() {
    let toml = format!(
        "{}[mcp.servers.fx.rate_limits]\nlimit = 2\ninterval = \"60s\"\n",
        stdio_fx(&[])
    );
    let gateway = Gateway::start(&toml, 1).await;
    let steps: Value = (0..3)
        .map(|i| json!({"op": "call_tool", "name": "fx__echo", "arguments": {"message": format!("{i}")}}))
        .collect();
    let run = python_client(&gateway.url, steps, &[]).await;
    assert_eq!(text(ok(&run, 0)), "0");
    assert_eq!(text(ok(&run, 1)), "1");
    let refused = error(&run, 2);
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("[mcp.servers.fx.rate_limits]"),
        "{message}"
    );
    assert!(message.contains("2 per 1m"), "{message}");
    gateway.stop().await;
}

/// An HTTP+SSE server whose stream announces no `endpoint` (the fixture's `--sse-silent`) is
/// reached through the configured `message_url` (which alone implies `protocol = "sse"`, as in
/// Nexus), and one that announces keeps its own endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn an_sse_server_that_announces_no_endpoint_is_posted_to_at_message_url() {
    let silent = Server::fixture_http(&["--sse-silent"], true).await;
    let announcing = Server::fixture_http(&[], true).await;
    let base = |server: &Server| format!("http://127.0.0.1:{}", server.port);
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n\
         [mcp.servers.silent]\nurl = \"{0}/sse\"\nmessage_url = \"{0}/messages\"\n\
         [mcp.servers.loud]\nurl = \"{1}/sse\"\nprotocol = \"sse\"\nmessage_url = \"{1}/nowhere\"\n",
        base(&silent),
        base(&announcing)
    );
    let gateway = Gateway::start(&toml, 2).await;
    let session = RawSession::open(&gateway.url).await;
    for server in ["silent", "loud"] {
        let echoed = session
            .call_text(&format!("{server}__echo"), json!({"message": server}))
            .await;
        assert_eq!(echoed, server);
    }
    gateway.stop().await;
}
