//! `bundle --from-registry`: images taken from their registries, not from the engine, in their
//! registry form (format 1.4): the registry's manifest, index and compressed layer blobs go into
//! the bundle byte for byte, so that repository digests, and references pinned to them, stay
//! valid behind the gap (decision 0096).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::{
    BlobRef, BundleWriter, Compression, DiffHasher, Digest, Image, MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX, RegistryImage, RegistryIndex, RegistryLayer,
};
use offpack_dockerfile::platform_parts;
use offpack_ref::ImageRef;
use offpack_registry::{Client, ClientOptions};
use serde_json::Value;

/// How to reach the registries (`--registry-ca-file`, `--insecure-registry`).
#[derive(Debug, Clone, Default)]
pub struct RegistryAccess {
    /// A PEM file of CA certificates trusted for every registry contacted.
    pub ca_file: Option<PathBuf>,
    /// `HOST[:PORT]`s spoken to over plain HTTP.
    pub insecure: BTreeSet<String>,
}

/// One image the plan names, to take from its registry.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The reference the registry is asked for (`python:3.11-slim`, `x@sha256:…`).
    pub reference: String,
    /// Every name the bundle records for it (the pin tag for a digest-pinned reference).
    pub names: Vec<String>,
}

/// Layers already in the bundle, by blob digest, with what they decompress to.
pub type Known = std::collections::HashMap<Digest, RegistryLayer>;

/// Configs, manifests and indexes larger than this are refused: a verifier keeps them in memory
/// (spec 8).
const MAX_JSON: u64 = 1 << 20;

/// Refuses a manifest or index a bundle cannot hold.
fn check_json_size(what: &str, len: usize) -> Result<()> {
    if len as u64 > MAX_JSON {
        bail!("{what} is {len} bytes, more than a bundle holds (1 MiB)");
    }
    Ok(())
}

/// Fetches `wanted` for each of `platforms` (`os/arch[/variant]`) into `writer`: one bundle image
/// per platform, the first platform's carrying the names (a Docker engine holds one platform per
/// name; the others are kept for registries and containerd, by digest).
pub fn fetch_image(
    writer: &mut BundleWriter,
    access: &RegistryAccess,
    wanted: &Wanted,
    platforms: &[String],
    known: &mut Known,
    cancel: &AtomicBool,
) -> Result<Vec<Image>> {
    let reference = ImageRef::parse(&wanted.reference)?;
    let host = api_host(&reference.domain);
    let client = Client::new(
        &host,
        &ClientOptions {
            insecure: access.insecure.contains(&reference.domain)
                || access.insecure.contains(&host),
            ca_file: access.ca_file.clone(),
            tls_hint: Some(
                "a registry with its own CA needs --registry-ca-file; \
                 one on plain HTTP needs --insecure-registry HOST",
            ),
            ..ClientOptions::default()
        },
    )?;
    let repository = reference.path.as_str();
    let asked = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let top = client.get_manifest(repository, &asked)?;
    check_json_size(
        &format!("{}@{}", reference.name(), top.digest),
        top.bytes.len(),
    )?;
    let name = reference.name();
    let repo = Repository {
        client: &client,
        path: repository,
        name: &name,
    };
    let mut images = Vec::new();
    if [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST].contains(&top.media_type.as_str()) {
        let index: Value = serde_json::from_slice(&top.bytes)
            .with_context(|| format!("{name}@{}: the index is not JSON", top.digest))?;
        let index_digest: Digest = top.digest.parse()?;
        writer.add_blob_bytes(&top.bytes)?;
        for (i, platform) in platforms.iter().enumerate() {
            let digest = pick_platform(&index, platform).ok_or_else(|| {
                anyhow!(
                    "{}: the registry's index {} has no manifest for platform {platform} (it has {})",
                    wanted.reference,
                    top.digest,
                    index_platforms(&index).join(", ")
                )
            })?;
            let manifest = client.get_manifest(repository, &digest)?;
            let mut image = fetch_manifest(writer, &repo, &manifest, platform, known, cancel)?;
            let registry = image.registry.as_mut().expect("set by fetch_manifest");
            registry.index = Some(RegistryIndex {
                digest: index_digest.clone(),
                size: top.bytes.len() as u64,
                media_type: top.media_type.clone(),
            });
            registry.repo_digests.push(format!("{name}@{index_digest}"));
            if i == 0 {
                image.refs = wanted.names.clone();
            }
            images.push(image);
        }
    } else {
        let platform = platforms.first().map_or("linux/amd64", String::as_str);
        let mut image = fetch_manifest(writer, &repo, &top, platform, known, cancel)?;
        if !platform_matches(&image.platform, platform) {
            bail!(
                "{}: the registry serves one image, for {}, not an index; it is not for {platform}",
                wanted.reference,
                image.platform
            );
        }
        image.refs = wanted.names.clone();
        images.push(image);
    }
    Ok(images)
}

