//! The typed TLS error: OpenSSL's verify result and alerts turned into the guide's wording plus
//! the fix, and material problems naming the server's key and file.
//!
//! A handshake error is classified once, here, from what OpenSSL left behind: the verify result
//! and failing certificate recorded by our verify callback, then the alert or reason on the error
//! queue. Everything above (the downstream's connect error, `/metrics`, `nexus tls probe`) shows
//! this type's `Display` and counts its [`Error::reason`].

use std::path::PathBuf;

use openssl::error::ErrorStack;
use openssl::ssl::ErrorCode;
use openssl::x509::X509VerifyResult;

/// What went wrong with TLS, with what the user needs to fix it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The peer's certificate (or one in its chain) has expired.
    #[error(
        "certificate verify failed: certificate has expired (\"{subject}\", not after {not_after}); renew it, or check this machine's clock"
    )]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its `notAfter`.
        not_after: String,
    },
    /// The peer's certificate is not valid yet.
    #[error(
        "certificate verify failed: certificate is not yet valid (\"{subject}\", not before {not_before}); check this machine's clock"
    )]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its `notBefore`.
        not_before: String,
    },
    /// No trusted CA issued the chain.
    #[error(
        "certificate verify failed: unable to get local issuer certificate (issuer \"{issuer}\" {trusted}); {fix}",
        trusted = if *.pinned { "is not in root_ca_cert_path" } else { "is not in the system trust store" },
        fix = if *.pinned { "set root_ca_cert_path to the CA that issued the server's certificate, or have the server send its full chain" } else { "set root_ca_cert_path to the CA that issued the server's certificate" }
    )]
    UnknownIssuer {
        /// Issuer of the first certificate that could not be chained.
        issuer: String,
        /// Whether `root_ca_cert_path` was in use (else the system store).
        pinned: bool,
    },
    /// The certificate does not name the host.
    #[error(
        "hostname mismatch: the certificate is valid for {names} but not for \"{host}\"; fix the server's certificate (CN/SAN), set server_name to one of those names, or, for development only, set accept_invalid_hostnames = true",
        names = list(.names)
    )]
    HostnameMismatch {
        /// The name checked.
        host: String,
        /// DNS and IP SANs (or the CN when there are none).
        names: Vec<String>,
    },
    /// Any other verify result.
    #[error(
        "certificate verify failed: {reason} (\"{subject}\"); check the server's certificate chain and root_ca_cert_path"
    )]
    Verify {
        /// OpenSSL's verify result text.
        reason: String,
        /// Subject of the failing certificate.
        subject: String,
    },
    /// The server refused our (missing) client certificate during the handshake.
    #[error(
        "{alert}: the server wants a client certificate it trusts; {fix}",
        fix = client_cert_fix(*.sent)
    )]
    ClientCertRejected {
        /// The alert, e.g. `sslv3 alert bad certificate`.
        alert: String,
        /// Whether we sent a certificate.
        sent: bool,
    },
    /// TLS 1.3: the server's rejection arrived as a read error right after the handshake.
    #[error(
        "the server closed the connection right after the TLS 1.3 handshake ({alert}): under TLS 1.3 this is how a server rejects the client certificate; {fix}",
        fix = client_cert_fix(*.sent)
    )]
    RejectedAfterHandshake {
        /// The alert or read error.
        alert: String,
        /// Whether we sent a certificate.
        sent: bool,
    },
    /// No common protocol version or cipher.
    #[error(
        "{detail}: no TLS version or cipher in common with the server; check min_tls_version, cipher_list and ciphersuites (TLS 1.0/1.1 are never offered)"
    )]
    Protocol {
        /// OpenSSL's reason.
        detail: String,
    },
    /// Another handshake failure.
    #[error("TLS handshake failed: {detail}")]
    Handshake {
        /// OpenSSL's reason.
        detail: String,
    },
    /// A file named in the configuration could not be read.
    #[error("{key}: cannot read {}: {reason}", .path.display())]
    Unreadable {
        /// The config key, e.g. `client_key_path`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A file's content is not what the key needs.
    #[error("{key}: {} is not {expected}: {detail}", .path.display())]
    Malformed {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// E.g. "a PEM certificate".
        expected: &'static str,
        /// OpenSSL's reason.
        detail: String,
    },
    /// An encrypted key and a wrong or missing password.
    #[error("{key}: cannot decrypt {}: {detail}; check client_key_password / key_password (or its _file)", .path.display())]
    Password {
        /// The config key.
        key: &'static str,
        /// The key file.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
    /// The certificate and the key are not a pair.
    #[error("{cert_key} {} does not match {key_key} {}: the key is not the certificate's private key; configure the key that was used to request this certificate", .cert.display(), .key.display())]
    Mismatch {
        /// `client_cert_path` or `certificate`.
        cert_key: &'static str,
        /// The certificate file.
        cert: PathBuf,
        /// `client_key_path` or `key`.
        key_key: &'static str,
        /// The key file.
        key: PathBuf,
    },
    /// A `pkcs11:` key or certificate could not be loaded from its token.
    #[error("{key}: {source}")]
    Pkcs11 {
        /// The config key.
        key: &'static str,
        /// What the token layer said (module, token, PIN, object; the URI redacted).
        source: std::sync::Arc<crate::pkcs11::Pkcs11Error>,
    },
    /// OpenSSL refused a setting (e.g. a cipher string).
    #[error("{key}: OpenSSL rejected the setting: {detail}")]
    Setting {
        /// The config key.
        key: &'static str,
        /// OpenSSL's reason.
        detail: String,
    },
}

fn client_cert_fix(sent: bool) -> &'static str {
    if sent {
        "check that client_cert_path/client_key_path hold a certificate issued by a CA the server trusts"
    } else {
        "set client_cert_path and client_key_path"
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "no names".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
    quoted.join(", ")
}

impl Error {
    /// A short stable label for `/metrics` (`reason="expired"`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not_yet_valid",
            Error::UnknownIssuer { .. } => "unknown_issuer",
            Error::HostnameMismatch { .. } => "hostname_mismatch",
            Error::Verify { .. } => "verify_failed",
            Error::ClientCertRejected { .. } | Error::RejectedAfterHandshake { .. } => {
                "client_cert_rejected"
            }
            Error::Protocol { .. } => "protocol",
            Error::Handshake { .. } => "handshake",
            _ => "material",
        }
    }

    /// A `Setting` error from an OpenSSL call on `key`.
    pub(crate) fn setting(key: &'static str, stack: ErrorStack) -> Self {
        Error::Setting {
            key,
            detail: reasons(&stack),
        }
    }
}

