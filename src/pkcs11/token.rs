//! Modules and tokens: one `C_Initialize` per module and one login per token per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Limit, Slot, TokenInfo};
use cryptoki::types::AuthPin;

use super::error::{Pkcs11Error, SessionLoss, ckr_name};
use super::session_pool::{PooledSession, SessionPool};
use super::uri::Pkcs11Uri;

/// Sessions per token when the token reports no limit (SoftHSM says "effectively infinite").
const DEFAULT_MAX_SESSIONS: usize = 32;

/// A PIN and where it came from (for error messages; the PIN itself is never shown).
pub(crate) struct Pin {
    pub(crate) secret: AuthPin,
    pub(crate) origin: String,
}

/// Returns the process-wide context for `module`, loading and initializing it once.
pub(crate) fn module(module: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = module.canonicalize().unwrap_or_else(|_| module.to_owned());
    if let Some(context) = modules.get(&key) {
        return Ok(context.clone());
    }
    let load_error = |reason: String| Pkcs11Error::ModuleLoad {
        module: module.to_owned(),
        reason,
    };
    let context = Pkcs11::new(module).map_err(|error| load_error(error.to_string()))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => {
            let reason = match &error {
                CkError::Pkcs11(rv, _) => format!("C_Initialize failed: {}", ckr_name(rv)),
                other => format!("C_Initialize failed: {other}"),
            };
            return Err(load_error(reason));
        }
    }
    modules.insert(key, context.clone());
    Ok(context)
}

/// A logged-in token shared by every key on it.
pub(crate) struct Token {
    context: Pkcs11,
    slot: Slot,
    label: String,
    pin: Option<Pin>,
    /// Set once the token rejected the PIN: trying again could lock the token.
    pin_rejected: AtomicBool,
    /// Whether the application is (believed to be) logged in; false after a session loss.
    logged_in: Mutex<bool>,
    pool: SessionPool,
}

type TokenKey = (PathBuf, u64, String);
/// Every token opened in this process; a login failure is kept as its message.
type Tokens = Mutex<HashMap<TokenKey, Result<Arc<Token>, String>>>;

/// Finds the token `uri` names in `module` and logs in once (or returns the shared token).
/// A login failure is remembered, so a rejected PIN is never tried twice.
pub(crate) fn open(
    module_path: &Path,
    uri: &Pkcs11Uri,
    pin: impl FnOnce(&str) -> Result<Option<Pin>, Pkcs11Error>,
) -> Result<Arc<Token>, Pkcs11Error> {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    let context = module(module_path)?;
    let (slot, info) = find_slot(&context, module_path, uri)?;
    let key = (
        module_path.to_owned(),
        slot.id(),
        info.serial_number().to_owned(),
    );
    let mut tokens = TOKENS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match tokens.get(&key) {
        Some(Ok(token)) => return Ok(token.clone()),
        Some(Err(_)) => {
            return Err(Pkcs11Error::PinRejectedEarlier {
                token: info.label().to_owned(),
            });
        }
        None => {}
    }
    let token = Arc::new(Token::new(context, slot, &info, pin(info.label())?, uri)?);
    // Log in now so that a bad PIN or a missing token stops startup, not the first handshake.
    match token.session() {
        Ok(session) => drop(session),
        Err(error) => {
            if token.pin_rejected.load(Ordering::SeqCst) {
                tokens.insert(key, Err(error.to_string()));
            }
            return Err(error);
        }
    }
    tokens.insert(key, Ok(token.clone()));
    Ok(token)
}

fn find_slot(
    context: &Pkcs11,
    module: &Path,
    uri: &Pkcs11Uri,
) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let slots = context
        .get_slots_with_token()
        .map_err(|error| Pkcs11Error::call("(any)", error))?;
    let mut present = Vec::new();
    for slot in slots {
        let Ok(info) = context.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end();
        let serial = info.serial_number().trim_end();
        let matches = uri.token.as_deref().is_none_or(|t| t == label)
            && uri.serial.as_deref().is_none_or(|s| s == serial)
            && uri.slot_id.is_none_or(|id| id == slot.id());
        if matches {
            return Ok((slot, info));
        }
        present.push(format!(
            "\"{label}\" (serial {serial}, slot-id {})",
            slot.id()
        ));
    }
    Err(Pkcs11Error::TokenNotFound {
        uri: uri.to_string(),
        module: module.to_owned(),
        present: if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        },
    })
}

