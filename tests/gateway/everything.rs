//! `@modelcontextprotocol/server-everything` behind the gateway, over stdio and Streamable
//! HTTP, driven by the official Python `mcp` client.

use serde_json::{Value, json};

use crate::support::{
    Gateway, Server, error, everything_stdio_cmd, names, ok, python_client, text,
};

fn tour(prefix: &str) -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": format!("{prefix}echo"), "arguments": {"message": "hello gateway"}},
        {"op": "call_tool", "name": format!("{prefix}get-sum"), "arguments": {"a": 2, "b": 40}},
        {"op": "call_tool", "name": format!("{prefix}trigger-long-running-operation"),
         "arguments": {"duration": 1, "steps": 4}, "progress": true},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": "demo://resource/static/document/architecture.md"},
        {"op": "read_resource", "uri": "demo://resource/dynamic/text/3"},
        {"op": "list_resource_templates"},
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": format!("{prefix}args-prompt"), "arguments": {"city": "Paris"}},
        {"op": "set_logging_level", "level": "warning"},
        {"op": "ping"},
        {"op": "complete", "ref": {"type": "ref/prompt", "name": format!("{prefix}completable-prompt")},
         "argument": {"name": "department", "value": "E"}},
    ])
}

/// Asserts the results of [`tour`].
fn check_tour(run: &Value, prefix: &str) {
    let tools = names(ok(run, 0), "tools");
    for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(
            tools.contains(&format!("{prefix}{tool}")),
            "{tool} missing from {tools:?}"
        );
    }
    assert_eq!(text(ok(run, 1)), "Echo: hello gateway");
    assert_eq!(text(ok(run, 2)), "The sum of 2 and 40 is 42.");
    check_progress(run, 3, 4);
    assert!(ok(run, 4)["resources"].as_array().unwrap().len() >= 7);
    assert!(ok(run, 5)["contents"][0]["text"].as_str().unwrap().len() > 20);
    assert!(
        ok(run, 6)["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains('3')
    );
    assert!(
        !ok(run, 7)["resourceTemplates"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(names(ok(run, 8), "prompts").contains(&format!("{prefix}args-prompt")));
    let prompt = ok(run, 9).to_string();
    assert!(prompt.contains("Paris"), "{prompt}");
    assert_eq!(ok(run, 10), &json!({}));
    assert_eq!(ok(run, 11), &json!({}));
    let values = ok(run, 12)["completion"]["values"].as_array().unwrap();
    assert!(
        values.iter().any(|value| value == "Engineering"),
        "{values:?}"
    );
}

/// Every progress notification arrived, in order, before the result.
fn check_progress(run: &Value, step: usize, steps: u64) {
    let progress = run["results"][step]["progress"]
        .as_array()
        .unwrap_or_else(|| panic!("no progress: {run:#}"));
    let values: Vec<u64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(values, (1..=steps).collect::<Vec<_>>(), "{run:#}");
    let events: Vec<&str> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["step"] == step)
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    let mut expected = vec!["progress"; steps as usize];
    expected.push("result");
    assert_eq!(
        events, expected,
        "progress must all arrive before the result: {run:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_downstream_direct_mode() {
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.everything]\ncmd = {}\n",
        everything_stdio_cmd()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let run = python_client(&gateway.url, tour("everything__"), &[]).await;
    check_tour(&run, "everything__");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_downstream_direct_mode() {
    let everything = Server::everything_http().await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.everything]\nurl = \"{}\"\n",
        everything.url()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let run = python_client(&gateway.url, tour("everything__"), &[]).await;
    check_tour(&run, "everything__");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn search_mode_lists_search_and_execute_only() {
    let everything = Server::everything_http().await;
    let toml = format!(
        "[mcp.servers.everything]\nurl = \"{}\"\nprotocol = \"streamable-http\"\n",
        everything.url()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "search", "arguments": {"keywords": ["sum", "numbers"]}},
        {"op": "call_tool", "name": "execute", "arguments": {"name": "everything__get-sum", "arguments": {"a": 1, "b": 2}}},
        {"op": "call_tool", "name": "execute", "progress": true,
         "arguments": {"name": "everything__trigger-long-running-operation", "arguments": {"duration": 1, "steps": 3}}},
        {"op": "call_tool", "name": "execute", "arguments": {"name": "everything__no-such-tool", "arguments": {}}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    assert_eq!(names(ok(&run, 0), "tools"), ["search", "execute"]);
    let found = &ok(&run, 1)["structuredContent"]["results"];
    assert_eq!(found[0]["name"], "everything__get-sum", "{run:#}");
    assert!(found.as_array().unwrap().len() <= 10);
    assert!(found[0]["inputSchema"]["properties"].get("a").is_some());
    assert_eq!(text(ok(&run, 2)), "The sum of 1 and 2 is 3.");
    check_progress(&run, 3, 3);
    assert!(
        error(&run, 4)["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: everything__no-such-tool")
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_when_needed_drops_the_prefix_for_a_single_server() {
    let toml = format!(
        "[mcp]\ntools = \"direct\"\nprefix = \"when-needed\"\n[mcp.servers.everything]\ncmd = {}\n",
        everything_stdio_cmd()
    );
    let gateway = Gateway::start(&toml, 1).await;
    let run = python_client(&gateway.url, tour(""), &[]).await;
    check_tour(&run, "");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_when_needed_keeps_prefixes_for_two_servers() {
    let everything = Server::everything_http().await;
    let toml = format!(
        "[mcp]\ntools = \"direct\"\nprefix = \"when-needed\"\n\
         [mcp.servers.local]\ncmd = {}\n[mcp.servers.remote]\nurl = \"{}\"\n",
        everything_stdio_cmd(),
        everything.url()
    );
    let gateway = Gateway::start(&toml, 2).await;
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "remote__get-sum", "arguments": {"a": 20, "b": 22}},
        {"op": "call_tool", "name": "local__echo", "arguments": {"message": "x"}},
    ]);
    let run = python_client(&gateway.url, steps, &[]).await;
    let tools = names(ok(&run, 0), "tools");
    assert!(
        tools.contains(&"local__echo".to_owned()) && tools.contains(&"remote__echo".to_owned())
    );
    assert_eq!(text(ok(&run, 1)), "The sum of 20 and 22 is 42.");
    assert_eq!(text(ok(&run, 2)), "Echo: x");
    gateway.stop().await;
}
