//! `load --containerd`: the checked bundle's images into a containerd (a Kubernetes node's, or
//! a standalone one) through its API, as `ctr image import` and the kubelet's pulls leave them:
//! every blob in the content store with the labels that keep it from garbage collection, each
//! image unpacked into the snapshotter, and a name per reference pointing at the bundle's OCI
//! manifest. Everything is written under a lease, deleted at the end, so an interrupted or
//! refused load leaves nothing for long; names are given only once the whole bundle matched its
//! `.sha256` (decision 0066), the last step (docs/decisions/0095-load-into-containerd.md).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use offpack_bundle::{BundleReader, Digest, Image, Manifest, escape_controls};
use offpack_ref::ImageRef;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};

use super::apply::{SidecarGate, corrupt_bundle, is_corrupt_data, load_ledger, wait_for_sidecar};
use crate::containerd::proto::{Descriptor, Mount};
use crate::containerd::{Containerd, Written, write_reference};
use crate::engine::channel_body;
use crate::load::chain::chain_ids;
use crate::ops::copy::{CopySink, ImageCopy};
use crate::reporter::Reporter;

/// containerd refuses larger manifests when it pulls (4 MiB); so does offpack.
const MAX_MANIFEST: u64 = 4 << 20;

/// Which containerd a load goes into, and where in it.
#[derive(Debug, Clone)]
pub struct ContainerdTarget {
    /// containerd's gRPC socket.
    pub address: PathBuf,
    /// The namespace the images go into (`k8s.io` is the kubelet's).
    pub namespace: String,
    /// The snapshotter the images are unpacked into (the kubelet's runtime uses one: overlayfs
    /// by default).
    pub snapshotter: String,
}

/// What a load into containerd did, beyond what every load reports.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerdLoaded {
    pub address: String,
    pub namespace: String,
    pub snapshotter: String,
    /// containerd's version, as it reports it.
    pub version: String,
    /// Every name the load gave, with its target (the bundle's OCI manifest).
    pub images: Vec<NamedImage>,
    /// Blobs written into the content store, and those it held already.
    pub blobs_written: usize,
    pub blobs_present: usize,
    /// Layers unpacked into the snapshotter, and those whose snapshot was there already.
    pub layers_unpacked: usize,
    pub layers_present: usize,
}

/// A name in containerd's image list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NamedImage {
    /// Fully qualified, as the kubelet asks for it: `docker.io/library/redis:7`.
    pub name: String,
    /// The manifest it points at: the digest `ctr images ls` shows.
    pub digest: String,
    /// `created`, `updated` (it pointed at another manifest) or `unchanged`.
    pub change: &'static str,
}

/// What the load does and the bytes it writes, for the job to report.
#[derive(Debug, Default)]
pub struct ContainerdOutcome {
    pub loaded: Vec<String>,
    pub already_present: Vec<String>,
    pub layer_blobs_present: usize,
    pub bytes_written: u64,
    pub details: Option<ContainerdLoaded>,
}

/// The media types and blobs of an OCI image manifest, as far as a load needs them.
#[derive(Debug, Deserialize)]
struct OciManifest {
    #[serde(rename = "mediaType", default = "oci_manifest_type")]
    media_type: String,
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(Debug, Clone, Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

fn oci_manifest_type() -> String {
    "application/vnd.oci.image.manifest.v1+json".to_string()
}

impl OciDescriptor {
    fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size as i64,
            annotations: HashMap::new(),
        }
    }
}

/// One image of the bundle as containerd gets it.
#[derive(Debug)]
struct ImagePlan {
    /// Its first reference, for progress lines and the report.
    label: String,
    /// `os/arch[/variant]`, as offpack.json gives it.
    platform: String,
    /// The fully qualified names it gets.
    names: Vec<String>,
    manifest: Descriptor,
    config: OciDescriptor,
    /// Layers bottom first: uncompressed tars, whose digests are their diff IDs, or for an
    /// image in its registry form (format 1.4) the registry's compressed blobs.
    layers: Vec<OciDescriptor>,
    /// The layers' diff IDs (the config's `rootfs.diff_ids`), what snapshots are chained by.
    diff_ids: Vec<Digest>,
    /// `(digest, size, labels)` of every blob the image needs, the manifest last.
    blobs: Vec<(String, u64, HashMap<String, String>)>,
}

