//! Token keys end to end: a SoftHSM2 token per test, mutual TLS against `openssl s_server`
//! with `-Verify 1 -verify_return_error`, failure reports, and pkcs11-spy's record of the
//! mechanisms used. Each scenario runs in a child process (`pkcs11_probe`, `nexus`) that gets
//! `SOFTHSM2_CONF` in its environment.

#[path = "pkcs11_support/mod.rs"]
mod support;

use serde_json::Value;
use support::{KEYS, PIN, Pki, TestKey, mechanisms_used, private_uri};

#[track_caller]
fn assert_ok(result: &Value, what: &str) {
    assert_eq!(result["ok"], true, "{what}: {result:#}");
}

/// The probe's arguments for one mTLS handshake with `key` on the token.
fn handshake_args(pki: &Pki, key: TestKey, port: &str, tls: &str, extra: &[&str]) -> Vec<String> {
    let uri = private_uri(key);
    support::handshake_args(["--key", &uri], &pki.cert(key), port, tls, extra)
}

fn handshake(pki: &Pki, key: TestKey, port: &str, tls: &str, extra: &[&str]) -> Value {
    let args = handshake_args(pki, key, port, tls, extra);
    pki.probe(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn every_key_type_signs_for_tls13_and_tls12() {
    let pki = Pki::new();
    for tls in ["1.3", "1.2"] {
        let server = pki.s_server(tls);
        for key in KEYS {
            let result = handshake(&pki, key, &server.port(), tls, &["--count", "2"]);
            assert_ok(&result, &format!("{} over TLS {tls}", key.label));
            assert_eq!(result["handshakes"], 2);
        }
    }
}

#[test]
fn tls12_pkcs1_signatures_when_the_peer_asks() {
    let pki = Pki::new();
    let server = pki.s_server("1.2");
    let result = handshake(&pki, KEYS[0], &server.port(), "1.2", &["--pkcs1"]);
    assert_ok(&result, "RSA PKCS#1 v1.5 over TLS 1.2");
}

#[test]
fn concurrent_handshakes_and_recovery_after_closed_sessions() {
    let pki = Pki::new();
    let server = pki.s_server("1.3");
    for key in [KEYS[0], KEYS[1]] {
        let result = handshake(
            &pki,
            key,
            &server.port(),
            "1.3",
            &["--count", "32", "--concurrency", "32"],
        );
        assert_ok(
            &result,
            &format!("32 concurrent handshakes with {}", key.label),
        );
        assert_eq!(result["handshakes"], 32);
        // C_CloseAllSessions from a second handle after 20 handshakes: the rest still succeed.
        let result = handshake(
            &pki,
            key,
            &server.port(),
            "1.3",
            &[
                "--count",
                "64",
                "--concurrency",
                "8",
                "--close-sessions-at",
                "20",
            ],
        );
        assert_ok(
            &result,
            &format!("handshakes across C_CloseAllSessions with {}", key.label),
        );
        assert_eq!(result["handshakes"], 64);
    }
}

#[test]
fn wrong_pin_is_reported_and_never_tried_twice() {
    let pki = Pki::new();
    std::fs::write(&pki.pin_file, "wrong-pin\n").unwrap();
    let log = pki.path("spy-wrong-pin.log");
    let uri = private_uri(KEYS[0]);
    let result = pki.probe_spied(&log, &["load", "--key", &uri, "--twice"]);
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HSM login to token \"nexus\" failed: CKR_PIN_INCORRECT"),
        "{result:#}"
    );
    assert!(
        error.contains(&format!("check pin_file {}", pki.pin_file.display())),
        "{error}"
    );
    let second = result["second_error"].as_str().unwrap_or_default();
    assert!(second.contains("rejected the PIN earlier"), "{result:#}");
    let spy = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        spy.matches("C_Login").count(),
        1,
        "exactly one C_Login:\n{spy}"
    );
}

#[test]
fn missing_and_ambiguous_objects_are_named() {
    let pki = Pki::new();
    let missing = pki.probe(&[
        "load",
        "--key",
        "pkcs11:token=nexus;object=nothere;type=private",
    ]);
    let error = missing["error"].as_str().unwrap_or_default();
    assert!(error.contains("no private key matching pkcs11:token=nexus;object=nothere;type=private on token \"nexus\""), "{missing:#}");
    let ambiguous = pki.probe(&["load", "--key", "pkcs11:token=nexus;type=private"]);
    let error = ambiguous["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("3 objects match") && error.contains("object=rsakey;id=%01"),
        "{ambiguous:#}"
    );
    let no_token = pki.probe(&["load", "--key", "pkcs11:token=absent;object=rsakey"]);
    let error = no_token["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no token matching pkcs11:token=absent") && error.contains("\"nexus\""),
        "{no_token:#}"
    );
}

