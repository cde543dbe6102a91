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

pub(crate) mod bounded;
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
    parse(&read(path)?, path, &|name| std::env::var(name).ok())
}

/// The text of the configuration file: a regular file of at most 1 MiB.
fn read(path: &Path) -> Result<String, ConfigError> {
    bounded::read_to_string(path, bounded::Kind::Config).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`load`], for `nexus check` run by the unit's `ExecReload=`: when `$CREDENTIALS_DIRECTORY`
/// is set but this process cannot see it, credentials are not checked (`{{ credential.NAME }}`
/// expands to an empty string, relative secret files are not looked for), and the second value
/// is `true`. systemd 252 hides the credentials from `ExecReload=` processes of a unit with any
/// file-system sandboxing; the gateway re-reads them itself when it reloads.
pub fn check_without_credentials(path: &Path) -> Result<(Config, bool), ConfigError> {
    let hidden = std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|dir| !dir.is_empty())
        .is_some_and(|dir| std::fs::read_dir(dir).is_err());
    if !hidden {
        return load(path).map(|config| (config, false));
    }
    let text = read(path)?;
    let env = |name: &str| match name {
        template::UNCHECKED_CREDENTIALS => Some(String::new()),
        _ => std::env::var(name).ok(),
    };
    parse(&text, path, &env).map(|config| (config, true))
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
