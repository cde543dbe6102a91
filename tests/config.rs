//! `nexus.toml` through the public API: defaults, every problem a user can make (with the exact
//! line they see), and the TLS guide's examples in `tests/fixtures/seed-examples`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nexus::config::{
    self, Auth, CertSource, ClientIdentity, Config, ConfigError, KeySource, PrefixMode,
    StderrTarget, TlsVersion, ToolsMode, Transport, Trust, Verify,
};
use secrecy::ExposeSecret;

#[path = "config/hostile_files.rs"]
mod hostile_files;
#[path = "config/run.rs"]
mod run;
mod seed;
#[path = "config/templated_secrets.rs"]
mod templated_secrets;
#[path = "config/tls_material.rs"]
mod tls_material;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse(text, Path::new("nexus.toml"), &no_env)
}

/// The lines a user sees for `text`, count line included.
fn report(text: &str) -> Vec<String> {
    let error = parse(text).expect_err("configuration should be rejected");
    error.to_string().lines().map(str::to_string).collect()
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let config = parse("").unwrap();
    assert_eq!(
        config.server.listen_address,
        "127.0.0.1:8000".parse().unwrap()
    );
    assert_eq!(config.server.health.path, "/health");
    assert!(config.server.health.enabled && config.server.tls.is_none());
    assert_eq!(config.server.metrics.path, "/metrics");
    assert!(config.server.metrics.enabled);
    assert_eq!(config.mcp.path, "/mcp");
    assert_eq!(config.mcp.tools, ToolsMode::Search);
    assert_eq!(config.mcp.prefix, PrefixMode::Always);
    assert_eq!(config.mcp.call_timeout, Duration::from_secs(60));
    assert!(config.mcp.enabled && config.mcp.servers.is_empty());
    assert!(config.pkcs11.module_path.is_none() && config.pkcs11.pin.is_none());
}

#[test]
fn a_misspelt_key_is_reported_where_it_is() {
    let text = "[mcp.servers.secure]\nurl = \"https://api.secure.com/mcp\"\n\n[mcp.servers.secure.tls]\nverify_cert = true\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:5:1: mcp.servers.secure.tls: unknown key `verify_cert` (expected one of `verify_certs`, \
             `accept_invalid_hostnames`, `root_ca_cert_path`, `client_cert_path`, `client_key_path`, \
             `client_key_password`, `client_key_password_file`, `min_tls_version`, `cipher_list`, `ciphersuites`, \
             `server_name`); fix the spelling or remove it",
            "1 problem in nexus.toml",
        ]
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported() {
    let text = "[mcp.servers.secure]\nurl = \"https://h/mcp\"\ntls = { verify_certs = \"yes\" }\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:3:24: mcp.servers.secure.tls.verify_certs: invalid type: string \"yes\", expected a boolean; \
         fix the value"
    );
}

#[test]
fn an_unset_variable_is_named() {
    let text = "[mcp.servers.secure]\nurl = \"https://h/mcp\"\n[mcp.servers.secure.auth]\ntoken = \"{{ env.API_TOKEN }}\"\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:4:9: mcp.servers.secure.auth.token: environment variable API_TOKEN is not set; export it or \
             set it in the service's environment",
            "1 problem in nexus.toml",
        ]
    );
}

#[test]
fn variables_expand_in_arrays_and_tables() {
    let text = "[mcp.servers.local]\ncmd = [\"{{ env.BIN }}\", \"--root\", \"{{env.ROOT}}\"]\n\
                env = { TOKEN = \"{{ env.SECRET }}\" }\nstderr = \"pipe\"\n";
    let env = |name: &str| Some(format!("<{name}>"));
    let config = config::parse(text, Path::new("nexus.toml"), &env).unwrap();
    let Transport::Stdio(stdio) = &config.mcp.servers[0].transport else {
        panic!("stdio expected")
    };
    assert_eq!(stdio.program, "<BIN>");
    assert_eq!(stdio.args, ["--root", "<ROOT>"]);
    assert_eq!(stdio.env, [("TOKEN".to_string(), "<SECRET>".to_string())]);
    assert_eq!(stdio.stderr, StderrTarget::Pipe);
}

#[test]
fn two_servers_with_one_name_are_reported_with_the_name() {
    let text = "[mcp.servers.api]\nurl = \"https://a/mcp\"\n\n[mcp.servers.api]\nurl = \"https://b/mcp\"\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:4:14: mcp.servers.api: server `api` is defined twice (TOML allows each table once); rename one \
         of the two servers, or merge them into one table"
    );
}

