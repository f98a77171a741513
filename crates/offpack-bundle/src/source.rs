//! A bundle on disk for reading: one file, or split volumes `b.offpack.001`, `.002`, ... read as their
//! concatenation (spec section 7).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::BundleError;
use crate::files::{self, part_path};

/// Split bundles with more parts than this are refused (a guard against probing forever).
const MAX_PARTS: usize = 100_000;

struct Part {
    path: PathBuf,
    file: File,
    start: u64,
    len: u64,
}

/// The bytes of a bundle, from one file or several parts.
pub(crate) struct Source {
    /// The bundle's base path (`b.offpack`), also for split bundles; the sidecar is `<base>.sha256`.
    base: PathBuf,
    parts: Vec<Part>,
    split: bool,
    len: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("base", &self.base)
            .field("parts", &self.parts.len())
            .field("len", &self.len)
            .finish()
    }
}

/// `b.offpack.001` → (`b.offpack`, 1).
fn split_suffix(path: &Path) -> Option<(PathBuf, usize)> {
    let name = path.file_name()?.to_str()?;
    let (base, number) = name.rsplit_once('.')?;
    if number.len() < 3 || !number.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    Some((path.with_file_name(base), number.parse().ok()?))
}

/// Opens a bundle file or part. `File::open` blocks forever on a FIFO: a file that is not regular
/// fails at once instead. The inner result keeps the operating system's error (a missing part).
fn open_file(path: &Path) -> Result<io::Result<File>, BundleError> {
    match offpack_fs::open_regular(path, offpack_fs::BUNDLE) {
        Ok((file, _)) => Ok(Ok(file)),
        Err(offpack_fs::ReadError::Io { source, .. }) => Ok(Err(source)),
        Err(other) => Err(BundleError::InvalidInput(other.to_string())),
    }
}

impl Source {
    /// Opens `path`: a bundle file; or the first part `b.offpack.001` of a split bundle; or the base name
    /// `b.offpack` when only its parts exist.
    pub(crate) fn open(path: &Path) -> Result<Self, BundleError> {
        if let Some((base, n)) = split_suffix(path) {
            // `x.offpack.2026` is just a file name unless `x.offpack.001` exists.
            if n != 1 && part_path(&base, 1).exists() {
                return Err(BundleError::InvalidInput(format!(
                    "{} is part {n} of a split bundle: give its first part {} (or {})",
                    path.display(),
                    part_path(&base, 1).display(),
                    base.display()
                )));
            }
            if n == 1 {
                return Self::open_parts(&base);
            }
        }
        match open_file(path)? {
            Ok(file) => {
                let len = file.metadata().map_err(|e| BundleError::io(path, e))?.len();
                Ok(Source {
                    base: path.to_owned(),
                    parts: vec![Part {
                        path: path.to_owned(),
                        file,
                        start: 0,
                        len,
                    }],
                    split: false,
                    len,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && part_path(path, 1).exists() => {
                Self::open_parts(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BundleError::NoSuchBundle {
                path: path.to_owned(),
                detail: format!(
                    " (nor the first part {} of a split bundle)",
                    part_path(path, 1).display()
                ),
            }),
            Err(e) => Err(BundleError::io(path, e)),
        }
    }

    fn open_parts(base: &Path) -> Result<Self, BundleError> {
        let mut parts: Vec<Part> = Vec::new();
        let mut start = 0u64;
        for n in 1..=MAX_PARTS {
            let path = part_path(base, n);
            let file = match open_file(&path)? {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if n == 1 {
                        return Err(BundleError::NoSuchBundle {
                            path,
                            detail: String::new(),
                        });
                    }
                    // A gap before a later part: that part is missing.
                    if part_path(base, n + 1).exists() {
                        return Err(BundleError::MissingPart { path });
                    }
                    break;
                }
                Err(e) => return Err(BundleError::io(&path, e)),
            };
            let len = file
                .metadata()
                .map_err(|e| BundleError::io(&path, e))?
                .len();
            parts.push(Part {
                path,
                file,
                start,
                len,
            });
            start += len;
        }
        Ok(Source {
            base: base.to_owned(),
            parts,
            split: true,
            len: start,
        })
    }

    /// The same files through new handles (positional reads share no state), for another thread.
    pub(crate) fn try_clone(&self) -> Result<Self, BundleError> {
        let mut parts = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            parts.push(Part {
                path: p.path.clone(),
                file: p
                    .file
                    .try_clone()
                    .map_err(|e| BundleError::io(&p.path, e))?,
                start: p.start,
                len: p.len,
            });
        }
        Ok(Source {
            base: self.base.clone(),
            parts,
            split: self.split,
            len: self.len,
        })
    }

    /// Total size (of all parts).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The base path (`b.offpack`), whose `.sha256` sidecar covers the bundle.
    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    /// True for a split bundle.
    pub(crate) fn is_split(&self) -> bool {
        self.split
    }

    /// The files, in order, with their sizes.
    pub(crate) fn part_files(&self) -> Vec<(PathBuf, u64)> {
        self.parts.iter().map(|p| (p.path.clone(), p.len)).collect()
    }

    /// The file holding byte `offset` (the last one for offsets past the end), for messages.
    pub(crate) fn file_at(&self, offset: u64) -> &Path {
        let i = self.part_index(offset);
        self.parts.get(i).map_or(&self.base, |p| &p.path)
    }

    fn part_index(&self, offset: u64) -> usize {
        self.parts
            .partition_point(|p| p.start + p.len <= offset)
            .min(self.parts.len().saturating_sub(1))
    }

    /// One positional read, never crossing a part boundary.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(part) = self.parts.get(self.part_index(offset)) else {
            return Ok(0);
        };
        if offset >= part.start + part.len || buf.is_empty() {
            return Ok(0);
        }
        let local = offset - part.start;
        let n = (part.len - local).min(buf.len() as u64) as usize;
        files::read_at(&part.file, &mut buf[..n], local)
    }

