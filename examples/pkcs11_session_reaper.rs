//! Test-only PKCS#11 module: every call goes straight to a real module (SoftHSM2), and on request
//! a second handle in the same process closes every session of every token with
//! `C_CloseAllSessions`, as an HSM restart would. SoftHSM2 sessions belong to the process that
//! opened them, so this is the only way a test can take the gateway's sessions away mid-run.
//!
//! ```text
//! NEXUS_TEST_INNER_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so   the real module
//! NEXUS_TEST_CLOSE_SESSIONS_TRIGGER=/tmp/x/close                   create it to close the sessions
//! ```
//!
//! A watcher thread polls for the trigger file every 20 ms. When it appears, the watcher closes
//! the sessions, deletes the trigger and writes `<trigger>.ack` (renamed into place, so it is
//! never read half-written): `{"C_GetSlotList": rv, "closed": [{"slot": id, "rv": rv}, ...]}`.
//!
//! Only `C_GetFunctionList` is exported: cryptoki asks for `C_GetInterface` first and falls back
//! to the 2.40 function list without it, so every caller gets the inner module's list.
#![allow(unsafe_code)] // a PKCS#11 module is a C ABI: its entry point and every call are FFI

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use cryptoki_sys::{
    CK_BBOOL, CK_FUNCTION_LIST, CK_FUNCTION_LIST_PTR_PTR, CK_RV, CK_SLOT_ID, CK_TRUE, CK_ULONG,
    CKR_ARGUMENTS_BAD, CKR_GENERAL_ERROR, CKR_OK,
};
use serde_json::{Value, json};

const INNER_MODULE: &str = "NEXUS_TEST_INNER_PKCS11_MODULE";
const TRIGGER: &str = "NEXUS_TEST_CLOSE_SESSIONS_TRIGGER";
const POLL: Duration = Duration::from_millis(20);

/// The inner module and its function list, with `C_GetFunctionList` pointing back here.
struct Inner {
    /// Keeps the inner module mapped while `list` points into it.
    _module: cryptoki_sys::Pkcs11,
    list: CK_FUNCTION_LIST,
}

static INNER: OnceLock<Option<Inner>> = OnceLock::new();

/// The PKCS#11 entry point: the inner module's function list.
///
/// # Safety
///
/// `list` must be NULL or valid for writing one pointer (the PKCS#11 contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    // A panic must not unwind into the C caller: report it as a general error.
    let inner = std::panic::catch_unwind(|| INNER.get_or_init(load).as_ref());
    match inner {
        Ok(Some(inner)) => {
            // SAFETY: `list` is non-NULL and writable (the caller's contract); the list lives in
            // a static and PKCS#11 callers only read it.
            unsafe { *list = (&raw const inner.list).cast_mut() };
            CKR_OK
        }
        Ok(None) | Err(_) => CKR_GENERAL_ERROR,
    }
}

/// Loads the inner module and starts the watcher; says on stderr why it cannot.
fn load() -> Option<Inner> {
    let loaded = std::env::var_os(INNER_MODULE)
        .ok_or_else(|| format!("set {INNER_MODULE} to the real PKCS#11 module"))
        .and_then(|path| inner_list(Path::new(&path)));
    let inner = match loaded {
        Ok(inner) => inner,
        Err(error) => {
            eprintln!("pkcs11_session_reaper: {error}");
            return None;
        }
    };
    match std::env::var_os(TRIGGER) {
        Some(trigger) => {
            let list = inner.list;
            let spawned = std::thread::Builder::new()
                .name("session-reaper".to_owned())
                .spawn(move || watch(&PathBuf::from(trigger), &list));
            if let Err(error) = spawned {
                eprintln!("pkcs11_session_reaper: cannot start the watcher thread: {error}");
            }
        }
        None => eprintln!("pkcs11_session_reaper: {TRIGGER} unset: sessions are never closed"),
    }
    Some(inner)
}

