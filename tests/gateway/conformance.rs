//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) against
//! the gateway, with the conformance fixture (`tests/servers/conformance_server.py`) as its only
//! downstream, exposed unprefixed. Two runs: the handshake-era suite (conformance 0.1.16) and
//! the 2026-07-28 suite (0.2.0-alpha.12, installed as the npm alias `conformance-next`, the
//! version whose scenarios cover that revision).
//!
//! Failures are allowed only through `tests/conformance/expected-failures*.yml`, where every
//! entry carries its reason; the CLI exits non-zero on an unexpected failure and on a stale
//! entry (a listed scenario that now passes), and so does the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::{Gateway, node, toml_array, tools, unprefixed};

/// Bound on one whole conformance run.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The conformance fixture as the gateway's only downstream, names unprefixed. It serves both
/// eras, and its SEP-2322 tools only in 2026-07-28 (they answer `input_required` results),
/// so the gateway is told to speak that revision to it rather than choose the handshake era.
pub fn fixture_gateway_toml() -> String {
    let python = tools().join("bin/python");
    let script = repo_path("tests/servers/conformance_server.py");
    let cmd = toml_array(&[python.to_str().unwrap(), script.to_str().unwrap()]);
    unprefixed(
        "conformance",
        &format!("cmd = {cmd}\nprotocol_version = \"2026-07-28\""),
    )
}

/// A path in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// One scenario line of the CLI's summary (`✓ name: 3 passed, 0 failed[, 1 warnings]`).
#[derive(Debug)]
struct Scenario {
    name: String,
    passed: u64,
    failed: u64,
    warnings: u64,
}

impl Scenario {
    /// The CLI's own rule: a failed or a warning check fails the scenario.
    fn ok(&self) -> bool {
        self.failed == 0 && self.warnings == 0
    }
}

/// What the CLI printed, parsed.
#[derive(Debug, Default)]
struct Report {
    scenarios: Vec<Scenario>,
    expected: Vec<String>,
    stale: Vec<String>,
    unexpected: Vec<String>,
}

/// Drops ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `name: N passed, M failed[, W warnings]` (status mark already removed).
fn scenario_line(line: &str) -> Option<Scenario> {
    let (name, counts) = line.rsplit_once(": ")?;
    let mut numbers = counts.split(", ").map(|part| {
        let (number, word) = part.split_once(' ')?;
        Some((number.parse::<u64>().ok()?, word))
    });
    let (passed, "passed") = numbers.next()?? else {
        return None;
    };
    let (failed, "failed") = numbers.next()?? else {
        return None;
    };
    let warnings = match numbers.next() {
        Some(Some((warnings, "warnings" | "warning"))) => warnings,
        None => 0,
        _ => return None,
    };
    let name = name.trim();
    (!name.is_empty() && !name.contains(' ')).then(|| Scenario {
        name: name.to_owned(),
        passed,
        failed,
        warnings,
    })
}

fn parse(stdout: &str) -> Report {
    #[derive(Clone, Copy)]
    enum Section {
        Other,
        Summary,
        Expected,
        Stale,
        Unexpected,
    }
    let mut report = Report::default();
    let mut section = Section::Other;
    for line in plain(stdout).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("===") && trimmed.contains("SUMMARY") {
            section = Section::Summary;
            continue;
        }
        if trimmed.starts_with("Expected failures") {
            section = Section::Expected;
            continue;
        }
        if trimmed.starts_with("Stale baseline") {
            section = Section::Stale;
            continue;
        }
        if trimmed.starts_with("Unexpected failures") {
            section = Section::Unexpected;
            continue;
        }
        let entry = trimmed
            .trim_start_matches(['✓', '✗', '~', '!', '⚠'])
            .trim()
            .to_owned();
        match section {
            Section::Summary => {
                if trimmed.starts_with("Total:") {
                    section = Section::Other;
                } else if let Some(scenario) = scenario_line(&entry) {
                    report.scenarios.push(scenario);
                }
            }
            Section::Expected | Section::Stale | Section::Unexpected
                if trimmed.len() != entry.len() && !entry.contains(' ') =>
            {
                let list = match section {
                    Section::Expected => &mut report.expected,
                    Section::Stale => &mut report.stale,
                    _ => &mut report.unexpected,
                };
                list.push(entry);
            }
            Section::Expected | Section::Stale | Section::Unexpected if !trimmed.is_empty() => {
                section = Section::Other;
            }
            _ => {}
        }
    }
    report
}

/// One run of the conformance CLI: what it printed, parsed.
pub struct Run {
    report: Report,
    output: std::process::Output,
    elapsed: Duration,
    version: String,
}