#[test]
fn a_server_needs_exactly_one_of_cmd_and_url() {
    assert_eq!(
        report("[mcp.servers.x]\ncmd = [\"srv\"]\nurl = \"https://h/mcp\"\n")[0],
        "nexus.toml:1:14: mcp.servers.x: server 'x': set exactly one of `cmd` (stdio) or `url` (HTTP); remove one \
         of them"
    );
    assert_eq!(
        report("[mcp.servers.x]\ncall_timeout = \"5s\"\n")[0],
        "nexus.toml:1:14: mcp.servers.x: server 'x': set exactly one of `cmd` (stdio) or `url` (HTTP); add `cmd = \
         [\"program\", \"arg\"]` for a child process or `url = \"https://host/mcp\"`"
    );
}

#[test]
fn keys_of_the_other_transport_are_rejected() {
    let text = "[mcp.servers.s]\ncmd = [\"srv\"]\nprotocol = \"sse\"\n\n[mcp.servers.h]\nurl = \"https://h/mcp\"\ncwd = \"/\"\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:3:12: mcp.servers.s.protocol: `protocol` applies only to HTTP servers (`url`), and this is a \
             stdio server; remove it, or use `url` instead of `cmd`",
            "nexus.toml:7:7: mcp.servers.h.cwd: `cwd` applies only to stdio servers (`cmd`), and this is an HTTP \
             server; remove it, or use `cmd` instead of `url`",
            "2 problems in nexus.toml",
        ]
    );
}

#[test]
fn half_an_mtls_pair_is_an_error_not_plain_tls() {
    let text = "[mcp.servers.x]\nurl = \"https://h/mcp\"\n[mcp.servers.x.tls]\nclient_cert_path = \"pkcs11:object=c\"\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:4:20: mcp.servers.x.tls.client_cert_path: `client_cert_path` is set without `client_key_path`; \
         set both for mutual TLS, or neither"
    );
}

#[test]
fn durations_must_parse_and_be_positive() {
    assert_eq!(
        report("[mcp]\ncall_timeout = \"soon\"\n")[0],
        "nexus.toml:2:16: mcp.call_timeout: invalid duration `soon` (expected e.g. \"30s\", \"2m\" or a number of \
         seconds); fix the value"
    );
    assert_eq!(
        report("[mcp]\ncall_timeout = 0\n")[0],
        "nexus.toml:2:16: mcp.call_timeout: must be longer than zero; use a positive duration such as \"30s\""
    );
    let config =
        parse("[mcp]\ncall_timeout = 90\n[mcp.servers.a]\ncmd = [\"a\"]\ncall_timeout = \"2m\"\n")
            .unwrap();
    assert_eq!(config.mcp.call_timeout, Duration::from_secs(90));
    assert_eq!(config.mcp.servers[0].call_timeout, Duration::from_secs(120));
}

#[test]
fn limits_default_and_a_server_overrides_them_key_by_key() {
    let config = parse(
        "[mcp.servers.a]
cmd = [\"a\"]
",
    )
    .unwrap();
    let defaults = config.mcp.servers[0].limits;
    assert_eq!(defaults.max_message_size, 16 << 20);
    assert_eq!(defaults.max_stdin_queue, 64 << 20);
    assert_eq!(defaults.notifications_per_second, 1000);
    let text = "[mcp.limits]\nmax_message_size = \"1MiB\"\nnotifications_per_second = 50\n\
                [mcp.servers.a]\ncmd = [\"a\"]\nlimits = { max_message_size = 2048, max_stdin_queue = \"2 GiB\" }\n\
                [mcp.servers.b]\ncmd = [\"b\"]\n";
    let config = parse(text).unwrap();
    let (a, b) = (config.mcp.servers[0].limits, config.mcp.servers[1].limits);
    assert_eq!(
        (
            a.max_message_size,
            a.max_stdin_queue,
            a.notifications_per_second
        ),
        (2048, 2 << 30, 50)
    );
    assert_eq!((b.max_message_size, b.max_stdin_queue), (1 << 20, 64 << 20));
}

#[test]
fn limits_must_be_sizes_of_at_least_a_kib_and_a_positive_rate() {
    let text = "[mcp.limits]\nmax_message_size = \"16 MB\"\nmax_stdin_queue = 100\n\
                notifications_per_second = 0\n[mcp.servers.a]\ncmd = [\"a\"]\nlimits = { max_queue = 1 }\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:2:20: mcp.limits.max_message_size: invalid size `16 MB` (expected e.g. \"16MiB\", \
             \"512KiB\", \"1GiB\" or a number of bytes); fix the value",
            "nexus.toml:7:12: mcp.servers.a.limits: unknown key `max_queue` (expected one of `max_message_size`, \
             `max_stdin_queue`, `notifications_per_second`); fix the spelling or remove it",
            "2 problems in nexus.toml",
        ]
    );
    let text = "[mcp.limits]\nmax_stdin_queue = 100\nnotifications_per_second = 0\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:2:19: mcp.limits.max_stdin_queue: 100 bytes is too small; use a size of at least \
             \"1KiB\", e.g. \"16MiB\"",
            "nexus.toml:3:28: mcp.limits.notifications_per_second: must be at least 1; allow at least 1 \
             (progress and list changes are notifications)",
            "2 problems in nexus.toml",
        ]
    );
}

