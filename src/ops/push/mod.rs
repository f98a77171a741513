//! `push` as one job: the bundle checked as `load` checks it, every blob of every image put
//! into the target registry by a few workers at once ([`blobs`]), then one OCI manifest per
//! image under each of its names rewritten under the target ([`plan`]), and the mapping with the
//! mirror settings. No engine is involved.

mod blobs;
mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use offpack_bundle::Digest;
use offpack_registry::mirror::MirrorSettings;
use offpack_registry::{
    Client, ClientOptions, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST, Target,
};
use serde::Serialize;

use self::blobs::{BlobContext, BlobDone, BlobJob};
use self::plan::{Descriptor, RefPlan};
use crate::fetch::cache::PackageCache;
use crate::ops::load::apply::{SidecarGate, corrupt_bundle, is_corrupt_data, wait_for_sidecar};
use crate::ops::verify::open_checked;
use crate::reporter::{ImageProgress, ImageTasks, Reporter};

/// How layers are compressed for the registry (decision 0089).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, level 6: what every engine pulls (Docker 20.10, containerd before 1.5 know no other).
    #[default]
    Gzip,
    /// zstd, level 3: smaller and faster, for sites whose every puller accepts it.
    Zstd,
    /// the layer tar as the bundle holds it: fastest to push, largest to store.
    None,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_OCI_LAYER_GZIP,
            Compression::Zstd => MEDIA_OCI_LAYER_ZSTD,
            Compression::None => MEDIA_OCI_LAYER,
        }
    }

    /// The name in cache records: a change of level or format must not reuse a record.
    fn record_name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip-6",
            Compression::Zstd => "zstd-3",
            Compression::None => "none",
        }
    }

    /// `data` compressed, as a stream. Fixed levels and no timestamps or names in the gzip
    /// header, so a layer always gives the same blob.
    fn reader<'a>(self, data: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Gzip => {
                Box::new(flate2::GzBuilder::new().read(data, flate2::Compression::new(6)))
            }
            Compression::Zstd => Box::new(
                zstd::stream::read::Encoder::new(data, 3).context("starting the zstd encoder")?,
            ),
            Compression::None => Box::new(data),
        })
    }
}

/// What `offpack push` is asked to do (what `cli::PushArgs` converts into).
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The bundle file (a split bundle: its base name or its first part).
    pub bundle: PathBuf,
    /// The public key the bundle must be signed by.
    pub key: Option<PathBuf>,
    /// `HOST[:PORT][/PREFIX]`.
    pub registry: String,
    /// A PEM CA to trust for the registry.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP.
    pub insecure: bool,
    pub compression: Compression,
    /// Where to write the mapping as JSON.
    pub mapping: Option<PathBuf>,
}

/// One pushed name of an image.
#[derive(Debug, Clone, Serialize)]
pub struct PushedRef {
    /// The name the bundle records.
    pub original: String,
    /// The name to pull it by now (`HOST/PREFIX/repo:tag`, or `…@sha256:…` for a pinned one).
    pub pushed: String,
    /// The manifest digest the original pinned, when it pinned one: the pushed manifest is a
    /// new one with a new digest.
    pub old_digest: Option<String>,
    /// For a pinned original: the tag in the pushed repository that stands for it.
    pub pin_tag: Option<String>,
}

/// One pushed image.
#[derive(Debug, Clone, Serialize)]
pub struct PushedImage {
    /// Image ID (unchanged by the push).
    pub id: Digest,
    pub platform: String,
    /// The digest of the manifest pushed for it.
    pub manifest_digest: String,
    pub refs: Vec<PushedRef>,
}

/// The mapping `--mapping` writes and `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    /// `HOST[:PORT][/PREFIX]`.
    pub registry: String,
    pub compression: Compression,
    pub images: Vec<PushedImage>,
    /// Settings that make the original names resolve through the registry.
    pub settings: MirrorSettings,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    #[serde(flatten)]
    pub mapping: Mapping,
    /// Uploads made (a blob sent into two repositories counts twice; mounts do not count).
    pub blobs_sent: usize,
    /// Compressed bytes sent.
    pub bytes_sent: u64,
    /// Blob × repository pairs the registry had already.
    pub blobs_present: usize,
    /// Blob × repository pairs mounted from another repository.
    pub blobs_mounted: usize,
    /// Fingerprint of the key whose valid signature the bundle carries.
    pub signed_by: Option<String>,
    /// The `.sha256` file the whole bundle matched, when there is one beside it.
    pub sidecar: Option<String>,
}

