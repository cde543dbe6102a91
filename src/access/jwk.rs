//! JSON Web Keys (RFC 7517, RFC 7518, RFC 8037) as OpenSSL public keys, and JWS signature
//! verification with them.
//!
//! Verification uses the `openssl` crate directly rather than a JOSE crate: the ones built on
//! OpenSSL (`josekit`) bring their own key-selection and claim logic that we would have to
//! bound and override anyway (sizes, `kid` refetch, algorithm pinned to the key type), and the
//! signature part is a handful of EVP calls. The algorithm is always chosen from the key, never
//! from the token alone: a token's `alg` must be one its key's type supports (and the JWK's own
//! `alg`, when it names one), so an RSA public key can never be used as an HMAC secret.

use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier};
use serde::Deserialize;

/// Largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from one JWKS (real sets hold a handful).
pub const MAX_KEYS: usize = 100;
/// RSA keys shorter than this are skipped (RFC 7518 §3.3 requires 2048 bits).
const MIN_RSA_BITS: u32 = 2048;

/// A JWS algorithm the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

/// Why a token's `alg` is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgRefused {
    /// `none`: an unsigned token.
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    /// HS256/384/512: a shared secret, which a resource server with published keys never has.
    #[error("HMAC-signed tokens ({0}) are refused: only public-key signatures are accepted")]
    Hmac(&'static str),
    /// Anything else.
    #[error(
        "the token's algorithm is not supported (expected RS256/384/512, PS256/384/512, ES256/384 or EdDSA)"
    )]
    Unsupported,
}

impl Alg {
    /// The algorithm a JOSE header names.
    pub fn from_name(name: &str) -> Result<Self, AlgRefused> {
        Ok(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            "HS256" => return Err(AlgRefused::Hmac("HS256")),
            "HS384" => return Err(AlgRefused::Hmac("HS384")),
            "HS512" => return Err(AlgRefused::Hmac("HS512")),
            _ if name.eq_ignore_ascii_case("none") => return Err(AlgRefused::Unsigned),
            _ => return Err(AlgRefused::Unsupported),
        })
    }

    /// The only key type this algorithm verifies with.
    pub fn kind(self) -> KeyKind {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                KeyKind::Rsa
            }
            Self::Es256 => KeyKind::P256,
            Self::Es384 => KeyKind::P384,
            Self::EdDsa => KeyKind::Ed25519,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Self::Rs256 | Self::Ps256 | Self::Es256 => MessageDigest::sha256(),
            Self::Rs384 | Self::Ps384 | Self::Es384 => MessageDigest::sha384(),
            Self::Rs512 | Self::Ps512 => MessageDigest::sha512(),
            // Ed25519 hashes internally; never asked for.
            Self::EdDsa => MessageDigest::null(),
        }
    }
}

/// The type of a public key, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: EC`, `crv: P-384`.
    P384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

/// One usable signing key from a JWKS.
pub struct Jwk {
    /// `kid`.
    pub kid: Option<String>,
    /// `alg`, when the JWK pins one.
    pub alg: Option<Alg>,
    /// Its type.
    pub kind: KeyKind,
    key: PKey<Public>,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.kind == alg.kind() && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Whether `signature` over `input` is valid for this key under `alg` (which the caller has
    /// matched with [`Jwk::accepts`]). Malformed signatures are simply invalid.
    pub fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        debug_assert!(self.accepts(alg));
        let verified = match self.kind {
            KeyKind::Rsa => self.verify_rsa(alg, input, signature),
            KeyKind::P256 | KeyKind::P384 => self.verify_ecdsa(alg, input, signature),
            KeyKind::Ed25519 => Verifier::new_without_digest(&self.key)
                .and_then(|mut verifier| verifier.verify_oneshot(signature, input)),
        };
        // A malformed signature leaves errors on OpenSSL's thread-local queue.
        let verified = verified.unwrap_or(false);
        drop(openssl::error::ErrorStack::get());
        verified
    }

