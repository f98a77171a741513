//! Writing a bundle in one streaming pass (spec sections 3-7).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use zstd::zstd_safe::CParameter;

use crate::frame::{self, RAW_HEADER_FRAME_LEN, RAW_HEADER_OFFSET};
use crate::index::{INDEX_JSON, INDEX_VERSION, MANIFEST_JSON, OCI_LAYOUT_NAME, OFFPACK_JSON};
use crate::manifest::{self, BlobRef, Manifest};
use crate::tarhdr::{self, BLOCK};
use crate::{BundleError, Digest, Index, IndexEntry};

/// Decompressed bytes per zstd frame (spec 3.3).
pub(crate) const CHUNK: usize = 8 << 20;

/// How to compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd level (1-19; default 3).
    pub level: i32,
    /// Compression threads; 0 = all cores.
    pub threads: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            level: 3,
            threads: 0,
        }
    }
}

/// What [`BundleWriter::finish`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The bundle's final path.
    pub path: PathBuf,
    /// Hex SHA-256 of the whole file (also in the `.sha256` sidecar).
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
    /// Number of blob entries (each distinct blob once, OCI manifests included).
    pub blobs: usize,
    /// Size of the decompressed tar stream.
    pub uncompressed: u64,
}

/// Writes a bundle into a temporary file next to the target; [`BundleWriter::finish`] renames it into place.
/// Dropping the writer without finishing deletes the temporary file.
pub struct BundleWriter {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
    compressor: zstd::bulk::Compressor<'static>,
    chunk: Vec<u8>,
    out: Vec<u8>,
    /// End of the file (next write position).
    pos: u64,
    /// Next tar offset.
    tar_pos: u64,
    entries: Vec<IndexEntry>,
    blobs: HashMap<Digest, u64>,
    /// SHA-256 of the file bytes `[0, hashed_to)`; bytes are hashed as written unless a header is pending.
    file_hasher: Sha256,
    hashed_to: u64,
    header_pending: bool,
}

/// Where an entry started, to roll back to on failure or duplicate.
struct Mark {
    pos: u64,
    tar_pos: u64,
    hasher: Sha256,
    hashed_to: u64,
}

