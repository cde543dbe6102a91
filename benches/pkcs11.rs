//! New mutual-TLS handshakes per second with a PEM key versus the same kind of key on a
//! SoftHSM2 token (RSA-2048 and P-256), same run, same machine, against `openssl s_server`.
//! Target: token-key handshakes at >= 80 % of the PEM rate.
//!
//! Then the same through the `nexus` binary: new mutual-TLS handshakes/s to the gateway's own
//! HTTPS listener (`[server.tls] key` PEM vs token; every handshake is one signature by that
//! key), and tools/call/s through the gateway over kept-alive connections to the Python `mcp`
//! server requiring client certificates (`client_key_path` PEM vs token).
//!
//! `cargo build --release --example pkcs11_probe && cargo bench --bench pkcs11` (plain
//! `cargo bench` builds the example itself). `NEXUS_BENCH_HANDSHAKES`: handshakes per run (400).
//! The calls part needs the test tools (`NEXUS_TEST_TOOLS`, Python with `mcp`); without them it
//! is skipped with a note.

#[path = "gateway/http_client.rs"]
#[allow(dead_code)] // the gateway bench's client; this bench uses sessions and requests only
mod http_client;
#[path = "../tests/pkcs11_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{KEYS, Pki, TestKey, handshake_args, private_uri};

/// What `http_client` returns on failure.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

const TARGET: f64 = 0.80;

fn main() {
    // libtest passes `--bench`; nothing else to parse.
    let count: usize = std::env::var("NEXUS_BENCH_HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let pki = Pki::new();
    let kinds = [
        (KEYS[0], "RSA:2048", "RSA-2048"),
        (KEYS[1], "EC:P-256", "P-256"),
    ];
    for (key, _, _) in kinds {
        pem_twin(&pki, key);
    }
    println!(
        "mTLS handshakes/s, best of 2 alternating runs of {count}; client: 2 tokio workers; server: openssl s_server (one thread)"
    );
    println!("| key | TLS | concurrency | PEM hs/s | token hs/s | token/PEM | target |");
    println!("|---|---|---|---|---|---|---|");
    let mut all_met = true;
    for tls in ["1.3", "1.2"] {
        let server = pki.s_server(tls);
        for (key, _, name) in kinds {
            for concurrency in [1, 16] {
                let (n, c) = (count.to_string(), concurrency.to_string());
                let load = ["--count", n.as_str(), "--concurrency", c.as_str()];
                let (port, uri) = (server.port(), private_uri(key));
                let (pem_key, pem_crt) = pem_twin_names(key);
                let pem = handshake_args(["--key-pem", &pem_key], &pem_crt, &port, tls, &load);
                let token = handshake_args(["--key", &uri], &pki.cert(key), &port, tls, &load);
                let (pem, token) = best_of_two(
                    || handshake_rate(&pki, &pem, name),
                    || handshake_rate(&pki, &token, name),
                );
                all_met &= handshake_row(&format!("{name} | {tls} | {concurrency}"), pem, token);
            }
        }
    }
    all_met &= gateway_handshakes(&pki, &kinds, count);
    gateway_calls(&pki, &kinds);
    println!(
        "\ntarget (token >= {:.0} % of PEM handshakes/s): {}",
        TARGET * 100.0,
        if all_met {
            "met in every row"
        } else {
            "missed in some rows"
        }
    );
}

/// `nexus --config` (written to the test dir as `name.toml`) on a free port with the token's
/// `SOFTHSM2_CONF`; returns the child and port once it accepts connections.
fn nexus(pki: &Pki, name: &str, toml: &str) -> (Child, u16) {
    let config = pki.path(&format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut child = pki
        .command(env!("CARGO_BIN_EXE_nexus"))
        .arg("--config")
        .arg(&config)
        .args(["-l", &format!("127.0.0.1:{port}"), "--log", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start nexus");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nexus {name} exited: {status}");
        }
        assert!(Instant::now() < deadline, "nexus {name} not listening");
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, port)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn pkcs11_table(pki: &Pki) -> String {
    format!(
        "[pkcs11]\nmodule_path = \"{}\"\npin_file = \"{}\"\n",
        pki.module.display(),
        pki.pin_file.display()
    )
}

/// The gateway's own HTTPS with a PEM key and with the token key of the same type: new
/// handshakes/s from the probe (PEM client certificate, no resumption) doing `GET /health`.
fn gateway_handshakes(pki: &Pki, kinds: &[(TestKey, &str, &str)], count: usize) -> bool {
    println!(
        "\nthrough the gateway: new mTLS handshakes/s to its HTTPS listener ([server.tls] key PEM vs token), GET /health each, best of 2 alternating runs of {count}"
    );
    println!("| server key | TLS | concurrency | PEM hs/s | token hs/s | token/PEM | target |");
    println!("|---|---|---|---|---|---|---|");
    let mut all_met = true;
    for &(key, algorithm, name) in kinds {
        let (pem_key, pem_pub, pem_crt, token_crt) = (
            pki.path(&format!("{}.srv.key", key.id)),
            format!("{}.srv.pub.pem", key.id),
            format!("{}.srv.crt", key.id),
            format!("{}.tok.crt", key.id),
        );
        let pem_key_arg = pem_key.display().to_string();
        pki.run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                algorithm.split(':').next().unwrap(),
                "-pkeyopt",
                if algorithm.starts_with("RSA") {
                    "rsa_keygen_bits:2048"
                } else {
                    "ec_paramgen_curve:P-256"
                },
                "-out",
                &pem_key_arg,
            ],
        );
        pki.run(
            "openssl",
            &["pkey", "-in", &pem_key_arg, "-pubout", "-out", &pem_pub],
        );
        pki.server_cert(&pem_pub, &pem_crt);
        pki.server_cert(&format!("{}.pub.pem", key.id), &token_crt);
        let tls = |cert: &str, key: &str| {
            format!(
                "{}[server.tls]\ncertificate = \"{}\"\nkey = \"{key}\"\nclient_ca_cert_path = \"{}\"\n",
                pkcs11_table(pki),
                pki.path(cert).display(),
                pki.path("ca.crt").display()
            )
        };
        let (pem_gateway, pem_port) = nexus(
            pki,
            &format!("hs-pem-{}", key.id),
            &tls(&pem_crt, &pem_key_arg),
        );
        let (token_gateway, token_port) = nexus(
            pki,
            &format!("hs-token-{}", key.id),
            &tls(&token_crt, &private_uri(key)),
        );
        // The client: the PEM client certificate of `pem_twin` (RSA-2048), same for both.
        let (client_key, client_cert) = pem_twin_names(KEYS[0]);
        for version in ["1.3", "1.2"] {
            for concurrency in [1, 16] {
                let (n, c) = (count.to_string(), concurrency.to_string());
                let load = ["--path", "/health", "--count", &n, "--concurrency", &c];
                let args = |port: u16| {
                    let key = ["--key-pem", client_key.as_str()];
                    handshake_args(key, &client_cert, &port.to_string(), version, &load)
                };
                let (pem_args, token_args) = (args(pem_port), args(token_port));
                let (pem, token) = best_of_two(
                    || handshake_rate(pki, &pem_args, name),
                    || handshake_rate(pki, &token_args, name),
                );
                all_met &=
                    handshake_row(&format!("{name} | {version} | {concurrency}"), pem, token);
            }
        }
        stop(pem_gateway);
        stop(token_gateway);
    }
    all_met
}

