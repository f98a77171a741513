//! Python packages: requirements files, distribution file names, PEP 503 index pages.

pub mod index;
pub mod names;
pub mod requirements;
