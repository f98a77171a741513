//! The path a bundle is written to: one writer per target at a time ([`TargetLock`]), the existing
//! files a new bundle replaces or removes ([`existing_outputs`]), and the temporary files of writers
//! that died (removed under the lock). Decision 0064.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::BundleError;
use crate::files::{
    PARTIAL_SUFFIX, RANDOM_LEN, SIDECAR_PARTIAL_SUFFIX, dir_and_name, part_path, sidecar_path,
};

/// What an existing file is to a bundle written at a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRole {
    /// The bundle file itself (replaced).
    Bundle,
    /// The `.sha256` checksum file (replaced, or removed when it cannot be rewritten).
    Sidecar,
    /// Part `n` of a split bundle (replaced, or removed as stale).
    Part(usize),
}

/// Refuses target names whose `.sha256` line neither `sha256sum -c` nor `offpack verify` could
/// read back: a line break splits the line, and a name that is not UTF-8 cannot be written as it is.
pub fn check_target_name(target: &Path) -> Result<(), BundleError> {
    let (_, name) = dir_and_name(target)?;
    let Some(name) = name.to_str() else {
        return Err(BundleError::InvalidInput(format!(
            "the bundle name {} is not valid UTF-8, so its checksum file could not name it; choose another name",
            target.display()
        )));
    };
    if name.contains(['\n', '\r']) {
        return Err(BundleError::InvalidInput(format!(
            "the bundle name {name:?} contains a line break, which would break the line naming it in its \
             checksum file (sha256sum -c and offpack verify read one line per file); choose a name without one"
        )));
    }
    Ok(())
}

/// The existing files that writing a bundle at `target` would replace or remove: the target, its
/// `.sha256`, and every `target.NNN` (a split bundle writes parts from 1 up, a single file removes
/// the parts of an older split bundle). Symbolic links are listed as they are; the caller decides
/// what to follow.
pub fn existing_outputs(target: &Path) -> Result<Vec<(PathBuf, OutputRole)>, BundleError> {
    let (dir, name) = dir_and_name(target)?;
    let mut found = Vec::new();
    for (path, role) in [
        (target.to_owned(), OutputRole::Bundle),
        (sidecar_path(target), OutputRole::Sidecar),
    ] {
        if std::fs::symlink_metadata(&path).is_ok() {
            found.push((path, role));
        }
    }
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| BundleError::io(&dir, e))? {
        let entry = entry.map_err(|e| BundleError::io(&dir, e))?;
        if let Some(n) = part_number(&name, &entry.file_name()) {
            parts.push((part_path(target, n), OutputRole::Part(n)));
        }
    }
    parts.sort_by_key(|(_, role)| match role {
        OutputRole::Part(n) => *n,
        _ => 0,
    });
    found.extend(parts);
    Ok(found)
}

/// `n` when `file` is `name` + `.NNN` as [`part_path`] spells part `n`.
fn part_number(name: &std::ffi::OsStr, file: &std::ffi::OsStr) -> Option<usize> {
    let rest = file
        .to_str()?
        .strip_prefix(name.to_str()?)?
        .strip_prefix('.')?;
    let n: usize = rest.parse().ok().filter(|&n| n >= 1)?;
    (format!("{n:03}") == rest).then_some(n)
}

/// Whether the existing file at `path` is what offpack itself wrote there for a bundle at `target`,
/// so that replacing it loses nothing the user made: a bundle that opens (its index is read, not
/// its data), a part of a split bundle that opens, a checksum file in `sha256sum` format.
pub fn is_offpack_output(target: &Path, path: &Path, role: OutputRole) -> bool {
    match role {
        OutputRole::Bundle => crate::BundleReader::open(path).is_ok(),
        OutputRole::Part(_) => crate::BundleReader::open(&part_path(target, 1)).is_ok(),
        OutputRole::Sidecar => looks_like_checksum_file(path),
    }
}

