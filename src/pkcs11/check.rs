//! `nexus pkcs11 check`: what `nexus check` cannot do without touching the token. For every
//! key or certificate of the configuration that is a `pkcs11:` URI: find it, log in with the
//! configured PIN source, sign a test message with the key, verify the signature with the
//! certificate's public key and report when the certificate expires.
//!
//! A PIN the token rejects is not tried again for the token's other references (see
//! `token::open`), so a wrong PIN file costs one failed login, whatever the configuration.

use std::io::Write;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use openssl::x509::X509;

use super::admin::{AdminError, load_certificate_chain, load_key};
use super::list::subject_text;
use super::{Pkcs11Error, TokenKey};
use crate::config::{CertSource, ClientIdentity, Config, KeySource, Pkcs11Defaults, Transport};
use crate::tls::expiry::{WARN_DAYS, days_left};
use crate::tls::identity::load_certs;

/// What gets signed: the content does not matter, only that the token key signs it.
const TEST_MESSAGE: &[u8] = b"nexus pkcs11 check";

/// One certificate and key pair of the configuration.
struct Pair<'a> {
    /// "[server.tls]" or "server 'NAME'".
    place: String,
    cert: &'a CertSource,
    key: &'a KeySource,
}

/// Checks every pair that names a token object, writing one line per pair; `CheckFailed`
/// when any failed.
pub fn run(
    config: &Config,
    overrides: &Pkcs11Defaults,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let pairs: Vec<Pair> = pairs(config).into_iter().filter(on_token).collect();
    if pairs.is_empty() {
        writeln!(out, "no pkcs11: keys or certificates in the configuration")?;
        return Ok(());
    }
    let mut failed = 0;
    for pair in &pairs {
        match check(pair, overrides) {
            Ok(report) => writeln!(out, "ok    {}: {report}", pair.place)?,
            Err(error) => {
                failed += 1;
                writeln!(out, "FAIL  {}: {error}", pair.place)?;
            }
        }
    }
    if failed > 0 {
        return Err(AdminError::CheckFailed {
            failed,
            total: pairs.len(),
        });
    }
    Ok(())
}

fn pairs(config: &Config) -> Vec<Pair<'_>> {
    let mut pairs = Vec::new();
    if let Some(tls) = &config.server.tls {
        pairs.push(Pair {
            place: "[server.tls]".to_owned(),
            cert: &tls.certificate,
            key: &tls.key,
        });
    }
    for server in &config.mcp.servers {
        if let Transport::Http(http) = &server.transport
            && let ClientIdentity::Certificate { cert, key } = &http.tls.identity
        {
            pairs.push(Pair {
                place: format!("server '{}'", server.name),
                cert,
                key,
            });
        }
    }
    pairs
}

fn on_token(pair: &Pair<'_>) -> bool {
    matches!(pair.cert, CertSource::Pkcs11(_)) || matches!(pair.key, KeySource::Pkcs11(_))
}

/// `[pkcs11]` of the reference with `--module`/`--pin-file` over it.
fn defaults(reference: &Pkcs11Defaults, overrides: &Pkcs11Defaults) -> Pkcs11Defaults {
    Pkcs11Defaults {
        module_path: overrides
            .module_path
            .clone()
            .or_else(|| reference.module_path.clone()),
        pin: overrides.pin.clone().or_else(|| reference.pin.clone()),
    }
}

/// The pair's report line, or what is wrong with it.
fn check(pair: &Pair<'_>, overrides: &Pkcs11Defaults) -> Result<String, String> {
    let chain = match pair.cert {
        CertSource::Pem(path) => load_certs(path, "certificate")
            .map_err(|error| format!("certificate {}: {error}", path.display()))?,
        CertSource::Pkcs11(reference) => {
            load_certificate_chain(&reference.uri, &defaults(&reference.defaults, overrides))
                .map_err(|error| format!("certificate: {error}"))?
        }
    };
    let leaf = &chain[0];
    let mut report = Vec::new();
    if let KeySource::Pkcs11(reference) = pair.key {
        let key = load_key(&reference.uri, &defaults(&reference.defaults, overrides))
            .map_err(|error| format!("key: {error}"))?;
        key.check_certificate(leaf)
            .map_err(|error| format!("key: {error}"))?;
        sign_and_verify(&key, leaf).map_err(|error| format!("key {}: {error}", key.uri()))?;
        report.push(format!(
            "key {} signs, verified with the certificate",
            key.uri()
        ));
    }
    report.push(expiry(leaf));
    Ok(report.join("; "))
}

/// Signs with the token key as TLS would (RSA-PSS for RSA) and verifies with `cert`'s key.
fn sign_and_verify(key: &TokenKey, cert: &X509) -> Result<(), Pkcs11Error> {
    let openssl = |action| move |source| Pkcs11Error::OpenSsl { action, source };
    let public = cert
        .public_key()
        .map_err(openssl("read the certificate's public key"))?;
    let md = MessageDigest::sha256();
    let mut signer = Signer::new(md, key.pkey()).map_err(openssl("start a test signature"))?;
    let rsa = public.id() == Id::RSA;
    if rsa {
        signer
            .set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|()| signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH))
            .map_err(openssl("ask for RSA-PSS"))?;
    }
    let signature = signer
        .sign_oneshot_to_vec(TEST_MESSAGE)
        .map_err(openssl("sign a test message with the token key"))?;
    let verified =
        verify(&public, md, rsa, &signature).map_err(openssl("verify the test signature"))?;
    if verified {
        Ok(())
    } else {
        Err(Pkcs11Error::CertificateMismatch {
            uri: key.uri().to_owned(),
        })
    }
}

fn verify(
    public: &PKeyRef<Public>,
    md: MessageDigest,
    rsa: bool,
    signature: &[u8],
) -> Result<bool, openssl::error::ErrorStack> {
    let mut verifier = Verifier::new(md, public)?;
    if rsa {
        verifier.set_rsa_padding(Padding::PKCS1_PSS)?;
        verifier.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
    }
    verifier.verify_oneshot(signature, TEST_MESSAGE)
}

fn expiry(cert: &X509) -> String {
    let when = cert.not_after().to_string();
    let state = match days_left(cert) {
        Some(days) if days < 0 => format!("EXPIRED on {when}"),
        Some(days) if days <= WARN_DAYS => format!("expires in {days} days ({when}): renew it"),
        Some(days) => format!("expires in {days} days ({when})"),
        None => format!("expires {when}"),
    };
    format!("certificate {} {state}", subject_text(cert))
}
