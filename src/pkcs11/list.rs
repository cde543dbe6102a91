//! `nexus pkcs11 list`: slots, tokens and objects, with the URI to write for each object.
//!
//! Shows labels, ids, key types and sizes and the sensitive/extractable flags; never a PIN or
//! key material. Without a PIN only public objects are visible (private keys usually need a
//! login), which the output says.

use std::io::{self, Write};
use std::path::Path;

use cryptoki::context::Pkcs11;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use openssl::x509::{X509, X509Ref};

use super::error::Pkcs11Error;
use super::uri::{Pkcs11Uri, encode_id};

/// Where distributions install common PKCS#11 modules (used to suggest `--module`).
const COMMON_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
    "/opt/nfast/toolkits/pkcs11/libcknfast.so",
    "/usr/safenet/lunaclient/lib/libCryptoki2_64.so",
];

/// The message for a missing module: names the modules found on this system.
pub fn no_module_message() -> String {
    let found: Vec<&str> = COMMON_MODULES
        .iter()
        .copied()
        .filter(|path| Path::new(path).exists())
        .collect();
    let mut message =
        "no PKCS#11 module: pass --module PATH or set [pkcs11] module_path".to_owned();
    if found.is_empty() {
        message.push_str(" (no common module found on this system)");
    } else {
        message.push_str(&format!("; modules found here: {}", found.join(", ")));
    }
    message
}

/// Reads a PIN from `[pkcs11]`-style configuration (a file, or a value).
pub fn read_pin(source: &crate::config::SecretSource) -> Result<AuthPin, Pkcs11Error> {
    match source {
        crate::config::SecretSource::Value(pin) => Ok(pin.clone()),
        crate::config::SecretSource::File(path) => {
            super::read_pin_file(&super::credential_path(path))
        }
    }
}

/// Lists every slot of `module` on `out`, logging in to each token with `pin` when given.
pub fn list(module: &Path, pin: Option<&AuthPin>, out: &mut dyn Write) -> Result<(), Pkcs11Error> {
    let context = super::token::module(module)?;
    let write_error = Pkcs11Error::Output;
    let info = context
        .get_library_info()
        .map_err(|e| Pkcs11Error::call("(module)", e))?;
    writeln!(
        out,
        "module {} ({} {})",
        module.display(),
        info.manufacturer_id().trim_end(),
        info.library_description().trim_end()
    )
    .map_err(write_error)?;
    let slots = context
        .get_all_slots()
        .map_err(|e| Pkcs11Error::call("(module)", e))?;
    if slots.is_empty() {
        writeln!(out, "no slots").map_err(write_error)?;
    }
    for slot in slots {
        list_slot(&context, slot, pin, out).map_err(write_error)?;
    }
    Ok(())
}

fn list_slot(
    context: &Pkcs11,
    slot: Slot,
    pin: Option<&AuthPin>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let description = context
        .get_slot_info(slot)
        .map(|info| info.slot_description().trim_end().to_owned())
        .unwrap_or_default();
    writeln!(out, "\nslot-id={} \"{description}\"", slot.id())?;
    let Ok(token) = context.get_token_info(slot) else {
        return writeln!(out, "  no token");
    };
    let label = token.label().trim_end().to_owned();
    let mut flags = vec![];
    for (set, name) in [
        (token.token_initialized(), "initialized"),
        (token.login_required(), "login-required"),
        (token.user_pin_initialized(), "user-pin-initialized"),
        (token.write_protected(), "write-protected"),
        (token.user_pin_count_low(), "CKF_USER_PIN_COUNT_LOW"),
        (token.user_pin_final_try(), "CKF_USER_PIN_FINAL_TRY"),
        (token.user_pin_locked(), "CKF_USER_PIN_LOCKED"),
    ] {
        if set {
            flags.push(name);
        }
    }
    writeln!(
        out,
        "  token \"{label}\" serial={} manufacturer=\"{}\" model=\"{}\"\n  flags: {}",
        token.serial_number().trim_end(),
        token.manufacturer_id().trim_end(),
        token.model().trim_end(),
        flags.join(", ")
    )?;
    let session = match context.open_ro_session(slot) {
        Ok(session) => session,
        Err(error) => {
            return writeln!(
                out,
                "  cannot open a session: {}",
                Pkcs11Error::call(&label, error)
            );
        }
    };
    let logged_in = match pin {
        Some(pin) if token.login_required() => match session.login(UserType::User, Some(pin)) {
            Ok(()) => true,
            Err(error) => {
                writeln!(
                    out,
                    "  login failed ({}); showing public objects only",
                    Pkcs11Error::call(&label, error)
                )?;
                false
            }
        },
        _ => !token.login_required(),
    };
    if !logged_in {
        writeln!(
            out,
            "  public objects only: give a PIN ([pkcs11] pin_file, or --pin-file) to see private keys"
        )?;
    }
    let objects = session.find_objects(&[]).unwrap_or_default();
    if objects.is_empty() {
        writeln!(out, "  no objects")?;
    }
    for object in objects {
        list_object(&session, object, &label, out)?;
    }
    Ok(())
}

