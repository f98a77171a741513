//! Applies a [`LoadDecision`](super::LoadDecision) to the engine: the load stream with a
//! progress line per image, the engine's import, the names offpack gives the loaded images (the
//! stream names none: decision 0074), and the retags that wait for the whole bundle's `.sha256`
//! (decision 0066).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use offpack_bundle::{BundleError, BundleReader, Digest, SidecarCheck};

use super::{check_delta_base, layers_the_engine_has, names_missing_after_load, stream_bytes};
use crate::engine::{Engine, EngineFacts, channel_body};
use crate::error::CheckFailed;
use crate::load::{LoadImage, write_load_stream};
use crate::ops::copy::ImageCopy;
use crate::reporter::{ImageProgress, Reporter, human_bytes};

/// What the load stream carried.
#[derive(Debug, Default)]
pub struct Streamed {
    pub bytes: u64,
    /// Layers not sent because the engine already holds them (same layer on the same base).
    pub layers_skipped: usize,
}

/// Streams `to_load` (with `load_blobs`, their progress lines) from `bundle` into the engine and
/// gives each loaded image its names. Refuses, before anything is sent, a
/// delta bundle whose base the engine lacks and a load the engine's disk cannot hold; the
/// stream's end waits for `sidecar`.
pub async fn load_images(
    engine: &Engine,
    reporter: &dyn Reporter,
    bundle: &Arc<BundleReader>,
    sidecar: &Arc<SidecarGate>,
    to_load: &[LoadImage],
    load_blobs: &[(String, Vec<(Digest, u64)>)],
) -> Result<Streamed> {
    if to_load.is_empty() {
        return Ok(Streamed::default());
    }
    let manifest = bundle.manifest();
    let facts = engine.facts(&[]).await?;
    let omit = layers_the_engine_has(engine, facts.containerd_image_store, to_load).await?;
    check_delta_base(manifest, to_load, &omit)?;
    let total = stream_bytes(manifest, to_load, &omit);
    let layers_skipped = omit.len();
    check_space(engine, &facts, total)?;
    let ledger = load_ledger(load_blobs, &omit);
    let label = format!("load {} images", to_load.len());
    let mut progress = ImageCopy::start(reporter, &label, Some(total), ledger, "streamed");
    let (writer, body) = channel_body();
    let bundle_for_stream = bundle.clone();
    let sidecar_for_stream = sidecar.clone();
    let images = to_load.to_vec();
    let mut stream_task = progress.spawn(move |sink| {
        let mut writer = writer;
        // Bytes of the blobs sent before the current one, and the current one's.
        let mut before = 0u64;
        let mut current: Option<(Digest, u64)> = None;
        let mut on_blob = |digest: &Digest, passed: u64, size: u64| {
            match &mut current {
                Some((d, n)) if d == digest => *n = passed,
                _ => {
                    before += current.as_ref().map_or(0, |(_, n)| *n);
                    current = Some((digest.clone(), passed));
                }
            }
            sink.set_bytes(before + passed);
            if passed == size {
                sink.blob_done(digest, size);
            } else {
                sink.blob_bytes(digest, passed);
            }
        };
        // The stream's end waits for the checksum: the engine imports nothing from a
        // stream that never ends, so a bundle the .sha256 refuses loads nothing.
        let result = write_load_stream(
            &bundle_for_stream,
            &images,
            &omit,
            &mut writer,
            &mut on_blob,
            &mut || sidecar_for_stream.wait(),
        );
        match result {
            Ok(()) => Ok(sink.bytes()),
            Err(e) => {
                writer.fail(&e);
                Err(e)
            }
        }
    });
    // The engine reads the whole stream before it imports anything (docs/engine-support.md):
    // once the last byte went, the image lines end and a spinner shows the engine at work.
    let load = engine.load(body);
    tokio::pin!(load);
    let mut streamed: Option<Result<u64>> = None;
    let mut importing = None;
    let loaded = loop {
        enum Event {
            Loaded(Result<Vec<String>>),
            Streamed(Result<u64>),
        }
        let event = tokio::select! {
            loaded = &mut load => Event::Loaded(loaded),
            done = &mut stream_task, if streamed.is_none() => Event::Streamed(
                done.context("the load stream writer stopped").and_then(|r| r),
            ),
            never = progress.report() => match never {},
        };
        match event {
            Event::Loaded(loaded) => break loaded,
            Event::Streamed(done) => {
                if let Ok(bytes) = &done {
                    progress.finish(*bytes);
                    importing = Some((
                        reporter.start_wait(&format!("engine importing {} images", to_load.len())),
                        Instant::now(),
                    ));
                }
                streamed = Some(done);
            }
        }
    };
    let streamed = match streamed {
        Some(done) => done,
        None => {
            // The engine answered before the stream's writer returned (or failed early).
            let done = stream_task
                .await
                .context("the load stream writer stopped")
                .and_then(|r| r);
            if let Ok(bytes) = &done {
                progress.finish(*bytes);
            }
            done
        }
    };
    let bytes = match (streamed, loaded) {
        (Err(e), _) if is_corrupt_data(&e) => return Err(corrupt_bundle(e, "loaded")),
        (Err(e), _) => return Err(e.context("streaming the bundle to the engine")),
        (Ok(_), Err(e)) => return Err(explain_engine_load_error(e)),
        (Ok(bytes), Ok(_)) => bytes,
    };
    if let Some((importing, since)) = importing {
        reporter.finish(
            importing,
            &format!("imported in {:.1}s", since.elapsed().as_secs_f64()),
        );
    }
    for (image, loaded) in manifest.images.iter().filter_map(|i| {
        to_load
            .iter()
            .find(|l| l.config == i.config.digest)
            .map(|l| (i, l))
    }) {
        for reference in names_missing_after_load(engine, image, &loaded.names).await? {
            engine.tag(&image.id.to_string(), &reference).await?;
        }
    }
    Ok(Streamed {
        bytes,
        layers_skipped,
    })
}

