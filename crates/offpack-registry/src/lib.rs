//! A blocking client for the OCI distribution API (what `docker push`/`pull` speak to a
//! registry), and the pure pieces around it: where a bundle's images go under a target registry
//! ([`Target`]), the `WWW-Authenticate` challenges ([`Challenge`]), the user's saved logins
//! ([`credentials`]) and the settings that make original names resolve through a registry
//! ([`mirror`]).

mod challenge;
mod client;
pub mod credentials;
pub mod mirror;
mod target;

pub use challenge::Challenge;
pub use client::{
    BlobUpload, Client, ClientOptions, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST, PulledManifest,
};
pub use credentials::Credentials;
pub use target::Target;
