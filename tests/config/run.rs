//! Running the `nexus` binary on a configuration, bounded so a broken gateway fails the test
//! instead of hanging it or exhausting the machine's memory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longer than any check or refused start takes; a FIFO that blocks the gateway hits it.
const DEADLINE: Duration = Duration::from_secs(20);
/// Address space for the gateway, in KiB: reading `/dev/zero` until memory runs out stops here.
const ADDRESS_SPACE_KIB: u64 = 4 << 20;

/// `nexus ARGS... --config CONFIG` with `env` added, its output once it exits.
///
/// Panics (killing it) when it has not exited within [`DEADLINE`].
pub fn nexus(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run nexus");
    let started = Instant::now();
    while child.try_wait().expect("wait for nexus").is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().expect("kill nexus");
            let output = child.wait_with_output().expect("collect nexus");
            panic!(
                "nexus {args:?} --config {} still running after {DEADLINE:?} (blocked?); stderr:\n{}",
                config.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect nexus")
}

/// `nexus check`, which must fail: its stderr.
pub fn check_fails(config: &Path, env: &[(&str, &str)]) -> String {
    let output = nexus(&["check"], config, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "check should fail; stderr:\n{stderr}"
    );
    stderr
}