fn inner_list(path: &Path) -> Result<Inner, String> {
    // SAFETY: loading a PKCS#11 module runs its initializers, which is what a PKCS#11 caller
    // asks for by loading this one.
    let module = unsafe { cryptoki_sys::Pkcs11::new(path) }
        .map_err(|error| format!("cannot load {}: {error}", path.display()))?;
    let get_function_list = module
        .C_GetFunctionList
        .as_ref()
        .map_err(|error| format!("{} has no C_GetFunctionList: {error}", path.display()))?;
    let mut list = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for the one pointer C_GetFunctionList writes.
    let rv = unsafe { get_function_list(&mut list) };
    if rv != CKR_OK || list.is_null() {
        return Err(format!(
            "C_GetFunctionList of {} failed: {rv:#x}",
            path.display()
        ));
    }
    // SAFETY: on CKR_OK the module points `list` at its function list, valid while it is loaded.
    let mut list = unsafe { *list };
    list.C_GetFunctionList = Some(C_GetFunctionList);
    Ok(Inner {
        _module: module,
        list,
    })
}

/// Runs for the life of the process: the gateway never unloads a module it loaded.
fn watch(trigger: &Path, list: &CK_FUNCTION_LIST) {
    loop {
        std::thread::sleep(POLL);
        if trigger.exists() {
            let report = close_all_sessions(list);
            if let Err(error) = acknowledge(trigger, &report) {
                eprintln!("pkcs11_session_reaper: cannot acknowledge {report}: {error}");
            }
        }
    }
}

/// `C_CloseAllSessions` on every slot with a token; the return values, for the test to check.
fn close_all_sessions(list: &CK_FUNCTION_LIST) -> Value {
    let (Some(get_slot_list), Some(close_all)) = (list.C_GetSlotList, list.C_CloseAllSessions)
    else {
        return json!({"error": "the module lacks C_GetSlotList or C_CloseAllSessions"});
    };
    let slots = match slots_with_token(get_slot_list) {
        Ok(slots) => slots,
        Err(rv) => return json!({"C_GetSlotList": rv}),
    };
    let closed: Vec<Value> = slots
        .into_iter()
        .map(|slot| {
            // SAFETY: `slot` is a slot id the module just listed.
            let rv = unsafe { close_all(slot) };
            json!({"slot": slot, "rv": rv})
        })
        .collect();
    json!({"C_GetSlotList": CKR_OK, "closed": closed})
}

type GetSlotList = unsafe extern "C" fn(CK_BBOOL, *mut CK_SLOT_ID, *mut CK_ULONG) -> CK_RV;

/// `C_GetSlotList(CK_TRUE)`: the count first, then the ids.
fn slots_with_token(get_slot_list: GetSlotList) -> Result<Vec<CK_SLOT_ID>, CK_RV> {
    let mut count: CK_ULONG = 0;
    // SAFETY: a NULL list asks only for the count, written to `count`.
    let rv = unsafe { get_slot_list(CK_TRUE, std::ptr::null_mut(), &mut count) };
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut slots: Vec<CK_SLOT_ID> = vec![0; usize::try_from(count).unwrap_or(0)];
    // SAFETY: `slots` has room for `count` ids, as the module asked.
    let rv = unsafe { get_slot_list(CK_TRUE, slots.as_mut_ptr(), &mut count) };
    if rv != CKR_OK {
        return Err(rv);
    }
    slots.truncate(usize::try_from(count).unwrap_or(0));
    Ok(slots)
}

/// Deletes the trigger first, so that once the test sees the ack it may trigger again.
fn acknowledge(trigger: &Path, report: &Value) -> std::io::Result<()> {
    std::fs::remove_file(trigger)?;
    let mut ack = trigger.as_os_str().to_owned();
    ack.push(".ack");
    let ack = PathBuf::from(ack);
    let partial = ack.with_extension("partial");
    std::fs::write(&partial, report.to_string())?;
    std::fs::rename(&partial, &ack)
}
