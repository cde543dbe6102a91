//! A downstream written the way most MCP servers are (`tests/servers/handshake_server.py`:
//! the official Python SDK 2.x serving both eras, its tools asking the client with
//! server-to-client requests on the session) keeps through the gateway everything that works
//! when a client talks to it directly. The gateway speaks the handshake era to such a server,
//! where its tools have a back channel, and translates for stateless clients.
//!
//! Each pinned conformance suite runs against the fixture directly (Streamable HTTP) and
//! through the gateway with the fixture behind it over stdio and over Streamable HTTP; every
//! scenario that passes directly must pass through the gateway, except the ones listed in
//! `tests/conformance/expected-failures-handshake-fixture.yml` (none).

use crate::conformance::{Run, repo_path, run_cli};
use crate::support::{Gateway, Server, ok, python_client, text, toml_array, tools, unprefixed};

const SCRIPT: &str = "tests/servers/handshake_server.py";
const EXCEPTIONS: &str = "tests/conformance/expected-failures-handshake-fixture.yml";

/// The fixture over Streamable HTTP, on its own port.
async fn fixture_http() -> Server {
    Server::python_script_http(SCRIPT, &["--http"]).await
}

/// The fixture as a stdio child: the `cmd = [...]` line of its server table.
pub fn fixture_cmd() -> String {
    let python = tools().join("bin/python");
    let script = repo_path(SCRIPT);
    format!(
        "cmd = {}",
        toml_array(&[python.to_str().unwrap(), script.to_str().unwrap()])
    )
}

/// Scenarios the gateway may fail although they pass directly, from [`EXCEPTIONS`]: each
/// `  - name` line under `server:`.
fn exceptions() -> Vec<String> {
    let text = std::fs::read_to_string(repo_path(EXCEPTIONS)).expect(EXCEPTIONS);
    let entries = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "));
    entries.map(|entry| entry.trim().to_owned()).collect()
}

/// Runs one suite directly and through the gateway (fixture over stdio, then over HTTP), a
/// fresh fixture each time (the scenarios change its lists); prints the table and checks the
/// rule.
async fn direct_versus_gateway(label: &str, package: &str, extra: &[&str]) {
    let fixture = fixture_http().await;
    let direct = run_cli(&fixture.url(), package, None, extra).await;
    drop(fixture);

    let gateway = Gateway::start(&unprefixed("hs", &fixture_cmd()), 1).await;
    let health = gateway.health().await;
    let stdio = run_cli(&gateway.url, package, None, extra).await;
    gateway.stop().await;

    let fixture = fixture_http().await;
    let target = format!("url = \"{}\"", fixture.url());
    let gateway = Gateway::start(&unprefixed("hs", &target), 1).await;
    let http = run_cli(&gateway.url, package, None, extra).await;
    gateway.stop().await;

    assert_eq!(
        health["servers"]["hs"]["protocolVersion"], "2025-11-25",
        "a dual-era server is spoken to in the handshake era: {health}"
    );
    report(label, &direct, &[("stdio", &stdio), ("http", &http)]);
}

fn report(label: &str, direct: &Run, through: &[(&str, &Run)]) {
    println!("{label}: direct | gateway over stdio | gateway over Streamable HTTP");
    let verdict = |run: &Run, name: &str| {
        let found = run.verdicts().find(|(scenario, _)| *scenario == name);
        match found {
            Some((_, true)) => "pass",
            Some((_, false)) => "FAIL",
            None => "-",
        }
    };
    for (name, _) in direct.verdicts() {
        let cells: Vec<&str> = through.iter().map(|(_, run)| verdict(run, name)).collect();
        println!(
            "  {name:<48} {:<5} {}",
            verdict(direct, name),
            cells.join(" ")
        );
    }
    let exceptions = exceptions();
    let mut lost = Vec::new();
    for (transport, run) in through {
        let passed = run.passed();
        let missing = direct.passed().into_iter().filter(|name| {
            !passed.contains(name) && !exceptions.iter().any(|allowed| allowed == name)
        });
        lost.extend(missing.map(|name| format!("{name} (over {transport})")));
    }
    let times: Vec<String> = through
        .iter()
        .map(|(transport, run)| format!("{transport} {:.1} s", run.elapsed_secs()))
        .collect();
    println!(
        "  run times: direct {:.1} s, {}",
        direct.elapsed_secs(),
        times.join(", ")
    );
    assert!(
        lost.is_empty(),
        "{label}: passes directly but not through the gateway: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_era_fixture_handshake_suite() {
    direct_versus_gateway(
        "conformance 0.1.16",
        "@modelcontextprotocol/conformance",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_era_fixture_next_suite_at_2025_11_25() {
    let extra = ["--spec-version", "2025-11-25"];
    direct_versus_gateway("conformance-next 2025-11-25", "conformance-next", &extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_era_fixture_next_suite_at_2026_07_28() {
    let extra = ["--spec-version", "2026-07-28"];
    direct_versus_gateway("conformance-next 2026-07-28", "conformance-next", &extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_era_fixture_2026_07_28_requirements() {
    let extra = ["--requirements", "2026-07-28"];
    direct_versus_gateway(
        "conformance-next requirements 2026-07-28",
        "conformance-next",
        &extra,
    )
    .await;
}

/// What a 2026-07-28 client cannot get from the fixture directly (its tools ask on a back
/// channel that a stateless request lacks) it gets through the gateway: the fixture's
/// `sampling/createMessage` and `elicitation/create` reach the official Python client in the
/// 2026-07-28 mode as `input_required` results, and its answers come back to the tool.
#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_client_answers_the_fixtures_requests_through_the_gateway() {
    let gateway = Gateway::start(&unprefixed("hs", &fixture_cmd()), 1).await;
    let steps = serde_json::json!([
        {"op": "call_tool", "name": "test_sampling", "arguments": {"prompt": "Say hi"}},
        {"op": "call_tool", "name": "test_elicitation_sep1034_defaults", "arguments": {}},
    ]);
    let options = [
        "--mode",
        "2026-07-28",
        "--sampling-reply",
        "hi from the client",
        "--elicitation-action",
        "accept",
        "--elicitation-content",
        r#"{"name": "Ada"}"#,
    ];
    let run = python_client(&gateway.url, steps, &options).await;
    assert_eq!(run["protocol_version"], "2026-07-28", "{run:#}");
    assert_eq!(
        text(ok(&run, 0)),
        "LLM response: hi from the client",
        "{run:#}"
    );
    assert!(text(ok(&run, 1)).contains("\"Ada\""), "{run:#}");
    gateway.stop().await;
}
