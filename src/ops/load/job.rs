//! `load` as one job: the bundle checked before the engine hears of it, then the decisions of
//! [`super::decide_load`] carried out by [`super::apply`] in the order decision 0066 gives.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use offpack_bundle::escape_controls;

use super::apply::{SidecarGate, load_images, restore_names, wait_for_sidecar};
use super::containerd::{ContainerdLoaded, ContainerdTarget, load_into_containerd};
use super::packages::store_packages;
use super::{LoadDecision, decide_load};
use crate::engine::Engine;
use crate::error::CheckFailed;
use crate::ops::verify::open_checked;
use crate::packages::store::PackageStore;
use crate::reporter::Reporter;

/// What `offpack load` is asked to do (what `cli::LoadArgs` converts into).
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// The bundle file (a split bundle: its base name or its first part).
    pub bundle: PathBuf,
    /// The public key the bundle must be signed by.
    pub key: Option<PathBuf>,
    /// Load only the images these services need; empty: every image.
    pub services: Vec<String>,
    /// Load into this containerd instead of the Docker Engine.
    pub containerd: Option<ContainerdTarget>,
}

/// What a load did, for the command to render.
#[derive(Debug)]
pub struct Loaded {
    pub loaded: Vec<String>,
    pub already_present: Vec<String>,
    pub retagged: Vec<String>,
    /// Names the bundle records that already point to another image in the engine (e.g. one
    /// `offpack rebuild` made): a load never moves them.
    pub kept: Vec<String>,
    /// Layers not sent because the engine already holds them (same layer on the same base).
    pub layers_skipped: usize,
    pub bytes_streamed: u64,
    /// Fingerprint of the key whose valid signature the bundle carries.
    pub signed_by: Option<String>,
    /// The `.sha256` file the whole bundle matched, when there is one beside it.
    pub sidecar: Option<String>,
    /// Packages put into the package store that it did not list before.
    pub packages_added: usize,
    /// Packages the store listed already.
    pub packages_present: usize,
    /// What a load into containerd did (`--containerd`).
    pub containerd: Option<ContainerdLoaded>,
}

/// Loads the bundle `request` names into the engine.
pub async fn load(request: &LoadRequest, reporter: &dyn Reporter) -> Result<Loaded> {
    // Everything but the blob data is checked before the engine hears of the bundle, not even a
    // name to look up: a bundle changed after signing, or whose metadata lies, changes nothing.
    let checked = open_checked(&request.bundle, request.key.as_deref(), "loaded")?;
    let checked_signer = checked.signed_by.as_ref().map(|k| k.fingerprint());
    if let Some(signer) = &checked_signer {
        reporter.step(&format!("signed by key {signer}"));
    }
    let sidecar = SidecarGate::start(checked.sidecar);
    let bundle = Arc::new(checked.reader);
    let manifest = bundle.manifest().clone();
    let wanted = crate::ops::meta::images_for_services(&manifest, &request.services)?;
    // A name `docker load` refuses would stop the load after earlier images were imported:
    // check every name first, so a load is all or nothing.
    for image in &manifest.images {
        for reference in &image.refs {
            if crate::plan::familiar_name(reference).is_err() {
                return Err(anyhow::Error::new(CheckFailed(format!(
                    "the bundle names image {} `{}`, which is not a valid image reference",
                    image.id,
                    escape_controls(reference)
                ))));
            }
        }
    }
    let mut report = Loaded {
        loaded: Vec::new(),
        already_present: Vec::new(),
        retagged: Vec::new(),
        kept: Vec::new(),
        layers_skipped: 0,
        bytes_streamed: 0,
        signed_by: checked_signer.clone(),
        sidecar: None,
        packages_added: 0,
        packages_present: 0,
        containerd: None,
    };
    if let (Some(target), false) = (&request.containerd, wanted.is_empty()) {
        let outcome = load_into_containerd(target, reporter, &bundle, &sidecar, &wanted).await?;
        report.loaded = outcome.loaded;
        report.already_present = outcome.already_present;
        report.layers_skipped = outcome.layer_blobs_present;
        report.bytes_streamed = outcome.bytes_written;
        report.containerd = outcome.details;
    }
    // A bundle of packages alone (or services that need no image) never needs the engine.
    if request.containerd.is_none() && !wanted.is_empty() {
        let engine = Engine::connect().await?;
        let LoadDecision {
            to_load,
            load_blobs,
            loaded,
            already_present,
            retag,
            kept,
        } = decide_load(&engine, &manifest, &wanted).await?;
        report.loaded = loaded;
        report.already_present = already_present;
        report.kept = kept;
        for name in &report.already_present {
            reporter.step(&format!("{}: already present", escape_controls(name)));
        }
        for name in &report.kept {
            reporter.warn(&format!(
                "{} names another image in the engine (a rebuild?); left as it is",
                escape_controls(name)
            ));
        }

        let streamed =
            load_images(&engine, reporter, &bundle, &sidecar, &to_load, &load_blobs).await?;
        report.bytes_streamed = streamed.bytes;
        report.layers_skipped = streamed.layers_skipped;
        report.retagged = restore_names(&engine, &sidecar, retag).await?;
    }
    // Packages go into the store, like retags, only once the whole bundle matched its .sha256.
    wait_for_sidecar(&sidecar, "stored")?;
    if !manifest.packages.is_empty() {
        let store = PackageStore::open_default()?;
        let stored = store_packages(&bundle, &store, reporter).map_err(|e| {
            if super::apply::is_corrupt_data(&e) {
                super::apply::corrupt_bundle(e, "added to the package store")
            } else {
                e
            }
        })?;
        report.packages_added = stored.added;
        report.packages_present = stored.present;
    }
    report.sidecar = sidecar.matched();
    Ok(report)
}
