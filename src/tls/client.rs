//! OpenSSL client contexts for downstreams, built once per server from its `[tls]` table.

use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};

use crate::config::{ClientTls, TlsVersion, Verify};

/// A ready client context plus the per-connection choices made from the server's `[tls]`.
#[derive(Clone)]
pub struct ClientContext {
    /// The OpenSSL context (trust store, versions, identity).
    pub connector: SslConnector,
    /// Whether the certificate's names are checked against the host.
    pub verify_hostname: bool,
    /// SNI and verification name when it differs from the URL's host.
    pub server_name: Option<String>,
}

/// Why a TLS context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused a setting.
    #[error("OpenSSL rejected the TLS settings: {0}")]
    OpenSsl(#[from] ErrorStack),
}

impl ClientContext {
    /// Builds the context for one downstream.
    pub fn new(tls: &ClientTls) -> Result<Self, TlsError> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        builder.set_min_proto_version(Some(match tls.params.min_version {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }))?;
        builder.set_alpn_protos(b"\x08http/1.1")?;
        let verify_hostname = matches!(tls.verify, Verify::Full(_));
        if matches!(tls.verify, Verify::Dangerous) {
            builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
        }
        Ok(Self {
            connector: builder.build(),
            verify_hostname,
            server_name: tls.server_name.clone(),
        })
    }
}
