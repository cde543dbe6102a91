//! systemd credentials in `nexus.toml`: `{{ credential.NAME }}` and relative secret files read
//! from `$CREDENTIALS_DIRECTORY` (the unit's `LoadCredential=`), with the exact lines a user sees
//! when a credential is missing. The environment is injected; nothing touches the process's.

use std::path::{Path, PathBuf};

use nexus::config::{self, Auth, Config, ConfigError, SecretSource, Transport};
use secrecy::ExposeSecret;
use tempfile::TempDir;

/// A credentials directory holding `files`, as systemd would lay it out.
fn credentials(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn parse_in(text: &str, dir: Option<&Path>) -> Result<Config, ConfigError> {
    let dir = dir.map(|d| d.to_str().unwrap().to_string());
    let env = move |name: &str| {
        if name == "CREDENTIALS_DIRECTORY" {
            dir.clone()
        } else {
            None
        }
    };
    config::parse(text, Path::new("/etc/nexus/nexus.toml"), &env)
}

fn report(text: &str, dir: Option<&Path>) -> Vec<String> {
    let error = parse_in(text, dir).expect_err("configuration should be rejected");
    error.to_string().lines().map(str::to_string).collect()
}

const TOKEN_FROM_CREDENTIAL: &str = "[mcp.servers.secure]\nurl = \"https://h/mcp\"\n\
    [mcp.servers.secure.auth]\ntoken = \"{{ credential.secure-token }}\"\n";

#[test]
fn a_token_comes_from_a_credential_without_its_trailing_newline() {
    let dir = credentials(&[("secure-token", "s3cret\n")]);
    let config = parse_in(TOKEN_FROM_CREDENTIAL, Some(dir.path())).unwrap();
    let Transport::Http(http) = &config.mcp.servers[0].transport else {
        panic!("secure is an HTTP server");
    };
    assert!(matches!(&http.auth, Some(Auth::Token(t)) if t.expose_secret() == "s3cret"));
}

#[test]
fn a_credential_not_loaded_names_the_unit_setting_to_add() {
    let dir = credentials(&[]);
    let shown = dir.path().display();
    assert_eq!(
        report(TOKEN_FROM_CREDENTIAL, Some(dir.path())),
        [
            format!(
                "/etc/nexus/nexus.toml:4:9: mcp.servers.secure.auth.token: credential secure-token is not in \
                 {shown}; add `LoadCredential=secure-token:/etc/nexus/credentials/secure-token` to the unit \
                 (systemctl edit nexus), then systemctl restart nexus"
            ),
            "1 problem in /etc/nexus/nexus.toml".to_string(),
        ]
    );
}

#[test]
fn a_credential_outside_systemd_says_how_to_provide_one() {
    assert_eq!(
        report(TOKEN_FROM_CREDENTIAL, None)[0],
        "/etc/nexus/nexus.toml:4:9: mcp.servers.secure.auth.token: credential secure-token cannot be read: \
         $CREDENTIALS_DIRECTORY is not set (nexus was not started by systemd with LoadCredential=); run it \
         from the nexus unit with `LoadCredential=secure-token:/etc/nexus/credentials/secure-token` \
         (systemctl edit nexus), or export CREDENTIALS_DIRECTORY=DIR with a file secure-token in DIR"
    );
}

#[test]
fn a_credential_name_is_never_a_path() {
    let text = "[mcp.servers.a]\nurl = \"https://h/mcp\"\nauth = { token = \"{{ credential.../../etc/shadow }}\" }\n";
    let lines = report(text, Some(Path::new("/run/credentials/nexus.service")));
    assert!(
        lines[0].contains("`{{` starts a placeholder other than"),
        "{lines:?}"
    );
}

fn assert_pin_file(config: &Config, expected: &Path) {
    match &config.pkcs11.pin {
        Some(SecretSource::File(path)) => assert_eq!(path, expected),
        other => panic!(
            "pin should be the file {}, got {other:?}",
            expected.display()
        ),
    }
}

const PIN_FILE: &str = "[pkcs11]\npin_file = \"hsm-pin\"\n";

#[test]
fn a_relative_pin_file_is_a_credential_under_systemd() {
    let dir = credentials(&[("hsm-pin", "1234\n")]);
    let config = parse_in(PIN_FILE, Some(dir.path())).unwrap();
    assert_pin_file(&config, &dir.path().join("hsm-pin"));
}

#[test]
fn a_relative_pin_file_is_next_to_the_config_outside_systemd() {
    let dir = credentials(&[("hsm-pin", "1234\n")]);
    let config_path = dir.path().join("nexus.toml");
    let config = config::parse(PIN_FILE, &config_path, &|_: &str| None).unwrap();
    assert_pin_file(&config, &dir.path().join("hsm-pin"));
}

#[test]
fn a_missing_relative_pin_file_under_systemd_asks_for_load_credential() {
    let dir = credentials(&[]);
    let expected: PathBuf = dir.path().join("hsm-pin");
    assert_eq!(
        report(PIN_FILE, Some(dir.path()))[0],
        format!(
            "/etc/nexus/nexus.toml:2:12: pkcs11.pin_file: file {} does not exist; add \
             `LoadCredential=hsm-pin:/etc/nexus/credentials/hsm-pin` to the unit (systemctl edit nexus), \
             or give an absolute path",
            expected.display()
        )
    );
}

#[test]
fn an_absolute_pin_file_ignores_the_credentials_directory() {
    let dir = credentials(&[("pin", "1\n")]);
    let text = format!(
        "[pkcs11]\npin_file = \"{}\"\n",
        dir.path().join("pin").display()
    );
    let config = parse_in(&text, Some(Path::new("/nonexistent"))).unwrap();
    assert_pin_file(&config, &dir.path().join("pin"));
}
