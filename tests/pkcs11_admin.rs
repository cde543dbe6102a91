//! `nexus pkcs11 keygen`, `csr`, `import-cert` and `check` on a SoftHSM2 token: the real
//! binary as a child with the token's `SOFTHSM2_CONF`, OpenSSL's command line as the judge of
//! what it writes, pkcs11-spy as the witness of what it asks the token for.

#[path = "pkcs11_support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;

use support::{PIN, Pki, SPY, TOKEN};

/// Runs `nexus pkcs11 <args>` with the token's module (or pkcs11-spy in front of it, logging
/// to `spy`) and PIN file.
fn nexus(pki: &Pki, spy: Option<&Path>, args: &[&str]) -> Output {
    let mut command = pki.command(env!("CARGO_BIN_EXE_nexus"));
    let module = match spy {
        Some(log) => {
            command
                .env("PKCS11SPY", &pki.module)
                .env("PKCS11SPY_OUTPUT", log);
            Path::new(SPY)
        }
        None => pki.module.as_path(),
    };
    command
        .arg("pkcs11")
        .args(args)
        .arg("--module")
        .arg(module)
        .arg("--pin-file")
        .arg(&pki.pin_file);
    command.output().expect("run nexus")
}

/// The output of a run that must succeed; stdout, trimmed.
#[track_caller]
fn success(output: &Output, what: &str) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    assert!(
        !stdout.contains(PIN) && !stderr.contains(PIN),
        "{what} printed the PIN"
    );
    stdout.trim().to_owned()
}

/// The standard error of a run that must fail.
#[track_caller]
fn failure(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!stderr.contains(PIN), "{what} printed the PIN");
    stderr
}

/// `keygen --token nexus --label LABEL --id ID --type TYPE`; returns the URI printed.
fn keygen(pki: &Pki, spy: Option<&Path>, label: &str, id: &str, key_type: &str) -> String {
    let args = [
        "keygen", "--token", TOKEN, "--label", label, "--id", id, "--type", key_type,
    ];
    success(&nexus(pki, spy, &args), &format!("keygen {key_type}"))
}

#[test]
fn keygen_makes_every_type_sensitive_and_never_extractable() {
    let pki = Pki::new();
    let log = pki.path("spy-keygen.log");
    let types = [
        ("k-rsa2048", "a1", "rsa:2048", "RSA, 2048 bits"),
        ("k-rsa3072", "a2", "rsa:3072", "RSA, 3072 bits"),
        ("k-p256", "a3", "ec:p256", "EC, P-256"),
        ("k-p384", "a4", "ec:p384", "EC, P-384"),
    ];
    for (label, id, key_type, _) in types {
        let uri = keygen(&pki, Some(&log), label, id, key_type);
        assert_eq!(
            uri,
            format!(
                "pkcs11:token={TOKEN};object={label};id=%{};type=private",
                id.to_uppercase()
            )
        );
    }
    let listing = success(&nexus(&pki, None, &["list"]), "list");
    for (label, id, _, kind) in types {
        let line = format!(
            "private key: object={label} id=%{} {kind}, sensitive, non-extractable",
            id.to_uppercase()
        );
        assert!(listing.contains(&line), "missing {line:?} in:\n{listing}");
    }
    // What nexus asked the token for, in every private-key template.
    let spy = std::fs::read_to_string(&log).unwrap();
    let generated = spy.matches("C_GenerateKeyPair").count();
    assert_eq!(
        generated,
        types.len(),
        "one C_GenerateKeyPair per key:\n{spy}"
    );
    for attribute in [
        "CKA_SENSITIVE",
        "CKA_EXTRACTABLE",
        "CKA_SIGN",
        "CKA_DECRYPT",
    ] {
        let values = template_values(&spy, attribute);
        let expected = if matches!(attribute, "CKA_EXTRACTABLE" | "CKA_DECRYPT") {
            "False"
        } else {
            "True"
        };
        assert_eq!(
            values.len(),
            types.len(),
            "{attribute} in every template:\n{spy}"
        );
        assert!(
            values.iter().all(|value| value == expected),
            "{attribute} must be {expected}: {values:?}"
        );
    }
}

