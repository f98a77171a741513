//! npm packages: lock files (npm and yarn v1), integrity strings, platform
//! filtering, `resolved` rewriting and the registry's URLs and documents.

pub mod integrity;
pub mod lock;
pub mod platform;
pub mod registry;
pub mod rewrite;

pub use integrity::Integrity;
pub use lock::{NpmPackage, NpmSource, parse_package_lock, parse_yarn_lock};
pub use platform::NpmTarget;
