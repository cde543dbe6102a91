//! The `nexus` binary as a child process with the test token's `SOFTHSM2_CONF`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Child;

use crate::pkcs11_support::{PIN, Pki};
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

    /// `GET path` over plain HTTP.
    pub(super) async fn get(&self, path: &str) -> String {
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
