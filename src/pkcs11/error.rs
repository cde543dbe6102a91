//! Errors of the PKCS#11 layer: each names the PKCS#11 function, the `CKR_` code, the token or
//! the URI (with any `pin-value` redacted) and what to do.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

/// Why a token key or certificate could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The URI does not parse.
    #[error(transparent)]
    Uri(#[from] super::uri::UriError),
    /// Neither the URI nor `[pkcs11]` names a module.
    #[error(
        "no PKCS#11 module for {uri}: add `?module-path=/path/to/module.so` to the URI or set `[pkcs11] module_path`"
    )]
    NoModule {
        /// The URI (redacted).
        uri: String,
    },
    /// The module could not be loaded (dlopen or missing symbols).
    #[error("cannot load PKCS#11 module {}: {reason}", module.display())]
    ModuleLoad {
        /// The module path.
        module: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// This OpenSSL is too old for keys held by a provider.
    #[error(
        "OpenSSL {version} is too old for token keys: 3.0.7 or later is required (provider key handling was fixed there)"
    )]
    OpenSslTooOld {
        /// The running OpenSSL's version text.
        version: String,
    },
    /// No token matches the URI.
    #[error("no token matching {uri} in module {}; tokens present: {present}", module.display())]
    TokenNotFound {
        /// The URI (redacted).
        uri: String,
        /// The module searched.
        module: PathBuf,
        /// Labels and serials of the tokens that are present, or "none".
        present: String,
    },
    /// No PIN is configured for a token that needs a login.
    #[error(
        "no PIN for token \"{token}\" ({uri}): add `?pin-source=file:/path` to the URI or set `[pkcs11] pin_file` or `pin`"
    )]
    PinMissing {
        /// The token label.
        token: String,
        /// The URI (redacted).
        uri: String,
    },
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {}: {source}", path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PIN could not be read from the terminal.
    #[error("cannot read the PIN from the terminal: {source}")]
    PinPrompt {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token's user PIN is locked; nexus does not try to log in.
    #[error(
        "the user PIN of token \"{token}\" is locked (CKF_USER_PIN_LOCKED); nexus did not try to log in: unlock it with the SO PIN"
    )]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// `C_Login` failed. Nexus never retries a rejected PIN.
    #[error("HSM login to token \"{token}\" failed: {rv}{flags}; check {pin_origin}")]
    Login {
        /// The token label.
        token: String,
        /// The `CKR_` name.
        rv: String,
        /// Token PIN flags read after the failure, e.g. " (CKF_USER_PIN_COUNT_LOW)".
        flags: String,
        /// Where the PIN came from, e.g. "pin_file /run/credentials/nexus.service/hsm-pin".
        pin_origin: String,
    },
    /// No object matches the URI.
    #[error(
        "no {what} matching {uri} on token \"{token}\"; run `nexus pkcs11 list` to see the objects"
    )]
    ObjectNotFound {
        /// "private key" or "certificate".
        what: &'static str,
        /// The URI (redacted).
        uri: String,
        /// The token label.
        token: String,
    },
    /// Several objects match the URI.
    #[error(
        "{count} objects match {uri} on token \"{token}\" ({candidates}); add `id=` or `object=` to pick one"
    )]
    Ambiguous {
        /// How many matched.
        count: usize,
        /// The URI (redacted).
        uri: String,
        /// The token label.
        token: String,
        /// Label and id of each match.
        candidates: String,
    },
    /// The key's public half could not be found or built.
    #[error("cannot get the public key of {uri}: {reason}")]
    PublicKey {
        /// The URI (redacted).
        uri: String,
        /// What is missing.
        reason: String,
    },
    /// The key is of a type or size nexus does not sign with.
    #[error("unsupported key {uri}: {reason} (supported: RSA 2048-4096, EC P-256 and P-384)")]
    UnsupportedKey {
        /// The URI (redacted).
        uri: String,
        /// The key found.
        reason: String,
    },
    /// The token cannot sign with a mechanism the key needs.
    #[error("token \"{token}\" cannot sign with {mechanism}, which {needed_for} needs")]
    MechanismMissing {
        /// The token label.
        token: String,
        /// The `CKM_` name.
        mechanism: &'static str,
        /// Why it is needed.
        needed_for: &'static str,
    },
    /// The certificate's public key is not the key's.
    #[error("the certificate does not match the private key {uri} (their public keys differ)")]
    CertificateMismatch {
        /// The key URI (redacted).
        uri: String,
    },
    /// A PKCS#11 call failed.
    #[error("{function} on token \"{token}\" failed: {rv}")]
    Call {
        /// The token label.
        token: String,
        /// The function, e.g. `C_Sign`.
        function: String,
        /// The `CKR_` name (or the library's error text).
        rv: String,
        /// The raw return value, when the module returned one.
        #[source]
        source: Option<CkError>,
    },
    /// The token rejected the PIN earlier; nexus will not try it again (it could lock the token).
    #[error(
        "token \"{token}\" rejected the PIN earlier; nexus does not try it again (that could lock the token): fix the PIN and start again"
    )]
    PinRejectedEarlier {
        /// The token label.
        token: String,
    },
    /// The listing could not be written.
    #[error("cannot write the listing: {0}")]
    Output(std::io::Error),
    /// OpenSSL failed while building or checking the key.
    #[error("OpenSSL failed to {action}: {source}")]
    OpenSsl {
        /// What was being done.
        action: &'static str,
        /// OpenSSL's error queue.
        source: openssl::error::ErrorStack,
    },
}

