//! Fetchers: bring what the plan needs into the bundle. Images come from the engine's export.

pub mod cache;
pub mod export;
pub mod npm;
pub mod pip;
pub mod registry;
