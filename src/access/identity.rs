//! Who a request is from: `[server.client_identification]` applied to what the request
//! carries (verified token claims, the verified client certificate, trusted headers).
//!
//! Nexus's semantics: when identification is enabled, a request without a client id is
//! refused (400 `missing_client_id`), and a group that `validation.group_values` does not
//! list is refused (400 `invalid_group`). Beyond Nexus, a claim may be an array (each string
//! in it is a group; those outside `group_values` are dropped, since identity providers put
//! unrelated groups there), and certificate callers get groups from `certificate_groups`.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use openssl::nid::Nid;
use openssl::x509::X509Ref;
use serde_json::{Map, Value};

use super::{Caller, Principal};
use crate::config::{CertificateField, ClaimPath, ClientIdentification, IdentitySource};

/// What identity the verified client certificate of a connection offers, read once at the
/// handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject, `CN=...,O=...`.
    pub subject: Arc<str>,
    /// The subject's common name.
    pub common_name: Option<Arc<str>>,
    /// The first DNS subject alternative name.
    pub dns: Option<Arc<str>>,
    /// The first email subject alternative name.
    pub email: Option<Arc<str>>,
    /// The first URI subject alternative name.
    pub uri: Option<Arc<str>>,
}

impl ClientCertificate {
    /// The identity fields of a verified certificate.
    pub fn from_x509(cert: &X509Ref) -> Self {
        let common_name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|entry| entry.data().to_string().ok())
            .map(Arc::from);
        let mut certificate = Self {
            subject: crate::tls::subject_text(cert).into(),
            common_name,
            ..Self::default()
        };
        for name in cert.subject_alt_names().iter().flatten() {
            let (slot, value) = if let Some(dns) = name.dnsname() {
                (&mut certificate.dns, dns)
            } else if let Some(email) = name.email() {
                (&mut certificate.email, email)
            } else if let Some(uri) = name.uri() {
                (&mut certificate.uri, uri)
            } else {
                continue;
            };
            slot.get_or_insert_with(|| value.into());
        }
        certificate
    }

    /// The field that identifies the holder.
    pub fn field(&self, field: CertificateField) -> Option<&Arc<str>> {
        match field {
            CertificateField::CommonName => self.common_name.as_ref(),
            CertificateField::SanDns => self.dns.as_ref(),
            CertificateField::SanEmail => self.email.as_ref(),
            CertificateField::SanUri => self.uri.as_ref(),
        }
    }
}

/// What one request offers to identify its caller.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The client's address.
    pub address: IpAddr,
    /// The connection's verified client certificate.
    pub certificate: Option<&'a ClientCertificate>,
    /// The request's headers (read only for sources configured as `http_header`).
    pub headers: &'a HeaderMap,
    /// The claims of the request's verified access token.
    pub claims: Option<&'a Map<String, Value>>,
}

/// Why a request was refused before anything else (400, as Nexus answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Identification is enabled and the configured source gave no client id.
    #[error("missing_client_id: client identification is required ({place} is missing)")]
    MissingClientId {
        /// Where the id was looked for, e.g. `header X-Client-Id`.
        place: String,
    },
    /// A group outside `validation.group_values`.
    #[error("invalid_group: the group `{group}` is not valid")]
    InvalidGroup {
        /// The group the caller claimed.
        group: String,
    },
}

/// The caller a request acts for, under `config`.
pub fn identify(
    config: &ClientIdentification,
    credentials: Credentials<'_>,
) -> Result<Caller, IdentityError> {
    let mut caller = Caller::anonymous(credentials.address);
    caller.certificate = credentials.certificate.map(|cert| cert.subject.clone());
    caller.principal = principal(credentials);
    if !config.enabled {
        return Ok(caller);
    }
    let client_id =
        read_one(&config.client_id, credentials).ok_or_else(|| missing(&config.client_id))?;
    if let IdentitySource::HttpHeader(_) = config.client_id {
        caller.principal = Principal::Header(client_id.clone());
    }
    caller.groups = groups(config, credentials)?;
    caller.client_id = Some(client_id);
    Ok(caller)
}

