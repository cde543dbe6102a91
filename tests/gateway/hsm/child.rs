//! The `nexus` binary as a child process with the test token's `SOFTHSM2_CONF`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::pkcs11_support::{PIN, Pki};
use crate::stateless::tools_call;
use crate::support::{WAIT, free_port};

/// `nexus --config <name>.toml` (written to the test dir) with the token's `SOFTHSM2_CONF`.
pub(super) fn nexus_command(pki: &Pki, name: &str, toml: &str) -> std::process::Command {
    let config = pki.path(&format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    let mut command = pki.command(env!("CARGO_BIN_EXE_nexus"));
    command.arg("--config").arg(&config).env("NO_COLOR", "1");
    command
}

/// The `nexus` binary as a child with the token's `SOFTHSM2_CONF`, killed on drop.
pub(super) struct Nexus {
    child: Child,
    /// `http(s)://127.0.0.1:PORT`.
    base: String,
    port: u16,
    /// The test CA, which issues the gateway's HTTPS certificate.
    ca: PathBuf,
    log: PathBuf,
}

impl Nexus {
    /// Writes `toml` to the test directory and starts `nexus --config` on a free port with
    /// `env` added to its environment; returns once the port accepts connections.
    pub(super) async fn spawn(pki: &Pki, name: &str, toml: &str, env: &[(&str, &Path)]) -> Self {
        let log = pki.path(&format!("{name}.log"));
        let port = free_port().await;
        let mut command = nexus_command(pki, name, toml);
        command
            .args(["-l", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("start nexus");
        let https = toml.contains("[server.tls]");
        let mut nexus = Self {
            child,
            base: format!(
                "{}://127.0.0.1:{port}",
                if https { "https" } else { "http" }
            ),
            port,
            ca: pki.path("ca.crt"),
            log,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = nexus.child.try_wait().unwrap() {
                panic!("nexus exited ({status}):\n{}", nexus.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nexus not listening:\n{}",
                nexus.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        nexus
    }

    pub(super) fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// SIGTERM, then waits for the exit: what the process buffered (the pkcs11-spy log) is
    /// flushed by then.
    pub(super) async fn stop(mut self) {
        let pid = self.child.id().expect("nexus is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("nexus did not stop");
        assert!(
            status.unwrap().success(),
            "nexus failed to stop:\n{}",
            self.log()
        );
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path`, over HTTPS when the gateway serves it.
    pub(super) async fn get(&self, path: &str) -> String {
        if self.base.starts_with("https:") {
            return https_get(self.port, &self.ca, path).await;
        }
        let (status, _, body) = crate::support::raw(
            http::Method::GET,
            &format!("{}{path}", self.base),
            http::HeaderMap::new(),
            None,
        )
        .await;
        assert_eq!(status, http::StatusCode::OK, "GET {path}");
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Polls `/health` until `count` downstreams are connected (bounded by [`WAIT`]).
    pub(super) async fn wait_connected(&self, count: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let health: Value = serde_json::from_str(&self.get("/health").await).unwrap();
            if health["downstreams"]["connected"].as_u64() == Some(count) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "downstreams not connected: {health}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A counter of `/metrics` for one server (0 when absent).
    pub(super) async fn metric(&self, name: &str, server: &str) -> u64 {
        let prefix = format!("{name}{{server=\"{server}\"}} ");
        self.get("/metrics")
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Handshakes with `server` that did not resume a session: each one a token signature.
    pub(super) async fn full_handshakes(&self, server: &str) -> u64 {
        self.metric("nexus_tls_handshakes_total", server).await
            - self
                .metric("nexus_tls_sessions_resumed_total", server)
                .await
    }

    /// A new HTTPS connection, kept open: later requests on it need no handshake, so no signature
    /// with the listener key.
    pub(super) async fn keep_connection(&self) -> KeptConnection {
        KeptConnection(connect(self.port, &self.ca).await)
    }

    /// `count` new HTTPS connections at once, each a full handshake; every one must be served.
    pub(super) async fn concurrent_handshakes(&self, count: usize) {
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let (port, ca) = (self.port, self.ca.clone());
                tokio::spawn(async move { https_get(port, &ca, "/health").await })
            })
            .collect();
        for task in tasks {
            task.await
                .unwrap_or_else(|error| panic!("{error}\n{}", self.log()));
        }
    }
}

/// An HTTPS connection to the gateway from [`Nexus::keep_connection`].
pub(super) struct KeptConnection(SendRequest<Full<Bytes>>);

impl KeptConnection {
    /// `whoami` of `server` as one stateless call, repeated until the gateway has reconnected to
    /// it (bounded by [`WAIT`]).
    pub(super) async fn whoami_once_reconnected(&mut self, server: &str, nexus: &Nexus) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (headers, body) = tools_call(&format!("{server}__whoami"), json!({}));
            let mut request = http::Request::post("/mcp")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            *request.headers_mut() = headers;
            let (_, answer) = send(&mut self.0, request).await;
            let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
            if let Some(text) = answer["result"]["content"][0]["text"].as_str() {
                return text.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no successful call to {server}: {answer}\n{}",
                nexus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A new TLS connection to the gateway with no session to resume (a full handshake, in which the
/// gateway signs with its listener key), HTTP/1.1 on it.
async fn connect(port: u16, ca: &Path) -> SendRequest<Full<Bytes>> {
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_ca_file(ca).unwrap();
    let ssl = connector
        .build()
        .configure()
        .unwrap()
        .into_ssl("127.0.0.1")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    tokio::time::timeout(WAIT, Pin::new(&mut tls).connect())
        .await
        .expect("TLS handshake timeout")
        .unwrap_or_else(|error| panic!("TLS handshake with nexus failed: {error}"));
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends `request`; returns the status and the whole body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> (http::StatusCode, Bytes) {
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("HTTP timeout")
        .unwrap();
    let status = response.status();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body timeout")
        .unwrap()
        .to_bytes();
    (status, body)
}

/// `GET path` on a new connection.
async fn https_get(port: u16, ca: &Path, path: &str) -> String {
    let request = http::Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(Full::default())
        .unwrap();
    let (status, body) = send(&mut connect(port, ca).await, request).await;
    assert_eq!(status, http::StatusCode::OK, "GET {path}");
    String::from_utf8(body.to_vec()).unwrap()
}

/// Runs the gateway on `toml`, which must fail to start; returns its stderr.
pub(super) async fn start_error(pki: &Pki, name: &str, toml: &str) -> String {
    let mut command = nexus_command(pki, name, toml);
    command.args(["-l", "127.0.0.1:0"]);
    let output = tokio::time::timeout(WAIT, tokio::process::Command::from(command).output())
        .await
        .expect("nexus did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "nexus started with {name}:\n{stderr}"
    );
    assert!(!stderr.contains(PIN), "the PIN was printed:\n{stderr}");
    stderr
}
