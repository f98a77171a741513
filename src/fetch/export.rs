//! Copies an engine image export (`docker save`) into a bundle as it streams.
//!
//! Engines before 25 write the legacy layout (`<id>.json` configs, `<v1-id>/layer.tar`, and a
//! `manifest.json` at the end); engines from 25 on write an OCI layout whose files are named
//! `blobs/sha256/<hex>`, plus the same `manifest.json`. Which file is a layer is known only from
//! `manifest.json`, which comes last, so every large file is streamed into the bundle as a blob
//! when it passes (named by the digest computed on the way) and small files are kept in memory
//! until `manifest.json` says what they are. No image is held in memory or spooled to disk.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::{BundleWriter, Digest};
use serde::Deserialize;

/// Files up to this size are held in memory until `manifest.json` says what they are.
const SMALL_FILE: u64 = 1 << 20;
/// Upper bound of what small files may hold in memory together; past it they are streamed too.
const SMALL_FILES_BUDGET: u64 = 64 << 20;

/// One image found in the export, with its blobs now in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedImage {
    pub config: (Digest, u64),
    pub layers: Vec<(Digest, u64)>,
    pub repo_tags: Vec<String>,
}

impl ExportedImage {
    /// The image as the bundle's manifest records it, under `refs`.
    pub fn to_bundle_image(&self, refs: Vec<String>, platform: String) -> offpack_bundle::Image {
        let blob = |(digest, size): &(Digest, u64)| offpack_bundle::BlobRef {
            digest: digest.clone(),
            size: *size,
        };
        offpack_bundle::Image {
            refs,
            id: self.config.0.clone(),
            platform,
            config: blob(&self.config),
            layers: self.layers.iter().map(blob).collect(),
            oci_manifest: None,
            registry: None,
        }
    }
}

/// What a file of the export became.
enum Stored {
    Memory(Vec<u8>, Digest),
    Blob(Digest, u64),
}

#[derive(Debug, Deserialize)]
struct LoadManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Reads an export stream to its end, writing every image's config and layers into `writer`
/// (each blob once), and returns the images in the order of the export's `manifest.json`.
/// `on_file` is told the digest and size of each file of the export once it has been read (a
/// layer once it is in the bundle, a small file once it is in memory), for per-image progress.
/// Layers in `leave_out` (a delta bundle's: the far side holds them) are read and hashed but not
/// written.
pub fn copy_export(
    export: impl Read,
    writer: &mut BundleWriter,
    leave_out: &HashSet<Digest>,
    on_file: &mut dyn FnMut(&Digest, u64),
) -> Result<Vec<ExportedImage>> {
    let mut archive = tar::Archive::new(export);
    let mut files: HashMap<String, Stored> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut in_memory = 0u64;
    for entry in archive
        .entries()
        .context("reading the engine's image export")?
    {
        let mut entry = entry.context("reading the engine's image export")?;
        let path = normalize(
            &entry
                .path()
                .context("an export entry has an unreadable name")?
                .to_string_lossy(),
        );
        let size = entry
            .header()
            .size()
            .context("an export entry has an unreadable size")?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| anyhow!("export entry {path} is a link without a target"))?;
                let target = target.to_string_lossy().into_owned();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    resolve_relative(&path, &target)
                } else {
                    normalize(&target)
                };
                links.insert(path, resolved);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => bail!("the engine's export holds {path} of unexpected type {other:?}"),
        }
        let known = digest_from_oci_path(&path);
        let stored = if size <= SMALL_FILE && in_memory + size <= SMALL_FILES_BUDGET {
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {path} from the export"))?;
            in_memory += bytes.len() as u64;
            let digest = Digest::of_bytes(&bytes);
            Stored::Memory(bytes, digest)
        } else if let Some(digest) = known {
            if leave_out.contains(&digest) {
                std::io::copy(&mut entry, &mut std::io::sink())
                    .with_context(|| format!("reading {path} from the export"))?;
            } else {
                writer
                    .add_blob_with_digest(&digest, size, &mut entry)
                    .with_context(|| format!("copying {path} of the export into the bundle"))?;
            }
            Stored::Blob(digest, size)
        } else {
            let (digest, _stored) = writer
                .add_blob_unless(size, &mut entry, &|d| leave_out.contains(d))
                .with_context(|| format!("copying {path} of the export into the bundle"))?;
            Stored::Blob(digest, size)
        };
        match &stored {
            Stored::Memory(bytes, digest) => on_file(digest, bytes.len() as u64),
            Stored::Blob(digest, size) => on_file(digest, *size),
        }
        files.insert(path, stored);
    }

    let manifest = match files.get("manifest.json") {
        Some(Stored::Memory(bytes, _)) => bytes.clone(),
        _ => bail!("the engine's export has no manifest.json; is this a `docker save` stream?"),
    };
    let entries: Vec<LoadManifestEntry> = serde_json::from_slice(&manifest)
        .context("the export's manifest.json is not what `docker save` writes")?;
    let mut images = Vec::with_capacity(entries.len());
    for entry in entries {
        let config = into_bundle(&entry.config, &mut files, &links, writer, &HashSet::new())?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for layer in &entry.layers {
            layers.push(into_bundle(layer, &mut files, &links, writer, leave_out)?);
        }
        images.push(ExportedImage {
            config,
            layers,
            repo_tags: entry.repo_tags.unwrap_or_default(),
        });
    }
    Ok(images)
}

