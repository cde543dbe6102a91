//! RFC 7512 `pkcs11:` URIs: the subset nexus needs to name a token object.
//!
//! Path attributes: `token`, `serial`, `slot-id`, `object`, `id` (percent-encoded bytes), `type`.
//! Query attributes: `module-path`, `pin-source` (`file:PATH` or a bare path) and `pin-value`.
//! A `pin-value` is never echoed: not in errors, not in [`Display`](std::fmt::Display), not in
//! `Debug`.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

/// The object class a URI asks for (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=private`.
    Private,
    /// `type=public`.
    Public,
    /// `type=cert`.
    Cert,
}

impl ObjectType {
    fn as_str(self) -> &'static str {
        match self {
            ObjectType::Private => "private",
            ObjectType::Public => "public",
            ObjectType::Cert => "cert",
        }
    }
}

/// A parsed `pkcs11:` URI.
#[derive(Clone, Default)]
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `slot-id=`: the PKCS#11 slot id.
    pub slot_id: Option<u64>,
    /// `object=`: the object label (`CKA_LABEL`).
    pub object: Option<String>,
    /// `id=`: the object id (`CKA_ID`), decoded bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`.
    pub object_type: Option<ObjectType>,
    /// `?module-path=`: the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
    /// `?pin-source=`: a file holding the PIN.
    pub pin_source: Option<PathBuf>,
    /// `?pin-value=`: the PIN itself (accepted with a warning; never displayed).
    pub pin_value: Option<SecretString>,
}

/// Why a `pkcs11:` URI was rejected. The message never contains a `pin-value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pkcs11: URI: {reason}")]
pub struct UriError {
    /// What is wrong, naming the attribute.
    pub reason: String,
}

fn error(reason: impl Into<String>) -> UriError {
    UriError {
        reason: reason.into(),
    }
}

impl Pkcs11Uri {
    /// Parses an RFC 7512 URI such as `pkcs11:token=nexus;object=client-key;type=private`.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| error("it must start with `pkcs11:`"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri::default();
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            uri.set_path_attribute(name, value)?;
        }
        for attribute in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            uri.set_query_attribute(name, value)?;
        }
        Ok(uri)
    }

    fn set_path_attribute(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        match name {
            "token" => set_once(&mut self.token, name, decode_text(name, value)?),
            "serial" => set_once(&mut self.serial, name, decode_text(name, value)?),
            "object" => set_once(&mut self.object, name, decode_text(name, value)?),
            "id" => set_once(&mut self.id, name, decode(name, value)?),
            "slot-id" => {
                let id = decode_text(name, value)?
                    .parse()
                    .map_err(|_| error(format!("`slot-id={value}` is not a number")))?;
                set_once(&mut self.slot_id, name, id)
            }
            "type" => {
                let kind = match decode_text(name, value)?.as_str() {
                    "private" => ObjectType::Private,
                    "public" => ObjectType::Public,
                    "cert" => ObjectType::Cert,
                    other => {
                        return Err(error(format!(
                            "`type={other}` is not supported (use private, public or cert)"
                        )));
                    }
                };
                set_once(&mut self.object_type, name, kind)
            }
            _ if name.starts_with("x-") => Ok(()),
            other => Err(error(format!(
                "path attribute `{other}` is not supported (use token, serial, slot-id, object, id, type)"
            ))),
        }
    }

    fn set_query_attribute(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        match name {
            "module-path" => set_once(
                &mut self.module_path,
                name,
                PathBuf::from(decode_text(name, value)?),
            ),
            "pin-source" => {
                let source = decode_text(name, value)?;
                // `file://PATH` carries an empty authority; a bare path is taken as written.
                let path = match source.strip_prefix("file:") {
                    Some(url) => url.strip_prefix("//").unwrap_or(url),
                    None => &source,
                };
                if path.is_empty() {
                    return Err(error("`pin-source` names no file"));
                }
                set_once(&mut self.pin_source, name, PathBuf::from(path))
            }
            "pin-value" => {
                // Decoded without echoing the value in any error.
                let pin = String::from_utf8(decode("pin-value", value)?)
                    .map_err(|_| error("`pin-value` is not UTF-8"))?;
                set_once(&mut self.pin_value, name, SecretString::from(pin))
            }
            _ if name.starts_with("x-") => Ok(()),
            other => Err(error(format!(
                "query attribute `{other}` is not supported (use module-path, pin-source, pin-value)"
            ))),
        }
    }
}

