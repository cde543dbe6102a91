//! Paths named in the configuration: resolved against the file's directory, checked at load so a
//! missing certificate stops startup with the server and key that name it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::Cx;
use crate::config::bounded::{self, Kind, Refusal};

impl Cx<'_> {
    /// `value` as a path; relative paths are relative to the configuration file's directory.
    pub(super) fn path(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// A file the gateway will read: it must be a readable regular file of at most `kind`'s
    /// size now.
    pub(super) fn file(&mut self, value: &Spanned<String>, key: &str, kind: Kind) -> PathBuf {
        let path = self.path(value.get_ref());
        if let Some((message, fix)) = unreadable_file(&path, kind) {
            self.problems.push(value.span(), key, message, fix);
        }
        path
    }

    /// A file holding a secret (`pin_file`, `*_password_file`): a relative name is a systemd
    /// credential, in `$CREDENTIALS_DIRECTORY`, when that is set (under the unit's
    /// `LoadCredential=`); otherwise relative to the configuration file, like any path.
    pub(super) fn secret_file(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let name = Path::new(value.get_ref());
        let Some(dir) = self.credentials.as_ref().filter(|_| name.is_relative()) else {
            return self.file(value, key, Kind::Secret);
        };
        let path = dir.join(name);
        if self.unchecked_credentials {
            return path;
        }
        if let Some((message, _)) = unreadable_file(&path, Kind::Secret) {
            let fix = format!(
                "add `LoadCredential={0}:/etc/nexus/credentials/{0}` to the unit \
                 (systemctl edit nexus), or give an absolute path",
                value.get_ref()
            );
            self.problems.push(value.span(), key, message, &fix);
        }
        path
    }

    /// A directory that must exist now (`cwd`).
    pub(super) fn directory(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let path = self.path(value.get_ref());
        self.require_directory(value, key, &path);
        path
    }

    /// A file the gateway will create or append to: its directory must exist now.
    pub(super) fn output_file(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let path = self.path(value.get_ref());
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.require_directory(value, key, &parent);
        path
    }

    fn require_directory(&mut self, value: &Spanned<String>, key: &str, dir: &Path) {
        let problem = match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => return,
            Ok(_) => (
                format!("{} is not a directory", dir.display()),
                "name a directory",
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => (
                format!("directory {} does not exist", dir.display()),
                "create it or fix the path",
            ),
            Err(e) => (
                format!("directory {} cannot be used: {e}", dir.display()),
                "fix its permissions",
            ),
        };
        self.problems.push(value.span(), key, problem.0, problem.1);
    }
}

/// Why `path` cannot be read as a file of `kind`, if it cannot. Opening does not block (a FIFO
/// is refused, not waited on) and reads nothing.
fn unreadable_file(path: &Path, kind: Kind) -> Option<(String, &'static str)> {
    let shown = path.display();
    let error = bounded::open(path, kind).err()?;
    if let Some(refusal) = Refusal::of(&error) {
        return Some((format!("{shown} is {}", refusal.what()), refusal.fix()));
    }
    Some(match error.kind() {
        ErrorKind::NotFound => (
            format!("file {shown} does not exist"),
            "create it or fix the path",
        ),
        ErrorKind::PermissionDenied => (
            format!("file {shown} cannot be read: {error}"),
            "let the gateway's user read it (e.g. mode 640, group nexus)",
        ),
        _ => (
            format!("file {shown} cannot be read: {error}"),
            "fix its permissions or the path",
        ),
    })
}
