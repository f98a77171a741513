//! The package side of a far-side `rebuild` (decision 0085): for each service, the package files
//! its install steps read, compared with the files the bundle's packages were resolved from (the
//! image's `dev.offpack.package-files` label). Unchanged files: nothing happens, those steps stay
//! cached. Changed files: every package they need must be in the store, else the rebuild stops
//! before building, names each missing package and writes a request file for
//! `offpack bundle --packages-for`; when all are there, the changed files are sent rewritten to
//! offpack's package server, which serves the store on the bridge gateway while the builds run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use offpack_compose::Project;
use offpack_packages::request::PackageRequest;

use crate::engine::Engine;
use crate::packages::needs::{PACKAGE_FILES_LABEL, ServicePackages, parse_label};
use crate::packages::serve::PackageServer;
use crate::packages::serving::{MissingPackage, ServerUrl, plan_serving};
use crate::packages::source::StoreSource;
use crate::packages::store::{PackageStore, StoredPackage};
use crate::plan::ServicePlan;
use crate::rebuild::PreparedBuild;
use crate::rebuild::packages::{service_packages, set_package_files_label};
use crate::reporter::Reporter;

/// The port the package server listens on unless `OFFPACK_PACKAGE_PORT` says otherwise. Fixed, so
/// that a rewritten file is the same at every rebuild and its `COPY` stays cached.
pub const DEFAULT_PACKAGE_PORT: u16 = 3149;

/// A service's build and what its package files are.
struct ServiceFiles {
    packages: ServicePackages,
    changed: BTreeSet<String>,
}

/// Labels every prepared build with its package files, and when a changed package file needs
/// serving, starts the package server and puts the rewritten files into the builds. Returns the
/// running server (dropping it stops it) or `None` when no step needs one.
pub async fn serve_changed_package_files(
    engine: &Engine,
    project: &Project,
    builds: &mut [(&ServicePlan, PreparedBuild)],
    image_ids: &BTreeMap<String, offpack_bundle::Digest>,
    request_file: &Path,
    reporter: &dyn Reporter,
) -> Result<Option<PackageServer>> {
    let mut files = Vec::new();
    for (plan, prepared) in builds.iter_mut() {
        let service = &project.services[&plan.name];
        let packages = service_packages(service, plan)?;
        let current = engine.image(&prepared.request.tags[0]).await?;
        let carried = current
            .as_ref()
            .and_then(|image| image.labels.get(PACKAGE_FILES_LABEL).cloned());
        let changed = match carried.as_deref().and_then(parse_label) {
            Some(baseline) => {
                // Carried forward unchanged: it names the files the bundle's packages fit.
                set_package_files_label(prepared, carried.as_deref().unwrap_or_default());
                packages.changed_since(&baseline)
            }
            None => {
                if current.is_some() && !packages.files.is_empty() {
                    reporter.warn(&format!(
                        "{}: its image has no {PACKAGE_FILES_LABEL} label (it was not built by \
                         `offpack bundle`), so offpack cannot tell which package files changed; \
                         its install steps are not served packages",
                        plan.name
                    ));
                }
                if !packages.files.is_empty() {
                    set_package_files_label(prepared, &packages.label());
                }
                BTreeSet::new()
            }
        };
        files.push(ServiceFiles { packages, changed });
    }
    if files.iter().all(|f| f.changed.is_empty()) {
        return Ok(None);
    }

    let store = PackageStore::open_default()?;
    let stored = store.list()?;
    // A changed file is named before anything is built, rather than by pip's or npm's hash
    // check halfway through a build.
    stored.iter().try_for_each(StoredPackage::check)?;
    let carried = stored.into_iter().map(|s| s.package).collect::<Vec<_>>();
    let gateway = engine.bridge_gateway().await?;
    let server = start_server(&store, gateway, reporter)?;
    let url = ServerUrl {
        host_port: server.addr().to_string(),
    };
    let ids: BTreeMap<String, String> = image_ids
        .iter()
        .map(|(reference, id)| (reference.clone(), id.to_string()))
        .collect();
    let mut missing: Vec<(String, MissingPackage)> = Vec::new();
    let mut request = PackageRequest::new(&project.name, &offpack_bundle::rfc3339_utc_now());
    for ((plan, prepared), service_files) in builds.iter_mut().zip(&files) {
        if service_files.changed.is_empty() {
            continue;
        }
        let platform = plan
            .platforms
            .first()
            .cloned()
            .unwrap_or_else(|| crate::plan::DEFAULT_PLATFORM.to_string());
        let serving = plan_serving(
            &plan.name,
            &platform,
            &service_files.packages,
            &service_files.changed,
            &carried,
            &url,
            &ids,
        )?;
        for changed in &service_files.changed {
            reporter.step(&format!(
                "{}: {changed} changed since the bundle; its install step gets packages from \
                 offpack at {}",
                plan.name,
                url.base()
            ));
        }
        missing.extend(serving.missing.into_iter().map(|m| (plan.name.clone(), m)));
        request.python.extend(serving.python_requests);
        request.npm.extend(serving.npm_requests);
        prepared.overrides = serving.overrides;
    }
    if !missing.is_empty() {
        drop(server);
        write_request(request_file, &request)?;
        let lines: Vec<String> = missing
            .iter()
            .map(|(service, m)| format!("  service {service}: {m}"))
            .collect();
        bail!(
            "cannot rebuild: the changed package files need packages that no bundle loaded here \
             carries:\n{}\nThe request is in {}. On the networked side run\n  offpack bundle \
             --packages-for {} -o more.offpack\nthen `offpack load more.offpack` here and run \
             this rebuild again.",
            lines.join("\n"),
            request_file.display(),
            request_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    Ok(Some(server))
}

/// The package server on the bridge gateway, at the fixed port when it is free.
fn start_server(
    store: &PackageStore,
    gateway: Ipv4Addr,
    reporter: &dyn Reporter,
) -> Result<PackageServer> {
    let port = match std::env::var("OFFPACK_PACKAGE_PORT") {
        Ok(value) => value
            .parse::<u16>()
            .with_context(|| format!("OFFPACK_PACKAGE_PORT={value} is not a port number"))?,
        Err(_) => DEFAULT_PACKAGE_PORT,
    };
    let source: Arc<dyn crate::packages::source::PackageSource> = Arc::new(
        StoreSource::new(store.clone())
            .with_context(|| format!("opening the package store {}", store.dir().display()))?,
    );
    let addr = SocketAddr::V4(SocketAddrV4::new(gateway, port));
    match PackageServer::start(source.clone(), addr) {
        Ok(server) => Ok(server),
        Err(e) if port != 0 => {
            reporter.warn(&format!(
                "cannot listen on {addr} ({e:#}); serving packages on another port, so the \
                 rewritten package files differ from the last rebuild's and their COPY steps run \
                 again (set OFFPACK_PACKAGE_PORT to a free port to keep them cached)"
            ));
            PackageServer::start(source, SocketAddr::V4(SocketAddrV4::new(gateway, 0)))
        }
        Err(e) => Err(e),
    }
}

/// Writes the request file atomically.
fn write_request(path: &Path, request: &PackageRequest) -> Result<()> {
    super::write_file_atomically(path, request.to_json().as_bytes())
}
