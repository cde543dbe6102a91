//! The two OpenSSL calls the safe `openssl` crate does not offer safely: resuming a cached
//! session and reading the CA names a server sent with its certificate request.
#![allow(unsafe_code)] // the only unsafe code of the TLS layer; each block says why it holds

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::{SslRef, SslSession};
use openssl::stack::StackRef;
use openssl::x509::X509Name;

unsafe extern "C" {
    // libssl, OpenSSL >= 1.1.0; openssl-sys declares only the setter.
    fn SSL_get_client_CA_list(ssl: *const openssl_sys::SSL)
    -> *mut openssl_sys::stack_st_X509_NAME;
}

/// Offers `session` for resumption on a connection not yet started.
///
/// Sessions come only from [`super::client::SessionCache`], which each client context owns and
/// fills from its own new-session callback, so `session` always belongs to `ssl`'s context.
pub fn resume(ssl: &mut SslRef, session: &SslSession) -> Result<(), ErrorStack> {
    // SAFETY: `SSL_set_session` requires a session created by the same SSL_CTX (a session of
    // another context may carry other verification settings). The cache handing us `session` is
    // owned by the context of `ssl` (see `ClientContext::new`), so that holds; OpenSSL takes its
    // own reference, so `session` may be dropped afterwards.
    unsafe { ssl.set_session(session) }
}

/// CA names the server listed in its certificate request (client side, after the handshake);
/// empty when it asked for none or sent no names.
pub fn requested_ca_names(ssl: &SslRef) -> Vec<String> {
    // SAFETY: `ssl` is a live SSL for the duration of the borrow; the returned stack is owned by
    // it (get0 semantics: not freed by us) and may be NULL.
    let list = unsafe { SSL_get_client_CA_list(ssl.as_ptr()) };
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: non-null and owned by `ssl`, which outlives this borrow; only read here.
    let names: &StackRef<X509Name> = unsafe { StackRef::from_ptr(list) };
    names.iter().map(super::name_text).collect()
}