/// Where an image's blobs are fetched from: a registry, a repository in it, and the repository's
/// fully qualified name for messages and repository digests.
struct Repository<'a> {
    client: &'a Client,
    path: &'a str,
    name: &'a str,
}

/// One image manifest and everything it names, streamed into the bundle; its layers are checked
/// against the config's diff IDs as they pass.
fn fetch_manifest(
    writer: &mut BundleWriter,
    repo: &Repository<'_>,
    manifest: &offpack_registry::PulledManifest,
    platform: &str,
    known: &mut Known,
    cancel: &AtomicBool,
) -> Result<Image> {
    let Repository {
        client,
        path: repository,
        name,
    } = *repo;
    let shown = format!("{name}@{}", manifest.digest);
    check_json_size(&shown, manifest.bytes.len())?;
    let doc: Value = serde_json::from_slice(&manifest.bytes)
        .with_context(|| format!("{shown}: the manifest is not JSON"))?;
    let descriptor = |v: &Value, what: &str| -> Result<(Digest, u64, String)> {
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{shown}: {what} has no digest"))?
            .parse::<Digest>()
            .with_context(|| format!("{shown}: {what}"))?;
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("{shown}: {what} has no size"))?;
        let media_type = v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok((digest, size, media_type))
    };
    let (config_digest, config_size, _) = descriptor(&doc["config"], "the config")?;
    if config_size > MAX_JSON {
        bail!("{shown}: its config is {config_size} bytes, more than a bundle holds (1 MiB)");
    }
    let mut config = Vec::new();
    client
        .get_blob(repository, &config_digest.to_string())?
        .take(config_size + 1)
        .read_to_end(&mut config)
        .with_context(|| format!("{shown}: fetching its config {config_digest}"))?;
    if Digest::of_bytes(&config) != config_digest {
        bail!("{shown}: its config did not arrive as {config_digest}");
    }
    writer.add_blob_bytes(&config)?;
    let config_json: Value = serde_json::from_slice(&config)
        .with_context(|| format!("{shown}: its config is not JSON"))?;
    let diff_ids: Vec<&str> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if layers.len() != diff_ids.len() {
        bail!(
            "{shown}: the manifest lists {} layers, its config {} diff IDs",
            layers.len(),
            diff_ids.len()
        );
    }
    let mut blobs = Vec::new();
    let mut registry_layers = Vec::new();
    for (i, (layer, diff_id)) in layers.iter().zip(&diff_ids).enumerate() {
        let what = format!("layer {}", i + 1);
        let (digest, size, media_type) = descriptor(layer, &what)?;
        let compression = Compression::of_media_type(&media_type).ok_or_else(|| {
            anyhow!(
                "{shown}: {what} has media type `{media_type}`, which offpack cannot load (foreign or encrypted layers are not carried)"
            )
        })?;
        if let Some(known) = known.get(&digest) {
            // Carried already (the same layer in another platform's image, or another image).
            if known.diff_id.to_string() != *diff_id {
                bail!(
                    "{shown}: {what} ({digest}) decompresses to {}, but the image's config has diff ID {diff_id}",
                    known.diff_id
                );
            }
            blobs.push(BlobRef { digest, size });
            registry_layers.push(known.clone());
            continue;
        }
        let mut hasher = DiffHasher::new(compression)?;
        let body = client.get_blob(repository, &digest.to_string())?;
        let tee = Tee {
            inner: body,
            hasher: &mut hasher,
            cancel,
        };
        writer
            .add_blob_with_digest(&digest, size, tee)
            .with_context(|| format!("{shown}: fetching {what} ({digest})"))?;
        let (actual, diff_size) = match compression {
            Compression::None => (digest.clone(), size),
            _ => hasher.finish().map_err(|why| {
                anyhow!("{shown}: {what} ({digest}) does not decompress as {media_type}: {why}")
            })?,
        };
        if actual.to_string() != *diff_id {
            bail!(
                "{shown}: {what} ({digest}) decompresses to {actual}, but the image's config has diff ID {diff_id}"
            );
        }
        let layer = RegistryLayer {
            media_type,
            diff_id: actual,
            diff_size,
        };
        known.insert(digest.clone(), layer.clone());
        blobs.push(BlobRef { digest, size });
        registry_layers.push(layer);
    }
    let manifest_digest: Digest = manifest.digest.parse()?;
    writer.add_blob_bytes(&manifest.bytes)?;
    // The config says what the image is; the platform asked for fills what it leaves out.
    let mut asked = platform.split('/');
    let os = config_json["os"]
        .as_str()
        .or(asked.next())
        .unwrap_or("linux");
    let arch = config_json["architecture"]
        .as_str()
        .or(asked.next())
        .unwrap_or("amd64");
    let image_platform = match config_json["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    };
    Ok(Image {
        refs: Vec::new(),
        id: config_digest.clone(),
        platform: image_platform,
        config: BlobRef {
            digest: config_digest,
            size: config.len() as u64,
        },
        layers: blobs,
        oci_manifest: Some(BlobRef {
            digest: manifest_digest.clone(),
            size: manifest.bytes.len() as u64,
        }),
        registry: Some(RegistryImage {
            media_type: manifest.media_type.clone(),
            repo_digests: vec![format!("{name}@{manifest_digest}")],
            layers: registry_layers,
            index: None,
        }),
    })
}

