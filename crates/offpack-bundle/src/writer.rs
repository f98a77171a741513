//! Writing a bundle in one streaming pass (spec sections 3-7).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::files::sidecar_path;
use crate::frame::{self, RAW_HEADER_FRAME_LEN, RAW_HEADER_OFFSET};
use crate::index::{INDEX_JSON, INDEX_VERSION, MANIFEST_JSON, OCI_LAYOUT_NAME, OFFPACK_JSON};
use crate::manifest::{self, BlobRef, Manifest};
use crate::output::{FileHasher, Flusher, FramePool, Parts};
use crate::sign::SigningKey;
use crate::tarhdr::{self, BLOCK};
use crate::{BundleError, Digest, Index, IndexEntry};

/// Decompressed bytes per zstd frame (spec 3.3).
pub(crate) const CHUNK: usize = 8 << 20;
/// Room for a chunk plus a tar header (first frame of an entry) or padding (last frame).
const CHUNK_CAPACITY: usize = CHUNK + BLOCK as usize;
/// Compression threads used when [`WriteOptions::threads`] is 0 (all cores), to bound memory.
const MAX_AUTO_THREADS: usize = 6;

/// Smallest part size for [`WriteOptions::split`].
pub const MIN_PART_SIZE: u64 = 4096;
/// The largest part a FAT32 file system can hold (4 GiB - 1): a good `split` for USB sticks.
pub const FAT32_PART_SIZE: u64 = (4 << 30) - 1;

/// How to write a bundle. Build it with `..WriteOptions::default()` so new options keep compiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd level (1-19; default 3).
    pub level: i32,
    /// Compression threads; 0 = all cores (at most 6). Each thread holds about 34 MiB of buffers.
    pub threads: u32,
    /// Split volumes: write `b.offpack.001`, `.002`, ... of at most this many bytes each (at least
    /// [`MIN_PART_SIZE`]; [`FAT32_PART_SIZE`] suits FAT32 media), whose concatenation is the bundle.
    /// `None`: one file.
    pub split: Option<u64>,
    /// Sign the bundle: an Ed25519 signature over the digest of `offpack.json`, stored in the index.
    pub sign: Option<SigningKey>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            level: 3,
            threads: 0,
            split: None,
            sign: None,
        }
    }
}

/// What [`BundleWriter::finish`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The bundle's path as given to [`BundleWriter::create`]; for a split bundle, the base name of its
    /// parts (what [`crate::verify`] and [`crate::BundleReader::open`] accept).
    pub path: PathBuf,
    /// Hex SHA-256 of the whole bundle (of the joined parts when split).
    pub sha256: String,
    /// The files written with their hex SHA-256 (as in the `.sha256` sidecar): the bundle, or each part.
    pub files: Vec<(PathBuf, String)>,
    /// File size in bytes.
    pub size: u64,
    /// Number of blob entries (each distinct blob once, OCI manifests included).
    pub blobs: usize,
    /// Size of the decompressed tar stream.
    pub uncompressed: u64,
}

/// Writes a bundle into a temporary file next to the target; [`BundleWriter::finish`] renames it into place.
/// Dropping the writer without finishing deletes the temporary file.
///
/// Frames go through the compression pool in order, and the pool is not emptied between entries: an
/// entry is complete once its data is read and hashed, and it is recorded in the index (and its header
/// patched) when its last frame reaches the file. Waiting for each entry's last frames instead left the
/// compression threads idle at every blob boundary.
pub struct BundleWriter {
    target: PathBuf,
    parts: Parts,
    pool: FramePool,
    hasher: FileHasher,
    flusher: Flusher,
    /// End of the file (next write position).
    pos: u64,
    /// Next tar offset.
    tar_pos: u64,
    /// Bytes `[0, committed)` are final and queued for hashing; `committed` is also where the oldest
    /// unrecorded entry starts, since entries are recorded in file order.
    committed: u64,
    /// Frames handed to the pool, and frames written to the file, since the start.
    frames_submitted: u64,
    frames_written: u64,
    /// Complete entries, oldest first, whose last frame is not written yet.
    unrecorded: VecDeque<Unrecorded>,
    entries: Vec<IndexEntry>,
    blobs: HashMap<Digest, u64>,
    sign: Option<SigningKey>,
}

