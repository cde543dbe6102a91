//! The `nexus` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use nexus::cli::{Cli, Command};
use nexus::config;
use nexus::service::signals::{Request, Signals};
use nexus::service::{journal, notify};

/// sysexits EX_CONFIG: the configuration is wrong; restarting will not help.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    journal::init(&cli.log, cli.log_style);
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match cli.command {
        Some(Command::Check) => check(&path),
        Some(Command::Serve) | None => serve(&cli, &path),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::check_without_credentials(path) {
        Ok((config, unchecked)) => {
            let note = if unchecked {
                "; credentials not visible here, not checked"
            } else {
                ""
            };
            println!(
                "{}: OK ({} servers{note})",
                path.display(),
                config.mcp.servers.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            journal::eprint_error(&error.to_string());
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli, path: &std::path::Path) -> ExitCode {
    let mut config = match config::load(path) {
        Ok(config) => config,
        Err(error) => {
            journal::eprint_error(&error.to_string());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(address) = cli.listen_address {
        config.server.listen_address = address;
    }
    if config.mcp.servers.is_empty() {
        tracing::warn!(config = %path.display(), "no [mcp.servers.NAME] configured: the gateway serves an empty catalog");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config) -> Result<(), String> {
    let address = config.server.listen_address;
    let mut signals =
        Signals::install().map_err(|error| format!("cannot install signal handlers: {error}"))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let shutdown = CancellationToken::new();
    let watchdog = CancellationToken::new();
    notify::spawn_watchdog(watchdog.clone());
    let mut serving = tokio::spawn({
        let shutdown = shutdown.clone();
        // `serve` sends READY=1 once the gateway has started on the bound listener.
        async move { nexus::serve(&config, listener, shutdown).await }
    });
    tracing::info!(%address, "listening");
    loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Shutdown => break,
                Request::Reload => {
                    notify::reloading();
                    tracing::warn!("SIGHUP: reloading is not supported by this version; restart to apply changes");
                    // The status task puts "N/M downstreams connected" back within a second.
                    notify::ready("reload not supported; running the configuration loaded at start");
                }
            },
            // Ends early only when the gateway could not start (e.g. bad TLS material).
            finished = &mut serving => return outcome(finished),
        }
    }
    tracing::info!("shutting down: draining requests in flight, then stopping downstreams");
    notify::stopping();
    shutdown.cancel();
    let result = outcome(serving.await);
    watchdog.cancel();
    result
}

fn outcome(
    finished: Result<Result<(), nexus::gateway::StartError>, tokio::task::JoinError>,
) -> Result<(), String> {
    match finished {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(format!("the gateway task failed: {error}")),
    }
}
