//! Signature schemes on a precomputed digest and the PKCS#11 mechanisms that implement them.
//!
//! The provider hashes; the token signs the digest: RSA-PSS with `CKM_RSA_PKCS_PSS`, RSA
//! PKCS#1 v1.5 with a DER `DigestInfo` and `CKM_RSA_PKCS`, ECDSA with `CKM_ECDSA`. Raw RSA
//! (`CKM_RSA_X_509`) is never used.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;

/// The digests TLS signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// Accepts OpenSSL's names and aliases: `SHA2-256`, `SHA256`, `SHA-256`, `sha256`, ...
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let short = upper.replace("SHA2-", "SHA").replace('-', "");
        Some(match short.as_str() {
            "SHA1" => Hash::Sha1,
            "SHA224" => Hash::Sha224,
            "SHA256" => Hash::Sha256,
            "SHA384" => Hash::Sha384,
            "SHA512" => Hash::Sha512,
            _ => return None,
        })
    }

    /// The digest's size in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The OpenSSL digest.
    pub(crate) fn message_digest(self) -> MessageDigest {
        match self {
            Hash::Sha1 => MessageDigest::sha1(),
            Hash::Sha224 => MessageDigest::sha224(),
            Hash::Sha256 => MessageDigest::sha256(),
            Hash::Sha384 => MessageDigest::sha384(),
            Hash::Sha512 => MessageDigest::sha512(),
        }
    }

    fn mechanism(self) -> (MechanismType, PkcsMgfType) {
        match self {
            Hash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            Hash::Sha224 => (MechanismType::SHA224, PkcsMgfType::MGF1_SHA224),
            Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
            Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
            Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
        }
    }

    /// The DER `DigestInfo` header that precedes the digest in PKCS#1 v1.5 (RFC 8017 §9.2).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            Hash::Sha224 => &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// How a digest is turned into a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// RSASSA-PSS with MGF1 over the same hash.
    RsaPss { hash: Hash, salt_len: usize },
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1 { hash: Hash },
    /// ECDSA; the result is DER `ECDSA-Sig-Value`.
    Ecdsa,
}

impl Scheme {
    /// The mechanism and the bytes to pass to `C_Sign` for `digest`.
    pub(crate) fn mechanism(self, digest: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
        match self {
            Scheme::RsaPss { hash, salt_len } => {
                let (hash_alg, mgf) = hash.mechanism();
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: (salt_len as u64).into(),
                };
                (Mechanism::RsaPkcsPss(params), digest.to_vec())
            }
            Scheme::RsaPkcs1 { hash } => {
                let mut input = hash.digest_info_prefix().to_vec();
                input.extend_from_slice(digest);
                (Mechanism::RsaPkcs, input)
            }
            Scheme::Ecdsa => (Mechanism::Ecdsa, digest.to_vec()),
        }
    }

    /// Converts the token's output to what OpenSSL expects (DER for ECDSA).
    pub(crate) fn finish(self, raw: Vec<u8>) -> Result<Vec<u8>, ErrorStack> {
        match self {
            Scheme::Ecdsa => ecdsa_raw_to_der(&raw),
            _ => Ok(raw),
        }
    }
}

/// PKCS#11 returns ECDSA signatures as `r || s` (each half the length); TLS wants DER.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let (r, s) = raw.split_at(raw.len() / 2);
    EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?.to_der()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_cover_openssl_spellings() {
        for name in ["SHA2-256", "SHA256", "sha-256", "sha256"] {
            assert_eq!(Hash::from_name(name), Some(Hash::Sha256), "{name}");
        }
        assert_eq!(Hash::from_name("SHA1"), Some(Hash::Sha1));
        assert_eq!(Hash::from_name("SHA2-384"), Some(Hash::Sha384));
        assert_eq!(Hash::from_name("MD5"), None);
    }

    #[test]
    fn digest_info_prefixes_end_with_the_digest_length() {
        for hash in [
            Hash::Sha1,
            Hash::Sha224,
            Hash::Sha256,
            Hash::Sha384,
            Hash::Sha512,
        ] {
            let prefix = hash.digest_info_prefix();
            assert_eq!(usize::from(prefix[prefix.len() - 1]), hash.len());
            assert_eq!(usize::from(prefix[1]) + 2, prefix.len() + hash.len());
        }
    }

    #[test]
    fn ecdsa_signature_is_converted_to_der() {
        let raw = [[0x01u8; 32], [0x02u8; 32]].concat();
        let der = Scheme::Ecdsa.finish(raw).unwrap();
        let sig = EcdsaSig::from_der(&der).unwrap();
        assert_eq!(sig.r().to_vec(), vec![0x01; 32]);
        assert_eq!(sig.s().to_vec(), vec![0x02; 32]);
    }
}