impl BundleWriter {
    /// Starts a bundle that will be renamed to `target` by [`finish`](Self::finish). Writes `oci-layout`.
    pub fn create(target: &Path, opts: WriteOptions) -> Result<Self, BundleError> {
        let file_name = target.file_name().ok_or_else(|| {
            BundleError::InvalidInput(format!("{} is not a file path", target.display()))
        })?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name.to_string_lossy()))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| BundleError::io(&dir, e))?;
        let mut compressor = zstd::bulk::Compressor::new(opts.level)
            .map_err(|e| BundleError::InvalidInput(format!("zstd level {}: {e}", opts.level)))?;
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        };
        let zstd_err = |e: io::Error| BundleError::InvalidInput(format!("zstd settings: {e}"));
        compressor.include_checksum(true).map_err(zstd_err)?;
        if threads > 1 {
            compressor.multithread(threads).map_err(zstd_err)?;
            // Jobs of 1 MiB so that an 8 MiB frame is compressed by several threads.
            compressor
                .set_parameter(CParameter::JobSize(1 << 20))
                .map_err(zstd_err)?;
        }
        let mut writer = BundleWriter {
            target: target.to_owned(),
            tmp,
            compressor,
            chunk: Vec::new(),
            out: Vec::new(),
            pos: 0,
            tar_pos: 0,
            entries: Vec::new(),
            blobs: HashMap::new(),
            file_hasher: Sha256::new(),
            hashed_to: 0,
            header_pending: false,
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
        self.record(path, d.clone(), &mark, size);
        Ok(())
    }

    /// Adds a blob whose digest is not known yet (e.g. a layer of a legacy export): writes a placeholder
    /// header in a raw frame, streams and hashes the data, then patches the header (spec 3.4). A duplicate
    /// is removed again by truncation.
    pub fn add_blob(&mut self, size: u64, mut data: impl Read) -> Result<Digest, BundleError> {
        let mark = self.mark();
        self.header_pending = true;
        let placeholder = tarhdr::regular_header(&format!("blobs/sha256/{}", "0".repeat(64)), size);
        let result = self
            .emit(&frame::raw_header_frame(&placeholder))
            .and_then(|()| {
                debug_assert_eq!(self.pos - mark.pos, RAW_HEADER_FRAME_LEN);
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
            return Ok(digest);
        }
        let path = digest.blob_path();
        let header = tarhdr::regular_header(&path, size);
        frame::write_all_at(self.tmp.as_file(), &header, mark.pos + RAW_HEADER_OFFSET)
            .map_err(|e| self.tmp_err(e))?;
        self.header_pending = false;
        self.catch_up_hash()?;
        self.record(path, digest.clone(), &mark, size);
        Ok(digest)
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
        for image in &mut manifest.images {
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
        self.flush_frame_of(&[0u8; 2 * BLOCK as usize])?;

        let index = Index {
            index_version: INDEX_VERSION,
            entries: std::mem::take(&mut self.entries),
            manifest: BlobRef {
                digest: Digest::of_bytes(&offpack_json),
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
        self.catch_up_hash()?;

        let sha256 = hex::encode(self.file_hasher.clone().finalize());
        let size = self.pos;
        let blobs = self.blobs.len();
        let target = self.target.clone();
        let tmp_path = self.tmp.path().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode(0o644);
            self.tmp
                .as_file()
                .set_permissions(perms)
                .map_err(|e| BundleError::io(&tmp_path, e))?;
        }
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| BundleError::io(&tmp_path, e))?;
        self.tmp
            .persist(&target)
            .map_err(|e| BundleError::io(&target, e.error))?;
        sync_parent(&target)?;
        write_sidecar(&target, &sha256)?;
        Ok(Written {
            path: target,
            sha256,
            size,
            blobs,
            uncompressed,
        })
    }

    fn check_referenced(&self, manifest: &Manifest) -> Result<(), BundleError> {
        let check = |r: &BlobRef, by: String| match self.blobs.get(&r.digest) {
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
        for image in &manifest.images {
            let name = image.display_name();
            check(&image.config, format!("config of image {name}"))?;
            for (i, layer) in image.layers.iter().enumerate() {
                check(layer, format!("layer {} of image {name}", i + 1))?;
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
                self.record(path.to_owned(), digest, &mark, bytes.len() as u64);
                Ok(())
            }
            Err(e) => {
                self.rollback(mark)?;
                Err(e)
            }
        }
    }

    /// Streams header (if any), `size` bytes of `data` and padding as frames of at most [`CHUNK`] bytes;
    /// returns the digest of the data.
    fn stream_entry(
        &mut self,
        header: Option<&[u8; 512]>,
        size: u64,
        data: &mut dyn Read,
        what: &str,
    ) -> Result<Digest, BundleError> {
        // `chunk` keeps its full length; `filled` says how much of it is data for the next frame.
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(CHUNK + BLOCK as usize, 0);
        let result = self.stream_entry_into(&mut chunk, header, size, data, what);
        self.chunk = chunk;
        result
    }

    fn stream_entry_into(
        &mut self,
        chunk: &mut [u8],
        header: Option<&[u8; 512]>,
        size: u64,
        data: &mut dyn Read,
        what: &str,
    ) -> Result<Digest, BundleError> {
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
                self.flush_frame_of(&chunk[..filled])?;
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
            self.flush_frame_of(&chunk[..filled])?;
        }
        Ok(Digest::from_hasher(hasher))
    }

    /// Compresses `bytes` as one frame and appends it.
    fn flush_frame_of(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        self.out.clear();
        self.out.reserve(zstd::compress_bound(bytes.len()));
        self.compressor
            .compress_to_buffer(bytes, &mut self.out)
            .map_err(|e| BundleError::InvalidInput(format!("zstd compression failed: {e}")))?;
        self.tar_pos += bytes.len() as u64;
        let out = std::mem::take(&mut self.out);
        let result = self.emit(&out);
        self.out = out;
        result
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        frame::write_all_at(self.tmp.as_file(), bytes, self.pos).map_err(|e| self.tmp_err(e))?;
        if !self.header_pending && self.hashed_to == self.pos {
            self.file_hasher.update(bytes);
            self.hashed_to += bytes.len() as u64;
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Hashes the bytes written while a header was pending, reading them back (they are in the page cache).
    fn catch_up_hash(&mut self) -> Result<(), BundleError> {
        let mut buf = vec![0u8; 1 << 20];
        while self.hashed_to < self.pos {
            let n = ((self.pos - self.hashed_to) as usize).min(buf.len());
            frame::read_exact_at(self.tmp.as_file(), &mut buf[..n], self.hashed_to)
                .map_err(|e| self.tmp_err(e))?;
            self.file_hasher.update(&buf[..n]);
            self.hashed_to += n as u64;
        }
        Ok(())
    }

    fn mark(&self) -> Mark {
        Mark {
            pos: self.pos,
            tar_pos: self.tar_pos,
            hasher: self.file_hasher.clone(),
            hashed_to: self.hashed_to,
        }
    }

    fn rollback(&mut self, mark: Mark) -> Result<(), BundleError> {
        self.header_pending = false;
        self.tmp
            .as_file()
            .set_len(mark.pos)
            .map_err(|e| self.tmp_err(e))?;
        self.pos = mark.pos;
        self.tar_pos = mark.tar_pos;
        self.file_hasher = mark.hasher;
        self.hashed_to = mark.hashed_to;
        Ok(())
    }

    fn record(&mut self, path: String, digest: Digest, mark: &Mark, size: u64) {
        if path.starts_with("blobs/") {
            self.blobs.insert(digest.clone(), size);
        }
        self.entries.push(IndexEntry {
            path,
            digest: Some(digest),
            offset: mark.pos,
            compressed_len: self.pos - mark.pos,
            size,
            tar_offset: mark.tar_pos,
        });
    }

    fn tmp_err(&self, e: io::Error) -> BundleError {
        BundleError::io(self.tmp.path(), e)
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

/// `<bundle>.sha256` next to the bundle.
pub(crate) fn sidecar_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.file_name().unwrap_or_default().to_owned();
    name.push(".sha256");
    bundle.with_file_name(name)
}

fn write_sidecar(bundle: &Path, sha256: &str) -> Result<(), BundleError> {
    use std::io::Write as _;
    let path = sidecar_path(bundle);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = bundle
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut tmp = tempfile::Builder::new()
        .prefix(".offpack-sidecar.")
        .tempfile_in(&dir)
        .map_err(|e| BundleError::io(&dir, e))?;
    let tmp_path = tmp.path().to_owned();
    writeln!(tmp, "{sha256}  {name}").map_err(|e| BundleError::io(&tmp_path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| BundleError::io(&tmp_path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| BundleError::io(&tmp_path, e))?;
    tmp.persist(&path)
        .map_err(|e| BundleError::io(&path, e.error))?;
    sync_parent(&path)
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
