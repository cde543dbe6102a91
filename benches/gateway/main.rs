//! Gateway overhead benchmark: the same MCP calls direct to a fixture server and through the
//! `nexus` gateway, measured in one run (DESIGN.md §5). Run with `cargo bench --bench gateway`.
//!
//! Per path and transport: p50/p99 latency of sequential `echo` calls from one client, calls/s
//! of `echo` from 64 concurrent clients, and calls/s of a 5 ms `sleep` from 64 clients (which
//! shows whether the gateway keeps many requests in flight to one downstream). For the 64-client
//! `echo` run it also prints the CPU time per call of the client, the gateway and the downstream.
//! All three share the machine's cores, so the gateway's own CPU per call, an HTTP exchange in
//! and another out, bounds its throughput ratio; the CPU table shows by how much.

mod cpu;
mod http_client;
mod processes;
mod stdio_client;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cpu::{PerCall, Roles, Usage};
use crate::http_client::{HttpSession, McpHttp};
use crate::processes::{FixtureHttp, Gateway, toml_string};
use crate::stdio_client::StdioMcp;

/// Errors end the bench with a message; nothing here is recovered from.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

const WARMUP_CALLS: usize = 200;
const LATENCY_CALLS: usize = 2000;
const CLIENTS: usize = 64;
/// Calls per client in the throughput runs; each run also stops at [`RUN_LIMIT`].
const ECHO_CALLS_PER_CLIENT: usize = 1000;
const SLEEP_CALLS_PER_CLIENT: usize = 100;
const RUN_LIMIT: Duration = Duration::from_secs(5);

/// DESIGN.md §5 targets for the gateway against direct.
const TARGET_ADDED_P50_US: f64 = 150.0;
const TARGET_ADDED_P99_US: f64 = 1000.0;
const TARGET_THROUGHPUT_PERCENT: f64 = 70.0;

fn main() -> Result<(), BenchError> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), BenchError> {
    let fixture = processes::fixture_program()?;
    let gateway = processes::gateway_program();
    let mut rows = Vec::new();

    let fixture_http = FixtureHttp::spawn(&fixture).await?;
    let direct = Roles {
        gateway: None,
        downstream: fixture_http.pid,
    };
    let target = Target::http(&fixture_http.endpoint)?;
    rows.push(measure("direct", "http", &target, direct).await?);
    let downstream = format!("url = {}", toml_string(&fixture_http.endpoint));
    let program = gateway.as_deref();
    rows.push(measure_gateway(program, "http", &downstream, Some(fixture_http.pid)).await);
    drop(fixture_http);

    let stdio = Arc::new(StdioMcp::spawn(&fixture, &["stdio"]).await?);
    let direct = Roles {
        gateway: None,
        downstream: stdio.pid,
    };
    rows.push(measure("direct", "stdio", &Target::Stdio(stdio), direct).await?);
    let fixture_path = fixture.to_str().ok_or("fixture path is not UTF-8")?;
    let downstream = format!("cmd = [{}, \"stdio\"]", toml_string(fixture_path));
    // The gateway starts its own stdio fixture: the downstream is the gateway's child.
    rows.push(measure_gateway(program, "stdio", &downstream, None).await);

    print_report(&rows);
    Ok(())
}

/// The gateway row, or a row saying why there is none (the bench still reports direct).
/// `downstream_pid` is the fixture's process, or `None` when it is the gateway's child.
async fn measure_gateway(
    program: Option<&Path>,
    transport: &'static str,
    downstream: &str,
    downstream_pid: Option<u32>,
) -> Row {
    let Some(program) = program else {
        return Row::missing(transport, "no `nexus` binary target in this build".into());
    };
    let measured = async {
        let gateway = Gateway::spawn(program, downstream).await?;
        let pid = gateway.pid()?;
        let roles = Roles {
            gateway: Some(pid),
            downstream: downstream_pid.map_or_else(|| cpu::first_child(pid), Ok)?,
        };
        measure(
            "gateway",
            transport,
            &Target::http(&gateway.endpoint)?,
            roles,
        )
        .await
    };
    measured
        .await
        .unwrap_or_else(|e| Row::missing(transport, e.to_string()))
}

/// What a benchmark client talks to.
enum Target {
    /// A Streamable HTTP endpoint: each client opens its own session over one shared pool.
    Http(Box<McpHttp>),
    /// One stdio child shared by every client, requests multiplexed by id.
    Stdio(Arc<StdioMcp>),
}

impl Target {
    fn http(endpoint: &str) -> Result<Self, BenchError> {
        Ok(Self::Http(Box::new(McpHttp::new(endpoint.parse()?))))
    }

    async fn client(&self) -> Result<Caller, BenchError> {
        Ok(match self {
            Self::Http(http) => Caller::Http(Box::new(http.open_session().await?)),
            Self::Stdio(stdio) => Caller::Stdio(Arc::clone(stdio)),
        })
    }
}

/// One benchmark client.
enum Caller {
    Http(Box<HttpSession>),
    Stdio(Arc<StdioMcp>),
}

impl Caller {
    /// `tools/call name args`; a tool error result counts as a failure.
    async fn call_tool(&self, name: &str, arguments: Value) -> Result<(), BenchError> {
        let params = json!({"name": name, "arguments": arguments});
        let result = match self {
            Self::Http(session) => session.request("tools/call", params).await?,
            Self::Stdio(stdio) => stdio.request("tools/call", params).await?,
        };
        if result["isError"] == true {
            return Err(format!("tool {name} failed: {result}").into());
        }
        Ok(())
    }
}

/// One line of the report.
struct Row {
    path: &'static str,
    transport: &'static str,
    /// `None` when this path could not be measured; the reason is in `note`.
    numbers: Option<Numbers>,
    note: String,
}

