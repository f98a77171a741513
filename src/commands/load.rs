use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use offpack_bundle::{BundleReader, escape_controls};
use serde::Serialize;

use crate::cli::{LoadArgs, Output};
use crate::engine::Engine;
use crate::error::CheckFailed;
use crate::ops::load::apply::{SidecarGate, load_images, restore_names};
use crate::ops::load::{LoadDecision, decide_load};
use crate::reporter::{Reporter, human_bytes};

#[derive(Debug, Serialize)]
struct LoadReport {
    loaded: Vec<String>,
    already_present: Vec<String>,
    retagged: Vec<String>,
    /// Names the bundle records that already point to another image in the engine (e.g. one
    /// `offpack rebuild` made): a load never moves them.
    kept: Vec<String>,
    /// Layers not sent because the engine already holds them (same layer on the same base).
    layers_skipped: usize,
    bytes_streamed: u64,
    /// Fingerprint of the key whose valid signature the bundle carries.
    signed_by: Option<String>,
    /// The `.sha256` file the whole bundle matched, when there is one beside it.
    sidecar: Option<String>,
}

pub async fn run(args: LoadArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let key = match &args.key {
        Some(path) => Some(crate::commands::verify::read_public_key(path)?),
        None => None,
    };
    // Everything but the blob data is checked before the engine hears of the bundle, not even a
    // name to look up: a bundle changed after signing, or whose metadata lies, changes nothing.
    let checked = BundleReader::open_checked(&args.bundle, key.as_ref()).map_err(|e| {
        if e.is_corruption() {
            anyhow::Error::new(e).context(format!(
                "{}: refused, nothing was loaded",
                args.bundle.display()
            ))
        } else {
            e.into()
        }
    })?;
    let checked_signer = checked.signed_by.as_ref().map(|k| k.fingerprint());
    if let Some(signer) = &checked_signer {
        reporter.step(&format!("signed by key {signer}"));
    }
    let sidecar = SidecarGate::start(checked.sidecar);
    let bundle = Arc::new(checked.reader);
    let manifest = bundle.manifest().clone();
    let wanted = crate::ops::meta::images_for_services(&manifest, &args.services)?;
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
    let engine = Engine::connect().await?;

    let LoadDecision {
        to_load,
        load_blobs,
        loaded,
        already_present,
        retag,
        kept,
    } = decide_load(&engine, &manifest, &wanted).await?;
    let mut report = LoadReport {
        loaded,
        already_present,
        retagged: Vec::new(),
        kept,
        layers_skipped: 0,
        bytes_streamed: 0,
        signed_by: checked_signer.clone(),
        sidecar: None,
    };
    for name in &report.already_present {
        reporter.step(&format!("{}: already present", escape_controls(name)));
    }
    for name in &report.kept {
        reporter.warn(&format!(
            "{} names another image in the engine (a rebuild?); left as it is",
            escape_controls(name)
        ));
    }

    let streamed = load_images(&engine, reporter, &bundle, &sidecar, &to_load, &load_blobs).await?;
    report.bytes_streamed = streamed.bytes;
    report.layers_skipped = streamed.layers_skipped;
    report.retagged = restore_names(&engine, &sidecar, retag).await?;
    report.sidecar = sidecar.matched();
    output.result(&report, || {
        format!(
            "loaded {} images ({} streamed), {} already present{}",
            report.loaded.len(),
            human_bytes(report.bytes_streamed),
            report.already_present.len(),
            if report.retagged.is_empty() {
                String::new()
            } else {
                let names: Vec<_> = report.retagged.iter().map(|n| escape_controls(n)).collect();
                format!(", retagged {}", names.join(", "))
            }
        ) + &match &report.sidecar {
            Some(sidecar) => format!("; the bundle matches {sidecar}"),
            None => String::new(),
        }
    });
    Ok(ExitCode::SUCCESS)
}
