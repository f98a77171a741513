use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use offpack_bundle::{BundleReader, Digest};
use serde::Serialize;

use crate::cli::{LoadArgs, Output};
use crate::commands::human_bytes;
use crate::engine::{Engine, EngineFacts, channel_body};
use crate::error::CheckFailed;
use crate::load::{LoadImage, chain, write_load_stream};
use crate::reporter::{Reporter, report_every_200ms};

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
}

pub async fn run(args: LoadArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let bundle = BundleReader::open(&args.bundle)?;
    let manifest = bundle.manifest().clone();
    let wanted = crate::commands::bundle::images_for_services(&manifest, &args.services)?;
    // A name `docker load` refuses would stop the load after earlier images were imported:
    // check every name first, so a load is all or nothing.
    for image in &manifest.images {
        for reference in &image.refs {
            if crate::plan::familiar_name(reference).is_err() {
                return Err(anyhow::Error::new(CheckFailed(format!(
                    "the bundle names image {} `{reference}`, which is not a valid image reference",
                    image.id
                ))));
            }
        }
    }
    let engine = Engine::connect().await?;

    let mut report = LoadReport {
        loaded: Vec::new(),
        already_present: Vec::new(),
        retagged: Vec::new(),
        kept: Vec::new(),
        layers_skipped: 0,
        bytes_streamed: 0,
    };
    let mut to_load = Vec::new();
    // Names to restore on images the engine already holds; applied only after the load stream
    // went through, so that a corrupt bundle changes nothing in the engine.
    let mut retag: Vec<(String, String)> = Vec::new();
    for image in manifest
        .images
        .iter()
        .filter(|i| wanted.contains(&i.id.to_string()))
    {
        let label = image
            .refs
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.to_string());
        match engine.image(&image.id.to_string()).await? {
            Some(_) => {
                for reference in &image.refs {
                    match name_state(&engine, reference, &image.id.to_string()).await? {
                        NameState::Absent => retag.push((image.id.to_string(), reference.clone())),
                        NameState::Elsewhere => report.kept.push(reference.clone()),
                        NameState::Here => {}
                    }
                }
                report.already_present.push(label);
            }
            None => {
                let mut repo_tags = Vec::new();
                for reference in image.refs.iter().filter(|r| !r.contains('@')) {
                    match name_state(&engine, reference, &image.id.to_string()).await? {
                        NameState::Elsewhere => report.kept.push(reference.clone()),
                        _ => repo_tags.push(reference.clone()),
                    }
                }
                to_load.push(LoadImage {
                    config: image.config.digest.clone(),
                    layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
                    repo_tags,
                });
                report.loaded.push(label);
            }
        }
    }
    for name in &report.already_present {
        reporter.step(&format!("{name}: already present"));
    }
    for name in &report.kept {
        reporter.warn(&format!(
            "{name} names another image in the engine (a rebuild?); left as it is"
        ));
    }

    if !to_load.is_empty() {
        let facts = engine.facts(&[]).await?;
        let omit = layers_the_engine_has(&engine, &facts, &to_load).await?;
        check_delta_base(&manifest, &to_load, &omit)?;
        let mut unique: BTreeSet<Digest> = omit.iter().cloned().collect();
        let total: u64 = manifest
            .images
            .iter()
            .filter(|i| to_load.iter().any(|l| l.config == i.config.digest))
            .flat_map(|i| std::iter::once(&i.config).chain(i.layers.iter()))
            .filter(|b| unique.insert(b.digest.clone()))
            .map(|b| b.size)
            .sum();
        report.layers_skipped = omit.len();
        check_space(&engine, &facts, total)?;
        let task = reporter.start(&format!("load {} images", to_load.len()), Some(total));
        let (writer, body) = channel_body();
        let path: PathBuf = args.bundle.clone();
        let images = to_load.clone();
        let progress = Arc::new(AtomicU64::new(0));
        let sink = progress.clone();
        let stream_task = tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut writer = writer;
            let result = BundleReader::open(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bundle| {
                    write_load_stream(&bundle, &images, &omit, &mut writer, &mut |n| {
                        sink.store(n, Ordering::Relaxed)
                    })
                });
            match result {
                Ok(()) => Ok(sink.load(Ordering::Relaxed)),
                Err(e) => {
                    writer.fail(&e);
                    Err(e)
                }
            }
        });
        let loaded = tokio::select! {
            loaded = engine.load(body) => loaded,
            never = report_every_200ms(reporter, task, &progress) => match never {},
        };
        let streamed = stream_task
            .await
            .context("the load stream writer stopped")?;
        match (streamed, loaded) {
            (Err(e), _) => {
                if is_corrupt_data(&e) {
                    return Err(anyhow::Error::new(CheckFailed(format!(
                        "{e:#}\nNothing was loaded: the bundle is corrupt. Copy it again and run `offpack verify`."
                    ))));
                }
                return Err(e.context("streaming the bundle to the engine"));
            }
            (Ok(_), Err(e)) => return Err(e),
            (Ok(bytes), Ok(_)) => report.bytes_streamed = bytes,
        }
        reporter.finish(
            task,
            &format!("{} streamed", human_bytes(report.bytes_streamed)),
        );
        for image in manifest
            .images
            .iter()
            .filter(|i| to_load.iter().any(|l| l.config == i.config.digest))
        {
            if engine.image(&image.id.to_string()).await?.is_none() {
                bail!(
                    "the engine did not keep image {} after loading it",
                    image.id
                );
            }
            for reference in &image.refs {
                if name_state(&engine, reference, &image.id.to_string()).await? == NameState::Absent
                {
                    engine.tag(&image.id.to_string(), reference).await?;
                }
            }
        }
    }
    for (id, reference) in retag {
        engine.tag(&id, &reference).await?;
        report.retagged.push(reference);
    }
    output.result(&report, || {
        format!(
            "loaded {} images ({} streamed), {} already present{}",
            report.loaded.len(),
            human_bytes(report.bytes_streamed),
            report.already_present.len(),
            if report.retagged.is_empty() {
                String::new()
            } else {
                format!(", retagged {}", report.retagged.join(", "))
            }
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Layers of `images` the engine already holds on the same chain. Only the classic store skips
/// them on load; with the containerd image store every layer is sent.
async fn layers_the_engine_has(
    engine: &Engine,
    facts: &EngineFacts,
    images: &[LoadImage],
) -> Result<HashSet<Digest>> {
    if facts.containerd_image_store {
        return Ok(HashSet::new());
    }
    let have = engine.images().await?;
    let present = chain::present_chains(have.iter().map(|i| i.layers.as_slice()));
    let wanted: Vec<Vec<String>> = images
        .iter()
        .map(|i| i.layers.iter().map(|d| d.to_string()).collect())
        .collect();
    let wanted: Vec<&[String]> = wanted.iter().map(Vec::as_slice).collect();
    let omit = chain::layers_to_omit(&wanted, &present);
    Ok(omit.iter().filter_map(|d| d.parse().ok()).collect())
}

#[derive(Debug, PartialEq, Eq)]
enum NameState {
    /// The engine has no image under the name.
    Absent,
    /// The name points to the image in question.
    Here,
    /// The name points to another image.
    Elsewhere,
}

async fn name_state(engine: &Engine, reference: &str, id: &str) -> Result<NameState> {
    Ok(match engine.image(reference).await? {
        None => NameState::Absent,
        Some(current) if current.id == id => NameState::Here,
        Some(_) => NameState::Elsewhere,
    })
}

/// A delta bundle leaves out layers the far side was said to hold: each one an image to load
/// needs must be in the engine on the same chain, or the load would fail half way.
fn check_delta_base(
    manifest: &offpack_bundle::Manifest,
    images: &[LoadImage],
    have: &HashSet<Digest>,
) -> Result<()> {
    let Some(delta) = &manifest.delta else {
        return Ok(());
    };
    let mut missing = Vec::new();
    for image in images {
        for layer in image
            .layers
            .iter()
            .filter(|l| delta.absent_layers.contains(l) && !have.contains(l))
        {
            let name = image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| image.config.to_string());
            missing.push(format!("layer {layer} of {name}"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "this is a delta bundle made against {}, and this engine lacks what it relies on: {}\n\
         Load the full bundle it was made after first, or ask for a full bundle.",
        delta.base,
        missing.join(", ")
    )
}

/// Refuses a load the engine's disk cannot hold, when the engine runs on this machine.
fn check_space(engine: &Engine, facts: &EngineFacts, stream_bytes: u64) -> Result<()> {
    if !engine.endpoint().starts_with("unix://") {
        return Ok(());
    }
    let root = &facts.docker_root_dir;
    let Some(free) = crate::load::free_space(std::path::Path::new(&root)) else {
        return Ok(());
    };
    let needed = crate::load::space_needed(stream_bytes);
    if free < needed {
        bail!(
            "the engine's data root {root} has {} free, but loading these images needs about {} \
             (the engine unpacks the whole stream before importing it); free some space or load \
             fewer services with --service",
            human_bytes(free),
            human_bytes(needed)
        );
    }
    Ok(())
}

/// A blob whose bytes do not match its digest surfaces as an `InvalidData` I/O error.
fn is_corrupt_data(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
            || cause
                .downcast_ref::<offpack_bundle::BundleError>()
                .is_some_and(|b| b.is_corruption())
    })
}