/// The labels containerd's garbage collector follows: from a manifest to its config and
/// layers, and (as `ctr image import` leaves them) from a layer to its uncompressed digest,
/// `diff_ids` in order.
fn content_labels(
    manifest: &OciManifest,
    diff_ids: &[Digest],
) -> Vec<(String, HashMap<String, String>)> {
    let mut out = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
        out.push((
            layer.digest.clone(),
            HashMap::from([(
                "containerd.io/uncompressed".to_string(),
                diff_id.to_string(),
            )]),
        ));
    }
    out.push((manifest.config.digest.clone(), HashMap::new()));
    let mut refs = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.clone(),
    )]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        refs.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    out.push((String::new(), refs));
    out
}

/// The names containerd gets for `refs`: fully qualified, tags only. A digest reference names
/// the registry's manifest, which the bundle does not carry (it carries the engine's export), so
/// giving it to the bundle's manifest would make the name lie.
fn containerd_names(refs: &[String]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for reference in refs.iter().filter(|r| !r.contains('@')) {
        let name = ImageRef::parse(reference)
            .with_context(|| format!("the bundle names an image `{}`", escape_controls(reference)))?
            .to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Reads image `image`'s OCI manifest from the bundle and plans its load.
fn plan_image(bundle: &BundleReader, image: &Image) -> Result<ImagePlan> {
    let label = image
        .refs
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.to_string());
    let manifest_ref = image.oci_manifest.as_ref().with_context(|| {
        format!(
            "the bundle has no OCI manifest for image {}",
            escape_controls(&label)
        )
    })?;
    if manifest_ref.size > MAX_MANIFEST {
        bail!(
            "the OCI manifest {} of image {} has {} bytes, more than a manifest can",
            manifest_ref.digest,
            escape_controls(&label),
            manifest_ref.size
        );
    }
    let mut bytes = Vec::with_capacity(manifest_ref.size as usize);
    bundle
        .blob(&manifest_ref.digest)?
        .read_to_end(&mut bytes)
        .with_context(|| {
            format!(
                "reading the OCI manifest of image {}",
                escape_controls(&label)
            )
        })?;
    let manifest: OciManifest = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the OCI manifest {} of image {} is not an image manifest",
            manifest_ref.digest,
            escape_controls(&label)
        )
    })?;
    let blobs: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    let layer_digests: Vec<&String> = manifest.layers.iter().map(|l| &l.digest).collect();
    if layer_digests.iter().copied().ne(blobs.iter()) {
        bail!(
            "the OCI manifest {} of image {} lists other layers than offpack.json",
            manifest_ref.digest,
            escape_controls(&label)
        );
    }
    let sizes: HashMap<&str, u64> = manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
        .map(|d| (d.digest.as_str(), d.size))
        .collect();
    let diff_ids = image.diff_ids();
    let blobs = content_labels(&manifest, &diff_ids)
        .into_iter()
        .map(|(digest, labels)| {
            if digest.is_empty() {
                (manifest_ref.digest.to_string(), manifest_ref.size, labels)
            } else {
                let size = sizes[digest.as_str()];
                (digest, size, labels)
            }
        })
        .collect();
    // The registry form carries the registry's manifest: its repository digest is a true name.
    let mut names = containerd_names(&image.refs)?;
    let manifest_digest = manifest_ref.digest.to_string();
    names.extend(
        image
            .registry
            .iter()
            .flat_map(|r| &r.repo_digests)
            .filter(|d| d.ends_with(&manifest_digest))
            .cloned(),
    );
    Ok(ImagePlan {
        names,
        label,
        platform: image.platform.clone(),
        manifest: Descriptor {
            media_type: manifest.media_type.clone(),
            digest: manifest_ref.digest.to_string(),
            size: manifest_ref.size as i64,
            annotations: HashMap::new(),
        },
        config: manifest.config.clone(),
        layers: manifest.layers,
        diff_ids,
        blobs,
    })
}

