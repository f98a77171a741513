//! offpack carries a Docker Compose project across an air gap and keeps it rebuildable there.
//!
//! The modules follow the data flow:
//! compose + Dockerfiles → [`plan`] → [`fetch`] (engine export) → bundle writer (`offpack_bundle`)
//! → bundle reader/verify → [`load`] → [`rebuild`]. [`engine`] is the one place that talks to the
//! Docker Engine API; [`cli`] and [`commands`] are the only places that print.

pub mod cli;
pub mod commands;
pub mod containerd;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod load;
pub mod ops;
pub mod packages;
pub mod plan;
pub mod project;
pub mod rebuild;
pub mod reporter;
