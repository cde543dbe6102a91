//! A private key on a token: lookup, its public half, and signing with recovery.

use std::sync::{Arc, Mutex};

use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;

use super::error::Pkcs11Error;
use super::scheme::Scheme;
use super::token::Token;
use super::uri::{Pkcs11Uri, encode_id};

/// DER OIDs (`CKA_EC_PARAMS`) of the curves nexus signs with.
pub(crate) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Which objects a URI selects: by `CKA_ID` and/or `CKA_LABEL`.
#[derive(Clone)]
pub(crate) struct Selector {
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) label: Option<String>,
}

impl Selector {
    pub(crate) fn from_uri(uri: &Pkcs11Uri) -> Self {
        Self {
            id: uri.id.clone(),
            label: uri.object.clone(),
        }
    }

    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        if let Some(label) = &self.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        template
    }

    /// Finds exactly one object of `class`, or says why not.
    pub(crate) fn find_one(
        &self,
        session: &Session,
        class: ObjectClass,
        token: &Token,
        uri: &str,
    ) -> Result<ObjectHandle, Pkcs11Error> {
        let found = session
            .find_objects(&self.template(class))
            .map_err(|error| Pkcs11Error::call(token.label(), error))?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Pkcs11Error::ObjectNotFound {
                what: if class == ObjectClass::CERTIFICATE {
                    "certificate"
                } else {
                    "private key"
                },
                uri: uri.to_owned(),
                token: token.label().to_owned(),
            }),
            many => Err(Pkcs11Error::Ambiguous {
                count: many.len(),
                uri: uri.to_owned(),
                token: token.label().to_owned(),
                candidates: describe(session, many),
            }),
        }
    }
}

fn describe(session: &Session, objects: &[ObjectHandle]) -> String {
    let mut out = Vec::new();
    for &object in objects {
        let (mut label, mut id) = (String::new(), String::new());
        let attributes = session
            .get_attributes(object, &[AttributeType::Label, AttributeType::Id])
            .unwrap_or_default();
        for attribute in attributes {
            match attribute {
                Attribute::Label(bytes) => label = String::from_utf8_lossy(&bytes).into_owned(),
                Attribute::Id(bytes) => id = encode_id(&bytes),
                _ => {}
            }
        }
        out.push(format!("object={label};id={id}"));
    }
    out.join(", ")
}

/// The kind and size of a token key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA with this modulus size in bits.
    Rsa(u32),
    /// EC on P-256.
    P256,
    /// EC on P-384.
    P384,
}

/// A private key on a token, able to sign digests; shared by the provider's key objects.
pub(crate) struct KeyHandle {
    token: Arc<Token>,
    selector: Selector,
    uri: String,
    /// The object handle with the token generation it was found in.
    object: Mutex<Option<(u64, ObjectHandle)>>,
}

/// A found private key: its public half and a handle to sign with.
pub(crate) struct FoundKey {
    pub(crate) public: PKey<Public>,
    pub(crate) handle: Arc<KeyHandle>,
}

/// Finds the private key `uri` names on `token`, reads its public half and checks mechanisms.
pub(crate) fn find(token: Arc<Token>, uri: &Pkcs11Uri) -> Result<FoundKey, Pkcs11Error> {
    let session = token.session()?;
    let shown = uri.to_string();
    let mut selector = Selector::from_uri(uri);
    let object = selector.find_one(&session, ObjectClass::PRIVATE_KEY, &token, &shown)?;
    let attributes = session
        .get_attributes(
            object,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::Sign,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcParams,
            ],
        )
        .map_err(|error| Pkcs11Error::call(token.label(), error))?;
    let (legacy, kind) = public_key(&session, &attributes, &shown)?;
    // Through DER, so the key is a provider key: get_params must answer "bits", "max-size"...
    let public = legacy
        .public_key_to_der()
        .and_then(|der| PKey::public_key_from_der(&der))
        .map_err(|source| Pkcs11Error::OpenSsl {
            action: "convert the token key's public key",
            source,
        })?;
    if attributes.contains(&Attribute::Sign(false)) {
        return Err(Pkcs11Error::UnsupportedKey {
            uri: shown,
            reason: "the key has CKA_SIGN=false".to_owned(),
        });
    }
    // Re-find by CKA_ID after a session loss: it survives token re-initialization.
    if let Some(id) = attributes.iter().find_map(|a| match a {
        Attribute::Id(id) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }) {
        selector.id = Some(id);
    }
    check_mechanisms(&token, kind)?;
    drop(session);
    let generation = token.generation();
    let handle = KeyHandle {
        token,
        selector,
        uri: shown,
        object: Mutex::new(Some((generation, object))),
    };
    Ok(FoundKey {
        public,
        handle: Arc::new(handle),
    })
}

