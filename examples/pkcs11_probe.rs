//! Test and benchmark helper: loads a token key through `nexus::pkcs11` and does mutual-TLS
//! handshakes with it. Run as a child process so that `SOFTHSM2_CONF` is set in its
//! environment (tests must not `set_var`). Prints one JSON object on stdout.
//!
//! ```text
//! pkcs11_probe load --key URI [--cert-uri URI] [--cert PEM] [--twice] [--module PATH] [--pin-file PATH]
//! pkcs11_probe pubkey --key URI --out PEM [--module PATH] [--pin-file PATH]
//! pkcs11_probe handshake (--key URI | --key-pem PEM) --cert PEM --ca PEM --port N --tls 1.2|1.3
//!     [--pkcs1] [--path /health] [--count N] [--concurrency C] [--close-sessions-at K] [--module PATH] [--pin-file PATH]
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use nexus::config::{Pkcs11Defaults, SecretSource};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, options) = parse(&args);
    let result = match command.as_str() {
        "load" => load(&options),
        "handshake" => handshake(&options),
        "pubkey" => pubkey(&options),
        other => Err(format!("unknown command {other}")),
    };
    let output = match result {
        Ok(value) => value,
        Err(error) => json!({ "ok": false, "error": error }),
    };
    println!("{output}");
}

type Options = HashMap<String, String>;

fn parse(args: &[String]) -> (String, Options) {
    let mut options = HashMap::new();
    let mut iter = args.iter().skip(1).peekable();
    while let Some(arg) = iter.next() {
        let name = arg.trim_start_matches("--").to_owned();
        let value = match iter.peek() {
            Some(next) if !next.starts_with("--") => iter.next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        options.insert(name, value);
    }
    (args.first().cloned().unwrap_or_default(), options)
}

fn defaults(options: &Options) -> Pkcs11Defaults {
    Pkcs11Defaults {
        module_path: options.get("module").map(PathBuf::from),
        pin: options
            .get("pin-file")
            .map(|p| SecretSource::File(p.into())),
    }
}

fn load(options: &Options) -> Result<serde_json::Value, String> {
    let defaults = defaults(options);
    let key_uri = options.get("key").ok_or("--key is required")?;
    if options.contains_key("twice") {
        // Both attempts in one process: the second must not try the PIN again.
        let first = nexus::pkcs11::load_private_key(key_uri, &defaults)
            .err()
            .map(|e| e.to_string());
        let second = nexus::pkcs11::load_private_key(key_uri, &defaults)
            .err()
            .map(|e| e.to_string());
        return Ok(json!({ "ok": first.is_none(), "error": first, "second_error": second }));
    }
    let key = nexus::pkcs11::load_private_key(key_uri, &defaults).map_err(|e| e.to_string())?;
    let certificate = match (options.get("cert-uri"), options.get("cert")) {
        (Some(uri), _) => {
            let chain =
                nexus::pkcs11::load_certificate_chain(uri, &defaults).map_err(|e| e.to_string())?;
            Some(chain[0].clone())
        }
        (None, Some(pem)) => Some(read_cert(pem)?),
        (None, None) => None,
    };
    if let Some(certificate) = certificate {
        key.check_certificate(&certificate)
            .map_err(|e| e.to_string())?;
    }
    Ok(json!({ "ok": true, "uri": key.uri(), "bits": key.pkey().bits() }))
}

/// Writes the token key's public key as PEM (to issue its test certificate).
fn pubkey(options: &Options) -> Result<serde_json::Value, String> {
    let key_uri = options.get("key").ok_or("--key is required")?;
    let out = options.get("out").ok_or("--out is required")?;
    let key =
        nexus::pkcs11::load_private_key(key_uri, &defaults(options)).map_err(|e| e.to_string())?;
    let pem = key
        .public_key()
        .public_key_to_pem()
        .map_err(|e| e.to_string())?;
    std::fs::write(out, pem).map_err(|e| format!("{out}: {e}"))?;
    Ok(json!({ "ok": true }))
}

fn read_cert(path: &str) -> Result<X509, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    X509::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
}

