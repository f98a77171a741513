//! A prepared build's package files: what its install steps read, and the label that records them.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use offpack_compose::{BuildContext, DockerfileSource, Service};

use crate::packages::needs::{
    ContextDir, PACKAGE_FILES_LABEL, ServicePackages, find_install_needs,
};
use crate::plan::ServicePlan;

use super::context::DockerfileInContext;
use super::{PreparedBuild, parse_and_resolve};

/// The install steps of `service`'s build (the stages its target needs) and their files. Reads
/// the Dockerfile and the package files, not the whole context: `bundle` also asks this of a
/// service whose existing image it carries without building.
pub fn service_packages(service: &Service, plan: &ServicePlan) -> Result<ServicePackages> {
    let Some(build) = &service.build else {
        return Ok(ServicePackages::default());
    };
    let BuildContext::Local(context_dir) = &build.context else {
        return Ok(ServicePackages::default());
    };
    let dockerfile = match &build.dockerfile {
        DockerfileSource::Path(path) => DockerfileInContext::for_path(context_dir, path)?,
        DockerfileSource::Inline(text) => DockerfileInContext::inline(text),
    };
    let label = plan
        .build
        .as_ref()
        .map(|b| b.dockerfile.as_str())
        .unwrap_or("Dockerfile");
    let text = String::from_utf8(dockerfile.read(context_dir)?)
        .map_err(|_| anyhow!("{label} is not UTF-8 text"))?;
    let (parsed, resolved) = parse_and_resolve(&text, build, service, label, plan)?;
    find_install_needs(&parsed, &resolved, &ContextDir(context_dir), label)
        .map_err(|e| e.context(format!("service {}", service.name)))
}

/// Sets the package-files label of the image `prepared` builds.
pub fn set_package_files_label(prepared: &mut PreparedBuild, value: &str) {
    prepared
        .request
        .labels
        .insert(PACKAGE_FILES_LABEL.to_string(), value.to_string());
}

/// The package-files label an image carries, read.
pub fn package_files_of(labels: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    labels
        .get(PACKAGE_FILES_LABEL)
        .and_then(|v| crate::packages::needs::parse_label(v))
}
