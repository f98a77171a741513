//! Reading the files offpack is given, safely: only regular files (a FIFO, a device or a directory
//! fails at once instead of hanging or reading forever), each kind of file with a size limit that is
//! checked before reading, and every error naming the file and what to do.
//!
//! Why a crate of its own: the compose loader, the bundle reader and the commands all read files a
//! user (or an attacker) names, and each must refuse the same things the same way.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A kind of file offpack reads, with the largest size it accepts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// What the file is, for messages ("compose file", "public key").
    pub name: &'static str,
    /// Largest accepted size in bytes.
    pub limit: u64,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// A compose file (`compose.yaml` and the files it includes or extends).
pub const COMPOSE_FILE: Kind = Kind {
    name: "compose file",
    limit: 16 * MIB,
};
/// An environment file (`.env`, `--env-file`, a service's `env_file`).
pub const ENV_FILE: Kind = Kind {
    name: "environment file",
    limit: 4 * MIB,
};
/// A Dockerfile.
pub const DOCKERFILE: Kind = Kind {
    name: "Dockerfile",
    limit: 4 * MIB,
};
/// A `.dockerignore` file.
pub const DOCKERIGNORE: Kind = Kind {
    name: ".dockerignore file",
    limit: 4 * MIB,
};
/// A secret or public key from `offpack keygen`.
pub const KEY: Kind = Kind {
    name: "key file",
    limit: 4 * KIB,
};
/// An inventory from `offpack inventory` (`--have`).
pub const INVENTORY: Kind = Kind {
    name: "inventory (--have) file",
    limit: 256 * MIB,
};
/// A bundle's `.sha256` checksum file.
pub const CHECKSUM_FILE: Kind = Kind {
    name: "checksum file",
    limit: MIB,
};
/// The Docker client configuration (`~/.docker/config.json`).
pub const DOCKER_CONFIG: Kind = Kind {
    name: "Docker config file",
    limit: 16 * MIB,
};

/// A requirements file or a lock file (`package-lock.json` of a large app is a few MiB).
pub const PACKAGE_FILE: Kind = Kind {
    name: "package file",
    limit: 64 * MIB,
};
/// A package request file from `offpack rebuild` (`bundle --packages-for`).
pub const REQUEST_FILE: Kind = Kind {
    name: "package request file",
    limit: 64 * MIB,
};

/// A bundle or one part of a split bundle. It is streamed, never read whole, so only
/// [`open_regular`] applies to it and the limit is never reached.
pub const BUNDLE: Kind = Kind {
    name: "bundle",
    limit: u64::MAX,
};

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Opening or reading failed.
    Io {
        path: PathBuf,
        kind: Kind,
        source: io::Error,
    },
    /// The path names something that is not a regular file.
    NotRegular {
        path: PathBuf,
        kind: Kind,
        what: &'static str,
    },
    /// The file is larger than its kind allows.
    TooLarge {
        path: PathBuf,
        kind: Kind,
        size: u64,
    },
    /// The file is not UTF-8 text.
    NotText { path: PathBuf, kind: Kind },
}

impl ReadError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotText { path, .. } => path,
        }
    }

    /// True when the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, kind, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(f, "{} {}: no such file", kind.name, path.display())
            }
            ReadError::Io { path, kind, source } => {
                write!(f, "cannot read {} {}: {source}", kind.name, path.display())
            }
            ReadError::NotRegular { path, kind, what } => write!(
                f,
                "{} {} is {what}, not a regular file; give the path of a file",
                kind.name,
                path.display()
            ),
            ReadError::TooLarge { path, kind, size } => write!(
                f,
                "{} {} is {size} bytes, more than the {} bytes offpack reads for a {}; is it the right file?",
                kind.name,
                path.display(),
                kind.limit,
                kind.name
            ),
            ReadError::NotText { path, kind } => {
                write!(f, "{} {} is not UTF-8 text", kind.name, path.display())
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a file type is, in words ("a directory", "a FIFO (named pipe)"), for a file that is not
/// regular.
pub fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Opens `path` for reading if it is a regular file (after following symlinks), without ever
/// blocking: a FIFO is opened non-blocking and then refused. Returns the file and its size.
pub fn open_regular(path: &Path, kind: Kind) -> Result<(File, u64), ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        kind,
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind,
            what: describe(meta.file_type()),
        });
    }
    // Reads of a regular file never block; clearing the flag keeps the file ordinary for callers.
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())
        .map_err(|e| io_err(io::Error::from(e)))?;
    Ok((file, meta.len()))
}

/// Checks that `path` is a regular file (or does not exist), without opening it.
pub fn check_regular_or_absent(path: &Path, kind: Kind) -> Result<(), ReadError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind,
            what: describe(meta.file_type()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ReadError::Io {
            path: path.to_owned(),
            kind,
            source,
        }),
    }
}

/// Reads a whole regular file of `kind`, refusing it before reading when it is larger than the
/// kind's limit (and stopping at the limit if it grows while being read).
pub fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, ReadError> {
    let (file, size) = open_regular(path, kind)?;
    if size > kind.limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            kind,
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(kind.limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: path.to_owned(),
            kind,
            source,
        })?;
    if bytes.len() as u64 > kind.limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            kind,
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, kind: Kind) -> Result<String, ReadError> {
    String::from_utf8(read(path, kind)?).map_err(|_| ReadError::NotText {
        path: path.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Kind = Kind {
        name: "test file",
        limit: 10,
    };

    #[test]
    fn reads_a_small_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, "hello").unwrap();
        assert_eq!(read_to_string(&path, SMALL).unwrap(), "hello");
    }

    #[test]
    fn refuses_a_file_over_the_limit_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, "01234567890").unwrap();
        let err = read(&path, SMALL).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { size: 11, .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn refuses_devices_and_directories_without_reading() {
        let err = read(Path::new("/dev/zero"), SMALL).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path(), SMALL).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[test]
    fn refuses_a_fifo_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = read(&fifo, SMALL).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(check_regular_or_absent(&fifo, SMALL).is_err());
    }

    #[test]
    fn missing_file_is_named() {
        let err = read(Path::new("/nonexistent/x"), SMALL).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "test file /nonexistent/x: no such file");
        assert!(check_regular_or_absent(Path::new("/nonexistent/x"), SMALL).is_ok());
    }

    #[test]
    fn not_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_to_string(&path, SMALL),
            Err(ReadError::NotText { .. })
        ));
    }
}
