//! The libcrypto declarations openssl-sys lacks, and the provider ABI types, transcribed from
//! `<openssl/core.h>` and `<openssl/core_dispatch.h>` (OpenSSL 3.0).

#![allow(non_camel_case_types)] // C names, so they can be matched against the headers

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};

use openssl_sys::{OSSL_LIB_CTX, OSSL_PARAM};

/// C `size_t`.
pub(super) type size_t = usize;

/// `struct ossl_dispatch_st`.
#[repr(C)]
pub(super) struct OSSL_DISPATCH {
    pub(super) function_id: c_int,
    pub(super) function: Option<unsafe extern "C" fn()>,
}

/// `struct ossl_algorithm_st`.
#[repr(C)]
pub(super) struct OSSL_ALGORITHM {
    pub(super) algorithm_names: *const c_char,
    pub(super) property_definition: *const c_char,
    pub(super) implementation: *const OSSL_DISPATCH,
    pub(super) algorithm_description: *const c_char,
}

/// `OSSL_CORE_HANDLE` (opaque).
pub(super) enum OSSL_CORE_HANDLE {}

/// Immutable static data holding raw pointers to other static data.
pub(super) struct Shared<T>(pub(super) T);

// SAFETY: `Shared` only wraps `static` tables that are never written after compilation and
// whose pointers point to other `static` data (C string literals, dispatch tables).
unsafe impl<T> Sync for Shared<T> {}

pub(super) const OSSL_OP_KEYMGMT: c_int = 10;
pub(super) const OSSL_OP_SIGNATURE: c_int = 12;

pub(super) const OSSL_FUNC_PROVIDER_TEARDOWN: c_int = 1024;
pub(super) const OSSL_FUNC_PROVIDER_QUERY_OPERATION: c_int = 1027;

pub(super) const OSSL_FUNC_KEYMGMT_NEW: c_int = 1;
pub(super) const OSSL_FUNC_KEYMGMT_FREE: c_int = 10;
pub(super) const OSSL_FUNC_KEYMGMT_GET_PARAMS: c_int = 11;
pub(super) const OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS: c_int = 12;
pub(super) const OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME: c_int = 20;
pub(super) const OSSL_FUNC_KEYMGMT_HAS: c_int = 21;
pub(super) const OSSL_FUNC_KEYMGMT_MATCH: c_int = 23;
pub(super) const OSSL_FUNC_KEYMGMT_IMPORT: c_int = 40;
pub(super) const OSSL_FUNC_KEYMGMT_IMPORT_TYPES: c_int = 41;

pub(super) const OSSL_FUNC_SIGNATURE_NEWCTX: c_int = 1;
pub(super) const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT: c_int = 8;
pub(super) const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE: c_int = 9;
pub(super) const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL: c_int = 10;
pub(super) const OSSL_FUNC_SIGNATURE_DIGEST_SIGN: c_int = 11;
pub(super) const OSSL_FUNC_SIGNATURE_FREECTX: c_int = 16;
pub(super) const OSSL_FUNC_SIGNATURE_DUPCTX: c_int = 17;
pub(super) const OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS: c_int = 18;
pub(super) const OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS: c_int = 19;
pub(super) const OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS: c_int = 20;
pub(super) const OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS: c_int = 21;

pub(super) const OSSL_KEYMGMT_SELECT_PRIVATE_KEY: c_int = 0x01;
/// `EVP_PKEY_KEYPAIR`.
pub(super) const EVP_PKEY_KEYPAIR: c_int = 0x03;
/// `EVP_PKEY_PUBLIC_KEY` (public key plus all parameters).
pub(super) const EVP_PKEY_PUBLIC_KEY: c_int = 0x86;

pub(super) const OSSL_PARAM_INTEGER: c_uint = 1;
pub(super) const OSSL_PARAM_UTF8_STRING: c_uint = 4;
pub(super) const OSSL_PARAM_OCTET_STRING: c_uint = 5;
/// `OSSL_PARAM_UNMODIFIED`.
const OSSL_PARAM_UNMODIFIED: size_t = size_t::MAX;

/// `OSSL_provider_init_fn`.
pub(super) type ProviderInitFn = unsafe extern "C" fn(
    handle: *const OSSL_CORE_HANDLE,
    in_: *const OSSL_DISPATCH,
    out: *mut *const OSSL_DISPATCH,
    provctx: *mut *mut c_void,
) -> c_int;

// `OSSL_FUNC_*_fn` types, as `OSSL_CORE_MAKE_FUNC` declares them.
pub(super) type ProviderTeardownFn = unsafe extern "C" fn(provctx: *mut c_void);
pub(super) type ProviderQueryOperationFn = unsafe extern "C" fn(
    provctx: *mut c_void,
    operation_id: c_int,
    no_store: *mut c_int,
) -> *const OSSL_ALGORITHM;

pub(super) type KeymgmtNewFn = unsafe extern "C" fn(provctx: *mut c_void) -> *mut c_void;
pub(super) type KeymgmtFreeFn = unsafe extern "C" fn(keydata: *mut c_void);
pub(super) type KeymgmtGetParamsFn =
    unsafe extern "C" fn(keydata: *mut c_void, params: *mut OSSL_PARAM) -> c_int;
