use std::process::ExitCode;

use anyhow::Result;

use crate::cli::InventoryArgs;
use crate::engine::Engine;
use crate::load::inventory::{INVENTORY_VERSION, Inventory, InventoryEngine, InventoryImage};

/// Always JSON: the inventory is meant to be redirected into a file and carried back.
pub async fn run(_args: InventoryArgs) -> Result<ExitCode> {
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
    let inventory = Inventory {
        inventory_version: INVENTORY_VERSION,
        created: offpack_bundle::rfc3339_utc_now(),
        engine: InventoryEngine {
            version: facts.server_version,
            storage_driver: facts.storage_driver,
            containerd_image_store: facts.containerd_image_store,
        },
        images,
    };
    println!("{}", serde_json::to_string_pretty(&inventory)?);
    Ok(ExitCode::SUCCESS)
}