/// A verified token first, then the certificate (by its whole subject, the most specific
/// name it has); a header identity replaces either, in [`identify`], when configured.
fn principal(credentials: Credentials<'_>) -> Principal {
    if let Some(claims) = credentials.claims {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        return Principal::Token {
            issuer: text("iss").into(),
            subject: text("sub").into(),
        };
    }
    match credentials.certificate {
        Some(cert) => Principal::Certificate(cert.subject.clone()),
        None => Principal::Anonymous,
    }
}

/// The caller's groups: from `group_id`, and for a certificate from `certificate_groups`.
fn groups(
    config: &ClientIdentification,
    credentials: Credentials<'_>,
) -> Result<Vec<Arc<str>>, IdentityError> {
    let mut groups = match &config.group_id {
        Some(IdentitySource::JwtClaim(path)) => match credentials.claims {
            Some(claims) => known_groups(config, claim_values(claims, path))?,
            None => Vec::new(),
        },
        Some(source) => {
            let group = read_one(source, credentials);
            known_groups(config, Values::One(group))?
        }
        None => Vec::new(),
    };
    let mapped = credentials
        .certificate
        .and_then(|cert| cert.field(certificate_field(config)))
        .and_then(|identity| config.certificate_groups.get(&**identity));
    for group in mapped.into_iter().flatten() {
        if !groups.iter().any(|known| **known == **group) {
            groups.push(group.as_str().into());
        }
    }
    Ok(groups)
}

/// The certificate field `certificate_groups` is keyed by: the one `client_id` names, else CN.
fn certificate_field(config: &ClientIdentification) -> CertificateField {
    match config.client_id {
        IdentitySource::Certificate(field) => field,
        _ => CertificateField::CommonName,
    }
}

/// Values read for groups: one (a string claim, a header) or several (an array claim).
enum Values {
    One(Option<Arc<str>>),
    Many(Vec<Arc<str>>),
}

impl Values {
    fn first(self) -> Option<Arc<str>> {
        match self {
            Values::One(one) => one,
            Values::Many(many) => many.into_iter().next(),
        }
    }
}

/// A single value outside `group_values` is refused, as Nexus does; from an array, the
/// values outside it are dropped.
fn known_groups(
    config: &ClientIdentification,
    values: Values,
) -> Result<Vec<Arc<str>>, IdentityError> {
    let known =
        |group: &Arc<str>| config.group_values.is_empty() || config.group_values.contains(&**group);
    match values {
        Values::One(Some(group)) if !known(&group) => Err(IdentityError::InvalidGroup {
            group: group.to_string(),
        }),
        Values::Many(groups) => Ok(groups.into_iter().filter(known).collect()),
        Values::One(one) => Ok(one.into_iter().collect()),
    }
}

/// One value from a source: a claim's string (an array's first string), a header, a
/// certificate field.
fn read_one(source: &IdentitySource, credentials: Credentials<'_>) -> Option<Arc<str>> {
    match source {
        IdentitySource::JwtClaim(path) => credentials
            .claims
            .and_then(|claims| claim_values(claims, path).first()),
        IdentitySource::HttpHeader(name) => credentials
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(Arc::from),
        IdentitySource::Certificate(field) => credentials
            .certificate
            .and_then(|cert| cert.field(*field))
            .cloned(),
    }
}

/// The values at a dotted claim path: a string, number or boolean is one; an array gives
/// each of its strings, numbers and booleans.
fn claim_values(claims: &Map<String, Value>, path: &ClaimPath) -> Values {
    let mut segments = path.0.iter();
    let first = segments.next().and_then(|name| claims.get(name));
    let value = segments.fold(first, |value, name| value.and_then(|v| v.get(name)));
    match value {
        Some(Value::Array(items)) => Values::Many(items.iter().filter_map(scalar).collect()),
        Some(value) => Values::One(scalar(value)),
        None => Values::One(None),
    }
}

fn scalar(value: &Value) -> Option<Arc<str>> {
    match value {
        Value::String(text) => Some(text.as_str().into()),
        Value::Number(number) => Some(number.to_string().into()),
        Value::Bool(flag) => Some(flag.to_string().into()),
        _ => None,
    }
}

