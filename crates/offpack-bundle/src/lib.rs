//! offpack bundle format v1: writer, reader, verifier and extractor. File I/O only.
//!
//! The format is specified in `bundle-spec/SPEC.md`: a sequence of zstd frames that decompresses to a POSIX
//! tar (an OCI image layout that `docker load` also accepts), with an index in a trailing skippable frame.
//! Format 1.1 adds delta bundles ([`Manifest::delta`]), split volumes ([`WriteOptions::split`]; readers take
//! `b.offpack`, `b.offpack.001` or the base name of the parts) and Ed25519 signatures ([`WriteOptions::sign`],
//! [`verify_with_key`], [`generate_keypair`]). Format 1.2 adds the builder and the build-inputs digest of
//! each built service ([`RebuildService::builder`], [`RebuildService::inputs`]). Format 1.3 specifies
//! language packages ([`Manifest::packages`], [`Package`]): wheels and npm tarballs stored as blobs, a
//! bundle of packages alone (no image) included. Format 1.4 adds the registry form of an image
//! ([`Image::registry`], [`RegistryImage`]): the registry's manifest, index and compressed layer
//! blobs kept byte for byte, so that repository digests stay valid.
//!
//! ```
//! use offpack_bundle::{BlobRef, BundleReader, BundleWriter, Image, Manifest, WriteOptions, verify};
//! # fn main() -> Result<(), offpack_bundle::BundleError> {
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("shop.offpack");
//! let mut writer = BundleWriter::create(&path, WriteOptions::default())?;
//! let layer = b"(an uncompressed layer tar)".to_vec();
//! // Digest unknown up front (legacy `docker save` layout): streamed, hashed, header patched afterwards.
//! let layer_digest = writer.add_blob(layer.len() as u64, &layer[..])?;
//! let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#);
//! let config_digest = writer.add_blob_bytes(config.as_bytes())?;
//! let mut manifest = Manifest::new("0.1.0", "shop");
//! manifest.images.push(Image {
//!     refs: vec!["shop_backend:latest".into()],
//!     id: config_digest.clone(),
//!     platform: "linux/amd64".into(),
//!     config: BlobRef { digest: config_digest, size: config.len() as u64 },
//!     layers: vec![BlobRef { digest: layer_digest.clone(), size: layer.len() as u64 }],
//!     oci_manifest: None, // filled in by finish()
//!     registry: None,     // an image from an engine: uncompressed layers
//! });
//! let written = writer.finish(manifest)?; // also writes shop.offpack.sha256
//!
//! let report = verify(&written.path, &mut |_bytes_read| {})?;
//! assert_eq!(report.manifest.images.len(), 1);
//! let reader = BundleReader::open(&written.path)?;
//! let mut data = Vec::new();
//! std::io::Read::read_to_end(&mut reader.blob(&layer_digest)?, &mut data).unwrap();
//! assert_eq!(data, layer);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod digest;
mod error;
mod files;
mod frame;
mod hashpipe;
mod index;
mod loadcheck;
mod manifest;
mod output;
mod reader;
mod registry;
mod sign;
mod source;
mod target;
mod tarhdr;
mod text;
mod verify;
mod writer;

#[doc(hidden)]
pub mod testkit;

pub use digest::Digest;
pub use error::BundleError;
pub use index::{INDEX_VERSION, Index, IndexEntry};
pub use loadcheck::{CheckedBundle, SidecarCheck};
pub use manifest::{
    BlobRef, Delta, ECOSYSTEM_NPM, ECOSYSTEM_PYPI, FORMAT_MAJOR, FORMAT_VERSION, Image,
    MAX_PACKAGE_FILENAME, Manifest, Package, Project, ProjectFile, Rebuild, RebuildService,
    check_package_filename, rfc3339_from_unix, rfc3339_utc_now,
};
pub use reader::BundleReader;
pub use registry::{
    Compression, DiffHasher, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST, RegistryImage, RegistryIndex, RegistryLayer, zstd_layer_reader,
};
pub use sign::{IndexSignature, SigningKey, VerifyingKey, generate_keypair};
pub use source::bundle_len;
pub use target::{OutputRole, TargetLock, check_target_name, existing_outputs, is_offpack_output};
pub use text::{escape_controls, escape_controls_in_lines};
pub use verify::{SidecarStatus, VerifyReport, extract, verify, verify_with_key};
pub use writer::{BundleWriter, FAT32_PART_SIZE, MIN_PART_SIZE, WriteOptions, Written};