/// Pushes the bundle `request` names into its registry. Blocking (HTTP and a few threads).
pub fn push(request: &PushRequest, reporter: &dyn Reporter) -> Result<Pushed> {
    let target = Target::parse(&request.registry)?;
    let checked = open_checked(&request.bundle, request.key.as_deref(), "pushed")?;
    let signed_by = checked.signed_by.as_ref().map(|k| k.fingerprint());
    if let Some(signer) = &signed_by {
        reporter.step(&format!("signed by key {signer}"));
    }
    let sidecar = SidecarGate::start(checked.sidecar);
    let bundle = checked.reader;
    // An image with no name (a build's stage the bundle carries by ID alone) has nowhere to go.
    let (images, unnamed): (Vec<_>, Vec<_>) = bundle
        .manifest()
        .images
        .iter()
        .cloned()
        .partition(|image| !image.refs.is_empty());
    for image in &unnamed {
        reporter.warn(&format!(
            "image {} has no name in the bundle: not pushed",
            image.id
        ));
    }
    let plans = plan::plan_refs(&target, &images)?;

    let client = Client::new(
        &target.host,
        &ClientOptions {
            insecure: request.insecure,
            ca_file: request.ca_file.clone(),
            ..ClientOptions::default()
        },
    )?;
    let first_repo = plans
        .iter()
        .flatten()
        .map(|r| r.repository.clone())
        .next()
        .unwrap_or_else(|| "library/offpack".to_string());
    client.ping(&first_repo)?;
    // Records are an optimisation: without a cache directory every layer is compressed again.
    let cache = PackageCache::open_default().ok();

    let jobs = blob_jobs(&images, &plans);
    let progress = Mutex::new(image_ledger(&images));
    let results = {
        let cx = BlobContext {
            client: &client,
            bundle: &bundle,
            compression: request.compression,
            cache: cache.as_ref(),
            progress: &progress,
            reporter,
        };
        run_jobs(&cx, &jobs, &progress, reporter).map_err(|e| {
            if is_corrupt_data(&e) {
                corrupt_bundle(e, "tagged (blobs may have been sent)")
            } else {
                e
            }
        })?
    };

    // Manifests make the images visible: only once the whole bundle matched its .sha256.
    wait_for_sidecar(&sidecar, "tagged (blobs may have been sent)")?;
    let mut pushed_images = Vec::new();
    let mut upstreams = Vec::new();
    for (image, refs) in images.iter().zip(&plans) {
        let layers: Vec<Descriptor> = image
            .layers
            .iter()
            .map(|l| {
                let done = &results[&l.digest];
                Descriptor {
                    media_type: request.compression.media_type(),
                    digest: done.digest.clone(),
                    size: done.size,
                }
            })
            .collect();
        let (manifest, media_type) = match (&image.registry, &image.oci_manifest) {
            (Some(registry), Some(carried)) => {
                let mut bytes = Vec::new();
                bundle
                    .blob(&carried.digest)?
                    .read_to_end(&mut bytes)
                    .with_context(|| {
                        format!("reading manifest {} of the bundle", carried.digest)
                    })?;
                (bytes, registry.media_type.as_str())
            }
            _ => (plan::image_manifest(image, &layers), MEDIA_OCI_MANIFEST),
        };
        let mut manifest_digest = String::new();
        let mut pushed_refs = Vec::new();
        for r in refs {
            for tag in &r.tags {
                manifest_digest = client.put_manifest(&r.repository, tag, media_type, &manifest)?;
            }
            upstreams.push(r.upstream.clone());
            pushed_refs.push(pushed_ref(&target, r, &manifest_digest));
            if r.old_digest
                .as_ref()
                .is_some_and(|old| *old != manifest_digest)
            {
                reporter.step(&format!(
                    "{} is now {}/{}@{manifest_digest}: a pushed image has a new manifest, \
                     tag {} stands for the old digest",
                    r.original,
                    target.host,
                    r.repository,
                    r.tags.last().map(String::as_str).unwrap_or_default(),
                ));
            }
        }
        pushed_images.push(PushedImage {
            id: image.id.clone(),
            platform: image.platform.clone(),
            manifest_digest,
            refs: pushed_refs,
        });
    }
    let ca = request
        .ca_file
        .as_ref()
        .map(|_| format!("/etc/containerd/certs.d/{}/ca.crt", target.host));
    let settings =
        offpack_registry::mirror::settings(&target, &upstreams, request.insecure, ca.as_deref());
    let mapping = Mapping {
        registry: target.to_string(),
        compression: request.compression,
        images: pushed_images,
        settings,
    };
    if let Some(path) = &request.mapping {
        let mut json = serde_json::to_vec_pretty(&mapping)?;
        json.push(b'\n');
        super::write_file_atomically(path, &json)?;
    }
    let mut pushed = Pushed {
        mapping,
        blobs_sent: 0,
        bytes_sent: 0,
        blobs_present: 0,
        blobs_mounted: 0,
        signed_by,
        sidecar: sidecar.matched(),
    };
    for done in results.values() {
        pushed.blobs_sent += done.uploads;
        pushed.bytes_sent += done.sent;
        pushed.blobs_present += done.present;
        pushed.blobs_mounted += done.mounted;
    }
    Ok(pushed)
}