/// Where an entry started, to roll back to on failure or duplicate.
struct Mark {
    frame: u64,
    tar_pos: u64,
}

/// An entry whose data is all read and hashed, waiting for its last frame to be written.
struct Unrecorded {
    path: String,
    digest: Digest,
    size: u64,
    tar_offset: u64,
    /// One past the sequence number of its last frame.
    end_frame: u64,
    /// The real tar header, to write over the placeholder in its first frame (a raw block).
    header: Option<[u8; 512]>,
}

impl BundleWriter {
    /// Starts a bundle that will be renamed to `target` by [`finish`](Self::finish). Writes `oci-layout`.
    pub fn create(target: &Path, opts: WriteOptions) -> Result<Self, BundleError> {
        let threads = match opts.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_AUTO_THREADS),
            n => n as usize,
        };
        if let Some(size) = opts.split.filter(|&s| s < MIN_PART_SIZE) {
            return Err(BundleError::InvalidInput(format!(
                "part size {size} is too small for split volumes: use at least {MIN_PART_SIZE} bytes (e.g. 4G)"
            )));
        }
        crate::target::check_target_name(target)?;
        let pool = FramePool::new(opts.level, threads, CHUNK_CAPACITY)?;
        let parts = Parts::new(target, opts.split)?;
        let mut writer = BundleWriter {
            target: target.to_owned(),
            parts,
            pool,
            hasher: FileHasher::start(opts.split.is_some()),
            flusher: Flusher::start(),
            pos: 0,
            tar_pos: 0,
            committed: 0,
            frames_submitted: 0,
            frames_written: 0,
            unrecorded: VecDeque::new(),
            entries: Vec::new(),
            blobs: HashMap::new(),
            sign: opts.sign,
        };
        writer.add_file(OCI_LAYOUT_NAME, manifest::OCI_LAYOUT)?;
        Ok(writer)
    }

    /// True if the blob was already added.
    pub fn contains(&self, d: &Digest) -> bool {
        self.blobs.contains_key(d)
    }

    /// Adds a blob whose digest is known, verifying digest and size while streaming `data`.
    /// If the blob is already in the bundle, `data` is consumed and nothing is written.
    pub fn add_blob_with_digest(
        &mut self,
        d: &Digest,
        size: u64,
        mut data: impl Read,
    ) -> Result<(), BundleError> {
        if self.contains(d) {
            io::copy(&mut data, &mut io::sink()).map_err(|e| source_err(d.to_string(), e))?;
            return Ok(());
        }
        let path = d.blob_path();
        let mark = self.mark();
        let header = tarhdr::regular_header(&path, size);
        let result = self.stream_entry(Some(&header), size, &mut data, &path);
        let written = match result {
            Ok(actual) if actual == *d => Ok(()),
            Ok(actual) => Err(BundleError::SourceMismatch {
                what: format!("blob {d}"),
                detail: format!("its content hashes to {actual}"),
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.rollback(mark)?;
            return Err(e);
        }
        self.complete(path, d.clone(), &mark, size, None);
        Ok(())
    }

    /// Adds a blob whose digest is not known yet (e.g. a layer of a legacy export): writes a placeholder
    /// header in a raw frame, streams and hashes the data, then patches the header (spec 3.4). A duplicate
    /// is removed again by truncation.
    pub fn add_blob(&mut self, size: u64, data: impl Read) -> Result<Digest, BundleError> {
        self.add_blob_unless(size, data, &|_| false)
            .map(|(digest, _)| digest)
    }

    /// Like [`BundleWriter::add_blob`], but a blob whose digest `leave_out` accepts is streamed,
    /// hashed and then dropped (for delta bundles: a layer the far side holds). Returns the digest
    /// and whether the blob is in the bundle.
    pub fn add_blob_unless(
        &mut self,
        size: u64,
        mut data: impl Read,
        leave_out: &dyn Fn(&Digest) -> bool,
    ) -> Result<(Digest, bool), BundleError> {
        let mark = self.mark();
        let placeholder = tarhdr::regular_header(&format!("blobs/sha256/{}", "0".repeat(64)), size);
        let header_frame = frame::raw_header_frame(&placeholder);
        debug_assert_eq!(header_frame.len() as u64, RAW_HEADER_FRAME_LEN);
        let result = self.submit_made(header_frame.to_vec()).and_then(|()| {
            self.tar_pos += BLOCK;
            self.stream_entry(None, size, &mut data, "a blob of unknown digest")
        });
        let digest = match result {
            Ok(d) => d,
            Err(e) => {
                self.rollback(mark)?;
                return Err(e);
            }
        };
        if self.contains(&digest) {
            self.rollback(mark)?;
            return Ok((digest, true));
        }
        if leave_out(&digest) {
            self.rollback(mark)?;
            return Ok((digest, false));
        }
        let path = digest.blob_path();
        let header = tarhdr::regular_header(&path, size);
        self.complete(path, digest.clone(), &mark, size, Some(header));
        Ok((digest, true))
    }

    /// Adds a small blob held in memory (configs, manifests).
    pub fn add_blob_bytes(&mut self, bytes: &[u8]) -> Result<Digest, BundleError> {
        let d = Digest::of_bytes(bytes);
        self.add_blob_with_digest(&d, bytes.len() as u64, bytes)?;
        Ok(d)
    }

    /// Completes the bundle: checks that every blob `manifest` names was written, writes the OCI manifests,
    /// `index.json`, `manifest.json`, `offpack.json`, the end-of-archive marker and the index; fsyncs, renames
    /// into place and writes the `.sha256` sidecar. Fills in each image's `oci_manifest`.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Written, BundleError> {
        let invalid = |e: BundleError| {
            BundleError::InvalidInput(format!("the manifest given to finish(): {e}"))
        };
        manifest::check_format_version(&manifest.format_version).map_err(invalid)?;
        manifest.validate().map_err(invalid)?;
        self.check_referenced(&manifest)?;
        for image in manifest.images.iter_mut().filter(|i| i.registry.is_none()) {
            let json = manifest::oci_manifest_json(image);
            let digest = self.add_blob_bytes(&json)?;
            image.oci_manifest = Some(BlobRef {
                digest,
                size: json.len() as u64,
            });
        }
        let index_json = to_json(&manifest::oci_index_value(&manifest));
        self.add_file(INDEX_JSON, &index_json)?;
        let docker_json = to_json(&manifest::docker_manifest_value(&manifest));
        self.add_file(MANIFEST_JSON, &docker_json)?;
        let offpack_json = manifest.to_json();
        self.add_file(OFFPACK_JSON, &offpack_json)?;
        let uncompressed = self.tar_pos + 2 * BLOCK;
        let mut end = self.pool.buffer();
        end[..2 * BLOCK as usize].fill(0);
        self.submit_frame(end, 2 * BLOCK as usize)?;
        self.drain()?;
        debug_assert!(self.unrecorded.is_empty(), "every entry is written by now");

        let manifest_digest = Digest::of_bytes(&offpack_json);
        let index = Index {
            index_version: INDEX_VERSION,
            entries: std::mem::take(&mut self.entries),
            signature: self
                .sign
                .as_ref()
                .map(|key| key.sign_manifest(&manifest_digest)),
            manifest: BlobRef {
                digest: manifest_digest,
                size: offpack_json.len() as u64,
            },
        };
        let index_json =
            serde_json::to_vec(&index).map_err(|e| BundleError::BadManifest(e.to_string()))?;
        if index_json.len() as u64 > frame::MAX_INDEX_LEN {
            return Err(BundleError::InvalidInput(format!(
                "the bundle would have {} entries, more than a reader accepts; split the project",
                index.entries.len()
            )));
        }
        self.emit(&frame::trailer(&index_json))?;
        self.commit();

        let BundleWriter {
            target,
            parts,
            hasher,
            flusher,
            pos: size,
            blobs,
            ..
        } = self;
        flusher.finish(&parts)?;
        let (part_hashes, sha256) = hasher.finish(&parts)?;
        let finals = parts.final_paths(&target);
        if part_hashes.len() != finals.len() {
            return Err(BundleError::io(
                parts.tmp_path(0),
                io::Error::other("the parts were not all hashed"),
            ));
        }
        let files: Vec<(PathBuf, String)> = finals.into_iter().zip(part_hashes).collect();
        let lines = sidecar_lines(&files);
        // The new sidecar is written before the bundle moves into place, and the old one set
        // aside, so that the files at the target are always a matching pair or a bundle alone
        // (which verify checks blob by blob), even if the run dies in between.
        let sidecar = prepare_sidecar(&target, &lines);
        let old_sidecar = set_aside_old_sidecar(&target);
        if let Err(e) = parts.persist(&target) {
            // The old bundle is still in place: so goes its sidecar.
            if let Ok(Some(old)) = old_sidecar {
                let _ = old.persist(sidecar_path(&target));
            }
            return Err(e);
        }
        let placed = sidecar
            // Dropping the old sidecar's temporary path deletes it.
            .and_then(|tmp| old_sidecar.map(|_old| tmp))
            .and_then(|tmp| {
                let path = sidecar_path(&target);
                tmp.persist(&path).map(drop).map_err(|e| e.error)
            });
        sync_parent(&target)?;
        if let Err(source) = placed {
            return Err(BundleError::SidecarNotWritten {
                bundle: target.clone(),
                sidecar: sidecar_path(&target),
                lines,
                source,
            });
        }
        Ok(Written {
            path: target,
            sha256,
            files,
            size,
            blobs: blobs.len(),
            uncompressed,
        })
    }

    fn check_referenced(&self, manifest: &Manifest) -> Result<(), BundleError> {
        let check = |r: &BlobRef, by: String| match self.blobs.get(&r.digest) {
            None if manifest.is_absent(&r.digest) => Ok(()),
            Some(&size) if size == r.size => Ok(()),
            Some(&size) => Err(BundleError::SourceMismatch {
                what: by,
                detail: format!(
                    "blob {} was written with {size} bytes, the manifest says {}",
                    r.digest, r.size
                ),
            }),
            None => Err(BundleError::UnwrittenBlob {
                digest: r.digest.to_string(),
                referenced_by: by,
            }),
        };
        if let Some(delta) = &manifest.delta {
            if let Some(d) = delta.absent_layers.iter().find(|d| self.contains(d)) {
                return Err(BundleError::InvalidInput(format!(
                    "the manifest given to finish() lists {d} as absent (delta), but it was added to the bundle"
                )));
            }
        }
        for image in &manifest.images {
            let name = image.display_name();
            if manifest.is_absent(&image.config.digest) {
                return Err(BundleError::InvalidInput(format!(
                    "the manifest given to finish(): delta.absent_layers lists the config of image {name}; only layers may be absent"
                )));
            }
            check(&image.config, format!("config of image {name}"))?;
            for (i, layer) in image.layers.iter().enumerate() {
                check(layer, format!("layer {} of image {name}", i + 1))?;
            }
            if let Some(registry) = &image.registry {
                let manifest = image.oci_manifest.as_ref().ok_or_else(|| {
                    BundleError::InvalidInput(format!(
                        "the manifest given to finish(): image {name} has a registry form but no oci_manifest (its registry's manifest)"
                    ))
                })?;
                check(manifest, format!("the registry manifest of image {name}"))?;
                if let Some(index) = &registry.index {
                    check(&index.blob(), format!("the registry index of image {name}"))?;
                }
            }
        }
        for p in &manifest.packages {
            let r = BlobRef {
                digest: p.digest.clone(),
                size: p.size,
            };
            check(
                &r,
                format!("package {} {} ({})", p.name, p.version, p.filename),
            )?;
        }
        Ok(())
    }

    /// A non-blob entry from memory.
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let mark = self.mark();
        let header = tarhdr::regular_header(path, bytes.len() as u64);
        let mut data = bytes;
        match self.stream_entry(Some(&header), bytes.len() as u64, &mut data, path) {
            Ok(digest) => {
                self.complete(path.to_owned(), digest, &mark, bytes.len() as u64, None);
                Ok(())
            }
            Err(e) => {
                self.rollback(mark)?;
                Err(e)
            }
        }
    }

    /// Streams header (if any), `size` bytes of `data` and padding as frames of at most [`CHUNK`] bytes
    /// (compressed by the pool while the next chunk is read and hashed); returns the digest of the data once
    /// every frame of the entry is submitted. The entry's last frames may still be in the pool.
    fn stream_entry(
        &mut self,
        header: Option<&[u8; 512]>,
        size: u64,
        data: &mut dyn Read,
        what: &str,
    ) -> Result<Digest, BundleError> {
        // Buffers keep their full length; `filled` says how much is data for the next frame.
        let mut chunk = self.pool.buffer();
        let mut filled = 0;
        if let Some(h) = header {
            chunk[..h.len()].copy_from_slice(h);
            filled = h.len();
        }
        let mut hasher = Sha256::new();
        let mut remaining = size;
        while remaining > 0 {
            let want = ((CHUNK - filled) as u64).min(remaining) as usize;
            let target = &mut chunk[filled..filled + want];
            let n = read_some(data, target).map_err(|e| source_err(what.to_owned(), e))?;
            if n == 0 {
                return Err(BundleError::SourceMismatch {
                    what: what.to_owned(),
                    detail: format!(
                        "the data ended after {} of the declared {size} bytes",
                        size - remaining
                    ),
                });
            }
            hasher.update(&chunk[filled..filled + n]);
            filled += n;
            remaining -= n as u64;
            if filled >= CHUNK {
                self.submit_frame(chunk, filled)?;
                chunk = self.pool.buffer();
                filled = 0;
            }
        }
        let mut extra = [0u8; 1];
        if read_some(data, &mut extra).map_err(|e| source_err(what.to_owned(), e))? > 0 {
            return Err(BundleError::SourceMismatch {
                what: what.to_owned(),
                detail: format!("the data is longer than the declared {size} bytes"),
            });
        }
        let pad = tarhdr::padding(size) as usize;
        chunk[filled..filled + pad].fill(0);
        filled += pad;
        if filled > 0 {
            self.submit_frame(chunk, filled)?;
        } else {
            self.pool.give_back(chunk);
        }
        Ok(Digest::from_hasher(hasher))
    }

    /// Hands `chunk[..len]` to the compression pool, first writing finished frames if the pool is full.
    fn submit_frame(&mut self, chunk: Vec<u8>, len: usize) -> Result<(), BundleError> {
        while self.pool.is_full() {
            self.write_next_frame()?;
        }
        self.tar_pos += len as u64;
        self.frames_submitted += 1;
        self.pool.submit(chunk, len)
    }

    /// Queues a frame that needs no compression, in its turn among the compressed ones.
    fn submit_made(&mut self, frame: Vec<u8>) -> Result<(), BundleError> {
        while self.pool.is_full() {
            self.write_next_frame()?;
        }
        self.frames_submitted += 1;
        self.pool.submit_made(frame);
        Ok(())
    }

    /// Writes the oldest frame of the pool, then records every entry that is now wholly written.
    fn write_next_frame(&mut self) -> Result<(), BundleError> {
        match self.pool.next() {
            Some(Ok(out)) => {
                let result = self.emit(&out);
                self.pool.recycle(out);
                result?;
                self.frames_written += 1;
                self.record_written()
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes every frame still in the pool.
    fn drain(&mut self) -> Result<(), BundleError> {
        while self.pool.has_pending() {
            self.write_next_frame()?;
        }
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        self.parts.write_at(bytes, self.pos)?;
        self.flusher
            .written(&self.parts, self.pos, bytes.len() as u64);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Everything written so far is final: queue it for the sidecar hash.
    fn commit(&mut self) {
        self.hasher
            .commit(&self.parts, self.committed, self.pos - self.committed);
        self.committed = self.pos;
    }

    fn mark(&self) -> Mark {
        Mark {
            frame: self.frames_submitted,
            tar_pos: self.tar_pos,
        }
    }

    /// Drops the entry begun at `mark`: the earlier entries' frames are written and recorded, this one's
    /// are discarded, and whatever of it reached the file is cut off.
    fn rollback(&mut self, mark: Mark) -> Result<(), BundleError> {
        while self.frames_written < mark.frame {
            self.write_next_frame()?;
        }
        self.pool.discard();
        self.frames_submitted = mark.frame;
        self.frames_written = mark.frame;
        self.parts.truncate(self.committed)?;
        self.pos = self.committed;
        self.tar_pos = mark.tar_pos;
        Ok(())
    }

    /// The entry begun at `mark` is all submitted: it counts as in the bundle from now on, and is
    /// recorded once its last frame is written.
    fn complete(
        &mut self,
        path: String,
        digest: Digest,
        mark: &Mark,
        size: u64,
        header: Option<[u8; 512]>,
    ) {
        if path.starts_with("blobs/") {
            self.blobs.insert(digest.clone(), size);
        }
        self.unrecorded.push_back(Unrecorded {
            path,
            digest,
            size,
            tar_offset: mark.tar_pos,
            end_frame: self.frames_submitted,
            header,
        });
    }

    /// Records the entries whose last frame is written: patches a placeholder header, adds the index
    /// entry and queues the entry's bytes for the sidecar hash. Called after every frame written, so
    /// the file ends exactly where the recorded entry does.
    fn record_written(&mut self) -> Result<(), BundleError> {
        while self
            .unrecorded
            .front()
            .is_some_and(|e| e.end_frame <= self.frames_written)
        {
            let Some(e) = self.unrecorded.pop_front() else {
                break;
            };
            let offset = self.committed;
            if let Some(header) = e.header {
                self.parts.write_at(&header, offset + RAW_HEADER_OFFSET)?;
            }
            self.entries.push(IndexEntry {
                path: e.path,
                digest: Some(e.digest),
                offset,
                compressed_len: self.pos - offset,
                size: e.size,
                tar_offset: e.tar_offset,
            });
            self.commit();
        }
        Ok(())
    }
}

fn to_json(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn source_err(what: String, source: io::Error) -> BundleError {
    BundleError::Source { what, source }
}

/// One `read`, retrying on `Interrupted`.
fn read_some(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match data.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn sync_parent(path: &Path) -> Result<(), BundleError> {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BundleError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The sidecar's text: one `sha256sum` line per file (the bundle, or each part).
fn sidecar_lines(files: &[(PathBuf, String)]) -> String {
    files
        .iter()
        .map(|(file, sha256)| {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            format!("{sha256}  {name}\n")
        })
        .collect()
}

/// Writes the sidecar's text into a synced temporary file beside it, to be renamed into place.
fn prepare_sidecar(bundle: &Path, text: &str) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let (dir, name) = crate::files::dir_and_name(bundle).map_err(io::Error::other)?;
    let mut tmp = crate::files::temp_beside(
        &dir,
        &name.to_string_lossy(),
        crate::files::SIDECAR_PARTIAL_SUFFIX,
    )
    .map_err(io::Error::other)?;
    tmp.write_all(text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Moves the sidecar of the bundle being replaced (it describes the old bundle) to a temporary
/// name beside it, deleted when the returned path is dropped; `None` when there is none.
fn set_aside_old_sidecar(bundle: &Path) -> io::Result<Option<tempfile::TempPath>> {
    let path = sidecar_path(bundle);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let (dir, name) = crate::files::dir_and_name(bundle).map_err(io::Error::other)?;
    let aside = crate::files::temp_beside(
        &dir,
        &name.to_string_lossy(),
        crate::files::SIDECAR_PARTIAL_SUFFIX,
    )
    .map_err(io::Error::other)?
    .into_temp_path();
    std::fs::rename(&path, &aside)?;
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ZSTD_MAGIC;

    fn entry<'a>(index: &'a Index, d: &Digest) -> &'a IndexEntry {
        index
            .entries
            .iter()
            .find(|e| e.digest.as_ref() == Some(d))
            .unwrap()
    }

    fn written_index(bytes: &[u8]) -> Index {
        let len_pos = bytes.len() - 48;
        let len = u64::from_le_bytes(bytes[len_pos..len_pos + 8].try_into().unwrap()) as usize;
        serde_json::from_slice(&bytes[len_pos - len..len_pos]).unwrap()
    }

    #[test]
    fn unknown_digest_header_is_patched_in_its_raw_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.offpack");
        let mut w = BundleWriter::create(
            &path,
            WriteOptions {
                level: 3,
                threads: 1,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let data = vec![42u8; 1000];
        let d = w.add_blob(1000, &data[..]).unwrap();
        w.finish(Manifest::new("0", "p")).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let e = entry(&written_index(&bytes), &d).clone();
        let at = e.offset as usize;
        assert_eq!(&bytes[at..at + 4], &ZSTD_MAGIC);
        assert_eq!(bytes[at + 4], 0x60);
        assert_eq!(
            &bytes[at + 10..at + 522],
            &tarhdr::regular_header(&d.blob_path(), 1000)[..]
        );
        let decompressed = zstd::decode_all(&bytes[at..at + e.compressed_len as usize]).unwrap();
        assert_eq!(decompressed.len(), 512 + 1024);
        assert_eq!(&decompressed[512..1512], &data[..]);
    }

    #[test]
    fn large_blobs_span_several_frames_and_the_sidecar_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.offpack");
        let mut w = BundleWriter::create(
            &path,
            WriteOptions {
                level: 1,
                threads: 2,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let data: Vec<u8> = (0..CHUNK + 5000).map(|i| (i % 251) as u8).collect();
        let d = w.add_blob_bytes(&data).unwrap();
        let written = w.finish(Manifest::new("0", "p")).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let e = entry(&written_index(&bytes), &d).clone();
        let frame = &bytes[e.offset as usize..];
        let first = zstd::zstd_safe::find_frame_compressed_size(frame).unwrap() as u64;
        assert!(first < e.compressed_len, "one frame holds the whole entry");
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
        let sidecar = std::fs::read_to_string(dir.path().join("big.offpack.sha256")).unwrap();
        assert_eq!(sidecar, format!("{}  big.offpack\n", written.sha256));
        assert_eq!(written.blobs, 1);
    }

    #[test]
    fn a_sidecar_that_cannot_be_written_leaves_the_bundle_complete_and_no_old_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.offpack");
        std::fs::create_dir(sidecar_path(&path)).unwrap();
        let w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
        match w.finish(Manifest::new("0", "p")) {
            Err(BundleError::SidecarNotWritten { lines, .. }) => {
                assert!(lines.ends_with("  s.offpack\n"), "{lines}");
                let sha256 = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                assert!(lines.starts_with(&sha256), "{lines}");
            }
            other => panic!("{other:?}"),
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["s.offpack", "s.offpack.sha256"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_bundle_that_cannot_be_renamed_keeps_the_old_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.offpack");
        let w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
        std::fs::create_dir_all(path.join("in-the-way")).unwrap();
        std::fs::write(sidecar_path(&path), "the old bundle's").unwrap();
        assert_eq!(w.finish(Manifest::new("0", "p")).unwrap_err().kind(), "io");
        assert_eq!(
            std::fs::read_to_string(sidecar_path(&path)).unwrap(),
            "the old bundle's"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn invalid_manifest_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let w =
            BundleWriter::create(&dir.path().join("m.offpack"), WriteOptions::default()).unwrap();
        let mut m = Manifest::new("0", "p");
        m.format_version = "3.0".into();
        let err = w.finish(m).unwrap_err();
        assert_eq!(err.kind(), "invalid-input");
        assert!(!err.is_corruption());
    }
}
