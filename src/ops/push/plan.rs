//! Where each image of a bundle goes under the target registry, and the manifests pushed there:
//! pure decisions, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use offpack_bundle::{Digest, Image, MEDIA_OCI_INDEX, RegistryIndex, escape_controls};
use offpack_dockerfile::PIN_TAG_PREFIX;
use offpack_ref::ImageRef;
use offpack_registry::{MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, Target};
use serde::Serialize;
use serde_json::Value;

/// One name of an image and where it is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefPlan {
    /// The name as the bundle records it.
    pub original: String,
    /// The original's registry (`docker.io`, `ghcr.io`).
    #[serde(skip)]
    pub upstream: String,
    /// The repository under the target (no host).
    #[serde(skip)]
    pub repository: String,
    /// The tags pushed in that repository: the original's tag, and for a digest-pinned name the
    /// pin tag `offpack-pin-sha256-<old hex>`.
    #[serde(skip)]
    pub tags: Vec<String>,
    /// The manifest digest the original name pins (`name@sha256:…`), when it pins one.
    pub old_digest: Option<String>,
}

/// Every image's names under the target, checked so that no two images (and no two original
/// repositories) land on the same name.
pub fn plan_refs(target: &Target, images: &[Image]) -> Result<Vec<Vec<RefPlan>>> {
    let mut taken: BTreeMap<(String, String), (String, &Image)> = BTreeMap::new();
    let mut repo_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut plans = Vec::new();
    for image in images {
        let mut refs = Vec::new();
        for original in &image.refs {
            let parsed = ImageRef::parse(original).map_err(|e| {
                anyhow::anyhow!(
                    "the bundle names image {} `{}`, which is not a valid image reference: {}",
                    image.id,
                    escape_controls(original),
                    e.reason
                )
            })?;
            let rewritten = target.rewrite(&parsed)?;
            let repository = target.repository(&parsed);
            let mut tags: Vec<String> = parsed.tag.iter().cloned().collect();
            let mut old_digest = parsed.digest.clone();
            let mut shown = original.clone();
            if let Some(digest) = &parsed.digest {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                tags.push(format!("{PIN_TAG_PREFIX}{hex}"));
            } else if let Some(hex) = parsed.tag.as_deref().and_then(pinned_hex) {
                // `bundle` records a digest-pinned name as its local pin tag (decision 0084):
                // the name the project writes is `name@sha256:<hex>`.
                old_digest = Some(format!("sha256:{hex}"));
                shown = format!("{}@sha256:{hex}", parsed.familiar_name());
            }
            let name = parsed.name();
            match repo_owner.get(&repository) {
                Some(other) if *other != name => bail!(
                    "{other} and {name} would both be pushed as {}: push the images of one of \
                     their registries under another prefix",
                    rewritten.name()
                ),
                _ => {
                    repo_owner.insert(repository.clone(), name.clone());
                }
            }
            for tag in &tags {
                let key = (repository.clone(), tag.clone());
                if let Some((other, other_image)) = taken.get(&key)
                    && other_image.id != image.id
                {
                    bail!(
                        "{} and {} (different images) would both be pushed as {}:{tag}",
                        escape_controls(other),
                        escape_controls(original),
                        rewritten.name()
                    );
                }
                taken.insert(key, (original.clone(), image));
            }
            refs.push(RefPlan {
                original: shown,
                upstream: parsed.domain.clone(),
                repository,
                tags,
                old_digest,
            });
        }
        plans.push(refs);
    }
    Ok(plans)
}

/// The digest hex a pin tag `offpack-pin-sha256-<64 hex>` stands for.
fn pinned_hex(tag: &str) -> Option<&str> {
    tag.strip_prefix(PIN_TAG_PREFIX)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The repositories an image is pushed into (each needs all of its blobs).
pub fn repositories(refs: &[RefPlan]) -> BTreeSet<String> {
    refs.iter().map(|r| r.repository.clone()).collect()
}

/// A blob as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: &'static str,
    pub digest: String,
    pub size: u64,
}

/// The OCI image manifest of an image whose layers were pushed as `layers` (in order): the
/// config is the bundle's own blob, so the image ID stays what it is.
pub fn image_manifest(image: &Image, layers: &[Descriptor]) -> Vec<u8> {
    let descriptor = |d: &Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": descriptor(&Descriptor {
            media_type: MEDIA_OCI_CONFIG,
            digest: image.config.digest.to_string(),
            size: image.config.size,
        }),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