fn handshake(options: &Options) -> Result<serde_json::Value, String> {
    let get = |name: &str| {
        options
            .get(name)
            .cloned()
            .ok_or(format!("--{name} is required"))
    };
    let number = |name: &str, default: usize| {
        options
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let defaults = defaults(options);
    let (pkey, token_key): (PKey<Private>, _) = match options.get("key") {
        Some(uri) => {
            let key = nexus::pkcs11::load_private_key(uri, &defaults).map_err(|e| e.to_string())?;
            (key.pkey().clone(), Some(key))
        }
        None => {
            let pem = std::fs::read(get("key-pem")?).map_err(|e| e.to_string())?;
            (
                PKey::private_key_from_pem(&pem).map_err(|e| e.to_string())?,
                None,
            )
        }
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    builder
        .set_certificate(read_cert(&get("cert")?)?.as_ref())
        .map_err(|e| e.to_string())?;
    builder.set_private_key(&pkey).map_err(|e| e.to_string())?;
    builder.check_private_key().map_err(|e| e.to_string())?;
    builder.set_ca_file(get("ca")?).map_err(|e| e.to_string())?;
    let version = if get("tls")? == "1.2" {
        SslVersion::TLS1_2
    } else {
        SslVersion::TLS1_3
    };
    builder
        .set_min_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    builder
        .set_max_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    if options.contains_key("pkcs1") {
        builder
            .set_sigalgs_list("RSA+SHA256:ECDSA+SHA256")
            .map_err(|e| e.to_string())?;
    }
    let connector = builder.build();
    let port: u16 = get("port")?.parse().map_err(|_| "bad --port")?;
    let count = number("count", 1);
    let concurrency = number("concurrency", 1);
    let close_at = options
        .get("close-sessions-at")
        .and_then(|v| v.parse::<usize>().ok());
    let module = defaults.module_path.clone();
    let path = options
        .get("path")
        .cloned()
        .unwrap_or_else(|| "/".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (ok, errors) = runtime.block_on(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (connector, next, module, path) = (
                connector.clone(),
                next.clone(),
                module.clone(),
                path.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut errors) = (0usize, Vec::new());
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= count {
                        break;
                    }
                    if Some(n) == close_at {
                        close_all_sessions(module.as_ref());
                    }
                    match one_handshake(&connector, port, &path).await {
                        Ok(()) => ok += 1,
                        Err(error) => errors.push(error),
                    }
                }
                (ok, errors)
            }));
        }
        let (mut ok, mut errors) = (0, Vec::new());
        for task in tasks {
            let (n, mut e) = task.await.unwrap_or((0, vec!["task panicked".to_owned()]));
            ok += n;
            errors.append(&mut e);
        }
        (ok, errors)
    });
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "ok": errors.is_empty(),
        "handshakes": ok,
        "errors": errors,
        "seconds": seconds,
        "per_second": ok as f64 / seconds,
        "sessions": token_key.as_ref().map(|k| k.open_sessions()),
    }))
}

async fn one_handshake(connector: &SslConnector, port: u16, path: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let ssl = connector
        .configure()
        .map_err(|e| e.to_string())?
        .into_ssl("localhost")
        .map_err(|e| e.to_string())?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // In TLS 1.3 the server checks the client certificate after connect() returned: only a
    // response proves it accepted it.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    // s_server answers HTTP/1.0; the gateway (hyper) HTTP/1.1.
    // With --path (the gateway) any HTTP answer proves the server accepted the client
    // certificate; its status (e.g. a 404 for the path) is not what is measured.
    if text.starts_with("HTTP/1.0 200") || (path != "/" && text.starts_with("HTTP/1.")) {
        Ok(())
    } else {
        Err(format!(
            "no HTTP 200 from the server (got {} bytes)",
            response.len()
        ))
    }
}

/// Closes every session of every token from a second PKCS#11 handle on the same module, as an
/// HSM restart would. cryptoki has no `C_CloseAllSessions`, so this test helper calls it raw.
#[allow(unsafe_code)] // test-only FFI: one call the safe wrapper lacks
fn close_all_sessions(module: Option<&PathBuf>) {
    let Some(module) = module else { return };
    let Ok(context) = cryptoki::context::Pkcs11::new(module) else {
        return;
    };
    let _ = context.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    // SAFETY: loading a PKCS#11 module runs its initializers; it is already loaded in-process.
    let Ok(raw) = (unsafe { cryptoki_sys::Pkcs11::new(module) }) else {
        return;
    };
    for slot in context.get_slots_with_token().unwrap_or_default() {
        // SAFETY: the module is initialized (above) and `slot` is one of its slot ids.
        let rv = unsafe { raw.C_CloseAllSessions(slot.id()) };
        eprintln!("C_CloseAllSessions(slot {}) = {rv:#x}", slot.id());
    }
}
