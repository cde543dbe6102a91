//! The TLS guide's examples (`tests/fixtures/seed-examples`, verbatim): each parses without a
//! schema error; with the files they name absent, the problems are exactly those files (and the
//! unset variables); with the files present and the variables set, each resolves fully.

use std::fs;
use std::path::Path;

use nexus::config::{
    self, Auth, CertSource, ClientIdentity, Config, KeySource, Transport, Trust, Verify,
};
use secrecy::ExposeSecret;

mod expected;

use expected::{DIR, examples, expected_problems, string_values};
/// A `[server.oauth]` table that lets an example with `type = "forward"` resolve.
pub const OAUTH_FOR_FORWARD: &str = "[server.oauth]\nurl = \"https://auth.example.com/jwks.json\"\n\
    expected_issuer = \"https://auth.example.com\"\n[server.oauth.protected_resource]\n\
    resource = \"https://gw.example.com/mcp\"\n";

#[test]
fn seed_examples_report_exactly_their_missing_files_and_variables() {
    for (path, text) in examples() {
        let expected = expected_problems(&path, &text);
        let shown: Vec<String> = match config::load(&path) {
            Ok(_) => Vec::new(),
            Err(error) => error.problems().iter().map(ToString::to_string).collect(),
        };
        assert_eq!(shown, expected, "{}", path.display());
    }
}

#[test]
fn the_enterprise_example_names_server_key_file_and_variable() {
    let path = Path::new(DIR).join("06-enterprise.toml");
    let text = fs::read_to_string(&path).unwrap();
    let error = config::parse(&text, Path::new("06-enterprise.toml"), &|_| None).unwrap_err();
    let lines: Vec<String> = error.to_string().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "06-enterprise.toml:5:9: mcp.servers.enterprise.auth.token: environment variable ENTERPRISE_TOKEN is \
             not set; export it or set it in the service's environment",
            "06-enterprise.toml:10:21: mcp.servers.enterprise.tls.root_ca_cert_path: file \
             /etc/nexus/certs/enterprise-ca.pem does not exist; create it or fix the path",
            "06-enterprise.toml:11:20: mcp.servers.enterprise.tls.client_cert_path: file \
             /etc/nexus/certs/nexus-client.pem does not exist; create it or fix the path",
            "06-enterprise.toml:12:19: mcp.servers.enterprise.tls.client_key_path: file \
             /etc/nexus/certs/nexus-client-key.pem does not exist; create it or fix the path",
            "4 problems in 06-enterprise.toml",
        ]
    );
}

/// Every example resolved with its files created under `root` and its variables set.
fn resolve_all(root: &Path) -> Vec<(String, Config)> {
    let env = |name: &str| Some(format!("token-of-{name}"));
    examples()
        .into_iter()
        .map(|(path, mut text)| {
            for (_, _, key, value) in string_values(&text.clone()) {
                if key.ends_with("_path") {
                    let moved = root.join(value.trim_start_matches('/'));
                    fs::create_dir_all(moved.parent().unwrap()).unwrap();
                    fs::write(&moved, "").unwrap();
                    text =
                        text.replace(&format!("\"{value}\""), &format!("\"{}\"", moved.display()));
                }
            }
            if text.contains("type = \"forward\"") {
                text = format!("{OAUTH_FOR_FORWARD}{text}");
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let config =
                config::parse(&text, &path, &env).unwrap_or_else(|e| panic!("{name}:\n{e}"));
            (name, config)
        })
        .collect()
}

#[test]
fn seed_examples_resolve_once_files_and_variables_exist() {
    let root = tempfile::tempdir().unwrap();
    let configs = resolve_all(root.path());
    let tls = |name: &str| {
        let (_, config) = configs.iter().find(|(n, _)| n == name).unwrap();
        let Transport::Http(http) = &config.mcp.servers[0].transport else {
            panic!("{name}: http expected")
        };
        http.clone()
    };
    let file = |path: &str| root.path().join(path);

    let secure = tls("01-secure.toml");
    assert_eq!(
        secure.tls.verify,
        Verify::Full(Trust::Pinned(file("etc/ssl/certs/ca.pem")))
    );
    let ClientIdentity::Certificate { cert, key } = &secure.tls.identity else {
        panic!("01: mTLS expected")
    };
    assert_eq!(*cert, CertSource::Pem(file("etc/ssl/certs/client.pem")));
    assert!(
        matches!(key, KeySource::Pem { path, password: None } if *path == file("etc/ssl/private/client.key"))
    );

    for name in ["02-system-ca.toml", "08-cloud.toml"] {
        assert_eq!(tls(name).tls.verify, Verify::Full(Trust::System), "{name}");
        assert!(
            matches!(tls(name).tls.identity, ClientIdentity::None),
            "{name}"
        );
    }
    assert_eq!(tls("04-dev-insecure.toml").tls.verify, Verify::Dangerous);
    assert_eq!(
        tls("09-local-dev.toml").tls.verify,
        Verify::SkipHostname(Trust::Pinned(file("home/dev/certs/dev-ca.pem")))
    );
    assert!(matches!(
        tls("10-banking-forward.toml").auth,
        Some(Auth::Forward)
    ));
    let Some(Auth::Token(token)) = &tls("06-enterprise.toml").auth else {
        panic!("06: token expected")
    };
    assert_eq!(token.expose_secret(), "token-of-ENTERPRISE_TOKEN");
    let premium = configs
        .iter()
        .find(|(n, _)| n == "12-premium-rate-limits.toml")
        .unwrap();
    let limit = premium.1.mcp.servers[0].rate_limit.clone().unwrap();
    assert_eq!((limit.limit, limit.interval.as_secs()), (100, 3600));
    assert_eq!(premium.1.mcp.servers[0].name, "premium_api");
}
