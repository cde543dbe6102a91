//! Token keys at the gateway level: the real `nexus` binary, run as a child with the SoftHSM2
//! token's `SOFTHSM2_CONF` in its environment (tests may not `set_var`), authenticates to the
//! Python `mcp` server (client certificates required) with RSA-2048, P-256 and P-384 keys that
//! never leave the token; serves its own HTTPS with a token key; names the server and key when
//! the PIN, the object or the certificate is wrong; recovers when the token's sessions are closed
//! under it (`lost_sessions`); and pkcs11-spy records the mechanisms. The token, CA and
//! certificates come from `tests/pkcs11_support` (shared with `tests/pkcs11.rs`).

mod child;
mod lost_sessions;
mod workflow;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::pkcs11_support::{KEYS, PIN, Pki, SPY, TOKEN, TestKey, mechanisms_used, private_uri};
use crate::support::{Server, WAIT, free_port, ok, python_client, text};
use crate::tls::whoami;
use child::{Nexus, nexus_command, start_error};

/// The subject `whoami` reports for a key's client certificate.
fn subject(key: TestKey) -> String {
    format!("CN=client-{}", key.label)
}

/// `[pkcs11]` with the module and, when given, a PIN file.
fn pkcs11_table(module: &Path, pin_file: Option<&Path>) -> String {
    let mut table = format!("[pkcs11]\nmodule_path = \"{}\"\n", module.display());
    if let Some(pin_file) = pin_file {
        table += &format!("pin_file = \"{}\"\n", pin_file.display());
    }
    table
}

/// An HTTPS downstream `name` at `port` that authenticates with `key_uri` and `cert`.
fn downstream(pki: &Pki, name: &str, port: u16, key_uri: &str, cert: &str) -> String {
    format!(
        "[mcp.servers.{name}]\nurl = \"https://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n\
         [mcp.servers.{name}.tls]\nroot_ca_cert_path = \"{}\"\nserver_name = \"localhost\"\n\
         client_cert_path = \"{cert}\"\nclient_key_path = \"{key_uri}\"\n",
        pki.path("ca.crt").display()
    )
}

/// `py_server.py` over HTTPS (`server.crt`, CN=localhost), client certificates from the test CA
/// required; on `port` when given (a restart), else on a port it picks.
async fn py_https(pki: &Pki, port: Option<u16>) -> Server {
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    );
    let port = port.map(|port| port.to_string());
    let mut args = vec![
        "--certfile",
        cert.to_str().unwrap(),
        "--keyfile",
        key.to_str().unwrap(),
        "--cafile",
        ca.to_str().unwrap(),
        "--require-client-cert",
    ];
    if let Some(port) = &port {
        args.extend(["--port", port]);
    }
    Server::python_http(&args).await
}

/// `count` concurrent `whoami` calls in one client session; every answer must be `expected`.
async fn concurrent_whoami(url: &str, server: &str, count: usize, expected: &str) {
    let run = python_client(
        url,
        json!([{"op": "concurrent_calls", "name": format!("{server}__whoami"), "arguments": {}, "count": count}]),
        &[],
    )
    .await;
    let calls = ok(&run, 0).as_array().unwrap();
    assert_eq!(calls.len(), count, "{run:#}");
    for call in calls {
        let result = call
            .get("ok")
            .unwrap_or_else(|| panic!("a concurrent call failed: {run:#}"));
        assert_eq!(text(result), expected, "{run:#}");
    }
}

/// The three key types, one downstream each: `rsa`, `p256`, `p384`.
const NAMES: [&str; 3] = ["rsa", "p256", "p384"];

