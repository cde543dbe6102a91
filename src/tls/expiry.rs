//! Certificate health: every configured certificate's days until expiry, warned about 30 days
//! ahead (the guide's advice), re-checked every 12 hours and exposed in `/metrics`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use tokio_util::sync::CancellationToken;

use super::identity::load_certs;
use crate::config::{CertSource, ClientIdentity, Config, Transport, Trust, Verify};
use crate::metrics::Metrics;

/// How far ahead an expiry is warned about.
pub const WARN_DAYS: i64 = 30;
/// How often certificates are checked after start.
pub const INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// One configured certificate file and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The PEM file.
    pub path: PathBuf,
    /// `server`, `client-ca`, `client` or `ca`.
    pub role: &'static str,
}

/// Every certificate file the configuration names (`pkcs11:` certificates excluded).
pub fn watched(config: &Config) -> Vec<Watched> {
    let mut files = Vec::new();
    let mut add = |path: &Path, role| {
        let entry = Watched {
            path: path.to_path_buf(),
            role,
        };
        if !files.contains(&entry) {
            files.push(entry);
        }
    };
    if let Some(tls) = &config.server.tls {
        if let CertSource::Pem(path) = &tls.certificate {
            add(path, "server");
        }
        if let Some(ca) = &tls.client_ca {
            add(ca, "client-ca");
        }
    }
    for server in &config.mcp.servers {
        let Transport::Http(http) = &server.transport else {
            continue;
        };
        if let ClientIdentity::Certificate {
            cert: CertSource::Pem(path),
            ..
        } = &http.tls.identity
        {
            add(path, "client");
        }
        if let Verify::Full(Trust::Pinned(ca)) | Verify::SkipHostname(Trust::Pinned(ca)) =
            &http.tls.verify
        {
            add(ca, "ca");
        }
    }
    files
}

/// Checks each file once: WARN within [`WARN_DAYS`], ERROR when expired, gauge in `metrics`.
/// A file holding a chain is judged by its first certificate to expire.
pub fn check(files: &[Watched], metrics: &Metrics) {
    for file in files {
        let Ok(certs) = load_certs(&file.path, file.role) else {
            // Unreadable material is reported by whoever loads it; nothing to measure.
            continue;
        };
        let Some((days, not_after)) = certs
            .iter()
            .filter_map(|cert| days_left(cert).map(|days| (days, cert.not_after().to_string())))
            .min_by_key(|(days, _)| *days)
        else {
            continue;
        };
        let path = file.path.display().to_string();
        metrics.set_expiry_days(&path, file.role, days);
        if days < 0 {
            tracing::error!(path, role = file.role, %not_after, "certificate has EXPIRED; renew it now");
        } else if days <= WARN_DAYS {
            tracing::warn!(path, role = file.role, %not_after, days, "certificate expires within {WARN_DAYS} days; renew it");
        }
    }
}

/// Whole days from now until `cert` expires (negative once expired).
pub fn days_left(cert: &openssl::x509::X509Ref) -> Option<i64> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let diff = now.diff(cert.not_after()).ok()?;
    let days = i64::from(diff.days);
    // A partial day counts toward the sign: expired 3 hours ago is -1, not 0.
    Some(if diff.days == 0 && diff.secs < 0 {
        -1
    } else {
        days
    })
}

/// Checks now, then every [`INTERVAL`], until `shutdown`.
pub async fn monitor(
    files: Vec<Watched>,
    metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => check(&files, &metrics),
            _ = shutdown.cancelled() => return,
        }
    }
}