/// The values pkcs11-spy logged for `attribute` in `C_GenerateKeyPair` private-key templates.
fn template_values(spy: &str, attribute: &str) -> Vec<String> {
    let mut in_private = false;
    let mut values = Vec::new();
    for line in spy.lines() {
        let line = line.trim();
        if line.contains("pPrivateKeyTemplate") {
            in_private = true;
        } else if line.starts_with("[in]")
            || line.starts_with("[out]")
            || line.starts_with("Returned")
        {
            in_private = false;
        } else if in_private && let Some(rest) = line.strip_prefix(attribute) {
            values.push(rest.trim().trim_matches('"').to_owned());
        }
    }
    values
}

#[test]
fn keygen_refuses_a_taken_label_or_id() {
    let pki = Pki::new();
    // The support token already holds rsakey with id 01.
    let args = [
        "keygen", "--token", TOKEN, "--label", "rsakey", "--type", "ec:p256",
    ];
    let stderr = failure(&nexus(&pki, None, &args), "keygen over rsakey");
    assert!(
        stderr.contains("token \"nexus\" already has an object with object=rsakey"),
        "{stderr}"
    );
    let args = [
        "keygen", "--token", TOKEN, "--label", "fresh", "--id", "01", "--type", "ec:p256",
    ];
    let stderr = failure(&nexus(&pki, None, &args), "keygen over id 01");
    assert!(
        stderr.contains("already has an object with id=%01"),
        "{stderr}"
    );
    let args = [
        "keygen", "--token", TOKEN, "--label", "fresh", "--id", "0x1", "--type", "ec:p256",
    ];
    let stderr = failure(&nexus(&pki, None, &args), "keygen with a bad id");
    assert!(stderr.contains("--id 0x1 is not hex bytes"), "{stderr}");
    // Without --id, a random one; the key is then usable by URI.
    let args = [
        "keygen", "--token", TOKEN, "--label", "fresh", "--type", "ec:p256",
    ];
    let uri = success(&nexus(&pki, None, &args), "keygen with a random id");
    assert!(
        uri.starts_with("pkcs11:token=nexus;object=fresh;id=%"),
        "{uri}"
    );
    let result = pki.probe(&["load", "--key", &uri]);
    assert_eq!(result["ok"], true, "{result:#}");
}

/// `csr --key URI --subject SUBJECT --client -o FILE` plus `extra`.
fn csr(pki: &Pki, spy: Option<&Path>, key: &str, out: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "csr",
        "--key",
        key,
        "--subject",
        "/CN=nexus-gateway/O=Nexus Tests",
        "--san",
        "DNS:gw.example.com,IP:127.0.0.1",
        "--client",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    nexus(pki, spy, &args)
}

/// `openssl req -verify` on `csr`, then the test CA issues `cert` for it.
fn verify_and_issue(pki: &Pki, csr: &str, cert: &str) -> String {
    let text = pki.run(
        "openssl",
        &["req", "-in", csr, "-verify", "-noout", "-text"],
    );
    pki.run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-days",
            "2",
            "-copy_extensions",
            "copy",
            "-out",
            cert,
        ],
    );
    pki.run("openssl", &["verify", "-CAfile", "ca.crt", cert]);
    text
}

#[test]
fn csr_of_every_key_type_verifies_and_the_ca_signs_it() {
    let pki = Pki::new();
    let log = pki.path("spy-csr.log");
    let cases: [(&str, &[&str], &str, &str); 4] = [
        ("rsakey", &[], "sha256WithRSAEncryption", "CKM_RSA_PKCS"),
        ("rsakey", &["--rsa-pss"], "rsassaPss", "CKM_RSA_PKCS_PSS"),
        ("eckey", &[], "ecdsa-with-SHA256", "CKM_ECDSA"),
        ("ec384key", &[], "ecdsa-with-SHA384", "CKM_ECDSA"),
    ];
    for (n, (label, extra, algorithm, mechanism)) in cases.into_iter().enumerate() {
        let _ = std::fs::remove_file(&log);
        let key = format!("pkcs11:token={TOKEN};object={label};type=private");
        let (file, cert) = (format!("{n}.csr"), format!("{n}.crt"));
        success(&csr(&pki, Some(&log), &key, &file, extra), &file);
        let text = verify_and_issue(&pki, &file, &cert);
        for expected in [
            &format!("Signature Algorithm: {algorithm}"),
            "Subject: CN = nexus-gateway, O = Nexus Tests",
            "DNS:gw.example.com, IP Address:127.0.0.1",
            "TLS Web Client Authentication",
        ] {
            assert!(
                text.contains(expected),
                "{label} {extra:?}: no {expected:?} in:\n{text}"
            );
        }
        let spy = std::fs::read_to_string(&log).unwrap();
        let used = support::mechanisms_used(&spy);
        assert_eq!(used, [mechanism], "{label} {extra:?} signed with:\n{spy}");
    }
}