/// The host the distribution API of `domain` answers on (Docker Hub's is not `docker.io`).
fn api_host(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".into(),
        other => other.into(),
    }
}

/// The digest of the index's manifest for `platform` (`os/arch[/variant]`; a missing variant
/// matches any).
fn pick_platform(index: &Value, platform: &str) -> Option<String> {
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        let listed = format!(
            "{}/{}/{}",
            p["os"].as_str()?,
            p["architecture"].as_str()?,
            p["variant"].as_str().unwrap_or_default()
        );
        platform_matches(&listed, platform)
            .then(|| m["digest"].as_str().map(str::to_string))
            .flatten()
    })
}

/// An image's `os/arch[/variant]` serves the asked one: the same os and architecture once
/// normalized as containerd does (a variant left out is v8 on arm64 and v7 on arm), and the same
/// variant when one is asked.
fn platform_matches(image: &str, asked: &str) -> bool {
    let (os, arch, variant) = platform_parts(image);
    let (want_os, want_arch, want_variant) = platform_parts(asked);
    let variant_asked = asked.split('/').nth(2).is_some_and(|v| !v.is_empty());
    os == want_os && arch == want_arch && (!variant_asked || variant == want_variant)
}

fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let p = &m["platform"];
            Some(format!(
                "{}/{}",
                p["os"].as_str()?,
                p["architecture"].as_str()?
            ))
        })
        .collect()
}

/// Passes a blob through to the bundle writer while its decompressed digest is computed; fails
/// once `cancel` is set (a signal), so that the writer drops the blob and the run ends cleanly.
struct Tee<'a, R> {
    inner: R,
    hasher: &'a mut DiffHasher,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("interrupted"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_platforms_manifest_from_an_index() {
        let index = json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]});
        assert_eq!(pick_platform(&index, "linux/amd64").unwrap(), "sha256:a");
        assert_eq!(pick_platform(&index, "linux/arm64").unwrap(), "sha256:b");
        assert_eq!(pick_platform(&index, "linux/arm64/v8").unwrap(), "sha256:b");
        assert_eq!(pick_platform(&index, "linux/arm64/v7"), None);
        let no_variant = json!({"manifests": [
            {"digest": "sha256:c", "platform": {"os": "linux", "architecture": "arm64"}},
        ]});
        assert_eq!(
            pick_platform(&no_variant, "linux/arm64/v8").unwrap(),
            "sha256:c"
        );
        assert_eq!(pick_platform(&index, "windows/amd64"), None);
        assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
        let no_platform = json!({"manifests": [{"digest": "sha256:d"}]});
        assert_eq!(pick_platform(&no_platform, "linux/amd64"), None);
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }

    /// A single-platform image: its config's `os/arch[/variant]` against the asked platform.
    #[test]
    fn an_image_config_serves_the_asked_platform() {
        assert!(platform_matches("linux/amd64", "linux/amd64"));
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(platform_matches("linux/arm", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm/v6", "linux/arm/v7"));
        assert!(platform_matches("linux/arm/v6", "linux/arm"));
        assert!(!platform_matches("linux/amd64", "linux/arm64"));
        assert!(!platform_matches("windows/amd64", "linux/amd64"));
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
