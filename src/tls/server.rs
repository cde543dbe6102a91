//! The gateway's own HTTPS: an OpenSSL acceptor from `[server.tls]`, swapped on reload.

use std::sync::Arc;

use arc_swap::ArcSwap;
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, SslVerifyMode};

use super::client::{apply_tls_params, install};
use super::errors::Error;
use super::identity::{Identity, KeyNames, load_certs};
use super::trust::pinned_store;
use crate::config::ServerTls;

const SERVER_NAMES: KeyNames = KeyNames {
    cert: "server.tls.certificate",
    key: "server.tls.key",
};

/// The current acceptor; reload swaps it, established connections keep theirs.
pub type AcceptorHandle = Arc<ArcSwap<SslAcceptor>>;

/// Builds the acceptor: certificate chain and key (checked to be a pair), protocol floor and
/// ciphers, and with `client_ca_cert_path` mandatory client certificates issued by that CA.
pub fn acceptor(tls: &ServerTls) -> Result<SslAcceptor, Error> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|stack| Error::setting("server.tls", stack))?;
    apply_tls_params(&mut builder, &tls.params)?;
    let identity = Identity::load(&tls.certificate, &tls.key, SERVER_NAMES)?;
    install(&mut builder, identity, SERVER_NAMES)?;
    builder
        .check_private_key()
        .map_err(|stack| Error::setting(SERVER_NAMES.key, stack))?;
    if let Some(ca) = &tls.client_ca {
        let key = "server.tls.client_ca_cert_path";
        for cert in load_certs(ca, key)? {
            // Listed in the certificate request so clients pick the right certificate.
            builder
                .add_client_ca(&cert)
                .map_err(|stack| Error::setting(key, stack))?;
        }
        builder
            .set_verify_cert_store(pinned_store(ca, key)?.build())
            .map_err(|stack| Error::setting(key, stack))?;
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    // Resumed sessions with client verification need a session id context, or OpenSSL
    // refuses them.
    builder
        .set_session_id_context(b"nexus")
        .map_err(|stack| Error::setting("server.tls", stack))?;
    builder.set_alpn_select_callback(|_, offered| {
        openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}

/// A swappable handle on a new acceptor.
pub fn handle(tls: &ServerTls) -> Result<AcceptorHandle, Error> {
    Ok(Arc::new(ArcSwap::from_pointee(acceptor(tls)?)))
}
