//! Reading the files the configuration names, within bounds: regular files only, each kind under
//! a size cap, and never blocking on open.
//!
//! A FIFO named as a file would block `nexus check` on open until some writer appears, and
//! `/dev/zero` would be read until memory runs out. Each file is opened with `O_NONBLOCK` (so a
//! FIFO's open returns at once) and `O_NOCTTY`, its type and size are checked on the open descriptor (so nothing
//! swapped in after a `stat` slips through), and it is read through a reader that stops one byte
//! past the cap (so a file that grows while read is still refused).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// What a file is for, which sets its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `nexus.toml`.
    Config,
    /// A certificate, certificate bundle or private key (PEM). The largest CA bundles a system
    /// ships are a few hundred KiB.
    Pem,
    /// A PIN, passphrase or systemd credential.
    Secret,
    /// A PKCS#11 module: the dynamic linker maps it, nexus never reads it, so only its type is
    /// checked.
    Module,
}

impl Kind {
    /// The largest file of this kind that is read, in bytes.
    pub(crate) const fn limit(self) -> u64 {
        match self {
            Kind::Config => 1 << 20,
            Kind::Pem => 4 << 20,
            Kind::Secret => 64 << 10,
            Kind::Module => u64::MAX,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Config => "a configuration file",
            Kind::Pem => "a PEM file",
            Kind::Secret => "a PIN, password or credential file",
            Kind::Module => "a PKCS#11 module",
        }
    }
}

/// Why a file was refused before its content was read: carried inside an [`io::Error`], so every
/// caller's "cannot read FILE: ..." message shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A FIFO, device, socket or directory.
    NotRegular(&'static str),
    /// Larger than [`Kind::limit`].
    TooLarge(Kind),
}

impl Refusal {
    /// What the file is, e.g. "a FIFO (named pipe), not a regular file".
    pub(crate) fn what(&self) -> String {
        match self {
            Refusal::NotRegular(what) => format!("{what}, not a regular file"),
            Refusal::TooLarge(kind) => format!(
                "larger than {} may be ({} bytes)",
                kind.noun(),
                kind.limit()
            ),
        }
    }

    /// What to do about it.
    pub(crate) fn fix(&self) -> &'static str {
        match self {
            Refusal::NotRegular(_) => "name a regular file",
            Refusal::TooLarge(_) => "name the right file, or shorten it",
        }
    }

    /// The refusal inside `error`, if it is one.
    pub(crate) fn of(error: &io::Error) -> Option<&Refusal> {
        error.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "it is {}; {}", self.what(), self.fix())
    }
}

impl std::error::Error for Refusal {}

/// `error` for a message after "cannot read FILE: ": a refusal says its own fix, an OS error gets
/// the usual one.
pub(crate) fn explain(error: &io::Error) -> String {
    match Refusal::of(error) {
        Some(refusal) => refusal.to_string(),
        None => format!("{error}; check the path and its permissions"),
    }
}

/// Opens `path` without blocking and checks that it is a regular file within `kind`'s cap.
pub(crate) fn open(path: &Path, kind: Kind) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        // O_NOCTTY: a terminal named as a file must not become the gateway's controlling one.
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    let meta = file.metadata()?;
    let file_type = meta.file_type();
    let not_regular = if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(what) = not_regular {
        return Err(refused(Refusal::NotRegular(what)));
    }
    if meta.len() > kind.limit() {
        return Err(refused(Refusal::TooLarge(kind)));
    }
    Ok(file)
}

/// The whole content of `path`, refused as [`open`] says or when it grows past the cap while read.
pub(crate) fn read(path: &Path, kind: Kind) -> io::Result<Vec<u8>> {
    let file = open(path, kind)?;
    let mut bytes = Vec::new();
    file.take(kind.limit().saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > kind.limit() {
        return Err(refused(Refusal::TooLarge(kind)));
    }
    Ok(bytes)
}

/// Like [`read`], for text.
pub(crate) fn read_to_string(path: &Path, kind: Kind) -> io::Result<String> {
    String::from_utf8(read(path, kind)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not valid UTF-8 text"))
}

fn refused(refusal: Refusal) -> io::Error {
    let kind = match refusal {
        Refusal::NotRegular(_) => io::ErrorKind::InvalidInput,
        Refusal::TooLarge(_) => io::ErrorKind::FileTooLarge,
    };
    io::Error::new(kind, refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(result: io::Result<Vec<u8>>) -> Refusal {
        Refusal::of(&result.expect_err("should be refused"))
            .expect("a refusal")
            .clone()
    }

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let zero = refusal(read(Path::new("/dev/zero"), Kind::Config));
        assert_eq!(zero, Refusal::NotRegular("a character device"));
        assert_eq!(
            zero.to_string(),
            "it is a character device, not a regular file; name a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            refusal(read(dir.path(), Kind::Pem)),
            Refusal::NotRegular("a directory")
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            refusal(read(&fifo, Kind::Secret)),
            Refusal::NotRegular("a FIFO (named pipe)")
        );
    }

    #[test]
    fn a_file_over_its_cap_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, vec![b'1'; Kind::Secret.limit() as usize]).unwrap();
        assert_eq!(
            read(&file, Kind::Secret).unwrap().len() as u64,
            Kind::Secret.limit()
        );
        std::fs::write(&file, vec![b'1'; Kind::Secret.limit() as usize + 1]).unwrap();
        let too_large = refusal(read(&file, Kind::Secret));
        assert_eq!(
            too_large.to_string(),
            "it is larger than a PIN, password or credential file may be (65536 bytes); \
             name the right file, or shorten it"
        );
    }

    #[test]
    fn os_errors_keep_the_usual_advice() {
        let error = read(Path::new("/nonexistent/nexus.toml"), Kind::Config).unwrap_err();
        assert!(explain(&error).ends_with("; check the path and its permissions"));
    }
}
