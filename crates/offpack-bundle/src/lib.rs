//! offpack bundle format v1: writer, reader, verifier and extractor. File I/O only.
//!
//! The format is specified in `bundle-spec/SPEC.md`: a sequence of zstd frames that decompresses to a POSIX
//! tar (an OCI image layout that `docker load` also accepts), with an index in a trailing skippable frame.

#![warn(missing_docs)]

mod digest;
mod error;
mod frame;
mod index;
mod manifest;
mod reader;
mod tarhdr;
mod verify;
mod writer;

#[doc(hidden)]
pub mod testkit;

pub use digest::Digest;
pub use error::BundleError;
pub use index::{INDEX_VERSION, Index, IndexEntry};
pub use manifest::{
    BlobRef, FORMAT_MAJOR, FORMAT_VERSION, Image, Manifest, Package, Project, ProjectFile,
    rfc3339_utc_now,
};
pub use reader::BundleReader;
pub use verify::{SidecarStatus, VerifyReport, extract, verify};
pub use writer::{BundleWriter, WriteOptions, Written};
