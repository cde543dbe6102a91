//! The real `nexus` binary: `check` exit codes and messages, and `serve` from start to a
//! signalled, draining stop. Each test runs in its own temp dir; a failure shows the command,
//! its directory, status, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::support::{RawSession, WAIT, fixture_stdio_cmd, free_port, health_at, wait_for};

#[path = "../seed/expected.rs"]
mod seed;

/// Variables that would change what the binary does under test.
const NEXUS_ENV: &[&str] = &["NEXUS_CONFIG", "NEXUS_LISTEN_ADDRESS", "NEXUS_LOG"];

/// A temp dir to run the binary in.
struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `nexus.toml`.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.path().join("nexus.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `nexus ARGS` in this dir, with no NEXUS_* variables from the test's environment.
    fn command(&self, args: &[&str]) -> std::process::Command {
        self.command_under(&[], args)
    }

    /// [`Self::command`] run by `launcher` (a program and its arguments, e.g. `prlimit ... --`),
    /// which must exec nexus in its own process.
    fn command_under(&self, launcher: &[&str], args: &[&str]) -> std::process::Command {
        let nexus = env!("CARGO_BIN_EXE_nexus");
        let mut command = match launcher.split_first() {
            None => std::process::Command::new(nexus),
            Some((program, options)) => {
                let mut command = std::process::Command::new(program);
                command.args(options).arg(nexus);
                command
            }
        };
        command.args(args).current_dir(self.path());
        for name in NEXUS_ENV {
            command.env_remove(name);
        }
        command
    }

    /// Runs `command` to its end and checks its exit code.
    fn run(&self, mut command: std::process::Command, code: i32) -> Output {
        let output = command.output().expect("cannot run nexus");
        if output.status.code() != Some(code) {
            panic!(
                "expected exit code {code}\n{}",
                describe(&command, self.path(), &output)
            );
        }
        output
    }
}

