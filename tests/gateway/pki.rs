//! A test PKI made at test time with the openssl crate (nothing committed): root CA,
//! intermediate, server certificates (good, expired, wrong host), client certificates (RSA
//! PKCS#1, EC SEC1, encrypted PKCS#8) and a rogue CA with its own client.

use std::path::PathBuf;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};

/// Files of one test PKI in a temp dir.
pub struct TestPki {
    dir: tempfile::TempDir,
}

struct Issuer {
    cert: X509,
    key: PKey<Private>,
}

/// Validity of a generated certificate, in days from now.
#[derive(Clone, Copy)]
enum Validity {
    Current,
    Expired,
}

impl TestPki {
    /// Generates everything into a fresh temp dir.
    pub fn generate() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let root = pki.ca("Nexus Test Root CA", None, "ca.pem");
        let intermediate = pki.ca(
            "Nexus Test Intermediate CA",
            Some(&root),
            "intermediate.pem",
        );
        pki.bundle("chain-bundle.pem", &["intermediate.pem", "ca.pem"]);
        let ec = || {
            PKey::from_ec_key(
                EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
            )
            .unwrap()
        };
        pki.leaf(
            "server",
            "localhost",
            &["localhost", "127.0.0.1"],
            &intermediate,
            ec(),
            Validity::Current,
            true,
        );
        pki.leaf(
            "expired",
            "localhost",
            &["localhost", "127.0.0.1"],
            &intermediate,
            ec(),
            Validity::Expired,
            true,
        );
        pki.leaf(
            "wronghost",
            "elsewhere.example",
            &["elsewhere.example"],
            &intermediate,
            ec(),
            Validity::Current,
            true,
        );
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        pki.leaf(
            "client-rsa",
            "nexus-client-rsa",
            &[],
            &root,
            rsa,
            Validity::Current,
            false,
        );
        pki.leaf(
            "client-ec",
            "nexus-client-ec",
            &[],
            &root,
            ec(),
            Validity::Current,
            false,
        );
        pki.leaf(
            "client-b",
            "nexus-client-b",
            &[],
            &root,
            ec(),
            Validity::Current,
            false,
        );
        let key = ec();
        let encrypted = key
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"s3cret")
            .unwrap();
        pki.leaf(
            "client-enc",
            "nexus-client-enc",
            &[],
            &root,
            key,
            Validity::Current,
            false,
        );
        pki.write("client-enc.key", &encrypted);
        pki.write("client-enc.pass", b"s3cret\n");
        let rogue = pki.ca("Rogue CA", None, "rogue-ca.pem");
        pki.leaf(
            "rogue-client",
            "rogue-client",
            &[],
            &rogue,
            ec(),
            Validity::Current,
            false,
        );
        pki
    }

    /// A file of this PKI, e.g. `ca.pem`, `server.pem` (leaf + intermediate), `client-rsa.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn bundle(&self, name: &str, parts: &[&str]) {
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|part| std::fs::read(self.path(part)).unwrap())
            .collect();
        self.write(name, &bytes);
    }

    fn ca(&self, cn: &str, parent: Option<&Issuer>, file: &str) -> Issuer {
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut builder = base(cn, &key, Validity::Current);
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        let (issuer_name, signer) = match parent {
            Some(parent) => (parent.cert.subject_name().to_owned().unwrap(), &parent.key),
            None => (builder_name(cn), &key),
        };
        builder.set_issuer_name(&issuer_name).unwrap();
        builder.sign(signer, MessageDigest::sha256()).unwrap();
        let cert = builder.build();
        self.write(file, &cert.to_pem().unwrap());
        Issuer { cert, key }
    }

    #[allow(clippy::too_many_arguments)] // a table of certificate facts reads better flat
    fn leaf(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        issuer: &Issuer,
        key: PKey<Private>,
        validity: Validity,
        server: bool,
    ) {
        let mut builder = base(cn, &key, validity);
        builder.set_issuer_name(issuer.cert.subject_name()).unwrap();
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        let usage = if server {
            ExtendedKeyUsage::new().server_auth().build()
        } else {
            ExtendedKeyUsage::new().client_auth().build()
        };
        builder.append_extension(usage.unwrap()).unwrap();
        if !sans.is_empty() {
            let mut alt = SubjectAlternativeName::new();
            for san in sans {
                if san.parse::<std::net::IpAddr>().is_ok() {
                    alt.ip(san);
                } else {
                    alt.dns(san);
                }
            }
            let extension = alt
                .build(&builder.x509v3_context(Some(&issuer.cert), None))
                .unwrap();
            builder.append_extension(extension).unwrap();
        }
        builder.sign(&issuer.key, MessageDigest::sha256()).unwrap();
        let cert = builder.build();
        let mut pem = cert.to_pem().unwrap();
        // Leaf then chain, as the gateway and servers send it (the root stays with the verifier).
        if issuer.cert.subject_name().to_der().unwrap()
            != issuer.cert.issuer_name().to_der().unwrap()
        {
            pem.extend(issuer.cert.to_pem().unwrap());
        }
        self.write(&format!("{name}.pem"), &pem);
        let key_pem = match key.rsa() {
            Ok(rsa) => rsa.private_key_to_pem().unwrap(),
            Err(_) => key.ec_key().unwrap().private_key_to_pem().unwrap(),
        };
        self.write(&format!("{name}.key"), &key_pem);
    }
}

fn builder_name(cn: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    name.build()
}

fn base(cn: &str, key: &PKey<Private>, validity: Validity) -> openssl::x509::X509Builder {
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial()).unwrap();
    builder
        .set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    builder.set_subject_name(&builder_name(cn)).unwrap();
    builder.set_pubkey(key).unwrap();
    let (from, to) = match validity {
        Validity::Current => (
            Asn1Time::days_from_now(0).unwrap(),
            Asn1Time::days_from_now(2).unwrap(),
        ),
        Validity::Expired => (
            Asn1Time::from_unix(1_600_000_000).unwrap(),
            Asn1Time::from_unix(1_600_086_400).unwrap(),
        ),
    };
    builder.set_not_before(&from).unwrap();
    builder.set_not_after(&to).unwrap();
    builder
}

fn rand_serial() -> u32 {
    let mut bytes = [0u8; 4];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    u32::from_be_bytes(bytes) >> 1
}
