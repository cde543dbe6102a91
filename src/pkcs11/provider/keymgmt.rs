//! Key management for RSA and EC token keys.
//!
//! A key object ([`KeyData`]) holds the native public key (from the default provider) and, for
//! a token key, the [`KeyHandle`] that signs. It is created by `new`, filled by `import`
//! (either our two pointer parameters, or plain public-key parameters when OpenSSL exports a
//! certificate's key to compare it with ours) and owned by OpenSSL until `free`.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use foreign_types::ForeignType;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Public};
use openssl_sys::OSSL_PARAM;

use super::ffi::{
    self, OSSL_DISPATCH, OSSL_PARAM_OCTET_STRING, OSSL_PARAM_UTF8_STRING, Shared, dispatch,
};
use super::{Failure, guard};
use crate::pkcs11::key::KeyHandle;

/// The parameter carrying a `*const PKey<Public>` (the token key's public half).
pub(super) const PARAM_PUBLIC: &CStr = c"nexus-public-key";
/// The parameter carrying a `*const Arc<KeyHandle>`.
pub(super) const PARAM_SIGNER: &CStr = c"nexus-signer";

/// The algorithm family a key object belongs to (one keymgmt each).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Rsa,
    Ec,
}

impl Family {
    fn name(self) -> &'static CStr {
        match self {
            Family::Rsa => c"RSA",
            Family::Ec => c"EC",
        }
    }
}

/// A provider key object.
pub(super) struct KeyData {
    family: Family,
    pub(super) public: Option<PKey<Public>>,
    pub(super) signer: Option<Arc<KeyHandle>>,
}

/// Borrows a key object OpenSSL hands back to us.
///
/// # Safety
/// `keydata` is NULL or a pointer returned by `new` and not yet passed to `free`.
pub(super) unsafe fn key_ref<'a>(keydata: *const c_void) -> Result<&'a KeyData, Failure> {
    // SAFETY: per this function's contract, a non-NULL pointer is a live `Box<KeyData>`.
    unsafe { keydata.cast::<KeyData>().as_ref() }.ok_or_else(|| "NULL key object".into())
}

fn new(family: Family) -> *mut c_void {
    let key = KeyData {
        family,
        public: None,
        signer: None,
    };
    Box::into_raw(Box::new(key)).cast()
}

unsafe extern "C" fn rsa_new(_provctx: *mut c_void) -> *mut c_void {
    guard("keymgmt_new", ptr::null_mut(), || Ok(new(Family::Rsa)))
}

unsafe extern "C" fn ec_new(_provctx: *mut c_void) -> *mut c_void {
    guard("keymgmt_new", ptr::null_mut(), || Ok(new(Family::Ec)))
}

/// The one place that takes ownership of a key object back.
unsafe extern "C" fn free(keydata: *mut c_void) {
    guard("keymgmt_free", (), || {
        if !keydata.is_null() {
            // SAFETY: OpenSSL calls free once per pointer returned by `new`.
            drop(unsafe { Box::from_raw(keydata.cast::<KeyData>()) });
        }
        Ok(())
    })
}

unsafe extern "C" fn get_params(keydata: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    guard("keymgmt_get_params", 0, || {
        // SAFETY: OpenSSL passes a key object from `new`.
        let key = unsafe { key_ref(keydata) }?;
        let public = key.public.as_ref().ok_or("the key object is empty")?;
        // SAFETY: the native key is alive for the call; `params` is OpenSSL's writable list.
        Ok(unsafe { openssl_sys::EVP_PKEY_get_params(public.as_ptr(), params) })
    })
}

static GETTABLE: Shared<[OSSL_PARAM; 7]> = Shared([
    ffi::describe(c"bits", ffi::OSSL_PARAM_INTEGER),
    ffi::describe(c"security-bits", ffi::OSSL_PARAM_INTEGER),
    ffi::describe(c"max-size", ffi::OSSL_PARAM_INTEGER),
    ffi::describe(c"default-digest", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"group", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"encoded-pub-key", OSSL_PARAM_OCTET_STRING),
    ffi::PARAM_END,
]);

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.0.as_ptr()
}

static NO_PARAMS: Shared<[OSSL_PARAM; 1]> = Shared([ffi::PARAM_END]);

unsafe extern "C" fn import_types(_selection: c_int) -> *const OSSL_PARAM {
    NO_PARAMS.0.as_ptr()
}

unsafe extern "C" fn rsa_operation_name(operation_id: c_int) -> *const c_char {
    match operation_id {
        ffi::OSSL_OP_SIGNATURE => c"RSA".as_ptr(),
        _ => ptr::null(),
    }
}

unsafe extern "C" fn ec_operation_name(operation_id: c_int) -> *const c_char {
    match operation_id {
        ffi::OSSL_OP_SIGNATURE => c"ECDSA".as_ptr(),
        _ => ptr::null(),
    }
}

unsafe extern "C" fn has(keydata: *const c_void, selection: c_int) -> c_int {
    guard("keymgmt_has", 0, || {
        // SAFETY: OpenSSL passes a key object from `new`.
        let key = unsafe { key_ref(keydata) }?;
        let wants_private = selection & ffi::OSSL_KEYMGMT_SELECT_PRIVATE_KEY != 0;
        let ok = key.public.is_some() && (!wants_private || key.signer.is_some());
        Ok(c_int::from(ok || selection == 0))
    })
}

unsafe extern "C" fn matches(a: *const c_void, b: *const c_void, _selection: c_int) -> c_int {
    guard("keymgmt_match", 0, || {
        // SAFETY: OpenSSL passes two key objects from `new`.
        let (a, b) = unsafe { (key_ref(a)?, key_ref(b)?) };
        let equal = match (&a.public, &b.public) {
            (Some(a), Some(b)) => a.public_eq(b),
            _ => false,
        };
        Ok(c_int::from(equal))
    })
}