/// Images of the bundle that came from one multi-platform index (format 1.4, `bundle
/// --from-registry` with several `--platform`s): they are pushed as that index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexGroup {
    pub index: RegistryIndex,
    /// Positions of the images whose manifests the index lists (the first platform's image
    /// carries the names, the others are nameless).
    pub members: Vec<usize>,
    /// Where the index goes: every repository a member is named in.
    pub repositories: BTreeSet<String>,
}

/// The images that share a carried index, grouped; an index none of whose images has a name
/// has nowhere to go and is left out.
pub fn index_groups(images: &[Image], plans: &[Vec<RefPlan>]) -> Vec<IndexGroup> {
    let mut groups: BTreeMap<Digest, IndexGroup> = BTreeMap::new();
    for (i, (image, refs)) in images.iter().zip(plans).enumerate() {
        let Some(index) = image.registry.as_ref().and_then(|r| r.index.as_ref()) else {
            continue;
        };
        let group = groups
            .entry(index.digest.clone())
            .or_insert_with(|| IndexGroup {
                index: index.clone(),
                members: Vec::new(),
                repositories: BTreeSet::new(),
            });
        group.members.push(i);
        group.repositories.extend(repositories(refs));
    }
    groups
        .into_values()
        .filter(|g| !g.repositories.is_empty())
        .collect()
}

/// Whether `tag` of a name of an image in the group of index `index` is pushed on the index:
/// every plain tag is (a pull by tag then picks the platform, as from the upstream registry); a
/// pin tag only when it stands for the index's own digest (one for the manifest stays on it).
pub fn tag_ends_on_index(tag: &str, index: &Digest) -> bool {
    match pinned_hex(tag) {
        Some(hex) => index.to_string().strip_prefix("sha256:") == Some(hex),
        None => true,
    }
}

/// The index to push for a carried one (`bytes`) whose images' manifests are `carried`: `None`
/// when it lists only carried manifests (it is pushed unchanged, keeping its digest), else a new
/// OCI index of the carried manifests, their descriptors (platforms, annotations) copied: a
/// registry refuses an index that names manifests it lacks.
pub fn index_for_push(
    bytes: &[u8],
    digest: &Digest,
    carried: &BTreeSet<String>,
) -> Result<Option<Vec<u8>>> {
    let index: Value = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("index {digest} of the bundle is not JSON: {e}"))?;
    let listed = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow::anyhow!("index {digest} of the bundle lists no manifests"))?;
    let is_carried = |d: &Value| {
        d.get("digest")
            .and_then(Value::as_str)
            .is_some_and(|d| carried.contains(d))
    };
    if listed.iter().all(is_carried) {
        return Ok(None);
    }
    let kept: Vec<&Value> = listed.iter().filter(|d| is_carried(d)).collect();
    if kept.is_empty() {
        bail!("index {digest} of the bundle lists none of the manifests the bundle carries");
    }
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": kept,
    });
    Ok(Some(
        serde_json::to_vec(&doc).expect("a JSON value serializes"),
    ))
}

#[cfg(test)]
mod tests {
    use offpack_bundle::BlobRef;

    use super::*;