#[test]
fn certificate_must_match_the_key() {
    let pki = Pki::new();
    let (uri, other) = (private_uri(KEYS[0]), pki.cert(KEYS[1]));
    let result = pki.probe(&["load", "--key", &uri, "--cert", &other]);
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "the certificate does not match the private key pkcs11:token=nexus;object=rsakey"
        ),
        "{result:#}"
    );
    let cert = pki.cert(KEYS[0]);
    assert_ok(
        &pki.probe(&["load", "--key", &uri, "--cert", &cert]),
        "matching certificate",
    );
}

#[test]
fn certificate_stored_on_the_token_is_loaded() {
    let pki = Pki::new();
    pki.run(
        "openssl",
        &[
            "x509",
            "-in",
            "01.crt",
            "-outform",
            "DER",
            "-out",
            "01.crt.der",
        ],
    );
    pki.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--write-object",
        "01.crt.der",
        "--type",
        "cert",
        "--id",
        "01",
        "--label",
        "rsakey",
    ]);
    let result = pki.probe(&[
        "load",
        "--key",
        "pkcs11:token=nexus;id=%01;type=private",
        "--cert-uri",
        "pkcs11:token=nexus;id=%01;type=cert",
    ]);
    assert_ok(&result, "certificate from the token");
}

#[test]
fn spy_log_shows_pss_ecdsa_pkcs1_and_never_raw_rsa() {
    let pki = Pki::new();
    let log = pki.path("spy.log");
    let (tls13, tls12) = (pki.s_server("1.3"), pki.s_server("1.2"));
    let (port13, port12) = (tls13.port(), tls12.port());
    let runs: [(TestKey, &str, &str, &[&str]); 3] = [
        (KEYS[0], "1.3", &port13, &[]),
        (KEYS[1], "1.3", &port13, &[]),
        (KEYS[0], "1.2", &port12, &["--pkcs1"]),
    ];
    for (key, tls, port, extra) in runs {
        let args = handshake_args(&pki, key, port, tls, extra);
        assert_ok(
            &pki.probe_spied(&log, &args.iter().map(String::as_str).collect::<Vec<_>>()),
            &format!("{} TLS {tls} through pkcs11-spy", key.label),
        );
    }
    let spy = std::fs::read_to_string(&log).unwrap();
    let mechanisms = mechanisms_used(&spy);
    let used = |mechanism: &str| mechanisms.iter().any(|m| m == mechanism);
    assert!(used("CKM_RSA_PKCS_PSS"), "no CKM_RSA_PKCS_PSS in:\n{spy}");
    assert!(used("CKM_ECDSA"), "no CKM_ECDSA in:\n{spy}");
    assert!(used("CKM_RSA_PKCS"), "no CKM_RSA_PKCS in:\n{spy}");
    assert!(!spy.contains("CKM_RSA_X_509"), "raw RSA was used:\n{spy}");
}

#[test]
fn list_shows_keys_with_their_uris_and_never_the_pin() {
    let pki = Pki::new();
    let pin_file = pki.pin_file.display().to_string();
    let module = pki.module.display().to_string();
    let output = pki
        .command(env!("CARGO_BIN_EXE_nexus"))
        .args([
            "pkcs11",
            "list",
            "--module",
            &module,
            "--pin-file",
            &pin_file,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "token \"nexus\"",
        "private key: object=rsakey id=%01 RSA, 2048 bits",
        "pkcs11:token=nexus;object=eckey;id=%02;type=private",
        "P-384",
        "sensitive, non-extractable",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains(PIN), "the PIN was printed:\n{stdout}");
}

#[test]
fn list_without_a_module_names_the_modules_found() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["pkcs11", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("pass --module PATH") && stderr.contains("libsofthsm2.so"),
        "{stderr}"
    );
}

#[test]
fn lost_sessions_mean_one_new_login_and_a_retry() {
    let pki = Pki::new();
    let server = pki.s_server("1.3");
    let log = pki.path("spy-recovery.log");
    let extra = ["--count", "10", "--close-sessions-at", "5"];
    let args = handshake_args(&pki, KEYS[1], &server.port(), "1.3", &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = pki.probe_spied(&log, &args);
    assert_ok(&result, "handshakes across C_CloseAllSessions");
    assert_eq!(result["handshakes"], 10);
    let spy = std::fs::read_to_string(&log).unwrap();
    assert!(
        spy.contains("C_CloseAllSessions"),
        "the sessions were not closed:\n{spy}"
    );
    assert!(
        spy.contains("CKR_SESSION_HANDLE_INVALID"),
        "no lost session seen:\n{spy}"
    );
    assert_eq!(
        spy.matches("C_Login").count(),
        2,
        "one login at start, one after the loss:\n{spy}"
    );
}
