//! One streaming pass over a bundle checking everything (spec section 8), and safe extraction on top of it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::files::sidecar_path;
use crate::frame::{self, FOOTER_LEN, FrameStream, SKIPPABLE_HEADER_LEN};
use crate::hashpipe::HashPipe;
use crate::index::{EntryName, Index};
use crate::manifest::{self, BlobRef};
use crate::reader::MAX_METADATA_LEN;
use crate::registry::{Compression, Decompressed, DiffHasher, RegistryImage};
use crate::sign::VerifyingKey;
use crate::source::{SeqReader, Source};
use crate::tarhdr::{self, BLOCK, EntryType};
use crate::{BundleError, Digest, Manifest};

/// Blobs up to this size that look like JSON are kept in memory during verification, to check OCI
/// manifests and image configs against `offpack.json`.
pub(crate) const MAX_RETAINED_BLOB: u64 = 1 << 20;
/// Total memory for retained blobs.
pub(crate) const MAX_RETAINED_TOTAL: u64 = 256 << 20;

/// Whether the `.sha256` sidecar was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SidecarStatus {
    /// The sidecar exists and matches.
    Matched(PathBuf),
    /// There is no sidecar next to the bundle.
    Absent,
}

/// What a successful [`verify`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    /// Bundle file size.
    pub size: u64,
    /// Hex SHA-256 of the whole file, computed when a sidecar exists.
    pub sha256: Option<String>,
    /// The sidecar check.
    pub sidecar: SidecarStatus,
    /// Size of the decompressed tar stream.
    pub uncompressed: u64,
    /// Number of regular-file entries.
    pub entries: usize,
    /// Number of blobs.
    pub blobs: usize,
    /// Blobs that no image or package names (allowed; reported for information).
    pub unreferenced: Vec<Digest>,
    /// The bundle's `offpack.json`.
    pub manifest: Manifest,
    /// The key that signed the bundle, if it is signed (the signature was checked against it; whether that
    /// key is trusted is for [`verify_with_key`] to decide).
    pub signed_by: Option<VerifyingKey>,
    /// The files read: the bundle, or each part of a split bundle, with their sizes.
    pub files: Vec<(PathBuf, u64)>,
}

/// Checks a whole bundle in one streaming pass (see the spec, section 8). `progress` is called with the
/// number of file bytes read so far. The first problem found is returned; [`BundleError::is_corruption`]
/// is true for every failed check.
pub fn verify(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, BundleError> {
    walk(path, progress, None)
}

/// [`verify`], and requires the bundle to be signed by `key` (spec 6.5): an unsigned bundle fails with
/// [`BundleError::Unsigned`], a signature by another key or an invalid one with
/// [`BundleError::BadSignature`] (both are failed checks, [`BundleError::is_corruption`] is true).
pub fn verify_with_key(
    path: &Path,
    key: &VerifyingKey,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, BundleError> {
    let report = walk(path, progress, None)?;
    require_signer(path, report.signed_by.as_ref(), key)?;
    Ok(report)
}

/// The bundle at `path`, whose valid signature (if any) is by `signed_by`, must be signed by `key`.
pub(crate) fn require_signer(
    path: &Path,
    signed_by: Option<&VerifyingKey>,
    key: &VerifyingKey,
) -> Result<(), BundleError> {
    match signed_by {
        Some(signer) if signer == key => Ok(()),
        Some(signer) => Err(BundleError::BadSignature(format!(
            "it is signed by key {}, not by the required key {}",
            signer.fingerprint(),
            key.fingerprint()
        ))),
        None => Err(BundleError::Unsigned {
            path: path.to_owned(),
            key: key.fingerprint(),
        }),
    }
}

/// Verifies the bundle and extracts its entries into `dest_dir` (created if missing) as regular files:
/// `oci-layout`, `blobs/sha256/<hex>`, `index.json`, `manifest.json`, `offpack.json`, i.e. an OCI image
/// layout that is also a `docker load` directory. Never writes outside `dest_dir`, never creates links, never
/// follows a symlink planted in `dest_dir`. Each file is written under a temporary name and renamed once its
/// digest checked; existing files of the same name are replaced. On error, already extracted files remain.
pub fn extract(path: &Path, dest_dir: &Path) -> Result<VerifyReport, BundleError> {
    std::fs::create_dir_all(dest_dir).map_err(|e| BundleError::io(dest_dir, e))?;
    let mut extractor = Extractor {
        dest: dest_dir.to_owned(),
        current: None,
    };
    walk(path, &mut |_| {}, Some(&mut extractor))
}

/// Reads the bundle sequentially, reporting progress and (when there is a sidecar) hashing every byte,
/// one SHA-256 per file (the bundle, or each part).
struct CountingReader<'a> {
    inner: SeqReader<'a>,
    hasher: Option<HashPipe>,
    /// Where each file ends (offsets in the joined bundle).
    file_ends: Vec<u64>,
    /// Hex SHA-256 of each file read completely.
    file_hashes: Vec<String>,
    read: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A read never crosses the end of a part (SeqReader), so each byte goes to one file's hash.
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(h) = &mut self.hasher {
            let to_io = |e: BundleError| io::Error::other(e.to_string());
            h.update(&buf[..n]).map_err(to_io)?;
            if self.file_ends.get(self.file_hashes.len()) == Some(&self.read) {
                self.file_hashes
                    .push(hex::encode(h.finish().map_err(to_io)?));
            }
        }
        (self.progress)(self.read);
        Ok(n)
    }
}

