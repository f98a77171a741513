//! The air-gapped side's loader: hands the engine exactly the `docker load` stream it expects,
//! built from the bundle's blobs, each checked against its digest as it streams.

pub mod chain;
pub mod inventory;
mod space;
mod stream;

pub use space::{free_space, space_needed};

pub use stream::{LoadImage, write_load_stream};
