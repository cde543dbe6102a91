//! TLS settings shared by both directions, and the downstream `[tls]` table.

use std::ops::Range;

use secrecy::SecretString;
use serde_spanned::Spanned;

use super::Cx;
use crate::config::Pkcs11Ref;
use crate::config::bounded::Kind;
use crate::config::model::{
    CertSource, ClientIdentity, ClientTls, KeySource, SecretSource, TlsParams, TlsVersion, Trust,
    Verify,
};
use crate::config::raw::RawClientTls;
use crate::config::template::join;

/// Prefix of an RFC 7512 URI: such values name token objects, not files.
const PKCS11_SCHEME: &str = "pkcs11:";

/// A passphrase or PIN given inline or as a file, with the two keys' names.
pub(super) struct SecretKeys<'k> {
    pub value: Option<Spanned<SecretString>>,
    pub file: Option<Spanned<String>>,
    /// Key path of the inline form, e.g. `pkcs11.pin`.
    pub value_key: &'k str,
    /// Key path of the file form, e.g. `pkcs11.pin_file`.
    pub file_key: &'k str,
}

impl<'k> SecretKeys<'k> {
    /// Span and key path of each form that is set.
    fn present(&self) -> Vec<(Range<usize>, &'k str)> {
        let value = self.value.as_ref().map(|v| (v.span(), self.value_key));
        let file = self.file.as_ref().map(|f| (f.span(), self.file_key));
        value.into_iter().chain(file).collect()
    }
}