/// Where the archive is in the required order (spec 4.5).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Start,
    Blobs,
    OciIndex,
    DockerManifest,
    Offpack,
}

fn walk(
    path: &Path,
    progress: &mut dyn FnMut(u64),
    sink: Option<&mut Extractor>,
) -> Result<VerifyReport, BundleError> {
    let src = Source::open(path)?;
    walk_source(&src, progress, sink).map_err(|e| {
        if !src.is_split() || !e.is_corruption() {
            return e;
        }
        // Name the part at fault: the one the sidecar disagrees with, else the one the problem starts in
        // (a frame may continue into the next part).
        let part = damaged_part(&src).or_else(|| e.offset().map(|o| src.file_at(o).to_owned()));
        match part {
            Some(part) => BundleError::InPart {
                part,
                source: Box::new(e),
            },
            None => e,
        }
    })
}

/// The first part whose SHA-256 differs from the sidecar's line for it (after a failed check).
fn damaged_part(src: &Source) -> Option<PathBuf> {
    let (sidecar, expected) = read_sidecar(src).ok().flatten()?;
    match compare_with_sidecar(src, &sidecar, &expected) {
        Err(BundleError::SidecarMismatch { file, .. }) => Some(file),
        _ => None,
    }
}

/// Hashes each file of `src` (the bundle, or each part) and compares it with the sidecar's line for it:
/// the first file that differs is a [`BundleError::SidecarMismatch`].
pub(crate) fn compare_with_sidecar(
    src: &Source,
    sidecar: &Path,
    expected: &[String],
) -> Result<(), BundleError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    for ((path, len), expected) in src.part_files().into_iter().zip(expected) {
        let mut hasher = sha2::Sha256::default();
        let end = offset + len;
        while offset < end {
            let n = ((end - offset) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], offset)
                .map_err(|e| src.io_err(offset, e))?;
            sha2::Digest::update(&mut hasher, &buf[..n]);
            offset += n as u64;
        }
        let actual = hex::encode(sha2::Digest::finalize(hasher));
        if actual != *expected {
            return Err(BundleError::SidecarMismatch {
                sidecar: sidecar.to_owned(),
                file: path,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

fn walk_source(
    src: &Source,
    progress: &mut dyn FnMut(u64),
    mut sink: Option<&mut Extractor>,
) -> Result<VerifyReport, BundleError> {
    let path = src.base();
    let size = src.len();
    let files = src.part_files();
    let sidecar = read_sidecar(src)?;
    let (index_json, trailer_start) = frame::read_trailer(src)?;
    let index = Index::parse(&index_json, trailer_start, false)?;

    let mut end = 0;
    let reader = CountingReader {
        inner: SeqReader { src, pos: 0 },
        hasher: sidecar.as_ref().map(|_| HashPipe::new()),
        file_ends: files
            .iter()
            .map(|(_, len)| {
                end += len;
                end
            })
            .collect(),
        file_hashes: Vec::new(),
        read: 0,
        progress,
    };
    let mut fs = FrameStream::new(reader, path, 0);
    let mut state = WalkState {
        index: &index,
        cursor: 0,
        seen: HashSet::new(),
        blobs: HashMap::new(),
        retained: HashMap::new(),
        retained_total: 0,
        decompressed: HashMap::new(),
        metadata: HashMap::new(),
        previous: None,
        phase: Phase::Start,
        pipe: HashPipe::new(),
    };
    let uncompressed = state
        .walk_archive(&mut fs, &mut sink)
        .map_err(|e| name_corrupt_entry(e, &index))?;
    if fs.stopped_at() != Some(trailer_start) {
        return Err(BundleError::BadIndex(format!(
            "the archive ends at byte {} but the index frame starts at byte {trailer_start}",
            fs.stopped_at()
                .map_or_else(|| "EOF".to_owned(), |s| s.to_string())
        )));
    }
    if state.cursor != index.entries.len() {
        return Err(BundleError::BadIndex(format!(
            "the index lists {} entries but the archive has {}",
            index.entries.len(),
            state.cursor
        )));
    }
    let manifest = state.check_metadata()?;
    // The index's manifest digest was checked against offpack.json's entry and that entry's data, and
    // offpack.json names every blob by digest: the signature covers all the content checked above.
    let signed_by = match &index.signature {
        Some(sig) => Some(crate::sign::check(sig, &index.manifest.digest)?),
        None => None,
    };

    // Hash the trailer too (it was read at the start, but the sidecar covers every byte).
    let (mut reader, rest) = fs.into_parts();
    // `rest` went through the hasher when it was read.
    let mut remaining_bytes = rest.len() as u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| src.io_err(trailer_start, e))?;
        if n == 0 {
            break;
        }
        remaining_bytes += n as u64;
    }
    if trailer_start + remaining_bytes != size
        || remaining_bytes != SKIPPABLE_HEADER_LEN + FOOTER_LEN + index_json.len() as u64
    {
        return Err(BundleError::BadIndex(
            "the file changed while it was being verified".into(),
        ));
    }
    let hashes = std::mem::take(&mut reader.file_hashes);
    let sidecar = match sidecar {
        Some((sidecar_path, expected)) => {
            for (((file, _), expected), actual) in files.iter().zip(expected).zip(&hashes) {
                if expected != *actual {
                    return Err(BundleError::SidecarMismatch {
                        sidecar: sidecar_path,
                        file: file.clone(),
                        expected,
                        actual: actual.clone(),
                    });
                }
            }
            SidecarStatus::Matched(sidecar_path)
        }
        None => SidecarStatus::Absent,
    };
    let sha256 = match (src.is_split(), hashes.first()) {
        (false, Some(h)) => Some(h.clone()),
        _ => None,
    };
    let referenced = referenced_blobs(&manifest);
    let mut unreferenced: Vec<Digest> = state
        .blobs
        .keys()
        .filter(|d| !referenced.contains(d))
        .cloned()
        .collect();
    unreferenced.sort();
    Ok(VerifyReport {
        size,
        sha256,
        sidecar,
        uncompressed,
        entries: index.entries.len(),
        blobs: state.blobs.len(),
        unreferenced,
        manifest,
        signed_by,
        files,
    })
}

/// Reads `<bundle>.sha256` if it exists: (its path, lowercase hex of each file in order). A split bundle's
/// sidecar has one line per part; a line for a part that is not there means the part is missing.
pub(crate) fn read_sidecar(src: &Source) -> Result<Option<(PathBuf, Vec<String>)>, BundleError> {
    let path = sidecar_path(src.base());
    let text = match offpack_fs::read_to_string(&path, offpack_fs::CHECKSUM_FILE) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(offpack_fs::ReadError::Io { source, .. }) => {
            return Err(BundleError::io(&path, source));
        }
        Err(_) => {
            return Err(BundleError::BadSidecar {
                path: path.clone(),
                detail: "not a small text file".into(),
            });
        }
    };
    let bad = |detail: String| BundleError::BadSidecar {
        path: path.clone(),
        detail,
    };
    let mut hashes = Vec::new();
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let hex = words.next().unwrap_or("").to_ascii_lowercase();
        let name = words.next().map(|n| n.trim_start_matches('*'));
        match name {
            Some(name) if crate::digest::is_lower_hex64(&hex) => {
                hashes.push(hex);
                names.push(name.to_owned());
            }
            _ => {
                return Err(bad(
                    "a line does not start with a 64-character hex SHA-256 and a file name".into(),
                ));
            }
        }
    }
    let files = src.part_files().len();
    if hashes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    if hashes.len() > files {
        if src.is_split() {
            let name = names.get(files).cloned().unwrap_or_default();
            return Err(BundleError::MissingPart {
                path: path.with_file_name(name),
            });
        }
        return Err(bad("the file has more than one line".into()));
    }
    if hashes.len() < files {
        return Err(bad(format!(
            "it lists {} files but the bundle has {files} parts",
            hashes.len()
        )));
    }
    Ok(Some((path, hashes)))
}