    fn image(n: u8, refs: &[&str]) -> Image {
        let d = Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap();
        Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: d.clone(),
            platform: "linux/amd64".into(),
            config: BlobRef {
                digest: d,
                size: 10,
            },
            layers: vec![],
            oci_manifest: None,
            registry: None,
        }
    }

    #[test]
    fn tags_and_pin_tags_under_the_prefix() {
        let target = Target::parse("r.site:5000/mirror").unwrap();
        let pin = format!("sha256:{}", "ab".repeat(32));
        let plans = plan_refs(
            &target,
            &[image(
                1,
                &["python:3.11-slim", &format!("ghcr.io/o/app:2@{pin}")],
            )],
        )
        .unwrap();
        let refs = &plans[0];
        assert_eq!(refs[0].repository, "mirror/library/python");
        assert_eq!(refs[0].tags, ["3.11-slim"]);
        assert_eq!(refs[0].upstream, "docker.io");
        assert_eq!(refs[1].repository, "mirror/o/app");
        assert_eq!(
            refs[1].tags,
            [
                "2".to_string(),
                format!("offpack-pin-sha256-{}", "ab".repeat(32))
            ]
        );
        assert_eq!(refs[1].old_digest.as_deref(), Some(pin.as_str()));
        assert_eq!(repositories(refs).len(), 2);
    }

    #[test]
    fn a_pin_tag_the_bundle_recorded_is_the_pinned_name() {
        let target = Target::parse("r.site").unwrap();
        let tag = format!("offpack-pin-sha256-{}", "ef".repeat(32));
        let plans = plan_refs(&target, &[image(1, &[&format!("redis:{tag}")])]).unwrap();
        let r = &plans[0][0];
        assert_eq!(r.original, format!("redis@sha256:{}", "ef".repeat(32)));
        assert_eq!(r.old_digest, Some(format!("sha256:{}", "ef".repeat(32))));
        assert_eq!(r.tags, [tag]);
    }

    #[test]
    fn two_registries_on_one_repository_are_refused() {
        let target = Target::parse("r.site").unwrap();
        let err = plan_refs(
            &target,
            &[image(1, &["ghcr.io/a/b:1"]), image(2, &["quay.io/a/b:2"])],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ghcr.io/a/b and quay.io/a/b"), "{err}");
    }

    #[test]
    fn two_images_on_one_tag_are_refused_one_image_twice_is_not() {
        let target = Target::parse("r.site").unwrap();
        assert!(plan_refs(&target, &[image(1, &["app:1", "docker.io/library/app:1"])]).is_ok());
        let err = plan_refs(&target, &[image(1, &["app:1"]), image(2, &["app:1"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("different images"), "{err}");
    }

    fn digest(n: u8) -> Digest {
        Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    /// `image(n, refs)` in registry form, chosen from index `index`.
    fn from_index(n: u8, refs: &[&str], index: u8) -> Image {
        let mut img = image(n, refs);
        img.registry = Some(offpack_bundle::RegistryImage {
            media_type: MEDIA_OCI_MANIFEST.into(),
            repo_digests: vec![],
            layers: vec![],
            index: Some(RegistryIndex {
                digest: digest(index),
                size: 100,
                media_type: MEDIA_OCI_INDEX.into(),
            }),
        });
        img
    }

    #[test]
    fn images_of_one_index_go_where_its_named_image_goes() {
        let target = Target::parse("r.site/p").unwrap();
        let images = [
            from_index(1, &["app:1"], 9),
            from_index(2, &[], 9),
            from_index(3, &[], 8),
            image(4, &["other:1"]),
        ];
        let plans = plan_refs(&target, &images).unwrap();
        let groups = index_groups(&images, &plans);
        assert_eq!(groups.len(), 1, "an index with no named image is left out");
        assert_eq!(groups[0].index.digest, digest(9));
        assert_eq!(groups[0].members, [0, 1]);
        assert_eq!(
            groups[0].repositories.iter().collect::<Vec<_>>(),
            ["p/library/app"]
        );
    }

    #[test]
    fn plain_tags_and_the_index_pin_end_on_the_index_a_manifest_pin_does_not() {
        let index = digest(9);
        assert!(tag_ends_on_index("1", &index));
        assert!(tag_ends_on_index(
            &format!("{PIN_TAG_PREFIX}{}", "09".repeat(32)),
            &index
        ));
        assert!(!tag_ends_on_index(
            &format!("{PIN_TAG_PREFIX}{}", "01".repeat(32)),
            &index
        ));
    }

    #[test]
    fn an_index_is_kept_whole_or_rebuilt_from_its_carried_manifests() {
        let (a, b) = (digest(1).to_string(), digest(2).to_string());
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": offpack_bundle::MEDIA_DOCKER_LIST,
            "manifests": [
                {"mediaType": MEDIA_OCI_MANIFEST, "digest": a, "size": 10,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": MEDIA_OCI_MANIFEST, "digest": b, "size": 11,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }))
        .unwrap();
        let index = Digest::of_bytes(&bytes);
        let both = BTreeSet::from([a.clone(), b.clone()]);
        assert_eq!(index_for_push(&bytes, &index, &both).unwrap(), None);
        let one = BTreeSet::from([b.clone()]);
        let new = index_for_push(&bytes, &index, &one).unwrap().unwrap();
        let doc: Value = serde_json::from_slice(&new).unwrap();
        assert_eq!(doc["mediaType"], MEDIA_OCI_INDEX);
        assert_eq!(doc["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(doc["manifests"][0]["digest"], b.as_str());
        assert_eq!(doc["manifests"][0]["platform"]["architecture"], "arm64");
        let none = BTreeSet::from([digest(3).to_string()]);
        let err = index_for_push(&bytes, &index, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&index.to_string()), "{err}");
        assert!(index_for_push(b"{", &index, &both).is_err());
    }

    #[test]
    fn manifest_names_the_config_and_the_pushed_layers() {
        let img = image(3, &["a:1"]);
        let layers = [Descriptor {
            media_type: offpack_registry::MEDIA_OCI_LAYER_GZIP,
            digest: format!("sha256:{}", "cd".repeat(32)),
            size: 42,
        }];
        let doc: serde_json::Value =
            serde_json::from_slice(&image_manifest(&img, &layers)).unwrap();
        insta::assert_json_snapshot!(doc);
    }
}
