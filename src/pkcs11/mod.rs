//! Keys and certificates held in PKCS#11 tokens (HSMs, smartcards), usable by OpenSSL for TLS.
//!
//! Design (DESIGN.md §4): a `cryptoki` token layer plus an in-process OpenSSL 3 provider,
//! `nexus-pkcs11`, registered with `OSSL_PROVIDER_add_builtin` in the default library context.
//! Nothing is installed or configured beyond the vendor's PKCS#11 module.
//!
//! # Use from the TLS layer
//!
//! ```no_run
//! # fn demo(defaults: &nexus::config::Pkcs11Defaults) -> Result<(), Box<dyn std::error::Error>> {
//! use openssl::ssl::{SslConnector, SslMethod};
//! let key = nexus::pkcs11::load_private_key(
//!     "pkcs11:token=nexus;object=client-key;type=private",
//!     defaults,
//! )?;
//! let chain = nexus::pkcs11::load_certificate_chain("pkcs11:token=nexus;object=client-key;type=cert", defaults)?;
//! key.check_certificate(&chain[0])?; // a mismatch is a startup error
//! let mut builder = SslConnector::builder(SslMethod::tls_client())?;
//! builder.set_certificate(&chain[0])?;
//! builder.set_private_key(key.pkey())?;
//! # Ok(()) }
//! ```
//!
//! - [`load_private_key`] loads the module once per process (`C_Initialize` with OS locking),
//!   finds the token, logs in once per token, finds exactly one private key, checks the token
//!   can sign with the mechanisms the key needs, and returns a [`TokenKey`] whose
//!   [`pkey`](TokenKey::pkey) goes to `SslContextBuilder::set_private_key`. Keep the `TokenKey`
//!   (or the `SslContext`) alive as long as the key is used; it is cheap to clone the `PKey`.
//! - [`load_certificate_chain`] returns the certificate the URI names (leaf first) followed by
//!   the issuers found on the same token.
//! - Module: the URI's `module-path`, else `[pkcs11] module_path`.
//! - PIN: the URI's `pin-source=file:PATH` (or `pin-value`, accepted with a warning), else
//!   `[pkcs11] pin_file` / `pin`. A PIN file given as a bare name (no `/`) is read from
//!   `$CREDENTIALS_DIRECTORY` when that is set (systemd `LoadCredential=`). One trailing newline
//!   is stripped. The PIN stays in memory as a secret, to log in again after the token lost its
//!   sessions; it is never logged. A rejected PIN is never tried again in this process.
//! - Signing runs in `tokio::task::block_in_place` on a multi-thread runtime. When the token lost
//!   its sessions (HSM restart, `CKR_SESSION_HANDLE_INVALID`, `CKR_USER_NOT_LOGGED_IN`, device
//!   errors), the signature is retried once after a new login and a new key lookup by `CKA_ID`.
//! - Errors ([`Pkcs11Error`]) name the PKCS#11 function, the `CKR_` code and the URI with any
//!   `pin-value` redacted; the caller adds the server's name.
//!
//! Process-wide effects: the provider sets the default property query to
//! `?provider!=nexus-pkcs11` (other algorithms keep coming from the default provider) and
//! requires OpenSSL 3.0.7 or later. PKCS#11 state does not survive `fork()`: load keys after
//! daemonizing.

pub mod admin;
mod algorithm_id;
pub mod check;
pub mod csr;
mod error;
pub mod import;
mod key;
pub mod keygen;
pub mod list;
mod provider;
mod scheme;
mod session_pool;
mod token;
pub mod uri;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509Ref};
use secrecy::{ExposeSecret, SecretString};

pub use error::Pkcs11Error;
pub use uri::{ObjectType, Pkcs11Uri};

use crate::config::bounded;
use crate::config::{Pkcs11Defaults, SecretSource};

