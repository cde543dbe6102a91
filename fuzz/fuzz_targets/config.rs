//! `nexus.toml` text through parsing, `{{ env.X }}` expansion and resolution. Relative paths
//! resolve under a directory that does not exist; variables whose name starts with `X` are set
//! (to a value derived from the name), so expansion and the redaction of expanded values run.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| {
        name.starts_with('X')
            .then(|| format!("{name}-sk-0123456789"))
    };
    let result = nexus::config::parse(text, Path::new("/nonexistent/nexus-fuzz/nexus.toml"), &env);
    if let Err(error) = result {
        // Rendering walks every problem's position and wording.
        let _ = error.to_string();
    }
});
