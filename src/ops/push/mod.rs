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
use offpack_bundle::{Digest, MEDIA_OCI_INDEX};
use offpack_registry::mirror::MirrorSettings;
use offpack_registry::{
    Client, ClientOptions, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST, Target,
};
use serde::Serialize;

use self::blobs::{BlobContext, BlobDone, BlobJob, BlobKey};
use self::plan::{Descriptor, IndexGroup, RefPlan};
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
    /// What `pushed` resolves to: the image's manifest, or the index its tag ends on.
    pub digest: String,
    /// The digest the original stood for when `digest` is another: the manifest digest it
    /// pinned (an engine image's pushed manifest is a new one), or the upstream index a tag
    /// ended on when the bundle carried only some of its platforms (a new index was pushed).
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
    /// The multi-platform index it was pushed in, when it came from one (format 1.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<PushedIndex>,
    pub refs: Vec<PushedRef>,
}

/// An index pushed for images that share one (format 1.4's registry form).
#[derive(Debug, Clone, Serialize)]
pub struct PushedIndex {
    /// Its digest in the target registry.
    pub digest: String,
    /// The upstream index's digest: the same as `digest` when the bundle carried every platform
    /// (the index went unchanged), else the index a new one of the carried platforms replaces.
    pub old_digest: String,
    pub media_type: String,
    /// How many manifests it lists.
    pub manifests: usize,
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
    // An image with no name (a build's stage the bundle carries by ID alone) has nowhere to go,
    // unless it is another platform of an index a named image came from.
    let index_of = |image: &offpack_bundle::Image| {
        image
            .registry
            .as_ref()
            .and_then(|r| r.index.as_ref())
            .map(|i| i.digest.clone())
    };
    let named_indexes: BTreeSet<Digest> = bundle
        .manifest()
        .images
        .iter()
        .filter(|image| !image.refs.is_empty())
        .filter_map(index_of)
        .collect();
    let (images, unnamed): (Vec<_>, Vec<_>) =
        bundle.manifest().images.iter().cloned().partition(|image| {
            !image.refs.is_empty() || index_of(image).is_some_and(|i| named_indexes.contains(&i))
        });
    for image in &unnamed {
        reporter.warn(&format!(
            "image {} has no name in the bundle: not pushed",
            image.id
        ));
    }
    let plans = plan::plan_refs(&target, &images)?;
    let groups = plan::index_groups(&images, &plans);

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

