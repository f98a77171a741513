//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or checking a bundle.
///
/// Each message says what is wrong and what to do. [`BundleError::is_corruption`] separates failed checks
/// (the bundle is damaged or not a bundle: exit code 1) from usage and environment errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bundle file does not exist (nor, for a base name, the first part of a split bundle).
    #[error("{}: no such file{detail}; check the path", path.display())]
    NoSuchBundle {
        /// The file looked for.
        path: PathBuf,
        /// What else was looked for, e.g. " (nor a split bundle's first part b.offpack.001)".
        detail: String,
    },
    /// Reading the data given to the writer failed (e.g. the engine's export stream broke).
    #[error("reading {what} failed: {source}")]
    Source {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The data given to the writer does not match what the caller declared.
    #[error(
        "{what}: {detail}; the source changed or the declared value is wrong, retry the export"
    )]
    SourceMismatch {
        /// What was being written.
        what: String,
        /// Expected versus actual.
        detail: String,
    },
    /// The manifest given to the writer names a blob that was never written.
    #[error(
        "{referenced_by} names blob {digest}, which was not added to the bundle; add it before finish()"
    )]
    UnwrittenBlob {
        /// The missing blob.
        digest: String,
        /// Which manifest item names it.
        referenced_by: String,
    },
    /// A caller-supplied value is invalid (a digest string, an option, an entry name).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The requested blob is not in the bundle.
    #[error("blob {0} is not in this bundle")]
    NotFound(String),
    /// The file has no offpack index footer.
    #[error(
        "{}: not an offpack bundle, or truncated ({detail}); check the path, or copy the bundle again",
        path.display()
    )]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// What was missing.
        detail: String,
    },
    /// The file ends early.
    #[error("bundle is truncated at byte {offset} ({context}): copy it again")]
    Truncated {
        /// Where the data stopped.
        offset: u64,
        /// What was being read.
        context: String,
    },
    /// zstd data does not decompress.
    #[error(
        "compressed data is corrupt in the frame at byte {offset}: {detail}; copy the bundle again"
    )]
    CorruptFrame {
        /// File offset of the frame (or of the failure when the frame start is unknown).
        offset: u64,
        /// The decoder's message.
        detail: String,
    },
    /// The index at the end of the file is damaged or disagrees with the archive.
    #[error("bundle index is damaged: {}; copy the bundle again", crate::escape_controls(.0))]
    BadIndex(String),
    /// A tar header is malformed.
    #[error(
        "tar header at tar offset {tar_offset} (file byte {offset}) is invalid: {}; copy the bundle again",
        crate::escape_controls(detail)
    )]
    BadTarHeader {
        /// Offset of the header in the decompressed stream.
        tar_offset: u64,
        /// File offset of the frame holding it.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A blob's content does not hash to its name.
    #[error(
        "entry `{}` at file byte {offset}: content hashes to {actual}, expected {expected}; the bundle is corrupt, copy it again",
        crate::escape_controls(entry)
    )]
    BadDigest {
        /// The entry.
        entry: String,
        /// File offset of its first frame.
        offset: u64,
        /// The digest its name (or the index) promises.
        expected: String,
        /// The digest of its bytes.
        actual: String,
    },
    /// An entry's size differs from what the index or header claims.
    #[error(
        "entry `{}` at file byte {offset}: {}; the bundle is corrupt, copy it again",
        crate::escape_controls(entry),
        crate::escape_controls(detail)
    )]
    SizeMismatch {
        /// The entry.
        entry: String,
        /// File offset of its first frame.
        offset: u64,
        /// Expected versus actual.
        detail: String,
    },
    /// A path with a `..`, `.` or empty component.
    #[error(
        "entry `{}` at file byte {offset} has an unsafe path (`..`, `.` or empty component); refusing the bundle",
        crate::escape_controls(entry)
    )]
    PathTraversal {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
    },
    /// An absolute path.
    #[error(
        "entry `{}` at file byte {offset} has an absolute path; refusing the bundle",
        crate::escape_controls(entry)
    )]
    AbsolutePath {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
    },
    /// A symbolic link entry.
    #[error(
        "entry `{}` at file byte {offset} is a symbolic link; bundles contain regular files only, refusing the bundle",
        crate::escape_controls(entry)
    )]
    Symlink {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
    },
    /// A hard link entry.
    #[error(
        "entry `{}` at file byte {offset} is a hard link; bundles contain regular files only, refusing the bundle",
        crate::escape_controls(entry)
    )]
    Hardlink {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
    },
    /// A device, FIFO or other special entry.
    #[error(
        "entry `{}` at file byte {offset} is a {kind}; bundles contain regular files only, refusing the bundle",
        crate::escape_controls(entry)
    )]
    SpecialFile {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
        /// "character device", "block device", "FIFO", "pax header", ...
        kind: String,
    },
    /// The same path appears twice.
    #[error(
        "entry `{}` at file byte {offset} appears twice in the bundle; refusing the bundle",
        crate::escape_controls(entry)
    )]
    DuplicateEntry {
        /// The entry.
        entry: String,
        /// File offset of the second occurrence.
        offset: u64,
    },
    /// A name that format v1 does not define.
    #[error(
        "entry `{}` at file byte {offset} is not part of an offpack bundle (unknown name or misplaced entry); refusing the bundle",
        crate::escape_controls(entry)
    )]
    UnknownEntry {
        /// The entry.
        entry: String,
        /// File offset of its frame.
        offset: u64,
    },
    /// offpack.json, index.json, manifest.json or an OCI manifest/config is invalid or inconsistent.
    #[error("{}; the bundle is corrupt or was written by a broken offpack, recreate it", crate::escape_controls(.0))]
    BadManifest(String),
    /// A registry-form layer (format 1.4) does not decompress to the diff ID the image's config
    /// gives it.
    #[error(
        "image {}: layer {layer} (blob {blob}): {detail}; the bundle is corrupt or the registry served a broken image, recreate it",
        crate::escape_controls(image)
    )]
    BadLayer {
        /// The image, for messages.
        image: String,
        /// 1-based position of the layer in the image.
        layer: usize,
        /// The layer's blob.
        blob: String,
        /// What is wrong.
        detail: String,
    },
    /// offpack.json names a blob that is not in the bundle.
    #[error(
        "{} names blob {digest}, which is not in the bundle; the bundle is incomplete, recreate it",
        crate::escape_controls(referenced_by)
    )]
    MissingBlob {
        /// The missing blob.
        digest: String,
        /// Which manifest item names it.
        referenced_by: String,
    },
    /// A bundle of another major format version.
    #[error(
        "bundle format version {found} is not supported: this offpack reads format {supported}; use an offpack release that supports format {found}"
    )]
    UnsupportedVersion {
        /// The bundle's `format_version` (or index version).
        found: String,
        /// What this reader supports.
        supported: String,
    },
    /// The sidecar `.sha256` file disagrees with the bundle (or with one part of a split bundle).
    #[error(
        "{}: the file hashes to {actual} but the checksum file {} says {expected}; the file is damaged, copy it again",
        file.display(), sidecar.display()
    )]
    SidecarMismatch {
        /// The sidecar file.
        sidecar: PathBuf,
        /// The bundle file or part whose hash differs.
        file: PathBuf,
        /// Hex digest in the sidecar.
        expected: String,
        /// Hex digest of the bundle.
        actual: String,
    },
    /// The sidecar `.sha256` file is malformed.
    #[error("{}: {detail}; expected one line `<64 hex>  <file name>`, copy it again or delete it", path.display())]
    BadSidecar {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The bundle's signature is invalid, or made with another key than the one required.
    #[error(
        "bundle signature check failed: {}; the bundle was changed after signing or is not from the expected team, do not load it", crate::escape_controls(.0))]
    BadSignature(String),
    /// A signature was required but the bundle has none.
    #[error(
        "{}: the bundle is not signed, but a signature by key {key} was required; ask the sender for a signed bundle (offpack bundle --sign)",
        path.display()
    )]
    Unsigned {
        /// The bundle.
        path: PathBuf,
        /// Fingerprint of the required key.
        key: String,
    },
    /// A problem inside one part of a split bundle (offsets in `source` are in the joined bundle).
    #[error("{}: {source}", part.display())]
    InPart {
        /// The part file.
        part: PathBuf,
        /// The problem.
        source: Box<BundleError>,
    },
    /// A part of a split bundle is missing.
    #[error(
        "{}: this part of the split bundle is missing; copy every part (`.001`, `.002`, ...) next to each other",
        path.display()
    )]
    MissingPart {
        /// The missing part's path.
        path: PathBuf,
    },
    /// Another writer holds the lock of the target path.
    #[error(
        "another offpack run{} is writing the bundle {} right now; wait for it to finish, or write to another path",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        target.display()
    )]
    TargetBusy {
        /// The bundle path.
        target: PathBuf,
        /// The pid of the writer holding the lock, when it could be read.
        holder: Option<u32>,
    },
    /// The bundle is complete and in place, but its `.sha256` checksum file could not be written.
    #[error(
        "the bundle {} is complete and in place, but its checksum file {} could not be written ({source}); \
         `offpack verify {}` still checks every blob of the bundle without it. To restore it (for \
         `sha256sum -c` and verify's whole-file check), write these lines into {}:\n{lines}",
        bundle.display(), sidecar.display(), bundle.display(), sidecar.display()
    )]
    SidecarNotWritten {
        /// The bundle (base path of a split bundle).
        bundle: PathBuf,
        /// The checksum file that is missing.
        sidecar: PathBuf,
        /// What the checksum file would hold (`sha256sum` lines).
        lines: String,
        /// Why writing it failed.
        source: io::Error,
    },
    /// A metadata item is larger than this reader accepts.
    #[error(
        "{what} is {size} bytes, more than the limit of {limit}; the bundle is corrupt or not from offpack"
    )]
    TooLarge {
        /// The item.
        what: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl BundleError {
    /// True when the bundle failed a check (damaged, truncated, inconsistent, unsupported): the CLI exits 1.
    /// False for usage and environment errors (missing file, bad argument, broken source): the CLI exits 2.
    pub fn is_corruption(&self) -> bool {
        if let BundleError::InPart { source, .. } = self {
            return source.is_corruption();
        }
        !matches!(
            self,
            BundleError::Io { .. }
                | BundleError::TargetBusy { .. }
                | BundleError::SidecarNotWritten { .. }
                | BundleError::NoSuchBundle { .. }
                | BundleError::Source { .. }
                | BundleError::SourceMismatch { .. }
                | BundleError::UnwrittenBlob { .. }
                | BundleError::InvalidInput(_)
                | BundleError::NotFound(_)
        )
    }

    /// A short stable name for the kind of error, as used by the test vectors' `.expect` files.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "io",
            BundleError::NoSuchBundle { .. } => "no-such-bundle",
            BundleError::Source { .. } => "source",
            BundleError::SourceMismatch { .. } => "source-mismatch",
            BundleError::UnwrittenBlob { .. } => "unwritten-blob",
            BundleError::InvalidInput(_) => "invalid-input",
            BundleError::NotFound(_) => "not-found",
            BundleError::NotABundle { .. } => "not-a-bundle",
            BundleError::Truncated { .. } => "truncated",
            BundleError::CorruptFrame { .. } => "corrupt-frame",
            BundleError::BadIndex(_) => "bad-index",
            BundleError::BadTarHeader { .. } => "bad-tar-header",
            BundleError::BadDigest { .. } => "bad-digest",
            BundleError::SizeMismatch { .. } => "size-mismatch",
            BundleError::PathTraversal { .. } => "path-traversal",
            BundleError::AbsolutePath { .. } => "absolute-path",
            BundleError::Symlink { .. } => "symlink",
            BundleError::Hardlink { .. } => "hardlink",
            BundleError::SpecialFile { .. } => "device-file",
            BundleError::DuplicateEntry { .. } => "duplicate-entry",
            BundleError::UnknownEntry { .. } => "unknown-entry",
            BundleError::BadManifest(_) => "bad-manifest",
            BundleError::MissingBlob { .. } => "missing-blob",
            BundleError::BadLayer { .. } => "bad-layer",
            BundleError::UnsupportedVersion { .. } => "unsupported-version",
            BundleError::SidecarMismatch { .. } => "sidecar-mismatch",
            BundleError::BadSidecar { .. } => "bad-sidecar",
            BundleError::TooLarge { .. } => "too-large",
            BundleError::MissingPart { .. } => "missing-part",
            BundleError::BadSignature(_) => "bad-signature",
            BundleError::Unsigned { .. } => "unsigned",
            BundleError::TargetBusy { .. } => "target-busy",
            BundleError::SidecarNotWritten { .. } => "sidecar-not-written",
            BundleError::InPart { source, .. } => source.kind(),
        }
    }

    /// The file offset the problem is at, when the error has one.
    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            BundleError::Truncated { offset, .. }
            | BundleError::CorruptFrame { offset, .. }
            | BundleError::BadTarHeader { offset, .. }
            | BundleError::BadDigest { offset, .. }
            | BundleError::SizeMismatch { offset, .. }
            | BundleError::PathTraversal { offset, .. }
            | BundleError::AbsolutePath { offset, .. }
            | BundleError::Symlink { offset, .. }
            | BundleError::Hardlink { offset, .. }
            | BundleError::SpecialFile { offset, .. }
            | BundleError::DuplicateEntry { offset, .. }
            | BundleError::UnknownEntry { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        BundleError::Io {
            path: path.into(),
            source,
        }
    }
}