/// The first certificate that failed verification, as our verify callback saw it.
#[derive(Debug, Clone)]
pub struct VerifyFailure {
    /// The verify result.
    pub result: X509VerifyResult,
    /// Subject of the certificate at fault.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Its `notBefore` / `notAfter`.
    pub not_before: String,
    /// See `not_before`.
    pub not_after: String,
    /// Its DNS/IP SANs, or its CN.
    pub names: Vec<String>,
}

/// What the connection knew when its handshake failed.
pub struct HandshakeFacts<'a> {
    /// The error tokio-openssl returned.
    pub error: &'a openssl::ssl::Error,
    /// The first failing certificate, if verification failed.
    pub failure: Option<VerifyFailure>,
    /// The name verified.
    pub host: &'a str,
    /// Whether `root_ca_cert_path` is in use.
    pub pinned: bool,
    /// Whether a client certificate is configured.
    pub sent_cert: bool,
}

/// Classifies a failed client handshake.
pub fn classify_handshake(facts: HandshakeFacts<'_>) -> Error {
    if let Some(failure) = facts.failure {
        return from_verify(failure, facts.host, facts.pinned);
    }
    let detail = describe(facts.error);
    if let Some(alert) = client_cert_alert(&detail) {
        return Error::ClientCertRejected {
            alert,
            sent: facts.sent_cert,
        };
    }
    if is_protocol(&detail) {
        return Error::Protocol { detail };
    }
    Error::Handshake { detail }
}

/// Classifies a read error on an established connection: under TLS 1.3 a server rejects the
/// client certificate after the client considers the handshake done.
pub fn classify_read(error: &openssl::ssl::Error, sent_cert: bool) -> Option<Error> {
    let detail = describe(error);
    client_cert_alert(&detail).map(|alert| Error::RejectedAfterHandshake {
        alert,
        sent: sent_cert,
    })
}

