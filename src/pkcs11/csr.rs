//! `nexus pkcs11 csr`: a PKCS#10 certificate request signed by a token key through the
//! in-process provider, and verified with OpenSSL before anyone sees it.

use std::net::IpAddr;

use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::stack::Stack;
use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509Req, X509ReqBuilder};

use super::admin::{AdminError, load_key};
use super::{Pkcs11Error, TokenKey};
use crate::config::Pkcs11Defaults;

/// The key usage a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS client authentication (`extendedKeyUsage=clientAuth`).
    Client,
    /// A TLS server (`extendedKeyUsage=serverAuth`).
    Server,
}

/// What `csr` is asked for.
pub struct Request<'a> {
    /// The private key's `pkcs11:` URI.
    pub key: &'a str,
    /// The subject, as `/CN=name/O=org`.
    pub subject: &'a str,
    /// `DNS:name` and `IP:address` entries for subjectAltName.
    pub san: &'a [String],
    /// The extended key usage to request, if any.
    pub usage: Option<Usage>,
    /// Sign an RSA request with RSA-PSS instead of PKCS#1 v1.5.
    pub rsa_pss: bool,
}

/// Builds the request, signs it with the token key and checks the signature.
pub fn create(request: &Request<'_>, defaults: &Pkcs11Defaults) -> Result<X509Req, AdminError> {
    let subject = subject_name(request.subject)?;
    let key = load_key(request.key, defaults)?;
    let openssl = |action| move |source| Pkcs11Error::OpenSsl { action, source };
    let mut builder = X509ReqBuilder::new().map_err(openssl("start a certificate request"))?;
    builder
        .set_version(0)
        .and_then(|()| builder.set_subject_name(&subject))
        .and_then(|()| builder.set_pubkey(key.public_key()))
        .map_err(openssl("fill in the certificate request"))?;
    add_extensions(&mut builder, request)?;
    let csr = sign(builder, &key, request.rsa_pss)?;
    let verified = csr
        .verify(key.public_key())
        .map_err(openssl("verify the request's signature"))?;
    if !verified {
        return Err(Pkcs11Error::OpenSsl {
            action: "verify the request's signature (it does not match the key)",
            source: openssl::error::ErrorStack::get(),
        }
        .into());
    }
    Ok(csr)
}

/// SHA-384 for P-384 keys (their strength), SHA-256 otherwise.
fn digest(key: &TokenKey) -> &'static MdRef {
    let p384 = key
        .public_key()
        .ec_key()
        .ok()
        .and_then(|ec| ec.group().curve_name())
        == Some(Nid::SECP384R1);
    if p384 { Md::sha384() } else { Md::sha256() }
}

fn sign(builder: X509ReqBuilder, key: &TokenKey, rsa_pss: bool) -> Result<X509Req, AdminError> {
    if rsa_pss && key.public_key().rsa().is_err() {
        return Err(AdminError::Usage(
            "--rsa-pss needs an RSA key; EC keys sign with ECDSA".to_owned(),
        ));
    }
    let csr = builder.build();
    super::provider::sign_request(&csr, key.pkey(), digest(key), rsa_pss)?;
    Ok(csr)
}

fn add_extensions(builder: &mut X509ReqBuilder, request: &Request<'_>) -> Result<(), AdminError> {
    let openssl = |source| Pkcs11Error::OpenSsl {
        action: "build the request's extensions",
        source,
    };
    let mut extensions = Stack::new().map_err(openssl)?;
    if !request.san.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for entry in request.san {
            match entry.split_once(':') {
                Some(("DNS", name)) if !name.is_empty() => san.dns(name),
                Some(("IP", ip)) if ip.parse::<IpAddr>().is_ok() => san.ip(ip),
                _ => {
                    return Err(AdminError::Usage(format!(
                        "--san {entry}: use DNS:name or IP:address, comma-separated"
                    )));
                }
            };
        }
        let context = builder.x509v3_context(None);
        extensions
            .push(san.build(&context).map_err(openssl)?)
            .map_err(openssl)?;
    }
    if let Some(usage) = request.usage {
        let key_usage = KeyUsage::new().critical().digital_signature().build();
        let mut extended = ExtendedKeyUsage::new();
        match usage {
            Usage::Client => extended.client_auth(),
            Usage::Server => extended.server_auth(),
        };
        extensions
            .push(key_usage.map_err(openssl)?)
            .map_err(openssl)?;
        extensions
            .push(extended.build().map_err(openssl)?)
            .map_err(openssl)?;
    }
    if !extensions.is_empty() {
        builder.add_extensions(&extensions).map_err(openssl)?;
    }
    Ok(())
}

/// Parses `/CN=name/O=org` (OpenSSL's `-subj` form; `\/` is a slash inside a value).
fn subject_name(text: &str) -> Result<X509Name, AdminError> {
    let bad = |why: &str| {
        AdminError::Usage(format!(
            "--subject {text:?}: {why} (write it as /CN=name/O=organisation)"
        ))
    };
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| bad("it must start with /"))?;
    let mut parts = vec![String::new()];
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => parts
                .last_mut()
                .expect("BUG: parts is never empty")
                .extend(chars.next()),
            '/' => parts.push(String::new()),
            c => parts.last_mut().expect("BUG: parts is never empty").push(c),
        }
    }
    let mut name = X509Name::builder().map_err(|source| Pkcs11Error::OpenSsl {
        action: "build the subject name",
        source,
    })?;
    for part in &parts {
        let (field, value) = part
            .split_once('=')
            .filter(|(field, value)| !field.is_empty() && !value.is_empty())
            .ok_or_else(|| bad(&format!("`{part}` is not FIELD=value")))?;
        name.append_entry_by_text(field, value)
            .map_err(|_| bad(&format!("`{field}` is not a name field OpenSSL knows")))?;
    }
    Ok(name.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String)> {
        let name = subject_name(text).unwrap();
        name.entries()
            .map(|entry| {
                let field = entry.object().nid().short_name().unwrap().to_owned();
                (field, entry.data().to_string().unwrap())
            })
            .collect()
    }

    #[test]
    fn subjects_are_read_like_openssl_subj() {
        assert_eq!(
            entries("/CN=nexus client/O=Example\\/Ops"),
            [
                ("CN".to_owned(), "nexus client".to_owned()),
                ("O".to_owned(), "Example/Ops".to_owned())
            ]
        );
        for bad in ["CN=x", "/CN=", "/CN=x/nonsense", "/XYZ=1"] {
            let Err(error) = subject_name(bad) else {
                panic!("{bad} was accepted");
            };
            let error = error.to_string();
            assert!(error.contains("--subject"), "{bad}: {error}");
        }
    }
}
