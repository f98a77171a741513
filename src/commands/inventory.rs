use std::process::ExitCode;

use anyhow::Result;

use crate::cli::InventoryArgs;
use crate::ops::inventory::take_inventory;

/// Always JSON: the inventory is meant to be redirected into a file and carried back.
pub async fn run(_args: InventoryArgs) -> Result<ExitCode> {
    let inventory = take_inventory().await?;
    println!("{}", serde_json::to_string_pretty(&inventory)?);
    Ok(ExitCode::SUCCESS)
}
