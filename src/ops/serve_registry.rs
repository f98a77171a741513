//! The job behind `offpack serve --registry`: checks the bundle and serves its images over the
//! distribution API, read-only, straight from the bundle file.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use offpack_bundle::{BlobRef, BundleReader, escape_controls};

use crate::http::HttpServer;
use crate::ops::serve::open_checked;
use crate::registry_serve::catalog::Catalog;
use crate::registry_serve::server;
use crate::reporter::Reporter;

/// The address `serve --registry` listens on unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";

/// Largest OCI manifest read from a bundle (offpack writes a few KiB for hundreds of layers).
const MAX_MANIFEST: u64 = 4 << 20;

/// What `offpack serve --registry` serves, and where.
#[derive(Debug, Clone)]
pub struct RegistryServeRequest {
    pub bundle: PathBuf,
    /// Serve only a bundle validly signed by this public key.
    pub key: Option<PathBuf>,
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
}

/// A running registry server and what it serves.
#[derive(Debug)]
pub struct RegistryServing {
    pub server: HttpServer,
    pub bundle: PathBuf,
    /// Each repository with its tags.
    pub repositories: Vec<(String, Vec<String>)>,
    /// How many images are served.
    pub images: usize,
    /// What is not served, and why.
    pub skipped: Vec<String>,
    /// Fingerprint of the key whose valid signature the bundle carries.
    pub signed_by: Option<String>,
    /// The `.sha256` file the whole bundle was checked against; `None`: there is none, and each
    /// layer is checked only as it is read (a damaged one ends its response short).
    pub sidecar: Option<PathBuf>,
}

impl RegistryServing {
    /// `HOST:PORT` as a client on this machine names the registry.
    pub fn registry(&self) -> String {
        crate::http::client_addr_of(self.server.addr()).to_string()
    }
}

/// Opens and checks the bundle (its structure, metadata, configs and manifests; and the whole
/// file against its `.sha256` when there is one), then starts the server on `request.addr`.
pub fn start(request: &RegistryServeRequest, reporter: &dyn Reporter) -> Result<RegistryServing> {
    let path = &request.bundle;
    let checked = open_checked(path, request.key.as_deref())?;
    let signed_by = checked.signed_by.as_ref().map(|k| k.fingerprint());
    let mut checked_against = None;
    if let Some(sidecar) = checked.sidecar {
        // Layers are checked only as a client reads them; the sidecar covers every byte, so a
        // bundle damaged after it was written is refused before anything is served.
        let task = reporter.start(
            &format!(
                "check {} against {}",
                path.display(),
                sidecar.path().display()
            ),
            None,
        );
        let sidecar = sidecar
            .run()
            .map_err(|e| {
                let refused = format!("{}: refused, nothing is served", path.display());
                anyhow::Error::new(e).context(refused)
            })
            .inspect_err(|_| reporter.finish(task, "failed"))?;
        reporter.finish(task, "ok");
        checked_against = Some(sidecar);
    }
    let reader = Arc::new(checked.reader);
    let catalog = Catalog::build(
        &reader.manifest().images,
        &|digest| reader.contains(digest),
        &mut |blob| read_document(&reader, blob),
    )
    .with_context(|| format!("{}: refused, nothing is served", path.display()))?;
    let repositories = catalog
        .repositories
        .iter()
        .map(|(name, repository)| (name.clone(), repository.tags.keys().cloned().collect()))
        .collect();
    let images = catalog.images;
    let skipped = catalog.skipped.clone();
    let checks = match checked_against {
        Some(_) => server::BlobChecks::FileChecked,
        None => server::BlobChecks::EachRead,
    };
    let server = server::start(reader, catalog, checks, request.addr)?;
    if checked_against.is_none() {
        reporter.warn(&format!(
            "no .sha256 file beside {}: each layer is checked only as it is read (a damaged one fails that pull)",
            path.display()
        ));
    }
    for skipped in &skipped {
        reporter.warn(&escape_controls(skipped));
    }
    if !server.addr().ip().is_loopback() {
        reporter.warn(&format!(
            "listening on {}: every host that reaches this address can pull the bundle's images (plain HTTP, no authentication)",
            server.addr()
        ));
    }
    Ok(RegistryServing {
        server,
        bundle: path.clone(),
        repositories,
        images,
        skipped,
        signed_by,
        sidecar: checked_against,
    })
}

/// A manifest or index blob, as stored (the reader checks it against its digest).
fn read_document(reader: &BundleReader, blob: &BlobRef) -> Result<Vec<u8>> {
    anyhow::ensure!(
        blob.size <= MAX_MANIFEST,
        "the manifest {} has {} bytes, more than the {MAX_MANIFEST} a manifest may have",
        blob.digest,
        blob.size
    );
    let mut bytes = Vec::with_capacity(blob.size as usize);
    reader
        .blob(&blob.digest)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the manifest {}", blob.digest))?;
    Ok(bytes)
}
