//! The `nexus` binary: parse the command line, then hand over to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use nexus::cli::{Cli, Command, Pkcs11Command, TlsCommand};
use nexus::config;
use nexus::service::signals::{Request, Signals};
use nexus::service::{journal, notify};

/// glibc's allocator spends a sixth of the gateway's CPU in malloc/free under many concurrent
/// calls (arena locking and consolidation); mimalloc's per-thread heaps avoid that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits EX_CONFIG: the configuration is wrong; restarting will not help.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    journal::init(&cli.log, cli.log_style);
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match cli.command {
        Some(Command::Check) => check(&path),
        Some(Command::Pkcs11(Pkcs11Command::List {
            ref module,
            ref pin_file,
        })) => pkcs11_list(cli.config.as_deref(), module.clone(), pin_file.clone()),
        Some(Command::Pkcs11(ref command)) => pkcs11_admin(command, cli.config.as_deref()),
        Some(Command::Tls(TlsCommand::Probe { ref servers })) => probe(&path, servers),
        Some(Command::Serve) | None => serve(&cli, &path),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let (config, unchecked) = match config::check_without_credentials(path) {
        Ok(checked) => checked,
        Err(error) => {
            journal::eprint_error(&error.to_string());
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    // Hidden credentials may hold the passwords and PINs the material needs (see
    // `check_without_credentials`); the gateway checks it again when it reloads.
    let refused = if unchecked {
        Vec::new()
    } else {
        nexus::tls::material::check(&config)
    };
    if !refused.is_empty() {
        for problem in &refused {
            journal::eprint_error(&format!("{}: {problem}", path.display()));
        }
        return ExitCode::FAILURE;
    }
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

/// `nexus pkcs11 list`: `--module`/`--pin-file` win over the `[pkcs11]` table of `--config`.
fn pkcs11_list(
    config: Option<&std::path::Path>,
    module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
) -> ExitCode {
    let defaults = match config.map(config::load) {
        Some(Ok(config)) => config.pkcs11,
        Some(Err(error)) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
        None => config::Pkcs11Defaults::default(),
    };
    let Some(module) = module.or(defaults.module_path) else {
        eprintln!("{}", nexus::pkcs11::list::no_module_message());
        return ExitCode::from(EXIT_CONFIG);
    };
    let pin = match pin_file.map(config::SecretSource::File).or(defaults.pin) {
        Some(source) => match nexus::pkcs11::list::read_pin(&source) {
            Ok(pin) => Some(pin),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut out = std::io::stdout().lock();
    match nexus::pkcs11::list::list(&module, pin.as_ref(), &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `nexus pkcs11 keygen|csr|import-cert|check`.
fn pkcs11_admin(command: &Pkcs11Command, config: Option<&Path>) -> ExitCode {
    match nexus::pkcs11::admin::run(command, config, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_config() => {
            eprintln!("{error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn probe(path: &std::path::Path, servers: &[String]) -> ExitCode {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(nexus::tls::probe::run(&config, servers, &mut out)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cannot write the report: {error}");
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
    log_warnings(&config);
    if config.mcp.servers.is_empty() {
        tracing::warn!(config = %path.display(), "no [mcp.servers.NAME] configured: the gateway serves an empty catalog");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, path.to_path_buf())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, path: PathBuf) -> Result<(), String> {
    let address = config.server.listen_address;
    let mut signals =
        Signals::install().map_err(|error| format!("cannot install signal handlers: {error}"))?;
    let nexus = Arc::new(nexus::Nexus::start(&config).map_err(|error| error.to_string())?);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let shutdown = CancellationToken::new();
    let background = CancellationToken::new();
    notify::spawn_watchdog(background.clone());
    let mut serving = tokio::spawn({
        let (nexus, shutdown) = (nexus.clone(), shutdown.clone());
        async move { nexus.run(listener, shutdown).await }
    });
    tracing::info!(%address, "listening");
    // Ready: the listener is bound, the configuration and all TLS material are loaded.
    notify::ready(&status(&nexus));
    notify::spawn_status_with(
        {
            let nexus = nexus.clone();
            move || nexus.status()
        },
        background.clone(),
    );
    loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Shutdown => break,
                Request::Reload => {
                    notify::reloading();
                    reload(&nexus, &path).await;
                    notify::ready(&status(&nexus));
                }
            },
            finished = &mut serving => {
                return finished.map_err(|error| format!("the gateway task failed: {error}"));
            }
        }
    }
    tracing::info!("shutting down: draining requests in flight, then stopping downstreams");
    notify::stopping();
    shutdown.cancel();
    let result = serving
        .await
        .map_err(|error| format!("the gateway task failed: {error}"));
    background.cancel();
    result
}

/// What `nexus check` warns about, in the log of the gateway that runs the configuration.
fn log_warnings(config: &config::Config) {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
}

/// `STATUS=` text for the downstreams of `nexus`.
fn status(nexus: &nexus::Nexus) -> String {
    let (connected, total) = nexus.status();
    notify::status_text(connected, total)
}

/// SIGHUP: re-read the configuration; a bad one leaves the running one in place.
async fn reload(nexus: &nexus::Nexus, path: &Path) {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("reload refused, the running configuration stays:\n{error}");
            return;
        }
    };
    log_warnings(&config);
    match nexus.reload(&config).await {
        // Per-server TLS failures were logged where they happened (old material kept).
        Ok((report, _tls)) => tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            kept = report.kept.len(),
            "configuration reloaded"
        ),
        Err(error) => tracing::error!("reload refused, the running configuration stays: {error}"),
    }
}