/// A private key that stays on its token, usable as an OpenSSL key.
#[derive(Clone)]
pub struct TokenKey {
    pkey: PKey<Private>,
    public: PKey<openssl::pkey::Public>,
    handle: Arc<key::KeyHandle>,
    uri: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({})", self.uri)
    }
}

impl TokenKey {
    /// The OpenSSL key; signing with it asks the token. For `SslContextBuilder::set_private_key`.
    pub fn pkey(&self) -> &PKey<Private> {
        &self.pkey
    }

    /// The key's public half, as an ordinary OpenSSL key (e.g. to write a CSR's or a
    /// certificate's public key).
    pub fn public_key(&self) -> &PKey<openssl::pkey::Public> {
        &self.public
    }

    /// The key's URI, with any `pin-value` redacted.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The label of the token holding the key.
    pub fn token_label(&self) -> &str {
        self.handle.token().label()
    }

    /// How many PKCS#11 sessions the key's token has open (for metrics and tests).
    pub fn open_sessions(&self) -> usize {
        self.handle.token().open_sessions()
    }

    /// Checks that `certificate` carries this key's public half.
    pub fn check_certificate(&self, certificate: &X509Ref) -> Result<(), Pkcs11Error> {
        let public = certificate
            .public_key()
            .map_err(|source| Pkcs11Error::OpenSsl {
                action: "read the certificate's public key",
                source,
            })?;
        if public.public_eq(&self.pkey) {
            Ok(())
        } else {
            Err(Pkcs11Error::CertificateMismatch {
                uri: self.uri.clone(),
            })
        }
    }
}

/// Loads the private key an RFC 7512 URI names (see the module docs for what is checked).
pub fn load_private_key(uri: &str, defaults: &Pkcs11Defaults) -> Result<TokenKey, Pkcs11Error> {
    private_key_with(uri, |uri| open_token(uri, defaults, |_| Ok(None)))
}

/// Loads the private key `uri` names on the token `open` logs in to.
fn private_key_with<E: From<Pkcs11Error>>(
    uri: &str,
    open: impl FnOnce(&Pkcs11Uri) -> Result<Arc<token::Token>, E>,
) -> Result<TokenKey, E> {
    let uri = Pkcs11Uri::parse(uri).map_err(Pkcs11Error::from)?;
    if !matches!(uri.object_type, None | Some(ObjectType::Private)) {
        return Err(Pkcs11Error::from(uri::UriError {
            reason: format!("{uri} names no private key (use `type=private`)"),
        })
        .into());
    }
    provider::ensure_loaded()?;
    let found = key::find(open(&uri)?, &uri)?;
    let pkey = provider::private_key(&found.public, &found.handle)?;
    Ok(TokenKey {
        pkey,
        public: found.public,
        handle: found.handle,
        uri: uri.to_string(),
    })
}

/// Loads the certificate an RFC 7512 URI names, followed by its issuers found on the same token.
pub fn load_certificate_chain(
    uri: &str,
    defaults: &Pkcs11Defaults,
) -> Result<Vec<X509>, Pkcs11Error> {
    certificate_chain_with(uri, |uri| open_token(uri, defaults, |_| Ok(None)))
}

/// [`load_certificate_chain`] on the token `open` logs in to.
fn certificate_chain_with<E: From<Pkcs11Error>>(
    uri: &str,
    open: impl FnOnce(&Pkcs11Uri) -> Result<Arc<token::Token>, E>,
) -> Result<Vec<X509>, E> {
    const MAX_CHAIN: usize = 8;
    let uri = Pkcs11Uri::parse(uri).map_err(Pkcs11Error::from)?;
    let token = open(&uri)?;
    let session = token.session()?;
    let shown = uri.to_string();
    let leaf = key::Selector::from_uri(&uri).find_one(
        &session,
        ObjectClass::CERTIFICATE,
        &token,
        &shown,
    )?;
    let mut chain = vec![read_certificate(&session, leaf, &token)?];
    while chain.len() < MAX_CHAIN {
        let last = chain.last().expect("BUG: the chain starts with the leaf");
        let issuer = last.issuer_name().to_der().unwrap_or_default();
        if issuer == last.subject_name().to_der().unwrap_or_default() {
            break; // self-signed
        }
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Subject(issuer),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|error| Pkcs11Error::call(token.label(), error))?;
        let Some(&next) = found.first() else { break };
        chain.push(read_certificate(&session, next, &token)?);
    }
    Ok(chain)
}