fn looks_like_checksum_file(path: &Path) -> bool {
    let Ok(bytes) = offpack_fs::read(path, offpack_fs::CHECKSUM_FILE) else {
        return false;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return false;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.all(|line| {
            let line = line.strip_prefix('\\').unwrap_or(line);
            line.split_once(' ').is_some_and(|(hex, rest)| {
                crate::digest::is_lower_hex64(&hex.to_ascii_lowercase())
                    && (rest.starts_with(' ') || rest.starts_with('*'))
            })
        })
}

/// The lock of one bundle target: `.NAME.offpack-lock` beside it, held with `flock` from before the
/// first check of the target until the bundle and its sidecar are in place. A second writer fails at
/// once naming the first (its pid, read from the lock file). The file is removed when the lock is
/// dropped (after a normal end, an error or Ctrl-C); only a killed run leaves it, and the next run
/// for the target reuses and removes it.
pub struct TargetLock {
    path: PathBuf,
    target: PathBuf,
    /// Open for as long as the lock is held: closing it releases the lock.
    _locked: File,
}

impl std::fmt::Debug for TargetLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLock")
            .field("path", &self.path)
            .finish()
    }
}

impl TargetLock {
    /// Fails with [`BundleError::TargetBusy`] if another writer holds the lock of `target` now,
    /// without creating the lock file: a check before slow work, ahead of [`acquire`](Self::acquire).
    pub fn check_free(target: &Path) -> Result<(), BundleError> {
        let path = lock_path(target)?;
        let file = match open_lock_file(&path, false) {
            Ok(file) => file,
            Err(BundleError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Shared: two runs checking at once do not see each other as writers.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(BundleError::TargetBusy {
                target: target.to_owned(),
                holder: holder_pid(&file),
            }),
            Err(e) => Err(BundleError::io(&path, e.into())),
        }
    }

    /// Takes the lock of `target`, or fails at once with [`BundleError::TargetBusy`].
    pub fn acquire(target: &Path) -> Result<Self, BundleError> {
        check_target_name(target)?;
        let path = lock_path(target)?;
        let (dir, _) = dir_and_name(target)?;
        loop {
            let mut file = open_lock_file(&path, true).map_err(|e| match e {
                // The lock file is an implementation detail: name what the user can fix.
                BundleError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    BundleError::io(&dir, source)
                }
                other => other,
            })?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(BundleError::TargetBusy {
                        target: target.to_owned(),
                        holder: holder_pid(&file),
                    });
                }
                Err(e) => return Err(BundleError::io(&path, e.into())),
            }
            // The holder before us removes the file before it unlocks: if the path no longer
            // names the file we locked, another writer may already hold a new one there.
            let ours = file.metadata().map_err(|e| BundleError::io(&path, e))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BundleError::io(&path, e)),
            }
            // Only for the message of a run that finds the target busy.
            let written = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()));
            written.map_err(|e| BundleError::io(&path, e))?;
            return Ok(TargetLock {
                path,
                target: target.to_owned(),
                _locked: file,
            });
        }
    }

    /// Removes the temporary files that writers of this target left when they were killed. Every
    /// writer of the target holds this lock while its temporary files exist, so while we hold it
    /// none of them belongs to a live writer (a pid in the name could be reused; a lock cannot be
    /// held by a dead process). Returns the files removed.
    pub fn remove_dead_partials(&self) -> Result<Vec<PathBuf>, BundleError> {
        let (dir, name) = dir_and_name(&self.target)?;
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| BundleError::io(&dir, e))? {
            let entry = entry.map_err(|e| BundleError::io(&dir, e))?;
            if !is_partial_of(&name, &entry.file_name()) {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BundleError::io(&path, e)),
            }
        }
        Ok(removed)
    }
}

/// Opens the lock file without following a symbolic link or blocking on a FIFO, and only if it is
/// a regular file: whoever can write in the target's directory must not make offpack truncate and
/// write some other file through it.
fn open_lock_file(path: &Path, create: bool) -> Result<File, BundleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path);
    let not_regular = |what: &str| {
        BundleError::InvalidInput(format!(
            "{}, offpack's lock file for the bundle beside it, is {what}; remove it and run again",
            path.display()
        ))
    };
    let file = match file {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(not_regular("a symbolic link"));
        }
        Err(e) => return Err(BundleError::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| BundleError::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(offpack_fs::describe(meta.file_type())));
    }
    Ok(file)
}