fn referenced_blobs(m: &Manifest) -> HashSet<Digest> {
    let mut set = HashSet::new();
    for image in &m.images {
        set.insert(image.config.digest.clone());
        set.extend(image.layers.iter().map(|l| l.digest.clone()));
        if let Some(o) = &image.oci_manifest {
            set.insert(o.digest.clone());
        }
        if let Some(i) = image.registry.as_ref().and_then(|r| r.index.as_ref()) {
            set.insert(i.digest.clone());
        }
    }
    set.extend(m.packages.iter().map(|p| p.digest.clone()));
    set
}

struct WalkState<'a> {
    index: &'a Index,
    /// Next index entry expected.
    cursor: usize,
    seen: HashSet<String>,
    blobs: HashMap<Digest, u64>,
    retained: HashMap<Digest, Vec<u8>>,
    retained_total: u64,
    /// What each blob that starts like gzip or zstd decompresses to: the diff IDs of registry-form
    /// layers are checked against it (spec 5.8).
    decompressed: HashMap<Digest, Decompressed>,
    metadata: HashMap<&'static str, Vec<u8>>,
    /// (index position, first frame offset) of the previous regular entry, to check its compressed length.
    previous: Option<(usize, u64)>,
    phase: Phase,
    /// Hashes entry data on another thread while the next bytes are decompressed.
    pipe: HashPipe,
}