/// tools/call/s through the gateway to the Python server requiring client certificates, the
/// gateway's client key PEM vs token; 8 MCP sessions over kept-alive connections.
fn gateway_calls(pki: &Pki, kinds: &[(TestKey, &str, &str)]) {
    const SESSIONS: usize = 8;
    const RUN: Duration = Duration::from_secs(3);
    let Some(python) = std::env::var_os("NEXUS_TEST_TOOLS")
        .map(|tools| PathBuf::from(tools).join("bin/python"))
        .filter(|python| python.exists())
    else {
        println!(
            "\n(tools/call/s skipped: set NEXUS_TEST_TOOLS to the test tools with Python mcp)"
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/py_server.py");
    let mut server = std::process::Command::new(python)
        .arg(script)
        .args([
            "--certfile",
            "server.crt",
            "--keyfile",
            "server.key",
            "--cafile",
            "ca.crt",
        ])
        .arg("--require-client-cert")
        .current_dir(pki.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("py_server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("py_server LISTENING line");
    let port: u16 = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("py_server printed {line:?}"));
    println!(
        "\nthrough the gateway: tools/call/s (echo) over kept-alive connections, {SESSIONS} sessions, {} s per run, best of 2 alternating; downstream: Python mcp server over mTLS",
        RUN.as_secs()
    );
    println!("| client key | PEM calls/s | token calls/s | token/PEM |");
    println!("|---|---|---|---|");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for &(key, _, name) in kinds {
        let config = |cert: String, client_key: String| {
            format!(
                "{}[mcp.servers.up]\nurl = \"https://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n\
                 [mcp.servers.up.tls]\nroot_ca_cert_path = \"{}\"\nserver_name = \"localhost\"\n\
                 client_cert_path = \"{cert}\"\nclient_key_path = \"{client_key}\"\n",
                pkcs11_table(pki),
                pki.path("ca.crt").display()
            )
        };
        let (pem_key, pem_crt) = pem_twin_names(key);
        let path = |name: &str| pki.path(name).display().to_string();
        let pem = config(path(&pem_crt), path(&pem_key));
        let token = config(pki.cert(key), private_uri(key));
        let (pem_gateway, pem_port) = nexus(pki, &format!("calls-pem-{}", key.id), &pem);
        let (token_gateway, token_port) = nexus(pki, &format!("calls-token-{}", key.id), &token);
        let (pem_rate, token_rate) = best_of_two(
            || runtime.block_on(calls(pem_port, SESSIONS, RUN)),
            || runtime.block_on(calls(token_port, SESSIONS, RUN)),
        );
        println!(
            "| {name} | {pem_rate:.0} | {token_rate:.0} | {:.0} % |",
            token_rate / pem_rate * 100.0
        );
        stop(pem_gateway);
        stop(token_gateway);
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Calls/s of `up__echo` from `sessions` concurrent MCP sessions for `run` (after a warm-up).
async fn calls(port: u16, sessions: usize, run: Duration) -> f64 {
    let http = http_client::McpHttp::new(format!("http://127.0.0.1:{port}/mcp").parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    // The downstream connects in the background: wait until the tool answers.
    let first = loop {
        let session = http
            .open_session()
            .await
            .expect("MCP session to the gateway");
        if call(&session).await.is_ok() {
            break session;
        }
        assert!(Instant::now() < deadline, "up__echo never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut all = vec![first];
    for _ in 1..sessions {
        all.push(http.open_session().await.expect("MCP session"));
    }
    for session in &all {
        for _ in 0..5 {
            call(session).await.expect("warm-up call");
        }
    }
    let started = Instant::now();
    let tasks: Vec<_> = all
        .into_iter()
        .map(|session| {
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < run {
                    call(&session)
                        .await
                        .expect("tools/call through the gateway");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn call(session: &http_client::HttpSession) -> Result<serde_json::Value, BenchError> {
    session
        .request(
            "tools/call",
            serde_json::json!({"name": "up__echo", "arguments": {"message": "x"}}),
        )
        .await
}

/// A PEM key of the same type, with a certificate from the same CA.
/// The files of a key's PEM twin, relative to the test dir: its private key and certificate.
fn pem_twin_names(key: TestKey) -> (String, String) {
    (format!("{}.pem.key", key.id), format!("{}.pem.crt", key.id))
}

fn pem_twin(pki: &Pki, key: TestKey) {
    let (pem, crt) = pem_twin_names(key);
    let csr = format!("{}.pem.csr", key.id);
    let algorithm: &[&str] = if key.key_type.starts_with("rsa") {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    };
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-keyout",
        &pem,
        "-out",
        &csr,
        "-subj",
        "/CN=client-pem",
    ];
    args.extend_from_slice(algorithm);
    pki.run("openssl", &args);
    let public = format!("{}.pem.pub", key.id);
    pki.run(
        "openssl",
        &["pkey", "-in", &pem, "-pubout", "-out", &public],
    );
    pki.issue(&public, "/CN=client-pem", "client.ext", &crt);
}

/// Handshakes/s the probe reached with `args` (from `handshake_args`); `what` names the run.
fn handshake_rate(pki: &Pki, args: &[String], what: &str) -> f64 {
    let result = pki.probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(result["ok"], true, "{what}: {result:#}");
    result["per_second"].as_f64().unwrap_or(0.0)
}

/// The best of two alternating runs of each side, so order and noise favour neither.
fn best_of_two(mut pem: impl FnMut() -> f64, mut token: impl FnMut() -> f64) -> (f64, f64) {
    let (mut best_pem, mut best_token) = (0.0f64, 0.0f64);
    for _ in 0..2 {
        best_pem = best_pem.max(pem());
        best_token = best_token.max(token());
    }
    (best_pem, best_token)
}

/// Prints a handshake table row (`cells`: its leading columns); whether it met the target.
fn handshake_row(cells: &str, pem: f64, token: f64) -> bool {
    let ratio = token / pem;
    let met = ratio >= TARGET;
    let verdict = if met { "met" } else { "MISSED" };
    println!(
        "| {cells} | {pem:.0} | {token:.0} | {:.0} % | {verdict} |",
        ratio * 100.0
    );
    met
}
