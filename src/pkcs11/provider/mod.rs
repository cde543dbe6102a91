//! The in-process OpenSSL 3 provider `nexus-pkcs11`: key management and signatures for keys
//! that stay on a PKCS#11 token.
//!
//! This module and its children are the crate's only `unsafe` code: OpenSSL calls the
//! dispatch functions below through C function pointers. Every one of them runs its body in
//! [`guard`], so no panic crosses into C and every Rust error lands on OpenSSL's error queue
//! (the TLS layer's `ErrorStack` then says why a signature failed).
#![allow(unsafe_code)] // the provider ABI is C; see the module docs

mod ffi;
mod keymgmt;
mod params;
mod signature;

use std::ffi::{CStr, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::{Arc, OnceLock};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::md::MdRef;
use openssl::md_ctx::MdCtx;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::provider::Provider;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use openssl::x509::X509ReqRef;

use self::ffi::{OSSL_ALGORITHM, OSSL_CORE_HANDLE, OSSL_DISPATCH, Shared, dispatch};
use super::Pkcs11Error;
use super::key::KeyHandle;

/// The provider's name, also its property (`provider=nexus-pkcs11`).
const NAME: &CStr = c"nexus-pkcs11";
const PROPERTY: &CStr = c"provider=nexus-pkcs11";
/// Everything else keeps coming from the other providers.
const DEFAULT_PROPERTIES: &CStr = c"?provider!=nexus-pkcs11";
/// Provider keys need the fetch fixes of OpenSSL 3.0.7.
const MIN_OPENSSL: i64 = 0x3000_0070;

/// A failure inside a dispatch function, reported on OpenSSL's error queue.
type Failure = Box<dyn std::error::Error>;

/// Runs a dispatch function's body: a panic or an error becomes `failure` plus an entry on
/// OpenSSL's error queue naming `function`.
fn guard<T>(function: &'static str, failure: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            push_error(function, &message);
            failure
        }
        Err(_) => {
            push_error(
                function,
                "internal error (panic) in the nexus PKCS#11 provider",
            );
            failure
        }
    }
}

fn push_error(function: &str, message: &str) {
    const ERR_LIB_USER: c_int = 128;
    let function = std::ffi::CString::new(function).unwrap_or_default();
    let message = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: all strings are NUL-terminated and outlive the calls; the format takes one `%s`.
    unsafe {
        openssl_sys::ERR_new();
        openssl_sys::ERR_set_debug(c"nexus-pkcs11".as_ptr(), 0, function.as_ptr());
        openssl_sys::ERR_set_error(ERR_LIB_USER, 1, c"%s".as_ptr(), message.as_ptr());
    }
}

unsafe extern "C" fn provider_init(
    handle: *const OSSL_CORE_HANDLE,
    _in: *const OSSL_DISPATCH,
    out: *mut *const OSSL_DISPATCH,
    provctx: *mut *mut c_void,
) -> c_int {
    guard("provider_init", 0, || {
        // SAFETY: OpenSSL passes two writable out pointers. The provider context is unused,
        // but must not be NULL; the core handle serves.
        unsafe {
            out.write(PROVIDER.as_ptr());
            provctx.write(handle.cast_mut().cast());
        }
        Ok(1)
    })
}

unsafe extern "C" fn teardown(_provctx: *mut c_void) {}

unsafe extern "C" fn query_operation(
    _provctx: *mut c_void,
    operation_id: c_int,
    no_store: *mut c_int,
) -> *const OSSL_ALGORITHM {
    guard("provider_query_operation", ptr::null(), || {
        if !no_store.is_null() {
            // SAFETY: a non-NULL `no_store` is writable (OpenSSL).
            unsafe { no_store.write(0) };
        }
        Ok(match operation_id {
            ffi::OSSL_OP_KEYMGMT => KEYMGMT_ALGORITHMS.0.as_ptr(),
            ffi::OSSL_OP_SIGNATURE => SIGNATURE_ALGORITHMS.0.as_ptr(),
            _ => ptr::null(),
        })
    })
}

