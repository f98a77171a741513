//! Free space under the engine's data root, checked before a load.
//!
//! `docker load` first unpacks the whole load stream into a temporary directory under the data
//! root, then extracts each layer into the layer store: a load needs about twice the stream's
//! size free there. Failing before the first byte beats failing half way.

use std::path::Path;

/// How much free space a load stream of `stream_bytes` needs under the data root.
pub fn space_needed(stream_bytes: u64) -> u64 {
    stream_bytes.saturating_mul(2)
}

/// Free bytes for unprivileged use on the file system holding `path`, when `path` is on this
/// machine (an engine behind `DOCKER_HOST=tcp://…` has its data root elsewhere: `None`).
pub fn free_space(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_needs_room_to_unpack_and_to_extract() {
        assert_eq!(space_needed(10), 20);
        assert_eq!(space_needed(u64::MAX), u64::MAX);
    }

    #[test]
    fn reads_free_space_of_a_local_directory() {
        assert!(free_space(Path::new("/")).is_some());
        assert!(free_space(Path::new("/no/such/dir")).is_none());
    }
}
