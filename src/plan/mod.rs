//! The plan: everything the far side will need for a compose project, and what will break offline.
//!
//! Pure logic over the loaded compose project and the Dockerfiles' text; files are read through
//! [`ProjectFiles`] so that tests need neither a disk layout nor a daemon.

mod model;

pub use model::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use offpack_compose::{BuildContext, DockerfileSource, Project, Service};
use offpack_dockerfile::{ImageRef, ResolveOptions, UseKind};

/// Reads the files a plan needs (Dockerfiles, the list of files in a build context).
pub trait ProjectFiles {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
    /// Relative, `/`-separated paths of the files under `dir`, at most `max_depth` levels deep.
    fn list(&self, dir: &Path, max_depth: usize) -> Vec<String>;
}

/// The real file system.
pub struct Disk;

impl ProjectFiles for Disk {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        fs_err::read_to_string(path)
    }

    fn list(&self, dir: &Path, max_depth: usize) -> Vec<String> {
        let mut files = Vec::new();
        let walk = walkdir::WalkDir::new(dir)
            .max_depth(max_depth)
            .sort_by_file_name();
        for entry in walk
            .into_iter()
            .filter_entry(|e| !is_dependency_dir(e.file_name()))
            .flatten()
        {
            if entry.file_type().is_file()
                && let Ok(relative) = entry.path().strip_prefix(dir)
            {
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
        files
    }
}

fn is_dependency_dir(name: &std::ffi::OsStr) -> bool {
    matches!(
        name.to_str(),
        Some("node_modules" | ".git" | ".venv" | "venv" | "__pycache__" | "target")
    )
}

/// Package manifests and lockfiles offpack looks for in a build context.
const PACKAGE_FILES: &[(&str, &str)] = &[
    ("requirements", "pip"),
    ("pyproject.toml", "pip"),
    ("poetry.lock", "pip"),
    ("uv.lock", "pip"),
    ("Pipfile.lock", "pip"),
    ("package.json", "npm"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
    ("yarn.lock", "npm"),
    ("pnpm-lock.yaml", "npm"),
];

fn package_manager_of(file: &str) -> Option<&'static str> {
    let name = file.rsplit('/').next().unwrap_or(file);
    PACKAGE_FILES.iter().find_map(|(pattern, manager)| {
        let hit = if *pattern == "requirements" {
            name.starts_with("requirements") && name.ends_with(".txt")
        } else {
            name == *pattern
        };
        hit.then_some(*manager)
    })
}

/// `name` as Docker shows it, with its tag (`node` → `node:latest`): the form the bundle records
/// and `docker load` accepts.
pub fn familiar_name(name: &str) -> Result<String> {
    Ok(ImageRef::parse(name)
        .with_context(|| format!("invalid image reference `{name}`"))?
        .familiar())
}

/// The platform offpack plans for when a service names none.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// Makes the plan of `project`.
pub fn make_plan(project: &Project, files: &dyn ProjectFiles) -> Result<Plan> {
    let mut services = Vec::new();
    let mut images: BTreeMap<String, PlannedImage> = BTreeMap::new();
    let mut findings = Vec::new();
    for service in project.services.values() {
        let plan = plan_service(project, service, files, &mut findings)?;
        if plan.active {
            for (reference, role, aliases) in plan.images_needed() {
                let entry = images
                    .entry(reference.clone())
                    .or_insert_with(|| PlannedImage {
                        reference: reference.clone(),
                        role,
                        aliases: BTreeSet::new(),
                        used_by: BTreeSet::new(),
                    });
                entry.used_by.insert(service.name.clone());
                entry.aliases.extend(aliases);
            }
        }
        services.push(plan);
    }
    findings.sort_by(|a, b| {
        (&a.service, &a.file, a.line, a.code).cmp(&(&b.service, &b.file, b.line, b.code))
    });
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        project: project.name.clone(),
        project_directory: project.project_directory.clone(),
        compose_files: project.files.clone(),
        services,
        images: images.into_values().collect(),
        findings,
    })
}

