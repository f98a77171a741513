//! The bundle's files on disk, shared by the reader and the writer: the names of parts, sidecars and
//! temporary files beside a target, and positional reads and writes that move no shared file position.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::BundleError;

/// Random characters in a temporary file's name (alphanumeric, as `tempfile` makes them).
pub(crate) const RANDOM_LEN: usize = 6;
/// Ends the name of a temporary bundle or part: `.NAME.XXXXXX.partial`.
pub(crate) const PARTIAL_SUFFIX: &str = ".partial";
/// Ends the name of a temporary sidecar: `.NAME.XXXXXX.sha256-partial`; it cannot be taken for
/// the `.partial` of another target, so a run removes only its own target's leftovers.
pub(crate) const SIDECAR_PARTIAL_SUFFIX: &str = ".sha256-partial";

/// The directory (`.` for a bare name) and file name of a target path.
pub(crate) fn dir_and_name(target: &Path) -> Result<(PathBuf, std::ffi::OsString), BundleError> {
    let name = target.file_name().ok_or_else(|| {
        BundleError::InvalidInput(format!("{} is not a file path", target.display()))
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

/// A new temporary file `.NAME.XXXXXX<suffix>` in `dir`, beside the target it will replace.
pub(crate) fn temp_beside(
    dir: &Path,
    name: &str,
    suffix: &str,
) -> Result<tempfile::NamedTempFile, BundleError> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .rand_bytes(RANDOM_LEN)
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| BundleError::io(dir, e))
}

/// `b.offpack` + part number `n` (1-based): `b.offpack.001`.
pub(crate) fn part_path(target: &Path, n: usize) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{n:03}"));
    target.with_file_name(name)
}

/// `<bundle>.sha256` next to the bundle.
pub(crate) fn sidecar_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.file_name().unwrap_or_default().to_owned();
    name.push(".sha256");
    bundle.with_file_name(name)
}

/// Reads exactly `buf.len()` bytes at `offset` without moving any shared file position.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    fill_at(buf, offset, |buf, offset| read_at(file, buf, offset))
}

/// Fills `buf` from `offset` with a positional `read_at` (a file's, or a split bundle's across
/// parts), retrying interrupted reads; a read of 0 bytes before `buf` is full is an early end.
pub(crate) fn fill_at(
    mut buf: &mut [u8],
    mut offset: u64,
    mut read_at: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
) -> io::Result<()> {
    while !buf.is_empty() {
        match read_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(unix)]
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}