#[tokio::test(flavor = "multi_thread")]
async fn token_keys_of_every_type_authenticate_the_gateway_to_the_python_server() {
    let pki = Pki::new();
    let up = py_https(&pki, None).await;
    let mut toml = pkcs11_table(&pki.module, Some(&pki.pin_file));
    for (name, key) in NAMES.iter().zip(KEYS) {
        toml += &downstream(&pki, name, up.port, &private_uri(key), &pki.cert(key));
    }
    let nexus = Nexus::spawn(&pki, "every-type", &toml, &[]).await;
    nexus.wait_connected(3).await;
    for (name, key) in NAMES.iter().zip(KEYS) {
        assert_eq!(whoami(&nexus.url(), name, &[]).await, subject(key));
    }
    // 32 concurrent calls per key type: the gateway opens new downstream connections for them
    // (HTTP/1.1, one request per connection at a time), all signed for by the token key.
    for (name, key) in NAMES.iter().zip(KEYS) {
        let before = nexus.metric("nexus_tls_handshakes_total", name).await;
        concurrent_whoami(&nexus.url(), name, 32, &subject(key)).await;
        let after = nexus.metric("nexus_tls_handshakes_total", name).await;
        assert!(
            after > before,
            "{name}: no new downstream connection for 32 concurrent calls"
        );
        assert_eq!(
            nexus
                .metric("nexus_tls_handshake_failures_total", name)
                .await,
            0
        );
    }
    assert!(!nexus.log().contains(PIN), "the PIN was logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_source_in_the_uri_is_enough_without_a_pin_in_the_config() {
    let pki = Pki::new();
    let up = py_https(&pki, None).await;
    let key = KEYS[2];
    let uri = format!(
        "{}?pin-source=file:{}",
        private_uri(key),
        pki.pin_file.display()
    );
    let toml =
        pkcs11_table(&pki.module, None) + &downstream(&pki, "up", up.port, &uri, &pki.cert(key));
    let nexus = Nexus::spawn(&pki, "pin-source", &toml, &[]).await;
    nexus.wait_connected(1).await;
    assert_eq!(whoami(&nexus.url(), "up", &[]).await, subject(key));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_downstream_means_fresh_token_signatures_and_calls_succeed() {
    let pki = Pki::new();
    let mut up = py_https(&pki, None).await;
    let port = up.port;
    let key = KEYS[0];
    let toml = pkcs11_table(&pki.module, Some(&pki.pin_file))
        + &downstream(&pki, "up", port, &private_uri(key), &pki.cert(key));
    let nexus = Nexus::spawn(&pki, "restart", &toml, &[]).await;
    nexus.wait_connected(1).await;
    concurrent_whoami(&nexus.url(), "up", 8, &subject(key)).await;
    // The new server has new ticket keys: every pooled connection dies, no session resumes.
    up.child.kill().await.unwrap();
    drop(up);
    let _up = py_https(&pki, Some(port)).await;
    let full_before = nexus.full_handshakes("up").await;
    // The gateway re-initializes its downstream session; bound the wait for it by tries.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let run = python_client(
            &nexus.url(),
            json!([{"op": "call_tool", "name": "up__whoami", "arguments": {}}]),
            &[],
        )
        .await;
        if run["results"][0].get("ok").is_some() {
            assert_eq!(text(ok(&run, 0)), subject(key));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful call after the restart: {run:#}\n{}",
            nexus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    concurrent_whoami(&nexus.url(), "up", 32, &subject(key)).await;
    let full_after = nexus.full_handshakes("up").await;
    assert!(
        full_after > full_before,
        "no full handshake (token signature) after the restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_errors_name_the_server_the_key_and_the_cause() {
    let pki = Pki::new();
    let port = free_port().await;
    let wrong_pin = pki.path("wrong-pin");
    std::fs::write(&wrong_pin, "not-the-pin\n").unwrap();
    let (rsa, ec) = (KEYS[0], KEYS[1]);

    let toml = pkcs11_table(&pki.module, Some(&wrong_pin))
        + &downstream(&pki, "up", port, &private_uri(rsa), &pki.cert(rsa));
    let error = start_error(&pki, "wrong-pin", &toml).await;
    assert!(
        error.contains("server 'up': client_key_path: ")
            && error.contains("HSM login to token \"nexus\" failed: CKR_PIN_INCORRECT")
            && error.contains(&wrong_pin.display().to_string()),
        "{error}"
    );

    let missing = format!("pkcs11:token={TOKEN};object=nothere;type=private");
    let toml = pkcs11_table(&pki.module, Some(&pki.pin_file))
        + &downstream(&pki, "up", port, &missing, &pki.cert(rsa));
    let error = start_error(&pki, "missing", &toml).await;
    assert!(
        error.contains("server 'up': client_key_path: ")
            && error.contains(&format!(
                "no private key matching {missing} on token \"nexus\""
            )),
        "{error}"
    );

    let toml = pkcs11_table(&pki.module, Some(&pki.pin_file))
        + &downstream(&pki, "up", port, &private_uri(ec), &pki.cert(rsa));
    let error = start_error(&pki, "mismatch", &toml).await;
    assert!(
        error.contains(&format!(
            "server 'up': client_cert_path {} does not match client_key_path {}: the key is not the certificate's private key",
            pki.cert(rsa),
            private_uri(ec)
        )),
        "{error}"
    );
}

/// A server certificate (serverAuth, SAN 127.0.0.1) from the test CA for a token key.
fn server_cert_for(pki: &Pki, key: TestKey) -> String {
    let cert = format!("{}.server.crt", key.id);
    pki.server_cert(&format!("{}.pub.pem", key.id), &cert);
    cert
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_https_listener_signs_with_a_token_key() {
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let cafile = ["--cafile", ca.to_str().unwrap()];

    // RSA key on the token, PEM certificate.
    let rsa = KEYS[0];
    let cert = pki.path(&server_cert_for(&pki, rsa));
    let toml = pkcs11_table(&pki.module, Some(&pki.pin_file))
        + &format!(
            "[server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            private_uri(rsa)
        );
    let nexus = Nexus::spawn(&pki, "https-rsa", &toml, &[]).await;
    let run = python_client(&nexus.url(), json!([{"op": "list_tools"}]), &cafile).await;
    assert_eq!(
        crate::support::names(ok(&run, 0), "tools"),
        ["search", "execute"],
        "{}",
        nexus.log()
    );
    drop(nexus);

    // P-256 key and its certificate, both on the token.
    let ec = KEYS[1];
    let cert = server_cert_for(&pki, ec);
    let der = format!("{cert}.der");
    pki.run(
        "openssl",
        &["x509", "-in", &cert, "-outform", "DER", "-out", &der],
    );
    pki.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--write-object",
        &der,
        "--type",
        "cert",
        "--id",
        ec.id,
        "--label",
        ec.label,
    ]);
    let toml = pkcs11_table(&pki.module, Some(&pki.pin_file))
        + &format!(
            "[server.tls]\ncertificate = \"pkcs11:token={TOKEN};object={};type=cert\"\nkey = \"{}\"\n",
            ec.label,
            private_uri(ec)
        );
    let nexus = Nexus::spawn(&pki, "https-ec", &toml, &[]).await;
    let run = python_client(
        &nexus.url(),
        json!([{"op": "list_tools"}, {"op": "list_tools"}]),
        &cafile,
    )
    .await;
    assert_eq!(
        crate::support::names(ok(&run, 1), "tools"),
        ["search", "execute"],
        "{}",
        nexus.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pkcs11_spy_shows_pss_and_ecdsa_for_the_gateways_handshakes_never_raw_rsa() {
    let pki = Pki::new();
    let up = py_https(&pki, None).await;
    let log = pki.path("gateway-spy.log");
    let mut toml = pkcs11_table(Path::new(SPY), Some(&pki.pin_file));
    for (name, key) in NAMES.iter().zip(KEYS) {
        toml += &downstream(&pki, name, up.port, &private_uri(key), &pki.cert(key));
    }
    let env = [
        ("PKCS11SPY", pki.module.as_path()),
        ("PKCS11SPY_OUTPUT", log.as_path()),
    ];
    let nexus = Nexus::spawn(&pki, "spy", &toml, &env).await;
    nexus.wait_connected(3).await;
    for (name, key) in NAMES.iter().zip(KEYS) {
        assert_eq!(whoami(&nexus.url(), name, &[]).await, subject(key));
    }
    nexus.stop().await;
    let spy = std::fs::read_to_string(&log).unwrap();
    let used = mechanisms_used(&spy);
    assert!(
        used.iter().any(|m| m == "CKM_RSA_PKCS_PSS"),
        "no CKM_RSA_PKCS_PSS in {used:?}"
    );
    assert!(
        used.iter().any(|m| m == "CKM_ECDSA"),
        "no CKM_ECDSA in {used:?}"
    );
    assert!(
        used.iter()
            .all(|m| m == "CKM_RSA_PKCS_PSS" || m == "CKM_ECDSA"),
        "unexpected mechanisms over TLS 1.3: {used:?}"
    );
    assert!(!spy.contains("CKM_RSA_X_509"), "raw RSA was used");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_probe_with_token_keys_against_s_server_over_tls12_and_tls13() {
    let versions = ["1.2", "1.3"];
    // A token per probe process: SoftHSM's file store is not safe for two processes reading
    // one token while it is being opened (a process may then see no token at all).
    let pkis = versions.map(|_| Pki::new());
    let servers: Vec<_> = versions
        .iter()
        .zip(&pkis)
        .map(|(tls, pki)| pki.s_server(tls))
        .collect();
    // `s_server -www` is no MCP server: each probe's `initialize` waits for its 10 s timeout,
    // so both versions are probed at once.
    let probes = versions
        .iter()
        .zip(&servers)
        .zip(&pkis)
        .map(|((tls, server), pki)| {
            let mut toml = pkcs11_table(&pki.module, Some(&pki.pin_file));
            for (name, key) in NAMES.iter().zip(KEYS) {
                toml += &downstream(pki, name, server.port, &private_uri(key), &pki.cert(key));
            }
            let mut command = nexus_command(pki, &format!("probe-{tls}"), &toml);
            command.args(["tls", "probe"]);
            tokio::process::Command::from(command).output()
        });
    let outputs = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(probes),
    )
    .await
    .expect("nexus tls probe did not finish");
    for (tls, output) in versions.iter().zip(outputs) {
        let output = output.unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        for (name, key) in NAMES.iter().zip(KEYS) {
            let section = report
                .split("server '")
                .find(|section| section.starts_with(&format!("{name}'")))
                .unwrap_or_else(|| panic!("no {name} in:\n{report}"));
            assert!(
                section.contains(&format!("  protocol: TLSv{tls}")),
                "{name} TLS {tls}:\n{report}"
            );
            assert!(
                section.contains(&format!(
                    "  client certificate: requested (acceptable CAs: CN=Nexus Test CA); sent \"{}\"",
                    subject(key)
                )),
                "{name} TLS {tls}:\n{report}"
            );
            // The handshake and the certificate check passed; only MCP is missing.
            assert!(
                !section.contains("alert") && !section.contains("rejects the client certificate"),
                "{name} TLS {tls}: the client certificate was refused:\n{report}"
            );
        }
    }
}