/// Gives images the engine already held the names `retag` lists, once the whole bundle matched
/// its `.sha256`; returns the names given.
pub async fn restore_names(
    engine: &Engine,
    sidecar: &SidecarGate,
    retag: Vec<(Digest, String)>,
) -> Result<Vec<String>> {
    // Names go on images the engine held only once the whole bundle matched its checksum.
    wait_for_sidecar(sidecar, "loaded or retagged")?;
    let mut retagged = Vec::new();
    for (id, reference) in retag {
        engine.tag(&id.to_string(), &reference).await?;
        retagged.push(reference);
    }
    Ok(retagged)
}

/// Waits for the bundle's `.sha256` check: a mismatch is a failed check, and nothing was `undone`.
pub fn wait_for_sidecar(sidecar: &SidecarGate, undone: &str) -> Result<()> {
    sidecar.wait().map_err(|e| {
        if is_corrupt_data(&e) {
            corrupt_bundle(e, undone)
        } else {
            e
        }
    })
}

/// A failed check of the bundle's data, as the user sees it: nothing was `undone`, and what to do.
pub(crate) fn corrupt_bundle(err: anyhow::Error, undone: &str) -> anyhow::Error {
    anyhow::Error::new(CheckFailed(format!(
        "{err:#}\nNothing was {undone}: the bundle is corrupt. Copy it again and run `offpack verify`."
    )))
}

/// The load's progress per image: the blobs of it the stream carries (not those the engine
/// holds), whose sizes the bundle knows.
pub(super) fn load_ledger(
    images: &[(String, Vec<(Digest, u64)>)],
    omit: &HashSet<Digest>,
) -> ImageProgress {
    let mut ledger = ImageProgress::new();
    for (label, blobs) in images {
        let mut sent: Vec<(Digest, u64)> = Vec::new();
        for (digest, size) in blobs {
            if !omit.contains(digest) && !sent.iter().any(|(d, _)| d == digest) {
                sent.push((digest.clone(), *size));
            }
        }
        let total = sent.iter().map(|(_, size)| size).sum();
        ledger.add_image(label, sent.into_iter().map(|(d, _)| d), total);
    }
    ledger
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

/// The `.sha256` check of the whole bundle, on a thread of its own from the moment the bundle's
/// metadata passed: hashing the file costs one sequential read, done while the engine is asked
/// what it holds and the blobs stream (`zstd -dc | docker load` would not be faster).
pub struct SidecarGate {
    job: Mutex<Option<std::thread::JoinHandle<Result<PathBuf, BundleError>>>>,
    /// The sidecar, once it matched.
    matched: Mutex<Option<PathBuf>>,
    /// Why the check failed, so that a later wait fails too instead of passing.
    failed: Mutex<Option<String>>,
}

impl SidecarGate {
    pub fn start(check: Option<SidecarCheck>) -> Arc<Self> {
        let job = check.map(|check| std::thread::spawn(move || check.run()));
        Arc::new(SidecarGate {
            job: Mutex::new(job),
            matched: Mutex::new(None),
            failed: Mutex::new(None),
        })
    }

    /// Waits for the check (the first call; later ones return its outcome at once): an error
    /// when the bundle differs from its `.sha256`.
    pub fn wait(&self) -> Result<()> {
        let job = self.job.lock().ok().and_then(|mut job| job.take());
        let Some(job) = job else {
            return match self.failed.lock().ok().and_then(|f| f.clone()) {
                Some(why) => Err(anyhow::Error::new(CheckFailed(why))),
                None => Ok(()),
            };
        };
        let outcome = match job.join() {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!(
                "the thread checking the bundle's .sha256 file stopped"
            )),
        };
        let sidecar = outcome.inspect_err(|e| {
            if let Ok(mut failed) = self.failed.lock() {
                *failed = Some(format!("{e:#}"));
            }
        })?;
        if let Ok(mut matched) = self.matched.lock() {
            *matched = Some(sidecar);
        }
        Ok(())
    }

    /// The sidecar the bundle matched, after [`SidecarGate::wait`].
    pub fn matched(&self) -> Option<String> {
        let matched = self.matched.lock().ok()?;
        matched.as_ref().map(|p| p.display().to_string())
    }
}