impl Row {
    fn missing(transport: &'static str, note: String) -> Self {
        Self {
            path: "gateway",
            transport,
            numbers: None,
            note,
        }
    }
}

struct Numbers {
    p50_us: f64,
    p99_us: f64,
    echo_per_s: f64,
    sleep_per_s: f64,
    /// CPU per call of each process during the 64-client `echo` run.
    echo_cpu: PerCall,
}

async fn measure(
    path: &'static str,
    transport: &'static str,
    target: &Target,
    roles: Roles,
) -> Result<Row, BenchError> {
    let (p50_us, p99_us) = latency(target).await?;
    let before = Usage::read(roles)?;
    let echo = throughput(
        target,
        "echo",
        json!({"message": "hello"}),
        ECHO_CALLS_PER_CLIENT,
    )
    .await?;
    let echo_cpu = Usage::read(roles)?.per_call_since(&before, echo.calls);
    let sleep = throughput(target, "sleep", json!({"ms": 5}), SLEEP_CALLS_PER_CLIENT).await?;
    let numbers = Numbers {
        p50_us,
        p99_us,
        echo_per_s: echo.per_s,
        sleep_per_s: sleep.per_s,
        echo_cpu,
    };
    Ok(Row {
        path,
        transport,
        numbers: Some(numbers),
        note: String::new(),
    })
}

/// p50 and p99 in µs of sequential `echo` calls from one client, after a warm-up.
async fn latency(target: &Target) -> Result<(f64, f64), BenchError> {
    let client = target.client().await?;
    for _ in 0..WARMUP_CALLS {
        client
            .call_tool("echo", json!({"message": "warm-up"}))
            .await?;
    }
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    for _ in 0..LATENCY_CALLS {
        let started = Instant::now();
        client
            .call_tool("echo", json!({"message": "hello"}))
            .await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Ok((at(0.50), at(0.99)))
}

/// Calls made by a throughput run, and their rate.
struct Run {
    calls: usize,
    per_s: f64,
}

/// Calls/s of `tool` from [`CLIENTS`] concurrent clients, each looping up to `per_client` calls
/// or until [`RUN_LIMIT`].
async fn throughput(
    target: &Target,
    tool: &'static str,
    args: Value,
    per_client: usize,
) -> Result<Run, BenchError> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(target.client().await?);
    }
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;
    let loops = clients.into_iter().map(|client| {
        let args = args.clone();
        tokio::spawn(async move {
            let mut done = 0;
            while done < per_client && Instant::now() < deadline {
                client.call_tool(tool, args.clone()).await?;
                done += 1;
            }
            Ok::<_, BenchError>(done)
        })
    });
    let mut calls = 0;
    for handle in loops.collect::<Vec<_>>() {
        calls += handle.await??;
    }
    Ok(Run {
        calls,
        per_s: calls as f64 / started.elapsed().as_secs_f64(),
    })
}

fn print_report(rows: &[Row]) {
    println!(
        "| path | transport | p50 µs | p99 µs | calls/s @{CLIENTS} | sleep5 calls/s @{CLIENTS} |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        match &row.numbers {
            Some(n) => println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                row.path, row.transport, n.p50_us, n.p99_us, n.echo_per_s, n.sleep_per_s
            ),
            None => println!(
                "| {} | {} | n/a | n/a | n/a | n/a |",
                row.path, row.transport
            ),
        }
    }
    println!();
    print_cpu(rows);
    println!();
    for transport in ["http", "stdio"] {
        let find = |path| {
            rows.iter()
                .find(|r| r.path == path && r.transport == transport)
        };
        match (
            find("direct").and_then(|r| r.numbers.as_ref()),
            find("gateway"),
        ) {
            (
                Some(direct),
                Some(Row {
                    numbers: Some(gateway),
                    ..
                }),
            ) => print_ratios(transport, direct, gateway),
            (_, Some(gateway)) => println!("{transport}: gateway not measured: {}", gateway.note),
            _ => println!("{transport}: not measured"),
        }
    }
}

fn print_cpu(rows: &[Row]) {
    println!("CPU µs per call, {CLIENTS}-client echo run:");
    println!("| path | transport | client | gateway | downstream | total |");
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        let Some(n) = &row.numbers else { continue };
        let cpu = &n.echo_cpu;
        let gateway = cpu.gateway_us.map_or("-".into(), |us| format!("{us:.1}"));
        let total = cpu.client_us + cpu.gateway_us.unwrap_or(0.0) + cpu.downstream_us;
        println!(
            "| {} | {} | {:.1} | {gateway} | {:.1} | {total:.1} |",
            row.path, row.transport, cpu.client_us, cpu.downstream_us
        );
    }
}

fn print_ratios(transport: &str, direct: &Numbers, gateway: &Numbers) {
    let added_p50 = gateway.p50_us - direct.p50_us;
    let added_p99 = gateway.p99_us - direct.p99_us;
    let ratio = 100.0 * gateway.echo_per_s / direct.echo_per_s;
    let sleep_ratio = 100.0 * gateway.sleep_per_s / direct.sleep_per_s;
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "{transport}: added p50: {added_p50:.0} µs (target <= {TARGET_ADDED_P50_US:.0} µs, {}), \
         added p99: {added_p99:.0} µs (target <= {TARGET_ADDED_P99_US:.0} µs, {}), \
         throughput ratio: {ratio:.1} % (target >= {TARGET_THROUGHPUT_PERCENT:.0} %, {}), \
         sleep5 ratio: {sleep_ratio:.1} %",
        mark(added_p50 <= TARGET_ADDED_P50_US),
        mark(added_p99 <= TARGET_ADDED_P99_US),
        mark(ratio >= TARGET_THROUGHPUT_PERCENT),
    );
}