fn from_verify(failure: VerifyFailure, host: &str, pinned: bool) -> Error {
    use openssl_sys as ffi;
    match failure.result.as_raw() {
        ffi::X509_V_ERR_CERT_HAS_EXPIRED => Error::Expired {
            subject: failure.subject,
            not_after: failure.not_after,
        },
        ffi::X509_V_ERR_CERT_NOT_YET_VALID => Error::NotYetValid {
            subject: failure.subject,
            not_before: failure.not_before,
        },
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        | ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT => Error::UnknownIssuer {
            issuer: failure.issuer,
            pinned,
        },
        ffi::X509_V_ERR_HOSTNAME_MISMATCH | ffi::X509_V_ERR_IP_ADDRESS_MISMATCH => {
            Error::HostnameMismatch {
                host: host.to_owned(),
                names: failure.names,
            }
        }
        _ => Error::Verify {
            reason: failure.result.error_string().to_owned(),
            subject: failure.subject,
        },
    }
}

/// The alert text when the server refused our client certificate (or its absence).
fn client_cert_alert(detail: &str) -> Option<String> {
    const ALERTS: [&str; 5] = [
        "alert bad certificate",
        "alert certificate required",
        "alert unknown ca",
        "alert certificate unknown",
        "alert handshake failure",
    ];
    ALERTS
        .iter()
        .find_map(|alert| detail.find(alert).map(|at| alert_name(detail, at, alert)))
}

/// Widens a matched alert to OpenSSL's full wording (`sslv3 alert bad certificate`).
fn alert_name(detail: &str, at: usize, alert: &str) -> String {
    // The protocol word before "alert" (`sslv3`, `tlsv13`) is part of the name.
    let before = detail[..at].trim_end();
    let start = before.rfind([' ', ':', '(']).map_or(0, |i| i + 1);
    detail[start..at + alert.len()].to_owned()
}

fn is_protocol(detail: &str) -> bool {
    [
        "protocol version",
        "unsupported protocol",
        "no protocols available",
        "no shared cipher",
        "wrong version number",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}

/// OpenSSL's reasons from an SSL error, or the I/O error behind it.
fn describe(error: &openssl::ssl::Error) -> String {
    if let Some(stack) = error.ssl_error() {
        return reasons(stack);
    }
    if let Some(io) = error.io_error() {
        return io.to_string();
    }
    if error.code() == ErrorCode::ZERO_RETURN || error.code() == ErrorCode::SYSCALL {
        return "the server closed the connection during the handshake".to_owned();
    }
    error.to_string()
}

/// The reason strings of an error stack, joined (`sslv3 alert bad certificate`).
pub(crate) fn reasons(stack: &ErrorStack) -> String {
    let reasons: Vec<String> = stack
        .errors()
        .iter()
        .map(|error| {
            error
                .reason()
                .map_or_else(|| error.to_string(), str::to_owned)
        })
        .collect();
    if reasons.is_empty() {
        "unknown OpenSSL error".to_owned()
    } else {
        reasons.join(": ")
    }
}

/// Our error anywhere in a cause chain (hyper wraps connector and I/O errors; an `io::Error`
/// hides its inner error from `source()`, so look inside those too).
pub fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<Error>() {
            return Some(found);
        }
        if let Some(found) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            return Some(found);
        }
        cause = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_keep_openssl_wording() {
        assert_eq!(
            client_cert_alert("ssl3_read_bytes:sslv3 alert bad certificate").as_deref(),
            Some("sslv3 alert bad certificate")
        );
        assert_eq!(
            client_cert_alert("tlsv13 alert certificate required").as_deref(),
            Some("tlsv13 alert certificate required")
        );
        assert_eq!(client_cert_alert("wrong version number"), None);
    }

    #[test]
    fn hostname_mismatch_names_the_certificate_names() {
        let error = Error::HostnameMismatch {
            host: "127.0.0.1".into(),
            names: vec!["elsewhere.example".into()],
        };
        let text = error.to_string();
        assert!(text.starts_with("hostname mismatch: the certificate is valid for \"elsewhere.example\" but not for \"127.0.0.1\""), "{text}");
        assert!(text.contains("accept_invalid_hostnames"), "{text}");
        assert_eq!(error.reason(), "hostname_mismatch");
    }
}
