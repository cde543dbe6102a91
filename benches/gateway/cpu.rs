//! CPU time per call of each process in a run, read from `/proc`. Calls/s on a shared 2-core
//! machine depend on what else runs; CPU per call shows where each call's cost goes, and so why
//! the throughput ratio is what it is.

use std::time::Duration;

use crate::BenchError;

/// `/proc/PID/stat` counts in USER_HZ, which the kernel's ABI fixes at 100 on every
/// architecture this project ships for.
const TICK: Duration = Duration::from_millis(10);

/// The processes that share the work of a call.
#[derive(Clone, Copy)]
pub struct Roles {
    /// The gateway, when the path goes through one.
    pub gateway: Option<u32>,
    /// The MCP server answering the calls.
    pub downstream: u32,
}

/// CPU used by the benchmark client (this process), the gateway and the downstream.
#[derive(Clone, Copy)]
pub struct Usage {
    client: Duration,
    gateway: Option<Duration>,
    downstream: Duration,
}

/// CPU µs per call of each role between two [`Usage`] readings.
pub struct PerCall {
    pub client_us: f64,
    pub gateway_us: Option<f64>,
    pub downstream_us: f64,
}

impl Usage {
    pub fn read(roles: Roles) -> Result<Self, BenchError> {
        Ok(Self {
            client: cpu_time(std::process::id())?,
            gateway: roles.gateway.map(cpu_time).transpose()?,
            downstream: cpu_time(roles.downstream)?,
        })
    }

    /// What each role used since `before`, divided over `calls`.
    pub fn per_call_since(&self, before: &Self, calls: usize) -> PerCall {
        let per_call = |now: Duration, then: Duration| {
            now.saturating_sub(then).as_secs_f64() * 1e6 / calls.max(1) as f64
        };
        PerCall {
            client_us: per_call(self.client, before.client),
            gateway_us: self
                .gateway
                .zip(before.gateway)
                .map(|(now, then)| per_call(now, then)),
            downstream_us: per_call(self.downstream, before.downstream),
        }
    }
}

/// User plus system CPU time of every thread of `pid`.
fn cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses; the fields after its last ')' do not.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; the name ends field 2.
    let ticks = |i: usize| -> Result<u32, BenchError> {
        Ok(fields.get(i).ok_or("short /proc stat")?.parse()?)
    };
    Ok(TICK * (ticks(11)? + ticks(12)?))
}

/// The first child process of `pid` (the gateway's stdio downstream), whichever of its threads
/// started it.
pub fn first_child(pid: u32) -> Result<u32, BenchError> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let children = std::fs::read_to_string(task?.path().join("children"))?;
        if let Some(child) = children.split_whitespace().next() {
            return Ok(child.parse()?);
        }
    }
    Err(format!("process {pid} has no child").into())
}
