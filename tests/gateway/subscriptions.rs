//! Resource subscriptions through the gateway: `resources/subscribe` reaches the downstream
//! that owns the URI, its `notifications/resources/updated` reach only subscribed clients, and
//! a downstream that restarts is subscribed again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::dual_era::fixture_cmd;
use crate::support::{
    EventStream, Gateway, RawSession, everything_stdio_cmd, everything_unprefixed, unprefixed,
    wait_for,
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

/// The second conformance fixture (official Python SDK, handshake era, stdio) as the only
/// downstream: its `test_touch_subscribed` announces an update of each URI subscribed to in
/// its process and names the process.
async fn touch(session: &RawSession) -> (u32, String) {
    let text = session.call_text("test_touch_subscribed", json!({})).await;
    let (pid, updated) = text
        .strip_prefix("pid=")
        .and_then(|rest| rest.split_once(" updated="))
        .unwrap_or_else(|| panic!("unexpected answer {text}"));
    (pid.parse().unwrap(), updated.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_survives_a_downstream_restart() {
    const URI: &str = "test://watched-resource";
    let gateway = Gateway::start(&unprefixed("hs", &fixture_cmd()), 1).await;
    let session = RawSession::open(&gateway.url).await;
    let mut stream = session.notifications().await;
    let answer = session
        .request("resources/subscribe", json!({"uri": URI}))
        .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let (pid, updated) = touch(&session).await;
    assert_eq!(updated, URI);
    let update = next_update(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        update.expect("no update before the restart")["params"]["uri"],
        URI
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let updated = wait_for("the restarted fixture answers", || async {
        let response = session.call(2, "test_touch_subscribed", json!({})).await;
        let text = crate::support::text(response.get("result")?).to_owned();
        (!text.starts_with(&format!("pid={pid} "))).then_some(text)
    })
    .await;
    assert!(
        updated.ends_with(&format!("updated={URI}")),
        "the new process was not subscribed again: {updated}"
    );
    let update = next_update(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        update.expect("no update after the restart")["params"]["uri"],
        URI
    );
    gateway.stop().await;
}
