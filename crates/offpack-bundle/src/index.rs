//! The bundle index stored in the trailer (spec section 6).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::manifest::BlobRef;
use crate::sign::IndexSignature;
use crate::{BundleError, Digest};

/// The index version this crate writes and reads.
pub const INDEX_VERSION: u32 = 1;

/// The index: where every entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always [`INDEX_VERSION`].
    pub index_version: u32,
    /// Every regular-file entry, in archive order.
    pub entries: Vec<IndexEntry>,
    /// Digest and size of `offpack.json`.
    pub manifest: BlobRef,
    /// Format 1.1: the Ed25519 signature over `manifest.digest`, when the bundle is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<IndexSignature>,
}

/// One tar entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Entry path (`blobs/sha256/<hex>`, `offpack.json`, ...).
    pub path: String,
    /// SHA-256 of the data (required for blobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// File offset of the entry's first zstd frame.
    pub offset: u64,
    /// Total size of the entry's frames.
    pub compressed_len: u64,
    /// Data size.
    pub size: u64,
    /// Offset of the tar header in the decompressed stream.
    pub tar_offset: u64,
}

/// What an entry path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryName {
    OciLayout,
    Blob(Digest),
    OciIndex,
    DockerManifest,
    Offpack,
}

pub(crate) const OFFPACK_JSON: &str = "offpack.json";
pub(crate) const INDEX_JSON: &str = "index.json";
pub(crate) const MANIFEST_JSON: &str = "manifest.json";
pub(crate) const OCI_LAYOUT_NAME: &str = "oci-layout";

impl EntryName {
    pub(crate) fn parse(path: &str) -> Option<Self> {
        match path {
            OCI_LAYOUT_NAME => Some(EntryName::OciLayout),
            INDEX_JSON => Some(EntryName::OciIndex),
            MANIFEST_JSON => Some(EntryName::DockerManifest),
            OFFPACK_JSON => Some(EntryName::Offpack),
            _ => path
                .strip_prefix("blobs/sha256/")
                .and_then(|hex| Digest::from_hex(hex).ok())
                .map(EntryName::Blob),
        }
    }
}

impl Index {
    /// Parses and checks the index JSON: version, frames inside `[0, trailer_start)` in increasing order,
    /// `offpack.json` present and matching `manifest`; with `check_names`, also known unique paths and blob
    /// digests matching their names. (`verify` checks names against the archive itself, so that a bad entry is
    /// reported as what it is rather than as an index problem.)
    pub(crate) fn parse(
        json: &[u8],
        trailer_start: u64,
        check_names: bool,
    ) -> Result<Self, BundleError> {
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| BundleError::BadIndex(format!("index is not valid JSON: {e}")))?;
        match value
            .get("index_version")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(INDEX_VERSION) => {}
            Some(v) => {
                return Err(BundleError::UnsupportedVersion {
                    found: format!("index {v}"),
                    supported: format!("index {INDEX_VERSION}"),
                });
            }
            None => return Err(BundleError::BadIndex("index has no `index_version`".into())),
        }
        let index: Index = serde_json::from_value(value)
            .map_err(|e| BundleError::BadIndex(format!("index is invalid: {e}")))?;
        index.check(trailer_start, check_names)?;
        Ok(index)
    }

    fn check(&self, trailer_start: u64, check_names: bool) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::BadIndex(m));
        let mut seen = HashSet::new();
        let mut previous_end = 0u64;
        for e in self.entries.iter().filter(|_| check_names) {
            let Some(name) = EntryName::parse(&e.path) else {
                return bad(format!("index lists unknown entry `{}`", e.path));
            };
            if !seen.insert(e.path.as_str()) {
                return bad(format!("index lists `{}` twice", e.path));
            }
            if let EntryName::Blob(d) = &name {
                if e.digest.as_ref() != Some(d) {
                    return bad(format!(
                        "index digest of `{}` does not match its name",
                        e.path
                    ));
                }
            }
        }
        for e in &self.entries {
            let end = e.offset.checked_add(e.compressed_len);
            if e.offset < previous_end || end.is_none_or(|end| end > trailer_start) {
                return bad(format!(
                    "entry `{}` has frames at bytes {}+{} outside the archive or out of order",
                    e.path, e.offset, e.compressed_len
                ));
            }
            previous_end = end.unwrap_or(trailer_start);
        }
        match self.entries.iter().find(|e| e.path == OFFPACK_JSON) {
            Some(e)
                if e.digest.as_ref() == Some(&self.manifest.digest)
                    && e.size == self.manifest.size =>
            {
                Ok(())
            }
            Some(_) => bad("the index's `manifest` does not match its offpack.json entry".into()),
            None => bad("index has no offpack.json entry".into()),
        }
    }

    /// The entry for `path`.
    pub fn entry(&self, path: &str) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}