    /// Fills `buf` from `offset`, across parts.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        files::fill_at(buf, offset, |buf, offset| self.read_at(buf, offset))
    }

    /// The I/O error for a read at `offset`, naming the part.
    pub(crate) fn io_err(&self, offset: u64, e: io::Error) -> BundleError {
        BundleError::io(self.file_at(offset), e)
    }
}

/// The size of the bundle at `path` (of all its parts, for a split bundle), named as
/// [`crate::BundleReader::open`] takes it.
pub fn bundle_len(path: &Path) -> Result<u64, BundleError> {
    Ok(Source::open(path)?.len())
}

/// A sequential reader over a [`Source`]; each read stays within one part.
pub(crate) struct SeqReader<'a> {
    pub src: &'a Source,
    pub pos: u64,
}

impl Read for SeqReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A `Read` over `[pos, end)` of a source, using positional reads (several may share one source).
pub(crate) struct RangeReader<'a> {
    pub src: &'a Source,
    pub pos: u64,
    pub end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.src.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_part_names() {
        assert_eq!(
            split_suffix(Path::new("d/b.offpack.001")),
            Some((PathBuf::from("d/b.offpack"), 1))
        );
        assert_eq!(
            split_suffix(Path::new("b.offpack.1234")),
            Some((PathBuf::from("b.offpack"), 1234))
        );
        assert_eq!(split_suffix(Path::new("b.offpack")), None);
        assert_eq!(split_suffix(Path::new("b.offpack.01")), None);
        assert_eq!(split_suffix(Path::new("b.offpack.sha256")), None);
    }

    #[test]
    fn reads_across_parts_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("b.offpack");
        std::fs::write(part_path(&base, 1), b"hello ").unwrap();
        std::fs::write(part_path(&base, 2), b"split ").unwrap();
        std::fs::write(part_path(&base, 3), b"world").unwrap();
        for given in [base.clone(), part_path(&base, 1)] {
            let src = Source::open(&given).unwrap();
            assert!(src.is_split());
            assert_eq!(src.len(), 17);
            let mut all = vec![0u8; 17];
            src.read_exact_at(&mut all, 0).unwrap();
            assert_eq!(&all, b"hello split world");
            let mut mid = vec![0u8; 7];
            src.read_exact_at(&mut mid, 4).unwrap();
            assert_eq!(&mid, b"o split");
            assert_eq!(src.file_at(6), part_path(&base, 2));
            assert_eq!(src.file_at(99), part_path(&base, 3));
        }
        let err = Source::open(&part_path(&base, 2)).unwrap_err();
        assert_eq!(err.kind(), "invalid-input");
        let dated = dir.path().join("backup.offpack.2026");
        std::fs::write(&dated, b"single").unwrap();
        assert!(!Source::open(&dated).unwrap().is_split());
        std::fs::remove_file(part_path(&base, 2)).unwrap();
        let err = Source::open(&base).unwrap_err();
        assert_eq!(err.kind(), "missing-part");
        assert!(err.to_string().contains("b.offpack.002"), "{err}");
    }
}