impl WalkState<'_> {
    /// Walks every tar entry up to and including the end-of-archive marker; returns the tar stream size.
    fn walk_archive<R: Read>(
        &mut self,
        fs: &mut FrameStream<R>,
        sink: &mut Option<&mut Extractor>,
    ) -> Result<u64, BundleError> {
        let mut header = [0u8; 512];
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let tar_offset = fs.out_pos();
            fs.watch(tar_offset);
            if !fs.read_full(&mut header, "a tar header")? {
                return Err(match fs.stopped_at() {
                    Some(at) => BundleError::BadTarHeader {
                        tar_offset,
                        offset: at,
                        detail: "the archive has no end-of-archive marker".into(),
                    },
                    None => BundleError::Truncated {
                        offset: tar_offset,
                        context: "the archive stops before its end-of-archive marker".into(),
                    },
                });
            }
            let frame_start = fs.watched_start();
            let offset = frame_start.unwrap_or_else(|| fs.current_frame());
            let bad_header = |detail: String| BundleError::BadTarHeader {
                tar_offset,
                offset,
                detail,
            };
            if tarhdr::is_zero_block(&header) {
                return self.end_of_archive(fs, tar_offset, frame_start);
            }
            let h = tarhdr::parse_header(&header).map_err(bad_header)?;
            let entry = h.path.clone();
            check_entry_kind(&h, tar_offset, offset)?;
            if frame_start.is_none() {
                return Err(bad_header(format!(
                    "entry `{entry}` does not start a new zstd frame"
                )));
            }
            self.close_previous(offset)?;
            if !self.seen.insert(entry.trim_end_matches('/').to_owned()) {
                return Err(BundleError::DuplicateEntry { entry, offset });
            }
            if h.entry_type == EntryType::Directory {
                let known = matches!(entry.trim_end_matches('/'), "blobs" | "blobs/sha256");
                if !known || h.size != 0 {
                    return Err(BundleError::UnknownEntry { entry, offset });
                }
                continue;
            }
            let Some(name) = EntryName::parse(&entry) else {
                return Err(BundleError::UnknownEntry { entry, offset });
            };
            self.check_order(&name, &entry, offset)?;
            let index_entry = self.match_index(&entry, h.size, offset, tar_offset)?;

            // The data.
            let retain = match &name {
                EntryName::Blob(_) => h.size <= MAX_RETAINED_BLOB,
                _ => {
                    if h.size > MAX_METADATA_LEN {
                        return Err(BundleError::TooLarge {
                            what: entry,
                            size: h.size,
                            limit: MAX_METADATA_LEN,
                        });
                    }
                    true
                }
            };
            let mut kept = Vec::new();
            let mut diff = matches!(name, EntryName::Blob(_)).then(DiffHasher::sniffing);
            if let Some(s) = sink.as_deref_mut() {
                s.begin(&entry)?;
            }
            let mut remaining = h.size;
            while remaining > 0 {
                let want = (buf.len() as u64).min(remaining) as usize;
                let n = fs.read_some(&mut buf[..want])?;
                if n == 0 {
                    return Err(fs.ended_early(&entry));
                }
                self.pipe.update(&buf[..n])?;
                if let Some(d) = &mut diff {
                    d.update(&buf[..n]);
                    if d.is_plain() {
                        diff = None;
                    }
                }
                if retain {
                    kept.extend_from_slice(&buf[..n]);
                }
                if let Some(s) = sink.as_deref_mut() {
                    s.write(&buf[..n])?;
                }
                remaining -= n as u64;
            }
            let pad = tarhdr::padding(h.size) as usize;
            if pad > 0 {
                let padding = &mut buf[..pad];
                if !fs.read_full(padding, &entry)? {
                    return Err(fs.ended_early(&entry));
                }
                if !tarhdr::is_zero_block(padding) {
                    return Err(BundleError::SizeMismatch {
                        entry,
                        offset,
                        detail: format!(
                            "non-zero bytes follow its declared {} bytes (the header's size is wrong)",
                            h.size
                        ),
                    });
                }
            }
            let actual = Digest::from_sha256(self.pipe.finish()?);
            let expected = match &name {
                EntryName::Blob(d) => Some(d.clone()),
                _ => index_entry.digest.clone(),
            };
            if let Some(expected) = expected {
                if expected != actual {
                    return Err(BundleError::BadDigest {
                        entry,
                        offset,
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            if index_entry.digest.as_ref().is_some_and(|d| *d != actual) {
                return Err(BundleError::BadIndex(format!(
                    "the index has a wrong digest for `{entry}`"
                )));
            }
            if let Some(s) = sink.as_deref_mut() {
                s.commit()?;
            }
            match name {
                EntryName::Blob(d) => {
                    if retain
                        && kept.first() == Some(&b'{')
                        && self.retained_total + h.size <= MAX_RETAINED_TOTAL
                    {
                        self.retained_total += h.size;
                        self.retained.insert(d.clone(), kept);
                    }
                    if let Some(diff) = diff {
                        self.decompressed.insert(d.clone(), diff.finish());
                    }
                    self.blobs.insert(d, h.size);
                }
                EntryName::OciLayout => {
                    self.metadata.insert("oci-layout", kept);
                }
                EntryName::OciIndex => {
                    self.metadata.insert("index.json", kept);
                }
                EntryName::DockerManifest => {
                    self.metadata.insert("manifest.json", kept);
                }
                EntryName::Offpack => {
                    self.metadata.insert("offpack.json", kept);
                }
            }
        }
    }

    fn end_of_archive<R: Read>(
        &mut self,
        fs: &mut FrameStream<R>,
        tar_offset: u64,
        frame_start: Option<u64>,
    ) -> Result<u64, BundleError> {
        let offset = frame_start.unwrap_or_else(|| fs.current_frame());
        let bad = |detail: &str| BundleError::BadTarHeader {
            tar_offset,
            offset,
            detail: detail.into(),
        };
        let Some(frame_start) = frame_start else {
            return Err(bad(
                "the end-of-archive marker does not start a new zstd frame",
            ));
        };
        let mut second = [0u8; 512];
        if !fs.read_full(&mut second, "the end-of-archive marker")?
            || !tarhdr::is_zero_block(&second)
        {
            return Err(bad(
                "incomplete end-of-archive marker (a zero block not followed by another)",
            ));
        }
        let mut probe = [0u8; 1];
        if fs.read_some(&mut probe)? != 0 {
            return Err(bad("data follows the end-of-archive marker"));
        }
        if self.phase != Phase::Offpack {
            return Err(bad(
                "the archive ends before offpack.json (entries are missing or out of order)",
            ));
        }
        self.close_previous(frame_start)?;
        Ok(tar_offset + 2 * BLOCK)
    }

    fn check_order(
        &mut self,
        name: &EntryName,
        entry: &str,
        offset: u64,
    ) -> Result<(), BundleError> {
        let next = match name {
            EntryName::OciLayout => Phase::Start,
            EntryName::Blob(_) => Phase::Blobs,
            EntryName::OciIndex => Phase::OciIndex,
            EntryName::DockerManifest => Phase::DockerManifest,
            EntryName::Offpack => Phase::Offpack,
        };
        let allowed = match next {
            Phase::Start => self.seen.len() == 1,
            Phase::Blobs | Phase::OciIndex => {
                matches!(self.phase, Phase::Start | Phase::Blobs)
                    && self.metadata.contains_key("oci-layout")
            }
            _ => next as u8 == self.phase as u8 + 1,
        };
        if !allowed {
            return Err(BundleError::UnknownEntry {
                entry: entry.to_owned(),
                offset,
            });
        }
        self.phase = next;
        Ok(())
    }

    /// The previous regular entry's frames end where the next header's frame starts.
    fn close_previous(&mut self, next_offset: u64) -> Result<(), BundleError> {
        if let Some((i, start)) = self.previous.take() {
            let e = &self.index.entries[i];
            if next_offset - start != e.compressed_len {
                return Err(BundleError::BadIndex(format!(
                    "entry `{}` occupies {} compressed bytes but the index says {}",
                    e.path,
                    next_offset - start,
                    e.compressed_len
                )));
            }
        }
        Ok(())
    }

    fn match_index(
        &mut self,
        entry: &str,
        size: u64,
        offset: u64,
        tar_offset: u64,
    ) -> Result<crate::IndexEntry, BundleError> {
        let Some(e) = self.index.entries.get(self.cursor) else {
            return Err(BundleError::BadIndex(format!(
                "entry `{entry}` at byte {offset} is not in the index"
            )));
        };
        if e.path != entry {
            return Err(BundleError::BadIndex(format!(
                "the archive has `{entry}` at byte {offset} where the index lists `{}`",
                e.path
            )));
        }
        if e.size != size {
            return Err(BundleError::SizeMismatch {
                entry: entry.to_owned(),
                offset,
                detail: format!("its header says {size} bytes, the index says {}", e.size),
            });
        }
        if e.offset != offset || e.tar_offset != tar_offset {
            return Err(BundleError::BadIndex(format!(
                "`{entry}` is at byte {offset} (tar offset {tar_offset}), the index says byte {} (tar offset {})",
                e.offset, e.tar_offset
            )));
        }
        self.previous = Some((self.cursor, offset));
        self.cursor += 1;
        Ok(e.clone())
    }

    fn check_metadata(&self) -> Result<Manifest, BundleError> {
        check_metadata(
            &self.metadata,
            &self.blobs,
            &self.retained,
            Some(&self.decompressed),
        )
    }
}

/// Cross-checks offpack.json, index.json, manifest.json, oci-layout and the retained OCI manifests and
/// configs (`metadata`: those entries' data by name; `blobs`: every blob's size; `retained`: the data of
/// small JSON blobs; `decompressed`: what compressed blobs decompress to, when they were read,
/// to check registry-form layers against their diff IDs).
pub(crate) fn check_metadata(
    metadata: &HashMap<&'static str, Vec<u8>>,
    blobs: &HashMap<Digest, u64>,
    retained: &HashMap<Digest, Vec<u8>>,
    decompressed: Option<&HashMap<Digest, Decompressed>>,
) -> Result<Manifest, BundleError> {
    let get = |name: &str| {
        metadata
            .get(name)
            .ok_or_else(|| BundleError::BadManifest(format!("the bundle has no {name}")))
    };
    let bad = |m: String| BundleError::BadManifest(m);
    let manifest = Manifest::from_json(get("offpack.json")?)?;
    let layout: Value = parse_json(get("oci-layout")?, "oci-layout")?;
    if layout.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
        return Err(bad(
            "oci-layout does not declare imageLayoutVersion 1.0.0".into()
        ));
    }
    if let Some(d) = manifest
        .delta
        .iter()
        .flat_map(|delta| &delta.absent_layers)
        .find(|d| blobs.contains_key(d))
    {
        return Err(bad(format!(
            "offpack.json: delta.absent_layers lists {d}, but the bundle carries that blob"
        )));
    }
    let check_blob = |r: &BlobRef, by: &str| match blobs.get(&r.digest) {
        Some(&size) if size == r.size => Ok(()),
        Some(&size) => Err(bad(format!(
            "offpack.json: {by} says blob {} has {} bytes, the bundle's has {size}",
            r.digest, r.size
        ))),
        None => Err(BundleError::MissingBlob {
            digest: r.digest.to_string(),
            referenced_by: by.to_owned(),
        }),
    };
    let check_layer = |r: &BlobRef, by: &str| match blobs.get(&r.digest) {
        None if manifest.is_absent(&r.digest) => Ok(()),
        _ => check_blob(r, by),
    };
    for image in &manifest.images {
        let name = image.display_name();
        check_blob(&image.config, &format!("the config of image {name}"))?;
        for (i, layer) in image.layers.iter().enumerate() {
            check_layer(layer, &format!("layer {} of image {name}", i + 1))?;
        }
        let oci = image
            .oci_manifest
            .as_ref()
            .ok_or_else(|| bad(format!("offpack.json: image {name} has no oci_manifest")))?;
        check_blob(oci, &format!("the OCI manifest of image {name}"))?;
        let stored: Value = parse_json(
            retained_json(retained, &oci.digest, &name)?,
            "an OCI manifest",
        )?;
        match &image.registry {
            None => {
                let derived: Value =
                    parse_json(&manifest::oci_manifest_json(image), "an OCI manifest")?;
                if stored != derived {
                    return Err(bad(format!(
                        "the OCI manifest of image {name} ({}) does not list the config and layers offpack.json lists",
                        oci.digest
                    )));
                }
            }
            Some(registry) => {
                check_registry_manifest(image, registry, &stored)?;
                if let Some(index) = &registry.index {
                    check_blob(
                        &index.blob(),
                        &format!("the registry index of image {name}"),
                    )?;
                    let index_json: Value = parse_json(
                        retained_json(retained, &index.digest, &name)?,
                        "an image index",
                    )?;
                    let listed = crate::registry::index_manifest_digests(&index_json);
                    if !listed.contains(&oci.digest.to_string().as_str()) {
                        return Err(bad(format!(
                            "image {name}: its registry index {} does not list its manifest {}",
                            index.digest, oci.digest
                        )));
                    }
                }
                if let Some(decompressed) = decompressed {
                    check_diff_ids(image, registry, blobs, decompressed)?;
                }
            }
        }
        let config: Value = parse_json(
            retained_json(retained, &image.config.digest, &name)?,
            "an image config",
        )?;
        let diff_ids: Vec<&str> = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let layers: Vec<String> = image.diff_ids().iter().map(Digest::to_string).collect();
        if diff_ids != layers {
            return Err(bad(format!(
                "image {name}: its config's rootfs.diff_ids ({}) differ from the layers in offpack.json ({})",
                diff_ids.len(),
                layers.len()
            )));
        }
    }
    for p in &manifest.packages {
        let r = BlobRef {
            digest: p.digest.clone(),
            size: p.size,
        };
        check_blob(&r, &format!("package {} {}", p.name, p.version))?;
    }
    let index_json: Value = parse_json(get("index.json")?, "index.json")?;
    if index_json != manifest::oci_index_value(&manifest) {
        return Err(bad(
            "index.json does not match the images in offpack.json".into()
        ));
    }
    let docker: Value = parse_json(get("manifest.json")?, "manifest.json")?;
    if docker != manifest::docker_manifest_value(&manifest) {
        return Err(bad(
            "manifest.json does not match the images in offpack.json".into(),
        ));
    }
    Ok(manifest)
}

/// The registry's manifest of a registry-form image lists exactly its config and layer blobs,
/// with the media types offpack.json gives.
fn check_registry_manifest(
    image: &crate::Image,
    registry: &RegistryImage,
    stored: &Value,
) -> Result<(), BundleError> {
    let name = image.display_name();
    let bad = |why: String| {
        BundleError::BadManifest(format!("image {name}: its registry manifest {why}"))
    };
    if let Some(media_type) = stored.get("mediaType").and_then(Value::as_str) {
        if media_type != registry.media_type {
            return Err(bad(format!(
                "has media type `{media_type}`, offpack.json says `{}`",
                registry.media_type
            )));
        }
    }
    let descriptor = |v: &Value| {
        (
            v.get("digest").and_then(Value::as_str).map(str::to_owned),
            v.get("size").and_then(Value::as_u64),
            v.get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
    };
    let (config_digest, config_size, _) = descriptor(&stored["config"]);
    if config_digest.as_deref() != Some(image.config.digest.to_string().as_str())
        || config_size != Some(image.config.size)
    {
        return Err(bad(format!(
            "names config {}, offpack.json {}",
            config_digest.unwrap_or_default(),
            image.config.digest
        )));
    }
    let layers = stored
        .get("layers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if layers.len() != image.layers.len() {
        return Err(bad(format!(
            "lists {} layers, offpack.json {}",
            layers.len(),
            image.layers.len()
        )));
    }
    for (i, ((stored, blob), ours)) in layers
        .iter()
        .zip(&image.layers)
        .zip(&registry.layers)
        .enumerate()
    {
        let expected = (
            Some(blob.digest.to_string()),
            Some(blob.size),
            Some(ours.media_type.clone()),
        );
        if descriptor(stored) != expected {
            return Err(bad(format!(
                "lists layer {} as {stored}, offpack.json as {} ({} bytes, {})",
                i + 1,
                blob.digest,
                blob.size,
                ours.media_type
            )));
        }
    }
    Ok(())
}

/// Each registry-form layer the bundle carries decompresses to its diff ID and diff size.
fn check_diff_ids(
    image: &crate::Image,
    registry: &RegistryImage,
    blobs: &HashMap<Digest, u64>,
    decompressed: &HashMap<Digest, Decompressed>,
) -> Result<(), BundleError> {
    for (i, (blob, layer)) in image.layers.iter().zip(&registry.layers).enumerate() {
        let plain = Compression::of_media_type(&layer.media_type) == Some(Compression::None);
        let actual = if plain {
            Ok((blob.digest.clone(), blob.size))
        } else {
            match decompressed.get(&blob.digest) {
                Some(result) => result.clone(),
                // A delta bundle's absent layer: the far side's engine checks it.
                None if !blobs.contains_key(&blob.digest) => continue,
                None => Err("it is neither gzip nor zstd".into()),
            }
        };
        let bad = |detail: String| BundleError::BadLayer {
            image: image.display_name(),
            layer: i + 1,
            blob: blob.digest.to_string(),
            detail,
        };
        match actual {
            Ok((diff_id, _)) if diff_id != layer.diff_id => {
                return Err(bad(format!(
                    "it decompresses to {diff_id}, but the image's config has diff ID {}",
                    layer.diff_id
                )));
            }
            Ok((_, size)) if size != layer.diff_size => {
                return Err(bad(format!(
                    "it decompresses to {size} bytes, offpack.json says {}",
                    layer.diff_size
                )));
            }
            Ok(_) => {}
            Err(why) => {
                return Err(bad(format!(
                    "it does not decompress as its media type {} says: {why}",
                    layer.media_type
                )));
            }
        }
    }
    Ok(())
}

fn retained_json<'a>(
    retained: &'a HashMap<Digest, Vec<u8>>,
    d: &Digest,
    image: &str,
) -> Result<&'a [u8], BundleError> {
    retained.get(d).map(Vec::as_slice).ok_or_else(|| {
        BundleError::BadManifest(format!(
            "blob {d} of image {image} should be a JSON document of at most {MAX_RETAINED_BLOB} bytes"
        ))
    })
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, BundleError> {
    serde_json::from_slice(bytes)
        .map_err(|e| BundleError::BadManifest(format!("{what} is not valid JSON: {e}")))
}

/// Refuses every entry type but regular files and directories, and unsafe paths.
pub(crate) fn check_entry_kind(
    h: &tarhdr::ParsedHeader,
    tar_offset: u64,
    offset: u64,
) -> Result<(), BundleError> {
    let entry = h.path.clone();
    match h.entry_type {
        EntryType::Regular | EntryType::Directory => {}
        EntryType::Hardlink => return Err(BundleError::Hardlink { entry, offset }),
        EntryType::Symlink => return Err(BundleError::Symlink { entry, offset }),
        EntryType::CharDevice | EntryType::BlockDevice | EntryType::Fifo => {
            let kind = match h.entry_type {
                EntryType::CharDevice => "character device",
                EntryType::BlockDevice => "block device",
                _ => "FIFO",
            };
            return Err(BundleError::SpecialFile {
                entry,
                offset,
                kind: kind.into(),
            });
        }
        EntryType::Other(t) => {
            return Err(BundleError::BadTarHeader {
                tar_offset,
                offset,
                detail: format!(
                    "entry `{entry}` has unsupported type flag {:?}",
                    char::from(t)
                ),
            });
        }
    }
    check_path_safety(&entry, h.entry_type == EntryType::Directory, offset)
}

fn check_path_safety(entry: &str, is_dir: bool, offset: u64) -> Result<(), BundleError> {
    if entry.starts_with('/') || entry.starts_with('\\') || entry.get(1..2) == Some(":") {
        return Err(BundleError::AbsolutePath {
            entry: entry.to_owned(),
            offset,
        });
    }
    let trimmed = if is_dir {
        entry.strip_suffix('/').unwrap_or(entry)
    } else {
        entry
    };
    if trimmed
        .split(['/', '\\'])
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(BundleError::PathTraversal {
            entry: entry.to_owned(),
            offset,
        });
    }
    Ok(())
}

