//! Python packages: requirements files, lock files, distribution file names, PEP 503 index pages.

pub mod index;
pub mod lockfile;
pub mod markers;
pub mod names;
pub mod pipfile_lock;
pub mod poetry_lock;
pub mod requirements;
pub mod uv_lock;
