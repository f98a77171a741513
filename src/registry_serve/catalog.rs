//! What the registry server offers, worked out once at startup from the bundle's images: the
//! repositories and their tags, the manifest documents, and which blobs each repository may
//! hand out. Pure: the manifest bytes come from the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use offpack_bundle::{Digest, Image, escape_controls};
use offpack_ref::ImageRef;
use serde_json::{Value, json};

/// The OCI image index media type (a tag that stands for several platforms).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image manifest media type (what the bundle stores, spec 5.2).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker Hub, whose images a Docker `registry-mirrors` entry asks for by path alone.
const DOCKER_HUB: &str = "docker.io";

/// A manifest document as served: its media type and exact bytes (the digest is theirs).
#[derive(Debug, Clone)]
pub struct Document {
    pub media_type: String,
    pub bytes: Bytes,
}

/// One repository: its tags and what may be fetched through it.
#[derive(Debug, Default)]
pub struct Repository {
    /// Tag → manifest (or index) digest.
    pub tags: BTreeMap<String, Digest>,
    /// The manifests (and indexes) fetchable by digest under this name.
    pub manifests: BTreeSet<Digest>,
    /// The configs and layers fetchable under this name.
    pub blobs: BTreeSet<Digest>,
    /// The fully qualified name the repository was first made for (`docker.io/library/python`),
    /// to tell when two registries' images meet under one path.
    origin: String,
}

/// Everything the server answers with, apart from the blob bytes.
#[derive(Debug, Default)]
pub struct Catalog {
    pub repositories: BTreeMap<String, Repository>,
    pub documents: HashMap<Digest, Document>,
    /// Size of every blob served (configs and layers).
    pub blob_sizes: HashMap<Digest, u64>,
    /// Images or references that are not served, and why (for a warning at startup).
    pub skipped: Vec<String>,
    /// How many images are served.
    pub images: usize,
}

/// A manifest a tag names: its digest, its size, its image.
type Tagged<'a> = (Digest, u64, &'a Image);

impl Catalog {
    /// Builds the catalog. `present` tells whether the bundle holds a blob (a delta bundle leaves
    /// out the layers the far side already has: such an image cannot be pulled from it and is
    /// skipped). `manifest_of` reads an image's OCI manifest (checked against its digest).
    pub fn build(
        images: &[Image],
        present: &dyn Fn(&Digest) -> bool,
        manifest_of: &mut dyn FnMut(&Image) -> Result<Option<Vec<u8>>>,
    ) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        // (repository, tag) → manifests, in bundle order: several platforms make an index.
        let mut tagged: BTreeMap<(String, String), Vec<Tagged>> = BTreeMap::new();
        for image in images {
            let label = image_label(image);
            let missing = std::iter::once(&image.config)
                .chain(&image.layers)
                .find(|blob| !present(&blob.digest));
            if let Some(missing) = missing {
                catalog.skipped.push(format!(
                    "image {label}: blob {} is not in the bundle (a delta bundle); not served",
                    missing.digest
                ));
                continue;
            }
            let Some(bytes) = manifest_of(image)? else {
                catalog
                    .skipped
                    .push(format!("image {label}: no OCI manifest; not served"));
                continue;
            };
            check_manifest(image, &bytes).map_err(|e| {
                anyhow!("the OCI manifest of image {label} does not match offpack.json: {e}")
            })?;
            let digest = Digest::of_bytes(&bytes);
            let size = bytes.len() as u64;
            catalog.documents.insert(
                digest.clone(),
                Document {
                    media_type: OCI_MANIFEST.to_owned(),
                    bytes: Bytes::from(bytes),
                },
            );
            for blob in std::iter::once(&image.config).chain(&image.layers) {
                catalog.blob_sizes.insert(blob.digest.clone(), blob.size);
            }
            catalog.images += 1;
            for reference in &image.refs {
                let parsed = match ImageRef::parse(reference) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        catalog
                            .skipped
                            .push(format!("image {label}: {e}; not served"));
                        continue;
                    }
                };
                for name in served_names(&parsed) {
                    let repository =
                        catalog
                            .repositories
                            .entry(name.clone())
                            .or_insert_with(|| Repository {
                                origin: parsed.name(),
                                ..Repository::default()
                            });
                    if repository.origin != parsed.name() {
                        catalog.skipped.push(format!(
                            "{}: served as {} already holds {}; not served under that name",
                            escape_controls(reference),
                            escape_controls(&name),
                            escape_controls(&repository.origin)
                        ));
                        continue;
                    }
                    repository.manifests.insert(digest.clone());
                    repository.blobs.insert(image.config.digest.clone());
                    repository
                        .blobs
                        .extend(image.layers.iter().map(|l| l.digest.clone()));
                    if let Some(tag) = &parsed.tag {
                        let entry = tagged.entry((name, tag.clone())).or_default();
                        if !entry.iter().any(|(d, _, _)| *d == digest) {
                            entry.push((digest.clone(), size, image));
                        }
                    }
                }
            }
        }
        for ((name, tag), manifests) in tagged {
            let digest = match manifests.as_slice() {
                [(digest, _, _)] => digest.clone(),
                several => {
                    let index = index_document(several);
                    let digest = Digest::of_bytes(&index);
                    catalog.documents.insert(
                        digest.clone(),
                        Document {
                            media_type: OCI_INDEX.to_owned(),
                            bytes: Bytes::from(index),
                        },
                    );
                    digest
                }
            };
            if let Some(repository) = catalog.repositories.get_mut(&name) {
                repository.manifests.insert(digest.clone());
                repository.tags.insert(tag, digest);
            }
        }
        Ok(catalog)
    }

    /// The repository a request names. `ns` is containerd's `?ns=` (the registry a mirror is
    /// asked on behalf of): its own repository `ns/name` comes first.
    pub fn repository(&self, name: &str, ns: Option<&str>) -> Option<&Repository> {
        ns.filter(|ns| *ns != DOCKER_HUB)
            .and_then(|ns| self.repositories.get(&format!("{ns}/{name}")))
            .or_else(|| self.repositories.get(name))
    }

    /// The manifest `reference` (a tag or a digest) of `repository`, with its digest.
    pub fn manifest<'a>(
        &'a self,
        repository: &Repository,
        reference: &str,
    ) -> Option<(Digest, &'a Document)> {
        let digest = match reference.parse::<Digest>() {
            Ok(digest) => repository.manifests.get(&digest)?.clone(),
            Err(_) => repository.tags.get(reference)?.clone(),
        };
        let document = self.documents.get(&digest)?;
        Some((digest, document))
    }

    /// The size of blob `digest` when `repository` may hand it out: a config or layer of its
    /// images, or one of its manifests.
    pub fn blob(&self, repository: &Repository, digest: &Digest) -> Option<u64> {
        if repository.blobs.contains(digest) {
            return self.blob_sizes.get(digest).copied();
        }
        if repository.manifests.contains(digest) {
            return self.documents.get(digest).map(|d| d.bytes.len() as u64);
        }
        None
    }
}

