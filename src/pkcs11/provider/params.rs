//! Signature context parameters as OpenSSL passes them: `pad-mode` and `saltlen` arrive as
//! integers (legacy ctrls) or strings (`pkcs1`, `pss`; `digest`, `max`, `auto`).

use std::ffi::{CStr, c_char, c_int};
use std::ptr;

use openssl_sys::OSSL_PARAM;

use super::Failure;
use super::ffi::{self, OSSL_PARAM_UTF8_STRING, Shared};
use crate::pkcs11::scheme::Hash;

/// `RSA_PKCS1_PADDING` and `RSA_PKCS1_PSS_PADDING`.
const PAD_PKCS1: c_int = 1;
const PAD_PSS: c_int = 6;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Padding {
    Pkcs1,
    Pss,
}

/// `saltlen`: a length or one of OpenSSL's special values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SaltLen {
    Digest,
    Max,
    Exactly(usize),
}

/// The parameters found in one `set_ctx_params` (or `digest_sign_init`) call.
#[derive(Default)]
pub(super) struct CtxParams {
    pub(super) digest: Option<Hash>,
    pub(super) padding: Option<Padding>,
    pub(super) salt: Option<SaltLen>,
    pub(super) mgf1_digest: Option<Hash>,
}

/// Reads `digest`, `pad-mode`, `saltlen` and `mgf1-digest` (each as int or string).
///
/// # Safety
/// `params` is NULL or a terminated OSSL_PARAM list.
pub(super) unsafe fn read(params: *const OSSL_PARAM) -> Result<CtxParams, Failure> {
    let mut read = CtxParams::default();
    if params.is_null() {
        return Ok(read);
    }
    // SAFETY: `params` is a terminated list (caller), for each lookup below.
    if let Some(name) = unsafe { param_string(params, c"digest") }? {
        read.digest = Some(hash(&name)?);
    }
    // SAFETY: as above.
    if let Some(value) = unsafe { param_int_or_string(params, c"pad-mode") }? {
        read.padding = Some(match value {
            Value::Int(PAD_PKCS1) => Padding::Pkcs1,
            Value::Int(PAD_PSS) => Padding::Pss,
            Value::Text(text) if text == "pkcs1" => Padding::Pkcs1,
            Value::Text(text) if text == "pss" => Padding::Pss,
            _ => {
                return Err("only PKCS#1 v1.5 and PSS padding are supported for token keys".into());
            }
        });
    }
    // SAFETY: as above.
    if let Some(value) = unsafe { param_int_or_string(params, c"saltlen") }? {
        read.salt = Some(match value {
            Value::Int(-1) => SaltLen::Digest,
            Value::Int(-2 | -3) => SaltLen::Max,
            Value::Int(n) => {
                SaltLen::Exactly(usize::try_from(n).map_err(|_| format!("bad saltlen {n}"))?)
            }
            Value::Text(text) => match text.as_str() {
                "digest" => SaltLen::Digest,
                "max" | "auto" => SaltLen::Max,
                number => SaltLen::Exactly(
                    number
                        .parse()
                        .map_err(|_| format!("bad saltlen {number}"))?,
                ),
            },
        });
    }
    // SAFETY: as above.
    if let Some(name) = unsafe { param_string(params, c"mgf1-digest") }? {
        read.mgf1_digest = Some(hash(&name)?);
    }
    Ok(read)
}

fn hash(name: &str) -> Result<Hash, Failure> {
    Hash::from_name(name).ok_or_else(|| format!("unsupported digest {name}").into())
}

enum Value {
    Int(c_int),
    Text(String),
}

/// # Safety
/// `params` is a terminated OSSL_PARAM list.
unsafe fn param_int_or_string(
    params: *const OSSL_PARAM,
    name: &CStr,
) -> Result<Option<Value>, Failure> {
    // SAFETY: `params` is terminated (caller); `name` is a C string.
    let param = unsafe { openssl_sys::OSSL_PARAM_locate_const(params, name.as_ptr()) };
    // SAFETY: `param` is NULL or points into the caller's list.
    match unsafe { param.as_ref() } {
        None => Ok(None),
        Some(p) if p.data_type == OSSL_PARAM_UTF8_STRING => {
            // SAFETY: as above.
            unsafe { param_string(params, name) }.map(|text| text.map(Value::Text))
        }
        Some(p) => {
            let mut value = 0;
            // SAFETY: `p` is a valid parameter; OpenSSL writes one int.
            if unsafe { ffi::OSSL_PARAM_get_int(p, &mut value) } != 1 {
                return Err(format!(
                    "parameter {} is neither an integer nor a string",
                    name.to_string_lossy()
                )
                .into());
            }
            Ok(Some(Value::Int(value)))
        }
    }
}

/// # Safety
/// `params` is a terminated OSSL_PARAM list.
unsafe fn param_string(params: *const OSSL_PARAM, name: &CStr) -> Result<Option<String>, Failure> {
    // SAFETY: `params` is terminated (caller); `name` is a C string.
    let param = unsafe { openssl_sys::OSSL_PARAM_locate_const(params, name.as_ptr()) };
    if param.is_null() {
        return Ok(None);
    }
    let mut text: *const c_char = ptr::null();
    // SAFETY: `param` points into the caller's list; OpenSSL stores a pointer into it.
    if unsafe { openssl_sys::OSSL_PARAM_get_utf8_string_ptr(param, &mut text) } != 1
        || text.is_null()
    {
        return Err(format!("parameter {} is not a string", name.to_string_lossy()).into());
    }
    // SAFETY: OpenSSL returned a NUL-terminated string that lives as long as `params`.
    Ok(Some(
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    ))
}

/// What `set_ctx_params` accepts.
pub(super) static SETTABLE: Shared<[OSSL_PARAM; 7]> = Shared([
    ffi::describe(c"digest", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"properties", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"pad-mode", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"saltlen", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"mgf1-digest", OSSL_PARAM_UTF8_STRING),
    ffi::describe(c"mgf1-properties", OSSL_PARAM_UTF8_STRING),
    ffi::PARAM_END,
]);
