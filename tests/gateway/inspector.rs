//! The MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.12.0 `--cli`) as a real client of
//! the gateway, in both protocol eras, with the conformance fixture as the only downstream:
//! tools/list, tools/call, resources/read, prompts/get.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::conformance::fixture_gateway_toml;
use crate::support::{Gateway, node, tools};

/// Bound on one inspector invocation (a Node start plus one connection).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// Runs `inspector --cli URL --protocol-era ERA ARGS --format json`; returns its `result`.
async fn inspector(url: &str, era: &str, args: &[&str]) -> Value {
    inspector_exit(url, era, args, 0).await
}

/// [`inspector`] for a run that must end with exit code `exit` (5: the tool returned
/// `isError: true`; the result is still printed).
async fn inspector_exit(url: &str, era: &str, args: &[&str], exit: i32) -> Value {
    let home = tempfile::tempdir().unwrap(); // it writes ~/.mcp-inspector
    let launcher = tools()
        .join("node/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let child = Command::new(node())
        .arg(launcher)
        .args(["--cli", url, "--protocol-era", era])
        .args(args)
        .args(["--format", "json"])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("inspector CLI");
    let output = tokio::time::timeout(CALL_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("inspector {args:?} did not finish in {CALL_LIMIT:?}"))
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let show = || {
        format!(
            "{era} {args:?} ({}):\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        )
    };
    assert_eq!(
        output.status.code(),
        Some(exit),
        "inspector exit code: {}",
        show()
    );
    let document: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("inspector printed no JSON ({error}): {}", show()));
    document
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("no result: {}", show()))
}

/// The four methods through the gateway; `era` is `legacy` or `modern`.
async fn tour(era: &str) {
    let gateway = Gateway::start(&fixture_gateway_toml(), 1).await;
    let url = gateway.url.clone();

    let listed = inspector(&url, era, &["--method", "tools/list"]).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {listed}"))
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    for name in [
        "test_simple_text",
        "test_image_content",
        "test_error_handling",
        "json_schema_2020_12_tool",
    ] {
        assert!(
            names.contains(&name),
            "{name} missing (unprefixed) from {names:?}"
        );
    }

    let simple = inspector(
        &url,
        era,
        &["--method", "tools/call", "--tool-name", "test_simple_text"],
    )
    .await;
    assert_eq!(
        simple["content"][0]["text"], "This is a simple text response for testing.",
        "{simple}"
    );
    assert_ne!(simple["isError"], true, "{simple}");

    let with_args = inspector(
        &url,
        era,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "json_schema_2020_12_tool",
            "--tool-arg",
            "name=nexus",
        ],
    )
    .await;
    assert_eq!(
        with_args["content"][0]["text"], "name=nexus, address=null",
        "{with_args}"
    );

    let image = inspector(
        &url,
        era,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "test_image_content",
        ],
    )
    .await;
    assert_eq!(image["content"][0]["type"], "image", "{image}");
    assert_eq!(image["content"][0]["mimeType"], "image/png", "{image}");

    let failing = inspector_exit(
        &url,
        era,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "test_error_handling",
        ],
        5,
    )
    .await;
    assert_eq!(failing["isError"], true, "{failing}");

    let text = inspector(
        &url,
        era,
        &["--method", "resources/read", "--uri", "test://static-text"],
    )
    .await;
    assert_eq!(
        text["contents"][0],
        serde_json::json!({"uri": "test://static-text", "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}),
        "{text}"
    );

    let templated = inspector(
        &url,
        era,
        &[
            "--method",
            "resources/read",
            "--uri",
            "test://template/7/data",
        ],
    )
    .await;
    let data: Value = serde_json::from_str(
        templated["contents"][0]["text"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|_| panic!("template read: {templated}"));
    assert_eq!(
        data,
        serde_json::json!({"id": "7", "templateTest": true, "data": "Data for ID: 7"})
    );

    let prompt = inspector(
        &url,
        era,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "test_prompt_with_arguments",
            "--prompt-args",
            "arg1=hello",
            "arg2=world",
        ],
    )
    .await;
    assert_eq!(prompt["messages"][0]["role"], "user", "{prompt}");
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'",
        "{prompt}"
    );

    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inspector_legacy_era() {
    tour("legacy").await;
}

#[tokio::test(flavor = "multi_thread")]

async fn inspector_modern_era() {
    tour("modern").await;
}