impl Token {
    fn new(
        context: Pkcs11,
        slot: Slot,
        info: &TokenInfo,
        pin: Option<Pin>,
        uri: &Pkcs11Uri,
    ) -> Result<Self, Pkcs11Error> {
        let label = info.label().trim_end().to_owned();
        if info.login_required() {
            if pin.is_none() {
                return Err(Pkcs11Error::PinMissing {
                    token: label,
                    uri: uri.to_string(),
                });
            }
            if info.user_pin_locked() {
                return Err(Pkcs11Error::PinLocked { token: label });
            }
            if info.user_pin_count_low() || info.user_pin_final_try() {
                tracing::warn!(token = %label, flags = %pin_flags(info), "the token reports failed PIN attempts; one more wrong PIN may lock it");
            }
        }
        let max = match info.max_session_count() {
            Limit::Max(max) => usize::try_from(max).unwrap_or(DEFAULT_MAX_SESSIONS),
            Limit::Unavailable | Limit::Infinite => DEFAULT_MAX_SESSIONS,
        };
        Ok(Self {
            context,
            slot,
            label,
            pin: pin.filter(|_| info.login_required()),
            pin_rejected: AtomicBool::new(false),
            logged_in: Mutex::new(false),
            pool: SessionPool::new(max.min(DEFAULT_MAX_SESSIONS)),
        })
    }

    /// The token label.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The PKCS#11 context of the token's module.
    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.context
    }

    /// The slot holding the token.
    pub(crate) fn slot(&self) -> Slot {
        self.slot
    }

    /// Changes whenever sessions were lost, so that object handles must be looked up again.
    pub(crate) fn generation(&self) -> u64 {
        self.pool.generation()
    }

    /// How many sessions are open.
    pub(crate) fn open_sessions(&self) -> usize {
        self.pool.open_sessions()
    }

    /// Takes a logged-in session from the pool.
    pub(crate) fn session(&self) -> Result<PooledSession<'_>, Pkcs11Error> {
        self.pool.acquire(|| self.open_session())
    }

    /// Forgets every session and the login after a session loss.
    pub(crate) fn recover(&self, seen_generation: u64, loss: SessionLoss) {
        if self.pool.generation() != seen_generation {
            return; // another thread already did
        }
        *self
            .logged_in
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
        self.pool.invalidate(loss);
    }

    fn open_session(&self) -> Result<Session, Pkcs11Error> {
        if self.pin_rejected.load(Ordering::SeqCst) {
            return Err(Pkcs11Error::PinRejectedEarlier {
                token: self.label.clone(),
            });
        }
        let session = self
            .context
            .open_ro_session(self.slot)
            .map_err(|error| Pkcs11Error::call(&self.label, error))?;
        let Some(pin) = &self.pin else {
            return Ok(session);
        };
        // Held across C_Login so that concurrent new sessions do not log in twice.
        let mut logged_in = self
            .logged_in
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *logged_in {
            return Ok(session);
        }
        match session.login(UserType::User, Some(&pin.secret)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                *logged_in = true;
                Ok(session)
            }
            Err(CkError::Pkcs11(rv, _)) if is_pin_rejection(rv) => {
                self.pin_rejected.store(true, Ordering::SeqCst);
                let flags = self
                    .context
                    .get_token_info(self.slot)
                    .map(|info| pin_flags(&info))
                    .unwrap_or_default();
                Err(Pkcs11Error::Login {
                    token: self.label.clone(),
                    rv: ckr_name(&rv),
                    flags: if flags.is_empty() {
                        flags
                    } else {
                        format!(" ({flags})")
                    },
                    pin_origin: pin.origin.clone(),
                })
            }
            Err(error) => Err(Pkcs11Error::call(&self.label, error)),
        }
    }
}

fn is_pin_rejection(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::PinIncorrect
            | RvError::PinLocked
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinExpired
    )
}

/// The token's user-PIN warning flags, e.g. `CKF_USER_PIN_COUNT_LOW`.
pub(crate) fn pin_flags(info: &TokenInfo) -> String {
    let flags = [
        (info.user_pin_count_low(), "CKF_USER_PIN_COUNT_LOW"),
        (info.user_pin_final_try(), "CKF_USER_PIN_FINAL_TRY"),
        (info.user_pin_locked(), "CKF_USER_PIN_LOCKED"),
    ];
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}