impl Pkcs11Error {
    /// Wraps a failed cryptoki call on `token`.
    pub(crate) fn call(token: &str, error: CkError) -> Self {
        let (function, rv) = match &error {
            CkError::Pkcs11(rv, function) => (format!("C_{function:?}"), ckr_name(rv)),
            other => ("PKCS#11 call".to_owned(), other.to_string()),
        };
        Pkcs11Error::Call {
            token: token.to_owned(),
            function,
            rv,
            source: Some(error),
        }
    }

    /// Whether the failure means the token's sessions or login were lost, so that opening a
    /// new session, logging in again and finding the key again may succeed; and if so, whether
    /// the old session handles still exist.
    pub(crate) fn session_loss(&self) -> Option<SessionLoss> {
        let Pkcs11Error::Call {
            source: Some(CkError::Pkcs11(rv, _)),
            ..
        } = self
        else {
            return None;
        };
        match rv {
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent => Some(SessionLoss::Gone),
            RvError::UserNotLoggedIn
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
            | RvError::SessionCount => Some(SessionLoss::Unusable),
            _ => None,
        }
    }
}

/// What a failed call says about the sessions open before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionLoss {
    /// The handles no longer exist (token restarted or removed, sessions closed from another
    /// handle). The token may give their numbers to new sessions, so they must never be closed:
    /// `C_CloseSession` on one could close somebody else's new session.
    Gone,
    /// The sessions exist but cannot serve (logged out, key handles renumbered, no room for
    /// more): closing them is safe and gives their room back to the token.
    Unusable,
}

/// The `CKR_` name of a return value, e.g. `CKR_PIN_INCORRECT`.
pub fn ckr_name(rv: &RvError) -> String {
    if let RvError::VendorDefined(code) | RvError::UnknownErrorCode(code) = rv {
        return format!("CKR_0x{code:08X}");
    }
    let camel = format!("{rv:?}");
    let mut name = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ckr_names_follow_the_specification() {
        assert_eq!(ckr_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            ckr_name(&RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(
            ckr_name(&RvError::VendorDefined(0x8000_0001)),
            "CKR_0x80000001"
        );
    }

    #[test]
    fn call_errors_name_function_and_code() {
        let error = Pkcs11Error::call(
            "nexus",
            CkError::Pkcs11(RvError::PinIncorrect, cryptoki::context::Function::Login),
        );
        assert_eq!(
            error.to_string(),
            "C_Login on token \"nexus\" failed: CKR_PIN_INCORRECT"
        );
    }
}
