//! An access token as a client sends it, and a JWKS document as an authorization server sends
//! it (the first byte chooses): parsing never panics, and no token verifies against keys whose
//! private halves nobody has (they were deleted when this file was written).
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nexus::access::jwk::KeySet;
use nexus::access::jwt::{self, Rules};

/// RSA-2048, P-256 and Ed25519 public keys.
const JWKS: &str = r#"{"keys": [{"kty": "RSA", "kid": "r", "n": "qC1kOTP_IQkjOWBcqaUGWPhPEz1Iv5YVIeFgyy3B6UteHBicFqnNCMD9Wegutr9KyOYbsyL4WA8XVJ2XlyQDjbmzYVBECWUkPpw67ZhbRy6SIit19_3LH0pqWmD_uV4k7sucC6bqsMs-wh17EDk71-lgsueMe52FBDqPWSqQ1UCs2DpyiPZKeVDb02cRcaPeB0iCNJ2W_US2v-I6KbYumhgERtqSHfq8FapULonxFfSUumnqRq9hZLCEmNbI288tanU-cvls5YWdWpv0mkBriCZcKsTFTumcUXuq_9rRxGQgDlVa1Nvt6iFJhVzSOegMsh4_rmG9dcngEI0MtrcwOQ", "e": "AQAB"}, {"kty": "EC", "kid": "e", "crv": "P-256", "x": "uygLXY8psxkztgknenTmNZSTYKXjP1xDFZL77mm4FTo", "y": "hAI_wTRAoBPxiYNcok3tYG5jlCKNRGuHIVzcHDzVdR4"}, {"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": "cG6oSk2Pyx90fcfXbR7pD2RoQ1xAvUNvvIhdb_mNDH0"}]}"#;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let keys = KeySet::parse(JWKS.as_bytes()).expect("the fixed JWKS parses");
    assert_eq!(keys.keys.len(), 3);
    keys
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = KeySet::parse(rest);
        return;
    }
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(jws) = jwt::parse(token) else {
        return;
    };
    assert!(
        jws.verify(&KEYS).is_err(),
        "a token verified without the private key"
    );
    let rules = Rules {
        issuer: Some("https://as".to_owned()),
        audience: "https://gw/mcp".to_owned(),
        leeway: Duration::from_secs(60),
    };
    let _ = rules.check(jws.claims, 1_000_000);
});
