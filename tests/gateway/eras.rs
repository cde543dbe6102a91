//! Downstreams of both eras behind one gateway, reached by clients of both eras: a stateless
//! downstream (the Python server, which serves both eras, told `protocol_version =
//! "2026-07-28"`) and a handshake-era one; renamed tools keep `Mcp-Name` equal to the body
//! name, and list changes travel both ways.

use serde_json::json;

use crate::support::{Gateway, Server, everything_stdio_cmd, names, ok, python_client, text};

#[tokio::test(flavor = "multi_thread")]
async fn stateless_and_handshake_downstreams_serve_clients_of_both_eras() {
    let python = Server::python_http(&[]).await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.py]\nurl = \"{}\"\nprotocol_version = \"2026-07-28\"\n\
         [mcp.servers.ev]\ncmd = {}\n",
        python.url(),
        everything_stdio_cmd()
    );
    let gateway = Gateway::start(&toml, 2).await;
    let health = gateway.health().await;
    assert_eq!(
        health["servers"]["py"]["protocolVersion"], "2026-07-28",
        "{health}"
    );
    assert_eq!(
        health["servers"]["ev"]["protocolVersion"], "2025-11-25",
        "{health}"
    );
    for mode in ["legacy", "2026-07-28"] {
        let steps = json!([
            // The Python server checks that Mcp-Name equals the (un-prefixed) body name.
            {"op": "call_tool", "name": "py__add", "arguments": {"a": 40, "b": 2}},
            {"op": "call_tool", "name": "py__slow", "arguments": {"steps": 2}, "progress": true},
            {"op": "call_tool", "name": "ev__get-sum", "arguments": {"a": 1, "b": 1}},
            {"op": "call_tool", "name": "py__toggle_extra_tool", "arguments": {}},
            {"op": "wait_tools_changed", "timeout": 10},
            {"op": "list_tools"},
        ]);
        let run = python_client(&gateway.url, steps, &["--mode", mode]).await;
        assert_eq!(text(ok(&run, 0)), "42", "{mode}: {run:#}");
        assert_eq!(
            run["results"][1]["progress"].as_array().map(Vec::len),
            Some(2),
            "{mode}: {run:#}"
        );
        assert_eq!(text(ok(&run, 2)), "The sum of 1 and 1 is 2.");
        assert_eq!(
            ok(&run, 4),
            &json!(true),
            "{mode}: the stateless downstream's list change reached the client"
        );
        // The toggle adds `extra` on odd calls and removes it on even ones.
        let listed = names(ok(&run, 5), "tools").contains(&"py__extra".to_owned());
        assert_eq!(
            listed,
            mode == "legacy",
            "{mode}: {:?}",
            names(ok(&run, 5), "tools")
        );
    }
    gateway.stop().await;
}

/// A server that serves both eras is spoken to in the handshake era (where its tools can ask
/// the client in the middle of a call), unless its `protocol_version` names another revision.
#[tokio::test(flavor = "multi_thread")]
async fn a_dual_era_server_gets_the_handshake_era_or_the_configured_revision() {
    let python = Server::python_http(&[]).await;
    let server = |name: &str, key: &str| {
        format!("[mcp.servers.{name}]\nurl = \"{}\"\n{key}\n", python.url())
    };
    let toml = [
        server("chosen", ""),
        server("older", "protocol_version = \"2025-06-18\""),
        server("stateless", "protocol_version = \"2026-07-28\""),
    ]
    .concat();
    let gateway = Gateway::start(&toml, 3).await;
    let health = gateway.health().await;
    let version = |name: &str| health["servers"][name]["protocolVersion"].clone();
    assert_eq!(version("chosen"), "2025-11-25", "{health}");
    assert_eq!(version("older"), "2025-06-18", "{health}");
    assert_eq!(version("stateless"), "2026-07-28", "{health}");
    gateway.stop().await;
}
