//! What the registry server offers, worked out once at startup from the bundle's images: the
//! repositories and their tags, the manifest documents, and which blobs each repository may
//! hand out. Pure: the manifest bytes come from the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use offpack_bundle::{BlobRef, Digest, Image, escape_controls};
use offpack_dockerfile::PIN_TAG_PREFIX;
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
    /// skipped). `read_document` reads a manifest or index blob (checked against its digest).
    pub fn build(
        images: &[Image],
        present: &dyn Fn(&Digest) -> bool,
        read_document: &mut dyn FnMut(&BlobRef) -> Result<Vec<u8>>,
    ) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        // (repository, tag) → manifests, in bundle order: several platforms make an index.
        let mut tagged: BTreeMap<(String, String), Vec<Tagged>> = BTreeMap::new();
        // (repository, tag) → the registry's own index the tag named (registry form).
        let mut carried_tags: BTreeMap<(String, String), Digest> = BTreeMap::new();
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
            let Some(manifest) = &image.oci_manifest else {
                catalog
                    .skipped
                    .push(format!("image {label}: no OCI manifest; not served"));
                continue;
            };
            let bytes = read_document(manifest)?;
            check_manifest(image, &bytes).map_err(|e| {
                anyhow!("the OCI manifest of image {label} does not match offpack.json: {e}")
            })?;
            let digest = Digest::of_bytes(&bytes);
            let size = bytes.len() as u64;
            // A registry-form manifest is the registry's own (Docker schema 2 or OCI): served
            // with its media type, or its digest would not be the one pinned upstream.
            catalog.documents.insert(
                digest.clone(),
                Document {
                    media_type: image.manifest_media_type().to_owned(),
                    bytes: Bytes::from(bytes),
                },
            );
            let index = carried_index(image, present, read_document, &mut catalog)?;
            for blob in std::iter::once(&image.config).chain(&image.layers) {
                catalog.blob_sizes.insert(blob.digest.clone(), blob.size);
            }
            catalog.images += 1;
            // Repository digests name repositories too: an index's other platforms carry no
            // refs, only `name@sha256:…`.
            let repo_digests = image.registry.iter().flat_map(|r| &r.repo_digests);
            for reference in image.refs.iter().chain(repo_digests) {
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
                    repository.manifests.extend(index.clone());
                    repository.blobs.insert(image.config.digest.clone());
                    repository
                        .blobs
                        .extend(image.layers.iter().map(|l| l.digest.clone()));
                    let Some(tag) = &parsed.tag else {
                        continue;
                    };
                    // The bundle does not say which tag named the index and which the manifest
                    // (decision 0092): every tag is the index, but the pin tag of the manifest.
                    let pins_manifest = *tag == format!("{PIN_TAG_PREFIX}{}", digest.hex());
                    match &index {
                        Some(index) if !pins_manifest => {
                            carried_tags.insert((name, tag.clone()), index.clone());
                        }
                        _ => {
                            let entry = tagged.entry((name, tag.clone())).or_default();
                            if !entry.iter().any(|(d, _, _)| *d == digest) {
                                entry.push((digest.clone(), size, image));
                            }
                        }
                    }
                }
            }
        }
        for ((name, tag), manifests) in tagged {
            if carried_tags.contains_key(&(name.clone(), tag.clone())) {
                catalog.skipped.push(format!(
                    "{name}:{tag}: the tag is the registry's index; {} other image(s) under it are served by digest only",
                    manifests.len()
                ));
                continue;
            }
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
        for ((name, tag), digest) in carried_tags {
            if let Some(repository) = catalog.repositories.get_mut(&name) {
                repository.tags.insert(tag, digest);
            }
        }
        Ok(catalog)
    }

    /// The repository a request names. `ns` is containerd's `?ns=` (the registry a mirror is
    /// asked on behalf of): its own repository `ns/name` comes first, and the plain `name`
    /// answers only for that registry's image, so a node mirroring docker.io through this
    /// server never gets `mirror.example/team/app` for `docker.io/team/app`.
    pub fn repository(&self, name: &str, ns: Option<&str>) -> Option<&Repository> {
        let Some(ns) = ns else {
            return self.repositories.get(name);
        };
        let qualified = format!("{ns}/{name}");
        if ns != DOCKER_HUB
            && let Some(repository) = self.repositories.get(&qualified)
        {
            return Some(repository);
        }
        self.repositories
            .get(name)
            .filter(|repository| repository.origin == qualified)
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

/// The registry's index a registry-form image was chosen from, added to the documents as it is
/// (it may list platforms the bundle does not carry: those are MANIFEST_UNKNOWN).
fn carried_index(
    image: &Image,
    present: &dyn Fn(&Digest) -> bool,
    read_document: &mut dyn FnMut(&BlobRef) -> Result<Vec<u8>>,
    catalog: &mut Catalog,
) -> Result<Option<Digest>> {
    let Some(index) = image.registry.as_ref().and_then(|r| r.index.as_ref()) else {
        return Ok(None);
    };
    if !catalog.documents.contains_key(&index.digest) {
        if !present(&index.digest) {
            catalog.skipped.push(format!(
                "image {}: its registry index {} is not in the bundle; served by manifest only",
                image_label(image),
                index.digest
            ));
            return Ok(None);
        }
        let bytes = read_document(&index.blob())?;
        catalog.documents.insert(
            index.digest.clone(),
            Document {
                media_type: index.media_type.clone(),
                bytes: Bytes::from(bytes),
            },
        );
    }
    Ok(Some(index.digest.clone()))
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
                "mediaType": image.manifest_media_type(),
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
    use offpack_bundle::{MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, RegistryImage, RegistryIndex};

    use super::*;

    fn blob(data: &str) -> BlobRef {
        BlobRef {
            digest: Digest::of_bytes(data.as_bytes()),
            size: data.len() as u64,
        }
    }

    fn image(refs: &[&str], platform: &str, layer: &str) -> Image {
        let config = blob(&format!("config {platform} {layer}"));
        let mut image = Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: config.digest.clone(),
            platform: platform.into(),
            config,
            layers: vec![blob(layer)],
            oci_manifest: None,
            registry: None,
        };
        let bytes = manifest(&image);
        image.oci_manifest = Some(BlobRef {
            digest: Digest::of_bytes(&bytes),
            size: bytes.len() as u64,
        });
        image
    }

    fn manifest(image: &Image) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": image.manifest_media_type(),
            "config": {"digest": image.config.digest.to_string(), "size": image.config.size},
            "layers": image.layers.iter().map(|l| json!({"digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    /// Builds the catalog of `images`, whose manifests (and `extra` documents) the bundle holds.
    fn build_with(images: &[Image], extra: &[Vec<u8>]) -> Catalog {
        let documents: HashMap<Digest, Vec<u8>> = images
            .iter()
            .map(manifest)
            .chain(extra.iter().cloned())
            .map(|bytes| (Digest::of_bytes(&bytes), bytes))
            .collect();
        Catalog::build(images, &|_| true, &mut |blob| {
            Ok(documents[&blob.digest].clone())
        })
        .unwrap()
    }

    fn build(images: &[Image]) -> Catalog {
        build_with(images, &[])
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
        assert!(
            catalog
                .repository("library/python", Some("docker.io"))
                .is_some()
        );
        // Asked on behalf of another registry, a path is not another registry's image.
        assert!(catalog.repository("team/app", Some("docker.io")).is_none());
        assert!(
            catalog
                .repository("library/python", Some("ghcr.io"))
                .is_none()
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
            &mut |_| Ok(manifest(&python)),
        )
        .unwrap();
        assert!(catalog.repositories.is_empty());
        assert!(
            catalog.skipped[0].contains("delta bundle"),
            "{:?}",
            catalog.skipped
        );

        let other = image(&["python:3"], "linux/amd64", "other");
        let err = Catalog::build(&[python], &|_| true, &mut |_| Ok(manifest(&other))).unwrap_err();
        assert!(err.to_string().contains("image python:3"), "{err}");
    }

    /// A registry-form image of the Docker schema 2, chosen from the registry's index.
    fn registry_form(refs: &[&str], platform: &str, layer: &str, index: &[u8]) -> Image {
        let mut image = image(refs, platform, layer);
        image.registry = Some(RegistryImage {
            media_type: MEDIA_DOCKER_MANIFEST.into(),
            repo_digests: Vec::new(),
            layers: Vec::new(),
            index: Some(RegistryIndex {
                digest: Digest::of_bytes(index),
                size: index.len() as u64,
                media_type: MEDIA_DOCKER_LIST.into(),
            }),
        });
        let bytes = manifest(&image);
        let digest = Digest::of_bytes(&bytes);
        image.oci_manifest = Some(BlobRef {
            digest: digest.clone(),
            size: bytes.len() as u64,
        });
        let registry = image.registry.as_mut().unwrap();
        registry.repo_digests = vec![
            format!("r.example/team/app@{digest}"),
            format!("r.example/team/app@{}", Digest::of_bytes(index)),
        ];
        image
    }

    #[test]
    fn a_registry_form_image_is_served_with_its_own_media_type_and_index() {
        // The index also lists a platform the bundle does not carry (`absent`).
        let index = br#"{"schemaVersion":2,"manifests":["amd64","arm64","absent"]}"#.to_vec();
        let index_digest = Digest::of_bytes(&index);
        let amd = registry_form(&["r.example/team/app:1"], "linux/amd64", "a", &index);
        let arm = registry_form(&[], "linux/arm64", "b", &index);
        let amd_digest = amd.oci_manifest.as_ref().unwrap().digest.clone();
        let pin = format!("r.example/team/app:{PIN_TAG_PREFIX}{}", amd_digest.hex());
        let mut pinned = amd.clone();
        pinned.refs.push(pin);
        let catalog = build_with(&[pinned, arm.clone()], std::slice::from_ref(&index));
        let repository = catalog.repository("team/app", None).unwrap();

        let (digest, document) = catalog.manifest(repository, "1").unwrap();
        assert_eq!(
            (digest, document.bytes.to_vec()),
            (index_digest.clone(), index.clone())
        );
        assert_eq!(document.media_type, MEDIA_DOCKER_LIST);
        let by_pin = format!("{PIN_TAG_PREFIX}{}", amd_digest.hex());
        assert_eq!(catalog.manifest(repository, &by_pin).unwrap().0, amd_digest);
        // The other platform has no refs: its repository digest serves it.
        let arm_digest = arm.oci_manifest.as_ref().unwrap().digest.to_string();
        let (_, document) = catalog.manifest(repository, &arm_digest).unwrap();
        assert_eq!(document.media_type, MEDIA_DOCKER_MANIFEST);
        assert_eq!(
            catalog.blob(repository, &arm.layers[0].digest),
            Some(arm.layers[0].size)
        );
        let absent = Digest::of_bytes(b"absent").to_string();
        assert!(catalog.manifest(repository, &absent).is_none());
        assert_eq!(catalog.images, 2);
        assert!(catalog.skipped.is_empty(), "{:?}", catalog.skipped);

        // An engine image under the index's tag: the index keeps the tag, and a warning says so.
        let engine = image(&["r.example/team/app:1"], "linux/riscv64", "c");
        let catalog = build_with(&[amd, engine.clone()], std::slice::from_ref(&index));
        let repository = catalog.repository("team/app", None).unwrap();
        assert_eq!(catalog.manifest(repository, "1").unwrap().0, index_digest);
        let engine_digest = engine.oci_manifest.as_ref().unwrap().digest.to_string();
        assert!(catalog.manifest(repository, &engine_digest).is_some());
        assert!(
            catalog.skipped[0].contains("team/app:1: the tag is the registry's index"),
            "{:?}",
            catalog.skipped
        );
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
