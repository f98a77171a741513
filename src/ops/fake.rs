//! An in-memory [`ImageStore`] for the decisions' unit tests.

use std::collections::BTreeMap;

use anyhow::Result;
use offpack_bundle::Digest;

use super::ImageStore;
use crate::engine::ImageInfo;

/// Images by ID, and names pointing to IDs, as an engine holds them.
#[derive(Default)]
pub(crate) struct FakeStore {
    images: BTreeMap<String, ImageInfo>,
    names: BTreeMap<String, String>,
}

/// The image ID (`sha256:…`) a test calls `seed`.
pub(crate) fn id(seed: &str) -> String {
    image_digest(seed).to_string()
}

/// [`id`], as the digest it is.
pub(crate) fn image_digest(seed: &str) -> Digest {
    Digest::of_bytes(format!("config {seed}").as_bytes())
}

/// The diff ID a test calls `seed`.
pub(crate) fn layer(seed: &str) -> String {
    Digest::of_bytes(format!("layer {seed}").as_bytes()).to_string()
}

impl FakeStore {
    /// Adds the image `seed` with `layers`, named `names`.
    pub(crate) fn with(mut self, seed: &str, layers: &[&str], names: &[&str]) -> Self {
        let id = id(seed);
        self.images.insert(
            id.clone(),
            ImageInfo {
                id: id.parse().expect("fake IDs are digests"),
                repo_tags: names.iter().map(|n| n.to_string()).collect(),
                size: 100,
                os: "linux".into(),
                architecture: "amd64".into(),
                layers: layers
                    .iter()
                    .map(|l| layer(l).parse().expect("fake layers are digests"))
                    .collect(),
                labels: Default::default(),
            },
        );
        for name in names {
            self.names.insert(name.to_string(), id.clone());
        }
        self
    }
}

impl ImageStore for FakeStore {
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let id = self.names.get(reference).map_or(reference, String::as_str);
        Ok(self.images.get(id).cloned())
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.images.values().cloned().collect())
    }
}
