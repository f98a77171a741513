//! The export job behind `offpack bundle`: the plan and the checks of what the command line
//! names, the engine's images collected, then the export into the bundle writer under the
//! target's lock. The order is what the reliability work depends on (decision 0064): the plan,
//! the target check and the files named on the command line before the engine is contacted;
//! signal listeners before the lock and the temporary file exist; the lock held until the bundle
//! and its sidecar are in place; a signal during the export cancels the copy, so the writer is
//! dropped (removing the temporary file) before the process ends.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use offpack_bundle::{BundleWriter, Digest, Manifest, WriteOptions};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::apply::{Collect, collect_images};
use super::packages::{
    add_packages, fetch_npm_work, fetch_pip_work, merge_fetched, plan_package_work, service_needs,
};
use super::proof::prove;
use super::{
    BundleRequest, ExportPlan, delta_against, layers_the_far_side_has, plan_export, target,
};
use crate::engine::{Engine, ImageInfo};
use crate::fetch::export::copy_export;
use crate::load::inventory::Inventory;
use crate::ops::builder::choose_builder;
use crate::ops::copy::ImageCopy;
use crate::plan::{Disk, FindingLayout, make_plan};
use crate::project::load_project;
use crate::reporter::{ImageProgress, Reporter};

/// The bundle written, for the command to render.
#[derive(Debug)]
pub struct Bundled {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub uncompressed: u64,
    pub images: usize,
    /// Distinct layers of the bundled images (a shared layer once), those left out of a delta
    /// bundle included.
    pub layers: usize,
    /// Layers a delta bundle leaves out (the far side holds them).
    pub layers_left_out: usize,
    pub blobs: usize,
    /// Python and npm package files carried.
    pub packages: usize,
    /// Bytes of the engine's export stream.
    pub exported: u64,
    pub seconds: f64,
}

