//! New mutual-TLS handshakes per second with a PEM key versus the same kind of key on a
//! SoftHSM2 token (RSA-2048 and P-256), same run, same machine, against `openssl s_server`.
//! Target: token-key handshakes at >= 80 % of the PEM rate.
//!
//! `cargo build --release --example pkcs11_probe && cargo bench --bench pkcs11` (plain
//! `cargo bench` builds the example itself). `NEXUS_BENCH_HANDSHAKES`: handshakes per run (400).

#[path = "../tests/pkcs11_support/mod.rs"]
mod support;

use support::{KEYS, Pki, TestKey};

const TARGET: f64 = 0.80;

fn main() {
    // libtest passes `--bench`; nothing else to parse.
    let count: usize = std::env::var("NEXUS_BENCH_HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let pki = Pki::new();
    let kinds = [
        (KEYS[0], "rsa:2048", "RSA-2048"),
        (KEYS[1], "ec:P-256", "P-256"),
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
                // Alternate and keep the best of two, so order and noise favour neither side.
                let (mut pem, mut token) = (0.0f64, 0.0f64);
                for _ in 0..2 {
                    pem = pem.max(run(
                        &pki,
                        key,
                        &server.port(),
                        tls,
                        concurrency,
                        count,
                        true,
                    ));
                    token = token.max(run(
                        &pki,
                        key,
                        &server.port(),
                        tls,
                        concurrency,
                        count,
                        false,
                    ));
                }
                let ratio = token / pem;
                all_met &= ratio >= TARGET;
                let verdict = if ratio >= TARGET { "met" } else { "MISSED" };
                println!(
                    "| {name} | {tls} | {concurrency} | {pem:.0} | {token:.0} | {:.0} % | {verdict} |",
                    ratio * 100.0
                );
            }
        }
    }
    println!(
        "\ntarget (token >= {:.0} % of PEM): {}",
        TARGET * 100.0,
        if all_met {
            "met in every row"
        } else {
            "missed in some rows"
        }
    );
}

/// A PEM key of the same type, with a certificate from the same CA.
fn pem_twin(pki: &Pki, key: TestKey) {
    let (pem, csr, crt) = (
        format!("{}.pem.key", key.id),
        format!("{}.pem.csr", key.id),
        format!("{}.pem.crt", key.id),
    );
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
    pki.run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            &crt,
        ],
    );
}

fn run(
    pki: &Pki,
    key: TestKey,
    port: &str,
    tls: &str,
    concurrency: usize,
    count: usize,
    pem: bool,
) -> f64 {
    let (count, concurrency) = (count.to_string(), concurrency.to_string());
    let uri = format!("pkcs11:token=nexus;object={};type=private", key.label);
    let (pem_key, pem_crt, token_crt) = (
        format!("{}.pem.key", key.id),
        format!("{}.pem.crt", key.id),
        pki.cert(key),
    );
    let (key_arg, key_value, cert) = if pem {
        ("--key-pem", pem_key.as_str(), pem_crt.as_str())
    } else {
        ("--key", uri.as_str(), token_crt.as_str())
    };
    let result = pki.probe(&[
        "handshake",
        key_arg,
        key_value,
        "--cert",
        cert,
        "--ca",
        "ca.crt",
        "--port",
        port,
        "--tls",
        tls,
        "--count",
        &count,
        "--concurrency",
        &concurrency,
    ]);
    assert_eq!(result["ok"], true, "{} TLS {tls}: {result:#}", key.label);
    result["per_second"].as_f64().unwrap_or(0.0)
}
