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
    nexus_with_pin(pki, spy, &pki.pin_file, args)
}

/// [`nexus`] with the PIN file `pin_file`.
fn nexus_with_pin(pki: &Pki, spy: Option<&Path>, pin_file: &Path, args: &[&str]) -> Output {
    let mut command = pki.nexus_pkcs11(args);
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
        .arg("--module")
        .arg(module)
        .arg("--pin-file")
        .arg(pin_file);
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

/// `keygen --token nexus --label LABEL [--id ID] --type ec:p256`.
fn keygen_ec(pki: &Pki, label: &str, id: Option<&str>) -> Output {
    let mut args = vec![
        "keygen", "--token", TOKEN, "--label", label, "--type", "ec:p256",
    ];
    args.extend(id.iter().flat_map(|id| ["--id", id]));
    nexus(pki, None, &args)
}

#[test]
fn keygen_refuses_a_taken_label_or_id() {
    let pki = Pki::new();
    // The support token already holds rsakey with id 01.
    let refusals = [
        (
            "rsakey",
            None,
            "token \"nexus\" already has an object with object=rsakey",
        ),
        ("fresh", Some("01"), "already has an object with id=%01"),
        ("fresh", Some("0x1"), "--id 0x1 is not hex bytes"),
    ];
    for (label, id, expected) in refusals {
        let stderr = failure(
            &keygen_ec(&pki, label, id),
            &format!("keygen {label} {id:?}"),
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
    // No PIN anywhere and no terminal to ask on.
    let module = pki.module.display().to_string();
    let output = pki
        .nexus_pkcs11(&[
            "keygen", "--token", TOKEN, "--label", "fresh", "--type", "ec:p256",
        ])
        .args(["--module", &module])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = failure(&output, "keygen without a PIN");
    assert!(
        stderr.contains("no PIN for token \"nexus\": pass --pin-file PATH"),
        "{stderr}"
    );
    // Without --id, a random one; the key is then usable by URI.
    let uri = success(&keygen_ec(&pki, "fresh", None), "keygen with a random id");
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
    pki.issue_request(csr, cert);
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
    // Standard output by default: a PEM request, here for a server certificate.
    let args = ["csr", "--key", &ec, "--subject", "/CN=stdout", "--server"];
    let pem = success(&nexus(&pki, None, &args), "csr to stdout");
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
    std::fs::write(pki.path("server.csr"), pem).unwrap();
    let text = verify_and_issue(&pki, "server.csr", "from-stdout.crt");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
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
    for expected in [
        "object=rsakey id=%01 subject CN=client-rsakey",
        "object=rsakey-chain-1 id= subject CN=Nexus Test CA",
    ] {
        assert!(
            certificates.iter().any(|line| line.contains(expected)),
            "no {expected:?} in:\n{listing}"
        );
    }
    let result = pki.probe(&["load", "--key", &key, "--cert-uri", &uri]);
    assert_eq!(result["ok"], true, "{result:#}");
}

/// A configuration with `[server.tls]` (P-384 token key, PEM certificate) and downstreams `rsa`
/// (token key, PEM certificate) and `p256` (token key, certificate on the token); returns its
/// path.
fn check_config(pki: &Pki) -> String {
    let cert_uri = success(
        &import_cert(pki, "eckey", "02.crt", &[]),
        "import eckey's cert",
    );
    let server = |name: &str, key: &str, cert: &str| {
        format!(
            "[mcp.servers.{name}]\nurl = \"https://127.0.0.1:9/mcp\"\n[mcp.servers.{name}.tls]\n\
             client_key_path = \"pkcs11:token={TOKEN};object={key};type=private\"\n\
             client_cert_path = \"{cert}\"\n"
        )
    };
    let toml = format!(
        "[pkcs11]\nmodule_path = \"{}\"\npin_file = \"{}\"\n\
         [server.tls]\ncertificate = \"{}\"\nkey = \"pkcs11:token={TOKEN};object=ec384key\"\n{}{}",
        pki.module.display(),
        pki.pin_file.display(),
        pki.cert(support::KEYS[2]),
        server("rsa", "rsakey", &pki.cert(support::KEYS[0])),
        server("p256", "eckey", &cert_uri),
    );
    let path = pki.path("nexus.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

#[test]
fn check_signs_with_every_configured_token_key_and_reports_expiry() {
    let pki = Pki::new();
    let config = check_config(&pki);
    let report = success(&nexus(&pki, None, &["check", "--config", &config]), "check");
    for expected in [
        "ok    [server.tls]: key pkcs11:token=nexus;object=ec384key signs, verified with the certificate; certificate CN=client-ec384key expires in ",
        "ok    server 'rsa': key pkcs11:token=nexus;object=rsakey;type=private signs, verified with the certificate; certificate CN=client-rsakey expires in ",
        "ok    server 'p256': key pkcs11:token=nexus;object=eckey;type=private signs, verified with the certificate; certificate CN=client-eckey expires in ",
        "GMT): renew it",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
}

#[test]
fn check_names_a_deleted_key() {
    let pki = Pki::new();
    let config = check_config(&pki);
    pki.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--delete-object",
        "--type",
        "privkey",
        "--id",
        "02",
    ]);
    let output = nexus(&pki, None, &["check", "--config", &config]);
    let stderr = failure(&output, "check without eckey");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("ok    server 'rsa'"), "{report}");
    assert!(
        report.contains("FAIL  server 'p256': key: no private key matching pkcs11:token=nexus;object=eckey;type=private on token \"nexus\""),
        "{report}"
    );
    assert!(
        stderr.contains("1 of 3 PKCS#11 key/certificate pairs failed"),
        "{stderr}"
    );
}

#[test]
fn check_with_a_wrong_pin_logs_in_once_and_leaves_the_token_usable() {
    let pki = Pki::new();
    let config = check_config(&pki);
    let wrong = pki.path("wrong-pin");
    std::fs::write(&wrong, "not-the-pin\n").unwrap();
    let log = pki.path("spy-check.log");
    for _ in 0..3 {
        let _ = std::fs::remove_file(&log);
        let output = nexus_with_pin(&pki, Some(&log), &wrong, &["check", "--config", &config]);
        failure(&output, "check with a wrong PIN");
        let report = String::from_utf8_lossy(&output.stdout);
        // The first pair logs in and is refused; the others are not tried with that PIN.
        assert!(
            report.contains(
                "FAIL  [server.tls]: key: HSM login to token \"nexus\" failed: CKR_PIN_INCORRECT"
            ),
            "{report}"
        );
        assert!(
            report.contains(&format!("check pin_file {}", wrong.display())),
            "{report}"
        );
        // p256's certificate is on the token too: its lookup is the first to need the login.
        for line in [
            "FAIL  server 'rsa': key: token \"nexus\" rejected the PIN earlier",
            "FAIL  server 'p256': certificate: token \"nexus\" rejected the PIN earlier",
        ] {
            assert!(report.contains(line), "no {line:?} in:\n{report}");
        }
        let spy = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            spy.matches("C_Login").count(),
            1,
            "one C_Login per run:\n{spy}"
        );
    }
    // SoftHSM counts the failed logins, but three runs are three tries, not a locked PIN.
    let listing = success(&nexus(&pki, None, &["list"]), "list");
    assert!(listing.contains("CKF_USER_PIN_COUNT_LOW"), "{listing}");
    assert!(!listing.contains("CKF_USER_PIN_LOCKED"), "{listing}");
    success(
        &nexus(&pki, None, &["check", "--config", &config]),
        "check with the right PIN",
    );
    let listing = success(&nexus(&pki, None, &["list"]), "list");
    assert!(!listing.contains("CKF_USER_PIN_COUNT_LOW"), "{listing}");
}

#[test]
fn keygen_asks_for_the_pin_on_a_terminal_without_echo() {
    use std::io::{Read, Write};
    let pki = Pki::new();
    // util-linux `script` gives the command a pseudo-terminal: what it shows comes back on
    // script's standard output, so an echoed PIN would be seen there.
    let command = format!(
        "{} pkcs11 keygen --module {} --token {TOKEN} --label typed --type ec:p256",
        env!("CARGO_BIN_EXE_nexus"),
        pki.module.display()
    );
    let mut child = pki
        .command("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run script (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut buffer = [0; 256];
    // The PIN goes in only once the prompt is up (and echo is off): bounded by the output.
    while !String::from_utf8_lossy(&shown).contains("User PIN for token \"nexus\": ") {
        let read = stdout.read(&mut buffer).expect("read the terminal");
        assert!(
            read > 0 && shown.len() < 4096,
            "no prompt: {}",
            String::from_utf8_lossy(&shown)
        );
        shown.extend_from_slice(&buffer[..read]);
    }
    // rpassword shows the prompt, then turns echo off: type only once it is off.
    wait_for_echo_off(child.id());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PIN}\n").as_bytes()).unwrap();
    stdout.read_to_end(&mut shown).unwrap();
    drop(stdin);
    assert!(
        child.wait().unwrap().success(),
        "{}",
        String::from_utf8_lossy(&shown)
    );
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        shown.contains("pkcs11:token=nexus;object=typed;id=%"),
        "{shown}"
    );
    assert!(!shown.contains(PIN), "the PIN was echoed: {shown}");
}

/// Waits (at most 10 s) until the pseudo-terminal that `script` (`script_pid`) made has echo off.
fn wait_for_echo_off(script_pid: u32) {
    let children = format!("/proc/{script_pid}/task/{script_pid}/children");
    let child = std::fs::read_to_string(&children).expect("script's child");
    let child = child.split_whitespace().next().expect("script has a child");
    let tty = std::fs::read_link(format!("/proc/{child}/fd/0")).expect("the child's terminal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let settings = std::process::Command::new("stty")
            .arg("-F")
            .arg(&tty)
            .arg("-a")
            .output()
            .expect("stty");
        let settings = String::from_utf8_lossy(&settings.stdout);
        if settings.split_whitespace().any(|flag| flag == "-echo") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "echo still on for {}: {settings}",
            tty.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
