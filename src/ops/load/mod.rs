//! `load`'s decisions: which of the bundle's images to load, which the engine already holds,
//! which names to restore or keep, which layers to leave out of the stream.
//!
//! They only ask the store; nothing here changes the engine. [`job`] calls them after the
//! bundle passed `BundleReader::open_checked`; [`apply`] carries out what they decide, in the
//! order decision 0066 gives (the load stream's end waits for the `.sha256`, retags wait for
//! every check).

pub mod apply;
pub mod containerd;
pub mod job;
pub mod packages;

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{Result, bail};
use offpack_bundle::{Digest, Manifest, escape_controls};

use super::{ImageStore, NameState, name_state};
use crate::load::{LoadImage, chain};

/// What a load does, decided from the bundle and what the engine holds.
#[derive(Debug, Default)]
pub struct LoadDecision {
    /// The images the stream carries, with the names `docker load` gives them.
    pub to_load: Vec<LoadImage>,
    /// Per image to load: its label and blobs with their sizes, for its progress line.
    pub load_blobs: Vec<(String, Vec<(Digest, u64)>)>,
    /// Labels of the images to load.
    pub loaded: Vec<String>,
    /// Labels of the wanted images the engine already holds.
    pub already_present: Vec<String>,
    /// `(image ID, name)`: names to restore on images the engine already holds.
    pub retag: Vec<(Digest, String)>,
    /// Names the bundle records that point to another image in the engine (e.g. one
    /// `offpack rebuild` made): a load never moves them.
    pub kept: Vec<String>,
}

/// Decides the load of the images of `manifest` whose IDs are in `wanted`.
pub async fn decide_load(
    store: &impl ImageStore,
    manifest: &Manifest,
    wanted: &BTreeSet<Digest>,
) -> Result<LoadDecision> {
    let mut decision = LoadDecision::default();
    // A registry-form image without a name is another platform's image of a multi-platform
    // index (format 1.4): kept for registries and containerd, not loaded into this engine.
    let for_engine = |i: &&offpack_bundle::Image| i.registry.is_none() || !i.refs.is_empty();
    for image in manifest
        .images
        .iter()
        .filter(|i| wanted.contains(&i.id))
        .filter(for_engine)
    {
        let id = &image.id;
        let label = image
            .refs
            .first()
            .cloned()
            .unwrap_or_else(|| id.to_string());
        if store.image(&id.to_string()).await?.is_some() {
            for reference in &image.refs {
                match name_state(store, reference, id).await? {
                    NameState::Absent => decision.retag.push((id.clone(), reference.clone())),
                    NameState::Elsewhere => decision.kept.push(reference.clone()),
                    NameState::Here => {}
                }
            }
            decision.already_present.push(label);
            continue;
        }
        let mut names = Vec::new();
        for reference in image.refs.iter().filter(|r| !r.contains('@')) {
            match name_state(store, reference, id).await? {
                NameState::Elsewhere => decision.kept.push(reference.clone()),
                _ => names.push(reference.clone()),
            }
        }
        let unzstd: HashMap<Digest, u64> = image
            .registry
            .iter()
            .flat_map(|r| image.layers.iter().zip(&r.layers))
            .filter(|(_, l)| {
                offpack_bundle::Compression::of_media_type(&l.media_type)
                    == Some(offpack_bundle::Compression::Zstd)
            })
            .map(|(blob, l)| (blob.digest.clone(), l.diff_size))
            .collect();
        // What the stream carries of each blob: a zstd layer goes decompressed.
        decision.load_blobs.push((
            label.clone(),
            std::iter::once(&image.config)
                .chain(image.layers.iter())
                .map(|b| (b.digest.clone(), *unzstd.get(&b.digest).unwrap_or(&b.size)))
                .collect(),
        ));
        decision.to_load.push(LoadImage {
            config: image.config.digest.clone(),
            layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
            diff_ids: image.diff_ids(),
            unzstd,
            names,
        });
        decision.loaded.push(label);
    }
    Ok(decision)
}

/// Layer blobs of `images` the store already holds on the same chain. Only the classic store
/// skips them on load; with the containerd image store every layer is sent.
pub async fn layers_the_engine_has(
    store: &impl ImageStore,
    containerd_image_store: bool,
    images: &[LoadImage],
) -> Result<HashSet<Digest>> {
    if containerd_image_store {
        return Ok(HashSet::new());
    }
    let have = store.images().await?;
    let present = chain::present_chains(have.iter().map(|i| i.layers.as_slice()));
    let wanted: Vec<&[Digest]> = images.iter().map(|i| i.diff_ids.as_slice()).collect();
    let omit = chain::layers_to_omit(&wanted, &present);
    // Chains are made of diff IDs; the stream sends blobs, which differ for compressed layers.
    Ok(images
        .iter()
        .flat_map(|i| i.layers.iter().zip(&i.diff_ids))
        .filter(|(_, diff_id)| omit.contains(*diff_id))
        .map(|(blob, _)| blob.clone())
        .collect())
}

