//! What the token subcommands (`nexus pkcs11 keygen`, `csr`, `import-cert`, `check`) share:
//! the module and PIN they use, a logged-in token, and their errors.
//!
//! The PIN comes from the URI's `pin-source` when it has one (as for `serve`), else from
//! `--pin-file` (a bare name is read from `$CREDENTIALS_DIRECTORY` when set), else from the
//! `[pkcs11]` table of `--config`, else from a prompt without echo when standard input is a
//! terminal. Never from the command line.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use openssl::x509::X509;
use secrecy::SecretString;

use super::token::{Pin, Token};
use super::{Pkcs11Error, Pkcs11Uri};
use crate::cli::{Pkcs11Command, TokenAccess};
use crate::config::{self, ConfigError, Pkcs11Defaults, SecretSource};

/// Why a token subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `--config` could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `--module` nor `[pkcs11] module_path` names a module.
    #[error("{}", super::list::no_module_message())]
    NoModule,
    /// A token operation failed.
    #[error(transparent)]
    Pkcs11(#[from] Pkcs11Error),
    /// An argument is malformed.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `nexus pkcs11 check` found problems (each one is in its report).
    #[error("{failed} of {total} PKCS#11 key/certificate pairs failed the check (see above)")]
    CheckFailed {
        /// How many failed.
        failed: usize,
        /// How many were checked.
        total: usize,
    },
    /// The report could not be written to standard output.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl AdminError {
    /// Whether the configuration (or the command line) is at fault, for exit status 78.
    pub fn is_config(&self) -> bool {
        matches!(self, AdminError::Config(_) | AdminError::NoModule)
    }
}

/// Runs a token subcommand other than `list`, writing its result to `out`.
pub fn run(
    command: &Pkcs11Command,
    config: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    match command {
        Pkcs11Command::List { .. } => Err(AdminError::Usage(
            "`nexus pkcs11 list` is not a token subcommand".to_owned(),
        )),
        Pkcs11Command::Keygen {
            token,
            label,
            id,
            key_type,
            access,
        } => {
            let request = super::keygen::Request {
                token,
                label,
                id: id.as_deref(),
                spec: *key_type,
            };
            let uri = super::keygen::generate(&request, &defaults(config, access)?)?;
            Ok(writeln!(out, "{uri}")?)
        }
        Pkcs11Command::Csr {
            key,
            subject,
            san,
            client,
            server,
            rsa_pss,
            out: path,
            access,
        } => {
            let usage = match (client, server) {
                (true, _) => Some(super::csr::Usage::Client),
                (_, true) => Some(super::csr::Usage::Server),
                _ => None,
            };
            let request = super::csr::Request {
                key,
                subject,
                san,
                usage,
                rsa_pss: *rsa_pss,
            };
            csr(&request, &defaults(config, access)?, path.as_deref(), out)
        }
        Pkcs11Command::ImportCert {
            token,
            label,
            cert,
            replace,
            access,
        } => {
            let request = super::import::Request {
                token,
                label,
                cert,
                replace: *replace,
            };
            let uri = super::import::import(&request, &defaults(config, access)?)?;
            Ok(writeln!(out, "{uri}")?)
        }
        Pkcs11Command::Check { access } => {
            let path = config.map_or_else(config::default_path, Path::to_path_buf);
            let loaded = config::load(&path)?;
            super::check::run(&loaded, &defaults(None, access)?, out)
        }
    }
}

/// Writes the request as PEM to `path`, else to `out`.
fn csr(
    request: &super::csr::Request<'_>,
    defaults: &Pkcs11Defaults,
    path: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let pem = super::csr::create(request, defaults)?
        .to_pem()
        .map_err(|source| Pkcs11Error::OpenSsl {
            action: "write the request as PEM",
            source,
        })?;
    match path {
        Some(path) => std::fs::write(path, pem).map_err(|source| AdminError::File {
            action: "write",
            path: path.to_owned(),
            source,
        }),
        None => Ok(out.write_all(&pem)?),
    }
}

/// The `[pkcs11]` table of `config` (if given) with `--module` and `--pin-file` over it.
fn defaults(config: Option<&Path>, access: &TokenAccess) -> Result<Pkcs11Defaults, AdminError> {
    let mut defaults = match config {
        Some(path) => config::load(path)?.pkcs11,
        None => Pkcs11Defaults::default(),
    };
    if let Some(module) = &access.module {
        defaults.module_path = Some(module.clone());
    }
    if let Some(pin_file) = &access.pin_file {
        defaults.pin = Some(SecretSource::File(pin_file.clone()));
    }
    Ok(defaults)
}

/// Opens and logs in to the token `uri` names, asking for the PIN on a terminal when no file
/// or configuration gives one.
pub(crate) fn open_token(
    uri: &Pkcs11Uri,
    defaults: &Pkcs11Defaults,
) -> Result<Arc<Token>, AdminError> {
    match super::open_token(uri, defaults, prompt) {
        Err(Pkcs11Error::NoModule { .. }) => Err(AdminError::NoModule),
        Err(Pkcs11Error::PinMissing { token, .. }) => Err(AdminError::Usage(format!(
            "no PIN for token \"{token}\": pass --pin-file PATH (a bare name is read from $CREDENTIALS_DIRECTORY), set [pkcs11] pin_file in --config, or run on a terminal to be asked"
        ))),
        other => Ok(other?),
    }
}

/// Loads the private key `uri` names, asking for the PIN as [`open_token`] does.
pub(crate) fn load_key(
    uri: &str,
    defaults: &Pkcs11Defaults,
) -> Result<super::TokenKey, AdminError> {
    super::private_key_with(uri, |uri| open_token(uri, defaults))
}

/// Loads the certificate chain `uri` names, asking for the PIN as [`open_token`] does.
pub(crate) fn load_certificate_chain(
    uri: &str,
    defaults: &Pkcs11Defaults,
) -> Result<Vec<X509>, AdminError> {
    super::certificate_chain_with(uri, |uri| open_token(uri, defaults))
}

fn prompt(label: &str) -> Result<Option<Pin>, Pkcs11Error> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let text = rpassword::prompt_password(format!("User PIN for token \"{label}\": "))
        .map_err(|source| Pkcs11Error::PinPrompt { source })?;
    Ok(Some(Pin {
        secret: SecretString::from(text),
        origin: "the PIN typed at the prompt".to_owned(),
    }))
}
