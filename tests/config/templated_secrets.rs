//! A secret put into a key that is not meant for one (`{{ env.X }}`, `{{ credential.X }}`) is
//! never shown when the value is wrong: not by `check`, not by a refused `serve`.

use std::path::Path;

use nexus::config;

use super::run::{check_fails, nexus};

const SECRET: &str = "sk-live-7f3a9c1e5b2d";

fn env(name: &str) -> Option<String> {
    match name {
        "API_TOKEN" => Some(SECRET.to_owned()),
        "CREDENTIALS_DIRECTORY" => Some("/nonexistent/credentials".to_owned()),
        _ => None,
    }
}

fn report(text: &str) -> String {
    let error = config::parse(text, Path::new("/nonexistent/nexus.toml"), &env)
        .expect_err("should be rejected");
    error.to_string()
}

#[test]
fn check_and_serve_show_a_misplaced_secret_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nexus.toml");
    std::fs::write(
        &file,
        "[server]\nlisten_address = \"{{ env.API_TOKEN }}\"\n",
    )
    .unwrap();
    let env = [("API_TOKEN", SECRET)];
    let expected = format!(
        "{}:2:18: server.listen_address: invalid socket address `{{{{ env.API_TOKEN }}}}`; use an IP \
         address and port such as \"127.0.0.1:8000\" or \"[::]:8000\"",
        file.display()
    );
    let stderr = check_fails(&file, &env);
    assert_eq!(stderr.lines().next(), Some(expected.as_str()), "{stderr}");
    let served = nexus(&["-l", "127.0.0.1:0"], &file, &env);
    assert_eq!(served.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[test]
fn no_message_shows_any_part_of_a_templated_value() {
    let text = "[server]\nlisten_address = \"{{ env.API_TOKEN }}\"\n\
                [pkcs11]\npin_file = \"{{ env.API_TOKEN }}\"\n\
                [server.health]\npath = \"{{ env.API_TOKEN }}\"\n\
                [mcp.servers.a]\nurl = \"https://h/{{ env.API_TOKEN }} x\"\n\
                [mcp.servers.b]\nurl = \"{{ env.API_TOKEN }}\"\n\
                [mcp.servers.c]\ncmd = [\"x\"]\ncwd = \"/{{ env.API_TOKEN }}\"\n\
                [mcp.servers.d]\nurl = \"https://h/mcp\"\ntls = { min_tls_version = \"{{ env.API_TOKEN }}\" }\n\
                [mcp.servers.e]\ncmd = [\"x\"]\ncall_timeout = \"{{ env.API_TOKEN }}\"\n\
                [mcp.servers.f]\nurl = \"https://h/mcp\"\nprotocol = \"{{ env.API_TOKEN }}\"\n";
    let shown = report(text);
    for part in [SECRET, &SECRET[..6], &SECRET[8..14], &SECRET[14..]] {
        assert!(!shown.contains(part), "`{part}` shown in:\n{shown}");
    }
    assert_eq!(
        shown.lines().count(),
        10,
        "one line per value and the count:\n{shown}"
    );
    assert!(
        shown.contains(
            "pkcs11.pin_file: file /nonexistent/credentials/{{ env.API_TOKEN }} does not exist; add \
             `LoadCredential={{ env.API_TOKEN }}:/etc/nexus/credentials/{{ env.API_TOKEN }}`"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("mcp.servers.f.protocol: unknown value `{{ env.API_TOKEN }}` (expected"),
        "{shown}"
    );
    assert!(
        shown.contains("server.health.path: path `{{ env.API_TOKEN }}` must start with `/`"),
        "{shown}"
    );
}
