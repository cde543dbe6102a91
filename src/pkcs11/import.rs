//! `nexus pkcs11 import-cert`: a certificate stored on the token next to its private key (same
//! `CKA_ID` and `CKA_LABEL`), so `certificate`/`client_cert_path` can be a `pkcs11:` URI too.
//! Further certificates in the file (the chain) are stored as well, where the token does not
//! hold their subject yet: `load_certificate_chain` finds issuers on the token by subject.

use std::path::Path;

use cryptoki::object::{Attribute, CertificateType, ObjectClass};
use cryptoki::session::Session;
use openssl::x509::X509;

use super::admin::{AdminError, load_key};
use super::{ObjectType, Pkcs11Error, Pkcs11Uri, algorithm_id};
use crate::config::{Pkcs11Defaults, bounded};

/// What `import-cert` is asked for.
pub struct Request<'a> {
    /// The token label.
    pub token: &'a str,
    /// `CKA_LABEL` of the private key the certificate belongs to.
    pub label: &'a str,
    /// PEM (leaf first, then its chain) or DER file.
    pub cert: &'a Path,
    /// Replace a certificate already stored for the key (renewal).
    pub replace: bool,
}

/// Stores the certificate and returns its URI.
pub fn import(request: &Request<'_>, defaults: &Pkcs11Defaults) -> Result<Pkcs11Uri, AdminError> {
    let certificates = read_certificates(request.cert)?;
    let mut uri = Pkcs11Uri {
        token: Some(request.token.to_owned()),
        object: Some(request.label.to_owned()),
        object_type: Some(ObjectType::Private),
        ..Pkcs11Uri::default()
    };
    let key = load_key(&uri.to_string(), defaults)?;
    let leaf = &certificates[0];
    key.check_certificate(leaf)?;
    let id = key.handle.id().map(<[u8]>::to_vec).ok_or_else(|| {
        AdminError::Usage(format!(
            "{} has no CKA_ID, by which nexus finds its certificate; generate keys with `nexus pkcs11 keygen`",
            key.uri()
        ))
    })?;
    let token = key.handle.token();
    let call = |error| Pkcs11Error::call(token.label(), error);
    let session = token
        .context()
        .open_rw_session(token.slot())
        .map_err(call)?;
    let existing = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(id.clone()),
        ])
        .map_err(call)?;
    if !existing.is_empty() && !request.replace {
        return Err(AdminError::Usage(format!(
            "token \"{}\" already holds a certificate for {}; pass --replace to renew it",
            token.label(),
            key.uri()
        )));
    }
    store(&session, leaf, request.label, &id, token.label())?;
    for old in existing {
        session.destroy_object(old).map_err(call)?;
    }
    store_chain(&session, &certificates[1..], request.label, token.label())?;
    uri.id = Some(id);
    uri.object_type = Some(ObjectType::Cert);
    Ok(uri)
}

/// Stores the issuers `chain` whose subjects the token does not hold yet, as `LABEL-chain-N`.
fn store_chain(
    session: &Session,
    chain: &[X509],
    label: &str,
    token: &str,
) -> Result<(), AdminError> {
    for (n, issuer) in chain.iter().enumerate() {
        let subject = der(issuer.subject_name().to_der())?;
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Subject(subject),
        ];
        let known = session
            .find_objects(&template)
            .map_err(|error| Pkcs11Error::call(token, error))?;
        if known.is_empty() {
            store(
                session,
                issuer,
                &format!("{label}-chain-{}", n + 1),
                &[],
                token,
            )?;
        }
    }
    Ok(())
}

/// Every certificate in `path`: PEM (one or more), else a single DER certificate.
fn read_certificates(path: &Path) -> Result<Vec<X509>, AdminError> {
    // Bounded like every PEM file the config names: a FIFO or /dev/zero is refused, not read.
    let bytes = bounded::read(path, bounded::Kind::Pem).map_err(|source| AdminError::File {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let parsed = match X509::stack_from_pem(&bytes) {
        Ok(stack) if !stack.is_empty() => Ok(stack),
        _ => X509::from_der(&bytes).map(|one| vec![one]),
    };
    parsed.map_err(|_| {
        AdminError::Usage(format!(
            "{} holds no certificate (PEM or DER expected)",
            path.display()
        ))
    })
}

fn store(
    session: &Session,
    certificate: &X509,
    label: &str,
    id: &[u8],
    token: &str,
) -> Result<(), AdminError> {
    let serial = certificate
        .serial_number()
        .to_bn()
        .map(|bn| algorithm_id::unsigned_integer(&bn.to_vec()));
    let mut template = vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Subject(der(certificate.subject_name().to_der())?),
        Attribute::Issuer(der(certificate.issuer_name().to_der())?),
        Attribute::SerialNumber(der(serial)?),
        Attribute::Value(der(certificate.to_der())?),
    ];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    }
    session
        .create_object(&template)
        .map_err(|error| Pkcs11Error::call(token, error))?;
    Ok(())
}

fn der(encoded: Result<Vec<u8>, openssl::error::ErrorStack>) -> Result<Vec<u8>, AdminError> {
    encoded.map_err(|source| {
        Pkcs11Error::OpenSsl {
            action: "encode the certificate's fields",
            source,
        }
        .into()
    })
}