/// A delta bundle leaves out layers the far side was said to hold: each one an image to load
/// needs must be in the engine on the same chain, or the load would fail half way.
pub fn check_delta_base(
    manifest: &Manifest,
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
                .names
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
        escape_controls(&delta.base),
        escape_controls(&missing.join(", "))
    )
}

/// Bytes the load stream carries: the blobs of the images to load, each once, but those the
/// engine holds.
pub fn stream_bytes(manifest: &Manifest, to_load: &[LoadImage], omit: &HashSet<Digest>) -> u64 {
    let mut unique: BTreeSet<Digest> = omit.iter().cloned().collect();
    let unzstd: HashMap<&Digest, u64> = to_load
        .iter()
        .flat_map(|l| l.unzstd.iter().map(|(d, size)| (d, *size)))
        .collect();
    manifest
        .images
        .iter()
        .filter(|i| to_load.iter().any(|l| l.config == i.config.digest))
        .flat_map(|i| std::iter::once(&i.config).chain(i.layers.iter()))
        .filter(|b| unique.insert(b.digest.clone()))
        .map(|b| unzstd.get(&b.digest).copied().unwrap_or(b.size))
        .sum()
}

/// Which of `names`, the names a load gives a just-loaded image, the engine does not show on it
/// yet (the load stream names nothing: decision 0074); an error when the engine no longer holds
/// the image.
pub async fn names_missing_after_load(
    store: &impl ImageStore,
    image: &offpack_bundle::Image,
    names: &[String],
) -> Result<Vec<String>> {
    let id = &image.id;
    if store.image(&id.to_string()).await?.is_none() {
        bail!(
            "the engine did not keep image {} after loading it (was it removed meanwhile?); \
             run the same `offpack load` again to finish it",
            image.id
        );
    }
    let mut missing = Vec::new();
    for reference in names {
        if name_state(store, reference, id).await? == NameState::Absent {
            missing.push(reference.clone());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fake::{FakeStore, id, image_digest, layer};
    use offpack_bundle::{BlobRef, Delta, Image};

    fn digest(text: &str) -> Digest {
        text.parse().unwrap()
    }

    /// A bundle image matching the store's image `seed`.
    fn image(seed: &str, layers: &[&str], refs: &[&str]) -> Image {
        let id = digest(&id(seed));
        Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: id.clone(),
            platform: "linux/amd64".into(),
            config: BlobRef {
                digest: id,
                size: 10,
            },
            layers: layers
                .iter()
                .map(|l| BlobRef {
                    digest: digest(&layer(l)),
                    size: 1000,
                })
                .collect(),
            oci_manifest: None,
            registry: None,
        }
    }

    fn manifest(images: Vec<Image>) -> Manifest {
        let mut manifest = Manifest::new("0", "shop");
        manifest.images = images;
        manifest
    }

    fn all(manifest: &Manifest) -> BTreeSet<Digest> {
        manifest.images.iter().map(|i| i.id.clone()).collect()
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn an_empty_engine_loads_everything_under_its_tags() {
        let bundle = manifest(vec![
            image("redis", &["r1"], &["redis:7", "redis@sha256:ab"]),
            image("web", &["b1", "w1"], &["shop-web:latest"]),
        ]);
        let store = FakeStore::default();
        let decision = run(decide_load(&store, &bundle, &all(&bundle))).unwrap();
        assert_eq!(decision.loaded, ["redis:7", "shop-web:latest"]);
        assert!(decision.already_present.is_empty() && decision.retag.is_empty());
        assert!(decision.kept.is_empty());
        // A digest reference is not a name `docker load` can give.
        assert_eq!(decision.to_load[0].names, ["redis:7"]);
        assert_eq!(decision.load_blobs[1].1.len(), 3, "config and two layers");
        let omit = run(layers_the_engine_has(&store, false, &decision.to_load)).unwrap();
        assert!(omit.is_empty());
        assert_eq!(stream_bytes(&bundle, &decision.to_load, &omit), 3020);
    }

    #[test]
    fn everything_present_only_restores_missing_names() {
        let bundle = manifest(vec![image("redis", &["r1"], &["redis:7", "cache:1"])]);
        let store = FakeStore::default().with("redis", &["r1"], &["redis:7"]);
        let decision = run(decide_load(&store, &bundle, &all(&bundle))).unwrap();
        assert!(decision.to_load.is_empty() && decision.loaded.is_empty());
        assert_eq!(decision.already_present, ["redis:7"]);
        assert_eq!(
            decision.retag,
            [(image_digest("redis"), "cache:1".to_string())]
        );
    }

    #[test]
    fn a_name_pointing_elsewhere_is_kept() {
        let bundle = manifest(vec![
            image("web", &["w1"], &["shop-web:latest"]),
            image("redis", &["r1"], &["redis:7", "shop-cache:1"]),
        ]);
        // A rebuild on the far side moved shop-web:latest; someone else named an image shop-cache:1.
        let store = FakeStore::default()
            .with("rebuilt-web", &["w2"], &["shop-web:latest"])
            .with("redis", &["r1"], &[])
            .with("other", &["o1"], &["shop-cache:1"]);
        let decision = run(decide_load(&store, &bundle, &all(&bundle))).unwrap();
        assert_eq!(decision.kept, ["shop-web:latest", "shop-cache:1"]);
        assert_eq!(decision.to_load.len(), 1);
        assert!(
            decision.to_load[0].names.is_empty(),
            "the load gives no name it would move"
        );
        assert_eq!(
            decision.retag,
            [(image_digest("redis"), "redis:7".to_string())]
        );
    }

    #[test]
    fn only_the_wanted_images_are_considered() {
        let bundle = manifest(vec![
            image("redis", &["r1"], &["redis:7"]),
            image("web", &["w1"], &["shop-web:latest"]),
        ]);
        let wanted = [image_digest("web")].into();
        let decision = run(decide_load(&FakeStore::default(), &bundle, &wanted)).unwrap();
        assert_eq!(decision.loaded, ["shop-web:latest"]);
    }

    #[test]
    fn layers_on_the_same_chain_are_left_out_unless_containerd() {
        let bundle = manifest(vec![image("web", &["b1", "w1"], &["shop-web:latest"])]);
        let store = FakeStore::default().with("base", &["b1"], &["base:1"]);
        let decision = run(decide_load(&store, &bundle, &all(&bundle))).unwrap();
        let omit = run(layers_the_engine_has(&store, false, &decision.to_load)).unwrap();
        assert_eq!(omit, [digest(&layer("b1"))].into());
        assert_eq!(stream_bytes(&bundle, &decision.to_load, &omit), 1010);
        let omit = run(layers_the_engine_has(&store, true, &decision.to_load)).unwrap();
        assert!(omit.is_empty());
    }

    #[test]
    fn a_delta_bundle_whose_base_is_missing_is_refused() {
        let mut bundle = manifest(vec![image("web", &["b1", "w1"], &["shop-web:latest"])]);
        bundle.delta = Some(Delta {
            base: "the engine inventoried in have.json".into(),
            absent_layers: vec![digest(&layer("b1"))],
        });
        let empty = FakeStore::default();
        let decision = run(decide_load(&empty, &bundle, &all(&bundle))).unwrap();
        let omit = run(layers_the_engine_has(&empty, false, &decision.to_load)).unwrap();
        let err = check_delta_base(&bundle, &decision.to_load, &omit).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("delta bundle made against the engine inventoried in have.json")
                && text.contains(&format!("layer {} of shop-web:latest", layer("b1"))),
            "{text}"
        );

        let with_base = FakeStore::default().with("base", &["b1"], &[]);
        let omit = run(layers_the_engine_has(&with_base, false, &decision.to_load)).unwrap();
        check_delta_base(&bundle, &decision.to_load, &omit).unwrap();
    }

    #[test]
    fn a_loaded_image_gets_the_names_the_load_did_not_give() {
        let loaded = image("web", &["w1"], &["shop-web:latest", "shop_web:latest"]);
        let names = ["shop-web:latest".to_string(), "shop_web:latest".to_string()];
        let store = FakeStore::default().with("web", &["w1"], &["shop-web:latest"]);
        assert_eq!(
            run(names_missing_after_load(&store, &loaded, &names)).unwrap(),
            ["shop_web:latest"]
        );
        let err = run(names_missing_after_load(
            &FakeStore::default(),
            &loaded,
            &names,
        ))
        .unwrap_err();
        assert!(format!("{err}").contains("did not keep image"), "{err}");
    }
}
