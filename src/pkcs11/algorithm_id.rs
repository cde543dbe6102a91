//! DER `AlgorithmIdentifier`s of our signature schemes, which OpenSSL asks the provider for
//! (`algorithm-id`) when it signs a certificate request or certificate with a provider key.
//! TLS never asks, so only `nexus pkcs11 csr` needs them.

use super::scheme::{Hash, Scheme};

/// DER tags.
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const NULL: &[u8] = &[0x05, 0x00];

/// `id-RSASSA-PSS` (RFC 8017) and `id-mgf1`, OID contents.
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

/// The DER `AlgorithmIdentifier` of `scheme`, using `hash` (ECDSA's scheme has no hash).
pub(crate) fn encode(scheme: Scheme, hash: Hash) -> Vec<u8> {
    match scheme {
        Scheme::Ecdsa => algorithm(&ecdsa_with(hash), &[]),
        // RFC 8017 A.2.4: PKCS#1 v1.5 identifiers carry NULL parameters.
        Scheme::RsaPkcs1 { hash } => algorithm(&rsa_with(hash), NULL),
        Scheme::RsaPss { hash, salt_len } => {
            let hash_id = algorithm(&digest(hash), &[]);
            let mgf = algorithm(MGF1, &hash_id);
            let parameters = [
                tlv(0xa0, &hash_id),
                tlv(0xa1, &mgf),
                tlv(0xa2, &integer(salt_len)),
            ]
            .concat();
            algorithm(RSASSA_PSS, &tlv(SEQUENCE, &parameters))
        }
    }
}

fn algorithm(oid: &[u8], parameters: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[tlv(OID, oid).as_slice(), parameters].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative DER INTEGER.
fn integer(value: usize) -> Vec<u8> {
    unsigned_integer(&value.to_be_bytes())
}

/// The DER INTEGER of the unsigned big-endian number `magnitude` (e.g. a certificate serial
/// for `CKA_SERIAL_NUMBER`).
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = magnitude.iter().copied().skip_while(|&b| b == 0).collect();
    if bytes.first().is_none_or(|&b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(INTEGER, &bytes)
}

/// The hash's OID contents (NIST, RFC 5754; SHA-1 from OIW).
fn digest(hash: Hash) -> Vec<u8> {
    let nist = |n: u8| vec![0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n];
    match hash {
        Hash::Sha1 => vec![0x2b, 0x0e, 0x03, 0x02, 0x1a],
        Hash::Sha224 => nist(4),
        Hash::Sha256 => nist(1),
        Hash::Sha384 => nist(2),
        Hash::Sha512 => nist(3),
    }
}

/// `shaNNNWithRSAEncryption` (RFC 8017 A.2.4).
fn rsa_with(hash: Hash) -> Vec<u8> {
    let last = match hash {
        Hash::Sha1 => 0x05,
        Hash::Sha224 => 0x0e,
        Hash::Sha256 => 0x0b,
        Hash::Sha384 => 0x0c,
        Hash::Sha512 => 0x0d,
    };
    vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last]
}

/// `ecdsa-with-SHAnnn` (RFC 5758 §3.2; SHA-1 from X9.62).
fn ecdsa_with(hash: Hash) -> Vec<u8> {
    let with = |tail: &[u8]| [&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04][..], tail].concat();
    match hash {
        Hash::Sha1 => with(&[0x01]),
        Hash::Sha224 => with(&[0x03, 0x01]),
        Hash::Sha256 => with(&[0x03, 0x02]),
        Hash::Sha384 => with(&[0x03, 0x03]),
        Hash::Sha512 => with(&[0x03, 0x04]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSL's own view of each encoding: it parses, and names the algorithm it means.
    fn long_name(der: &[u8]) -> String {
        let oid_len = usize::from(der[3]);
        let oid = openssl::asn1::Asn1Object::from_str(&oid_text(&der[4..4 + oid_len])).unwrap();
        oid.nid().long_name().unwrap().to_owned()
    }

    fn oid_text(content: &[u8]) -> String {
        let mut parts = vec![u32::from(content[0] / 40), u32::from(content[0] % 40)];
        let mut value = 0u32;
        for &b in &content[1..] {
            value = (value << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                parts.push(value);
                value = 0;
            }
        }
        parts
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn identifiers_name_the_right_algorithms() {
        let ecdsa = encode(Scheme::Ecdsa, Hash::Sha384);
        assert_eq!(long_name(&ecdsa), "ecdsa-with-SHA384");
        let pkcs1 = encode(Scheme::RsaPkcs1 { hash: Hash::Sha256 }, Hash::Sha256);
        assert_eq!(long_name(&pkcs1), "sha256WithRSAEncryption");
        assert!(pkcs1.ends_with(NULL));
        let pss = encode(
            Scheme::RsaPss {
                hash: Hash::Sha256,
                salt_len: 32,
            },
            Hash::Sha256,
        );
        assert_eq!(long_name(&pss), "rsassaPss");
        assert!(pss.ends_with(&[0xa2, 0x03, 0x02, 0x01, 32]), "{pss:02x?}");
    }

    #[test]
    fn lengths_and_integers_are_minimal() {
        assert_eq!(integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer(222), [0x02, 0x02, 0x00, 0xde]);
        assert_eq!(&tlv(SEQUENCE, &[0; 200])[..3], [0x30, 0x81, 200]);
    }
}
