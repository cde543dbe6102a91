//! The command line, defined here (not in `main.rs`) so that `examples/gen-man.rs` renders the
//! `nexus(8)` man page from the same definition the binary parses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pkcs11::keygen::KeySpec;

/// An MCP gateway on native OpenSSL: one MCP endpoint for many downstream MCP servers.
#[derive(Debug, Parser)]
#[command(
    name = "nexus",
    version,
    about,
    after_long_help = AFTER_HELP,
)]
pub struct Cli {
    /// Configuration file [default: ./nexus.toml, then /etc/nexus/nexus.toml].
    #[arg(short, long, global = true, env = "NEXUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding `[server] listen_address`.
    #[arg(short = 'l', long, env = "NEXUS_LISTEN_ADDRESS")]
    pub listen_address: Option<SocketAddr>,
    /// Log filter: a level (error, warn, info, debug, trace) or `target=level,...`.
    #[arg(long, global = true, default_value = "info", env = "NEXUS_LOG")]
    pub log: String,
    /// Log format. Under systemd (JOURNAL_STREAM set) `text` lines carry syslog priority
    /// prefixes (<3> error ... <7> debug) for the journal instead of timestamps and colours.
    #[arg(long, global = true, value_enum, default_value_t = LogStyle::Text)]
    pub log_style: LogStyle,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and exit: 0 when valid, 1 with every problem otherwise.
    Check,
    /// PKCS#11 tokens: list them, and put the gateway's keys and certificates on them (keygen,
    /// csr, import-cert, check).
    #[command(subcommand)]
    Pkcs11(Pkcs11Command),
    /// TLS diagnostics.
    #[command(subcommand)]
    Tls(TlsCommand),
}