fn public_key(
    session: &Session,
    attributes: &[Attribute],
    uri: &str,
) -> Result<(PKey<Public>, KeyKind), Pkcs11Error> {
    let unsupported = |reason: String| Pkcs11Error::UnsupportedKey {
        uri: uri.to_owned(),
        reason,
    };
    let openssl = |source| Pkcs11Error::OpenSsl {
        action: "build the token key's public key",
        source,
    };
    let find = |wanted: AttributeType| attributes.iter().find(|a| a.attribute_type() == wanted);
    match find(AttributeType::KeyType) {
        Some(Attribute::KeyType(t)) if *t == KeyType::RSA => {
            let (Some(Attribute::Modulus(n)), Some(Attribute::PublicExponent(e))) = (
                find(AttributeType::Modulus),
                find(AttributeType::PublicExponent),
            ) else {
                return Err(Pkcs11Error::PublicKey {
                    uri: uri.to_owned(),
                    reason: "the token does not show CKA_MODULUS/CKA_PUBLIC_EXPONENT".to_owned(),
                });
            };
            let rsa = Rsa::from_public_components(
                BigNum::from_slice(n).map_err(openssl)?,
                BigNum::from_slice(e).map_err(openssl)?,
            )
            .map_err(openssl)?;
            let bits = rsa.n().num_bits() as u32;
            if !(2048..=4096).contains(&bits) {
                return Err(unsupported(format!("RSA-{bits}")));
            }
            Ok((PKey::from_rsa(rsa).map_err(openssl)?, KeyKind::Rsa(bits)))
        }
        Some(Attribute::KeyType(t)) if *t == KeyType::EC => {
            let (nid, kind) = match find(AttributeType::EcParams) {
                Some(Attribute::EcParams(p)) if p == P256_OID => {
                    (Nid::X9_62_PRIME256V1, KeyKind::P256)
                }
                Some(Attribute::EcParams(p)) if p == P384_OID => (Nid::SECP384R1, KeyKind::P384),
                _ => return Err(unsupported("an EC key on another curve".to_owned())),
            };
            let point = ec_point(session, attributes, uri)?;
            let group = EcGroup::from_curve_name(nid).map_err(openssl)?;
            let mut context = BigNumContext::new().map_err(openssl)?;
            let point = EcPoint::from_bytes(&group, &point, &mut context).map_err(openssl)?;
            let key = EcKey::from_public_key(&group, &point).map_err(openssl)?;
            Ok((PKey::from_ec_key(key).map_err(openssl)?, kind))
        }
        Some(Attribute::KeyType(t)) => Err(unsupported(format!("a {t} key"))),
        _ => Err(unsupported("a key of unknown type".to_owned())),
    }
}