static PROVIDER: [OSSL_DISPATCH; 3] = [
    dispatch!(
        ffi::OSSL_FUNC_PROVIDER_TEARDOWN,
        ffi::ProviderTeardownFn,
        teardown
    ),
    dispatch!(
        ffi::OSSL_FUNC_PROVIDER_QUERY_OPERATION,
        ffi::ProviderQueryOperationFn,
        query_operation
    ),
    ffi::DISPATCH_END,
];

const fn algorithm(
    names: &'static CStr,
    table: &'static [OSSL_DISPATCH],
    description: &'static CStr,
) -> OSSL_ALGORITHM {
    OSSL_ALGORITHM {
        algorithm_names: names.as_ptr(),
        property_definition: PROPERTY.as_ptr(),
        implementation: table.as_ptr(),
        algorithm_description: description.as_ptr(),
    }
}

const ALGORITHM_END: OSSL_ALGORITHM = OSSL_ALGORITHM {
    algorithm_names: ptr::null(),
    property_definition: ptr::null(),
    implementation: ptr::null(),
    algorithm_description: ptr::null(),
};

// The aliases let OpenSSL map our keys to its legacy ids (EVP_PKEY_RSA, EVP_PKEY_EC), which the
// ctrl-to-param translation of EVP_PKEY_CTX_set_rsa_padding relies on.
static KEYMGMT_ALGORITHMS: Shared<[OSSL_ALGORITHM; 3]> = Shared([
    algorithm(
        c"RSA:rsaEncryption",
        &keymgmt::RSA,
        c"RSA key on a PKCS#11 token",
    ),
    algorithm(
        c"EC:id-ecPublicKey",
        &keymgmt::EC,
        c"EC key on a PKCS#11 token",
    ),
    ALGORITHM_END,
]);

static SIGNATURE_ALGORITHMS: Shared<[OSSL_ALGORITHM; 3]> = Shared([
    algorithm(
        c"RSA:rsaEncryption",
        &signature::SIGNATURE,
        c"RSA signature on a PKCS#11 token",
    ),
    algorithm(c"ECDSA", &signature::SIGNATURE, c"ECDSA on a PKCS#11 token"),
    ALGORITHM_END,
]);

/// Registers and loads the provider in the default library context, once per process.
pub(crate) fn ensure_loaded() -> Result<(), Pkcs11Error> {
    static LOADED: OnceLock<Result<(Provider, Provider), String>> = OnceLock::new();
    if openssl::version::number() < MIN_OPENSSL {
        return Err(Pkcs11Error::OpenSslTooOld {
            version: openssl::version::version().to_owned(),
        });
    }
    let loaded = LOADED.get_or_init(|| load().map_err(|error| error.to_string()));
    match loaded {
        Ok(_) => Ok(()),
        Err(message) => Err(Pkcs11Error::ModuleLoad {
            module: "nexus-pkcs11 (OpenSSL provider)".into(),
            reason: message.clone(),
        }),
    }
}

fn load() -> Result<(Provider, Provider), ErrorStack> {
    // SAFETY: `NAME` is a static C string; `provider_init` has the `OSSL_provider_init_fn` type.
    if unsafe { ffi::OSSL_PROVIDER_add_builtin(ptr::null_mut(), NAME.as_ptr(), provider_init) } != 1
    {
        return Err(ErrorStack::get());
    }
    // Loading any provider explicitly stops the implicit fallback to "default": load it too.
    let default = Provider::load(None, "default")?;
    let ours = Provider::load(None, "nexus-pkcs11")?;
    // SAFETY: a static C string; NULL is the default library context.
    if unsafe { ffi::EVP_set_default_properties(ptr::null_mut(), DEFAULT_PROPERTIES.as_ptr()) } != 1
    {
        return Err(ErrorStack::get());
    }
    Ok((default, ours))
}

/// Owns an `EVP_PKEY_CTX`.
struct PkeyCtx(*mut openssl_sys::EVP_PKEY_CTX);

