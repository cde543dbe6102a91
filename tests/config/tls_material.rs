//! `nexus check` loads TLS material as serve will: an encrypted key is decrypted with its
//! configured password, and each certificate must match its key.

use std::path::Path;
use std::process::Command;

use super::run::{check_fails, nexus};

const PASSWORD: &str = "right-horse-battery";
const WRONG: &str = "wrong-staple-42";

/// A self-signed certificate and its key, encrypted with `password`, made by `openssl`.
fn pair(dir: &Path, name: &str, password: &str) {
    let status = Command::new("openssl")
        .args("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2".split(' '))
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-passout",
            &format!("pass:{password}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
}

/// A downstream using client certificate `cert` with key `key`, its password in `pw`; and the
/// gateway's own HTTPS with `server.pem`, its password from `{{ env.SERVER_KEY_PASSWORD }}`.
fn config(dir: &Path, cert: &str, key: &str) -> std::path::PathBuf {
    let file = dir.join("nexus.toml");
    let text = format!(
        "[server.tls]\ncertificate = \"server.pem\"\nkey = \"server.key\"\n\
         key_password = \"{{{{ env.SERVER_KEY_PASSWORD }}}}\"\n\
         [mcp.servers.secure]\nurl = \"https://127.0.0.1:1/mcp\"\n[mcp.servers.secure.tls]\n\
         client_cert_path = \"{cert}\"\nclient_key_path = \"{key}\"\nclient_key_password_file = \"pw\"\n"
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn check_decrypts_every_key_with_its_password() {
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path(), "client", PASSWORD);
    pair(dir.path(), "server", PASSWORD);
    let file = config(dir.path(), "client.pem", "client.key");
    std::fs::write(dir.path().join("pw"), format!("{WRONG}\n")).unwrap();
    let stderr = check_fails(&file, &[("SERVER_KEY_PASSWORD", WRONG)]);
    let key = |name: &str| dir.path().join(name).display().to_string();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "{}: [server.tls]: server.tls.key: cannot decrypt {}: wrong password; check \
                 client_key_password / key_password (or its _file)",
                file.display(),
                key("server.key")
            ),
            format!(
                "{}: [mcp.servers.secure.tls]: client_key_path: cannot decrypt {}: wrong password; check \
                 client_key_password / key_password (or its _file)",
                file.display(),
                key("client.key")
            ),
        ]
    );
    assert!(
        !stderr.contains(WRONG) && !stderr.contains(PASSWORD),
        "{stderr}"
    );

    std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
    let output = nexus(&["check"], &file, &[("SERVER_KEY_PASSWORD", PASSWORD)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim_end(),
        format!("{}: OK (1 servers)", file.display())
    );
}

#[test]
fn check_refuses_a_certificate_that_is_not_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path(), "client", PASSWORD);
    pair(dir.path(), "server", PASSWORD);
    pair(dir.path(), "other", PASSWORD);
    let file = config(dir.path(), "other.pem", "client.key");
    std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
    let stderr = check_fails(&file, &[("SERVER_KEY_PASSWORD", PASSWORD)]);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}: [mcp.servers.secure.tls]: client_cert_path {} does not match client_key_path {}: the key \
             is not the certificate's private key; configure the key that was used to request this \
             certificate",
            file.display(),
            dir.path().join("other.pem").display(),
            dir.path().join("client.key").display()
        )
    );
}