fn read_certificate(
    session: &cryptoki::session::Session,
    object: cryptoki::object::ObjectHandle,
    token: &token::Token,
) -> Result<X509, Pkcs11Error> {
    let value = session
        .get_attributes(object, &[AttributeType::Value])
        .map_err(|error| Pkcs11Error::call(token.label(), error))?;
    let der = value
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(der) => Some(der),
            _ => None,
        })
        .unwrap_or_default();
    X509::from_der(&der).map_err(|source| Pkcs11Error::OpenSsl {
        action: "parse a certificate stored on the token",
        source,
    })
}

/// Opens and logs in to the token `uri` names; `ask` is asked for the PIN (given the token's
/// label) when neither the URI nor `[pkcs11]` gives one.
fn open_token(
    uri: &Pkcs11Uri,
    defaults: &Pkcs11Defaults,
    ask: impl FnOnce(&str) -> Result<Option<token::Pin>, Pkcs11Error>,
) -> Result<Arc<token::Token>, Pkcs11Error> {
    let module = uri
        .module_path
        .clone()
        .or_else(|| defaults.module_path.clone())
        .ok_or_else(|| Pkcs11Error::NoModule {
            uri: uri.to_string(),
        })?;
    token::open(&module, uri, |label| match resolve_pin(uri, defaults)? {
        Some(pin) => Ok(Some(pin)),
        None => ask(label),
    })
}

/// The PIN from the URI, else from `[pkcs11]`; `None` when neither gives one.
fn resolve_pin(
    uri: &Pkcs11Uri,
    defaults: &Pkcs11Defaults,
) -> Result<Option<token::Pin>, Pkcs11Error> {
    if let Some(path) = &uri.pin_source {
        let path = credential_path(path);
        let secret = read_pin_file(&path)?;
        let origin = format!("the URI's pin-source {}", path.display());
        return Ok(Some(token::Pin { secret, origin }));
    }
    if let Some(pin) = &uri.pin_value {
        tracing::warn!(uri = %uri, "the PIN is written in the pkcs11: URI (pin-value); use pin-source=file:... or [pkcs11] pin_file instead");
        return Ok(Some(token::Pin {
            secret: pin.clone(),
            origin: "the URI's pin-value".to_owned(),
        }));
    }
    match &defaults.pin {
        Some(SecretSource::File(path)) => {
            let path = credential_path(path);
            let secret = read_pin_file(&path)?;
            let origin = format!("pin_file {}", path.display());
            Ok(Some(token::Pin { secret, origin }))
        }
        Some(SecretSource::Value(pin)) => Ok(Some(token::Pin {
            secret: pin.clone(),
            origin: "[pkcs11] pin".to_owned(),
        })),
        None => Ok(None),
    }
}

/// A bare file name is a systemd credential when `$CREDENTIALS_DIRECTORY` is set.
fn credential_path(path: &Path) -> PathBuf {
    let bare = path.components().count() == 1 && !path.is_absolute();
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(directory) if bare => Path::new(&directory).join(path),
        _ => path.to_owned(),
    }
}

fn read_pin_file(path: &Path) -> Result<SecretString, Pkcs11Error> {
    let text = bounded::read_to_string(path, bounded::Kind::Secret).map_err(|source| {
        Pkcs11Error::PinFile {
            path: path.to_owned(),
            source,
        }
    })?;
    let text = SecretString::from(text);
    let pin = text.expose_secret();
    let pin = pin.strip_suffix('\n').unwrap_or(pin);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    Ok(SecretString::from(pin.to_owned()))
}