/// Writes verified entries into a directory.
struct Extractor {
    dest: PathBuf,
    /// (open temp file, its path, final path) of the entry being written.
    current: Option<(File, PathBuf, PathBuf)>,
}

impl Extractor {
    fn begin(&mut self, entry: &str) -> Result<(), BundleError> {
        // `entry` passed the walker's checks: relative, no `.`/`..`, a known name.
        let mut dir = self.dest.clone();
        let mut parts: Vec<&str> = entry.split('/').collect();
        let file_name = parts.pop().unwrap_or(entry);
        for part in parts {
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(BundleError::io(
                        &dir,
                        io::Error::other(
                            "exists and is not a directory (refusing to follow links)",
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir(&dir).map_err(|e| BundleError::io(&dir, e))?;
                }
                Err(e) => return Err(BundleError::io(&dir, e)),
            }
        }
        let final_path = dir.join(file_name);
        let tmp_path = dir.join(format!(".{file_name}.partial"));
        let _ = std::fs::remove_file(&tmp_path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| BundleError::io(&tmp_path, e))?;
        self.current = Some((file, tmp_path, final_path));
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        if let Some((file, tmp, _)) = &mut self.current {
            file.write_all(bytes)
                .map_err(|e| BundleError::io(tmp.as_path(), e))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), BundleError> {
        if let Some((file, tmp, final_path)) = self.current.take() {
            drop(file);
            std::fs::rename(&tmp, &final_path).map_err(|e| BundleError::io(&final_path, e))?;
        }
        Ok(())
    }
}

impl Drop for Extractor {
    fn drop(&mut self) {
        if let Some((_, tmp, _)) = self.current.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_safety() {
        assert_eq!(
            check_path_safety("/etc/passwd", false, 0)
                .unwrap_err()
                .kind(),
            "absolute-path"
        );
        assert_eq!(
            check_path_safety("blobs/../../x", false, 0)
                .unwrap_err()
                .kind(),
            "path-traversal"
        );
        assert_eq!(
            check_path_safety("blobs//x", false, 0).unwrap_err().kind(),
            "path-traversal"
        );
        assert_eq!(
            check_path_safety("./x", false, 0).unwrap_err().kind(),
            "path-traversal"
        );
        assert!(check_path_safety("blobs/sha256/", true, 0).is_ok());
        assert!(check_path_safety("blobs/sha256/abc", false, 0).is_ok());
    }
}

#[cfg(test)]
mod sidecar_tests {
    use super::*;

    #[test]
    fn sidecar_formats() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("b.offpack");
        std::fs::write(&bundle, b"x").unwrap();
        let src = Source::open(&bundle).unwrap();
        assert!(read_sidecar(&src).unwrap().is_none());
        let hex = "A".repeat(64);
        std::fs::write(sidecar_path(&bundle), format!("{hex} *b.offpack\n")).unwrap();
        assert_eq!(read_sidecar(&src).unwrap().unwrap().1, ["a".repeat(64)]);
        std::fs::write(sidecar_path(&bundle), "xyz  b.offpack\n").unwrap();
        assert_eq!(read_sidecar(&src).unwrap_err().kind(), "bad-sidecar");
        std::fs::write(sidecar_path(&bundle), format!("{hex}  a\n{hex}  b\n")).unwrap();
        assert_eq!(read_sidecar(&src).unwrap_err().kind(), "bad-sidecar");

        // A split bundle: one line per part; a line beyond the parts found names a missing part.
        let parts = dir.path().join("p.offpack");
        std::fs::write(crate::files::part_path(&parts, 1), b"x").unwrap();
        let src = Source::open(&parts).unwrap();
        std::fs::write(
            sidecar_path(&parts),
            format!("{hex}  p.offpack.001\n{hex}  p.offpack.002\n"),
        )
        .unwrap();
        let err = read_sidecar(&src).unwrap_err();
        assert_eq!(err.kind(), "missing-part");
        assert!(err.to_string().contains("p.offpack.002"), "{err}");
    }
}

/// Names the entry whose frames hold a corrupt byte, so that the user learns which blob (and
/// hence which image) is damaged, not only where.
fn name_corrupt_entry(err: BundleError, index: &Index) -> BundleError {
    match err {
        BundleError::CorruptFrame { offset, detail } => {
            let entry = index
                .entries
                .iter()
                .find(|e| e.offset <= offset && offset < e.offset + e.compressed_len.max(1));
            match entry {
                Some(e) if !detail.contains(&e.path) => BundleError::CorruptFrame {
                    offset,
                    detail: format!("in `{}`: {detail}", e.path),
                },
                _ => BundleError::CorruptFrame { offset, detail },
            }
        }
        other => other,
    }
}
