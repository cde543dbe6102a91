//! Downstream TLS and the gateway's own HTTPS against real peers: the Python `mcp` server under
//! uvicorn with client certificates required, `openssl s_server -Verify 1 -verify_return_error`
//! (TLS 1.2 and 1.3), the official Python client, and `nexus tls probe`. Every failure asserts
//! the message the user sees; certificates are made at test time (`pki.rs`).

use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::pki::TestPki;
use crate::support::{Gateway, WAIT, free_port, ok, python_client, text, tools, wait_for_port};

/// `py_server.py` over HTTPS with `server_cert` (`server`, `expired`, `wronghost`), client
/// certificates required and issued by the test root CA.
struct PyHttps {
    _child: Child,
    url: String,
}

impl PyHttps {
    async fn spawn(pki: &TestPki, server_cert: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/py_server.py");
        let mut child = Command::new(tools().join("bin/python"))
            .arg(script)
            .arg("--certfile")
            .arg(pki.path(&format!("{server_cert}.pem")))
            .arg("--keyfile")
            .arg(pki.path(&format!("{server_cert}.key")))
            .arg("--cafile")
            .arg(pki.path("ca.pem"))
            .arg("--require-client-cert")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("py_server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("py_server start")
            .unwrap()
            .unwrap();
        let port = line.strip_prefix("LISTENING ").expect("LISTENING line");
        Self {
            _child: child,
            url: format!("https://127.0.0.1:{port}/mcp"),
        }
    }
}

/// One HTTPS downstream `name` at `url` with a `[tls]` table (TOML lines); its protocol is
/// detected.
fn downstream(name: &str, url: &str, tls: &str) -> String {
    format!("[mcp.servers.{name}]\nurl = \"{url}\"\n[mcp.servers.{name}.tls]\n{tls}\n")
}

/// `key = "<pki dir>/file"` lines.
fn files(pki: &TestPki, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, file)| format!("{key} = \"{}\"\n", pki.path(file).display()))
        .collect()
}

fn mtls(pki: &TestPki, client: &str) -> String {
    files(
        pki,
        &[
            ("root_ca_cert_path", "ca.pem"),
            ("client_cert_path", &format!("{client}.pem")),
            ("client_key_path", &format!("{client}.key")),
        ],
    )
}

/// `nexus tls probe` in-process: (all succeeded, report).
async fn probe(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    std::fs::write(&path, toml).unwrap();
    let config = nexus::config::load(&path).unwrap_or_else(|error| panic!("bad config:\n{error}"));
    let mut out = Vec::new();
    let passed = nexus::tls::probe::run(&config, &[], &mut out)
        .await
        .unwrap();
    (passed, String::from_utf8(out).unwrap())
}

/// The `result:` line of a probe report.
fn result_line(report: &str) -> &str {
    report
        .lines()
        .find(|line| line.trim_start().starts_with("result:"))
        .unwrap_or_else(|| panic!("no result in:\n{report}"))
        .trim()
}

/// The gateway's start error for `toml`.
fn start_error(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    std::fs::write(&path, toml).unwrap();
    let config = nexus::config::load(&path).unwrap_or_else(|error| panic!("bad config:\n{error}"));
    match nexus::Nexus::start(&config) {
        Ok(_) => panic!("the gateway started with:\n{toml}"),
        Err(error) => error.to_string(),
    }
}