impl Cx<'_> {
    /// `min_tls_version`, `cipher_list`, `ciphersuites` under `table`.
    pub(super) fn tls_params(
        &mut self,
        table: &str,
        min: Option<Spanned<String>>,
        cipher_list: Option<String>,
        ciphersuites: Option<String>,
    ) -> TlsParams {
        TlsParams {
            min_version: self.tls_version(min, &join(table, "min_tls_version")),
            cipher_list,
            ciphersuites,
        }
    }

    fn tls_version(&mut self, value: Option<Spanned<String>>, key: &str) -> TlsVersion {
        let Some(value) = value else {
            return TlsVersion::default();
        };
        let message = match value.get_ref().as_str() {
            "1.2" => return TlsVersion::Tls12,
            "1.3" => return TlsVersion::Tls13,
            old @ ("1.0" | "1.1") => {
                format!("TLS {old} is never offered: TLS 1.0 and 1.1 are insecure")
            }
            other => format!("unknown TLS version `{other}` (expected \"1.2\" or \"1.3\")"),
        };
        self.problems
            .push(value.span(), key, message, "use \"1.2\" or \"1.3\"");
        TlsVersion::default()
    }

    /// A certificate: a `pkcs11:` URI kept verbatim, else a PEM file that must be readable.
    pub(super) fn cert_source(&mut self, value: &Spanned<String>, key: &str) -> CertSource {
        if value.get_ref().starts_with(PKCS11_SCHEME) {
            CertSource::Pkcs11(self.pkcs11_ref(value))
        } else {
            CertSource::Pem(self.file(value, key, Kind::Pem))
        }
    }

    /// A private key and its passphrase. A `pkcs11:` key takes its PIN from the URI or
    /// `[pkcs11]`, so a passphrase beside it is a mistake, not something to ignore.
    pub(super) fn key_source(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        password: SecretKeys<'_>,
    ) -> KeySource {
        if !value.get_ref().starts_with(PKCS11_SCHEME) {
            let path = self.file(value, key, Kind::Pem);
            return KeySource::Pem {
                path,
                password: self.secret(password),
            };
        }
        for (span, stray_key) in password.present() {
            let message =
                "a passphrase applies only to a PEM key file, not to a pkcs11: key".to_string();
            let fix = "remove it; the token PIN comes from the URI's pin-source or from [pkcs11]";
            self.problems.push(span, stray_key, message, fix);
        }
        KeySource::Pkcs11(self.pkcs11_ref(value))
    }

    fn pkcs11_ref(&self, value: &Spanned<String>) -> Pkcs11Ref {
        Pkcs11Ref {
            uri: value.get_ref().clone(),
            defaults: self.pkcs11.clone().into(),
        }
    }

    /// A secret given inline or as a file, never both.
    pub(super) fn secret(&mut self, keys: SecretKeys<'_>) -> Option<SecretSource> {
        match (keys.value, keys.file) {
            (Some(_), Some(file)) => {
                let message = format!(
                    "set either `{}` or `{}`, not both",
                    last(keys.value_key),
                    last(keys.file_key)
                );
                self.problems
                    .push(file.span(), keys.file_key, message, "remove one of them");
                None
            }
            (Some(value), None) => Some(SecretSource::Value(value.into_inner())),
            (None, Some(file)) => Some(SecretSource::File(self.secret_file(&file, keys.file_key))),
            (None, None) => None,
        }
    }

    /// A downstream's `[tls]` (`table` is its key path); `https` says whether the URL uses TLS.
    pub(super) fn client_tls(
        &mut self,
        raw: Option<Spanned<RawClientTls>>,
        table: &str,
        https: bool,
    ) -> ClientTls {
        let Some(raw) = raw else {
            return ClientTls {
                verify: Verify::Full(Trust::System),
                identity: ClientIdentity::None,
                params: TlsParams::default(),
                server_name: None,
            };
        };
        if !https {
            let message = "TLS settings need an https URL, but `url` is http://".to_string();
            self.problems.push(
                raw.span(),
                table,
                message,
                "use an https:// URL or remove the [tls] table",
            );
        }
        let raw = raw.into_inner();
        let trust = match &raw.root_ca_cert_path {
            Some(path) => {
                Trust::Pinned(self.file(path, &join(table, "root_ca_cert_path"), Kind::Pem))
            }
            None => Trust::System,
        };
        let verify = match (
            raw.verify_certs.unwrap_or(true),
            raw.accept_invalid_hostnames.unwrap_or(false),
        ) {
            (false, _) => Verify::Dangerous,
            (true, true) => Verify::SkipHostname(trust),
            (true, false) => Verify::Full(trust),
        };
        let params = self.tls_params(
            table,
            raw.min_tls_version,
            raw.cipher_list,
            raw.ciphersuites,
        );
        let password = SecretKeys {
            value: raw.client_key_password,
            file: raw.client_key_password_file,
            value_key: &join(table, "client_key_password"),
            file_key: &join(table, "client_key_password_file"),
        };
        let identity = self.identity(table, raw.client_cert_path, raw.client_key_path, password);
        ClientTls {
            verify,
            identity,
            params,
            server_name: raw.server_name,
        }
    }

    /// The client certificate: both halves or neither, never half a pair read as "no mTLS".
    fn identity(
        &mut self,
        table: &str,
        cert: Option<Spanned<String>>,
        key: Option<Spanned<String>>,
        password: SecretKeys<'_>,
    ) -> ClientIdentity {
        let (cert_key, key_key) = (
            join(table, "client_cert_path"),
            join(table, "client_key_path"),
        );
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let cert = self.cert_source(&cert, &cert_key);
                ClientIdentity::Certificate {
                    cert,
                    key: self.key_source(&key, &key_key, password),
                }
            }
            (None, None) => {
                self.stray_passwords(password);
                ClientIdentity::None
            }
            (Some(cert), None) => self.half_pair(cert.span(), &cert_key, &key_key),
            (None, Some(key)) => self.half_pair(key.span(), &key_key, &cert_key),
        }
    }

    fn half_pair(&mut self, span: Range<usize>, present: &str, missing: &str) -> ClientIdentity {
        let message = format!("`{}` is set without `{}`", last(present), last(missing));
        self.problems.push(
            span,
            present,
            message,
            "set both for mutual TLS, or neither",
        );
        ClientIdentity::None
    }

    /// A passphrase with no key to decrypt is a half-finished mTLS setup: say so.
    fn stray_passwords(&mut self, password: SecretKeys<'_>) {
        for (span, key) in password.present() {
            let message = format!("`{}` is set without `client_key_path`", last(key));
            self.problems.push(
                span,
                key,
                message,
                "set `client_cert_path` and `client_key_path`, or remove it",
            );
        }
    }
}

/// The last component of a dotted key path.
fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