/// Writes the bundle `request` asks for.
pub async fn bundle(request: &BundleRequest, reporter: &dyn Reporter) -> Result<Bundled> {
    let started = Instant::now();
    let project = load_project(&request.project.clone())?;
    // The builder `auto` picks is known once the engine answers; BuildKit, which every engine
    // offpack supports today has, is assumed until then so that bad input fails before engine work.
    let assumed = request.builder.without_engine();
    let mut plan = make_plan(&project, &Disk, assumed)?;
    for finding in &plan.findings {
        reporter.warn(&finding.render(FindingLayout::Line));
    }
    // Before anything slow, so that a wrong -o fails at once.
    target::check(request, &project)?;
    // The files given on the command line are read before the engine works for minutes.
    let inventory = match &request.have {
        Some(path) => Some((path, read_inventory(path)?)),
        None => None,
    };
    let sign = super::signing_key(request)?;
    let engine = Engine::connect().await?;
    // A registry serves every platform; the engine's images (builds) are its own platform.
    let registry_platforms = match &request.from_registry {
        Some(_) if request.platforms.is_empty() => {
            let facts = engine.facts(&[]).await?;
            vec![format!("{}/{}", facts.os, facts.arch)]
        }
        Some(_) => request.platforms.clone(),
        None => {
            check_platforms(&engine, &request.platforms).await?;
            Vec::new()
        }
    };
    let builder = choose_builder(&engine, request.builder).await?;
    if builder != assumed {
        plan = make_plan(&project, &Disk, builder)?;
    }

    // The packages come first: a package file offpack cannot read, or a tarball that does not
    // match its lock file's integrity, fails the run before the engine works for minutes (and
    // before a build's own `npm ci` would fail on it with a less clear message). Python packages
    // are resolved in their images, so after the pulls.
    let package_needs = service_needs(&project, &plan)?;
    let work = plan_package_work(&package_needs, &request.packages)?;
    for warning in &work.warnings {
        reporter.warn(warning);
    }
    let mut fetched = fetch_npm_work(&work, reporter)?;
    let (contents, proofs) = collect_images(
        &engine,
        &project,
        &plan,
        Collect {
            pull: request.pull,
            build: request.build,
            no_build: request.no_build,
            builder,
            from_registry: request.from_registry.is_some(),
        },
        &package_needs,
        reporter,
    )
    .await?;
    if request.no_proof {
        if !proofs.is_empty() {
            reporter
                .warn("--no-proof: the bundle is not checked to rebuild from cache behind the gap");
        }
    } else {
        prove(&engine, &proofs, reporter).await?;
    }
    if contents.refs.is_empty() && contents.from_registry.is_empty() {
        bail!(
            "the project {} needs no images: nothing to bundle",
            project.name
        );
    }
    fetched.extend(fetch_pip_work(&engine, &work, reporter).await?);
    let fetched = merge_fetched(fetched);

    let ExportPlan {
        names: export_names,
        infos,
    } = plan_export(&engine, &contents.refs).await?;

    // Listen for Ctrl-C and SIGTERM before the temporary file exists, so that from then on a
    // signal ends the run cleanly instead of killing it with the file in place.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    // Taken once a signal can no longer kill the run with its lock file in place; held until the
    // bundle and its sidecar are in place.
    let _target_lock = target::claim(request, &project, reporter)?;
    let leave_out = match &inventory {
        Some((path, inventory)) => layers_the_far_side_has(path, inventory, infos.values())?,
        None => HashSet::new(),
    };
    let mut writer = BundleWriter::create(
        &request.output,
        WriteOptions {
            level: request.level,
            threads: 0,
            split: request.split,
            sign,
        },
    )
    .with_context(|| format!("cannot create the bundle {}", request.output.display()))?;
    // The engine writes its whole export to disk before the first byte comes (docs/engine-support.md),
    // and the stream's size is known only at its end (shared layers come once, in tar framing).
    // Each image's line counts its config and layers (a shared layer for each image) as they pass,
    // against the engine's size of the image, an estimate (the layers' contents without their tar
    // framing); the total counts the stream's bytes against an estimate from those sizes (a shared
    // layer once), raised when the bytes pass it and set to the stream's size at its end.
    // With --from-registry every image may come from a registry: then the engine exports nothing.
    let (mut writer, exported, streamed) = if export_names.is_empty() {
        (writer, Vec::new(), 0)
    } else {
        reporter.step(&format!(
            "exporting {} images (the engine prepares the whole export before it sends the first byte)",
            export_names.len()
        ));
        let ledger = export_ledger(&contents.refs, &infos);
        let estimate = Some(ledger.unique_estimate()).filter(|&bytes| bytes > 0);
        let label = format!("export {} images", export_names.len());
        let mut progress = ImageCopy::start(reporter, &label, estimate, ledger, "exported");
        let stream = engine.export(&export_names);
        let leave_out_for_copy = leave_out.clone();
        let mut copy = progress.spawn(move |sink| {
            let reader = sink.reader(SyncIoBridge::new(StreamReader::new(stream)));
            let images = copy_export(
                reader,
                &mut writer,
                &leave_out_for_copy,
                &mut |digest, size| sink.blob_done(digest, size),
            )?;
            Ok((writer, images))
        });
        let sink = progress.sink();
        let copied = tokio::select! {
            copied = &mut copy => copied,
            never = progress.report() => match never {},
            _ = async { tokio::select! { _ = interrupt.recv() => {}, _ = terminate.recv() => {} } } => {
                // Let the copy fail at its next read so that the writer is dropped, which removes
                // the temporary file, before the process ends.
                sink.cancel();
                let _ = copy.await;
                bail!("interrupted: no bundle was written at {}", request.output.display());
            }
        };
        let (writer, exported) = copied.context("the export copy stopped")??;
        let streamed = sink.bytes();
        progress.finish(streamed);
        (writer, exported, streamed)
    };
    let (mut writer, packages) = tokio::task::spawn_blocking(move || {
        let packages = add_packages(&mut writer, &fetched)?;
        anyhow::Ok((writer, packages))
    })
    .await
    .context("adding the packages stopped")??;
    let mut from_registry = Vec::new();
    let mut known = crate::fetch::registry::Known::new();
    let cancel = Arc::new(AtomicBool::new(false));
    for (wanted, used_by) in &contents.from_registry {
        reporter.step(&format!(
            "taking {} from its registry ({})",
            wanted.reference,
            registry_platforms.join(", ")
        ));
        let access = request.from_registry.clone().unwrap_or_default();
        let (wanted_c, platforms) = (wanted.clone(), registry_platforms.clone());
        let cancel_c = cancel.clone();
        let mut fetch = tokio::task::spawn_blocking(move || {
            let images = crate::fetch::registry::fetch_image(
                &mut writer,
                &access,
                &wanted_c,
                &platforms,
                &mut known,
                &cancel_c,
            )
            .with_context(|| format!("taking image {} from its registry", wanted_c.reference));
            (writer, known, images)
        });
        let (w, k, images) = tokio::select! {
            done = &mut fetch => done.context("taking an image from its registry stopped")?,
            _ = async { tokio::select! { _ = interrupt.recv() => {}, _ = terminate.recv() => {} } } => {
                // The fetch fails at its next read; the writer it hands back is dropped here,
                // which removes the temporary file.
                cancel.store(true, Ordering::Relaxed);
                let _ = fetch.await;
                bail!("interrupted: no bundle was written at {}", request.output.display());
            }
        };
        (writer, known) = (w, k);
        from_registry.push((images?, used_by));
    }

    let mut manifest = Manifest::new(env!("CARGO_PKG_VERSION"), &project.name);
    manifest.project.files = project_files(&project)?;
    contents.fill_manifest(&mut manifest, &exported, &infos)?;
    add_registry_images(&mut manifest, from_registry);
    let package_count = packages.len();
    manifest.packages = packages;
    if let Some(have) = &request.have {
        manifest.delta = Some(delta_against(have, &leave_out));
    }
    let images = manifest.images.len();
    let layers = manifest
        .images
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| &l.digest))
        .collect::<HashSet<_>>()
        .len();
    let written = tokio::task::spawn_blocking(move || writer.finish(manifest))
        .await
        .context("finishing the bundle stopped")??;
    Ok(Bundled {
        path: written.path,
        sha256: written.sha256,
        size: written.size,
        uncompressed: written.uncompressed,
        images,
        layers,
        layers_left_out: leave_out.len(),
        blobs: written.blobs,
        packages: package_count,
        exported: streamed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Adds the images taken from registries to `manifest`: each service that runs one needs the
/// image of the first platform (the one named); the platforms are the bundle's.
fn add_registry_images(
    manifest: &mut Manifest,
    fetched: Vec<(Vec<offpack_bundle::Image>, &BTreeSet<String>)>,
) {
    let mut platforms: BTreeSet<String> = manifest.platforms.iter().cloned().collect();
    for (images, used_by) in fetched {
        if let Some(first) = images.first() {
            for service in used_by {
                manifest
                    .rebuild
                    .services
                    .entry(service.clone())
                    .or_default()
                    .images
                    .insert(first.id.clone());
            }
        }
        for image in images {
            platforms.insert(image.platform.clone());
            // The same image under another reference (a tag and a digest pin): one entry.
            match manifest
                .images
                .iter_mut()
                .find(|i| i.id == image.id && i.oci_manifest == image.oci_manifest)
            {
                Some(same) => {
                    for r in image.refs {
                        if !same.refs.contains(&r) {
                            same.refs.push(r);
                        }
                    }
                    let registry = same.registry.as_mut().expect("registry images only");
                    let Some(other) = image.registry else {
                        continue;
                    };
                    if registry.index.is_none() {
                        registry.index = other.index.clone();
                    }
                    // A second index listing the same manifest is not carried: its digest is
                    // not recorded either.
                    let ours = |d: &String| {
                        other.index.is_none()
                            || registry.index == other.index
                            || !other
                                .index
                                .as_ref()
                                .is_some_and(|i| d.ends_with(&i.digest.to_string()))
                    };
                    for d in other.repo_digests.into_iter().filter(ours) {
                        if !registry.repo_digests.contains(&d) {
                            registry.repo_digests.push(d);
                        }
                    }
                }
                None => manifest.images.push(image),
            }
        }
    }
    manifest.images.sort_by(|a, b| a.refs.cmp(&b.refs));
    manifest.platforms = platforms.into_iter().collect();
}

/// The export's progress per image: its config and layers, as the engine's inspect lists them,
/// against the engine's size of the image.
fn export_ledger(
    refs: &BTreeMap<Digest, BTreeSet<String>>,
    infos: &BTreeMap<Digest, ImageInfo>,
) -> ImageProgress {
    let mut ledger = ImageProgress::new();
    for (id, names) in refs {
        let Some(info) = infos.get(id) else { continue };
        let label = names
            .iter()
            .find(|n| !n.contains('@'))
            .or_else(|| names.iter().next())
            .cloned()
            .unwrap_or_else(|| id.to_string());
        let blobs = std::iter::once(&info.id).chain(info.layers.iter()).cloned();
        ledger.add_image(&label, blobs, info.size);
    }
    ledger
}

/// The far side's inventory (`--have`).
fn read_inventory(have: &Path) -> Result<Inventory> {
    let text = offpack_fs::read_to_string(have, offpack_fs::INVENTORY)?;
    Inventory::parse(&text, &have.display().to_string())
}

/// The classic image store holds one platform per image name: bundling for another platform
/// than the engine's would need the containerd image store, so say so instead of guessing.
async fn check_platforms(engine: &Engine, platforms: &[String]) -> Result<()> {
    if platforms.is_empty() {
        return Ok(());
    }
    let facts = engine.facts(&[]).await?;
    let own = format!("{}/{}", facts.os, facts.arch);
    for platform in platforms {
        let normalized = platform.trim().trim_end_matches('/');
        if normalized != own && !normalized.starts_with(&format!("{own}/")) {
            if facts.containerd_image_store {
                bail!(
                    "bundling for {platform} on this engine is not supported yet by offpack; \
                     run `offpack bundle` on a {platform} machine"
                );
            }
            bail!(
                "this engine ({} with the {} store) holds one platform per image, its own ({own}); \
                 it cannot hold {platform} images. Bundle on a {platform} machine, or on an engine \
                 with the containerd image store.",
                facts.server_version,
                facts.storage_driver
            );
        }
    }
    Ok(())
}

/// Digests of the compose files, so the far side can tell it has the same project.
fn project_files(project: &offpack_compose::Project) -> Result<Vec<offpack_bundle::ProjectFile>> {
    let mut files = Vec::new();
    for path in &project.files {
        let bytes = offpack_fs::read(path, offpack_fs::COMPOSE_FILE)?;
        let relative = path
            .strip_prefix(&project.project_directory)
            .unwrap_or(path);
        files.push(offpack_bundle::ProjectFile {
            path: relative.to_string_lossy().replace('\\', "/"),
            sha256: Digest::of_bytes(&bytes),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry-form image of manifest `m`, named `refs`, from index `index` when given.
    fn registry_image(m: &str, refs: &[&str], index: Option<&str>) -> offpack_bundle::Image {
        let d = |s: &str| Digest::of_bytes(s.as_bytes());
        let mut repo_digests = vec![format!("r.example/app@{}", d(m))];
        let index = index.map(|i| {
            repo_digests.push(format!("r.example/app@{}", d(i)));
            offpack_bundle::RegistryIndex {
                digest: d(i),
                size: 1,
                media_type: offpack_bundle::MEDIA_OCI_INDEX.into(),
            }
        });
        offpack_bundle::Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: d("config"),
            platform: "linux/amd64".into(),
            config: offpack_bundle::BlobRef {
                digest: d("config"),
                size: 1,
            },
            layers: Vec::new(),
            oci_manifest: Some(offpack_bundle::BlobRef {
                digest: d(m),
                size: 1,
            }),
            registry: Some(offpack_bundle::RegistryImage {
                media_type: offpack_bundle::MEDIA_DOCKER_MANIFEST.into(),
                repo_digests,
                layers: Vec::new(),
                index,
            }),
        }
    }

    #[test]
    fn one_manifest_named_by_a_tag_and_through_an_index_is_one_image_with_both_names() {
        let web: BTreeSet<String> = ["web".to_string()].into();
        let multi: BTreeSet<String> = ["multi".to_string()].into();
        let mut manifest = Manifest::new("test", "p");
        add_registry_images(
            &mut manifest,
            vec![
                (vec![registry_image("m1", &["r.example/app:1"], None)], &web),
                (
                    vec![registry_image("m1", &["r.example/app:multi"], Some("idx"))],
                    &multi,
                ),
            ],
        );
        assert_eq!(manifest.images.len(), 1);
        let image = &manifest.images[0];
        assert_eq!(image.refs, ["r.example/app:1", "r.example/app:multi"]);
        let registry = image.registry.as_ref().unwrap();
        assert!(
            registry.index.is_some(),
            "the index of the second name is kept"
        );
        assert_eq!(registry.repo_digests.len(), 2, "{registry:?}");
        manifest.validate().unwrap();
        for service in ["web", "multi"] {
            assert!(
                manifest.rebuild.services[service]
                    .images
                    .contains(&image.id)
            );
        }
        assert_eq!(manifest.platforms, ["linux/amd64"]);
    }

    #[test]
    fn export_progress_follows_the_engines_layers() {
        let d = |s: &str| Digest::of_bytes(s.as_bytes()).to_string();
        let info = |id: &str, layers: &[&str], size| ImageInfo {
            id: id.parse().unwrap(),
            repo_tags: Vec::new(),
            size,
            os: "linux".into(),
            architecture: "amd64".into(),
            layers: layers.iter().map(|l| d(l).parse().unwrap()).collect(),
            labels: Default::default(),
        };
        let (base, app) = (d("base-config"), d("app-config"));
        let key = |id: &str| id.parse::<Digest>().unwrap();
        let refs: BTreeMap<Digest, BTreeSet<String>> = [
            (
                key(&base),
                ["base@sha256:aa".to_string(), "base:1".into()].into(),
            ),
            (key(&app), [app.clone()].into()),
        ]
        .into();
        let infos: BTreeMap<Digest, ImageInfo> = [
            (key(&base), info(&base, &["l1"], 100)),
            (key(&app), info(&app, &["l1", "l2"], 150)),
        ]
        .into();
        let mut ledger = export_ledger(&refs, &infos);
        let labels: Vec<&str> = (0..ledger.len()).map(|i| ledger.label(i)).collect();
        let app_index = labels.iter().position(|l| *l == app).unwrap();
        let base_index = labels.iter().position(|l| *l == "base:1").unwrap();
        assert_eq!(ledger.status(app_index).total, 150);
        // The shared layer and the base's config: the base is complete, the app is not.
        ledger.blob_done(&d("l1").parse().unwrap(), 80);
        ledger.blob_done(&base.parse().unwrap(), 1);
        assert!(ledger.status(base_index).complete);
        assert_eq!(ledger.status(app_index).done, 80);
        assert!(!ledger.status(app_index).complete);
    }
}