pub(crate) async fn whoami(gateway_url: &str, server: &str, extra: &[&str]) -> String {
    let run = python_client(
        gateway_url,
        json!([{"op": "call_tool", "name": format!("{server}__whoami"), "arguments": {}}]),
        extra,
    )
    .await;
    text(ok(&run, 0)).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_with_rsa_and_ec_keys_reaches_the_python_server() {
    let pki = TestPki::generate();
    let up = PyHttps::spawn(&pki, "server").await;
    let toml = downstream("rsa", &up.url, &mtls(&pki, "client-rsa"))
        + &downstream("ec", &up.url, &mtls(&pki, "client-ec"));
    let gateway = Gateway::start(&toml, 2).await;
    assert_eq!(
        whoami(&gateway.url, "rsa", &[]).await,
        "CN=nexus-client-rsa"
    );
    assert_eq!(whoami(&gateway.url, "ec", &[]).await, "CN=nexus-client-ec");
    // Calls at once need more pooled connections: their handshakes resume the first session
    // (no new signature with the client key).
    let steps =
        json!([{"op": "concurrent_calls", "name": "rsa__whoami", "arguments": {}, "count": 8}]);
    let run = python_client(&gateway.url, steps, &[]).await;
    assert!(
        ok(&run, 0)
            .as_array()
            .unwrap()
            .iter()
            .all(|call| call.get("ok").is_some()),
        "{run:#}"
    );
    let metrics = metrics(&gateway.base).await;
    assert!(
        metrics.contains("nexus_tls_verification_disabled{server=\"rsa\"} 0"),
        "{metrics}"
    );
    let counter = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|line| line.starts_with(&format!("{name}{{server=\"rsa\"}}")));
        line.and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let (handshakes, resumed) = (
        counter("nexus_tls_handshakes_total"),
        counter("nexus_tls_sessions_resumed_total"),
    );
    assert!(
        handshakes > 1 && resumed > 0,
        "{handshakes} handshakes, {resumed} resumed:\n{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_key_with_the_right_password_file_works_and_a_wrong_one_stops_startup() {
    let pki = TestPki::generate();
    let up = PyHttps::spawn(&pki, "server").await;
    let tls = files(
        &pki,
        &[
            ("root_ca_cert_path", "ca.pem"),
            ("client_cert_path", "client-enc.pem"),
            ("client_key_path", "client-enc.key"),
            ("client_key_password_file", "client-enc.pass"),
        ],
    );
    let gateway = Gateway::start(&downstream("enc", &up.url, &tls), 1).await;
    assert_eq!(
        whoami(&gateway.url, "enc", &[]).await,
        "CN=nexus-client-enc"
    );
    gateway.stop().await;

    let wrong = files(
        &pki,
        &[
            ("root_ca_cert_path", "ca.pem"),
            ("client_cert_path", "client-enc.pem"),
            ("client_key_path", "client-enc.key"),
        ],
    ) + "client_key_password = \"nope\"\n";
    assert_eq!(
        start_error(&downstream("enc", &up.url, &wrong)),
        format!(
            "server 'enc': client_key_path: cannot decrypt {}: wrong password; check client_key_password / key_password (or its _file)",
            pki.path("client-enc.key").display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn material_errors_name_server_key_and_file() {
    let pki = TestPki::generate();
    let url = "https://127.0.0.1:9/mcp";
    let mismatch = files(
        &pki,
        &[
            ("client_cert_path", "client-rsa.pem"),
            ("client_key_path", "client-ec.key"),
        ],
    );
    assert_eq!(
        start_error(&downstream("up", url, &mismatch)),
        format!(
            "server 'up': client_cert_path {} does not match client_key_path {}: the key is not the certificate's private key; configure the key that was used to request this certificate",
            pki.path("client-rsa.pem").display(),
            pki.path("client-ec.key").display()
        )
    );
    let no_password = files(
        &pki,
        &[
            ("client_cert_path", "client-enc.pem"),
            ("client_key_path", "client-enc.key"),
        ],
    );
    assert!(start_error(&downstream("up", url, &no_password)).ends_with("the key is encrypted but no password is configured; check client_key_password / key_password (or its _file)"));
    let not_a_cert = files(
        &pki,
        &[
            ("client_cert_path", "client-rsa.key"),
            ("client_key_path", "client-rsa.key"),
        ],
    );
    let error = start_error(&downstream("up", url, &not_a_cert));
    assert!(
        error.starts_with(&format!(
            "server 'up': client_cert_path: {} is not a PEM file with certificates:",
            pki.path("client-rsa.key").display()
        )),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_reports_verdicts_and_mapped_failures() {
    let pki = TestPki::generate();
    let good = PyHttps::spawn(&pki, "server").await;
    let expired = PyHttps::spawn(&pki, "expired").await;
    let wronghost = PyHttps::spawn(&pki, "wronghost").await;

    let (passed, report) = probe(&downstream("good", &good.url, &mtls(&pki, "client-rsa"))).await;
    assert!(passed, "{report}");
    assert!(
        report.contains("  verification: chain and hostname verified (ok) for \"127.0.0.1\""),
        "{report}"
    );
    assert!(
        report.contains("  initialize: protocol 2025-11-25 from nexus-py-test-server"),
        "{report}"
    );

    // Chain bundle (intermediate + root) as root_ca_cert_path.
    let bundle = files(
        &pki,
        &[
            ("root_ca_cert_path", "chain-bundle.pem"),
            ("client_cert_path", "client-ec.pem"),
            ("client_key_path", "client-ec.key"),
        ],
    );
    let (passed, report) = probe(&downstream("bundle", &good.url, &bundle)).await;
    assert!(passed, "{report}");

    let system = files(
        &pki,
        &[
            ("client_cert_path", "client-ec.pem"),
            ("client_key_path", "client-ec.key"),
        ],
    );
    let (passed, report) = probe(&downstream("system", &good.url, &system)).await;
    assert!(!passed);
    assert_eq!(
        result_line(&report),
        "result: FAILED: certificate verify failed: unable to get local issuer certificate (issuer \"CN=Nexus Test Root CA\" is not in the system trust store); set root_ca_cert_path to the CA that issued the server's certificate"
    );

    let rogue = files(&pki, &[("root_ca_cert_path", "rogue-ca.pem")]);
    let (_, report) = probe(&downstream("rogue", &good.url, &rogue)).await;
    assert!(result_line(&report).starts_with("result: FAILED: certificate verify failed: unable to get local issuer certificate (issuer \"CN=Nexus Test Root CA\" is not in root_ca_cert_path); set root_ca_cert_path"), "{report}");

    let (_, report) = probe(&downstream("old", &expired.url, &mtls(&pki, "client-rsa"))).await;
    assert_eq!(
        result_line(&report),
        "result: FAILED: certificate verify failed: certificate has expired (\"CN=localhost\", not after Sep 14 12:26:40 2020 GMT); renew it, or check this machine's clock"
    );

    let (_, report) = probe(&downstream(
        "host",
        &wronghost.url,
        &mtls(&pki, "client-rsa"),
    ))
    .await;
    assert_eq!(
        result_line(&report),
        "result: FAILED: hostname mismatch: the certificate is valid for \"elsewhere.example\" but not for \"127.0.0.1\"; fix the server's certificate (CN/SAN), set server_name to one of those names, or, for development only, set accept_invalid_hostnames = true"
    );
    let relaxed = mtls(&pki, "client-rsa") + "accept_invalid_hostnames = true\n";
    let (passed, report) = probe(&downstream("host", &wronghost.url, &relaxed)).await;
    assert!(passed, "{report}");
    assert!(
        report.contains("hostname not checked (accept_invalid_hostnames = true)"),
        "{report}"
    );

    let no_cert = files(&pki, &[("root_ca_cert_path", "ca.pem")]);
    let (_, report) = probe(&downstream("anon", &good.url, &no_cert)).await;
    assert_eq!(
        result_line(&report),
        "result: FAILED: the server closed the connection right after the TLS 1.3 handshake (closed without an answer): under TLS 1.3 this is how a server rejects the client certificate; set client_cert_path and client_key_path"
    );

    let (passed, report) =
        probe(&downstream("dev", &wronghost.url, "verify_certs = false\n")).await;
    assert!(
        report.contains("  verification: NOT verified (verify_certs = false)"),
        "{report}"
    );
    assert!(
        !passed,
        "the server still wants a client certificate:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn system_store_honours_ssl_cert_file() {
    let pki = TestPki::generate();
    let up = PyHttps::spawn(&pki, "server").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nexus.toml");
    let tls = files(
        &pki,
        &[
            ("client_cert_path", "client-ec.pem"),
            ("client_key_path", "client-ec.key"),
        ],
    );
    std::fs::write(&config, downstream("sys", &up.url, &tls)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["tls", "probe", "--config"])
        .arg(&config)
        .env("SSL_CERT_FILE", pki.path("ca.pem"))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("  result: OK"), "{report}");
}

/// mTLS trusting the intermediate too: s_server sends only the leaf of its `-cert` file.
fn bundle_mtls(pki: &TestPki, client: &str) -> String {
    files(
        pki,
        &[
            ("root_ca_cert_path", "chain-bundle.pem"),
            ("client_cert_path", &format!("{client}.pem")),
            ("client_key_path", &format!("{client}.key")),
        ],
    )
}

/// `openssl s_server -Verify 1 -verify_return_error -www` on a free port with `version`.
async fn s_server(pki: &TestPki, version: &str) -> (Child, String) {
    let port = free_port().await;
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-Verify",
            "1",
            "-verify_return_error",
            version,
        ])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(pki.path("server.pem"))
        .arg("-key")
        .arg(pki.path("server.key"))
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    wait_for_port(port).await;
    (child, format!("https://127.0.0.1:{port}/mcp"))
}

#[tokio::test(flavor = "multi_thread")]
async fn s_server_client_certificate_verdicts_under_tls12_and_tls13() {
    let pki = TestPki::generate();
    let (_tls12, url12) = s_server(&pki, "-tls1_2").await;
    let anonymous = files(&pki, &[("root_ca_cert_path", "chain-bundle.pem")]);
    let (_, report) = probe(&downstream("s12", &url12, &anonymous)).await;
    assert_eq!(
        result_line(&report),
        "result: FAILED: sslv3 alert handshake failure: the server wants a client certificate it trusts; set client_cert_path and client_key_path"
    );
    let rogue = files(
        &pki,
        &[
            ("root_ca_cert_path", "chain-bundle.pem"),
            ("client_cert_path", "rogue-client.pem"),
            ("client_key_path", "rogue-client.key"),
        ],
    );
    let (_, report) = probe(&downstream("s12", &url12, &rogue)).await;
    assert_eq!(
        result_line(&report),
        "result: FAILED: tlsv1 alert unknown ca: the server wants a client certificate it trusts; check that client_cert_path/client_key_path hold a certificate issued by a CA the server trusts"
    );
    let (_, report) = probe(&downstream("s12", &url12, &bundle_mtls(&pki, "client-rsa"))).await;
    assert!(report.contains("  protocol: TLSv1.2"), "{report}");
    assert!(report.contains("  client certificate: requested (acceptable CAs: CN=Nexus Test Root CA); sent \"CN=nexus-client-rsa\""), "{report}");

    let (_tls13, url13) = s_server(&pki, "-tls1_3").await;
    let (_, report) = probe(&downstream("s13", &url13, &anonymous)).await;
    assert!(result_line(&report).contains("under TLS 1.3 this is how a server rejects the client certificate; set client_cert_path and client_key_path"), "{report}");
    let (_, report) = probe(&downstream("s13", &url13, &bundle_mtls(&pki, "client-ec"))).await;
    assert!(report.contains("  protocol: TLSv1.3"), "{report}");
    let (_, report) = probe(&downstream(
        "s13",
        &url13,
        &(anonymous.clone() + "min_tls_version = \"1.3\"\n"),
    ))
    .await;
    assert!(
        report.contains("  protocol: TLSv1.3") || report.contains("result: FAILED"),
        "{report}"
    );
}

async fn metrics(base: &str) -> String {
    let (status, _, body) = crate::support::raw(
        http::Method::GET,
        &format!("{base}/metrics"),
        http::HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(status, http::StatusCode::OK);
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_https_requires_client_certificates_from_its_ca() {
    let pki = TestPki::generate();
    let toml = format!(
        "[server.tls]\n{}",
        files(
            &pki,
            &[
                ("certificate", "server.pem"),
                ("key", "server.key"),
                ("client_ca_cert_path", "ca.pem")
            ]
        )
    );
    let gateway = Gateway::start_unconnected(&toml).await;
    let url = gateway.url.replacen("http://", "https://", 1);
    let ca = pki.path("chain-bundle.pem");
    let (cert, key) = (pki.path("client-ec.pem"), pki.path("client-ec.key"));
    let with_cert = [
        "--cafile",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let run = python_client(&url, json!([{"op": "list_tools"}]), &with_cert).await;
    assert_eq!(
        crate::support::names(ok(&run, 0), "tools"),
        ["search", "execute"]
    );
    let run = python_client(
        &url,
        json!([{"op": "list_tools"}]),
        &["--cafile", ca.to_str().unwrap()],
    )
    .await;
    let fatal = run["fatal"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate, yet served: {run:#}"));
    assert!(
        fatal.starts_with("httpx2.ReadError")
            || fatal.contains("CERTIFICATE_REQUIRED")
            || fatal.contains("ConnectError"),
        "{fatal}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_rotates_the_client_certificate_while_the_session_stays_open() {
    let pki = TestPki::generate();
    let up = PyHttps::spawn(&pki, "server").await;
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = (
        work.path().join("client.pem"),
        work.path().join("client.key"),
    );
    std::fs::copy(pki.path("client-rsa.pem"), &cert).unwrap();
    std::fs::copy(pki.path("client-rsa.key"), &key).unwrap();
    let tls = format!(
        "root_ca_cert_path = \"{}\"\nclient_cert_path = \"{}\"\nclient_key_path = \"{}\"\n",
        pki.path("ca.pem").display(),
        cert.display(),
        key.display()
    );
    let path = work.path().join("nexus.toml");
    std::fs::write(&path, downstream("up", &up.url, &tls)).unwrap();
    let config = nexus::config::load(&path).unwrap();
    let reloader = std::sync::Arc::new(nexus::Nexus::start(&config).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let (nexus, shutdown) = (reloader.clone(), shutdown.clone());
        async move { nexus.run(listener, shutdown).await }
    });
    let url = format!("{base}/mcp");
    wait_connected(&base).await;

    // A bad new key is refused: the old material stays and calls keep working.
    std::fs::write(&key, "not a key").unwrap();
    let report = reloader.reload_tls();
    let refused = report.downstreams[0]
        .result
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(
        refused.starts_with(&format!(
            "client_key_path: {} is not a PEM private key",
            key.display()
        )),
        "{refused}"
    );
    assert_eq!(whoami(&url, "up", &[]).await, "CN=nexus-client-rsa");

    std::fs::copy(pki.path("client-b.pem"), &cert).unwrap();
    std::fs::copy(pki.path("client-b.key"), &key).unwrap();
    // One client session spans the reload: its calls before and after both succeed.
    let steps = json!([
        {"op": "call_tool", "name": "up__whoami", "arguments": {}},
        {"op": "sleep", "seconds": 1.5},
        {"op": "concurrent_calls", "name": "up__whoami", "arguments": {}, "count": 6},
    ]);
    let session = tokio::spawn(async move { python_client(&url, steps, &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(reloader.reload_tls().downstreams[0].result.is_ok());
    let run = session.await.unwrap();
    assert_eq!(text(ok(&run, 0)), "CN=nexus-client-rsa");
    let subjects: Vec<&str> = ok(&run, 2)
        .as_array()
        .unwrap()
        .iter()
        .map(|call| text(&call["ok"]))
        .collect();
    assert!(
        subjects.contains(&"CN=nexus-client-b"),
        "new connections use the new certificate: {subjects:?}"
    );
    shutdown.cancel();
    serving.await.unwrap();
}

async fn wait_connected(base: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, _, body) = crate::support::raw(
            http::Method::GET,
            &format!("{base}/health"),
            http::HeaderMap::new(),
            None,
        )
        .await;
        let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if health["downstreams"]["connected"] == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not connected: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_a_server_that_fails_tls_says_why() {
    let pki = TestPki::generate();
    let up = PyHttps::spawn(&pki, "server").await;
    // No root_ca_cert_path: the test CA is not in the system store.
    let tls = files(
        &pki,
        &[
            ("client_cert_path", "client-rsa.pem"),
            ("client_key_path", "client-rsa.key"),
        ],
    );
    let gateway = Gateway::start_unconnected(&downstream("up", &up.url, &tls)).await;
    let session = crate::support::RawSession::open(&gateway.url).await;
    let message = crate::support::wait_for("a mapped TLS error on the call", || async {
        let answer = session.call(2, "up__whoami", json!({})).await;
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        message.contains("last error").then_some(message)
    })
    .await;
    assert!(
        message.starts_with("server 'up' is not connected (last error: "),
        "{message}"
    );
    assert!(
        message.contains("unable to get local issuer certificate")
            && message.contains("set root_ca_cert_path"),
        "{message}"
    );
    gateway.stop().await;
}
