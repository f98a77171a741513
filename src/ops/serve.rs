//! The job behind `offpack serve`: checks what it is to serve (a bundle, or the far side's
//! package store) and starts the package server.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use offpack_bundle::{BundleReader, CheckedBundle, Package, escape_controls};

use crate::error::CheckFailed;
use crate::ops::verify::read_public_key;
use crate::packages::serve::PackageServer;
use crate::packages::source::{BundleSource, PackageSource, StoreSource};
use crate::packages::store::PackageStore;
use crate::reporter::Reporter;

/// What `offpack serve` serves, and where.
#[derive(Debug, Clone)]
pub struct ServeRequest {
    /// The bundle; `None` serves the package store.
    pub bundle: Option<PathBuf>,
    /// Serve only a bundle validly signed by this public key.
    pub key: Option<PathBuf>,
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
}

/// A running server and what it serves.
#[derive(Debug)]
pub struct Serving {
    pub server: PackageServer,
    /// The bundle or the store directory.
    pub source: PathBuf,
    /// Whether `source` is a bundle (else the package store).
    pub bundle: bool,
    pub pypi: usize,
    pub npm: usize,
    /// Fingerprint of the key whose valid signature the bundle carries.
    pub signed_by: Option<String>,
}

impl Serving {
    /// The index URL for pip (`PIP_INDEX_URL`, `--index-url`).
    pub fn pip_index_url(&self) -> String {
        format!("{}/simple/", self.server.base_url())
    }

    /// `HOST:PORT` for pip's `--trusted-host` (the server speaks plain HTTP).
    pub fn pip_trusted_host(&self) -> String {
        let base = self.server.base_url();
        base.trim_start_matches("http://").to_owned()
    }

    /// The registry URL for npm (`npm_config_registry`, `--registry`).
    pub fn npm_registry(&self) -> String {
        format!("{}/", self.server.base_url())
    }
}

/// Opens and checks the source, then starts the server on `request.addr`.
pub fn start(request: &ServeRequest, reporter: &dyn Reporter) -> Result<Serving> {
    let (source, path, signed_by): (Arc<dyn PackageSource>, PathBuf, Option<String>) =
        match &request.bundle {
            Some(bundle) => {
                let (source, signed_by) = open_bundle(bundle, request.key.as_deref(), reporter)?;
                (Arc::new(source), bundle.clone(), signed_by)
            }
            None => {
                let dir = PackageStore::default_dir()
                    .context("no package store to serve; name a bundle to serve it directly")?;
                if !dir.is_dir() {
                    anyhow::bail!(
                        "there is no package store at {} (`offpack load` puts a bundle's packages there); \
                         name a bundle to serve it directly",
                        dir.display()
                    );
                }
                let store = StoreSource::new(PackageStore::at(&dir)).with_context(|| {
                    format!("cannot read the package store at {}", dir.display())
                })?;
                (Arc::new(store), dir, None)
            }
        };
    let packages = source.packages();
    let count = |ecosystem: &str| packages.iter().filter(|p| p.ecosystem == ecosystem).count();
    let (pypi, npm) = (count("pypi"), count("npm"));
    let server = PackageServer::start(source, request.addr)?;
    Ok(Serving {
        server,
        source: path,
        bundle: request.bundle.is_some(),
        pypi,
        npm,
        signed_by,
    })
}

/// Opens `path` checking everything but the blob data ([`BundleReader::open_checked`]), then
/// reads every package's blob against its digest (packages are small next to images): a bundle
/// changed after it was written is refused before anything is served.
fn open_bundle(
    path: &Path,
    key: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<(BundleSource, Option<String>)> {
    let checked = open_checked(path, key)?;
    let signed_by = checked.signed_by.as_ref().map(|k| k.fingerprint());
    let reader = checked.reader;
    let packages = reader.manifest().packages.clone();
    let total: u64 = packages.iter().map(|p| p.size).sum();
    let task = reporter.start(
        &format!("check the packages of {}", path.display()),
        Some(total),
    );
    let mut done = 0;
    for package in &packages {
        check_package(&reader, package, &mut |n| {
            done += n;
            reporter.progress(task, done);
        })
        .map_err(|e| {
            anyhow::Error::new(CheckFailed(format!(
                "{}: {} package {} {} ({}): {e}; refused, nothing is served",
                path.display(),
                escape_controls(&package.ecosystem),
                escape_controls(&package.name),
                escape_controls(&package.version),
                escape_controls(&package.filename),
            )))
        })?;
    }
    reporter.finish(task, &format!("{} packages ok", packages.len()));
    Ok((BundleSource::new(reader), signed_by))
}

/// Opens `path` with [`BundleReader::open_checked`] (and `key`, when given): a bundle that
/// fails is refused, naming the bundle.
pub(crate) fn open_checked(path: &Path, key: Option<&Path>) -> Result<CheckedBundle> {
    let key = key.map(read_public_key).transpose()?;
    BundleReader::open_checked(path, key.as_ref()).map_err(|e| {
        if e.is_corruption() {
            anyhow::Error::new(e).context(format!("{}: refused, nothing is served", path.display()))
        } else {
            e.into()
        }
    })
}

/// Reads a package's blob to its end: the reader checks size and digest there.
fn check_package(
    reader: &BundleReader,
    package: &Package,
    progress: &mut dyn FnMut(u64),
) -> Result<(), io::Error> {
    let mut blob = reader.blob(&package.digest).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        match blob.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                len += n as u64;
                progress(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len != package.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, the manifest says {}", package.size),
        ));
    }
    Ok(())
}
