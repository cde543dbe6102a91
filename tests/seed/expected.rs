//! The TLS guide's examples and what a user must be told about each on a machine without the
//! files they name and the variables they use. Shared by the library tests (`tests/config.rs`)
//! and the CLI tests (`tests/gateway/cli.rs`).

use std::fs;
use std::path::{Path, PathBuf};

/// The examples, verbatim from the guide.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-examples");

/// Every example as (path, text), in file name order.
pub fn examples() -> Vec<(PathBuf, String)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 12, "seed examples missing from {DIR}");
    paths
        .into_iter()
        .map(|path| (path.clone(), fs::read_to_string(path).unwrap()))
        .collect()
}

/// `(line, column of the value, table.key, value)` of each `key = "value"` line.
pub fn string_values(text: &str) -> Vec<(usize, usize, String, String)> {
    let mut table = "";
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']']);
            continue;
        }
        let Some((key, rest)) = line.split_once(" = \"") else {
            continue;
        };
        let value = rest.split('"').next().unwrap();
        found.push((
            index + 1,
            key.len() + 4,
            format!("{table}.{}", key.trim()),
            value.to_string(),
        ));
    }
    found
}

/// What a user must be told about `text` on a machine without its files and variables.
pub fn expected_problems(path: &Path, text: &str) -> Vec<String> {
    let mut expected = Vec::new();
    for (line, column, key, value) in string_values(text) {
        let at = format!("{}:{line}:{column}: {key}", path.display());
        if key.ends_with("_path") && !Path::new(&value).exists() {
            expected.push(format!(
                "{at}: file {value} does not exist; create it or fix the path"
            ));
        }
        if let Some(name) = value
            .strip_prefix("{{ env.")
            .and_then(|v| v.strip_suffix(" }}"))
        {
            expected.push(format!(
                "{at}: environment variable {name} is not set; export it or set it in the service's environment"
            ));
        }
        if key.ends_with(".auth.type") && value == "forward" && !text.contains("[server.oauth]") {
            expected.push(format!("{at}: {FORWARD_WITHOUT_OAUTH}"));
        }
    }
    expected
}

/// `auth.type = "forward"` without `[server.oauth]`: the gateway would pass on tokens it never
/// verified.
pub const FORWARD_WITHOUT_OAUTH: &str = "`type = \"forward\"` passes the client's Authorization \
    header on, but [server.oauth] is not set, so the gateway would forward tokens it never verified; \
    add [server.oauth] (url or expected_issuer, and protected_resource) so only verified tokens are \
    forwarded, or use `token = \"{{ env.NAME }}\"`";
