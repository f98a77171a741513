use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

/// Version of the plan's JSON schema (see docs/plan-schema.md). Bumped on incompatible changes.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub project: String,
    pub project_directory: PathBuf,
    pub compose_files: Vec<PathBuf>,
    pub services: Vec<ServicePlan>,
    /// Every image the active services need, each once, sorted by reference.
    pub images: Vec<PlannedImage>,
    pub findings: Vec<PlanFinding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub name: String,
    pub active: bool,
    /// The image the service runs: its `image:` or, for a built service, `<project>-<service>`.
    pub image: String,
    pub image_from_compose: bool,
    pub platform: String,
    pub pull_policy: Option<String>,
    pub build: Option<BuildPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub context: String,
    pub dockerfile: String,
    pub target: Option<String>,
    pub platforms: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    /// Stages the target needs, in build order (name, or index when unnamed).
    pub stages: Vec<String>,
    /// External images the needed stages use.
    pub images: Vec<ImageSource>,
    /// The `# syntax=` frontend image BuildKit needs.
    pub frontend: Option<ImageSource>,
    pub package_files: Vec<PackageFile>,
    pub install_steps: Vec<InstallStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageSource {
    /// As Docker shows it (`node:18`).
    pub reference: String,
    /// As written in the Dockerfile, before build args were substituted.
    pub written: String,
    /// `from`, `copy-from`, `mount-from` or `frontend`.
    pub kind: String,
    pub file: String,
    pub line: usize,
    /// Other names the bundle carries the image under (the plain name of a mirror-prefixed one).
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageFile {
    pub path: String,
    pub manager: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallStep {
    pub line: usize,
    pub command: String,
    pub installs: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ImageRole {
    /// A base or helper image of a build.
    Build,
    /// A service's own `image:` (pulled, not built).
    Service,
    /// The `# syntax=` frontend.
    Frontend,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub reference: String,
    pub role: ImageRole,
    pub aliases: BTreeSet<String>,
    pub used_by: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanFinding {
    pub code: &'static str,
    pub severity: Severity,
    pub service: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl ServicePlan {
    /// The images this service needs from outside the project: its `image:` when it is not
    /// built, else the external images and frontend of its build.
    pub fn images_needed(&self) -> Vec<(String, ImageRole, Vec<String>)> {
        match &self.build {
            None => vec![(self.image.clone(), ImageRole::Service, Vec::new())],
            Some(build) => {
                let mut needed: Vec<(String, ImageRole, Vec<String>)> = build
                    .images
                    .iter()
                    .map(|i| (i.reference.clone(), ImageRole::Build, i.aliases.clone()))
                    .collect();
                if let Some(frontend) = &build.frontend {
                    needed.push((
                        frontend.reference.clone(),
                        ImageRole::Frontend,
                        frontend.aliases.clone(),
                    ));
                }
                needed
            }
        }
    }
}
