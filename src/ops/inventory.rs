//! The job behind `offpack inventory`: what the far side's engine holds, for a delta bundle.

use anyhow::Result;

use crate::engine::Engine;
use crate::load::inventory::{INVENTORY_VERSION, Inventory, InventoryEngine, InventoryImage};

/// The engine's images and layers, with the facts a delta bundle is checked against.
pub async fn take_inventory() -> Result<Inventory> {
    let engine = Engine::connect().await?;
    let facts = engine.facts(&[]).await?;
    let images = engine
        .images()
        .await?
        .into_iter()
        .map(|i| InventoryImage {
            id: i.id,
            refs: i.repo_tags,
            layers: i.layers,
        })
        .collect();
    Ok(Inventory {
        inventory_version: INVENTORY_VERSION,
        created: offpack_bundle::rfc3339_utc_now(),
        engine: InventoryEngine {
            version: facts.server_version,
            storage_driver: facts.storage_driver,
            containerd_image_store: facts.containerd_image_store,
        },
        images,
    })
}