/// This node's platform as containerd spells it (`linux/amd64`): offpack runs where the
/// containerd it loads into does (its socket is local).
fn node_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// Plans after [`settle_shared_names`].
struct SettledPlans {
    kept: Vec<ImagePlan>,
    /// Images whose every name went to another platform's image: nothing would hold them.
    skipped: Vec<ImagePlan>,
}

/// A containerd name points at one manifest. Where a bundle gives one name to images of several
/// platforms, the name goes to the image of `node`'s platform, as a pull of the tag would choose
/// from an index; the others lose it (and are not loaded if no name is left them). When none of
/// them is `node`'s platform, no choice is right: the load stops before writing anything.
fn settle_shared_names(plans: Vec<ImagePlan>, node: &str) -> Result<SettledPlans> {
    let os_arch = |platform: &str| platform.split('/').take(2).collect::<Vec<_>>().join("/");
    let node = os_arch(node);
    let mut claims: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        for name in &plan.names {
            claims.entry(name.clone()).or_default().push(i);
        }
    }
    let mut losers: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut names: Vec<&String> = claims.keys().collect();
    names.sort();
    for name in names {
        let holders = &claims[name];
        if holders.len() < 2 {
            continue;
        }
        let Some(&winner) = holders
            .iter()
            .find(|&&i| os_arch(&plans[i].platform) == node)
        else {
            let platforms: Vec<String> = holders
                .iter()
                .map(|&i| escape_controls(&plans[i].platform).into_owned())
                .collect();
            bail!(
                "the bundle names images of {} all `{}`, and none is of this node's platform \
                 {node}: containerd can give the name to one image only. Load the bundle on a \
                 node of one of those platforms, or bundle the image for {node}",
                platforms.join(", "),
                escape_controls(name)
            );
        };
        for &i in holders.iter().filter(|&&i| i != winner) {
            losers.entry(i).or_default().insert(name.clone());
        }
    }
    let mut settled = SettledPlans {
        kept: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, mut plan) in plans.into_iter().enumerate() {
        if let Some(lost) = losers.get(&i) {
            plan.names.retain(|n| !lost.contains(n));
            if plan.names.is_empty() {
                settled.skipped.push(plan);
                continue;
            }
        }
        settled.kept.push(plan);
    }
    Ok(settled)
}

/// Loads the images of `bundle` whose IDs are in `wanted` into the containerd `target` names.
pub async fn load_into_containerd(
    target: &ContainerdTarget,
    reporter: &dyn Reporter,
    bundle: &Arc<BundleReader>,
    sidecar: &Arc<SidecarGate>,
    wanted: &BTreeSet<Digest>,
) -> Result<ContainerdOutcome> {
    let manifest = bundle.manifest().clone();
    let plans = manifest
        .images
        .iter()
        .filter(|i| wanted.contains(&i.id))
        .map(|image| plan_image(bundle, image))
        .collect::<Result<Vec<_>>>()?;
    let plans = settle_shared_names(plans, &node_platform())?;
    for plan in &plans.skipped {
        reporter.step(&format!(
            "{} ({}): not loaded, its names go to the image of this node's platform",
            escape_controls(&plan.label),
            escape_controls(&plan.platform)
        ));
    }
    let plans = plans.kept;
    let client = Containerd::connect(&target.address, &target.namespace).await?;
    reporter.step(&format!(
        "containerd {} at {}, namespace {}, snapshotter {}",
        escape_controls(client.version()),
        target.address.display(),
        escape_controls(client.namespace()),
        escape_controls(&target.snapshotter)
    ));
    // A snapshotter containerd lacks fails here, before anything is written.
    client
        .stat_snapshot(&target.snapshotter, "offpack-check")
        .await
        .with_context(|| {
            format!(
                "containerd has no snapshotter {} ready (`ctr plugins ls` lists them); name \
                 another with --snapshotter",
                escape_controls(&target.snapshotter)
            )
        })?;
    let lease = lease_id();
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let expires = expires
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Should offpack die before deleting the lease, containerd drops it within the hour.
    client
        .create_lease(
            &lease,
            HashMap::from([(
                "containerd.io/gc.expire".to_string(),
                offpack_bundle::rfc3339_from_unix(expires),
            )]),
        )
        .await?;
    let leased = client.under_lease(&lease);
    // Ctrl-C or SIGTERM ends the load here, so that the lease still goes at once.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let load = load_leased(
        &leased, &lease, target, reporter, bundle, sidecar, &manifest, &plans,
    );
    let outcome = tokio::select! {
        outcome = load => outcome,
        _ = interrupt.recv() => Err(interrupted()),
        _ = terminate.recv() => Err(interrupted()),
    };
    // Deleted whatever happened: what a failed load wrote goes with it; a finished load's
    // images hold what they need.
    let deleted = client.delete_lease(&lease).await;
    let outcome = outcome?;
    deleted?;
    Ok(outcome)
}

