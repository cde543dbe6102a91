//! `nexus.toml`: raw input, `{{ env.X }}` templating, resolution into [`model`] types.
//!
//! Loading runs in four steps, one file each:
//! - toml parses the text once into a tree that keeps every value's byte span;
//! - `template` expands `{{ env.NAME }}` in every string value, recording unset variables;
//! - `raw` types (serde, unknown keys rejected) are deserialized per section and per server;
//! - `resolve` applies cross-key rules, checks the files named, and builds the [`model`].
//!
//! Every problem is collected before failing, so [`ConfigError`] lists them all, each with file,
//! `line:col`, key path, what is wrong and what to do. Secret values never appear in a message.

mod diagnostics;
pub mod model;
mod raw;
mod resolve;
mod template;

use std::path::{Path, PathBuf};

pub use diagnostics::{ConfigError, Problem};
pub use model::*;

/// Reads and resolves the configuration at `path`, expanding `{{ env.X }}` from the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Resolves configuration `text` as if read from `path` (relative paths in it are relative to
/// `path`'s directory; messages name `path`), looking variables up with `env`.
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    resolve::resolve(text, path, env)
}

/// `./nexus.toml` if it exists, else `/etc/nexus/nexus.toml`.
pub fn default_path() -> PathBuf {
    let local = PathBuf::from("nexus.toml");
    if local.exists() {
        local
    } else {
        PathBuf::from("/etc/nexus/nexus.toml")
    }
}