    fn verify_rsa(
        &self,
        alg: Alg,
        input: &[u8],
        signature: &[u8],
    ) -> Result<bool, openssl::error::ErrorStack> {
        let mut verifier = Verifier::new(alg.digest(), &self.key)?;
        if matches!(alg, Alg::Ps256 | Alg::Ps384 | Alg::Ps512) {
            verifier.set_rsa_padding(Padding::PKCS1_PSS)?;
            verifier.set_rsa_mgf1_md(alg.digest())?;
            // RFC 7518 §3.5: the salt is as long as the digest.
            verifier.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
        } else {
            verifier.set_rsa_padding(Padding::PKCS1)?;
        }
        verifier.update(input)?;
        verifier.verify(signature)
    }

    /// JWS carries ECDSA signatures as fixed-width `r || s` (RFC 7518 §3.4); OpenSSL wants DER.
    fn verify_ecdsa(
        &self,
        alg: Alg,
        input: &[u8],
        signature: &[u8],
    ) -> Result<bool, openssl::error::ErrorStack> {
        let width = if self.kind == KeyKind::P256 { 32 } else { 48 };
        if signature.len() != 2 * width {
            return Ok(false);
        }
        let (r, s) = signature.split_at(width);
        let der =
            EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?
                .to_der()?;
        let mut verifier = Verifier::new(alg.digest(), &self.key)?;
        verifier.update(input)?;
        verifier.verify(&der)
    }
}

/// A JWKS as read: the usable keys, and how many were skipped (encryption keys, unsupported
/// types, short RSA keys).
#[derive(Debug)]
pub struct KeySet {
    /// Usable signing keys, in document order.
    pub keys: Vec<Jwk>,
    /// Keys present but not usable for verifying tokens.
    pub skipped: usize,
}

/// Why a JWKS document was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not `{"keys": [...]}`.
    #[error("the JWKS is not valid JSON of the form {{\"keys\": [...]}}: {0}")]
    Malformed(String),
    /// More than [`MAX_KEYS`] keys.
    #[error("the JWKS holds {0} keys; at most {MAX_KEYS} are accepted")]
    TooManyKeys(usize),
    /// Not one key the gateway can verify with.
    #[error(
        "the JWKS holds no usable signing key ({skipped} skipped: encryption keys, HMAC or unsupported types, RSA under 2048 bits)"
    )]
    NoUsableKey {
        /// Keys present but skipped.
        skipped: usize,
    },
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document (already bounded to [`MAX_JWKS_BYTES`] by the reader).
    pub fn parse(document: &[u8]) -> Result<Self, JwksError> {
        let raw: RawSet = serde_json::from_slice(document)
            .map_err(|error| JwksError::Malformed(error.to_string()))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(raw.keys.len()));
        }
        let total = raw.keys.len();
        let keys: Vec<Jwk> = raw.keys.into_iter().filter_map(usable).collect();
        let skipped = total - keys.len();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        Ok(Self { keys, skipped })
    }

    /// The keys that may verify a token with `kid` (or any kid when the token names none)
    /// signed with `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |key| {
            key.accepts(alg) && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
        })
    }

    /// Whether some key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

/// The signing key a JWK describes, or `None` for one that cannot verify tokens.
fn usable(value: serde_json::Value) -> Option<Jwk> {
    let raw: RawJwk = serde_json::from_value(value).ok()?;
    if raw.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        Some(name) => Some(Alg::from_name(name).ok()?),
        None => None,
    };
    let (kind, key) = match raw.kty.as_str() {
        "RSA" => (KeyKind::Rsa, rsa_key(&raw)?),
        "EC" => ec_key(&raw)?,
        "OKP" if raw.crv.as_deref() == Some("Ed25519") => {
            let x = decode(raw.x.as_deref()?)?;
            let key = PKey::public_key_from_raw_bytes(&x, Id::ED25519).ok()?;
            (KeyKind::Ed25519, key)
        }
        _ => return None,
    };
    if alg.is_some_and(|alg| alg.kind() != kind) {
        return None;
    }
    Some(Jwk {
        kid: raw.kid,
        alg,
        kind,
        key,
    })
}

fn rsa_key(raw: &RawJwk) -> Option<PKey<Public>> {
    let n = BigNum::from_slice(&decode(raw.n.as_deref()?)?).ok()?;
    let e = BigNum::from_slice(&decode(raw.e.as_deref()?)?).ok()?;
    if n.num_bits() < MIN_RSA_BITS as i32 {
        return None;
    }
    PKey::from_rsa(Rsa::from_public_components(n, e).ok()?).ok()
}