fn plan_service(
    project: &Project,
    service: &Service,
    files: &dyn ProjectFiles,
    findings: &mut Vec<PlanFinding>,
) -> Result<ServicePlan> {
    let image = familiar_name(&service.image_name(&project.name))
        .with_context(|| format!("service {}", service.name))?;
    let platform = service
        .platform
        .clone()
        .unwrap_or_else(|| DEFAULT_PLATFORM.to_string());
    let mut plan = ServicePlan {
        name: service.name.clone(),
        active: service.active,
        image: image.clone(),
        image_from_compose: service.image.is_some(),
        platform: platform.clone(),
        pull_policy: service.pull_policy.clone(),
        build: None,
    };
    let Some(build) = &service.build else {
        let reference = ImageRef::parse(&image).with_context(|| {
            format!(
                "service {}: invalid image reference `{image}`",
                service.name
            )
        })?;
        if reference.tag.as_deref() == Some("latest")
            && reference.digest.is_none()
            && service.active
        {
            findings.push(PlanFinding {
                code: "OP002",
                severity: Severity::Warning,
                service: service.name.clone(),
                file: None,
                line: None,
                message: format!("service image `{image}` is not pinned: the far side may get another image than the one tested"),
                fix: format!("pin a tag or digest, e.g. `{}@sha256:...`", reference.familiar()),
            });
        }
        return Ok(plan);
    };

    let (context_dir, context_label) = match &build.context {
        BuildContext::Local(dir) => (Some(dir.clone()), dir.display().to_string()),
        BuildContext::Remote(url) => {
            findings.push(PlanFinding {
                code: "OP007",
                severity: Severity::Error,
                service: service.name.clone(),
                file: Some(build.source.file.clone()),
                line: build.source.line,
                message: format!("build context `{url}` is remote: the far side cannot fetch it"),
                fix: "check the sources out next to the compose file and use a local context"
                    .into(),
            });
            (None, url.clone())
        }
    };
    let (dockerfile_label, text) = match &build.dockerfile {
        DockerfileSource::Path(path) => {
            let text = files.read_to_string(path).with_context(|| {
                format!(
                    "service {}: cannot read its Dockerfile {}",
                    service.name,
                    path.display()
                )
            })?;
            (path.display().to_string(), Some(text))
        }
        DockerfileSource::Inline(text) => ("(dockerfile_inline)".to_string(), Some(text.clone())),
    };
    let mut build_plan = BuildPlan {
        context: context_label,
        dockerfile: dockerfile_label.clone(),
        target: build.target.clone(),
        platforms: build.platforms.clone(),
        build_args: build.args.clone(),
        cache_from: build.cache_from.clone(),
        stages: Vec::new(),
        images: Vec::new(),
        frontend: None,
        package_files: Vec::new(),
        install_steps: Vec::new(),
    };
    if let Some(text) = text {
        let dockerfile = offpack_dockerfile::parse(&text).map_err(|e| {
            anyhow::anyhow!(
                "{dockerfile_label}:{}: {} (service {})",
                e.line,
                e.message,
                service.name
            )
        })?;
        let options = ResolveOptions {
            target: build.target.as_deref(),
            build_args: &build.args,
            target_platform: &platform,
            build_platform: DEFAULT_PLATFORM,
        };
        let resolved = offpack_dockerfile::resolve(&dockerfile, &options).with_context(|| {
            format!(
                "{dockerfile_label}: cannot resolve the build of service {}",
                service.name
            )
        })?;
        build_plan.stages = resolved
            .stages_needed
            .iter()
            .filter_map(|&i| dockerfile.stages.get(i))
            .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
            .collect();
        // The classic builder (what `offpack rebuild` and compose v1 use here) builds every stage up to
        // the target, BuildKit only the reachable ones: bundle the superset.
        for used in &resolved.classic_builder_images {
            build_plan
                .images
                .push(image_source(used, &dockerfile_label));
        }
        build_plan.frontend = resolved
            .frontend
            .as_ref()
            .map(|f| image_source(f, &dockerfile_label));
        for step in &resolved.run_steps {
            if !step.installs.is_empty() {
                build_plan.install_steps.push(InstallStep {
                    line: step.line,
                    command: step.command.clone(),
                    installs: step.installs.iter().map(|i| format!("{i:?}")).collect(),
                });
            }
        }
        for finding in &resolved.findings {
            findings.push(PlanFinding {
                code: finding.code,
                severity: if finding.code == "OP003" || finding.code == "OP002" {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                service: service.name.clone(),
                file: Some(PathBuf::from(&dockerfile_label)),
                line: Some(finding.line),
                message: finding.message.clone(),
                fix: finding.fix.clone(),
            });
        }
    }
    if let Some(dir) = &context_dir {
        build_plan.package_files = files
            .list(dir, 3)
            .into_iter()
            .filter_map(|f| {
                package_manager_of(&f).map(|m| PackageFile {
                    path: f,
                    manager: m.to_string(),
                })
            })
            .collect();
    }
    for cache in &build.cache_from {
        let names_itself = cache == &image
            || ImageRef::parse(cache)
                .ok()
                .zip(ImageRef::parse(&image).ok())
                .is_some_and(|(a, b)| a == b);
        if names_itself {
            findings.push(PlanFinding {
                code: "OP006",
                severity: Severity::Error,
                service: service.name.clone(),
                file: Some(build.source.file.clone()),
                line: build.source.line,
                message: format!(
                    "`cache_from: {cache}` names the image this service builds; without a registry that has it, \
                     the build fails with \"importing cache manifest from {cache}\""
                ),
                fix: format!("remove `{cache}` from cache_from; `offpack rebuild` uses the loaded image as cache already"),
            });
        }
    }
    plan.build = Some(build_plan);
    Ok(plan)
}

fn image_source(used: &offpack_dockerfile::ImageUse, file: &str) -> ImageSource {
    let kind = match used.kind {
        UseKind::From => "from",
        UseKind::CopyFrom => "copy-from",
        UseKind::MountFrom => "mount-from",
        UseKind::Frontend => "frontend",
    };
    let mut aliases = Vec::new();
    if let Some(plain) = mirror_alias(&used.reference) {
        aliases.push(plain);
    }
    ImageSource {
        reference: used.reference.familiar(),
        written: used.written.clone(),
        kind: kind.to_string(),
        file: file.to_string(),
        line: used.line,
        aliases,
    }
}

/// `mirror.example/library/node:18` is Docker Hub's `node:18` behind a mirror prefix.
fn mirror_alias(reference: &ImageRef) -> Option<String> {
    if reference.domain == "docker.io" {
        return None;
    }
    let name = reference.path.strip_prefix("library/")?;
    let mut plain = name.to_string();
    if let Some(tag) = &reference.tag {
        plain.push(':');
        plain.push_str(tag);
    }
    if let Some(digest) = &reference.digest {
        plain.push('@');
        plain.push_str(digest);
    }
    Some(plain)
}
