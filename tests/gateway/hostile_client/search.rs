//! `search` with a huge query is refused at once and never delays anyone else.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Gateway, RawSession, fixture_stdio_cmd};

/// Generous: an echo through a stdio child takes about a millisecond here.
const RESPONSIVE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread")]
async fn a_search_with_50k_keywords_is_refused_and_delays_no_one() {
    let toml = format!(
        "[mcp]\ntools = \"search\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    );
    let gateway = Gateway::start(&toml, 1).await;
    let session = RawSession::open(&gateway.url).await;
    let keywords: Vec<String> = (0..50_000).map(|i| format!("word{i}")).collect();
    let huge = json!({"keywords": keywords});
    let attack = |id| session.call(id, "search", huge.clone());
    let started = Instant::now();
    let (first, second, echo) = tokio::join!(attack(1), attack(2), async {
        let echo = session
            .call(
                3,
                "execute",
                json!({"name": "fx__echo", "arguments": {"message": "hi"}}),
            )
            .await;
        (echo, started.elapsed())
    });
    for refused in [&first, &second] {
        let message = refused["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("a 50k-keyword search must be refused: {refused}"));
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        assert!(
            message.contains("50000 words") && message.contains("32"),
            "{message}"
        );
    }
    let (echo, took) = echo;
    assert_eq!(echo["result"]["content"][0]["text"], "hi", "{echo}");
    assert!(
        took < RESPONSIVE,
        "an unrelated call took {took:?} beside the attack"
    );

    let found = session
        .call(4, "search", json!({"keywords": ["echo", "message"]}))
        .await;
    let results = &found["result"]["structuredContent"]["results"];
    assert_eq!(results[0]["name"], "fx__echo", "{found}");
    let text: Value =
        serde_json::from_str(found["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text["results"], results);
    gateway.stop().await;
}
