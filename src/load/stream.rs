use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context, Result};
use offpack_bundle::{BundleReader, Digest};
use serde::Serialize;

/// One image to put into the load stream.
#[derive(Debug, Clone)]
pub struct LoadImage {
    pub config: Digest,
    /// The layer blobs sent: uncompressed tars, or for an image in its registry form (format 1.4)
    /// the registry's gzip blobs, which `docker load` decompresses itself and checks against the
    /// diff IDs (measured on Docker 20.10.24), and zstd blobs, which it does not read: those are
    /// in `unzstd`.
    pub layers: Vec<Digest>,
    /// zstd layer blobs sent decompressed, with their decompressed sizes (the tar header comes
    /// before the data).
    pub unzstd: std::collections::HashMap<Digest, u64>,
    /// The config's diff IDs, one per layer: what the engine's layer chains are made of.
    pub diff_ids: Vec<Digest>,
    /// `repo:tag` names offpack gives the image once the engine has loaded it. The stream itself
    /// names no image: a load whose client was killed goes on in the engine, and would name its
    /// images after a later load had named others.
    pub names: Vec<String>,
}

#[derive(Serialize)]
struct LoadManifestEntry<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: &'a [&'a str],
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Writes a `docker load` tar of `images` to `out`: their configs and layers from the bundle, then
/// `manifest.json`. Layers in `omit` (those whose chain the engine already holds) are named in
/// `manifest.json` but not sent: the engine's classic store never opens them. A blob whose bytes
/// do not match its digest stops the stream with an error that names the blob, so the engine never
/// completes a load of corrupt data.
///
/// `on_blob(digest, passed, size)` is told, about every MiB and at its end, how many bytes of the
/// blob being sent have passed. `before_end` runs before `manifest.json`, without which the engine
/// imports nothing: an error from it (a check that ran alongside) stops the stream there.
pub fn write_load_stream(
    bundle: &BundleReader,
    images: &[LoadImage],
    omit: &HashSet<Digest>,
    out: impl Write,
    on_blob: &mut dyn FnMut(&Digest, u64, u64),
    before_end: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<&Digest> = omit.iter().collect();
    for image in images {
        for digest in std::iter::once(&image.config).chain(image.layers.iter()) {
            if !written.insert(digest) {
                continue;
            }
            let stored = bundle
                .index()
                .entries
                .iter()
                .find(|e| e.digest.as_ref() == Some(digest))
                .map(|e| e.size)
                .with_context(|| format!("the bundle's index has no blob {digest}"))?;
            let unzstd = image.unzstd.get(digest).copied();
            let size = unzstd.unwrap_or(stored);
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            on_blob(digest, 0, size);
            let blob = bundle.blob(digest)?;
            let inner: Box<dyn std::io::Read> = match unzstd {
                Some(_) => offpack_bundle::zstd_layer_reader(blob)
                    .with_context(|| format!("decompressing layer {digest}"))?,
                None => Box::new(blob),
            };
            let reader = Counting {
                inner,
                passed: 0,
                reported: 0,
                report: &mut |passed| on_blob(digest, passed, size),
            };
            tar.append_data(&mut header, blob_path(digest), reader)
                .with_context(|| format!("streaming blob {digest} to the engine"))?;
            on_blob(digest, size, size);
        }
    }
    let manifest: Vec<LoadManifestEntry> = images
        .iter()
        .map(|image| LoadManifestEntry {
            config: blob_path(&image.config),
            repo_tags: &[],
            layers: image.layers.iter().map(blob_path).collect(),
        })
        .collect();
    let manifest = serde_json::to_vec(&manifest)?;
    before_end()?;
    let mut header = tar::Header::new_ustar();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "manifest.json", manifest.as_slice())?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Reports how many bytes passed through it, every [`Counting::EVERY`] bytes.
struct Counting<'a, R> {
    inner: R,
    passed: u64,
    reported: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R> Counting<'_, R> {
    const EVERY: u64 = 1 << 20;
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.passed += n as u64;
        if self.passed - self.reported >= Self::EVERY {
            self.reported = self.passed;
            (self.report)(self.passed);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::export::copy_export;
    use offpack_bundle::{BundleWriter, Manifest, WriteOptions};
    use std::io::Read;

    #[test]
    fn load_stream_holds_each_blob_once_and_a_manifest() {
        let big = vec![3u8; 2 << 20];
        let export = crate::fetch::export::tests::legacy_export(&big);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.offpack");
        let mut writer = BundleWriter::create(
            &target,
            WriteOptions {
                level: 1,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let images = copy_export(
            export.as_slice(),
            &mut writer,
            &HashSet::new(),
            &mut |_, _| {},
        )
        .unwrap();
        let mut manifest = Manifest::new("test", "t");
        for image in &images {
            manifest
                .images
                .push(image.to_bundle_image(image.repo_tags.clone(), "linux/amd64".into()));
        }
        writer.finish(manifest).unwrap();
        offpack_bundle::verify(&target, &mut |_| {}).unwrap();

        let bundle = BundleReader::open(&target).unwrap();
        let load: Vec<LoadImage> = bundle
            .manifest()
            .images
            .iter()
            .map(|i| LoadImage {
                config: i.config.digest.clone(),
                layers: i.layers.iter().map(|l| l.digest.clone()).collect(),
                diff_ids: i.diff_ids(),
                unzstd: Default::default(),
                names: i.refs.clone(),
            })
            .collect();
        let mut out = Vec::new();
        let mut reports: Vec<(Digest, u64, u64)> = Vec::new();
        write_load_stream(
            &bundle,
            &load,
            &HashSet::new(),
            &mut out,
            &mut |d, n, size| reports.push((d.clone(), n, size)),
            &mut || Ok(()),
        )
        .unwrap();
        let big_digest = Digest::of_bytes(&big);
        let big_reports: Vec<u64> = reports
            .iter()
            .filter(|(d, _, _)| d == &big_digest)
            .map(|(_, n, _)| *n)
            .collect();
        assert!(
            big_reports.len() >= 3 && big_reports.windows(2).all(|w| w[0] <= w[1]),
            "the 2 MiB layer is reported as it streams: {big_reports:?}"
        );
        assert_eq!(big_reports.last(), Some(&(big.len() as u64)));
        assert!(
            reports.iter().all(|(_, n, size)| n <= size),
            "never more than the blob: {reports:?}"
        );
        let mut archive = tar::Archive::new(out.as_slice());
        let mut names = Vec::new();
        let mut docker_manifest = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "manifest.json" {
                entry.read_to_string(&mut docker_manifest).unwrap();
            }
            names.push(name);
        }
        // 2 configs + 2 unique layers + manifest.json
        assert_eq!(names.len(), 5, "{names:?}");
        let parsed: serde_json::Value = serde_json::from_str(&docker_manifest).unwrap();
        assert_eq!(
            parsed[1]["RepoTags"],
            serde_json::json!([]),
            "the engine names nothing; offpack does, after the load"
        );
        assert_eq!(parsed[1]["Layers"][0], parsed[0]["Layers"][0]);

        // With the shared base layer present in the engine, it is named but not sent.
        let base = load[0].layers[0].clone();
        let mut out = Vec::new();
        write_load_stream(
            &bundle,
            &load,
            &[base.clone()].into_iter().collect(),
            &mut out,
            &mut |_, _, _| {},
            &mut || Ok(()),
        )
        .unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(!names.contains(&format!("blobs/sha256/{}", base.hex())));
    }
}