pub(super) type KeymgmtGettableParamsFn =
    unsafe extern "C" fn(provctx: *mut c_void) -> *const OSSL_PARAM;
pub(super) type KeymgmtQueryOperationNameFn =
    unsafe extern "C" fn(operation_id: c_int) -> *const c_char;
pub(super) type KeymgmtHasFn =
    unsafe extern "C" fn(keydata: *const c_void, selection: c_int) -> c_int;
pub(super) type KeymgmtMatchFn = unsafe extern "C" fn(
    keydata1: *const c_void,
    keydata2: *const c_void,
    selection: c_int,
) -> c_int;
pub(super) type KeymgmtImportFn = unsafe extern "C" fn(
    keydata: *mut c_void,
    selection: c_int,
    params: *const OSSL_PARAM,
) -> c_int;
pub(super) type KeymgmtImportTypesFn = unsafe extern "C" fn(selection: c_int) -> *const OSSL_PARAM;

pub(super) type SignatureNewctxFn =
    unsafe extern "C" fn(provctx: *mut c_void, propq: *const c_char) -> *mut c_void;
pub(super) type SignatureDigestSignInitFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    mdname: *const c_char,
    provkey: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int;
pub(super) type SignatureDigestSignUpdateFn =
    unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, datalen: size_t) -> c_int;
pub(super) type SignatureDigestSignFinalFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut size_t,
    sigsize: size_t,
) -> c_int;
pub(super) type SignatureDigestSignFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    sigret: *mut u8,
    siglen: *mut size_t,
    sigsize: size_t,
    tbs: *const u8,
    tbslen: size_t,
) -> c_int;
pub(super) type SignatureFreectxFn = unsafe extern "C" fn(ctx: *mut c_void);
pub(super) type SignatureDupctxFn = unsafe extern "C" fn(ctx: *mut c_void) -> *mut c_void;
pub(super) type SignatureGetCtxParamsFn =
    unsafe extern "C" fn(ctx: *mut c_void, params: *mut OSSL_PARAM) -> c_int;
pub(super) type SignatureSetCtxParamsFn =
    unsafe extern "C" fn(ctx: *mut c_void, params: *const OSSL_PARAM) -> c_int;
pub(super) type SignatureSettableCtxParamsFn =
    unsafe extern "C" fn(ctx: *mut c_void, provctx: *mut c_void) -> *const OSSL_PARAM;
pub(super) type SignatureGettableCtxParamsFn = SignatureSettableCtxParamsFn;

unsafe extern "C" {
    pub(super) fn OSSL_PARAM_set_octet_string(
        p: *mut OSSL_PARAM,
        val: *const c_void,
        len: size_t,
    ) -> c_int;
    pub(super) fn X509_REQ_sign_ctx(
        req: *mut openssl_sys::X509_REQ,
        ctx: *mut openssl_sys::EVP_MD_CTX,
    ) -> c_int;
    pub(super) fn OSSL_PROVIDER_add_builtin(
        libctx: *mut OSSL_LIB_CTX,
        name: *const c_char,
        init_fn: ProviderInitFn,
    ) -> c_int;
    pub(super) fn EVP_set_default_properties(
        libctx: *mut OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> c_int;
    pub(super) fn OSSL_PARAM_construct_octet_ptr(
        key: *const c_char,
        buf: *mut *mut c_void,
        bsize: size_t,
    ) -> OSSL_PARAM;
    pub(super) fn OSSL_PARAM_get_int(p: *const OSSL_PARAM, val: *mut c_int) -> c_int;
    pub(super) fn OSSL_PARAM_get_octet_ptr(
        p: *const OSSL_PARAM,
        val: *mut *const c_void,
        used_len: *mut size_t,
    ) -> c_int;
}

/// A parameter descriptor for a `gettable`/`settable` list (no data).
pub(super) const fn describe(key: &'static CStr, data_type: c_uint) -> OSSL_PARAM {
    OSSL_PARAM {
        key: key.as_ptr(),
        data_type,
        data: std::ptr::null_mut(),
        data_size: 0,
        return_size: OSSL_PARAM_UNMODIFIED,
    }
}

/// The terminator of an `OSSL_PARAM` list.
pub(super) const PARAM_END: OSSL_PARAM = OSSL_PARAM {
    key: std::ptr::null(),
    data_type: 0,
    data: std::ptr::null_mut(),
    data_size: 0,
    return_size: 0,
};

/// The terminator of a dispatch table.
pub(super) const DISPATCH_END: OSSL_DISPATCH = OSSL_DISPATCH {
    function_id: 0,
    function: None,
};

/// One dispatch entry: `$f` is first coerced to its `OSSL_FUNC_*` type `$ty`, then stored as
/// the generic `void (*)(void)` the table holds.
macro_rules! dispatch {
    ($id:expr, $ty:ty, $f:expr) => {
        $crate::pkcs11::provider::ffi::OSSL_DISPATCH {
            function_id: $id,
            // SAFETY: function pointers have one size and representation; OpenSSL casts the
            // entry back to the `OSSL_FUNC_*` type of `$id`, which is `$ty` (core_dispatch.h).
            function: Some(unsafe { std::mem::transmute::<$ty, unsafe extern "C" fn()>($f) }),
        }
    };
}
pub(super) use dispatch;
