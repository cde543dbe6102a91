//! The processes under test: the fixture server and the `nexus` gateway.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;
use crate::http_client::McpHttp;

/// How long the gateway may take to connect its downstream after starting.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The release fixture server, built first if `cargo bench` did not build it (it builds no
/// examples).
pub fn fixture_program() -> Result<PathBuf, BenchError> {
    // The bench runs as target/release/deps/gateway-HASH; examples go to target/release/examples.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("bench executable has no profile dir")?;
    let program = profile_dir.join("examples").join("fixture_server");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "--example",
            "fixture_server",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() || !program.exists() {
        return Err(format!(
            "building the fixture failed ({status}); expected {}",
            program.display()
        )
        .into());
    }
    Ok(program)
}

/// The release `nexus` binary Cargo built for this bench, if the package has one.
pub fn gateway_program() -> Option<PathBuf> {
    option_env!("CARGO_BIN_EXE_nexus").map(PathBuf::from)
}

/// A fixture serving Streamable HTTP; killed on drop.
pub struct FixtureHttp {
    /// Its MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub endpoint: String,
    pub pid: u32,
    _child: Child,
}

impl FixtureHttp {
    /// Starts `program http` and waits for its `LISTENING` line.
    pub async fn spawn(program: &Path) -> Result<Self, BenchError> {
        let mut child = Command::new(program)
            .args(["http", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .unwrap_or_default();
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("fixture printed {line:?}"))?;
        Ok(Self {
            endpoint: format!("http://{addr}/mcp"),
            pid: child.id().ok_or("the fixture exited at once")?,
            _child: child,
        })
    }
}

/// A running gateway; killed on drop.
pub struct Gateway {
    /// Its MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `program --config FILE` with one downstream `fx` (a `[mcp.servers.fx]` body such
    /// as `url = "…"`), then waits until `/health` answers.
    pub async fn spawn(program: &Path, downstream: &str) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let addr = free_loopback_addr()?;
        let config = format!(
            "[server]\nlisten_address = \"{addr}\"\n\n[mcp]\ntools = \"direct\"\nprefix = \"when-needed\"\n\n\
             [mcp.servers.fx]\n{downstream}\n"
        );
        let config_path = dir.path().join("nexus.toml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("nexus.log");
        let log = File::create(&log_path)?;
        let child = Command::new(program)
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let mut gateway = Self {
            endpoint: format!("http://{addr}/mcp"),
            child,
            _dir: dir,
        };
        gateway.wait_ready().await.map_err(|e| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("{e}; gateway log:\n{log}")
        })?;
        Ok(gateway)
    }

    pub fn pid(&self) -> Result<u32, BenchError> {
        Ok(self.child.id().ok_or("the gateway exited")?)
    }

    /// Waits until `/health` says every downstream is connected: the gateway listens before
    /// its downstreams have answered `initialize`.
    async fn wait_ready(&mut self) -> Result<(), BenchError> {
        let client = McpHttp::new(self.endpoint.parse()?);
        let started = Instant::now();
        let all_connected = |health: &serde_json::Value| {
            let downstreams = &health["downstreams"];
            downstreams["total"].as_u64() == Some(1)
                && downstreams["connected"] == downstreams["total"]
        };
        while !client
            .get_json("/health")
            .await
            .is_some_and(|h| all_connected(&h))
        {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("gateway exited during start-up: {status}").into());
            }
            if started.elapsed() > GATEWAY_READY_TIMEOUT {
                return Err(format!("gateway not ready after {GATEWAY_READY_TIMEOUT:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }
}

/// A loopback address with a port free right now (the gateway binds it a moment later).
fn free_loopback_addr() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `value` as a TOML basic string (JSON string escapes are valid TOML).
pub fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}
