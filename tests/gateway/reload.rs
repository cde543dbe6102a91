//! Reloading the configuration: downstreams added, changed and removed; unchanged ones keep
//! their child process and the clients' sessions keep working.

use serde_json::json;

use crate::support::{Gateway, RawSession, fixture_stdio_cmd, text};

fn config(servers: &[(&str, &[&str])]) -> String {
    let mut toml = String::from("[mcp]\ntools = \"direct\"\n");
    for (name, extra) in servers {
        toml.push_str(&format!(
            "[mcp.servers.{name}]\ncmd = {}\n",
            fixture_stdio_cmd(extra)
        ));
    }
    toml
}

async fn pid(session: &RawSession, server: &str) -> String {
    let response = session
        .request(
            "tools/call",
            json!({"name": format!("{server}__pid"), "arguments": {}}),
        )
        .await;
    text(&response["result"]).to_owned()
}

async fn tool_names(session: &RawSession) -> Vec<String> {
    let response = session.request("tools/list", json!({})).await;
    response["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_changes_and_removes_servers_without_touching_the_others() {
    let gateway = Gateway::start(&config(&[("a", &[])]), 1).await;
    let session = RawSession::open(&gateway.url).await;
    let a_pid = pid(&session, "a").await;

    let report = gateway.reload(&config(&[("a", &[]), ("b", &[])])).await;
    assert_eq!(
        (report.added, report.kept),
        (vec!["b".to_owned()], vec!["a".to_owned()])
    );
    gateway.wait_connected(2).await;
    assert!(tool_names(&session).await.contains(&"b__echo".to_owned()));
    let b_pid = pid(&session, "b").await;

    let report = gateway
        .reload(&config(&[("a", &[]), ("b", &["--name", "renamed"])]))
        .await;
    assert_eq!(report.changed, ["b"]);
    gateway.wait_connected(2).await;
    assert_ne!(
        pid(&session, "b").await,
        b_pid,
        "a changed server is restarted"
    );

    let report = gateway.reload(&config(&[("a", &[])])).await;
    assert_eq!(report.removed, ["b"]);
    assert!(
        !tool_names(&session)
            .await
            .iter()
            .any(|name| name.starts_with("b__"))
    );
    assert_eq!(
        pid(&session, "a").await,
        a_pid,
        "an unchanged server keeps its process and session"
    );
    gateway.stop().await;
}
