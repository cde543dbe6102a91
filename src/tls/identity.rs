//! Certificates and private keys, from PEM files or a PKCS#11 token: the chain a peer is sent,
//! the key that signs.
//!
//! Every loader names the config key and file (or redacted URI) in its error, so the edge only
//! adds the server. A token key is an OpenSSL key of the in-process provider ([`crate::pkcs11`]):
//! the rest of the TLS layer cannot tell it from a PEM key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use secrecy::ExposeSecret;

use super::errors::{Error, reasons};
use crate::config::bounded;
use crate::config::{CertSource, KeySource, SecretSource};

/// The config keys a certificate and its key were given under, for messages.
#[derive(Debug, Clone, Copy)]
pub struct KeyNames {
    /// E.g. `client_cert_path`.
    pub cert: &'static str,
    /// E.g. `client_key_path`.
    pub key: &'static str,
}

/// A certificate chain (leaf first) and its private key, checked to be a pair.
pub struct Identity {
    /// The leaf, then intermediates in file order.
    pub chain: Vec<X509>,
    /// The leaf's private key.
    pub key: PKey<Private>,
}

impl Identity {
    /// Loads and pairs a certificate and key.
    pub fn load(cert: &CertSource, key: &KeySource, names: KeyNames) -> Result<Self, Error> {
        let chain = load_cert_source(cert, names.cert)?;
        let private = load_key(key, names.key)?;
        let leaf_key = chain[0].public_key().map_err(|stack| Error::Malformed {
            key: names.cert,
            path: cert_path(cert),
            expected: "a certificate with a usable public key",
            detail: reasons(&stack),
        })?;
        if !leaf_key.public_eq(&private) {
            let key = match key {
                KeySource::Pem { path, .. } => path.clone(),
                KeySource::Pkcs11(reference) => redacted(&reference.uri),
            };
            return Err(Error::Mismatch {
                cert_key: names.cert,
                cert: cert_path(cert),
                key_key: names.key,
                key,
            });
        }
        Ok(Self {
            chain,
            key: private,
        })
    }
}

fn cert_path(source: &CertSource) -> PathBuf {
    match source {
        CertSource::Pem(path) => path.clone(),
        CertSource::Pkcs11(reference) => redacted(&reference.uri),
    }
}

/// A `pkcs11:` URI fit for a message (`pin-value` removed).
fn redacted(uri: &str) -> PathBuf {
    let shown = crate::pkcs11::Pkcs11Uri::parse(uri).map(|uri| uri.to_string());
    PathBuf::from(shown.unwrap_or_else(|_| "pkcs11:".to_owned()))
}

fn load_cert_source(source: &CertSource, key: &'static str) -> Result<Vec<X509>, Error> {
    match source {
        CertSource::Pem(path) => load_certs(path, key),
        CertSource::Pkcs11(reference) => {
            crate::pkcs11::load_certificate_chain(&reference.uri, &reference.defaults).map_err(
                |source| Error::Pkcs11 {
                    key,
                    source: source.into(),
                },
            )
        }
    }
}

/// Every certificate in a PEM file, in file order; at least one.
pub fn load_certs(path: &Path, key: &'static str) -> Result<Vec<X509>, Error> {
    let pem = read(path, key, bounded::Kind::Pem)?;
    let malformed = |detail: String| Error::Malformed {
        key,
        path: path.to_path_buf(),
        expected: "a PEM file with certificates",
        detail,
    };
    let certs = X509::stack_from_pem(&pem).map_err(|stack| malformed(reasons(&stack)))?;
    if certs.is_empty() {
        return Err(malformed("no BEGIN CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

/// A private key: PKCS#8, PKCS#1 RSA or SEC1 EC PEM, or encrypted PKCS#8 with its password.
/// A key file that group or others can read gets a warning.
pub fn load_key(source: &KeySource, key: &'static str) -> Result<PKey<Private>, Error> {
    let (path, password) = match source {
        KeySource::Pem { path, password } => (path, password),
        KeySource::Pkcs11(reference) => {
            // The SSL context keeps the key (and through it the token key) alive.
            return crate::pkcs11::load_private_key(&reference.uri, &reference.defaults)
                .map(|token| token.pkey().clone())
                .map_err(|source| Error::Pkcs11 {
                    key,
                    source: source.into(),
                });
        }
    };
    let pem = read(path, key, bounded::Kind::Pem)?;
    warn_if_exposed(path, key);
    let text = String::from_utf8_lossy(&pem);
    let encrypted =
        text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED");
    let password_error = |detail: &str| Error::Password {
        key,
        path: path.clone(),
        detail: detail.to_owned(),
    };
    match (encrypted, password) {
        (true, None) => Err(password_error(
            "the key is encrypted but no password is configured",
        )),
        (true, Some(secret)) => {
            let password = secret_bytes(secret, key)?;
            PKey::private_key_from_pem_passphrase(&pem, &password)
                .map_err(|_| password_error("wrong password"))
        }
        (false, _) => PKey::private_key_from_pem(&pem).map_err(|stack| Error::Malformed {
            key,
            path: path.clone(),
            expected: "a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
            detail: reasons(&stack),
        }),
    }
}

fn secret_bytes(secret: &SecretSource, key: &'static str) -> Result<Vec<u8>, Error> {
    match secret {
        SecretSource::Value(value) => Ok(value.expose_secret().as_bytes().to_vec()),
        SecretSource::File(path) => {
            let mut bytes = read(path, key, bounded::Kind::Secret)?;
            // Editors and `echo` add a newline the passphrase does not contain.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Ok(bytes)
        }
    }
}

fn read(path: &Path, key: &'static str, kind: bounded::Kind) -> Result<Vec<u8>, Error> {
    bounded::read(path, kind).map_err(|error| Error::Unreadable {
        key,
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// The guide's advice: key files mode 600, owned by the service user.
fn warn_if_exposed(path: &Path, key: &'static str) {
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            key,
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "private key file is accessible by group or others; run `chmod 600 {}`",
            path.display()
        );
    }
}