fn interrupted() -> anyhow::Error {
    anyhow::anyhow!(
        "interrupted: the load's lease is deleted, so containerd drops what it wrote that no image \
         name holds; run the same load again to finish it"
    )
}

/// A lease ID no other load uses.
fn lease_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("offpack-load-{}-{nanos}", std::process::id())
}

#[allow(clippy::too_many_arguments)]
async fn load_leased(
    client: &Containerd,
    lease: &str,
    target: &ContainerdTarget,
    reporter: &dyn Reporter,
    bundle: &Arc<BundleReader>,
    sidecar: &Arc<SidecarGate>,
    manifest: &Manifest,
    plans: &[ImagePlan],
) -> Result<ContainerdOutcome> {
    let mut outcome = ContainerdOutcome::default();
    let mut details = ContainerdLoaded {
        address: target.address.display().to_string(),
        namespace: target.namespace.clone(),
        snapshotter: target.snapshotter.clone(),
        version: client.version().to_string(),
        images: Vec::new(),
        blobs_written: 0,
        blobs_present: 0,
        layers_unpacked: 0,
        layers_present: 0,
    };

    // What containerd holds already, asked once per blob.
    let mut present: HashSet<String> = HashSet::new();
    let mut asked: HashSet<String> = HashSet::new();
    let mut missing_labels: Vec<(String, HashMap<String, String>)> = Vec::new();
    for plan in plans {
        for (digest, _, labels) in &plan.blobs {
            if !asked.insert(digest.clone()) {
                continue;
            }
            // Under the lease before it is looked up, so that what is found stays: a blob no
            // name holds (left by an interrupted load) could otherwise be collected between
            // here and the naming at the end.
            client.lease_content(lease, digest).await?;
            if let Some(info) = client.content_info(digest).await? {
                present.insert(digest.clone());
                let lacking: HashMap<String, String> = labels
                    .iter()
                    .filter(|(k, v)| info.labels.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !lacking.is_empty() {
                    missing_labels.push((digest.clone(), lacking));
                }
            } else if !bundle.contains(&digest.parse()?) {
                bail!(
                    "this is a delta bundle{}, and containerd (namespace {}) lacks blob {digest} of \
                     image {} that it left out; load the full bundle it was made after first, or \
                     ask for a full bundle",
                    manifest
                        .delta
                        .as_ref()
                        .map(|d| format!(" made against {}", escape_controls(&d.base)))
                        .unwrap_or_default(),
                    escape_controls(client.namespace()),
                    escape_controls(&plan.label)
                );
            }
        }
    }

    // The blobs, each streamed from the bundle and checked by containerd at its commit.
    let mut to_write: Vec<BlobWrite> = Vec::new();
    let mut ledger_images = Vec::new();
    for plan in plans {
        let mut blobs = Vec::new();
        for (digest, size, labels) in &plan.blobs {
            if present.contains(digest) {
                continue;
            }
            blobs.push((digest.parse::<Digest>()?, *size));
            if !to_write.iter().any(|w| &w.digest == digest) {
                to_write.push(BlobWrite {
                    digest: digest.clone(),
                    size: *size,
                    labels: labels.clone(),
                    image: plan.label.clone(),
                });
            }
        }
        ledger_images.push((plan.label.clone(), blobs));
    }
    let layer_digests: HashSet<&String> = plans
        .iter()
        .flat_map(|p| p.layers.iter().map(|l| &l.digest))
        .collect();
    outcome.layer_blobs_present = present.iter().filter(|d| layer_digests.contains(d)).count();
    details.blobs_present = present.len();
    if !to_write.is_empty() {
        let total: u64 = to_write.iter().map(|w| w.size).sum();
        let ledger = load_ledger(&ledger_images, &HashSet::new());
        let label = format!("write {} blobs into containerd", to_write.len());
        let mut progress = ImageCopy::start(reporter, &label, Some(total), ledger, "written");
        let sink = progress.sink();
        let writes = write_blobs(client, bundle, &sink, &to_write);
        tokio::pin!(writes);
        let written = tokio::select! {
            written = &mut writes => written,
            never = progress.report() => match never {},
        };
        let written = written?;
        progress.finish(sink.bytes());
        details.blobs_written = written.written;
        details.blobs_present += written.present;
        outcome.bytes_written = sink.bytes();
    }
    for (digest, labels) in missing_labels {
        client.set_content_labels(&digest, labels).await?;
    }

    // Unpacked as containerd's own unpacker does: a snapshot per layer chain, named by its
    // chain ID, each layer applied on its parent's.
    for plan in plans {
        let chains = chain_ids(&plan.diff_ids);
        let mut unpacked_here = 0;
        let mut parent = String::new();
        for ((layer, diff_id), chain) in plan.layers.iter().zip(&plan.diff_ids).zip(&chains) {
            let chain = chain.to_string();
            // As for the blobs: a snapshot found is kept by the lease, not by luck.
            client
                .lease_snapshot(lease, &target.snapshotter, &chain)
                .await?;
            if client
                .stat_snapshot(&target.snapshotter, &chain)
                .await?
                .is_some()
            {
                details.layers_present += 1;
            } else {
                if unpacked_here == 0 {
                    reporter.step(&format!(
                        "{}: unpacking into {}",
                        escape_controls(&plan.label),
                        escape_controls(&target.snapshotter)
                    ));
                }
                unpack_layer(client, &target.snapshotter, layer, diff_id, &parent, &chain)
                    .await
                    .with_context(|| format!("unpacking image {}", escape_controls(&plan.label)))?;
                unpacked_here += 1;
                details.layers_unpacked += 1;
            }
            parent = chain;
        }
        if !parent.is_empty() {
            let key = format!("containerd.io/gc.ref.snapshot.{}", target.snapshotter);
            client
                .set_content_labels(&plan.config.digest, HashMap::from([(key, parent)]))
                .await?;
        }
        let wrote = plan.blobs.iter().any(|(d, _, _)| !present.contains(d));
        if wrote || unpacked_here > 0 {
            outcome.loaded.push(plan.label.clone());
        } else {
            outcome.already_present.push(plan.label.clone());
        }
    }

    // Names only once the whole bundle matched its checksum: until then nothing points at what
    // was written, and the lease's end takes it away.
    // On a thread of its own, so that Ctrl-C is heard while the hash runs.
    let gate = sidecar.clone();
    tokio::task::spawn_blocking(move || wait_for_sidecar(&gate, "named in containerd"))
        .await
        .context("the thread waiting for the .sha256 check stopped")??;
    for plan in plans {
        for name in &plan.names {
            let change = match client.image(name).await? {
                Some(existing)
                    if existing.target.as_ref().map(|t| &t.digest)
                        == Some(&plan.manifest.digest) =>
                {
                    "unchanged"
                }
                Some(_) => "updated",
                None => "created",
            };
            if change != "unchanged" {
                client.put_image(name, plan.manifest.clone()).await?;
            }
            details.images.push(NamedImage {
                name: name.clone(),
                digest: plan.manifest.digest.clone(),
                change,
            });
        }
    }
    outcome.details = Some(details);
    Ok(outcome)
}

/// A blob to write, with the first image that needs it (for errors).
struct BlobWrite {
    digest: String,
    size: u64,
    labels: HashMap<String, String>,
    image: String,
}

#[derive(Debug, Default)]
struct WrittenBlobs {
    written: usize,
    present: usize,
}

/// How long a blob's write waits on another writer of the same blob that writes nothing.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// Streams each blob of `blobs` from the bundle into the content store, one after another.
async fn write_blobs(
    client: &Containerd,
    bundle: &Arc<BundleReader>,
    sink: &CopySink,
    blobs: &[BlobWrite],
) -> Result<WrittenBlobs> {
    let mut done = WrittenBlobs::default();
    for blob in blobs {
        if write_blob(client, bundle, sink, blob).await? {
            done.written += 1;
        } else {
            done.present += 1;
        }
    }
    Ok(done)
}

/// Writes `write` into the content store; false when containerd had it already. Another load
/// writing the same blob holds its write reference until it commits: this one waits its turn
/// (as containerd's own clients do), then finds the blob there.
async fn write_blob(
    client: &Containerd,
    bundle: &Arc<BundleReader>,
    sink: &CopySink,
    write: &BlobWrite,
) -> Result<bool> {
    let blob: Digest = write.digest.parse()?;
    let mut pause = Duration::from_millis(20);
    let mut other_offset = None;
    let mut stalled_since = Instant::now();
    loop {
        let before = sink.bytes();
        match write_blob_once(client, bundle, sink, &blob, write).await? {
            Written::Written => return Ok(true),
            Written::AlreadyPresent => return Ok(false),
            Written::Locked => {}
        }
        // Nothing of this attempt reached the content store: the progress forgets it.
        sink.set_bytes(before);
        sink.blob_bytes(&blob, 0);
        // A writer that still writes is worth waiting for, however large the blob.
        let offset = client.write_progress(&write.digest).await?;
        if offset != other_offset {
            other_offset = offset;
            stalled_since = Instant::now();
        } else if stalled_since.elapsed() > LOCK_PATIENCE {
            bail!(
                "another writer has held containerd's write {} of blob {} (image {}) for {} s \
                 without writing to it (another `offpack load --containerd`?); let it finish or \
                 stop it, then run this load again",
                write_reference(&write.digest),
                write.digest,
                escape_controls(&write.image),
                LOCK_PATIENCE.as_secs()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// One attempt at writing `write`, its bytes copied from the bundle on a thread of their own.
async fn write_blob_once(
    client: &Containerd,
    bundle: &Arc<BundleReader>,
    sink: &CopySink,
    blob: &Digest,
    write: &BlobWrite,
) -> Result<Written> {
    let (writer, body) = channel_body();
    let copy = {
        let bundle = bundle.clone();
        let sink = sink.clone();
        let blob = blob.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            let result = copy_blob(&bundle, &blob, &sink, &mut writer);
            if let Err(CopyError::Bundle(e)) = &result {
                writer.fail(e);
            }
            result
        })
    };
    let written = client
        .write_content(&write.digest, write.size, write.labels.clone(), body)
        .await;
    let copied = copy.await.context("the blob copying thread stopped")?;
    settle_write(copied, written, write, bundle.path())
}

/// What became of one blob's write, from both sides of it. The bundle's error comes first: when
/// reading the bundle fails, the write fails too, for that reason, and containerd's side of it
/// would only say that the stream broke off.
fn settle_write(
    copied: Result<(), CopyError>,
    written: Result<Written>,
    write: &BlobWrite,
    bundle: &Path,
) -> Result<Written> {
    match (copied, written) {
        (Err(CopyError::Bundle(e)), _) if is_corrupt_data(&e) => {
            Err(corrupt_bundle(e, "named in containerd"))
        }
        (Err(CopyError::Bundle(e)), _) => Err(anyhow::anyhow!(
            "cannot read blob {} of image {} from bundle {}: {e:#}\nNothing was named in \
             containerd. If the medium is failing, copy the bundle again and run `offpack verify`.",
            write.digest,
            escape_controls(&write.image),
            bundle.display()
        )),
        (_, Ok(written)) => Ok(written),
        (_, Err(e)) => Err(e.context(format!("loading image {}", escape_controls(&write.image)))),
    }
}

/// Why a blob's copy stopped.
enum CopyError {
    /// Reading the bundle failed.
    Bundle(anyhow::Error),
    /// containerd stopped taking the blob; its answer says why.
    Closed,
}

/// Copies blob `blob` of `bundle` into `writer`, telling `sink` how far it got.
fn copy_blob(
    bundle: &BundleReader,
    blob: &Digest,
    sink: &CopySink,
    writer: &mut impl Write,
) -> Result<(), CopyError> {
    let reader = bundle.blob(blob).map_err(|e| CopyError::Bundle(e.into()))?;
    let mut reader = sink.reader(reader);
    let mut buffer = vec![0u8; 1 << 20];
    let mut passed = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(|e| CopyError::Bundle(e.into()))?;
        if n == 0 {
            break;
        }
        writer
            .write_all(&buffer[..n])
            .map_err(|_| CopyError::Closed)?;
        passed += n as u64;
        sink.blob_bytes(blob, passed);
    }
    writer.flush().map_err(|_| CopyError::Closed)?;
    sink.blob_done(blob, passed);
    Ok(())
}

/// Applies `layer` on snapshot `parent` (empty: none) and commits the result as `chain`.
async fn unpack_layer(
    client: &Containerd,
    snapshotter: &str,
    layer: &OciDescriptor,
    diff_id: &Digest,
    parent: &str,
    chain: &str,
) -> Result<()> {
    // containerd's own unpack key form, unique per attempt.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!("extract-{nanos}-{} {chain}", std::process::id());
    let mounts: Vec<Mount> = client.prepare_snapshot(snapshotter, &key, parent).await?;
    let applied = async {
        let applied = client.apply_layer(&layer.to_proto(), mounts).await?;
        if applied.digest != diff_id.to_string() {
            bail!(
                "containerd unpacked layer {} into content of digest {}, not the layer's diff ID {diff_id}",
                layer.digest,
                applied.digest
            );
        }
        client.commit_snapshot(snapshotter, chain, &key).await
    }
    .await;
    match applied {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => {
            // Committed by another load meanwhile (fine), or failed: the extraction goes.
            let removed = client.remove_snapshot(snapshotter, &key).await;
            applied?;
            removed
        }
    }
}

/// A human summary of the names a containerd load gave.
pub fn describe_names(details: &ContainerdLoaded) -> String {
    let changed: Vec<String> = details
        .images
        .iter()
        .filter(|i| i.change != "unchanged")
        .map(|i| format!("{} ({})", escape_controls(&i.name), i.change))
        .collect();
    format!(
        "{} names in containerd namespace {}{}; {} layers unpacked into {}, {} there already",
        details.images.len(),
        escape_controls(&details.namespace),
        if changed.is_empty() {
            String::new()
        } else {
            format!(": {}", changed.join(", "))
        },
        details.layers_unpacked,
        details.snapshotter,
        details.layers_present,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fully_qualified_and_digest_references_left_out() {
        let refs = [
            "python:3.11-slim".to_string(),
            "docker.io/library/python:3.11-slim".to_string(),
            "redis@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .to_string(),
            "localhost:5000/team/app".to_string(),
        ];
        assert_eq!(
            containerd_names(&refs).unwrap(),
            [
                "docker.io/library/python:3.11-slim",
                "localhost:5000/team/app:latest"
            ]
        );
        assert!(containerd_names(&["Bad:Name".to_string()]).is_err());
    }

    fn plan(label: &str, platform: &str, names: &[&str]) -> ImagePlan {
        ImagePlan {
            label: label.to_string(),
            platform: platform.to_string(),
            names: names.iter().map(|n| n.to_string()).collect(),
            manifest: Descriptor::default(),
            config: OciDescriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
            },
            layers: Vec::new(),
            diff_ids: Vec::new(),
            blobs: Vec::new(),
        }
    }

    #[test]
    fn a_name_of_several_platforms_goes_to_the_nodes_image_only() {
        let app = "docker.io/library/app:1";
        let settled = settle_shared_names(
            vec![
                plan("app-arm", "linux/arm64/v8", &[app]),
                plan(
                    "app-amd",
                    "linux/amd64",
                    &[app, "docker.io/library/app:amd"],
                ),
                plan("db", "linux/arm64", &["docker.io/library/db:1"]),
            ],
            "linux/amd64",
        )
        .unwrap();
        let kept: Vec<(&str, &[String])> = settled
            .kept
            .iter()
            .map(|p| (p.label.as_str(), p.names.as_slice()))
            .collect();
        assert_eq!(
            kept,
            [
                (
                    "app-amd",
                    &[app.to_string(), "docker.io/library/app:amd".into()][..]
                ),
                // A name of one image only keeps it, whatever its platform (decision 0095).
                ("db", &["docker.io/library/db:1".to_string()][..]),
            ]
        );
        assert_eq!(settled.skipped.len(), 1);
        assert_eq!(settled.skipped[0].label, "app-arm");

        // An image that keeps another name of its own is still loaded under it.
        let settled = settle_shared_names(
            vec![
                plan("arm", "linux/arm64", &[app, "docker.io/library/app:arm"]),
                plan("amd", "linux/amd64", &[app]),
            ],
            "linux/amd64",
        )
        .unwrap();
        assert_eq!(settled.kept[0].names, ["docker.io/library/app:arm"]);
        assert_eq!(settled.kept[1].names, [app]);

        // No image of the node's platform: no guess.
        let err = settle_shared_names(
            vec![
                plan("arm", "linux/arm64", &[app]),
                plan("s390x", "linux/s390x", &[app]),
            ],
            "linux/amd64",
        )
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("linux/arm64, linux/s390x")
                && text.contains(app)
                && text.contains("linux/amd64"),
            "{text}"
        );
    }

    #[test]
    fn a_bundle_read_error_is_reported_as_the_bundles_not_as_containerd_stopping() {
        let write = BlobWrite {
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 10,
            labels: HashMap::new(),
            image: "redis:7".to_string(),
        };
        let bundle = Path::new("/media/usb/b.offpack");
        // What the broken stream makes of the bundle's error on containerd's side.
        let stopped = || {
            Err(anyhow::anyhow!(
                "containerd at /run/containerd/containerd.sock did not answer \
                 /containerd.services.content.v1.Content/Write (stream error): did it stop?"
            ))
        };
        let eio = || {
            CopyError::Bundle(anyhow::Error::new(std::io::Error::from_raw_os_error(
                5, // EIO
            )))
        };
        let err = settle_write(Err(eio()), stopped(), &write, bundle).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&write.digest)
                && text.contains("redis:7")
                && text.contains("/media/usb/b.offpack")
                && text.contains("Input/output error")
                && text.contains("offpack verify")
                && !text.contains("did it stop?"),
            "{text}"
        );
        // Even when containerd had the blob already: a bundle that cannot be read is said.
        let err = settle_write(Err(eio()), Ok(Written::AlreadyPresent), &write, bundle);
        assert!(format!("{:#}", err.unwrap_err()).contains("Input/output error"));

        // containerd's own failure, with the copy cut off by it, is containerd's.
        let err = settle_write(Err(CopyError::Closed), stopped(), &write, bundle).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("did it stop?") && text.contains("loading image redis:7"),
            "{text}"
        );
        // containerd answering "already there" at once cuts the copy off too; that is no error.
        assert_eq!(
            settle_write(
                Err(CopyError::Closed),
                Ok(Written::AlreadyPresent),
                &write,
                bundle
            )
            .unwrap(),
            Written::AlreadyPresent
        );
    }

    #[test]
    fn the_manifest_keeps_its_config_and_layers_and_layers_name_their_diff_id() {
        let manifest: OciManifest = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":3},
                "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:a","size":1},
                          {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:b","size":2}]}"#,
        )
        .unwrap();
        let diff_ids: Vec<Digest> = ["a", "b"]
            .iter()
            .map(|c| Digest::from_hex(&c.repeat(64)).unwrap())
            .collect();
        let labels = content_labels(&manifest, &diff_ids);
        assert_eq!(labels.len(), 4, "two layers, the config, the manifest last");
        assert_eq!(
            labels[1].1["containerd.io/uncompressed"],
            diff_ids[1].to_string(),
            "a layer names its diff ID (for an uncompressed layer, its own digest)"
        );
        assert!(
            labels[2].1.is_empty(),
            "the config's label comes with its snapshot"
        );
        let (digest, refs) = &labels[3];
        assert!(digest.is_empty());
        assert_eq!(refs["containerd.io/gc.ref.content.config"], "sha256:c");
        assert_eq!(refs["containerd.io/gc.ref.content.l.0"], "sha256:a");
        assert_eq!(refs["containerd.io/gc.ref.content.l.1"], "sha256:b");
    }
}