impl Run {
    /// Everything the CLI printed, for a failure message.
    fn show_all(&self) -> String {
        let stdout = String::from_utf8_lossy(&self.output.stdout);
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        format!("--- conformance stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
    }

    /// The names of the scenarios that passed.
    pub fn passed(&self) -> Vec<&str> {
        let passed = self.report.scenarios.iter().filter(|s| s.ok());
        passed.map(|scenario| scenario.name.as_str()).collect()
    }

    /// How long the run took, in seconds.
    pub fn elapsed_secs(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    /// Each scenario run, with whether it passed.
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, bool)> {
        let scenarios = self.report.scenarios.iter();
        scenarios.map(|scenario| (scenario.name.as_str(), scenario.ok()))
    }
}

/// Runs the conformance CLI of npm `package` (with `extra` flags) against `url`, with
/// `expected_failures` as its baseline when given.
pub async fn run_cli(
    url: &str,
    package: &str,
    expected_failures: Option<&str>,
    extra: &[&str],
) -> Run {
    let cli = tools().join("node/node_modules").join(package);
    let version = std::fs::read_to_string(cli.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|package| package["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{} is not installed: run tests/run", cli.display()));
    let results = tempfile::tempdir().unwrap();
    let mut command = Command::new(node());
    command
        .arg(cli.join("dist/index.js"))
        .args(["server", "--url", url])
        .arg("-o")
        .arg(results.path())
        .args(extra);
    if let Some(baseline) = expected_failures {
        command.arg("--expected-failures").arg(repo_path(baseline));
    }
    let started = std::time::Instant::now();
    let child = command
        .env("HOME", results.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("conformance CLI");
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("conformance {package} {extra:?} did not finish in {RUN_LIMIT:?}")
        })
        .unwrap();
    let run = Run {
        report: parse(&String::from_utf8_lossy(&output.stdout)),
        output,
        elapsed: started.elapsed(),
        version,
    };
    assert!(
        !run.report.scenarios.is_empty(),
        "no scenario summary in the output ({}):\n{}",
        run.output.status,
        run.show_all()
    );
    run
}

/// Starts the gateway with the fixture, runs one conformance suite against it and checks the
/// result against `expected_failures`.
async fn run_suite(label: &str, package: &str, expected_failures: &str, extra: &[&str]) {
    let gateway = Gateway::start(&fixture_gateway_toml(), 1).await;
    let run = run_cli(&gateway.url, package, Some(expected_failures), extra).await;
    gateway.stop().await;
    let report = &run.report;

    let flags: String = extra.iter().map(|flag| format!(" {flag}")).collect();
    println!(
        "conformance {label} (@modelcontextprotocol/conformance {}{flags}), {:.1} s:",
        run.version,
        run.elapsed_secs()
    );
    for scenario in &report.scenarios {
        let verdict = if scenario.ok() {
            "PASS"
        } else if report.unexpected.contains(&scenario.name) {
            "FAIL"
        } else if report.expected.iter().any(|entry| {
            entry == &scenario.name || entry.starts_with(&format!("{}:", scenario.name))
        }) {
            "FAIL (expected)"
        } else {
            "FAIL (unscored)"
        };
        println!(
            "  {verdict:<15} {}: {} passed, {} failed, {} warnings",
            scenario.name, scenario.passed, scenario.failed, scenario.warnings
        );
    }
    let passed = report.scenarios.iter().filter(|s| s.ok()).count();
    println!(
        "conformance: {passed} passed, {} failed",
        report.unexpected.len()
    );
    println!(
        "  ({} expected failures listed with reasons in {expected_failures}: {}; stale entries: {})",
        report.expected.len(),
        if report.expected.is_empty() {
            "none".to_owned()
        } else {
            report.expected.join(", ")
        },
        if report.stale.is_empty() {
            "none".to_owned()
        } else {
            report.stale.join(", ")
        },
    );

    assert!(
        report.unexpected.is_empty(),
        "unexpected conformance failures {:?}\n{}",
        report.unexpected,
        run.show_all()
    );
    assert!(
        report.stale.is_empty(),
        "{expected_failures} lists scenarios that now pass (remove them): {:?}",
        report.stale
    );
    assert!(
        run.output.status.success(),
        "conformance CLI failed ({}):\n{}",
        run.output.status,
        run.show_all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_handshake_suite() {
    run_suite(
        "handshake era",
        "@modelcontextprotocol/conformance",
        "tests/conformance/expected-failures.yml",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_2026_07_28_suite() {
    run_suite(
        "2026-07-28",
        "conformance-next",
        "tests/conformance/expected-failures-2026-07-28.yml",
        &["--spec-version", "2026-07-28"],
    )
    .await;
}

/// The whole set of scenarios the 2026-07-28 revision requires (frozen at its release), which
/// adds the stateless, caching and multi-round-trip scenarios the active suite leaves out.
/// Its `not_scored` scenarios (extensions, pending) run but cannot fail it: `FAIL (unscored)`.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_2026_07_28_requirements() {
    run_suite(
        "2026-07-28 requirements",
        "conformance-next",
        "tests/conformance/expected-failures-2026-07-28.yml",
        &["--requirements", "2026-07-28"],
    )
    .await;
}

#[test]
fn parses_the_cli_summary() {
    let stdout = "\n=== Running scenario: ping ===\nPassed: 1/1\n\n\n=== SUITE SUMMARY ===\n\n\
        \u{1b}[32m✓\u{1b}[0m ping: 1 passed, 0 failed\n✗ tools-call-sampling: 0 passed, 1 failed\n\
        ✗ dns-rebinding-protection: 1 passed, 0 failed, 1 warnings\n\n\
        Total: 2 passed, 1 failed, 1 warnings\n\nExpected failures (in baseline):\n  ~ tools-call-sampling\n\n\
        Unexpected failures (not in baseline):\n  ✗ dns-rebinding-protection\n\nsome closing words here\n";
    let report = parse(stdout);
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["ping", "tools-call-sampling", "dns-rebinding-protection"]
    );
    assert!(report.scenarios[0].ok() && !report.scenarios[2].ok());
    assert_eq!(report.expected, ["tools-call-sampling"]);
    assert_eq!(report.unexpected, ["dns-rebinding-protection"]);
    assert!(report.stale.is_empty());
}