fn list_object(
    session: &Session,
    object: ObjectHandle,
    token: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    let wanted = [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::KeyType,
        AttributeType::ModulusBits,
        AttributeType::Modulus,
        AttributeType::EcParams,
        AttributeType::Sensitive,
        AttributeType::Extractable,
    ];
    let attributes = session.get_attributes(object, &wanted).unwrap_or_default();
    let mut uri = Pkcs11Uri {
        token: Some(token.to_owned()),
        ..Pkcs11Uri::default()
    };
    let (mut class, mut details) = (String::from("object"), Vec::new());
    for attribute in &attributes {
        match attribute {
            Attribute::Class(c) if *c == ObjectClass::PRIVATE_KEY => {
                class = "private key".into();
                uri.object_type = Some(super::ObjectType::Private);
            }
            Attribute::Class(c) if *c == ObjectClass::PUBLIC_KEY => {
                class = "public key".into();
                uri.object_type = Some(super::ObjectType::Public);
            }
            Attribute::Class(c) if *c == ObjectClass::CERTIFICATE => {
                class = "certificate".into();
                uri.object_type = Some(super::ObjectType::Cert);
            }
            Attribute::Class(c) => class = c.to_string(),
            Attribute::Label(label) => {
                uri.object = Some(String::from_utf8_lossy(label).into_owned())
            }
            Attribute::Id(id) if !id.is_empty() => uri.id = Some(id.clone()),
            Attribute::KeyType(t) if *t == KeyType::RSA => details.insert(0, "RSA".to_owned()),
            Attribute::KeyType(t) if *t == KeyType::EC => details.insert(0, "EC".to_owned()),
            Attribute::KeyType(t) => details.insert(0, t.to_string()),
            Attribute::ModulusBits(bits) => details.push(format!("{bits} bits")),
            Attribute::Modulus(n)
                if !attributes
                    .iter()
                    .any(|a| matches!(a, Attribute::ModulusBits(_))) =>
            {
                details.push(format!("{} bits", n.len() * 8));
            }
            Attribute::EcParams(p) => details.push(curve_name(p).to_owned()),
            Attribute::Sensitive(s) => {
                details.push(if *s { "sensitive" } else { "not sensitive" }.to_owned())
            }
            Attribute::Extractable(e) => {
                details.push(if *e { "extractable" } else { "non-extractable" }.to_owned())
            }
            _ => {}
        }
    }
    if uri.object_type == Some(super::ObjectType::Cert)
        && let Some(subject) = certificate_subject(session, object)
    {
        details.push(format!("subject {subject}"));
    }
    writeln!(
        out,
        "  {class}: object={} id={} {}\n    {uri}",
        uri.object.as_deref().unwrap_or(""),
        uri.id.as_deref().map(encode_id).unwrap_or_default(),
        details.join(", ")
    )
}

fn curve_name(params: &[u8]) -> &'static str {
    match params {
        [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => "P-256",
        [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22] => "P-384",
        [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23] => "P-521",
        _ => "other curve",
    }
}

fn certificate_subject(session: &Session, object: ObjectHandle) -> Option<String> {
    let value = session
        .get_attributes(object, &[AttributeType::Value])
        .ok()?;
    let Some(Attribute::Value(der)) = value.into_iter().next() else {
        return None;
    };
    let certificate = X509::from_der(&der).ok()?;
    Some(subject_text(&certificate))
}

/// A certificate's subject as `CN=name,O=org`.
pub(crate) fn subject_text(certificate: &X509Ref) -> String {
    let names: Vec<String> = certificate
        .subject_name()
        .entries()
        .filter_map(|entry| {
            let key = entry.object().nid().short_name().ok()?;
            let value = entry.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect();
    names.join(",")
}