/// The names an image is served under: its repository path, which is what a registry mirror
/// is asked for (`library/python` for `docker.io/library/python`); and, for another registry
/// than Docker Hub, also `DOMAIN/PATH` when the domain is a valid path component (no port),
/// so images of two registries with the same path can both be reached.
fn served_names(reference: &ImageRef) -> Vec<String> {
    let mut names = vec![reference.path.clone()];
    if reference.domain != DOCKER_HUB
        && !reference.domain.is_empty()
        && !reference.domain.contains(':')
    {
        names.push(reference.name());
    }
    names
}

fn image_label(image: &Image) -> String {
    match image.refs.first() {
        Some(reference) => escape_controls(reference).into_owned(),
        None => image.id.to_string(),
    }
}

/// The manifest names the image's config and layers, as offpack.json says.
fn check_manifest(image: &Image, bytes: &[u8]) -> Result<(), String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let digest_of = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_owned);
    let config = digest_of(&doc["config"]);
    if config != Some(image.config.digest.to_string()) {
        return Err(format!(
            "config {config:?}, expected {}",
            image.config.digest
        ));
    }
    let layers: Vec<Option<String>> = doc["layers"]
        .as_array()
        .map(|layers| layers.iter().map(digest_of).collect())
        .unwrap_or_default();
    let expected: Vec<Option<String>> = image
        .layers
        .iter()
        .map(|l| Some(l.digest.to_string()))
        .collect();
    if layers != expected {
        return Err("its layers differ".into());
    }
    Ok(())
}

