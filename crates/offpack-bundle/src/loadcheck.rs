//! Checking a bundle before using part of it: everything [`crate::verify`] checks except decompressing
//! the blob data (see [`BundleReader::open_checked`]), and the `.sha256` sidecar as a separate job that
//! can run alongside the use.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::frame;
use crate::index::{EntryName, Index};
use crate::reader::{open_entry, read_entry_bytes};
use crate::sign::VerifyingKey;
use crate::source::{RangeReader, Source};
use crate::tarhdr::{self, BLOCK, EntryType};
use crate::verify::{
    MAX_RETAINED_BLOB, MAX_RETAINED_TOTAL, check_entry_kind, check_metadata, compare_with_sidecar,
    read_sidecar, require_signer,
};
use crate::{BundleError, BundleReader, Digest};

/// Frames between two index entries hold at most the two directory headers; more is not a bundle
/// offpack wrote, and is refused before anything is allocated from it.
const MAX_GAP: u64 = 64 << 10;

/// A bundle whose structure, metadata and signature passed [`BundleReader::open_checked`].
#[derive(Debug)]
pub struct CheckedBundle {
    /// The open bundle (each blob is checked as it is read).
    pub reader: BundleReader,
    /// The key whose valid signature the bundle carries.
    pub signed_by: Option<VerifyingKey>,
    /// The check of the `.sha256` file beside the bundle, when there is one (its format was checked).
    pub sidecar: Option<SidecarCheck>,
}

/// Hashes every file of a bundle against its `.sha256` sidecar: one sequential read of the whole
/// bundle, meant to run on a thread of its own while the bundle is used.
#[derive(Debug)]
pub struct SidecarCheck {
    src: Source,
    sidecar: PathBuf,
    expected: Vec<String>,
}

impl SidecarCheck {
    /// The sidecar file.
    pub fn path(&self) -> &Path {
        &self.sidecar
    }

    /// Reads and hashes the whole bundle; [`BundleError::SidecarMismatch`] names the first file (or part)
    /// that differs.
    pub fn run(self) -> Result<PathBuf, BundleError> {
        compare_with_sidecar(&self.src, &self.sidecar, &self.expected)?;
        Ok(self.sidecar)
    }
}

// Defined here rather than in reader.rs so that the reader does not depend on its checker.
impl BundleReader {
    /// Opens a bundle checking everything [`crate::verify`] checks except the blob data, and nothing is
    /// decompressed beyond the tar headers, the metadata entries and the images' configs and OCI manifests:
    /// the trailer, the index against every entry's header and the frames between entries (only the
    /// directory entries and the end-of-archive marker may be there), the entry order, every metadata
    /// entry and its agreement with `offpack.json`, and a signature (an invalid one always fails; with
    /// `key`, the bundle must be signed by it). Each blob is then checked as it is read
    /// ([`blob`](Self::blob)), and [`CheckedBundle::sidecar`] checks the whole file against its `.sha256`.
    ///
    /// For a consumer that uses only some blobs (`offpack load` skips what the engine holds) and must
    /// know the bundle is what its signer made before it acts on any name in it.
    pub fn open_checked(
        path: &Path,
        key: Option<&VerifyingKey>,
    ) -> Result<CheckedBundle, BundleError> {
        open_checked(path, key)
    }
}

fn open_checked(path: &Path, key: Option<&VerifyingKey>) -> Result<CheckedBundle, BundleError> {
    let src = Source::open(path)?;
    let sidecar = read_sidecar(&src)?;
    let (index_json, trailer_start) = frame::read_trailer(&src)?;
    let index = Index::parse(&index_json, trailer_start, true)?;
    check_layout(&src, &index, trailer_start)?;

    let mut metadata: HashMap<&'static str, Vec<u8>> = HashMap::new();
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    for e in &index.entries {
        let name = match EntryName::parse(&e.path) {
            Some(EntryName::Blob(d)) => {
                blobs.insert(d, e.size);
                continue;
            }
            Some(EntryName::OciLayout) => "oci-layout",
            Some(EntryName::OciIndex) => "index.json",
            Some(EntryName::DockerManifest) => "manifest.json",
            Some(EntryName::Offpack) => "offpack.json",
            // Index::parse refused unknown names.
            None => continue,
        };
        metadata.insert(name, read_entry_bytes(&src, e)?);
    }
    // The images' configs and OCI manifests: what check_metadata compares with offpack.json.
    let manifest = crate::Manifest::from_json(metadata.get("offpack.json").map_or(&[][..], |v| v))?;
    let mut retained: HashMap<Digest, Vec<u8>> = HashMap::new();
    let mut retained_total = 0;
    for image in &manifest.images {
        let registry_index = image
            .registry
            .as_ref()
            .and_then(|r| r.index.as_ref())
            .map(|i| i.blob());
        let small_json = std::iter::once(&image.config)
            .chain(image.oci_manifest.as_ref())
            .chain(registry_index.as_ref());
        for blob in small_json {
            if retained.contains_key(&blob.digest) || blob.size > MAX_RETAINED_BLOB {
                continue;
            }
            let Some(e) = index.entry(&format!("blobs/sha256/{}", blob.digest.hex())) else {
                continue;
            };
            if e.size <= MAX_RETAINED_BLOB {
                retained_total += e.size;
                if retained_total > MAX_RETAINED_TOTAL {
                    return Err(BundleError::TooLarge {
                        what: "the images' configs and OCI manifests together".into(),
                        size: retained_total,
                        limit: MAX_RETAINED_TOTAL,
                    });
                }
                retained.insert(blob.digest.clone(), read_entry_bytes(&src, e)?);
            }
        }
    }
    // Diff IDs of compressed layers are not checked here (that needs every layer decompressed):
    // the engine checks them as it loads.
    let manifest = check_metadata(&metadata, &blobs, &retained, None)?;
    let signed_by = match &index.signature {
        Some(sig) => Some(crate::sign::check(sig, &index.manifest.digest)?),
        None => None,
    };
    if let Some(key) = key {
        require_signer(src.base(), signed_by.as_ref(), key)?;
    }
    let sidecar = match sidecar {
        Some((sidecar, expected)) => Some(SidecarCheck {
            src: src.try_clone()?,
            sidecar,
            expected,
        }),
        None => None,
    };
    Ok(CheckedBundle {
        reader: BundleReader::from_checked(path, src, index, manifest),
        signed_by,
        sidecar,
    })
}