fn split_attribute(attribute: &str) -> Result<(&str, &str), UriError> {
    attribute.split_once('=').ok_or_else(|| {
        let name: String = attribute.chars().take(32).collect();
        error(format!("attribute `{name}` has no `=value`"))
    })
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(error(format!("attribute `{name}` is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// Percent-decodes `value`. Errors name the attribute only, never the value (it may be a PIN).
fn decode(name: &str, value: &str) -> Result<Vec<u8>, UriError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| error(format!("attribute `{name}` has a bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_text(name: &str, value: &str) -> Result<String, UriError> {
    String::from_utf8(decode(name, value)?)
        .map_err(|_| error(format!("attribute `{name}` is not UTF-8")))
}

/// Percent-encodes everything outside RFC 7512's unreserved set (plus `/` for paths).
fn encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Formats an id as `%01%02`, the way `id=` is written.
pub fn encode_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("%{b:02X}")).collect()
}

impl fmt::Display for Pkcs11Uri {
    /// The URI in canonical form with `pin-value` replaced by `REDACTED`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        if let Some(token) = &self.token {
            path.push(format!("token={}", encode(token.as_bytes(), false)));
        }
        if let Some(serial) = &self.serial {
            path.push(format!("serial={}", encode(serial.as_bytes(), false)));
        }
        if let Some(slot) = self.slot_id {
            path.push(format!("slot-id={slot}"));
        }
        if let Some(object) = &self.object {
            path.push(format!("object={}", encode(object.as_bytes(), false)));
        }
        if let Some(id) = &self.id {
            path.push(format!("id={}", encode_id(id)));
        }
        if let Some(kind) = self.object_type {
            path.push(format!("type={}", kind.as_str()));
        }
        let mut query = Vec::new();
        if let Some(module) = &self.module_path {
            let module = module.to_string_lossy();
            query.push(format!("module-path={}", encode(module.as_bytes(), true)));
        }
        if let Some(source) = &self.pin_source {
            let source = source.to_string_lossy();
            // An absolute path gets the empty authority, so a path starting `//` keeps its slashes.
            let authority = if source.starts_with('/') { "//" } else { "" };
            query.push(format!(
                "pin-source=file:{authority}{}",
                encode(source.as_bytes(), true)
            ));
        }
        if self.pin_value.is_some() {
            query.push("pin-value=REDACTED".to_owned());
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_path_and_query_attributes() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=nexus;object=client%20key;id=%01%a0;serial=42;slot-id=7;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("nexus"));
        assert_eq!(uri.object.as_deref(), Some("client key"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa0][..]));
        assert_eq!(uri.serial.as_deref(), Some("42"));
        assert_eq!(uri.slot_id, Some(7));
        assert_eq!(uri.object_type, Some(ObjectType::Private));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(
            uri.pin_source.as_deref(),
            Some(std::path::Path::new("/run/pin"))
        );
    }

    #[test]
    fn display_is_canonical_and_redacts_the_pin() {
        let uri =
            Pkcs11Uri::parse("pkcs11:object=k;token=a%3Bb;id=%01?pin-value=s3cr%65t").unwrap();
        assert_eq!(uri.pin_value.as_ref().unwrap().expose_secret(), "s3cret");
        let shown = uri.to_string();
        assert_eq!(
            shown,
            "pkcs11:token=a%3Bb;object=k;id=%01?pin-value=REDACTED"
        );
        assert!(!format!("{uri:?}").contains("s3cr"));
    }

    #[test]
    fn pin_source_paths_survive_the_canonical_form() {
        // (as written, the file it names, its canonical form)
        let cases = [
            ("file:/run/pin", "/run/pin", "file:///run/pin"),
            ("file:///run/pin", "/run/pin", "file:///run/pin"),
            ("/run/pin", "/run/pin", "file:///run/pin"),
            ("////run/pin", "////run/pin", "file://////run/pin"),
            ("file:pin.txt", "pin.txt", "file:pin.txt"),
        ];
        for (written, path, canonical) in cases {
            let uri = Pkcs11Uri::parse(&format!("pkcs11:?pin-source={written}")).unwrap();
            assert_eq!(uri.pin_source.as_deref(), Some(std::path::Path::new(path)));
            let shown = uri.to_string();
            assert_eq!(
                shown,
                format!("pkcs11:?pin-source={canonical}"),
                "{written}"
            );
            let again = Pkcs11Uri::parse(&shown).unwrap();
            assert_eq!(again.pin_source, uri.pin_source, "{written}");
        }
    }

    #[test]
    fn errors_name_the_attribute_and_never_the_pin() {
        let cases = [
            ("token=nexus", "must start with `pkcs11:`"),
            ("pkcs11:token=a;token=b", "`token` is given twice"),
            ("pkcs11:color=red", "`color` is not supported"),
            (
                "pkcs11:type=secret-key",
                "`type=secret-key` is not supported",
            ),
            ("pkcs11:slot-id=x", "not a number"),
            ("pkcs11:id=%zz", "`id` has a bad %-escape"),
            ("pkcs11:object", "has no `=value`"),
        ];
        for (text, expected) in cases {
            let message = Pkcs11Uri::parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
        let message = Pkcs11Uri::parse("pkcs11:?pin-value=hunter%2")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter"), "{message}");
    }

    #[test]
    fn vendor_attributes_are_ignored() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;x-vendor=1?x-other=2").unwrap();
        assert_eq!(uri.token.as_deref(), Some("t"));
    }
}
