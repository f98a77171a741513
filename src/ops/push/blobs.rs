//! Getting one blob of the bundle into every repository that needs it: `HEAD` first, a mount
//! from a repository that has it, else an upload streamed from the bundle through the
//! compressor. A layer's compressed digest is known only once compressed; a record of it in the
//! cache (diff ID + compression → digest, size) lets the next run skip it by `HEAD`.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Mutex;

use anyhow::{Context, Result};
use offpack_bundle::{BundleReader, Digest};
use offpack_registry::Client;
use serde::{Deserialize, Serialize};

use super::Compression;
use crate::fetch::cache::PackageCache;
use crate::reporter::{ImageProgress, Reporter};

/// The cache records' kind (a directory under `keys/`).
const RECORD_KIND: &str = "registry-layers";

/// A blob of the bundle to put into `repositories`.
#[derive(Debug, Clone)]
pub struct BlobJob {
    /// The blob in the bundle (a layer's diff ID, or a config).
    pub digest: Digest,
    /// Its size in the bundle.
    pub size: u64,
    /// A layer (compressed as asked) rather than a config (sent as it is).
    pub layer: bool,
    pub repositories: Vec<String>,
}

/// A blob and whether it is sent compressed: the same bundle blob can be an engine-form image's
/// layer (compressed on the way) and a registry-form image's (sent as the registry had it).
pub type BlobKey = (Digest, bool);

impl BlobJob {
    pub fn key(&self) -> BlobKey {
        (self.digest.clone(), self.layer)
    }
}

/// How a blob is known to the registry now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDone {
    /// The digest and size the registry has (compressed for a layer).
    pub digest: String,
    pub size: u64,
    /// Repositories that had it already.
    pub present: usize,
    /// Repositories it was mounted into.
    pub mounted: usize,
    /// Bytes sent (0 when nothing was uploaded).
    pub sent: u64,
    /// Uploads made.
    pub uploads: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    digest: String,
    size: u64,
}

/// What the blob workers share.
pub struct BlobContext<'a> {
    pub client: &'a Client,
    pub bundle: &'a BundleReader,
    pub compression: Compression,
    pub cache: Option<&'a PackageCache>,
    pub progress: &'a Mutex<ImageProgress>,
    pub reporter: &'a dyn Reporter,
}

