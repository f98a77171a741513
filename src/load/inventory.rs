//! What an engine already holds, as the far side tells the networked side (`offpack inventory >
//! have.json`, then `offpack bundle --have have.json`) so that a delta bundle leaves it out.

use std::collections::HashSet;

use offpack_bundle::Digest;
use serde::{Deserialize, Serialize};

use super::chain::{self, ChainId};

/// Version of the inventory document; a different one is refused.
pub const INVENTORY_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub inventory_version: u32,
    pub created: String,
    pub engine: InventoryEngine,
    pub images: Vec<InventoryImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InventoryEngine {
    pub version: String,
    pub storage_driver: String,
    pub containerd_image_store: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InventoryImage {
    pub id: Digest,
    pub refs: Vec<String>,
    /// Diff IDs of the image's layers, bottom first.
    pub layers: Vec<Digest>,
}

impl Inventory {
    /// Parses `have.json`; `source` names the file in errors.
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Inventory> {
        let inventory: Inventory = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("{source}: not an inventory written by `offpack inventory`: {e}")
        })?;
        if inventory.inventory_version != INVENTORY_VERSION {
            anyhow::bail!(
                "{source}: inventory version {} is not the one this offpack reads ({INVENTORY_VERSION}); \
                 write it again with this offpack's `offpack inventory`",
                inventory.inventory_version
            );
        }
        Ok(inventory)
    }

    /// The layer chains the inventoried engine holds.
    pub fn chains(&self) -> HashSet<ChainId> {
        chain::present_chains(self.images.iter().map(|i| i.layers.as_slice()))
    }

    /// Whether a delta against this engine is possible: the containerd store does not skip
    /// layers on load.
    pub fn supports_delta(&self) -> bool {
        !self.engine.containerd_image_store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_versions_and_garbage() {
        let doc = r#"{"inventory_version":2,"created":"x","engine":{"version":"1","storage_driver":"overlay2","containerd_image_store":false},"images":[]}"#;
        let err = Inventory::parse(doc, "have.json").unwrap_err().to_string();
        assert!(
            err.contains("have.json") && err.contains("version 2"),
            "{err}"
        );
        let err = Inventory::parse("[1,2", "have.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("have.json"), "{err}");
    }

    #[test]
    fn chains_cover_every_prefix() {
        let a = Digest::of_bytes(b"layer a");
        let b = Digest::of_bytes(b"layer b");
        let inventory = Inventory {
            inventory_version: 1,
            created: "now".into(),
            engine: InventoryEngine {
                version: "20.10".into(),
                storage_driver: "overlay2".into(),
                containerd_image_store: false,
            },
            images: vec![InventoryImage {
                id: Digest::of_bytes(b"config"),
                refs: vec![],
                layers: vec![a.clone(), b.clone()],
            }],
        };
        let chains = inventory.chains();
        assert_eq!(chains.len(), 2);
        assert!(chains.contains(&chain::chain_ids(std::slice::from_ref(&a))[0]));
    }
}
