//! Language packages (Python wheels, npm tarballs) on the far side: the store `load` fills.

pub mod store;