/// Command, cwd, status, stdout and stderr, for failure messages.
fn describe(command: &std::process::Command, cwd: &Path, output: &Output) -> String {
    format!(
        "\n\ncommand: {command:?}\ncwd: {}\nstatus: {}\n\nstdout:\n{}\n\nstderr:\n{}\n",
        cwd.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_accepts_a_valid_configuration() {
    let dir = TestDir::new();
    dir.config(&format!(
        "[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    ));
    let output = dir.run(dir.command(&["check", "--config", "nexus.toml"]), 0);
    assert_eq!(lines(&output.stdout), ["nexus.toml: OK (1 servers)"]);
}

#[test]
fn check_reports_exactly_the_missing_files_and_variables_of_each_seed_example() {
    let dir = TestDir::new();
    for (path, text) in seed::examples() {
        let expected = seed::expected_problems(&path, &text);
        let mut command = dir.command(&["check", "--config", path.to_str().unwrap()]);
        command
            .env_remove("ENTERPRISE_TOKEN")
            .env_remove("API_TOKEN");
        if expected.is_empty() {
            let output = dir.run(command, 0);
            assert_eq!(
                lines(&output.stdout),
                [format!("{}: OK (1 servers)", path.display())]
            );
            continue;
        }
        let output = dir.run(command, 1);
        let count = match expected.len() {
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        };
        let mut wanted = expected;
        wanted.push(format!("{count} in {}", path.display()));
        assert_eq!(lines(&output.stderr), wanted, "{}", path.display());
    }
}

#[test]
fn check_reports_every_mistake_with_position_and_advice() {
    // The wording is the library's (tests/config.rs); here: the binary prints it, and exits 1.
    let cases: &[(&str, &[&str])] = &[
        (
            "[mcp.servers.secure]\nurl = \"https://api.secure.com/mcp\"\n\n[mcp.servers.secure.tls]\nverify_cert = true\n",
            &[
                "nexus.toml:5:1: mcp.servers.secure.tls: unknown key `verify_cert` (expected one of `verify_certs`, \
                 `accept_invalid_hostnames`, `root_ca_cert_path`, `client_cert_path`, `client_key_path`, \
                 `client_key_password`, `client_key_password_file`, `min_tls_version`, `cipher_list`, `ciphersuites`, \
                 `server_name`); fix the spelling or remove it",
                "1 problem in nexus.toml",
            ],
        ),
        (
            "[mcp.servers.secure]\nurl = \"https://h/mcp\"\ntls = { verify_certs = \"yes\" }\n",
            &[
                "nexus.toml:3:24: mcp.servers.secure.tls.verify_certs: invalid type: string \"yes\", expected a \
                 boolean; fix the value",
                "1 problem in nexus.toml",
            ],
        ),
        (
            "[mcp.servers.secure]\nurl = \"https://h/mcp\"\n[mcp.servers.secure.auth]\ntoken = \"{{ env.NEXUS_TEST_UNSET_TOKEN }}\"\n",
            &[
                "nexus.toml:4:9: mcp.servers.secure.auth.token: environment variable NEXUS_TEST_UNSET_TOKEN is not \
                 set; export it or set it in the service's environment",
                "1 problem in nexus.toml",
            ],
        ),
        (
            "[mcp.servers.api]\nurl = \"https://a/mcp\"\n\n[mcp.servers.api]\nurl = \"https://b/mcp\"\n",
            &[
                "nexus.toml:4:14: mcp.servers.api: server `api` is defined twice (TOML allows each table once); \
                 rename one of the two servers, or merge them into one table",
                "1 problem in nexus.toml",
            ],
        ),
        (
            "[mcp.servers.x]\ncmd = [\"srv\"]\nurl = \"https://h/mcp\"\n",
            &[
                "nexus.toml:1:14: mcp.servers.x: server 'x': set exactly one of `cmd` (stdio) or `url` (HTTP); \
                 remove one of them",
                "1 problem in nexus.toml",
            ],
        ),
    ];
    for (text, expected) in cases {
        let dir = TestDir::new();
        dir.config(text);
        let mut command = dir.command(&["check", "--config", "nexus.toml"]);
        command.env_remove("NEXUS_TEST_UNSET_TOKEN");
        let output = dir.run(command, 1);
        assert_eq!(lines(&output.stderr), *expected, "for:\n{text}");
        assert!(output.stdout.is_empty(), "{text}");
    }
}

#[test]
fn serve_exits_78_on_a_configuration_error() {
    let dir = TestDir::new();
    dir.config("[server]\nlisten = \"127.0.0.1:1\"\n");
    let output = dir.run(
        dir.command(&["--config", "nexus.toml", "-l", "127.0.0.1:0"]),
        78,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nexus.toml:2:1: server: unknown key `listen`"),
        "{stderr}"
    );
}

/// `nexus serve` in a temp dir, its output in files there.
pub(crate) struct Serving {
    dir: TestDir,
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Serving {
    pub(crate) async fn start(config: &str) -> Self {
        Self::launch(&[], config, &[]).await
    }

    /// [`Self::start`] on `port`, for a configuration that names its own URL (e.g. an OAuth
    /// protected resource).
    pub(crate) async fn start_on(port: u16, config: &str) -> Self {
        Self::launch_on(port, &[], config, &[]).await
    }

    /// Starts it with `env` added to its environment, and waits until it is healthy.
    pub(crate) async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(&[], config, env).await
    }

    /// [`Self::start`] through `launcher` (see [`TestDir::command_under`]).
    pub(crate) async fn start_under(launcher: &[&str], config: &str) -> Self {
        Self::launch(launcher, config, &[]).await
    }

    async fn launch(launcher: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_on(free_port().await, launcher, config, env).await
    }

    async fn launch_on(port: u16, launcher: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        let dir = TestDir::new();
        dir.config(config);
        let listen = format!("127.0.0.1:{port}");
        let mut command = dir.command_under(launcher, &["--config", "nexus.toml", "-l", &listen]);
        command.envs(env.iter().copied());
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start nexus");
        let mut serving = Self {
            dir,
            child,
            base: format!("http://{listen}"),
        };
        serving.wait_healthy().await;
        serving
    }

    /// Polls `/health` until every downstream is connected.
    async fn wait_healthy(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nexus exited before serving: {status}{}", self.logs());
            }
            if tokio::net::TcpStream::connect(self.base.trim_start_matches("http://"))
                .await
                .is_ok()
            {
                let health = health_at(&self.base).await;
                let downstreams = &health["downstreams"];
                if downstreams["connected"] == downstreams["total"] {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nexus not healthy after {WAIT:?}{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The gateway's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("nexus already reaped")
    }

    /// Stops it with SIGTERM (so it stops its children) and checks it exits 0.
    pub(crate) async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        assert_eq!(self.exit_code().await, 0, "{}", self.logs());
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits for the exit and returns the code, showing the logs if there is none.
    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("nexus did not exit{}", self.logs()))
            .unwrap();
        status
            .code()
            .unwrap_or_else(|| panic!("nexus died: {status}{}", self.logs()))
    }

    pub(crate) fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        format!(
            "\ncwd: {}\n\nstdout:\n{}\n\nstderr:\n{}\n",
            self.dir.path().display(),
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Serving {
    /// A failing test still stops the gateway with SIGTERM, so that it stops its children (the
    /// SIGKILL of `kill_on_drop` would leave them running).
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return; // reaped: it has exited
        };
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `pid` is a live process (a zombie has exited).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Starts `nexus serve` with a stdio fixture, stops it with `signal` while a call is in flight,
/// and checks the call completed, the exit code and that the child is gone.
async fn signal_drains_and_stops_children(signal: Signal) {
    let mut serving = Serving::start(&format!(
        "[mcp]\ntools = \"direct\"\n[mcp.servers.fx]\ncmd = {}\n",
        fixture_stdio_cmd(&[])
    ))
    .await;
    let session = RawSession::open(&serving.url()).await;
    let child: u32 = session
        .call_text("fx__pid", json!({}))
        .await
        .parse()
        .unwrap();
    assert!(is_running(child));
    let sleeper = RawSession::open(&serving.url()).await;
    let call = tokio::spawn(async move { sleeper.call(9, "fx__sleep", json!({"ms": 1500})).await });
    wait_for("the sleep call runs in the fixture", || async {
        let running = session.call_text("fx__inflight_max", json!({})).await;
        (running == "1").then_some(())
    })
    .await;
    serving.signal(signal);

    let response = call.await.unwrap();
    assert_eq!(
        response["result"]["content"][0]["text"],
        "slept 1500",
        "the call in flight must be drained, not cut: {response}{}",
        serving.logs()
    );
    assert_eq!(serving.exit_code().await, 0, "{}", serving.logs());
    wait_for("the stdio child is stopped", || async {
        (!is_running(child)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_calls_in_flight_and_stops_children() {
    signal_drains_and_stops_children(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_calls_in_flight_and_stops_children() {
    signal_drains_and_stops_children(Signal::SIGINT).await;
}