impl BlobContext<'_> {
    fn record_key(&self, job: &BlobJob) -> String {
        format!("{} {}", job.digest, self.compression.record_name())
    }

    /// What the registry will call this blob, when known without sending it. The records are
    /// an optimisation: one that cannot be read only costs a compression.
    fn known(&self, job: &BlobJob) -> Option<(String, u64)> {
        if !job.layer || self.compression == Compression::None {
            return Some((job.digest.to_string(), job.size));
        }
        let cache = self.cache?;
        match cache.get_key(RECORD_KIND, &self.record_key(job)) {
            Ok(bytes) => bytes
                .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
                .map(|r| (r.digest, r.size)),
            Err(e) => {
                self.reporter.warn(&format!(
                    "cannot read the record of layer {}'s compressed digest ({e:#}): it is \
                     compressed again to ask the registry",
                    job.digest
                ));
                None
            }
        }
    }

    /// Records the compressed digest for the next push; a failure is a warning, not the push's.
    fn remember(&self, job: &BlobJob, digest: &str, size: u64) {
        if !job.layer || self.compression == Compression::None {
            return;
        }
        let Some(cache) = self.cache else {
            return;
        };
        let record = Record {
            digest: digest.to_string(),
            size,
        };
        let written = serde_json::to_vec(&record)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| cache.put_key(RECORD_KIND, &self.record_key(job), &bytes));
        if let Err(e) = written {
            self.reporter.warn(&format!(
                "cannot record layer {}'s compressed digest ({e:#}): the next push compresses it \
                 again to ask the registry",
                job.digest
            ));
        }
    }

    fn passed(&self, job: &BlobJob, bytes: u64, done: bool) {
        if let Ok(mut progress) = self.progress.lock() {
            if done {
                progress.blob_done(&job.digest, job.size);
            } else {
                progress.blob_bytes(&job.digest, bytes);
            }
        }
    }

    /// Puts the blob into every repository of the job.
    pub fn ensure(&self, job: &BlobJob) -> Result<BlobDone> {
        let mut known = self.known(job);
        let mut done = BlobDone {
            digest: String::new(),
            size: 0,
            present: 0,
            mounted: 0,
            sent: 0,
            uploads: 0,
        };
        let mut holder: Option<&str> = None;
        let mut present = Vec::new();
        let mut mounted = Vec::new();
        let mut missing = VecDeque::new();
        match &known {
            Some((digest, _)) => {
                for repo in &job.repositories {
                    if self.client.blob_size(repo, digest)?.is_some() {
                        present.push(repo.as_str());
                        holder.get_or_insert(repo);
                    } else {
                        missing.push_back(repo.as_str());
                    }
                }
            }
            None => missing.extend(job.repositories.iter().map(String::as_str)),
        }
        while let Some(repo) = missing.pop_front() {
            if let (Some((digest, _)), Some(from)) = (&known, holder)
                && self.client.mount_blob(repo, digest, from)?
            {
                mounted.push(repo);
                continue;
            }
            if !self.bundle.contains(&job.digest) {
                anyhow::bail!(
                    "blob {} is not in the bundle (a delta bundle leaves out layers the far side \
                     had) and {} does not have it in {repo}: push a full bundle",
                    job.digest,
                    self.client.host()
                );
            }
            let uploaded = self.upload(job, repo)?;
            self.reporter.step(&format!(
                "{} sent to {}/{repo} as {} ({} bytes)",
                job.digest,
                self.client.host(),
                uploaded.0,
                uploaded.1
            ));
            done.sent += uploaded.1;
            done.uploads += 1;
            if known
                .as_ref()
                .is_some_and(|(digest, _)| *digest != uploaded.0)
            {
                // The record named what an earlier compressor made: the manifest names this
                // upload's digest, which the repositories holding the old one need too.
                missing.extend(present.drain(..));
                missing.extend(mounted.drain(..));
            }
            known = Some(uploaded);
            holder = Some(repo);
        }
        done.present = present.len();
        done.mounted = mounted.len();
        self.passed(job, job.size, true);
        let (digest, size) = known.expect("a blob is known once present or sent");
        done.digest = digest;
        done.size = size;
        Ok(done)
    }

    /// Streams the blob from the bundle through the compressor to `repo`; records the result.
    fn upload(&self, job: &BlobJob, repo: &str) -> Result<(String, u64)> {
        let mut open = || -> Result<Box<dyn Read + '_>> {
            self.passed(job, 0, false);
            let blob = self
                .bundle
                .blob(&job.digest)
                .with_context(|| format!("reading blob {} of the bundle", job.digest))?;
            let counted = Counting {
                inner: blob,
                count: 0,
                on_read: move |n| self.passed(job, n, false),
            };
            if !job.layer {
                return Ok(Box::new(counted));
            }
            self.compression.reader(counted)
        };
        let expected =
            (!job.layer || self.compression == Compression::None).then(|| job.digest.to_string());
        let up = self
            .client
            .upload_blob(repo, expected.as_deref(), &mut open, &|_| {})
            .with_context(|| {
                if job.layer {
                    format!(
                        "layer {} ({}, {} bytes uncompressed)",
                        job.digest,
                        self.compression.record_name(),
                        job.size
                    )
                } else {
                    format!("config {}", job.digest)
                }
            })?;
        self.remember(job, &up.digest, up.size);
        Ok((up.digest, up.size))
    }
}

/// Counts what passes through.
struct Counting<R, F> {
    inner: R,
    count: u64,
    on_read: F,
}

impl<R: Read, F: Fn(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        (self.on_read)(self.count);
        Ok(n)
    }
}
