//! `nexus.toml` text through parsing, `{{ env.X }}` expansion and resolution. Relative paths
//! resolve under a directory that does not exist; variables whose name starts with `X` are set,
//! to a value with a marker no message may show unless the text itself has it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const MARKER: &str = "s3cr3t";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| name.starts_with('X').then(|| format!("{name}:{MARKER}"));
    let path = Path::new("/nonexistent/nexus-fuzz/nexus.toml");
    let Err(error) = nexus::config::parse(text, path, &env) else {
        return;
    };
    let shown = error.to_string();
    if !text.contains(MARKER) {
        assert!(
            !shown.contains(MARKER),
            "a templated value is shown:\n{shown}"
        );
    }
});
