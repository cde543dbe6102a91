//! Resource subscriptions through the gateway: `resources/subscribe` reaches the downstream
//! that owns the URI, and its `notifications/resources/updated` reach only subscribed clients.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    EventStream, Gateway, RawSession, everything_stdio_cmd, everything_unprefixed,
};

/// A URI server-everything lists (it sends updates for subscribed URIs every 5 s once
/// `toggle-subscriber-updates` was called).
const WATCHED: &str = "demo://resource/static/document/architecture.md";

/// The next `notifications/resources/updated` on a stream within `limit`, skipping others.
async fn next_update(stream: &mut EventStream, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = stream.next_message_within(left).await?;
        if message["method"] == "notifications/resources/updated" {
            return Some(message);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_updates_reach_only_subscribed_sessions() {
    let toml = everything_unprefixed(&format!("cmd = {}", everything_stdio_cmd()));
    let gateway = Gateway::start(&toml, 1).await;
    let (subscribed, bystander) = (
        RawSession::open(&gateway.url).await,
        RawSession::open(&gateway.url).await,
    );
    let (mut watching, mut idle) = (
        subscribed.notifications().await,
        bystander.notifications().await,
    );

    let answer = subscribed
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let unknown = bystander
        .request("resources/subscribe", json!({"uri": "demo://no/such"}))
        .await;
    assert_eq!(unknown["error"]["code"], -32002, "{unknown}");
    subscribed
        .call_text("toggle-subscriber-updates", json!({}))
        .await;

    let update = next_update(&mut watching, Duration::from_secs(15))
        .await
        .expect("the subscribed session got no resource update");
    assert_eq!(update["params"]["uri"], WATCHED);
    assert!(
        next_update(&mut idle, Duration::from_millis(1500))
            .await
            .is_none(),
        "a session that did not subscribe got a resource update"
    );

    let answer = subscribed
        .request("resources/unsubscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    gateway.stop().await;
}
