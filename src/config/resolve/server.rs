//! `[server]` (the gateway's own listener and HTTPS) and `[pkcs11]`.

use std::net::SocketAddr;

use serde_spanned::Spanned;
use toml::de::DeValue;

use super::Cx;
use super::tls::SecretKeys;
use crate::config::bounded::Kind;
use crate::config::model::{Health, Pkcs11Defaults, Server, ServerTls};
use crate::config::raw::{RawPkcs11, RawServer, RawServerTls};

/// `listen_address` when not set: loopback only, so a fresh install exposes nothing.
const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

impl Cx<'_> {
    pub(super) fn server(&mut self, value: Option<Spanned<DeValue<'_>>>) -> Server {
        let raw: RawServer = value
            .and_then(|v| self.section(v, "server"))
            .unwrap_or_default();
        let tls = raw.tls.and_then(|tls| self.server_tls(tls));
        let client_ca = tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        let client_identification =
            self.client_identification(raw.client_identification, client_ca);
        self.identification = client_identification.clone();
        let health = raw.health.unwrap_or_default();
        let metrics = raw.metrics.unwrap_or_default();
        let listen_address = self.listen_address(raw.listen_address);
        let any_host = !listen_address.ip().is_loopback()
            && raw.allowed_hosts.as_ref().is_none_or(Vec::is_empty);
        Server {
            listen_address,
            tls,
            health: Health {
                enabled: health.enabled.unwrap_or(true),
                path: self.url_path(health.path, "server.health.path", "/health"),
            },
            metrics: Health {
                enabled: metrics.enabled.unwrap_or(true),
                path: self.url_path(metrics.path, "server.metrics.path", "/metrics"),
            },
            allowed_hosts: raw.allowed_hosts.unwrap_or_default(),
            allowed_origins: raw.allowed_origins.unwrap_or_default(),
            limits: self.server_limits(raw.limits.unwrap_or_default()),
            rate_limits: raw.rate_limits.and_then(|raw| self.front_limits(raw)),
            client_ip: self.client_ip(raw.client_ip.unwrap_or_default()),
            cors: raw.cors.map(|cors| self.cors(cors)),
            csrf: self.csrf(raw.csrf),
            oauth: raw.oauth.and_then(|oauth| self.oauth(oauth, any_host)),
            client_identification,
        }
    }

    fn listen_address(&mut self, value: Option<Spanned<String>>) -> SocketAddr {
        let default = DEFAULT_LISTEN
            .parse()
            .expect("BUG: default listen address parses");
        let Some(value) = value else { return default };
        value.get_ref().parse().unwrap_or_else(|_| {
            let message = format!("invalid socket address `{}`", value.get_ref());
            let fix = "use an IP address and port such as \"127.0.0.1:8000\" or \"[::]:8000\"";
            self.problems
                .push(value.span(), "server.listen_address", message, fix);
            default
        })
    }

    /// `[server.tls]`: `None` (after recording why) unless both certificate and key are set.
    fn server_tls(&mut self, raw: Spanned<RawServerTls>) -> Option<ServerTls> {
        let span = raw.span();
        let raw = raw.into_inner();
        for (name, set) in [
            ("certificate", raw.certificate.is_some()),
            ("key", raw.key.is_some()),
        ] {
            if !set {
                let message =
                    format!("missing key `{name}`: HTTPS needs both `certificate` and `key`");
                self.problems.push(
                    span.clone(),
                    "server.tls",
                    message,
                    "add it, or remove [server.tls] to serve plain HTTP",
                );
            }
        }
        let client_ca = raw
            .client_ca_cert_path
            .map(|ca| self.file(&ca, "server.tls.client_ca_cert_path", Kind::Pem));
        let params = self.tls_params(
            "server.tls",
            raw.min_tls_version,
            raw.cipher_list,
            raw.ciphersuites,
        );
        let certificate = self.cert_source(&raw.certificate?, "server.tls.certificate");
        let password = SecretKeys {
            value: raw.key_password,
            file: raw.key_password_file,
            value_key: "server.tls.key_password",
            file_key: "server.tls.key_password_file",
        };
        let key = self.key_source(&raw.key?, "server.tls.key", password);
        Some(ServerTls {
            certificate,
            key,
            client_ca,
            params,
        })
    }

    pub(super) fn pkcs11(&mut self, value: Option<Spanned<DeValue<'_>>>) -> Pkcs11Defaults {
        let raw: RawPkcs11 = value
            .and_then(|v| self.section(v, "pkcs11"))
            .unwrap_or_default();
        let pin = SecretKeys {
            value: raw.pin,
            file: raw.pin_file,
            value_key: "pkcs11.pin",
            file_key: "pkcs11.pin_file",
        };
        Pkcs11Defaults {
            module_path: raw
                .module_path
                .map(|m| self.file(&m, "pkcs11.module_path", Kind::Module)),
            pin: self.secret(pin),
        }
    }
}