impl Drop for PkeyCtx {
    fn drop(&mut self) {
        // SAFETY: we own the context (or it is NULL, which EVP_PKEY_CTX_free accepts).
        unsafe { openssl_sys::EVP_PKEY_CTX_free(self.0) };
    }
}

/// Builds the OpenSSL key for a token key: our keymgmt, holding `public` and `signer`.
pub(crate) fn private_key(
    public: &PKey<Public>,
    signer: &Arc<KeyHandle>,
) -> Result<PKey<Private>, Pkcs11Error> {
    let failed = |source| Pkcs11Error::OpenSsl {
        action: "make an OpenSSL key for the token key",
        source,
    };
    let name = match public.id() {
        Id::RSA => c"RSA",
        _ => c"EC",
    };
    // SAFETY: static C strings; NULL is the default library context. Freed by `PkeyCtx`.
    let ctx = PkeyCtx(unsafe {
        openssl_sys::EVP_PKEY_CTX_new_from_name(ptr::null_mut(), name.as_ptr(), PROPERTY.as_ptr())
    });
    if ctx.0.is_null() {
        return Err(failed(ErrorStack::get()));
    }
    let mut public_ptr: *mut c_void = ptr::from_ref(public).cast_mut().cast();
    let mut signer_ptr: *mut c_void = ptr::from_ref(signer).cast_mut().cast();
    let mut pkey = ptr::null_mut();
    // SAFETY: the parameters point to `public` and `signer`, which outlive this call; our
    // `import` only clones them. `ctx` is live; OpenSSL writes a new key into `pkey`.
    let ok = unsafe {
        let mut params = [
            ffi::OSSL_PARAM_construct_octet_ptr(
                keymgmt::PARAM_PUBLIC.as_ptr(),
                &mut public_ptr,
                size_of::<PKey<Public>>(),
            ),
            ffi::OSSL_PARAM_construct_octet_ptr(
                keymgmt::PARAM_SIGNER.as_ptr(),
                &mut signer_ptr,
                size_of::<Arc<KeyHandle>>(),
            ),
            openssl_sys::OSSL_PARAM_construct_end(),
        ];
        openssl_sys::EVP_PKEY_fromdata_init(ctx.0) == 1
            && openssl_sys::EVP_PKEY_fromdata(
                ctx.0,
                &mut pkey,
                ffi::EVP_PKEY_KEYPAIR,
                params.as_mut_ptr(),
            ) == 1
    };
    if !ok || pkey.is_null() {
        return Err(failed(ErrorStack::get()));
    }
    // SAFETY: `pkey` is a new key whose one reference we now own.
    Ok(unsafe { PKey::from_ptr(pkey) })
}

/// Signs `csr` with the token key `key` and `md`: RSA-PSS (salt as long as the digest, MGF1
/// with `md`) when `pss`, else PKCS#1 v1.5 for RSA and ECDSA for EC keys.
pub(crate) fn sign_request(
    csr: &X509ReqRef,
    key: &PKey<Private>,
    md: &MdRef,
    pss: bool,
) -> Result<(), Pkcs11Error> {
    let failed = |source| Pkcs11Error::OpenSsl {
        action: "sign the certificate request with the token key",
        source,
    };
    // Leftovers on the queue (e.g. OpenSSL's engine probes at start-up) would be reported as
    // the cause of a failure here.
    drop(ErrorStack::get());
    let mut ctx = MdCtx::new().map_err(failed)?;
    let pkey_ctx = ctx.digest_sign_init(Some(md), key).map_err(failed)?;
    if pss {
        pkey_ctx
            .set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|()| pkey_ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH))
            .and_then(|()| pkey_ctx.set_rsa_mgf1_md(md))
            .map_err(failed)?;
    }
    // SAFETY: both pointers are live for the call; OpenSSL writes the signature into `csr`,
    // which it owns exclusively here (we hold the only reference).
    let signed = unsafe { ffi::X509_REQ_sign_ctx(csr.as_ptr(), ctx.as_ptr()) };
    if signed <= 0 {
        return Err(failed(ErrorStack::get()));
    }
    Ok(())
}