fn missing(source: &IdentitySource) -> IdentityError {
    let source = match source {
        IdentitySource::JwtClaim(path) => format!("access token claim {}", path.0.join(".")),
        IdentitySource::HttpHeader(name) => format!("header {name}"),
        IdentitySource::Certificate(field) => format!("client certificate field {}", field.name()),
    };
    IdentityError::MissingClientId { place: source }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn claim(path: &str) -> IdentitySource {
        IdentitySource::JwtClaim(ClaimPath(path.split('.').map(str::to_owned).collect()))
    }

    fn header(name: &'static str) -> IdentitySource {
        IdentitySource::HttpHeader(http::HeaderName::from_static(name))
    }

    fn enabled(
        client_id: IdentitySource,
        group_id: Option<IdentitySource>,
    ) -> ClientIdentification {
        ClientIdentification {
            enabled: true,
            client_id,
            group_id,
            ..ClientIdentification::default()
        }
    }

    fn with(
        config: &ClientIdentification,
        certificate: Option<&ClientCertificate>,
        headers: &HeaderMap,
        claims: Option<&Value>,
    ) -> Result<Caller, IdentityError> {
        let credentials = Credentials {
            address: Ipv4Addr::LOCALHOST.into(),
            certificate,
            headers,
            claims: claims.and_then(Value::as_object),
        };
        identify(config, credentials)
    }

    fn from_claims(config: &ClientIdentification, claims: Value) -> Result<Caller, IdentityError> {
        with(config, None, &HeaderMap::new(), Some(&claims))
    }

    fn names(groups: &[Arc<str>]) -> Vec<&str> {
        groups.iter().map(|group| &**group).collect()
    }

    #[test]
    fn sub_and_an_array_claim_give_the_client_id_and_several_groups() {
        let config = enabled(claim("sub"), Some(claim("groups")));
        let caller = from_claims(
            &config,
            json!({"iss": "https://idp", "sub": "alice", "groups": ["admins", "users", 7, {"x": 1}]}),
        )
        .unwrap();
        assert_eq!(caller.client_id.as_deref(), Some("alice"));
        assert_eq!(names(&caller.groups), ["admins", "users", "7"]);
        assert_eq!(
            caller.principal,
            Principal::Token {
                issuer: "https://idp".into(),
                subject: "alice".into()
            }
        );
    }

    #[test]
    fn dotted_paths_reach_nested_claims_and_a_string_is_one_group() {
        let config = enabled(claim("azp"), Some(claim("realm_access.roles")));
        let caller = from_claims(
            &config,
            json!({"azp": "cli", "realm_access": {"roles": ["ops", "offline_access"]}}),
        )
        .unwrap();
        assert_eq!(names(&caller.groups), ["ops", "offline_access"]);
        let config = enabled(claim("sub"), Some(claim("org.plan")));
        let caller = from_claims(&config, json!({"sub": "a", "org": {"plan": "pro"}})).unwrap();
        assert_eq!(names(&caller.groups), ["pro"]);
        let caller = from_claims(&config, json!({"sub": "a", "org": "flat"})).unwrap();
        assert!(
            caller.groups.is_empty(),
            "a path through a string finds nothing"
        );
    }

    #[test]
    fn a_single_group_outside_group_values_is_refused_and_an_array_is_filtered() {
        let mut config = enabled(claim("sub"), Some(claim("plan")));
        config.group_values = ["free".to_owned(), "pro".to_owned()].into();
        assert_eq!(
            from_claims(&config, json!({"sub": "a", "plan": "gold"})).unwrap_err(),
            IdentityError::InvalidGroup {
                group: "gold".into()
            }
        );
        let caller = from_claims(&config, json!({"sub": "a", "plan": ["gold", "pro"]})).unwrap();
        assert_eq!(names(&caller.groups), ["pro"]);
        let caller = from_claims(&config, json!({"sub": "a"})).unwrap();
        assert!(caller.groups.is_empty(), "no group is not an invalid group");
    }

    #[test]
    fn without_a_client_id_the_request_is_refused_and_disabled_reads_nothing() {
        let config = enabled(claim("sub"), None);
        assert_eq!(
            from_claims(&config, json!({"iss": "x"}))
                .unwrap_err()
                .to_string(),
            "missing_client_id: client identification is required (access token claim sub is missing)"
        );
        let off = ClientIdentification::default();
        let caller = from_claims(&off, json!({"sub": "a", "groups": ["x"]})).unwrap();
        assert_eq!(caller.client_id, None);
        assert!(caller.groups.is_empty());
    }

    #[test]
    fn headers_count_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.insert("x-client-id", "proxy-user".parse().unwrap());
        headers.insert("x-group-id", "ops".parse().unwrap());
        let config = enabled(header("x-client-id"), Some(header("x-group-id")));
        let caller = with(&config, None, &headers, None).unwrap();
        assert_eq!(caller.principal, Principal::Header("proxy-user".into()));
        assert_eq!(names(&caller.groups), ["ops"]);
        let ignored = with(&ClientIdentification::default(), None, &headers, None).unwrap();
        assert_eq!(ignored.principal, Principal::Anonymous);
        assert!(ignored.groups.is_empty());
        assert_eq!(
            with(&config, None, &HeaderMap::new(), None).unwrap_err(),
            IdentityError::MissingClientId {
                place: "header x-client-id".into()
            }
        );
    }

    fn certificate() -> ClientCertificate {
        ClientCertificate {
            subject: "CN=alice,O=Example".into(),
            common_name: Some("alice".into()),
            email: Some("alice@example.com".into()),
            ..ClientCertificate::default()
        }
    }

    #[test]
    fn a_certificate_gives_its_configured_field_and_mapped_groups() {
        let cert = certificate();
        let mut config = enabled(
            IdentitySource::Certificate(CertificateField::SanEmail),
            None,
        );
        config.certificate_groups =
            [("alice@example.com".to_owned(), vec!["admins".to_owned()])].into();
        let caller = with(&config, Some(&cert), &HeaderMap::new(), None).unwrap();
        assert_eq!(caller.client_id.as_deref(), Some("alice@example.com"));
        assert_eq!(names(&caller.groups), ["admins"]);
        assert_eq!(
            caller.principal,
            Principal::Certificate(cert.subject.clone())
        );
        assert_eq!(caller.certificate, Some(cert.subject.clone()));
        config.client_id = IdentitySource::Certificate(CertificateField::SanUri);
        assert!(matches!(
            with(&config, Some(&cert), &HeaderMap::new(), None),
            Err(IdentityError::MissingClientId { .. })
        ));
    }

    #[test]
    fn certificate_groups_are_keyed_by_cn_when_the_client_id_is_elsewhere() {
        let cert = certificate();
        let mut headers = HeaderMap::new();
        headers.insert("x-client-id", "bob".parse().unwrap());
        let mut config = enabled(header("x-client-id"), None);
        config.certificate_groups = [("alice".to_owned(), vec!["ops".to_owned()])].into();
        let caller = with(&config, Some(&cert), &headers, None).unwrap();
        assert_eq!(caller.principal, Principal::Header("bob".into()));
        assert_eq!(names(&caller.groups), ["ops"]);
    }

    #[test]
    fn a_certificate_offers_its_cn_and_first_sans() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::x509::extension::SubjectAlternativeName;
        use openssl::x509::{X509, X509NameBuilder};

        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("O", "Example").unwrap();
        name.append_entry_by_text("CN", "alice").unwrap();
        let name = name.build();
        let mut builder = X509::builder().unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        let sans = SubjectAlternativeName::new()
            .dns("alice.example.com")
            .dns("second.example.com")
            .email("alice@example.com")
            .uri("spiffe://example.com/alice")
            .build(&builder.x509v3_context(None, None))
            .unwrap();
        builder.append_extension(sans).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        let certificate = ClientCertificate::from_x509(&builder.build());
        assert_eq!(&*certificate.subject, "O=Example,CN=alice");
        let field = |field| certificate.field(field).map(|value| value.to_string());
        assert_eq!(
            field(CertificateField::CommonName).as_deref(),
            Some("alice")
        );
        assert_eq!(
            field(CertificateField::SanDns).as_deref(),
            Some("alice.example.com")
        );
        assert_eq!(
            field(CertificateField::SanEmail).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            field(CertificateField::SanUri).as_deref(),
            Some("spiffe://example.com/alice")
        );
    }
}