/// The archive is what the index says, as far as the headers tell: each entry's frames start with its
/// header (path, size, regular file), entries come in the required order (spec 4.5), and the frames
/// between entries hold nothing but the two allowed directory headers and, at the end, the
/// end-of-archive marker.
fn check_layout(src: &Source, index: &Index, trailer_start: u64) -> Result<(), BundleError> {
    let order = |e: &crate::IndexEntry| match EntryName::parse(&e.path) {
        Some(EntryName::OciLayout) => 0,
        Some(EntryName::Blob(_)) => 1,
        Some(EntryName::OciIndex) => 2,
        Some(EntryName::DockerManifest) => 3,
        _ => 4,
    };
    let names: Vec<u8> = index.entries.iter().map(order).collect();
    let in_order = names.first() == Some(&0)
        && names.windows(2).all(|w| match w[0] {
            0 | 1 => w[1] == 1 || w[1] == 2,
            n => w[1] == n + 1,
        })
        && names.last() == Some(&4);
    if !in_order {
        return Err(BundleError::BadIndex(
            "the entries are not in the order oci-layout, blobs, index.json, manifest.json, offpack.json"
                .into(),
        ));
    }
    let mut cursor = 0;
    for e in &index.entries {
        check_gap(src, cursor, e.offset, false)?;
        drop(open_entry(src, e)?);
        cursor = e.offset + e.compressed_len;
    }
    check_gap(src, cursor, trailer_start, true)
}

/// The frames in `[from, to)`: directory headers, and at the end of the archive its marker.
fn check_gap(src: &Source, from: u64, to: u64, last: bool) -> Result<(), BundleError> {
    if from == to && !last {
        return Ok(());
    }
    if to - from > MAX_GAP {
        return Err(BundleError::BadIndex(format!(
            "bytes {from} to {to} lie between the entries the index lists"
        )));
    }
    let mut decoder = zstd::stream::read::Decoder::new(RangeReader {
        src,
        pos: from,
        end: to,
    })
    .map_err(|e| src.io_err(from, e))?;
    let mut data = Vec::new();
    (&mut decoder)
        .take(MAX_GAP * 4)
        .read_to_end(&mut data)
        .map_err(|e| BundleError::CorruptFrame {
            offset: from,
            detail: format!("between the entries the index lists: {e}"),
        })?;
    let mut blocks = data.chunks(BLOCK as usize);
    while let Some(block) = blocks.next() {
        let header: &[u8; 512] = match block.try_into() {
            Ok(h) => h,
            Err(_) => {
                return Err(BundleError::BadIndex(format!(
                    "bytes {from} to {to} hold a partial tar block between entries"
                )));
            }
        };
        if tarhdr::is_zero_block(header) {
            let rest: Vec<&[u8]> = blocks.collect();
            if !last || rest.len() != 1 || !tarhdr::is_zero_block(rest[0]) {
                return Err(BundleError::BadTarHeader {
                    tar_offset: 0,
                    offset: from,
                    detail:
                        "the end-of-archive marker is not two zero blocks at the end of the archive"
                            .into(),
                });
            }
            return Ok(());
        }
        let h = tarhdr::parse_header(header).map_err(|detail| BundleError::BadTarHeader {
            tar_offset: 0,
            offset: from,
            detail,
        })?;
        check_entry_kind(&h, 0, from)?;
        let known_directory = h.entry_type == EntryType::Directory
            && matches!(h.path.trim_end_matches('/'), "blobs" | "blobs/sha256")
            && h.size == 0;
        if !known_directory {
            if h.entry_type == EntryType::Regular {
                return Err(BundleError::BadIndex(format!(
                    "entry `{}` at byte {from} is not in the index",
                    h.path
                )));
            }
            return Err(BundleError::UnknownEntry {
                entry: h.path,
                offset: from,
            });
        }
    }
    if last {
        return Err(BundleError::BadTarHeader {
            tar_offset: 0,
            offset: from,
            detail: "the archive has no end-of-archive marker".into(),
        });
    }
    Ok(())
}