/// `.NAME.offpack-lock` beside the target.
fn lock_path(target: &Path) -> Result<PathBuf, BundleError> {
    let (dir, name) = dir_and_name(target)?;
    let mut lock_name = std::ffi::OsString::from(".");
    lock_name.push(&name);
    lock_name.push(".offpack-lock");
    Ok(dir.join(lock_name))
}

/// The pid the holder of the lock wrote into it; a holder that has just taken the lock writes it
/// a moment later, so this waits a little for it (on the failure path only).
fn holder_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    for _ in 0..10 {
        let mut buf = [0u8; 16];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let pid = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if pid.is_some() {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Whether `file` is a temporary file of a writer of `name`: `.NAME.XXXXXX.partial` (a bundle or
/// part) or `.NAME.XXXXXX.sha256-partial` (its sidecar), `XXXXXX` alphanumeric as the writer makes
/// it. The exact shape keeps another target's files out (`.NAME.b.XXXXXX.partial` is `NAME.b`'s).
fn is_partial_of(name: &std::ffi::OsStr, file: &std::ffi::OsStr) -> bool {
    let (Some(name), Some(file)) = (name.to_str(), file.to_str()) else {
        return false;
    };
    let Some(rest) = file
        .strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
    else {
        return false;
    };
    let random = rest
        .strip_suffix(SIDECAR_PARTIAL_SUFFIX)
        .or_else(|| rest.strip_suffix(PARTIAL_SUFFIX));
    random.is_some_and(|r| r.len() == RANDOM_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still locked (the lock goes with the file handle, after this), so that a
        // writer waiting on this file sees it is gone and locks a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn partials_of_a_target_are_told_apart_from_other_targets() {
        let name = OsStr::new("b.offpack");
        assert!(is_partial_of(name, OsStr::new(".b.offpack.Ab12Cd.partial")));
        assert!(is_partial_of(
            name,
            OsStr::new(".b.offpack.Ab12Cd.sha256-partial")
        ));
        assert!(!is_partial_of(
            name,
            OsStr::new(".b.offpack.x.Ab12Cd.partial")
        ));
        assert!(!is_partial_of(name, OsStr::new(".b.offpack.Ab12C.partial")));
        assert!(!is_partial_of(name, OsStr::new(".b.offpack.offpack-lock")));
        assert!(!is_partial_of(
            OsStr::new("b"),
            OsStr::new(".b.offpack.Ab12Cd.partial")
        ));
    }

    #[test]
    fn part_numbers_are_spelled_as_the_writer_spells_them() {
        let name = OsStr::new("b.offpack");
        assert_eq!(part_number(name, OsStr::new("b.offpack.001")), Some(1));
        assert_eq!(part_number(name, OsStr::new("b.offpack.1234")), Some(1234));
        assert_eq!(part_number(name, OsStr::new("b.offpack.01")), None);
        assert_eq!(part_number(name, OsStr::new("b.offpack.000")), None);
        assert_eq!(part_number(name, OsStr::new("b.offpack.0012")), None);
        assert_eq!(part_number(name, OsStr::new("b.offpack.sha256")), None);
    }

    #[test]
    fn a_second_lock_of_a_target_fails_naming_the_holder_and_the_file_goes_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.offpack");
        TargetLock::check_free(&target).unwrap();
        let first = TargetLock::acquire(&target).unwrap();
        assert!(matches!(
            TargetLock::check_free(&target),
            Err(BundleError::TargetBusy { .. })
        ));
        match TargetLock::acquire(&target) {
            Err(BundleError::TargetBusy { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let _again = TargetLock::acquire(&target).unwrap();
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".b.offpack.offpack-lock")).unwrap();
        let target = dir.path().join("b.offpack");
        let err = TargetLock::acquire(&target).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link; remove it"), "{err}");
        assert!(TargetLock::check_free(&target).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        assert!(check_target_name(Path::new("a\nb.offpack")).is_err());
        assert!(check_target_name(Path::new("dir/a\rb")).is_err());
        assert!(check_target_name(Path::new("dir/a b\\c.offpack")).is_ok());
    }
}