fn ec_key(raw: &RawJwk) -> Option<(KeyKind, PKey<Public>)> {
    let (kind, nid, width) = match raw.crv.as_deref()? {
        "P-256" => (KeyKind::P256, Nid::X9_62_PRIME256V1, 32),
        "P-384" => (KeyKind::P384, Nid::SECP384R1, 48),
        _ => return None,
    };
    let (x, y) = (decode(raw.x.as_deref()?)?, decode(raw.y.as_deref()?)?);
    if x.len() != width || y.len() != width {
        return None;
    }
    let group = EcGroup::from_curve_name(nid).ok()?;
    let (x, y) = (BigNum::from_slice(&x).ok()?, BigNum::from_slice(&y).ok()?);
    let key = EcKey::from_public_key_affine_coordinates(&group, &x, &y).ok()?;
    // Rejects points not on the curve (invalid-curve attacks).
    key.check_key().ok()?;
    Some((kind, PKey::from_ec_key(key).ok()?))
}

/// base64url without padding (RFC 7515 §2), as JOSE requires.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_refused_by_name() {
        assert_eq!(Alg::from_name("none"), Err(AlgRefused::Unsigned));
        assert_eq!(Alg::from_name("NONE"), Err(AlgRefused::Unsigned));
        assert_eq!(Alg::from_name("HS256"), Err(AlgRefused::Hmac("HS256")));
        assert_eq!(Alg::from_name("RS1"), Err(AlgRefused::Unsupported));
        assert_eq!(Alg::from_name("ES256"), Ok(Alg::Es256));
    }

    #[test]
    fn a_key_verifies_only_its_own_type_and_pinned_alg() {
        let rsa = Rsa::generate(2048).unwrap();
        let n = base64url(&rsa.n().to_vec());
        let e = base64url(&rsa.e().to_vec());
        let set = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"a","alg":"PS256","n":"{n}","e":"{e}"}},{{"kty":"oct","k":"c2VjcmV0"}},{{"kty":"RSA","use":"enc","n":"{n}","e":"{e}"}}]}}"#
        );
        let set = KeySet::parse(set.as_bytes()).unwrap();
        assert_eq!((set.keys.len(), set.skipped), (1, 2));
        assert_eq!(set.candidates(Some("a"), Alg::Ps256).count(), 1);
        assert_eq!(set.candidates(Some("a"), Alg::Rs256).count(), 0);
        assert_eq!(set.candidates(None, Alg::Es256).count(), 0);
        assert_eq!(set.candidates(Some("b"), Alg::Ps256).count(), 0);
    }

    #[test]
    fn short_rsa_keys_and_off_curve_points_are_skipped() {
        let rsa = Rsa::generate(1024).unwrap();
        let (n, e) = (base64url(&rsa.n().to_vec()), base64url(&rsa.e().to_vec()));
        let point = base64url(&[1u8; 32]);
        let set = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"{e}"}},{{"kty":"EC","crv":"P-256","x":"{point}","y":"{point}"}}]}}"#
        );
        assert_eq!(
            KeySet::parse(set.as_bytes()).unwrap_err(),
            JwksError::NoUsableKey { skipped: 2 }
        );
    }

    #[test]
    fn too_many_keys_are_refused() {
        let keys = vec![r#"{"kty":"oct"}"#; MAX_KEYS + 1].join(",");
        let set = format!(r#"{{"keys":[{keys}]}}"#);
        assert_eq!(
            KeySet::parse(set.as_bytes()).unwrap_err(),
            JwksError::TooManyKeys(MAX_KEYS + 1)
        );
    }

    #[test]
    fn ecdsa_signatures_of_the_wrong_width_are_invalid() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let private = EcKey::generate(&group).unwrap();
        let key = PKey::from_ec_key(EcKey::from_public_key(&group, private.public_key()).unwrap())
            .unwrap();
        let jwk = Jwk {
            kid: None,
            alg: None,
            kind: KeyKind::P256,
            key,
        };
        let der = EcdsaSig::sign(&[0u8; 32], &private)
            .unwrap()
            .to_der()
            .unwrap();
        assert!(!jwk.verify(Alg::Es256, b"x", &der));
        assert!(!jwk.verify(Alg::Es256, b"x", &[0u8; 64]));
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