#[test]
fn inherit_env_is_for_stdio_servers_and_off_by_default() {
    let config = parse(
        "[mcp.servers.a]\ncmd = [\"a\"]\n[mcp.servers.b]\ncmd = [\"b\"]\ninherit_env = true\n",
    )
    .unwrap();
    let inherits = |i: usize| match &config.mcp.servers[i].transport {
        Transport::Stdio(stdio) => stdio.inherit_env,
        Transport::Http(_) => panic!("stdio expected"),
    };
    assert!(!inherits(0));
    assert!(inherits(1));
    assert_eq!(
        report("[mcp.servers.h]\nurl = \"https://h/mcp\"\ninherit_env = true\n")[0],
        "nexus.toml:3:15: mcp.servers.h.inherit_env: `inherit_env` applies only to stdio servers (`cmd`), and this \
         is an HTTP server; remove it, or use `cmd` instead of `url`"
    );
}

#[test]
fn tls_1_0_and_1_1_are_refused() {
    let text = "[mcp.servers.x]\nurl = \"https://h/mcp\"\ntls = { min_tls_version = \"1.1\" }\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:3:27: mcp.servers.x.tls.min_tls_version: TLS 1.1 is never offered: TLS 1.0 and 1.1 are \
         insecure; use \"1.2\" or \"1.3\""
    );
    let config =
        parse("[mcp.servers.x]\nurl = \"https://h/mcp\"\ntls = { min_tls_version = \"1.3\" }\n")
            .unwrap();
    let Transport::Http(http) = &config.mcp.servers[0].transport else {
        panic!("http expected")
    };
    assert_eq!(http.tls.params.min_version, TlsVersion::Tls13);
}

#[test]
fn server_names_cannot_contain_a_double_underscore() {
    assert_eq!(
        report("[mcp.servers.my__api]\ncmd = [\"a\"]\n")[0],
        "nexus.toml:1:14: mcp.servers.my__api: server name `my__api` contains `__`, which separates server and tool \
         in tool names (`server__tool`); rename the server, e.g. with a single `_`"
    );
}

#[test]
fn every_problem_in_a_file_is_reported() {
    let text = "[server]\nlisten = \"0.0.0.0:80\"\n\n[mcp.servers.a]\n\n[mcp.servers.b]\nurl = \"https://h/mcp\"\n\
                tls = { verify_certs = 1 }\n";
    assert_eq!(
        report(text),
        [
            "nexus.toml:2:1: server: unknown key `listen` (expected one of `listen_address`, `allowed_hosts`, \
             `allowed_origins`, `health`, `metrics`, `tls`, `limits`, `rate_limits`, `client_ip`, `cors`, `csrf`, \
             `oauth`, `client_identification`); fix the spelling or remove it",
            "nexus.toml:4:14: mcp.servers.a: server 'a': set exactly one of `cmd` (stdio) or `url` (HTTP); add `cmd \
             = [\"program\", \"arg\"]` for a child process or `url = \"https://host/mcp\"`",
            "nexus.toml:8:24: mcp.servers.b.tls.verify_certs: invalid type: integer `1`, expected a boolean; fix the \
             value",
            "3 problems in nexus.toml",
        ]
    );
}

#[test]
fn syntax_errors_have_a_position() {
    assert_eq!(
        report("[mcp]\npath = [\n"),
        [
            "nexus.toml:2:9: invalid TOML: unclosed array, expected `]`; fix the TOML syntax",
            "1 problem in nexus.toml"
        ]
    );
}

