//! Signature operations ("RSA" and "ECDSA") for token keys: hash here, sign on the token.
//!
//! libssl calls `digest_sign_init` (digest name), `set_ctx_params` (`pad-mode`, `saltlen`),
//! then the one-shot `digest_sign` twice: once for the size, once to sign.
//! `openssl::sign::Signer` uses `digest_sign_update`/`final` and `dupctx` instead. Signing a
//! certificate request also asks `get_ctx_params` for the `algorithm-id`.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use openssl::hash::Hasher;
use openssl::pkey::{Id, PKey, Public};
use openssl_sys::OSSL_PARAM;

use super::ffi::{self, OSSL_DISPATCH, Shared, dispatch, size_t};
use super::keymgmt::key_ref;
use super::params::{self, Padding, SaltLen};
use super::{Failure, guard};
use crate::pkcs11::algorithm_id;
use crate::pkcs11::key::KeyHandle;
use crate::pkcs11::scheme::{Hash, Scheme};

/// One signature context.
#[derive(Clone)]
struct SignCtx {
    public: Option<PKey<Public>>,
    signer: Option<Arc<KeyHandle>>,
    hash: Hash,
    padding: Padding,
    salt: SaltLen,
    hasher: Option<Hasher>,
}

impl SignCtx {
    fn scheme(&self) -> Result<Scheme, Failure> {
        let public = self
            .public
            .as_ref()
            .ok_or("digest_sign_init was not called")?;
        match public.id() {
            Id::EC => Ok(Scheme::Ecdsa),
            Id::RSA => Ok(match self.padding {
                Padding::Pkcs1 => Scheme::RsaPkcs1 { hash: self.hash },
                Padding::Pss => {
                    // emLen = ceil((modBits - 1) / 8); the largest salt is emLen - hLen - 2.
                    let em_len = (public.bits() as usize - 1).div_ceil(8);
                    let max = em_len.saturating_sub(self.hash.len() + 2);
                    let salt_len = match self.salt {
                        SaltLen::Digest => self.hash.len(),
                        SaltLen::Max => max,
                        SaltLen::Exactly(n) if n <= max => n,
                        SaltLen::Exactly(n) => {
                            return Err(format!("PSS salt length {n} exceeds {max}").into());
                        }
                    };
                    Scheme::RsaPss {
                        hash: self.hash,
                        salt_len,
                    }
                }
            }),
            other => Err(format!("unsupported key type {other:?}").into()),
        }
    }

    fn max_size(&self) -> Result<usize, Failure> {
        let public = self
            .public
            .as_ref()
            .ok_or("digest_sign_init was not called")?;
        Ok(public.size())
    }

    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, Failure> {
        let signer = self.signer.as_ref().ok_or("the key is not a token key")?;
        Ok(signer.sign(self.scheme()?, digest)?)
    }
}

/// Borrows a signature context.
///
/// # Safety
/// `ctx` is NULL or a pointer returned by `newctx`/`dupctx` and not yet freed.
unsafe fn ctx_mut<'a>(ctx: *mut c_void) -> Result<&'a mut SignCtx, Failure> {
    // SAFETY: per the contract, a non-NULL pointer is a live `Box<SignCtx>`, used by one
    // thread at a time (OpenSSL contexts are not shared between threads).
    unsafe { ctx.cast::<SignCtx>().as_mut() }.ok_or_else(|| "NULL signature context".into())
}

unsafe extern "C" fn newctx(_provctx: *mut c_void, _propq: *const c_char) -> *mut c_void {
    guard("signature_newctx", ptr::null_mut(), || {
        let ctx = SignCtx {
            public: None,
            signer: None,
            hash: Hash::Sha256,
            padding: Padding::Pkcs1,
            salt: SaltLen::Max,
            hasher: None,
        };
        Ok(Box::into_raw(Box::new(ctx)).cast())
    })
}

unsafe extern "C" fn freectx(ctx: *mut c_void) {
    guard("signature_freectx", (), || {
        if !ctx.is_null() {
            // SAFETY: OpenSSL frees each context from `newctx`/`dupctx` once.
            drop(unsafe { Box::from_raw(ctx.cast::<SignCtx>()) });
        }
        Ok(())
    })
}

