//! The token's sessions closed under a running gateway, as an HSM restart would: the next
//! signature with each token key (downstream client key, HTTPS listener key) meets a lost
//! session, logs in again, retries, and the calls succeed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::child::Nexus;
use super::{downstream, pkcs11_table, py_https, server_cert_for, subject};
use crate::pkcs11_support::{KEYS, PIN, Pki, TestKey, private_uri, session_reaper_module};
use crate::support::{WAIT, ok, python_client, text};
use crate::tls::whoami;

/// The `pkcs11_session_reaper` module in front of the token's SoftHSM2: on request it closes every
/// session of the gateway's process from a second handle, as an HSM restart would (a second
/// process cannot: SoftHSM2 sessions belong to the process that opened them).
struct Reaper {
    module: PathBuf,
    inner: PathBuf,
    trigger: PathBuf,
}

impl Reaper {
    fn new(pki: &Pki) -> Self {
        Self {
            module: session_reaper_module(),
            inner: pki.module.clone(),
            trigger: pki.path("close-sessions"),
        }
    }

    /// The gateway's environment for the module.
    fn env(&self) -> [(&str, &Path); 2] {
        [
            ("NEXUS_TEST_INNER_PKCS11_MODULE", &self.inner),
            ("NEXUS_TEST_CLOSE_SESSIONS_TRIGGER", &self.trigger),
        ]
    }

    /// Closes every session of `nexus`'s process; returns once every slot's
    /// `C_CloseAllSessions` returned `CKR_OK`.
    async fn close_all_sessions(&self, nexus: &Nexus) {
        let mut ack = self.trigger.clone().into_os_string();
        ack.push(".ack");
        let ack = PathBuf::from(ack);
        let _ = std::fs::remove_file(&ack);
        std::fs::write(&self.trigger, "").unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let report = loop {
            if let Ok(report) = std::fs::read_to_string(&ack) {
                break report;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the session reaper did not acknowledge {}:\n{}",
                self.trigger.display(),
                nexus.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let report: Value = serde_json::from_str(&report).unwrap();
        let closed = report["closed"].as_array();
        assert!(
            closed.is_some_and(|slots| !slots.is_empty() && slots.iter().all(|s| s["rv"] == 0)),
            "C_CloseAllSessions failed: {report}"
        );
    }
}

/// The warning that shows a signature with `key` ran into the lost sessions and was retried.
fn session_lost(key: TestKey) -> String {
    format!(
        "PKCS#11 session lost: logging in again and retrying once key={}",
        private_uri(key)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_closed_under_the_gateway_mean_a_new_login_and_calls_succeed() {
    let pki = Pki::new();
    let mut up = py_https(&pki, None).await;
    let port = up.port;
    let (client_key, listener_key) = (KEYS[0], KEYS[1]);
    let cert = pki.path(&server_cert_for(&pki, listener_key));
    let reaper = Reaper::new(&pki);
    let toml = pkcs11_table(&reaper.module, Some(&pki.pin_file))
        + &format!(
            "[server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            private_uri(listener_key)
        )
        + &downstream(
            &pki,
            "up",
            port,
            &private_uri(client_key),
            &pki.cert(client_key),
        );
    let nexus = Nexus::spawn(&pki, "reaper", &toml, &reaper.env()).await;
    nexus.wait_connected(1).await;
    let ca = pki.path("ca.crt");
    let cafile = ["--cafile", ca.to_str().unwrap()];
    assert_eq!(
        whoami(&nexus.url(), "up", &cafile).await,
        subject(client_key)
    );

    // The downstream key signs first: the gateway connects to a restarted server (new ticket
    // keys, so a full handshake) for a call that comes over a connection opened before.
    let mut kept = nexus.keep_connection().await;
    let full_before = nexus.full_handshakes("up").await;
    reaper.close_all_sessions(&nexus).await;
    up.child.kill().await.unwrap();
    drop(up);
    let _up = py_https(&pki, Some(port)).await;
    assert_eq!(
        kept.whoami_once_reconnected("up", &nexus).await,
        subject(client_key)
    );
    assert!(
        nexus.log().contains(&session_lost(client_key)),
        "the downstream key did not meet the closed sessions:\n{}",
        nexus.log()
    );
    assert!(
        !nexus.log().contains(&session_lost(listener_key)),
        "the listener key signed before the downstream key:\n{}",
        nexus.log()
    );
    assert!(
        nexus.full_handshakes("up").await > full_before,
        "no full handshake with the downstream after the sessions were closed"
    );

    // The listener key signs first: a new client process has no session to resume.
    reaper.close_all_sessions(&nexus).await;
    let call = json!([{"op": "call_tool", "name": "up__whoami", "arguments": {}}]);
    let run = python_client(&nexus.url(), call, &cafile).await;
    assert!(
        run["results"][0].get("ok").is_some(),
        "{run:#}\n{}",
        nexus.log()
    );
    assert_eq!(text(ok(&run, 0)), subject(client_key));
    assert!(
        nexus.log().contains(&session_lost(listener_key)),
        "the listener key did not meet the closed sessions:\n{}",
        nexus.log()
    );

    // Many listener signatures at once: several pooled sessions go stale together, and the
    // handshakes that meet them recover concurrently.
    nexus.concurrent_handshakes(32).await;
    reaper.close_all_sessions(&nexus).await;
    nexus.concurrent_handshakes(32).await;
    let log = nexus.log();
    assert!(!log.contains(PIN), "the PIN was logged");
    // Closing a lost handle could close a new session that reuses its number.
    assert!(
        !log.contains("Failed to close session"),
        "a lost session was closed by handle:\n{log}"
    );
}
