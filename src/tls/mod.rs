//! TLS on the system's OpenSSL: the client context and connector of every HTTPS downstream, the
//! gateway's own HTTPS acceptor, trust stores, identities, the error mapping users see,
//! certificate health and `nexus tls probe`.

pub mod client;
pub mod connector;
pub mod errors;
pub mod expiry;
mod ffi;
pub mod identity;
pub mod material;
pub mod probe;
pub mod server;
pub mod trust;

use openssl::x509::{X509NameRef, X509Ref};

pub use client::{ClientContext, ClientHandle};
pub use connector::{Connector, Stream};
pub use errors::Error;

/// The names a certificate is valid for: DNS and IP SANs, else its CN.
pub fn cert_names(cert: &X509Ref) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(sans) = cert.subject_alt_names() {
        for san in &sans {
            if let Some(dns) = san.dnsname() {
                names.push(dns.to_owned());
            } else if let Some(ip) = san.ipaddress() {
                names.push(ip_text(ip));
            }
        }
    }
    if names.is_empty() {
        let cn = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .filter_map(|entry| entry.data().to_string().ok());
        names.extend(cn);
    }
    names
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).expect("BUG: length checked"))
            .to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("BUG: length checked"))
            .to_string(),
        _ => format!("{bytes:02x?}"),
    }
}

/// Subject of a certificate as `CN=...,O=...`.
pub fn subject_text(cert: &X509Ref) -> String {
    name_text(cert.subject_name())
}

/// `CN=...,O=...` of a name.
pub fn name_text(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}