/// The engine's own words when an image or layer offpack relied on went away during the load
/// (removed by someone else: `docker rmi`, `docker image prune`): a layer not sent because the
/// engine held it, or a base it imports onto, is then missing from the engine's temporary copy of
/// the stream ("open /var/lib/docker/tmp/docker-import-…/…: no such file or directory") or from its
/// store. Said plainly, with what to do; other errors are left as the engine put them.
fn explain_engine_load_error(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let lost = text.contains("no such file or directory")
        && (text.contains("docker-import-") || text.contains("/tmp/") || text.contains("layerdb"))
        || text.contains("layer does not exist")
        || text.contains("unknown parent");
    if !lost {
        return err;
    }
    err.context(
        "the engine lost an image or layer this load relied on while loading (was an image removed \
         meanwhile, e.g. by `docker rmi` or `docker image prune`?); the bundle is fine: run the same \
         `offpack load` again to finish it",
    )
}

/// A blob whose bytes do not match its digest surfaces as an `InvalidData` I/O error.
pub(crate) fn is_corrupt_data(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
            || cause
                .downcast_ref::<offpack_bundle::BundleError>()
                .is_some_and(|b| b.is_corruption())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_checksum_check_fails_every_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.offpack");
        let writer =
            offpack_bundle::BundleWriter::create(&path, offpack_bundle::WriteOptions::default())
                .unwrap();
        writer
            .finish(offpack_bundle::Manifest::new("0", "p"))
            .unwrap();
        std::fs::write(
            dir.path().join("s.offpack.sha256"),
            format!("{}  s.offpack\n", "0".repeat(64)),
        )
        .unwrap();
        let checked = BundleReader::open_checked(&path, None).unwrap();
        let gate = SidecarGate::start(checked.sidecar);
        assert!(is_corrupt_data(&gate.wait().unwrap_err()));
        // The stream's end and the retags each wait: the second must not pass.
        let again = gate.wait().unwrap_err();
        assert!(again.downcast_ref::<CheckFailed>().is_some(), "{again:#}");
        assert_eq!(gate.matched(), None);
    }

    #[test]
    fn an_image_lost_mid_load_is_explained() {
        // What Engine 20.10 answers when a layer offpack left out of the stream (the engine held
        // it) was removed before the import.
        let lost = anyhow::anyhow!(
            "the engine refused the image load: open /var/lib/docker/tmp/docker-import-2236017/blobs/sha256/4b1f/layer.tar: no such file or directory"
        );
        let text = format!("{:#}", explain_engine_load_error(lost));
        assert!(
            text.starts_with("the engine lost an image or layer this load relied on")
                && text.contains("run the same `offpack load` again")
                && text.contains("docker-import-2236017"),
            "{text}"
        );
        let other = anyhow::anyhow!("the engine refused the image load: no space left on device");
        assert_eq!(
            format!("{:#}", explain_engine_load_error(other)),
            "the engine refused the image load: no space left on device"
        );
    }

    #[test]
    fn load_progress_counts_what_the_stream_carries() {
        let d = |s: &str| Digest::of_bytes(s.as_bytes());
        let images = vec![
            ("base:1".to_string(), vec![(d("c1"), 2), (d("base"), 90)]),
            (
                "app:1".to_string(),
                vec![
                    (d("c2"), 3),
                    (d("base"), 90),
                    (d("app"), 10),
                    (d("app"), 10),
                ],
            ),
        ];
        let ledger = load_ledger(&images, &HashSet::new());
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.status(0).total, 92);
        assert_eq!(
            ledger.status(1).total,
            103,
            "a layer listed twice counts once"
        );

        // The engine holds the base layer: it is not sent, so no image waits for it.
        let mut ledger = load_ledger(&images, &[d("base")].into_iter().collect());
        assert_eq!(ledger.status(0).total, 2);
        assert_eq!(ledger.status(1).total, 13);
        ledger.blob_done(&d("c1"), 2);
        assert!(ledger.status(0).complete);
    }
}