unsafe extern "C" fn dupctx(ctx: *mut c_void) -> *mut c_void {
    guard("signature_dupctx", ptr::null_mut(), || {
        // SAFETY: OpenSSL passes a context from `newctx`.
        let copy = unsafe { ctx_mut(ctx) }?.clone();
        Ok(Box::into_raw(Box::new(copy)).cast())
    })
}

unsafe extern "C" fn digest_sign_init(
    ctx: *mut c_void,
    mdname: *const c_char,
    provkey: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard("signature_digest_sign_init", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx` and a key object from our keymgmt.
        let (ctx, key) = unsafe { (ctx_mut(ctx)?, key_ref(provkey)?) };
        ctx.public = key.public.clone();
        ctx.signer = key.signer.clone();
        if !mdname.is_null() {
            // SAFETY: a non-NULL `mdname` is a C string owned by the caller.
            let name = unsafe { CStr::from_ptr(mdname) }.to_string_lossy();
            ctx.hash =
                Hash::from_name(&name).ok_or_else(|| format!("unsupported digest {name}"))?;
        }
        ctx.hasher = Some(Hasher::new(ctx.hash.message_digest())?);
        // SAFETY: `params` is NULL or a terminated list (OpenSSL).
        unsafe { apply_params(ctx, params) }?;
        Ok(1)
    })
}

unsafe extern "C" fn digest_sign_update(ctx: *mut c_void, data: *const u8, len: size_t) -> c_int {
    guard("signature_digest_sign_update", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx`.
        let ctx = unsafe { ctx_mut(ctx) }?;
        let hasher = ctx
            .hasher
            .as_mut()
            .ok_or("digest_sign_init was not called")?;
        // SAFETY: `data` holds `len` readable bytes (OpenSSL); empty input may be NULL.
        hasher.update(unsafe { bytes(data, len) })?;
        Ok(1)
    })
}

unsafe extern "C" fn digest_sign_final(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut size_t,
    sigsize: size_t,
) -> c_int {
    guard("signature_digest_sign_final", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx`.
        let ctx = unsafe { ctx_mut(ctx) }?;
        let signature = if sig.is_null() {
            None
        } else {
            let hasher = ctx
                .hasher
                .as_mut()
                .ok_or("digest_sign_init was not called")?;
            let digest = hasher.finish()?;
            Some(ctx.sign_digest(&digest)?)
        };
        // SAFETY: `sig` (when non-NULL) has `sigsize` writable bytes; `siglen` is writable.
        unsafe { output(ctx, signature, sig, siglen, sigsize) }
    })
}

unsafe extern "C" fn digest_sign(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut size_t,
    sigsize: size_t,
    tbs: *const u8,
    tbslen: size_t,
) -> c_int {
    guard("signature_digest_sign", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx`.
        let ctx = unsafe { ctx_mut(ctx) }?;
        let signature = if sig.is_null() {
            None
        } else {
            // SAFETY: `tbs` holds `tbslen` readable bytes (OpenSSL).
            let digest =
                openssl::hash::hash(ctx.hash.message_digest(), unsafe { bytes(tbs, tbslen) })?;
            Some(ctx.sign_digest(&digest)?)
        };
        // SAFETY: `sig` (when non-NULL) has `sigsize` writable bytes; `siglen` is writable.
        unsafe { output(ctx, signature, sig, siglen, sigsize) }
    })
}

/// Writes the signature (or, for a size query, the maximum size).
///
/// # Safety
/// `siglen` is writable; `sig`, when `signature` is `Some`, has `sigsize` writable bytes.
unsafe fn output(
    ctx: &SignCtx,
    signature: Option<Vec<u8>>,
    sig: *mut u8,
    siglen: *mut size_t,
    sigsize: size_t,
) -> Result<c_int, Failure> {
    let len = match signature {
        None => ctx.max_size()?,
        Some(signature) => {
            if signature.len() > sigsize {
                return Err(format!(
                    "signature buffer too small ({sigsize} < {})",
                    signature.len()
                )
                .into());
            }
            // SAFETY: `sig` has room for `sigsize >= signature.len()` bytes (caller).
            unsafe { ptr::copy_nonoverlapping(signature.as_ptr(), sig, signature.len()) };
            signature.len()
        }
    };
    // SAFETY: `siglen` is writable (caller).
    unsafe { siglen.write(len) };
    Ok(1)
}