/// `nexus pkcs11 ...`.
#[derive(Debug, Subcommand)]
pub enum Pkcs11Command {
    /// List slots, tokens and objects (labels, ids, key types and sizes); never PINs or keys.
    List {
        /// PKCS#11 module [default: `[pkcs11] module_path` of --config].
        #[arg(long)]
        module: Option<PathBuf>,
        /// File holding the user PIN, to see private keys [default: `[pkcs11]` pin of --config].
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Generate a key pair on the token (private key sensitive, never extractable, sign-only)
    /// and print its `pkcs11:` URI. Refuses a label or id that is already taken.
    Keygen {
        /// Label of the token to generate on.
        #[arg(long)]
        token: String,
        /// Label (`CKA_LABEL`) of the new key pair.
        #[arg(long)]
        label: String,
        /// `CKA_ID` in hex, e.g. `01` [default: 8 random bytes].
        #[arg(long)]
        id: Option<String>,
        /// Key type and size.
        #[arg(long = "type", value_enum)]
        key_type: KeySpec,
        /// Module and PIN.
        #[command(flatten)]
        access: TokenAccess,
    },
    /// Write a PKCS#10 certificate request signed by a token key (ECDSA, or RSA PKCS#1 v1.5 /
    /// RSA-PSS), checked with OpenSSL before it is written, as PEM.
    Csr {
        /// The private key's `pkcs11:` URI (as `keygen` printed it).
        #[arg(long)]
        key: String,
        /// Subject, e.g. `/CN=nexus-gateway/O=Example`.
        #[arg(long)]
        subject: String,
        /// subjectAltName entries, e.g. `DNS:gw.example.com,IP:10.0.0.5`.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
        /// Ask for a TLS client certificate (extendedKeyUsage=clientAuth, digitalSignature).
        #[arg(long, conflicts_with = "server")]
        client: bool,
        /// Ask for a TLS server certificate (extendedKeyUsage=serverAuth, digitalSignature).
        #[arg(long)]
        server: bool,
        /// Sign with RSA-PSS instead of PKCS#1 v1.5 (RSA keys only).
        #[arg(long)]
        rsa_pss: bool,
        /// Write the request here [default: standard output].
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Module and PIN.
        #[command(flatten)]
        access: TokenAccess,
    },
    /// Store a certificate on the token with its key's `CKA_ID` and label (and the chain that
    /// follows it in the file), so the configuration can name it by `pkcs11:` URI. Refuses a
    /// certificate that does not match the key.
    ImportCert {
        /// Label of the token holding the key.
        #[arg(long)]
        token: String,
        /// Label (`CKA_LABEL`) of the private key the certificate is for.
        #[arg(long)]
        label: String,
        /// The certificate: PEM (leaf first, then its chain) or DER.
        #[arg(long)]
        cert: PathBuf,
        /// Replace the certificate already stored for the key (renewal).
        #[arg(long)]
        replace: bool,
        /// Module and PIN.
        #[command(flatten)]
        access: TokenAccess,
    },
    /// For every `pkcs11:` key or certificate in --config: find it, log in with the configured
    /// PIN source, sign a test message with the key and verify it with the certificate's public
    /// key, and report the certificate's expiry. Exits 1 naming each failure. A rejected PIN is
    /// tried once per token, never again.
    Check {
        /// Module and PIN, over `[pkcs11]` of --config.
        #[command(flatten)]
        access: TokenAccess,
    },
}

/// Which PKCS#11 module and PIN a token subcommand uses. The PIN is never read from the
/// command line.
#[derive(Debug, Args)]
pub struct TokenAccess {
    /// PKCS#11 module [default: `[pkcs11] module_path` of --config].
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// File holding the user PIN; a bare name is read from $CREDENTIALS_DIRECTORY when that is
    /// set [default: the `[pkcs11]` PIN of --config, else asked for without echo on a terminal].
    #[arg(long)]
    pub pin_file: Option<PathBuf>,
}

/// `nexus tls ...`.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Connect to HTTPS downstreams with exactly their configured TLS settings and report the
    /// protocol, cipher, peer chain, verification verdict, client certificate and MCP
    /// `initialize` result. Exits 1 if any probe failed.
    Probe {
        /// Servers to probe (default: every HTTPS downstream).
        servers: Vec<String>,
    },
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogStyle {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Extra sections of `--help` and of the man page.
const AFTER_HELP: &str = "\
Signals: SIGHUP re-reads the configuration and every certificate, key and PIN file \
(systemctl reload nexus); SIGTERM and SIGINT drain requests in flight, stop stdio \
downstreams and exit.

Under systemd: READY=1 is sent once the listener is bound, STATUS= shows connected/total \
downstreams, WATCHDOG=1 keep-alives are sent when WatchdogSec= is set. `{{ credential.NAME }}` \
in nexus.toml reads $CREDENTIALS_DIRECTORY/NAME (LoadCredential=), and a relative pin_file or \
*_password_file names a file in $CREDENTIALS_DIRECTORY when it is set.

Putting the gateway's keys on an HSM: (1) `nexus pkcs11 keygen --token nexus --label \
client-key --type ec:p256` generates a sign-only, non-extractable key on the token and prints \
its pkcs11: URI; (2) `nexus pkcs11 csr --key URI --subject /CN=gateway --client -o client.csr` \
writes a request signed by that key, for your CA; (3) `nexus pkcs11 import-cert --token nexus \
--label client-key --cert client.crt` stores the issued certificate next to the key and prints \
its URI; (4) put both URIs in nexus.toml (client_key_path and client_cert_path, or [server.tls] \
key and certificate) and run `nexus pkcs11 check`, which signs with each configured token key, \
verifies with its certificate and reports the expiry. Every pkcs11 subcommand takes --module and \
--pin-file (defaults: [pkcs11] of --config). The PIN is never read from the command line: it \
comes from the URI's pin-source, else --pin-file (a bare name is read from \
$CREDENTIALS_DIRECTORY), else [pkcs11], else a prompt without echo on a terminal. `nexus pkcs11 SUBCOMMAND --help` lists every \
option.

Files: /etc/nexus/nexus.toml (configuration), /etc/nexus/certs (certificates and keys), \
/etc/nexus/credentials (secrets for LoadCredential=, root only), /var/lib/nexus (state, \
including a private SoftHSM token store).

Exit status: 0 on a clean stop, 1 on a start-up failure, 78 when the configuration is invalid.";
