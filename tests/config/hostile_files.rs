//! Files that are not what a configuration names: FIFOs, devices, files far too large. Each is
//! refused with the file and the fix, without blocking and without reading it whole.

use std::path::Path;

use nexus::config;

use super::no_env;
use super::run::check_fails;

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
}

/// The problems (one per line) reported for `text` as `dir/nexus.toml`.
fn problems_in(dir: &Path, text: &str) -> String {
    let file = dir.join("nexus.toml");
    let error = config::parse(text, &file, &no_env).expect_err("should be rejected");
    error.to_string()
}

#[test]
fn check_refuses_a_fifo_as_the_configuration_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("nexus.toml");
    mkfifo(&fifo);
    let stderr = check_fails(&fifo, &[]);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "cannot read {}: it is a FIFO (named pipe), not a regular file; name a regular file",
            fifo.display()
        )
    );
}

#[test]
fn check_refuses_dev_zero_as_the_configuration() {
    let stderr = check_fails(Path::new("/dev/zero"), &[]);
    assert_eq!(
        stderr.trim_end(),
        "cannot read /dev/zero: it is a character device, not a regular file; name a regular file"
    );
}

#[test]
fn check_refuses_a_configuration_over_one_mebibyte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nexus.toml");
    // Valid TOML, all comments: only the cap refuses it.
    std::fs::write(&file, "# padding padding padding\n".repeat(50_000)).unwrap();
    let stderr = check_fails(&file, &[]);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "cannot read {}: it is larger than a configuration file may be (1048576 bytes); \
             name the right file, or shorten it",
            file.display()
        )
    );
}

#[test]
fn check_refuses_a_fifo_named_as_a_certificate_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("cert.pem"));
    mkfifo(&dir.path().join("ca.pem"));
    let file = dir.path().join("nexus.toml");
    std::fs::write(
        &file,
        "[mcp.servers.a]\nurl = \"https://h/mcp\"\n[mcp.servers.a.tls]\nroot_ca_cert_path = \"ca.pem\"\n\
         client_cert_path = \"cert.pem\"\nclient_key_path = \"pkcs11:object=k\"\n",
    )
    .unwrap();
    let stderr = check_fails(&file, &[]);
    let shown = file.display();
    let fifo = |name: &str| dir.path().join(name).display().to_string();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "{shown}:4:21: mcp.servers.a.tls.root_ca_cert_path: {} is a FIFO (named pipe), not a \
                 regular file; name a regular file",
                fifo("ca.pem")
            ),
            format!(
                "{shown}:5:20: mcp.servers.a.tls.client_cert_path: {} is a FIFO (named pipe), not a \
                 regular file; name a regular file",
                fifo("cert.pem")
            ),
            format!("2 problems in {shown}"),
        ]
    );
}

#[test]
fn a_device_as_a_pin_or_password_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[pkcs11]\npin_file = \"/dev/zero\"\n[server.tls]\ncertificate = \"pkcs11:object=c\"\n\
                key = \"pkcs11:object=k\"\n[mcp.servers.a]\nurl = \"https://h/mcp\"\n[mcp.servers.a.tls]\n\
                client_cert_path = \"/dev/null\"\nclient_key_path = \"/dev/null\"\nclient_key_password_file = \"/dev/urandom\"\n";
    let shown = problems_in(dir.path(), text);
    let file = dir.path().join("nexus.toml");
    let file = file.display();
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        [
            format!(
                "{file}:2:12: pkcs11.pin_file: /dev/zero is a character device, not a regular file; \
                 name a regular file"
            ),
            format!(
                "{file}:9:20: mcp.servers.a.tls.client_cert_path: /dev/null is a character device, not a \
                 regular file; name a regular file"
            ),
            format!(
                "{file}:10:19: mcp.servers.a.tls.client_key_path: /dev/null is a character device, not a \
                 regular file; name a regular file"
            ),
            format!(
                "{file}:11:28: mcp.servers.a.tls.client_key_password_file: /dev/urandom is a character \
                 device, not a regular file; name a regular file"
            ),
            format!("4 problems in {file}"),
        ]
    );
}

#[test]
fn an_oversized_pem_or_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), vec![b'A'; (4 << 20) + 1]).unwrap();
    std::fs::write(dir.path().join("pin"), vec![b'1'; (64 << 10) + 1]).unwrap();
    let text = "[pkcs11]\npin_file = \"pin\"\n[mcp.servers.a]\nurl = \"https://h/mcp\"\n\
                tls = { root_ca_cert_path = \"ca.pem\" }\n";
    let shown = problems_in(dir.path(), text);
    let path = |name: &str| dir.path().join(name).display().to_string();
    assert!(
        shown.contains(&format!(
            "pkcs11.pin_file: {} is larger than a PIN, password or credential file may be (65536 bytes); \
             name the right file, or shorten it",
            path("pin")
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "mcp.servers.a.tls.root_ca_cert_path: {} is larger than a PEM file may be (4194304 bytes)",
            path("ca.pem")
        )),
        "{shown}"
    );
}
