//! RFC 7512 `pkcs11:` URIs as written in `nexus.toml`: a URI that parses prints in a canonical
//! form that parses again to the same form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::pkcs11::Pkcs11Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = Pkcs11Uri::parse(text) else {
        return;
    };
    let canonical = uri.to_string();
    let again = Pkcs11Uri::parse(&canonical)
        .unwrap_or_else(|error| panic!("{canonical:?} (from {text:?}) does not parse: {error}"));
    assert_eq!(again.to_string(), canonical, "from {text:?}");
});