/// The EC point comes from the public-key object with the same `CKA_ID` (EC private keys do not
/// carry it). `CKA_EC_POINT` is a DER OCTET STRING; some tokens return the bare point.
fn ec_point(
    session: &Session,
    attributes: &[Attribute],
    uri: &str,
) -> Result<Vec<u8>, Pkcs11Error> {
    let missing = |reason: &str| Pkcs11Error::PublicKey {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let id = attributes
        .iter()
        .find_map(|a| match a {
            Attribute::Id(id) => Some(id.clone()),
            _ => None,
        })
        .ok_or_else(|| missing("the key has no CKA_ID to find its public key by"))?;
    let template = [Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id)];
    let public = session
        .find_objects(&template)
        .ok()
        .and_then(|found| found.first().copied())
        .ok_or_else(|| missing("no public-key object with the same CKA_ID on the token"))?;
    let point = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .ok()
        .and_then(|mut a| a.pop())
        .and_then(|a| match a {
            Attribute::EcPoint(point) => Some(point),
            _ => None,
        })
        .ok_or_else(|| missing("the public-key object has no CKA_EC_POINT"))?;
    match point.as_slice() {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => Ok(rest.to_vec()),
        _ => Ok(point),
    }
}

fn check_mechanisms(token: &Token, kind: KeyKind) -> Result<(), Pkcs11Error> {
    let can_sign = |mechanism| {
        token
            .context()
            .get_mechanism_info(token.slot(), mechanism)
            .is_ok_and(|info| info.sign())
    };
    let missing = |mechanism, needed_for| Pkcs11Error::MechanismMissing {
        token: token.label().to_owned(),
        mechanism,
        needed_for,
    };
    match kind {
        KeyKind::Rsa(_) => {
            if !can_sign(MechanismType::RSA_PKCS_PSS) {
                return Err(missing("CKM_RSA_PKCS_PSS", "TLS 1.3 with an RSA key"));
            }
            if !can_sign(MechanismType::RSA_PKCS) {
                tracing::warn!(token = %token.label(), "the token cannot sign with CKM_RSA_PKCS: TLS 1.2 peers that insist on PKCS#1 v1.5 signatures will fail");
            }
        }
        KeyKind::P256 | KeyKind::P384 => {
            if !can_sign(MechanismType::ECDSA) {
                return Err(missing("CKM_ECDSA", "an EC key"));
            }
        }
    }
    Ok(())
}

impl KeyHandle {
    /// The token holding the key.
    pub(crate) fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// The key's `CKA_ID`, when it has one.
    pub(crate) fn id(&self) -> Option<&[u8]> {
        self.selector.id.as_deref()
    }

    /// Signs `digest`. Off the async workers when called on a multi-thread tokio runtime.
    pub(crate) fn sign(&self, scheme: Scheme, digest: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let on_worker = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        if on_worker {
            tokio::task::block_in_place(|| self.sign_with_recovery(scheme, digest))
        } else {
            self.sign_with_recovery(scheme, digest)
        }
    }

    fn sign_with_recovery(&self, scheme: Scheme, digest: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let generation = self.token.generation();
        let first = self.sign_once(scheme, digest);
        let Err(error) = &first else { return first };
        let Some(loss) = error.session_loss() else {
            return first;
        };
        tracing::warn!(key = %self.uri, %error, "PKCS#11 session lost: logging in again and retrying once");
        self.token.recover(generation, loss);
        self.sign_once(scheme, digest)
    }

    fn sign_once(&self, scheme: Scheme, digest: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let mut session = self.token.session()?;
        let result = self.object(&session).and_then(|object| {
            let (mechanism, input) = scheme.mechanism(digest);
            session
                .sign(&mechanism, object, &input)
                .map_err(|error| Pkcs11Error::call(self.token.label(), error))
        });
        match result {
            Ok(raw) => scheme.finish(raw).map_err(|source| Pkcs11Error::OpenSsl {
                action: "encode the token's ECDSA signature",
                source,
            }),
            Err(error) => {
                if let Some(loss) = error.session_loss() {
                    session.discard(loss);
                }
                Err(error)
            }
        }
    }

    /// The key's object handle, looked up again by `CKA_ID` after sessions were lost.
    fn object(&self, session: &Session) -> Result<ObjectHandle, Pkcs11Error> {
        let generation = self.token.generation();
        let mut cached = self.object.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, object)) = *cached
            && seen == generation
        {
            return Ok(object);
        }
        let object =
            self.selector
                .find_one(session, ObjectClass::PRIVATE_KEY, &self.token, &self.uri)?;
        *cached = Some((generation, object));
        Ok(object)
    }
}