    // An index's nameless images go wherever the index goes.
    let mut repos: Vec<BTreeSet<String>> = plans.iter().map(|r| plan::repositories(r)).collect();
    for group in &groups {
        for &i in &group.members {
            repos[i].extend(group.repositories.iter().cloned());
        }
    }
    let jobs = blob_jobs(&images, &repos);
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
    let group_of: HashMap<usize, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| group.members.iter().map(move |&i| (i, g)))
        .collect();
    // Each image's manifest first: by digest for a member of an index (its tags end on the
    // index, which a registry accepts only once the manifests it lists are there).
    let mut manifest_digests = Vec::new();
    for (i, (image, refs)) in images.iter().zip(&plans).enumerate() {
        let (manifest, media_type) = image_manifest(&bundle, image, &results, request)?;
        let group = group_of.get(&i).map(|&g| &groups[g]);
        let mut manifest_digest = Digest::of_bytes(&manifest).to_string();
        for repository in group.iter().flat_map(|g| &g.repositories) {
            client.put_manifest(repository, &manifest_digest, media_type, &manifest)?;
        }
        for r in refs {
            for tag in &r.tags {
                if group.is_none_or(|g| !plan::tag_ends_on_index(tag, &g.index.digest)) {
                    manifest_digest =
                        client.put_manifest(&r.repository, tag, media_type, &manifest)?;
                }
            }
        }
        manifest_digests.push(manifest_digest);
    }
    let mut pushed_indexes = Vec::new();
    for group in &groups {
        let carried: BTreeSet<String> = group
            .members
            .iter()
            .map(|&i| manifest_digests[i].clone())
            .collect();
        pushed_indexes.push(push_index(
            &client, &bundle, group, &images, &plans, &carried, reporter,
        )?);
    }
    let mut pushed_images = Vec::new();
    let mut upstreams = Vec::new();
    for (i, (image, refs)) in images.iter().zip(&plans).enumerate() {
        let index = group_of.get(&i).map(|&g| (&groups[g], &pushed_indexes[g]));
        let mut pushed_refs = Vec::new();
        for r in refs {
            // A pinned name stands for what it pins; a tag ends on the index.
            let on_index = index
                .filter(|(g, _)| match &r.old_digest {
                    Some(old) => *old == g.index.digest.to_string(),
                    None => !r.tags.is_empty(),
                })
                .map(|(_, pushed)| pushed);
            let digest = on_index.map_or(&manifest_digests[i], |p| &p.digest);
            upstreams.push(r.upstream.clone());
            let pushed = pushed_ref(&target, r, digest, on_index);
            if r.old_digest.as_ref().is_some_and(|old| old != digest) {
                reporter.step(&format!(
                    "{} is now {}: a pushed image has a new manifest, tag {} stands for the \
                     old digest",
                    r.original,
                    pushed.pushed,
                    r.tags.last().map(String::as_str).unwrap_or_default(),
                ));
            }
            pushed_refs.push(pushed);
        }
        pushed_images.push(PushedImage {
            id: image.id.clone(),
            platform: image.platform.clone(),
            manifest_digest: manifest_digests[i].clone(),
            index: index.map(|(_, pushed)| pushed.clone()),
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

/// What a name of an image became: its digest is the manifest's, or for a name whose tag ends on
/// an index (`on_index`) the pushed index's.
fn pushed_ref(
    target: &Target,
    r: &RefPlan,
    digest: &str,
    on_index: Option<&PushedIndex>,
) -> PushedRef {
    let base = format!("{}/{}", target.host, r.repository);
    let pin_tag = r.old_digest.as_ref().and_then(|_| r.tags.last().cloned());
    let pushed = match (&r.old_digest, r.tags.first()) {
        (Some(_), _) | (None, None) => format!("{base}@{digest}"),
        (None, Some(tag)) => format!("{base}:{tag}"),
    };
    // A tag on an index that had to be rebuilt: the upstream index digest no longer resolves.
    let rebuilt = on_index
        .filter(|i| i.old_digest != i.digest)
        .map(|i| i.old_digest.clone());
    PushedRef {
        original: r.original.clone(),
        pushed,
        digest: digest.to_string(),
        old_digest: r.old_digest.clone().or(rebuilt),
        pin_tag,
    }
}

/// The manifest pushed for `image`: a registry-form image's own (format 1.4), byte for byte, or
/// a new OCI manifest of the layers as they were pushed.
fn image_manifest<'m>(
    bundle: &offpack_bundle::BundleReader,
    image: &'m offpack_bundle::Image,
    results: &HashMap<BlobKey, BlobDone>,
    request: &PushRequest,
) -> Result<(Vec<u8>, &'m str)> {
    if let (Some(registry), Some(carried)) = (&image.registry, &image.oci_manifest) {
        let bytes = read_blob(bundle, &carried.digest, "manifest")?;
        return Ok((bytes, registry.media_type.as_str()));
    }
    let layers: Vec<Descriptor> = image
        .layers
        .iter()
        .map(|l| {
            let done = &results[&(l.digest.clone(), true)];
            Descriptor {
                media_type: request.compression.media_type(),
                digest: done.digest.clone(),
                size: done.size,
            }
        })
        .collect();
    Ok((plan::image_manifest(image, &layers), MEDIA_OCI_MANIFEST))
}

/// A small JSON blob of the bundle (a manifest, an index), whole.
fn read_blob(
    bundle: &offpack_bundle::BundleReader,
    digest: &Digest,
    what: &str,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    bundle
        .blob(digest)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {digest} of the bundle"))?;
    Ok(bytes)
}

/// Pushes a group's index into each of its repositories, under every tag of its images' names
/// that ends on it (by digest where none does): the carried index unchanged when the bundle
/// carries every manifest it lists, else a new index of the carried ones (decision 0097).
fn push_index(
    client: &Client,
    bundle: &offpack_bundle::BundleReader,
    group: &IndexGroup,
    images: &[offpack_bundle::Image],
    plans: &[Vec<RefPlan>],
    carried: &BTreeSet<String>,
    reporter: &dyn Reporter,
) -> Result<PushedIndex> {
    let upstream = &group.index;
    let bytes = read_blob(bundle, &upstream.digest, "index")?;
    let (bytes, media_type, rebuilt) =
        match plan::index_for_push(&bytes, &upstream.digest, carried)? {
            None => (bytes, upstream.media_type.as_str(), false),
            Some(new) => (new, MEDIA_OCI_INDEX, true),
        };
    let digest = Digest::of_bytes(&bytes).to_string();
    let names = || group.members.iter().flat_map(|&i| &plans[i]);
    for repository in &group.repositories {
        let mut tags: BTreeSet<&str> = names()
            .filter(|r| r.repository == *repository)
            .flat_map(|r| &r.tags)
            .filter(|t| plan::tag_ends_on_index(t, &upstream.digest))
            .map(String::as_str)
            .collect();
        if tags.is_empty() {
            tags.insert(&digest);
        }
        for tag in tags {
            client.put_manifest(repository, tag, media_type, &bytes)?;
        }
    }
    if rebuilt {
        let name = names().next().map_or_else(
            || images[group.members[0]].display_name(),
            |r| r.original.clone(),
        );
        reporter.step(&format!(
            "{name}: the bundle carries only {} of the platforms of index {}: pushed as a new \
             index {digest} of those",
            carried.len(),
            upstream.digest,
        ));
    }
    Ok(PushedIndex {
        digest,
        old_digest: upstream.digest.to_string(),
        media_type: media_type.to_string(),
        manifests: carried.len(),
    })
}

/// Every blob the images need, once, with the repositories that need it; configs first (they
/// are small), then layers largest first so that the longest upload starts early.
fn blob_jobs(images: &[offpack_bundle::Image], repos: &[BTreeSet<String>]) -> Vec<BlobJob> {
    let mut jobs: BTreeMap<BlobKey, BlobJob> = BTreeMap::new();
    for (image, repos) in images.iter().zip(repos) {
        // A registry-form image's layers (format 1.4) are the registry's compressed blobs: sent
        // as they are, so that its manifest, and so its digest, stays the same.
        let compress = image.registry.is_none();
        let blobs = std::iter::once((&image.config, false))
            .chain(image.layers.iter().map(|l| (l, compress)));
        for (blob, layer) in blobs {
            let job = jobs
                .entry((blob.digest.clone(), layer))
                .or_insert_with(|| BlobJob {
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
) -> Result<HashMap<BlobKey, BlobDone>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4)
        .min(jobs.len().max(1));
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<HashMap<BlobKey, BlobDone>> = Mutex::new(HashMap::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let total_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let total_task = reporter.start("pushing", Some(total_bytes));
    let mut tasks = ImageTasks::start(
        reporter,
        total_task,
        Some(total_bytes),
        &progress.lock().unwrap_or_else(|e| e.into_inner()),
    );
    let done_bytes = |results: &Mutex<HashMap<BlobKey, BlobDone>>| -> u64 {
        let results = results.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .filter(|j| results.contains_key(&j.key()))
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
                                results.insert(job.key(), done);
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

    use super::*;

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.reader(data).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    fn plan(tags: &[&str], old: Option<&str>) -> RefPlan {
        RefPlan {
            original: "r.example/app:multi".into(),
            upstream: "r.example".into(),
            repository: "p/app".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            old_digest: old.map(str::to_string),
        }
    }

    fn index(old: &str, new: &str) -> PushedIndex {
        PushedIndex {
            digest: new.into(),
            old_digest: old.into(),
            media_type: MEDIA_OCI_INDEX.into(),
            manifests: 1,
        }
    }

    #[test]
    fn a_tag_on_a_rebuilt_index_records_old_to_new_and_a_pin_keeps_its_pin_tag() {
        let target = Target::parse("h.site/p").unwrap();
        let r = pushed_ref(&target, &plan(&["multi"], None), "sha256:new", None);
        assert_eq!(
            (r.pushed.as_str(), r.old_digest, r.pin_tag),
            ("h.site/p/app:multi", None, None)
        );
        let whole = index("sha256:up", "sha256:up");
        let r = pushed_ref(&target, &plan(&["multi"], None), "sha256:up", Some(&whole));
        assert_eq!((r.digest.as_str(), r.old_digest), ("sha256:up", None));
        let rebuilt = index("sha256:up", "sha256:new");
        let r = pushed_ref(
            &target,
            &plan(&["multi"], None),
            "sha256:new",
            Some(&rebuilt),
        );
        assert_eq!(r.pushed, "h.site/p/app:multi");
        assert_eq!(r.old_digest.as_deref(), Some("sha256:up"));
        assert_eq!(r.pin_tag, None, "a tag is no pin");
        let pin = plan(&["offpack-pin-sha256-up"], Some("sha256:up"));
        let r = pushed_ref(&target, &pin, "sha256:new", Some(&rebuilt));
        assert_eq!(r.pushed, "h.site/p/app@sha256:new");
        assert_eq!(r.old_digest.as_deref(), Some("sha256:up"));
        assert_eq!(r.pin_tag.as_deref(), Some("offpack-pin-sha256-up"));
    }

    fn blob(hex: char, size: u64) -> offpack_bundle::BlobRef {
        offpack_bundle::BlobRef {
            digest: format!("sha256:{}", hex.to_string().repeat(64))
                .parse()
                .unwrap(),
            size,
        }
    }

    /// An uncompressed registry layer's digest is its diff ID, which an engine-form image's layer
    /// of the same content has too: each image needs that blob in its own form.
    #[test]
    fn a_blob_two_images_send_in_different_forms_is_two_jobs() {
        let layer = blob('a', 100);
        let engine_form = offpack_bundle::Image {
            refs: vec!["e:1".into()],
            id: blob('c', 0).digest,
            platform: "linux/amd64".into(),
            config: blob('c', 10),
            layers: vec![layer.clone()],
            oci_manifest: None,
            registry: None,
        };
        let registry_form = offpack_bundle::Image {
            refs: vec!["r:1".into()],
            id: blob('d', 0).digest,
            config: blob('d', 10),
            registry: Some(offpack_bundle::RegistryImage {
                media_type: MEDIA_OCI_MANIFEST.into(),
                repo_digests: Vec::new(),
                layers: Vec::new(),
                index: None,
            }),
            ..engine_form.clone()
        };
        let repos = [
            BTreeSet::from(["r".to_string()]),
            BTreeSet::from(["e".to_string()]),
        ];
        let jobs = blob_jobs(&[registry_form, engine_form], &repos);
        let forms: Vec<(String, bool, Vec<String>)> = jobs
            .iter()
            .filter(|j| j.digest == layer.digest)
            .map(|j| (j.digest.to_string(), j.layer, j.repositories.clone()))
            .collect();
        let digest = layer.digest.to_string();
        assert_eq!(
            forms,
            [
                (digest.clone(), false, vec!["r".to_string()]),
                (digest, true, vec!["e".to_string()]),
            ]
        );
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