#[test]
fn csr_names_what_is_wrong() {
    let pki = Pki::new();
    let ec = format!("pkcs11:token={TOKEN};object=eckey;type=private");
    let stderr = failure(&csr(&pki, None, &ec, "x.csr", &["--rsa-pss"]), "PSS on EC");
    assert!(stderr.contains("--rsa-pss needs an RSA key"), "{stderr}");
    let args = ["csr", "--key", &ec, "--subject", "CN=x"];
    let stderr = failure(&nexus(&pki, None, &args), "subject without /");
    assert!(
        stderr.contains("--subject \"CN=x\": it must start with /"),
        "{stderr}"
    );
    let args = ["csr", "--key", &ec, "--subject", "/CN=x", "--san", "URI:x"];
    let stderr = failure(&nexus(&pki, None, &args), "bad SAN");
    assert!(
        stderr.contains("--san URI:x: use DNS:name or IP:address"),
        "{stderr}"
    );
    let missing = format!("pkcs11:token={TOKEN};object=nothere;type=private");
    let args = ["csr", "--key", &missing, "--subject", "/CN=x"];
    let stderr = failure(&nexus(&pki, None, &args), "missing key");
    assert!(stderr.contains("no private key matching"), "{stderr}");
    // Standard output by default: a PEM request.
    let args = ["csr", "--key", &ec, "--subject", "/CN=stdout"];
    let pem = success(&nexus(&pki, None, &args), "csr to stdout");
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
}

/// `import-cert --token nexus --label LABEL --cert FILE` plus `extra`.
fn import_cert(pki: &Pki, label: &str, cert: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "import-cert",
        "--token",
        TOKEN,
        "--label",
        label,
        "--cert",
        cert,
    ];
    args.extend_from_slice(extra);
    nexus(pki, None, &args)
}

#[test]
fn import_cert_stores_the_matching_certificate_with_the_key_id() {
    let pki = Pki::new();
    let key = format!("pkcs11:token={TOKEN};object=rsakey;type=private");
    success(&csr(&pki, None, &key, "rsa.csr", &[]), "csr");
    verify_and_issue(&pki, "rsa.csr", "rsa.crt");
    let stderr = failure(
        &import_cert(&pki, "rsakey", "02.crt", &[]),
        "eckey's certificate",
    );
    assert!(
        stderr.contains(
            "the certificate does not match the private key pkcs11:token=nexus;object=rsakey"
        ),
        "{stderr}"
    );
    let uri = success(&import_cert(&pki, "rsakey", "rsa.crt", &[]), "import");
    assert_eq!(uri, "pkcs11:token=nexus;object=rsakey;id=%01;type=cert");
    let result = pki.probe(&["load", "--key", &key, "--cert-uri", &uri]);
    assert_eq!(result["ok"], true, "{result:#}");

    let stderr = failure(
        &import_cert(&pki, "rsakey", "rsa.crt", &[]),
        "a second import",
    );
    assert!(
        stderr.contains("already holds a certificate for pkcs11:token=nexus;object=rsakey"),
        "{stderr}"
    );
    // Renewal with the chain in the file: the old certificate goes, the CA is stored once.
    let chain = [
        std::fs::read_to_string(pki.path("01.crt")).unwrap(),
        std::fs::read_to_string(pki.path("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(pki.path("chain.pem"), chain).unwrap();
    for _ in 0..2 {
        success(
            &import_cert(&pki, "rsakey", "chain.pem", &["--replace"]),
            "renewal",
        );
    }
    let listing = success(&nexus(&pki, None, &["list"]), "list");
    let certificates: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("certificate:"))
        .collect();
    assert_eq!(certificates.len(), 2, "{listing}");
    assert!(
        certificates[0].contains("object=rsakey id=%01 subject CN=client-rsakey"),
        "{listing}"
    );
    assert!(
        certificates[1].contains("object=rsakey-chain-1 id= subject CN=Nexus Test CA"),
        "{listing}"
    );
    let result = pki.probe(&["load", "--key", &key, "--cert-uri", &uri]);
    assert_eq!(result["ok"], true, "{result:#}");
}
