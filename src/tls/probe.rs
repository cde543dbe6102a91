//! `nexus tls probe`: connect to each HTTPS downstream with exactly its configured settings and
//! show what the TLS layer saw, then the MCP `initialize` result; replaces `openssl s_client`.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslRef;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::client::ClientContext;
use super::connector::handshake;
use super::errors;
use crate::config::{Config, Transport};
use crate::mcp::sse;
use crate::metrics::Metrics;

/// How long the handshake and the `initialize` call may take each.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Probes the HTTPS downstreams named in `only` (all when empty), writing a report to `out`.
/// Returns whether every probe succeeded.
pub async fn run(config: &Config, only: &[String], out: &mut dyn Write) -> std::io::Result<bool> {
    let mut all_ok = true;
    let mut probed = 0;
    for server in &config.mcp.servers {
        if !only.is_empty() && !only.contains(&server.name) {
            continue;
        }
        let Transport::Http(http) = &server.transport else {
            continue;
        };
        if http.url.scheme_str() != Some("https") {
            continue;
        }
        probed += 1;
        writeln!(out, "server '{}' ({})", server.name, http.url)?;
        match probe_one(&server.name, http, out).await? {
            Ok(()) => writeln!(out, "  result: OK")?,
            Err(message) => {
                all_ok = false;
                writeln!(out, "  result: FAILED: {message}")?;
            }
        }
    }
    for name in only {
        if !config.mcp.servers.iter().any(|server| &server.name == name) {
            all_ok = false;
            writeln!(out, "server '{name}': no such server in the configuration")?;
        }
    }
    if probed == 0 && only.is_empty() {
        writeln!(out, "no HTTPS downstreams configured")?;
    }
    Ok(all_ok)
}

async fn probe_one(
    name: &str,
    http: &crate::config::Http,
    out: &mut dyn Write,
) -> std::io::Result<Result<(), String>> {
    let context = match ClientContext::new(name, &http.tls, Arc::new(Metrics::default())) {
        Ok(context) => context,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let host = http
        .url
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = http.url.port_u16().unwrap_or(443);
    let tcp = match TcpStream::connect((host.as_str(), port)).await {
        Ok(tcp) => tcp,
        Err(error) => return Ok(Err(format!("cannot connect to {host}:{port}: {error}"))),
    };
    let _ = tcp.set_nodelay(true);
    let stream =
        match tokio::time::timeout(PROBE_TIMEOUT, handshake(&context, &host, port, tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Ok(Err(error.to_string())),
            Err(_) => {
                return Ok(Err(format!(
                    "no TLS handshake within {} s",
                    PROBE_TIMEOUT.as_secs()
                )));
            }
        };
    report_session(stream.ssl(), &context, &host, out)?;
    let answered = tokio::time::timeout(PROBE_TIMEOUT, initialize(stream, &http.url)).await;
    let answered = answered.unwrap_or_else(|_| {
        Err(format!(
            "TLS is fine, but initialize got no answer within {} s: is this URL an MCP endpoint?",
            PROBE_TIMEOUT.as_secs()
        ))
    });
    Ok(answered.and_then(|result| {
        writeln!(out, "  initialize: {result}").map_err(|error| error.to_string())
    }))
}

fn report_session(
    ssl: &SslRef,
    context: &ClientContext,
    host: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let cipher = ssl.current_cipher().map_or("none", |cipher| cipher.name());
    writeln!(out, "  protocol: {}, cipher: {cipher}", ssl.version_str())?;
    writeln!(out, "  peer chain:")?;
    for (depth, cert) in ssl.peer_cert_chain().into_iter().flatten().enumerate() {
        writeln!(out, "    {depth} subject: {}", super::subject_text(cert))?;
        writeln!(
            out,
            "      issuer: {}",
            super::name_text(cert.issuer_name())
        )?;
        writeln!(out, "      not after: {}", cert.not_after())?;
        let names = super::cert_names(cert);
        if !names.is_empty() {
            writeln!(out, "      names: {}", names.join(", "))?;
        }
    }
    let verdict = if !context.verify_chain {
        "NOT verified (verify_certs = false)".to_owned()
    } else if context.verify_hostname {
        format!(
            "chain and hostname verified ({}) for \"{}\"",
            ssl.verify_result(),
            context.server_name.as_deref().unwrap_or(host)
        )
    } else {
        format!(
            "chain verified ({}), hostname not checked (accept_invalid_hostnames = true)",
            ssl.verify_result()
        )
    };
    writeln!(out, "  verification: {verdict}")?;
    let asked = super::ffi::requested_ca_names(ssl);
    let ours = ssl.certificate().map(super::subject_text);
    let line = match (asked.is_empty(), ours) {
        (false, Some(subject)) => format!(
            "requested (acceptable CAs: {}); sent \"{subject}\"",
            asked.join("; ")
        ),
        (false, None) => format!(
            "requested (acceptable CAs: {}); none sent: set client_cert_path and client_key_path",
            asked.join("; ")
        ),
        (true, Some(subject)) => format!(
            "the server named no acceptable CAs (not requested, or requested without names); configured \"{subject}\" is sent only when requested"
        ),
        (true, None) => "not requested by name; none configured".to_owned(),
    };
    writeln!(out, "  client certificate: {line}")
}

/// One `initialize` POST over the probed connection; the result as one line.
async fn initialize(
    stream: tokio_openssl::SslStream<TcpStream>,
    url: &http::Uri,
) -> Result<String, String> {
    let sent_cert = stream.ssl().certificate().is_some();
    let io = super::connector::TlsIo::new(stream, sent_cert);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|error| described(&error))?;
    let driver = tokio::spawn(connection);
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": crate::mcp::version::LATEST_HANDSHAKE, "capabilities": {},
        "clientInfo": {"name": "nexus tls probe", "version": env!("CARGO_PKG_VERSION")}}});
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.path_and_query().map_or("/", |pq| pq.as_str()))
        .header(
            http::header::HOST,
            url.authority().map_or("", |a| a.as_str()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("BUG: static request parts are valid");
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        // The request only learns "canceled"; the connection task holds the read error.
        Err(error) => {
            let connection = match driver.await {
                Ok(Err(connection)) => Some(connection),
                _ => None,
            };
            let tls = connection.as_ref().and_then(|c| errors::find(c));
            return Err(tls.map_or_else(|| described(&error), ToString::to_string));
        }
    };
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|error| described(&error))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!(
            "initialize answered HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    let message =
        first_message(&bytes).ok_or_else(|| "initialize answer is not JSON-RPC".to_owned())?;
    let result = &message["result"];
    Ok(format!(
        "protocol {} from {} {}",
        result["protocolVersion"].as_str().unwrap_or("?"),
        result["serverInfo"]["name"].as_str().unwrap_or("?"),
        result["serverInfo"]["version"].as_str().unwrap_or("?")
    ))
}

/// The JSON body, or the first JSON message of an SSE body.
fn first_message(bytes: &[u8]) -> Option<Value> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Some(value);
    }
    let mut parser = sse::Parser::default();
    parser
        .feed(bytes)
        .into_iter()
        .find_map(|event| serde_json::from_str(&event.data).ok())
}

fn described(error: &(dyn std::error::Error + 'static)) -> String {
    match errors::find(error) {
        Some(tls) => tls.to_string(),
        None => format!("initialize failed: {error}"),
    }
}