/// An OCI index over one tag's images of several platforms. Made from the bundle's data alone,
/// in bundle order, so its digest is the same at every start.
fn index_document(manifests: &[Tagged]) -> Vec<u8> {
    let entries: Vec<Value> = manifests
        .iter()
        .map(|(digest, size, image)| {
            let mut parts = image.platform.splitn(3, '/');
            let mut platform = json!({
                "os": parts.next().unwrap_or_default(),
                "architecture": parts.next().unwrap_or_default(),
            });
            if let Some(variant) = parts.next() {
                platform["variant"] = json!(variant);
            }
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest.to_string(),
                "size": size,
                "platform": platform,
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

/// One page of a sorted list (`_catalog`, `tags/list`): the items after `last`, at most `n`;
/// and whether more follow.
pub fn page<'a>(
    items: impl Iterator<Item = &'a String>,
    n: Option<usize>,
    last: Option<&str>,
) -> (Vec<&'a String>, bool) {
    let mut after = items.filter(|item| last.is_none_or(|last| item.as_str() > last));
    match n {
        None => (after.collect(), false),
        Some(n) => {
            let page: Vec<&String> = after.by_ref().take(n).collect();
            let more = after.next().is_some();
            (page, more)
        }
    }
}

#[cfg(test)]
mod tests {
    use offpack_bundle::BlobRef;

    use super::*;

    fn blob(data: &str) -> BlobRef {
        BlobRef {
            digest: Digest::of_bytes(data.as_bytes()),
            size: data.len() as u64,
        }
    }

    fn image(refs: &[&str], platform: &str, layer: &str) -> Image {
        let config = blob(&format!("config {platform} {layer}"));
        Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: config.digest.clone(),
            platform: platform.into(),
            config,
            layers: vec![blob(layer)],
            oci_manifest: None,
            registry: None,
        }
    }

    fn manifest(image: &Image) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"digest": image.config.digest.to_string(), "size": image.config.size},
            "layers": image.layers.iter().map(|l| json!({"digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn build(images: &[Image]) -> Catalog {
        Catalog::build(images, &|_| true, &mut |image| Ok(Some(manifest(image)))).unwrap()
    }

    #[test]
    fn names_resolve_as_pulled_and_as_mirrored() {
        let python = image(&["python:3.11-slim"], "linux/amd64", "py");
        let mirrored = image(&["mirror.example/team/app:1"], "linux/amd64", "app");
        let catalog = build(&[python.clone(), mirrored]);
        let names: Vec<&String> = catalog.repositories.keys().collect();
        assert_eq!(
            names,
            ["library/python", "mirror.example/team/app", "team/app"]
        );
        let repository = catalog.repository("library/python", None).unwrap();
        let (digest, document) = catalog.manifest(repository, "3.11-slim").unwrap();
        assert_eq!(document.bytes, manifest(&python));
        assert_eq!(document.media_type, OCI_MANIFEST);
        assert!(catalog.manifest(repository, &digest.to_string()).is_some());
        assert!(catalog.manifest(repository, "latest").is_none());
        assert_eq!(
            catalog.blob(repository, &python.layers[0].digest),
            Some(python.layers[0].size)
        );
        // A blob of another repository is not handed out under this name.
        let other = blob("app");
        assert_eq!(catalog.blob(repository, &other.digest), None);
        // containerd's mirror request names the registry in `ns`.
        assert!(
            catalog
                .repository("team/app", Some("mirror.example"))
                .is_some()
        );
        assert!(catalog.repository("nothing", None).is_none());
    }

    #[test]
    fn several_platforms_of_one_tag_make_a_stable_index() {
        let amd = image(&["app:1"], "linux/amd64", "a");
        let arm = image(&["app:1"], "linux/arm64/v8", "b");
        let first = build(&[amd.clone(), arm.clone()]);
        let repository = first.repository("library/app", None).unwrap();
        let (digest, document) = first.manifest(repository, "1").unwrap();
        assert_eq!(document.media_type, OCI_INDEX);
        let index: Value = serde_json::from_slice(&document.bytes).unwrap();
        assert_eq!(index["manifests"][1]["platform"]["variant"], "v8");
        let again = build(&[amd, arm]);
        let repository = again.repository("library/app", None).unwrap();
        assert_eq!(again.manifest(repository, "1").unwrap().0, digest);
    }

    #[test]
    fn images_a_delta_bundle_lacks_are_skipped_and_mismatches_refused() {
        let python = image(&["python:3"], "linux/amd64", "py");
        let catalog = Catalog::build(
            std::slice::from_ref(&python),
            &|d| *d != python.layers[0].digest,
            &mut |image| Ok(Some(manifest(image))),
        )
        .unwrap();
        assert!(catalog.repositories.is_empty());
        assert!(
            catalog.skipped[0].contains("delta bundle"),
            "{:?}",
            catalog.skipped
        );

        let other = image(&["python:3"], "linux/amd64", "other");
        let err =
            Catalog::build(&[python], &|_| true, &mut |_| Ok(Some(manifest(&other)))).unwrap_err();
        assert!(err.to_string().contains("image python:3"), "{err}");
    }

    #[test]
    fn pages_follow_last_and_n() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let (all, more) = page(items.iter(), None, None);
        assert_eq!((all.len(), more), (4, false));
        let (first, more) = page(items.iter(), Some(2), None);
        assert_eq!((first, more), (vec![&items[0], &items[1]], true));
        let (rest, more) = page(items.iter(), Some(2), Some("b"));
        assert_eq!((rest, more), (vec![&items[2], &items[3]], false));
    }
}