unsafe extern "C" fn import(
    keydata: *mut c_void,
    selection: c_int,
    params: *const OSSL_PARAM,
) -> c_int {
    guard("keymgmt_import", 0, || {
        // SAFETY: OpenSSL imports into a key object from `new` that nothing else uses yet.
        let key = unsafe { keydata.cast::<KeyData>().as_mut() }.ok_or("NULL key object")?;
        // SAFETY: `params` is an OSSL_PARAM list terminated by OpenSSL.
        if let Some(public) = unsafe { pointer_param::<PKey<Public>>(params, PARAM_PUBLIC) } {
            // SAFETY: as above.
            let signer = unsafe { pointer_param::<Arc<KeyHandle>>(params, PARAM_SIGNER) }
                .ok_or("a token key needs both nexus parameters")?;
            if selection & ffi::EVP_PKEY_KEYPAIR == 0 {
                return Err("a token key is imported as a key pair".into());
            }
            key.public = Some(public.clone());
            key.signer = Some(signer.clone());
            return Ok(1);
        }
        // A plain public key, e.g. a certificate's, exported to us for EVP_PKEY_eq.
        // SAFETY: `params` is an OSSL_PARAM list terminated by OpenSSL.
        key.public = Some(unsafe { native_public_key(key.family, params) }?);
        Ok(1)
    })
}

/// Reads one of our pointer parameters (set by [`super::private_key`]).
///
/// # Safety
/// `params` is a terminated OSSL_PARAM list; if it holds `name`, that entry was built by
/// `private_key` and points to a `T` that outlives the import call.
unsafe fn pointer_param<'a, T>(params: *const OSSL_PARAM, name: &CStr) -> Option<&'a T> {
    // SAFETY: `params` is a terminated list (caller); `name` is a C string.
    let param = unsafe { openssl_sys::OSSL_PARAM_locate_const(params, name.as_ptr()) };
    if param.is_null() {
        return None;
    }
    let mut value: *const c_void = ptr::null();
    let mut size = 0;
    // SAFETY: `param` points into the caller's list; OpenSSL writes the two out values.
    let ok = unsafe { ffi::OSSL_PARAM_get_octet_ptr(param, &mut value, &mut size) };
    if ok != 1 || size != size_of::<T>() {
        return None;
    }
    // SAFETY: the entry was built by `private_key` from a `&T` alive during the call (caller).
    unsafe { value.cast::<T>().as_ref() }
}

/// Builds a default-provider public key from plain key parameters.
///
/// # Safety
/// `params` is a terminated OSSL_PARAM list.
unsafe fn native_public_key(
    family: Family,
    params: *const OSSL_PARAM,
) -> Result<PKey<Public>, Failure> {
    // SAFETY: both strings are C string literals; the context is freed by `PkeyCtx`.
    let ctx = super::PkeyCtx(unsafe {
        openssl_sys::EVP_PKEY_CTX_new_from_name(
            ptr::null_mut(),
            family.name().as_ptr(),
            c"provider=default".as_ptr(),
        )
    });
    if ctx.0.is_null() {
        return Err(ErrorStack::get().into());
    }
    let mut pkey = ptr::null_mut();
    // SAFETY: `ctx` is a live EVP_PKEY_CTX; OpenSSL only reads `params` (a terminated list)
    // despite the non-const pointer in the prototype, and writes a new key into `pkey`.
    let ok = unsafe {
        openssl_sys::EVP_PKEY_fromdata_init(ctx.0) == 1
            && openssl_sys::EVP_PKEY_fromdata(
                ctx.0,
                &mut pkey,
                ffi::EVP_PKEY_PUBLIC_KEY,
                params.cast_mut(),
            ) == 1
    };
    if !ok || pkey.is_null() {
        return Err(ErrorStack::get().into());
    }
    // SAFETY: `pkey` is a new key whose one reference we now own.
    Ok(unsafe { PKey::from_ptr(pkey) })
}

/// The keymgmt dispatch table of `family`.
macro_rules! keymgmt_table {
    ($new:expr, $operation_name:expr) => {
        [
            dispatch!(ffi::OSSL_FUNC_KEYMGMT_NEW, ffi::KeymgmtNewFn, $new),
            dispatch!(ffi::OSSL_FUNC_KEYMGMT_FREE, ffi::KeymgmtFreeFn, free),
            dispatch!(
                ffi::OSSL_FUNC_KEYMGMT_GET_PARAMS,
                ffi::KeymgmtGetParamsFn,
                get_params
            ),
            dispatch!(
                ffi::OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS,
                ffi::KeymgmtGettableParamsFn,
                gettable_params
            ),
            dispatch!(
                ffi::OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
                ffi::KeymgmtQueryOperationNameFn,
                $operation_name
            ),
            dispatch!(ffi::OSSL_FUNC_KEYMGMT_HAS, ffi::KeymgmtHasFn, has),
            dispatch!(ffi::OSSL_FUNC_KEYMGMT_MATCH, ffi::KeymgmtMatchFn, matches),
            dispatch!(ffi::OSSL_FUNC_KEYMGMT_IMPORT, ffi::KeymgmtImportFn, import),
            dispatch!(
                ffi::OSSL_FUNC_KEYMGMT_IMPORT_TYPES,
                ffi::KeymgmtImportTypesFn,
                import_types
            ),
            ffi::DISPATCH_END,
        ]
    };
}

/// RSA key management.
pub(super) static RSA: [OSSL_DISPATCH; 10] = keymgmt_table!(rsa_new, rsa_operation_name);
/// EC key management.
pub(super) static EC: [OSSL_DISPATCH; 10] = keymgmt_table!(ec_new, ec_operation_name);
