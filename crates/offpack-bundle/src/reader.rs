//! Random access to a bundle through its index (spec 6.4).

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::frame;
use crate::index::{EntryName, OFFPACK_JSON};
use crate::source::{RangeReader, Source};
use crate::tarhdr::{self, EntryType};
use crate::{BundleError, Digest, Index, IndexEntry, Manifest};

/// Largest metadata entry (`offpack.json`, `index.json`, ...) a reader loads into memory.
pub(crate) const MAX_METADATA_LEN: u64 = 64 << 20;

/// An open bundle: its index and `offpack.json`, with random access to every entry.
#[derive(Debug)]
pub struct BundleReader {
    path: PathBuf,
    src: Source,
    index: Index,
    manifest: Manifest,
    by_digest: HashMap<Digest, usize>,
}

impl BundleReader {
    /// Opens a bundle reading only the trailer, the index and `offpack.json` (constant time, for `inspect`).
    /// This checks the index and the manifest, not the blobs: use [`crate::verify`] for that.
    ///
    /// `path` is a bundle file, the first part `b.offpack.001` of a split bundle, or the base name
    /// `b.offpack` when only the parts exist; parts are read as one file.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let src = Source::open(path)?;
        let (json, trailer_start) = frame::read_trailer(&src)?;
        let index = Index::parse(&json, trailer_start, true)?;
        let by_digest = blob_positions(&index);
        let entry = index
            .entry(OFFPACK_JSON)
            .ok_or_else(|| BundleError::BadIndex("index has no offpack.json entry".into()))?;
        let bytes = read_entry_bytes(&src, entry)?;
        let manifest = Manifest::from_json(&bytes)?;
        Ok(BundleReader {
            path: path.to_owned(),
            src,
            index,
            manifest,
            by_digest,
        })
    }

    pub(crate) fn from_checked(path: &Path, src: Source, index: Index, manifest: Manifest) -> Self {
        let by_digest = blob_positions(&index);
        BundleReader {
            path: path.to_owned(),
            src,
            index,
            manifest,
            by_digest,
        }
    }

    /// The bundle's `offpack.json`.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The bundle's index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The bundle's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the bundle holds blob `d`.
    pub fn contains(&self, d: &Digest) -> bool {
        self.by_digest.contains_key(d)
    }

    /// Streams blob `d`: exactly its data. Size and digest are checked when the data ends: the read that
    /// would return end-of-file returns an [`io::ErrorKind::InvalidData`] error naming the blob instead if
    /// they are wrong. Several readers may be used at once.
    pub fn blob(&self, d: &Digest) -> Result<impl Read + '_, BundleError> {
        let i = *self
            .by_digest
            .get(d)
            .ok_or_else(|| BundleError::NotFound(d.to_string()))?;
        self.entry_reader(&self.index.entries[i])
    }

    /// Streams blob `d` from byte `start` to its end. Decompression begins at the last of the
    /// entry's frames that starts at or before `start` (frames that declare their content size are
    /// stepped over by their block headers, without decompressing them), so a range near the end of
    /// a large layer costs one frame, not the whole layer. Only a read of the whole blob can check
    /// its digest ([`blob`](Self::blob)): this one is not checked.
    pub fn blob_from(&self, d: &Digest, start: u64) -> Result<impl Read + Send + '_, BundleError> {
        let i = *self
            .by_digest
            .get(d)
            .ok_or_else(|| BundleError::NotFound(d.to_string()))?;
        let e = &self.index.entries[i];
        if start > e.size {
            return Err(BundleError::InvalidInput(format!(
                "byte {start} is past the end of `{}` ({} bytes)",
                e.path, e.size
            )));
        }
        // Decompressed positions count from the entry's tar header.
        let target = tarhdr::BLOCK + start;
        let (pos, out) = frame::step_to(&self.src, e.offset, e.offset + e.compressed_len, target)
            .map_err(|err| self.src.io_err(e.offset, err))?;
        let range = RangeReader {
            src: &self.src,
            pos,
            end: e.offset + e.compressed_len,
        };
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 16, range))
                .map_err(|err| self.src.io_err(pos, err))?;
        let skip = target - out;
        let skipped = io::copy(&mut (&mut decoder).take(skip), &mut io::sink())
            .map_err(|err| self.src.io_err(pos, err))?;
        if skipped != skip {
            return Err(BundleError::Truncated {
                offset: e.offset,
                context: format!("the frames of `{}`", e.path),
            });
        }
        Ok(decoder.take(e.size - start))
    }

    /// Streams any entry by path (`offpack.json`, `manifest.json`, `index.json`, `oci-layout`, blobs), with
    /// the same checks as [`blob`](Self::blob).
    pub fn entry(&self, path: &str) -> Result<impl Read + '_, BundleError> {
        let e = self
            .index
            .entry(path)
            .ok_or_else(|| BundleError::NotFound(path.to_owned()))?;
        self.entry_reader(e)
    }

    fn entry_reader(&self, e: &IndexEntry) -> Result<EntryReader<'_>, BundleError> {
        open_entry(&self.src, e)
    }

    /// The files the bundle is made of (one, or each part of a split bundle), with their sizes.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        self.src.part_files()
    }
}

