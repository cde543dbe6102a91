//! A small, fast MCP server used as a downstream by the integration tests and the benchmark.
//!
//! It speaks MCP over stdio (newline-delimited JSON-RPC) or Streamable HTTP, written directly on
//! hyper and `serde_json` so that its own cost stays far below the gateway's: a benchmark can
//! only show the gateway's overhead if the downstream is faster than the gateway.
//!
//! - `handlers`: the MCP methods (prompts, resources, completion), transport-agnostic.
//! - `tools`: the tools and their behaviour.
//! - `stdio`: one task per request, responses written by one writer task as they finish.
//! - `http`: `POST/GET/DELETE /mcp` with sessions, JSON or SSE answers.
//! - `legacy_sse`: the HTTP+SSE transport (`GET /sse`, `POST /messages`) beside it.

mod handlers;
mod http;
mod legacy_sse;
mod stdio;
mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::handlers::Fixture;

/// Command line: the transport, then the options shared by both transports.
#[derive(Parser)]
#[command(about = "MCP fixture server for nexus tests and benchmarks")]
struct Cli {
    #[command(subcommand)]
    transport: Transport,
}

/// Which transport to serve.
#[derive(Subcommand)]
enum Transport {
    /// MCP over stdin/stdout.
    Stdio {
        #[command(flatten)]
        options: Options,
    },
    /// MCP over Streamable HTTP at `/mcp`; prints `LISTENING ADDR` once bound.
    Http {
        /// Address to bind; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The HTTP+SSE stream (`/sse`) announces no `endpoint` (clients must be told
        /// `/messages`).
        #[arg(long)]
        sse_silent: bool,
        #[command(flatten)]
        options: Options,
    },
}

/// Options shared by both transports.
#[derive(Args, Clone, Debug)]
pub struct Options {
    /// Number of extra generated tools `tool_0..tool_{N-1}`.
    #[arg(long = "tools", default_value_t = 0)]
    pub generated_tools: usize,
    /// Page size of `tools/list`; without it the whole list comes in one page.
    #[arg(long)]
    pub page_size: Option<usize>,
    /// `serverInfo.name` reported by `initialize`.
    #[arg(long, default_value = "fixture")]
    pub name: String,
    /// Delay before binding (http) or reading stdin (stdio): a downstream that starts late.
    #[arg(long, default_value_t = 0)]
    pub start_delay_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    match Cli::parse().transport {
        Transport::Stdio { options } => {
            let delay = options.start_delay_ms;
            // Only the stdio transport may exit on `crash`: over HTTP it would kill every session.
            let fixture = Arc::new(Fixture::new(options, true));
            tokio::time::sleep(Duration::from_millis(delay)).await;
            stdio::serve(fixture).await
        }
        Transport::Http {
            listen,
            sse_silent,
            options,
        } => {
            let delay = options.start_delay_ms;
            let fixture = Arc::new(Fixture::new(options, false));
            tokio::time::sleep(Duration::from_millis(delay)).await;
            http::serve(fixture, listen, legacy_sse::LegacySse::new(!sse_silent)).await
        }
    }
}