#[test]
fn secrets_never_reach_a_message() {
    let text = "[pkcs11]\npin = 98765\n[mcp.servers.x]\nurl = \"https://h/mcp\"\n[mcp.servers.x.tls]\n\
                client_cert_path = \"pkcs11:object=c\"\n\
                client_key_path = \"pkcs11:object=k?pin-value=4242\"\nclient_key_password = \"hunter2\"\n";
    let shown = parse(text).unwrap_err().to_string();
    for secret in ["98765", "4242", "hunter2"] {
        assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
    }
    assert!(
        shown.contains("pkcs11.pin: must be a string; quote the value"),
        "{shown}"
    );
    assert!(
        shown.contains("client_key_password: a passphrase applies only to a PEM key file"),
        "{shown}"
    );
}

#[test]
fn auth_is_a_token_or_forward_never_both() {
    let text =
        "[mcp.servers.x]\nurl = \"https://h/mcp\"\nauth = { token = \"t\", type = \"forward\" }\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:3:8: mcp.servers.x.auth: `token` and `type` are both set; keep `token` to send a fixed token, \
         or `type = \"forward\"` to pass on the client's"
    );
    let config =
        parse("[mcp.servers.x]\nurl = \"https://h/mcp\"\nauth = { token = \"t\" }\n").unwrap();
    let Transport::Http(http) = &config.mcp.servers[0].transport else {
        panic!("http expected")
    };
    assert!(matches!(&http.auth, Some(Auth::Token(t)) if t.expose_secret() == "t"));
}

#[test]
fn tls_settings_need_an_https_url() {
    let text =
        "[mcp.servers.x]\nurl = \"http://h/mcp\"\n[mcp.servers.x.tls]\nverify_certs = false\n";
    assert_eq!(
        report(text)[0],
        "nexus.toml:3:1: mcp.servers.x.tls: TLS settings need an https URL, but `url` is http://; use an https:// \
         URL or remove the [tls] table"
    );
}

#[test]
fn relative_paths_are_relative_to_the_file_and_pkcs11_uris_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "").unwrap();
    std::fs::write(dir.path().join("server.pem"), "").unwrap();
    let text = "[server.tls]\ncertificate = \"server.pem\"\nkey = \"pkcs11:token=nexus;object=srv;type=private\"\n\
                [mcp.servers.x]\nurl = \"https://h/mcp\"\ntls = { root_ca_cert_path = \"ca.pem\", accept_invalid_hostnames = true }\n";
    let config = config::parse(text, &dir.path().join("nexus.toml"), &no_env).unwrap();
    let tls = config.server.tls.unwrap();
    assert_eq!(
        tls.certificate,
        CertSource::Pem(dir.path().join("server.pem"))
    );
    assert!(
        matches!(&tls.key, KeySource::Pkcs11(key) if key.uri == "pkcs11:token=nexus;object=srv;type=private")
    );
    let Transport::Http(http) = &config.mcp.servers[0].transport else {
        panic!("http expected")
    };
    assert_eq!(
        http.tls.verify,
        Verify::SkipHostname(Trust::Pinned(dir.path().join("ca.pem")))
    );
    assert!(matches!(http.tls.identity, ClientIdentity::None));
}

#[test]
fn server_tls_needs_certificate_and_key() {
    assert_eq!(
        report("[server.tls]\ncertificate = \"pkcs11:object=c\"\n")[0],
        "nexus.toml:1:1: server.tls: missing key `key`: HTTPS needs both `certificate` and `key`; add it, or remove \
         [server.tls] to serve plain HTTP"
    );
}

#[test]
fn an_unreadable_file_names_the_path() {
    let missing = PathBuf::from("/nonexistent/nexus.toml");
    let error = config::load(&missing).unwrap_err();
    assert!(matches!(error, ConfigError::Unreadable { ref path, .. } if *path == missing));
    assert!(
        error
            .to_string()
            .starts_with("cannot read /nonexistent/nexus.toml: "),
        "{error}"
    );
}

#[test]
fn metrics_endpoint_can_move_or_be_disabled() {
    let config = parse("[server.metrics]\npath = \"/internal/metrics\"\n").unwrap();
    assert_eq!(config.server.metrics.path, "/internal/metrics");
    assert!(config.server.metrics.enabled);
    let config = parse("[server.metrics]\nenabled = false\n").unwrap();
    assert!(!config.server.metrics.enabled);
}

#[test]
fn a_metrics_path_without_a_slash_is_rejected() {
    let lines = report("[server.metrics]\npath = \"metrics\"\n");
    assert!(
        lines[0].starts_with("nexus.toml:2:8: server.metrics.path:"),
        "{lines:?}"
    );
}
