//! `nexus pkcs11 keygen`: a key pair generated on the token, its private half sensitive,
//! never extractable and good for signing only.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::Session;

use super::admin::{AdminError, open_token};
use super::key::{P256_OID, P384_OID};
use super::uri::{Pkcs11Uri, encode_id};
use super::{ObjectType, Pkcs11Error};
use crate::config::Pkcs11Defaults;

/// Bytes of a generated `CKA_ID` when `--id` is not given.
const RANDOM_ID_LEN: usize = 8;

/// The key types nexus signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeySpec {
    /// RSA with a 2048-bit modulus.
    #[value(name = "rsa:2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[value(name = "rsa:3072")]
    Rsa3072,
    /// ECDSA on NIST P-256.
    #[value(name = "ec:p256")]
    P256,
    /// ECDSA on NIST P-384.
    #[value(name = "ec:p384")]
    P384,
}

/// What `keygen` is asked for.
pub struct Request<'a> {
    /// The token label.
    pub token: &'a str,
    /// `CKA_LABEL` of both halves.
    pub label: &'a str,
    /// `CKA_ID` in hex; random when `None`.
    pub id: Option<&'a str>,
    /// The key type.
    pub spec: KeySpec,
}

/// Generates the pair and returns the private key's URI (for `nexus.toml`).
pub fn generate(request: &Request<'_>, defaults: &Pkcs11Defaults) -> Result<Pkcs11Uri, AdminError> {
    let id = match request.id {
        Some(hex) => decode_hex(hex).ok_or_else(|| {
            AdminError::Usage(format!("--id {hex} is not hex bytes (e.g. --id 01)"))
        })?,
        None => random_id()?,
    };
    let mut uri = Pkcs11Uri {
        token: Some(request.token.to_owned()),
        ..Pkcs11Uri::default()
    };
    let token = open_token(&uri, defaults)?;
    let call = |error| Pkcs11Error::call(token.label(), error);
    let session = token
        .context()
        .open_rw_session(token.slot())
        .map_err(call)?;
    refuse_taken(&session, request.label, &id, token.label())?;
    let (mechanism, mut public, private) = templates(request.spec);
    let common = [
        Attribute::Token(true),
        Attribute::Id(id.clone()),
        Attribute::Label(request.label.as_bytes().to_vec()),
    ];
    public.extend_from_slice(&common);
    let private: Vec<Attribute> = private.into_iter().chain(common).collect();
    session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(call)?;
    uri.object = Some(request.label.to_owned());
    uri.id = Some(id);
    uri.object_type = Some(ObjectType::Private);
    Ok(uri)
}

/// The mechanism and the public and private templates of `spec` (without label and id).
fn templates(spec: KeySpec) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let private = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    let mut public = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ];
    let mechanism = match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 => {
            let bits = if spec == KeySpec::Rsa2048 { 2048 } else { 3072 };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeySpec::P256 | KeySpec::P384 => {
            let oid = if spec == KeySpec::P256 {
                P256_OID
            } else {
                P384_OID
            };
            public.push(Attribute::EcParams(oid.to_vec()));
            Mechanism::EccKeyPairGen
        }
    };
    (mechanism, public, private)
}

/// Refuses when any key or certificate already has `label` or `id`: a second one would make
/// URIs ambiguous, and replacing one would lose a key.
fn refuse_taken(session: &Session, label: &str, id: &[u8], token: &str) -> Result<(), AdminError> {
    let taken = |attribute: Attribute| -> Result<bool, Pkcs11Error> {
        for class in [
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
            ObjectClass::CERTIFICATE,
        ] {
            let found = session
                .find_objects(&[Attribute::Class(class), attribute.clone()])
                .map_err(|error| Pkcs11Error::call(token, error))?;
            if !found.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let what = if taken(Attribute::Label(label.as_bytes().to_vec()))? {
        format!("object={label}")
    } else if taken(Attribute::Id(id.to_vec()))? {
        format!("id={}", encode_id(id))
    } else {
        return Ok(());
    };
    Err(AdminError::Usage(format!(
        "token \"{token}\" already has an object with {what}; nexus never replaces a key: choose another --label/--id, or delete the old object first (`nexus pkcs11 list` shows them)"
    )))
}

fn random_id() -> Result<Vec<u8>, Pkcs11Error> {
    let mut id = vec![0; RANDOM_ID_LEN];
    openssl::rand::rand_bytes(&mut id).map_err(|source| Pkcs11Error::OpenSsl {
        action: "draw a random key id",
        source,
    })?;
    Ok(id)
}

/// `0a1B` -> `[0x0a, 0x1b]`; `None` unless an even number of hex digits.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decode_hex;

    #[test]
    fn ids_are_even_hex() {
        assert_eq!(decode_hex("01ff"), Some(vec![0x01, 0xff]));
        assert_eq!(decode_hex("1"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), None);
    }
}
