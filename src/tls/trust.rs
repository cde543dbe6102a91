//! Which CAs a peer's chain must lead to: the system store, or exactly the pinned file.

use std::path::Path;

use openssl::ssl::SslContextBuilder;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;

use super::errors::Error;
use super::identity::load_certs;
use crate::config::Trust;

/// Installs `trust` in a context: the system store (`/etc/ssl/certs`, honouring
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), or a store holding only the CAs of `root_ca_cert_path`.
pub fn apply(
    builder: &mut SslContextBuilder,
    trust: &Trust,
    key: &'static str,
) -> Result<(), Error> {
    match trust {
        Trust::System => builder
            .set_default_verify_paths()
            .map_err(|stack| Error::setting(key, stack)),
        Trust::Pinned(path) => {
            let store = pinned_store(path, key)?;
            builder.set_cert_store(store.build());
            Ok(())
        }
    }
}

/// A store of exactly the certificates in `path`. Partial chains are accepted so that pinning an
/// intermediate CA (without its root) trusts what it issued, as the user asked.
pub fn pinned_store(path: &Path, key: &'static str) -> Result<X509StoreBuilder, Error> {
    let certs = load_certs(path, key)?;
    let mut store = X509StoreBuilder::new().map_err(|stack| Error::setting(key, stack))?;
    for cert in certs {
        store
            .add_cert(cert)
            .map_err(|stack| Error::setting(key, stack))?;
    }
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(|stack| Error::setting(key, stack))?;
    Ok(store)
}
