//! The jobs behind the subcommands: `bundle` and `load` as decisions over an [`ImageStore`], and
//! `rebuild`, `verify`, `keygen`, `inventory`.
//!
//! Each decision (which images to pull, build, export, load, retag, keep) is a plain function
//! over what the engine holds, so it is tested against `fake::FakeStore` (built for tests only) without an engine.
//! The engine I/O that carries decisions out is kept apart from them ([`load::apply`],
//! [`bundle::apply`], [`copy`]); [`bundle::export`] and [`load::job`] run a whole job in the
//! order the reliability work depends on (decisions 0064, 0066). The commands (`src/commands/`)
//! turn arguments into a job's request and render its result.

pub mod builder;
pub mod bundle;
pub mod compose_up;
pub mod copy;
pub mod inventory;
pub mod keygen;
pub mod load;
pub mod meta;
pub mod pull_policy;
pub mod push;
pub mod rebuild;
pub mod serve;
pub mod serve_builds;
pub mod verify;

#[cfg(test)]
pub(crate) mod fake;

use std::future::Future;

use anyhow::Result;
use offpack_bundle::Digest;

use crate::engine::{Engine, ImageInfo};

/// What the decisions need to know of the engine's images. [`Engine`] implements it; tests use
/// an in-memory store.
pub trait ImageStore {
    /// The image named `reference` (a name or an ID), or `None` when there is none.
    fn image(&self, reference: &str) -> impl Future<Output = Result<Option<ImageInfo>>> + Send;

    /// Every image the store holds, intermediate ones included.
    fn images(&self) -> impl Future<Output = Result<Vec<ImageInfo>>> + Send;
}

impl ImageStore for Engine {
    fn image(&self, reference: &str) -> impl Future<Output = Result<Option<ImageInfo>>> + Send {
        Engine::image(self, reference)
    }

    fn images(&self) -> impl Future<Output = Result<Vec<ImageInfo>>> + Send {
        Engine::images(self)
    }
}

/// Where a name the bundle records stands in the store, relative to the image it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameState {
    /// The store has no image under the name.
    Absent,
    /// The name points to the image in question.
    Here,
    /// The name points to another image.
    Elsewhere,
}

pub async fn name_state(
    store: &impl ImageStore,
    reference: &str,
    id: &Digest,
) -> Result<NameState> {
    Ok(match store.image(reference).await? {
        None => NameState::Absent,
        Some(current) if current.id == *id => NameState::Here,
        Some(_) => NameState::Elsewhere,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over
/// it, so a reader sees the old file or the new one, never half of one.
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use anyhow::Context as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    temp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
