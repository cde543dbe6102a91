//! The `nexus` binary: parse the command line, then hand over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use nexus::config;
use nexus::service::signals::{Request, Signals};

/// sysexits EX_CONFIG: the configuration is wrong; restarting will not help.
const EXIT_CONFIG: u8 = 78;

/// An MCP gateway on native OpenSSL: one MCP endpoint for many downstream MCP servers.
#[derive(Debug, Parser)]
#[command(name = "nexus", version, about)]
struct Cli {
    /// Configuration file [default: ./nexus.toml, then /etc/nexus/nexus.toml].
    #[arg(short, long, global = true, env = "NEXUS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding `[server] listen_address`.
    #[arg(short = 'l', long, env = "NEXUS_LISTEN_ADDRESS")]
    listen_address: Option<SocketAddr>,
    /// Log filter: a level (error, warn, info, debug, trace) or `target=level,...`.
    #[arg(long, global = true, default_value = "info", env = "NEXUS_LOG")]
    log: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogStyle::Text)]
    log_style: LogStyle,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and exit: 0 when valid, 1 with every problem otherwise.
    Check,
    /// PKCS#11 tokens: what is needed to write a `pkcs11:` URI.
    #[command(subcommand)]
    Pkcs11(Pkcs11Command),
    /// TLS diagnostics.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
enum Pkcs11Command {
    /// List slots, tokens and objects (labels, ids, key types and sizes); never PINs or keys.
    List {
        /// PKCS#11 module [default: `[pkcs11] module_path` of --config].
        #[arg(long)]
        module: Option<PathBuf>,
        /// File holding the user PIN, to see private keys [default: `[pkcs11]` pin of --config].
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Connect to HTTPS downstreams with exactly their configured TLS settings and report the
    /// protocol, cipher, peer chain, verification verdict, client certificate and MCP
    /// `initialize` result. Exits 1 if any probe failed.
    Probe {
        /// Servers to probe (default: every HTTPS downstream).
        servers: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogStyle {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match cli.command {
        Some(Command::Check) => check(&path),
        Some(Command::Pkcs11(Pkcs11Command::List {
            ref module,
            ref pin_file,
        })) => pkcs11_list(cli.config.as_deref(), module.clone(), pin_file.clone()),
        Some(Command::Tls(TlsCommand::Probe { ref servers })) => probe(&path, servers),
        Some(Command::Serve) | None => serve(&cli, &path),
    }
}

fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|error| {
        eprintln!("invalid --log filter {:?} ({error}); using `info`", cli.log);
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_style {
        LogStyle::Text => builder.init(),
        LogStyle::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!(
                "{}: OK ({} servers)",
                path.display(),
                config.mcp.servers.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
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
            eprintln!("{error}");
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
    let mut serving = tokio::spawn({
        let (nexus, shutdown) = (nexus.clone(), shutdown.clone());
        async move { nexus.run(listener, shutdown).await }
    });
    tracing::info!(%address, "listening");
    loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Shutdown => break,
                Request::Reload => reload(&nexus, &path).await,
            },
            finished = &mut serving => {
                return finished.map_err(|error| format!("the gateway task failed: {error}"));
            }
        }
    }
    tracing::info!("shutting down: draining requests in flight, then stopping downstreams");
    shutdown.cancel();
    serving
        .await
        .map_err(|error| format!("the gateway task failed: {error}"))
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