/// Makes sure the export file at `path` is a blob of the bundle and returns its digest.
fn into_bundle(
    path: &str,
    files: &mut HashMap<String, Stored>,
    links: &HashMap<String, String>,
    writer: &mut BundleWriter,
    leave_out: &HashSet<Digest>,
) -> Result<(Digest, u64)> {
    let mut path = normalize(path);
    let mut hops = 0;
    while let Some(target) = links.get(&path) {
        hops += 1;
        if hops > 16 {
            bail!("the export's links around {path} form a loop");
        }
        path = target.clone();
    }
    let stored = files.get_mut(&path).ok_or_else(|| {
        anyhow!("the export's manifest.json names {path}, which the export does not hold")
    })?;
    match stored {
        Stored::Blob(digest, size) => Ok((digest.clone(), *size)),
        Stored::Memory(bytes, digest) => {
            let size = bytes.len() as u64;
            let digest = digest.clone();
            if !writer.contains(&digest) && !leave_out.contains(&digest) {
                writer
                    .add_blob_with_digest(&digest, size, bytes.as_slice())
                    .with_context(|| format!("copying {path} of the export into the bundle"))?;
            }
            *stored = Stored::Blob(digest.clone(), size);
            Ok((digest, size))
        }
    }
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

fn digest_from_oci_path(path: &str) -> Option<Digest> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    Digest::from_hex(hex).ok()
}

/// Resolves a symlink target relative to the link's directory (`a/layer.tar` → `../b/layer.tar`).
fn resolve_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn resolves_legacy_layer_links() {
        assert_eq!(
            resolve_relative("aaa/layer.tar", "../bbb/layer.tar"),
            "bbb/layer.tar"
        );
        assert_eq!(resolve_relative("layer.tar", "x/layer.tar"), "x/layer.tar");
    }

    /// A legacy `docker save` stream of two images sharing a base layer; the second image's copy
    /// of the shared layer is a symlink, as the engine writes it.
    pub(crate) fn legacy_export(big_layer: &[u8]) -> Vec<u8> {
        let base: &[u8] = big_layer;
        let app: &[u8] = b"app layer bytes";
        let (base_id, app_id) = (Digest::of_bytes(base), Digest::of_bytes(app));
        let config_a = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{base_id}"]}}}}"#
        );
        let config_b = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{base_id}","{app_id}"]}}}}"#
        );
        let (config_a, config_b) = (config_a.as_bytes(), config_b.as_bytes());
        let ca = Digest::of_bytes(config_a).hex().to_string();
        let cb = Digest::of_bytes(config_b).hex().to_string();
        let mut tar = tar::Builder::new(Vec::new());
        fn add(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, path, bytes).unwrap();
        }
        add(&mut tar, &format!("{ca}.json"), config_a);
        add(&mut tar, &format!("{cb}.json"), config_b);
        add(&mut tar, "v1base/layer.tar", base);
        add(&mut tar, "v1app/layer.tar", app);
        let manifest = format!(
            r#"[{{"Config":"{ca}.json","RepoTags":["base:1"],"Layers":["v1base/layer.tar"]}},
               {{"Config":"{cb}.json","RepoTags":["app:1"],"Layers":["v1other/layer.tar","v1app/layer.tar"]}}]"#
        );
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "v1other/layer.tar", "../v1base/layer.tar")
            .unwrap();
        add(&mut tar, "manifest.json", manifest.as_bytes());
        add(&mut tar, "repositories", b"{}");
        tar.into_inner().unwrap()
    }

    #[test]
    fn legacy_export_becomes_deduplicated_blobs() {
        let big = vec![7u8; (SMALL_FILE as usize) + 4096];
        let export = legacy_export(&big);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.offpack");
        let mut writer = BundleWriter::create(
            &target,
            offpack_bundle::WriteOptions {
                level: 1,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let mut seen = Vec::new();
        let images = copy_export(
            export.as_slice(),
            &mut writer,
            &HashSet::new(),
            &mut |d, n| seen.push((d.clone(), n)),
        )
        .unwrap();
        assert!(
            seen.contains(&(Digest::of_bytes(&big), big.len() as u64)),
            "the big layer is reported once it has passed"
        );
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].repo_tags, vec!["base:1"]);
        assert_eq!(images[1].layers.len(), 2);
        assert_eq!(
            images[1].layers[0], images[0].layers[0],
            "the shared layer is one blob"
        );
        assert_eq!(
            images[0].layers[0].0,
            Digest::of_bytes(&big),
            "a layer's blob is named by its SHA-256"
        );
        assert_eq!(images[0].layers[0].1, big.len() as u64);
    }

    #[test]
    fn layers_left_out_are_listed_but_not_stored() {
        let big = vec![5u8; (SMALL_FILE as usize) + 10];
        let export = legacy_export(&big);
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BundleWriter::create(
            &dir.path().join("d.offpack"),
            offpack_bundle::WriteOptions {
                level: 1,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let base = Digest::of_bytes(&big);
        let leave_out: HashSet<Digest> = [base.clone()].into_iter().collect();
        let images =
            copy_export(export.as_slice(), &mut writer, &leave_out, &mut |_, _| {}).unwrap();
        assert_eq!(
            images[0].layers[0].0, base,
            "the image still lists the layer"
        );
        assert!(!writer.contains(&base), "but the bundle does not carry it");
        assert!(
            writer.contains(&images[1].layers[1].0),
            "other layers are carried"
        );
    }

    #[test]
    fn export_without_manifest_is_an_error() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        tar.append_data(&mut h, "x", &b"x"[..]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BundleWriter::create(
            &dir.path().join("t.offpack"),
            offpack_bundle::WriteOptions {
                level: 1,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let err = copy_export(
            tar.into_inner().unwrap().as_slice(),
            &mut writer,
            &HashSet::new(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }

    #[test]
    fn knows_oci_blob_paths() {
        let hex = "a".repeat(64);
        assert!(digest_from_oci_path(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_from_oci_path("blobs/sha256/nothex").is_none());
        assert!(digest_from_oci_path("abc/layer.tar").is_none());
    }
}
