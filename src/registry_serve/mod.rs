//! A bundle's images served read-only over the OCI distribution API (`offpack serve
//! --registry`), straight from the bundle file, so that engines, containerd and skopeo pull them
//! (or use the server as a registry mirror) with no registry installed: what is offered
//! ([`catalog`]) and the server ([`server`]).

pub mod catalog;
pub mod server;