/// A byte slice from C; NULL with length 0 is the empty slice.
///
/// # Safety
/// `data` is NULL with `len == 0`, or points to `len` readable bytes alive for `'a`.
unsafe fn bytes<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if data.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: non-NULL `data` points to `len` readable bytes (caller).
    unsafe { std::slice::from_raw_parts(data, len) }
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, params: *const OSSL_PARAM) -> c_int {
    guard("signature_set_ctx_params", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx` and a terminated list (or NULL).
        unsafe { apply_params(ctx_mut(ctx)?, params) }?;
        Ok(1)
    })
}

/// Applies the context parameters in `params`.
///
/// # Safety
/// `params` is NULL or a terminated OSSL_PARAM list.
unsafe fn apply_params(ctx: &mut SignCtx, params: *const OSSL_PARAM) -> Result<(), Failure> {
    // SAFETY: `params` is NULL or terminated (caller).
    let read = unsafe { params::read(params) }?;
    if let Some(hash) = read.digest {
        ctx.hash = hash;
        ctx.hasher = Some(Hasher::new(hash.message_digest())?);
    }
    ctx.padding = read.padding.unwrap_or(ctx.padding);
    ctx.salt = read.salt.unwrap_or(ctx.salt);
    match read.mgf1_digest {
        Some(mgf1) if mgf1 != ctx.hash => Err("MGF1 must use the signature digest".into()),
        _ => Ok(()),
    }
}

/// Answers `algorithm-id`, which OpenSSL needs to sign a certificate request with our key.
unsafe extern "C" fn get_ctx_params(ctx: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    guard("signature_get_ctx_params", 0, || {
        // SAFETY: OpenSSL passes a context from `newctx`.
        let ctx = unsafe { ctx_mut(ctx) }?;
        // SAFETY: `params` is NULL or a terminated list (OpenSSL); NULL finds nothing.
        let param = unsafe { openssl_sys::OSSL_PARAM_locate(params, c"algorithm-id".as_ptr()) };
        if param.is_null() {
            return Ok(1);
        }
        let der = algorithm_id::encode(ctx.scheme()?, ctx.hash);
        // SAFETY: `param` is an element of the caller's list; OpenSSL copies `der` into it.
        let set =
            unsafe { ffi::OSSL_PARAM_set_octet_string(param, der.as_ptr().cast(), der.len()) };
        if set != 1 {
            return Err("the algorithm-id buffer is too small".into());
        }
        Ok(1)
    })
}

unsafe extern "C" fn gettable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    GETTABLE.0.as_ptr()
}

/// What `get_ctx_params` answers.
static GETTABLE: Shared<[OSSL_PARAM; 2]> = Shared([
    ffi::describe(c"algorithm-id", ffi::OSSL_PARAM_OCTET_STRING),
    ffi::PARAM_END,
]);

unsafe extern "C" fn settable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    params::SETTABLE.0.as_ptr()
}

/// The signature dispatch table (shared by RSA and ECDSA; the key decides the scheme).
pub(super) static SIGNATURE: [OSSL_DISPATCH; 12] = [
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_NEWCTX,
        ffi::SignatureNewctxFn,
        newctx
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
        ffi::SignatureDigestSignInitFn,
        digest_sign_init
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
        ffi::SignatureDigestSignUpdateFn,
        digest_sign_update
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
        ffi::SignatureDigestSignFinalFn,
        digest_sign_final
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_DIGEST_SIGN,
        ffi::SignatureDigestSignFn,
        digest_sign
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_FREECTX,
        ffi::SignatureFreectxFn,
        freectx
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_DUPCTX,
        ffi::SignatureDupctxFn,
        dupctx
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
        ffi::SignatureGetCtxParamsFn,
        get_ctx_params
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
        ffi::SignatureGettableCtxParamsFn,
        gettable_ctx_params
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS,
        ffi::SignatureSetCtxParamsFn,
        set_ctx_params
    ),
    dispatch!(
        ffi::OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
        ffi::SignatureSettableCtxParamsFn,
        settable_ctx_params
    ),
    ffi::DISPATCH_END,
];