fn pushed_ref(target: &Target, r: &RefPlan, manifest_digest: &str) -> PushedRef {
    let base = format!("{}/{}", target.host, r.repository);
    let pin_tag = r.old_digest.as_ref().and_then(|_| r.tags.last().cloned());
    let pushed = match (&r.old_digest, r.tags.first()) {
        (Some(_), _) | (None, None) => format!("{base}@{manifest_digest}"),
        (None, Some(tag)) => format!("{base}:{tag}"),
    };
    PushedRef {
        original: r.original.clone(),
        pushed,
        old_digest: r.old_digest.clone(),
        pin_tag,
    }
}

/// Every blob the images need, once, with the repositories that need it; configs first (they
/// are small), then layers largest first so that the longest upload starts early.
fn blob_jobs(images: &[offpack_bundle::Image], plans: &[Vec<RefPlan>]) -> Vec<BlobJob> {
    let mut jobs: BTreeMap<Digest, BlobJob> = BTreeMap::new();
    for (image, refs) in images.iter().zip(plans) {
        let repos = plan::repositories(refs);
        // A registry-form image's layers (format 1.4) are the registry's compressed blobs: sent
        // as they are, so that its manifest, and so its digest, stays the same.
        let compress = image.registry.is_none();
        let blobs = std::iter::once((&image.config, false))
            .chain(image.layers.iter().map(|l| (l, compress)));
        for (blob, layer) in blobs {
            let job = jobs.entry(blob.digest.clone()).or_insert_with(|| BlobJob {
                digest: blob.digest.clone(),
                size: blob.size,
                layer,
                repositories: Vec::new(),
            });
            let mut all: BTreeSet<String> = job.repositories.drain(..).collect();
            all.extend(repos.iter().cloned());
            job.repositories = all.into_iter().collect();
        }
    }
    let mut jobs: Vec<BlobJob> = jobs.into_values().collect();
    jobs.sort_by_key(|j| (j.layer, std::cmp::Reverse(j.size)));
    jobs
}

/// Per image: its config and layers, as the bundle sizes them.
fn image_ledger(images: &[offpack_bundle::Image]) -> ImageProgress {
    let mut ledger = ImageProgress::new();
    for image in images {
        let blobs = std::iter::once(&image.config).chain(&image.layers);
        let total = blobs.clone().map(|b| b.size).sum();
        ledger.add_image(
            &image.display_name(),
            blobs.map(|b| b.digest.clone()),
            total,
        );
    }
    ledger
}

/// Runs the jobs on a few threads (bounded: each holds one compressor and one connection),
/// reporting progress from this one; the first error stops the others taking new jobs.
fn run_jobs(
    cx: &BlobContext<'_>,
    jobs: &[BlobJob],
    progress: &Mutex<ImageProgress>,
    reporter: &dyn Reporter,
) -> Result<HashMap<Digest, BlobDone>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4)
        .min(jobs.len().max(1));
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<HashMap<Digest, BlobDone>> = Mutex::new(HashMap::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let total_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let total_task = reporter.start("pushing", Some(total_bytes));
    let mut tasks = ImageTasks::start(
        reporter,
        total_task,
        Some(total_bytes),
        &progress.lock().unwrap_or_else(|e| e.into_inner()),
    );
    let done_bytes = |results: &Mutex<HashMap<Digest, BlobDone>>| -> u64 {
        let results = results.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .filter(|j| results.contains_key(&j.digest))
            .map(|j| j.size)
            .sum()
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(job) = jobs.get(i) else { break };
                        match cx.ensure(job) {
                            Ok(done) => {
                                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                                results.insert(job.digest.clone(), done);
                            }
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
                                failure.get_or_insert(e);
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(200));
            let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
            tasks.report(&progress, done_bytes(&results), "pushed");
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        reporter.finish(total_task, "failed");
        return Err(e);
    }
    let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
    tasks.finish(&progress, done_bytes(&results), "pushed");
    Ok(results.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::Compression;

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.reader(data).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn compression_is_deterministic_and_decodes_back() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            assert_eq!(compress(c, &data), compress(c, &data), "{c:?}");
        }
        let gz = compress(Compression::Gzip, &data);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "no timestamp in the gzip header");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let zst = compress(Compression::Zstd, &data);
        assert_eq!(zstd::decode_all(&zst[..]).unwrap(), data);
        assert_eq!(compress(Compression::None, &data), data);
    }
}
