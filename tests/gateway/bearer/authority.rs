//! The test authorization server: signing keys made here (the openssl crate), their JWKS and
//! discovery documents served over HTTPS by `tests/servers/jwks_server.py`, and tokens signed
//! with them.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{ISSUER, RESOURCE};
use crate::pki::TestPki;
use crate::support::{WAIT, tools};

/// A signing key of the test authorization server and its public JWK.
pub(super) struct Key {
    kid: String,
    /// The JWS `alg` it signs with.
    pub(super) alg: &'static str,
    /// The private key (tests reuse its public half as an HMAC secret).
    pub(super) key: PKey<Private>,
}

impl Key {
    pub(super) fn rsa(kid: &str, alg: &'static str) -> Self {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    pub(super) fn ec(kid: &str, alg: &'static str) -> Self {
        let curve = if alg == "ES256" {
            Nid::X9_62_PRIME256V1
        } else {
            Nid::SECP384R1
        };
        let group = EcGroup::from_curve_name(curve).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    pub(super) fn ed25519(kid: &str) -> Self {
        let key = PKey::generate_ed25519().unwrap();
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            key,
        }
    }

    pub(super) fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.key.id() {
            Id::RSA => {
                let rsa = self.key.rsa().unwrap();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                       "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
            }
            Id::EC => {
                let ec = self.key.ec_key().unwrap();
                let width = if self.alg == "ES256" { 65 } else { 97 };
                let point = ec
                    .public_key()
                    .to_bytes(
                        ec.group(),
                        PointConversionForm::UNCOMPRESSED,
                        &mut BigNumContext::new().unwrap(),
                    )
                    .unwrap();
                assert_eq!(point.len(), width);
                let half = (width - 1) / 2;
                let crv = if self.alg == "ES256" {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "kid": self.kid, "crv": crv,
                       "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            _ => json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519",
                        "x": b64(&self.key.raw_public_key().unwrap())}),
        }
    }

    /// A compact JWS of `claims` with this key.
    pub(super) fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}),
            claims,
        )
    }

    pub(super) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(self.signature(input.as_bytes()))
        )
    }

    pub(super) fn signature(&self, input: &[u8]) -> Vec<u8> {
        if self.alg == "EdDSA" {
            let mut signer = Signer::new_without_digest(&self.key).unwrap();
            return signer.sign_oneshot_to_vec(input).unwrap();
        }
        let digest = match &self.alg[2..] {
            "256" => MessageDigest::sha256(),
            "384" => MessageDigest::sha384(),
            _ => MessageDigest::sha512(),
        };
        let mut signer = Signer::new(digest, &self.key).unwrap();
        if self.alg.starts_with("PS") {
            signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            signer
                .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .unwrap();
        }
        signer.update(input).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        if !self.alg.starts_with("ES") {
            return signature;
        }
        // JOSE wants fixed-width r || s, OpenSSL gives DER.
        let width = if self.alg == "ES256" { 32 } else { 48 };
        let sig = EcdsaSig::from_der(&signature).unwrap();
        let mut raw = sig.r().to_vec_padded(width).unwrap();
        raw.extend(sig.s().to_vec_padded(width).unwrap());
        raw
    }
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims the test gateway accepts.
pub(super) fn claims() -> Value {
    json!({"iss": ISSUER, "aud": RESOURCE, "sub": "alice", "exp": now() + 300,
           "iat": now(), "scope": "tools:read tools:call"})
}

pub(super) fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

/// The test authorization server: a directory of documents served over HTTPS.
pub(super) struct AuthServer {
    /// The documents served.
    pub(super) dir: tempfile::TempDir,
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl AuthServer {
    /// Serves `keys` as `/jwks.json` on `port` (0: any) with the PKI's server certificate.
    pub(super) async fn start(pki: &TestPki, port: u16, keys: &[&Key]) -> Self {
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        Self::launch(&cert, &key, port, keys, None).await
    }

    /// [`Self::start`] requiring client certificates issued by the test root CA.
    pub(super) async fn start_mutual(pki: &TestPki, keys: &[&Key]) -> Self {
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        Self::launch(&cert, &key, 0, keys, Some(&pki.path("ca.pem"))).await
    }

    /// Serves `keys` with `cert` and `key`, requiring client certificates issued by `ca`
    /// when given.
    pub(super) async fn launch(
        cert: &Path,
        key: &Path,
        port: u16,
        keys: &[&Key],
        ca: Option<&Path>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        publish_in(dir.path(), keys);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/jwks_server.py");
        let mut child = Command::new(tools().join("bin/python"))
            .arg(script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--certfile")
            .arg(cert)
            .arg("--keyfile")
            .arg(key)
            .args(["--port", &port.to_string()])
            .args(ca.iter().flat_map(|ca| [Path::new("--cafile"), ca]))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("jwks_server.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("jwks_server.py did not start")
            .unwrap()
            .expect("jwks_server.py exited");
        let port = first.strip_prefix("LISTENING ").unwrap().parse().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        });
        Self {
            dir,
            port,
            requests,
            _child: child,
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn publish(&self, keys: &[&Key]) {
        publish_in(self.dir.path(), keys);
    }

    /// Writes a document (atomically: a fetch never sees half a file).
    pub(super) fn write(&self, path: &str, document: &Value) {
        write_atomically(&self.dir.path().join(path), document);
    }

    /// Requests for `path` so far.
    pub(super) fn fetches(&self, path: &str) -> usize {
        let line = format!("GET {path}");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == line)
            .count()
    }
}

pub(super) fn publish_in(dir: &Path, keys: &[&Key]) {
    let keys: Vec<Value> = keys.iter().map(|key| key.jwk()).collect();
    write_atomically(&dir.join("jwks.json"), &json!({ "keys": keys }));
}

pub(super) fn write_atomically(path: &Path, document: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let partial = path.with_extension("partial");
    std::fs::write(&partial, document.to_string()).unwrap();
    std::fs::rename(partial, path).unwrap();
}
