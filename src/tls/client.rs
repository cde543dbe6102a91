//! OpenSSL client contexts for downstreams, built once per server from its `[tls]` table and
//! rebuilt on reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslConnector, SslContextBuilder, SslMethod, SslSession, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};

use super::errors::Error;
use super::identity::{Identity, KeyNames};
use super::trust;
use crate::config::{ClientIdentity, ClientTls, TlsParams, TlsVersion, Trust, Verify};
use crate::metrics::Metrics;

/// A downstream's current client context; reload swaps it, so new connections take the new
/// material while pooled connections keep theirs.
pub type ClientHandle = Arc<ArcSwap<ClientContext>>;

/// A ready client context plus the per-connection choices made from the server's `[tls]`.
pub struct ClientContext {
    /// The downstream's name (metrics and messages).
    pub server: String,
    /// The OpenSSL context (trust store, versions, identity, session cache).
    pub connector: SslConnector,
    /// Whether the chain is verified at all (`verify_certs`).
    pub verify_chain: bool,
    /// Whether the certificate's names are checked against the host.
    pub verify_hostname: bool,
    /// Whether the trust store is `root_ca_cert_path` (for messages).
    pub pinned: bool,
    /// Whether a client certificate is configured.
    pub has_identity: bool,
    /// SNI and verification name when it differs from the URL's host.
    pub server_name: Option<String>,
    /// Last session per `host:port`, for resumption.
    pub sessions: Arc<SessionCache>,
    /// Where handshakes are counted.
    pub metrics: Arc<Metrics>,
}

/// The newest session of each peer, filled by the context's new-session callback.
#[derive(Default)]
pub struct SessionCache {
    // Touched once per handshake, never across an await.
    sessions: Mutex<HashMap<String, SslSession>>,
}

impl SessionCache {
    /// The session to offer to `peer`, if one was saved.
    pub fn get(&self, peer: &str) -> Option<SslSession> {
        self.lock().get(peer).cloned()
    }

    fn put(&self, peer: String, session: SslSession) {
        self.lock().insert(peer, session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SslSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `host:port` a connection is for, stored on each `Ssl` so the new-session callback knows
/// where to file the session.
pub fn peer_index() -> Index<Ssl, String> {
    static INDEX: OnceLock<Index<Ssl, String>> = OnceLock::new();
    *INDEX
        .get_or_init(|| Ssl::new_ex_index().expect("BUG: OpenSSL cannot allocate an ex_data index"))
}

const CLIENT_NAMES: KeyNames = KeyNames {
    cert: "client_cert_path",
    key: "client_key_path",
};

impl ClientContext {
    /// Builds the context for one downstream: every file is read now, so bad material fails
    /// here (at start or reload), never on a connection.
    pub fn new(server: &str, tls: &ClientTls, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|stack| Error::setting("tls", stack))?;
        apply_tls_params(&mut builder, &tls.params)?;
        builder
            .set_alpn_protos(b"\x08http/1.1")
            .map_err(|stack| Error::setting("tls", stack))?;
        let (verify_chain, verify_hostname, trust) = match &tls.verify {
            Verify::Full(trust) => (true, true, Some(trust)),
            Verify::SkipHostname(trust) => (true, false, Some(trust)),
            Verify::Dangerous => (false, false, None),
        };
        match trust {
            Some(trust) => trust::apply(&mut builder, trust, "root_ca_cert_path")?,
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        let has_identity = set_identity(&mut builder, &tls.identity)?;
        let sessions = Arc::new(SessionCache::default());
        builder.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let cache = sessions.clone();
        builder.set_new_session_callback(move |ssl, session| {
            if let Some(peer) = ssl.ex_data(peer_index()) {
                cache.put(peer.clone(), session);
            }
        });
        Ok(Self {
            server: server.to_owned(),
            connector: builder.build(),
            verify_chain,
            verify_hostname,
            pinned: matches!(trust, Some(Trust::Pinned(_))),
            has_identity,
            server_name: tls.server_name.clone(),
            sessions,
            metrics,
        })
    }

    /// A swappable handle on a new context; warns when verification is off.
    pub fn handle(
        server: &str,
        tls: &ClientTls,
        metrics: Arc<Metrics>,
    ) -> Result<ClientHandle, Error> {
        let context = Self::new(server, tls, metrics)?;
        context.announce();
        Ok(Arc::new(ArcSwap::from_pointee(context)))
    }

    /// Logs (at every start and reload) and counts a disabled verification.
    pub fn announce(&self) {
        let disabled = !self.verify_chain;
        self.metrics
            .set_verification_disabled(&self.server, disabled);
        if disabled {
            tracing::warn!(
                server = %self.server,
                "verify_certs = false: the server's certificate is NOT verified; anyone on the path can impersonate it (development only)"
            );
        }
    }
}

/// Protocol floor and ciphers, shared by both directions.
pub(crate) fn apply_tls_params(
    builder: &mut SslContextBuilder,
    params: &TlsParams,
) -> Result<(), Error> {
    let min = match params.min_version {
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    };
    builder
        .set_min_proto_version(Some(min))
        .map_err(|stack| Error::setting("min_tls_version", stack))?;
    if let Some(list) = &params.cipher_list {
        builder
            .set_cipher_list(list)
            .map_err(|stack| Error::setting("cipher_list", stack))?;
    }
    if let Some(suites) = &params.ciphersuites {
        builder
            .set_ciphersuites(suites)
            .map_err(|stack| Error::setting("ciphersuites", stack))?;
    }
    Ok(())
}

fn set_identity(builder: &mut SslContextBuilder, identity: &ClientIdentity) -> Result<bool, Error> {
    let ClientIdentity::Certificate { cert, key } = identity else {
        return Ok(false);
    };
    let identity = Identity::load(cert, key, CLIENT_NAMES)?;
    install(builder, identity, CLIENT_NAMES)?;
    Ok(true)
}

/// Puts a loaded identity (leaf, chain, key) into a context.
pub(crate) fn install(
    builder: &mut SslContextBuilder,
    identity: Identity,
    names: KeyNames,
) -> Result<(), Error> {
    let mut chain = identity.chain.into_iter();
    let leaf = chain
        .next()
        .expect("BUG: load_certs returns at least one certificate");
    builder
        .set_certificate(&leaf)
        .map_err(|stack| Error::setting(names.cert, stack))?;
    for intermediate in chain {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(|stack| Error::setting(names.cert, stack))?;
    }
    builder
        .set_private_key(&identity.key)
        .map_err(|stack| Error::setting(names.key, stack))
}
