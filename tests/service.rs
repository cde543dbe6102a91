//! The binary under a fake service manager: the sd_notify messages systemd would receive
//! (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and journal-style log lines when stderr is
//! the `JOURNAL_STREAM`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A notify socket in a temporary directory, as systemd's `NOTIFY_SOCKET`.
struct Manager {
    dir: tempfile::TempDir,
    socket: UnixDatagram,
}

impl Manager {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = UnixDatagram::bind(dir.path().join("notify")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::fs::write(dir.path().join("nexus.toml"), "").unwrap();
        Self { dir, socket }
    }

    /// Starts `nexus` on an empty configuration, port 0, stderr to `stderr.log` announced as
    /// the journal stream, and a 400 ms watchdog.
    fn start(&self) -> Child {
        let stderr = File::create(self.dir.path().join("stderr.log")).unwrap();
        let meta = stderr.metadata().unwrap();
        Command::new(env!("CARGO_BIN_EXE_nexus"))
            .arg("--config")
            .arg(self.dir.path().join("nexus.toml"))
            .args(["-l", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", self.dir.path().join("notify"))
            .env("WATCHDOG_USEC", "400000")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env_remove("NEXUS_CONFIG")
            .env_remove("NEXUS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Waits (up to 10 s) for a message containing `line`; returns it whole.
    fn expect(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.lines().any(|l| l == line) {
                    return message;
                }
                seen.push(message);
            }
        }
        panic!("no {line:?} from nexus within 10 s; received {seen:?}");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap()
    }
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn readiness_watchdog_reload_and_stop_are_announced() {
    let manager = Manager::new();
    let mut child = manager.start();
    let ready = manager.expect("READY=1");
    assert!(
        ready.contains("STATUS=0/0 downstreams connected"),
        "{ready:?}"
    );
    manager.expect("WATCHDOG=1");
    manager.expect("WATCHDOG=1");

    signal(&child, Signal::SIGHUP);
    let reloading = manager.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    manager.expect("READY=1");
    manager.expect("STATUS=0/0 downstreams connected");

    signal(&child, Signal::SIGTERM);
    manager.expect("STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}; stderr:\n{}", manager.stderr());
}

#[test]
fn logs_to_the_journal_stream_carry_syslog_priorities() {
    let manager = Manager::new();
    let mut child = manager.start();
    manager.expect("READY=1");
    signal(&child, Signal::SIGTERM);
    child.wait().unwrap();
    let stderr = manager.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("empty catalog")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("listening")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('<') && !l.contains('\u{1b}')),
        "{stderr}"
    );
}

#[test]
fn check_errors_under_the_journal_are_prefixed_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nexus.toml");
    std::fs::write(&config, "[server]\nlisten_adress = 1\n").unwrap();
    let log = dir.path().join("stderr.log");
    let stderr = File::create(&log).unwrap();
    let meta = stderr.metadata().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["check", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(stderr)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(Path::new(&log)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("<3>") && lines[0].contains("listen_adress"));
    assert!(lines[1].starts_with("<3>1 problem in"));
}

/// `nexus check` as the unit's `ExecReload=` runs it on systemd 252: `$CREDENTIALS_DIRECTORY`
/// set but hidden from the process. Credentials are then skipped (the gateway re-reads them);
/// a visible directory without the credential is still an error.
#[test]
fn check_skips_credentials_it_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nexus.toml");
    std::fs::write(
        &config,
        "[pkcs11]\npin_file = \"hsm-pin\"\n[mcp.servers.a]\ncmd = [\"x\"]\nenv = { T = \"{{ credential.token }}\" }\n",
    )
    .unwrap();
    let check = |credentials: &Path| {
        Command::new(env!("CARGO_BIN_EXE_nexus"))
            .args(["check", "--config"])
            .arg(&config)
            .env("CREDENTIALS_DIRECTORY", credentials)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    let hidden = check(&dir.path().join("not-visible"));
    assert!(hidden.status.success(), "{hidden:?}");
    let stdout = String::from_utf8_lossy(&hidden.stdout);
    assert!(
        stdout.contains("OK (1 servers; credentials not visible here, not checked)"),
        "{stdout}"
    );
    let visible = check(dir.path());
    assert_eq!(visible.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&visible.stderr);
    assert!(stderr.contains("credential token is not in"), "{stderr}");
    assert!(stderr.contains("pkcs11.pin_file: file"), "{stderr}");
}