/// Each blob's position in the index.
fn blob_positions(index: &Index) -> HashMap<Digest, usize> {
    index
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match EntryName::parse(&e.path) {
            Some(EntryName::Blob(d)) => Some((d, i)),
            _ => None,
        })
        .collect()
}

pub(crate) fn open_entry<'a>(
    src: &'a Source,
    e: &IndexEntry,
) -> Result<EntryReader<'a>, BundleError> {
    let range = RangeReader {
        src,
        pos: e.offset,
        end: e.offset + e.compressed_len,
    };
    let decoder =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 16, range))
            .map_err(|err| src.io_err(e.offset, err))?;
    let mut reader = EntryReader {
        inner: decoder,
        name: e.path.clone(),
        offset: e.offset,
        size: e.size,
        remaining: e.size,
        hasher: Sha256::new(),
        expected: e.digest.clone(),
        checked: false,
    };
    let mut header = [0u8; 512];
    let mut got = 0;
    while got < header.len() {
        let n = reader.inner_read(&mut header[got..])?;
        if n == 0 {
            return Err(BundleError::BadIndex(format!(
                "the frames of `{}` at byte {} hold no complete tar header",
                e.path, e.offset
            )));
        }
        got += n;
    }
    let parsed = tarhdr::parse_header(&header).map_err(|detail| BundleError::BadTarHeader {
        tar_offset: e.tar_offset,
        offset: e.offset,
        detail,
    })?;
    if parsed.path != e.path || parsed.size != e.size || parsed.entry_type != EntryType::Regular {
        return Err(BundleError::BadIndex(format!(
            "index entry `{}` ({} bytes) at byte {} points at a header for `{}` ({} bytes)",
            e.path, e.size, e.offset, parsed.path, parsed.size
        )));
    }
    Ok(reader)
}

/// Reads a whole metadata entry (bounded by [`MAX_METADATA_LEN`]).
pub(crate) fn read_entry_bytes(src: &Source, e: &IndexEntry) -> Result<Vec<u8>, BundleError> {
    if e.size > MAX_METADATA_LEN {
        return Err(BundleError::TooLarge {
            what: e.path.clone(),
            size: e.size,
            limit: MAX_METADATA_LEN,
        });
    }
    let mut reader = open_entry(src, e)?;
    let mut out = Vec::with_capacity(e.size.min(1 << 20) as usize);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.checked_read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

type Decoder<'a> = zstd::stream::read::Decoder<'static, BufReader<RangeReader<'a>>>;

/// Reads one entry's data and checks it at the end.
pub(crate) struct EntryReader<'a> {
    inner: Decoder<'a>,
    name: String,
    offset: u64,
    size: u64,
    remaining: u64,
    hasher: Sha256,
    expected: Option<Digest>,
    checked: bool,
}

impl EntryReader<'_> {
    fn inner_read(&mut self, buf: &mut [u8]) -> Result<usize, BundleError> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(BundleError::Truncated {
                        offset: self.offset,
                        context: format!("the frames of `{}`", self.name),
                    });
                }
                Err(e) => {
                    return Err(BundleError::CorruptFrame {
                        offset: self.offset,
                        detail: format!("in `{}`: {e}", self.name),
                    });
                }
            }
        }
    }

    /// After the data, the entry's frames hold only the zero padding to a block: a header size that
    /// lies or an entry hidden in another's frames (a link a plain `tar x` would create) is refused.
    fn check_tail(&mut self) -> Result<(), BundleError> {
        let pad = tarhdr::padding(self.size) as usize;
        let mut tail = [0u8; 513];
        let mut got = 0;
        while got < tail.len() {
            let n = self.inner_read(&mut tail[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got != pad || !tarhdr::is_zero_block(&tail[..pad]) {
            return Err(BundleError::SizeMismatch {
                entry: self.name.clone(),
                offset: self.offset,
                detail: format!(
                    "its frames do not end with its {} bytes and their padding (the sizes lie or another entry is hidden in them)",
                    self.size
                ),
            });
        }
        Ok(())
    }

    fn checked_read(&mut self, buf: &mut [u8]) -> Result<usize, BundleError> {
        if self.remaining == 0 {
            if !self.checked {
                self.checked = true;
                let actual = Digest::from_hasher(self.hasher.clone());
                if let Some(expected) = &self.expected {
                    if *expected != actual {
                        return Err(BundleError::BadDigest {
                            entry: self.name.clone(),
                            offset: self.offset,
                            expected: expected.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                }
                self.check_tail()?;
            }
            return Ok(0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = self.inner_read(&mut buf[..want])?;
        if n == 0 {
            return Err(BundleError::SizeMismatch {
                entry: self.name.clone(),
                offset: self.offset,
                detail: format!(
                    "data ends after {} of {} bytes",
                    self.size - self.remaining,
                    self.size
                ),
            });
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.checked_read(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}
