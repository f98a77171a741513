//! The plan: everything the far side will need for a compose project, and what will break offline.
//!
//! Pure logic over the loaded compose project and the Dockerfiles' text; files are read through
//! [`ProjectFiles`] so that tests need neither a disk layout nor a daemon.

mod model;

pub use model::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use offpack_compose::{BuildContext, DockerfileSource, Project, Service};
use offpack_dockerfile::{Builder, ImageRef, PackageInstall, ResolveOptions, UseKind};

/// Reads the files a plan needs (Dockerfiles, the list of files in a build context).
pub trait ProjectFiles {
    /// Reads a whole file of `kind`, within the kind's size limit.
    fn read_to_string(&self, path: &Path, kind: offpack_fs::Kind) -> std::io::Result<String>;
    /// Relative, `/`-separated paths of the files under `dir`, at most `max_depth` levels deep.
    fn list(&self, dir: &Path, max_depth: usize) -> Vec<String>;
    /// `path` with every symbolic link resolved, when it exists.
    fn resolve_links(&self, path: &Path) -> Option<PathBuf>;
}

/// The real file system.
pub struct Disk;

impl ProjectFiles for Disk {
    fn read_to_string(&self, path: &Path, kind: offpack_fs::Kind) -> std::io::Result<String> {
        offpack_fs::read_to_string(path, kind).map_err(std::io::Error::other)
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

    fn resolve_links(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
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
            let in_requirements_dir = file.split('/').rev().nth(1) == Some("requirements");
            name.ends_with(".txt")
                && (name.starts_with("requirements")
                    || name.starts_with("constraints")
                    || in_requirements_dir)
        } else {
            name == *pattern
        };
        hit.then_some(*manager)
    })
}

/// The active services that build an image, ordered so that a service whose Dockerfile uses an
/// image another service builds comes after that service.
pub fn build_order(plan: &Plan) -> Result<Vec<&ServicePlan>> {
    let builds: Vec<&ServicePlan> = plan
        .services
        .iter()
        .filter(|s| s.active && s.build.is_some())
        .collect();
    let mut ordered: Vec<&ServicePlan> = Vec::with_capacity(builds.len());
    let mut pending = builds.clone();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|service| {
            let ready = service
                .build
                .iter()
                .flat_map(|b| b.images.iter())
                .filter_map(|i| i.built_by.as_deref())
                .filter(|by| *by != service.name)
                .all(|by| {
                    ordered.iter().any(|done| done.name == by)
                        || !builds.iter().any(|b| b.name == by)
                });
            if ready {
                ordered.push(service);
            }
            !ready
        });
        if pending.len() == before {
            let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!(
                "services {} build from each other's images in a cycle; break the cycle in their Dockerfiles",
                names.join(", ")
            );
        }
    }
    Ok(ordered)
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

/// Makes the plan of `project` for building with `builder`: BuildKit builds only the stages a
/// target reaches, the classic builder every stage up to it (decision 0080).
pub fn make_plan(project: &Project, files: &dyn ProjectFiles, builder: Builder) -> Result<Plan> {
    let mut planner = Planner {
        project,
        files,
        builder,
        findings: Vec::new(),
    };
    let mut services = Vec::new();
    for service in project.services.values() {
        services.push(planner.service(service)?);
    }
    let mut findings = planner.findings;
    // Inactive services are planned (the table shows them) but not bundled: their findings
    // would only be noise.
    findings.retain(|f| services.iter().any(|s| s.active && s.name == f.service));
    let built = built_images(project, &services);
    mark_built_images(&mut services, &built, &mut findings);

    let mut images: BTreeMap<String, PlannedImage> = BTreeMap::new();
    for service in services.iter().filter(|s| s.active) {
        for needed in service.images_needed() {
            let entry = images
                .entry(needed.reference.clone())
                .or_insert_with(|| PlannedImage {
                    reference: needed.reference.clone(),
                    role: needed.role,
                    aliases: BTreeSet::new(),
                    platforms: BTreeSet::new(),
                    used_by: BTreeSet::new(),
                });
            entry.role = entry.role.min(needed.role);
            entry.used_by.insert(service.name.clone());
            entry.aliases.extend(needed.aliases);
            entry.platforms.extend(needed.platforms);
        }
    }
    findings.sort_by(|a, b| {
        (&a.service, &a.file, a.line, a.code, &a.message)
            .cmp(&(&b.service, &b.file, b.line, b.code, &b.message))
    });
    // One finding per rule and subject at each place.
    findings.dedup_by(|a, b| {
        (&a.service, &a.file, a.line, a.code, &a.subject)
            == (&b.service, &b.file, b.line, b.code, &b.subject)
    });
    let directory = &project.project_directory;
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        project: project.name.clone(),
        project_directory: directory.clone(),
        compose_files: project
            .files
            .iter()
            .map(|f| PathBuf::from(relative(directory, f)))
            .collect(),
        builder,
        services,
        images: images.into_values().collect(),
        findings,
        warnings: project.warnings.clone(),
    })
}

/// `path` relative to `base` (`/`-separated) when inside it, else as is.
fn relative(base: &Path, path: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(inside) if inside.as_os_str().is_empty() => ".".to_string(),
        Ok(inside) => inside.to_string_lossy().replace('\\', "/"),
        Err(_) => path.display().to_string(),
    }
}

/// Names of the images the active services build (their image and `build.tags`), with the
/// service building each.
fn built_images(project: &Project, services: &[ServicePlan]) -> BTreeMap<String, String> {
    let mut built = BTreeMap::new();
    for plan in services.iter().filter(|s| s.active && s.build.is_some()) {
        built
            .entry(plan.image.clone())
            .or_insert_with(|| plan.name.clone());
        let tags = project
            .services
            .get(&plan.name)
            .and_then(|s| s.build.as_ref())
            .map(|b| b.tags.as_slice())
            .unwrap_or_default();
        for tag in tags {
            if let Ok(name) = familiar_name(tag) {
                built.entry(name).or_insert_with(|| plan.name.clone());
            }
        }
    }
    built
}

/// Images the project builds are not pulled: a service sharing a built service's `image:` is
/// built (compose's `isServiceImageToBuild`), and a Dockerfile that uses such an image gets it
/// from that build. Unpinned-image findings do not apply to them.
fn mark_built_images(
    services: &mut [ServicePlan],
    built: &BTreeMap<String, String>,
    findings: &mut Vec<PlanFinding>,
) {
    for service in services.iter_mut() {
        if service.build.is_none()
            && let Some(builder) = built.get(&service.image)
        {
            service.acquire = Acquire::Build;
            service.built_by = Some(builder.clone());
            findings.retain(|f| {
                !(f.service == service.name
                    && f.code == Code::UNPINNED
                    && f.subject == Subject::field("image"))
            });
        }
        let name = service.name.clone();
        let Some(build) = service.build.as_mut() else {
            continue;
        };
        for image in &mut build.images {
            let Some(builder) = built.get(&image.reference) else {
                continue;
            };
            if builder == &name {
                continue;
            }
            image.built_by = Some(builder.clone());
            let (file, line) = (PathBuf::from(&image.file), Some(image.line));
            let subject = Subject::dockerfile_image(&image.written);
            findings.retain(|f| {
                !(f.service == name
                    && f.code == Code::UNPINNED
                    && f.file.as_ref() == Some(&file)
                    && f.line == line
                    && f.subject == subject)
            });
        }
    }
}

/// The fix for an unpinned image: how to find the digest to pin. The plan cannot name the digest
/// itself: it reads files only, and the engine knows a repository digest only for an image it
/// pulled (a loaded one carries none), which is after the plan was shown.
fn pin_fix(familiar: &str) -> String {
    let repository = ImageRef::parse(familiar)
        .map_or_else(|_| familiar.to_string(), |parsed| parsed.familiar_name());
    format!(
        "pin the digest the plan resolves it to: `{repository}:<version>@sha256:<digest>`; after `offpack bundle`, \
         `docker image inspect --format '{{{{index .RepoDigests 0}}}}' {familiar}` prints it"
    )
}

struct Planner<'a> {
    project: &'a Project,
    files: &'a dyn ProjectFiles,
    builder: Builder,
    findings: Vec<PlanFinding>,
}

/// The Dockerfile of a build, read and parsed.
struct ParsedDockerfile {
    label: String,
    dockerfile: offpack_dockerfile::Dockerfile,
}

impl<'a> Planner<'a> {
    fn relative(&self, path: &Path) -> String {
        relative(&self.project.project_directory, path)
    }

    /// True when `path`, its links resolved, lies outside the project directory: it does not
    /// travel with the project's source, and its text is not offpack's to show.
    fn outside_project(&self, path: &Path) -> bool {
        let directory = &self.project.project_directory;
        let directory = self.files.resolve_links(directory);
        let directory = directory
            .as_deref()
            .unwrap_or(&self.project.project_directory);
        let resolved = self.files.resolve_links(path);
        !resolved.as_deref().unwrap_or(path).starts_with(directory)
    }

    /// OP009 for a Dockerfile or build context (`what`) outside the project directory.
    fn outside_project_finding(
        &mut self,
        service: &str,
        build: &offpack_compose::Build,
        what: &str,
        path: &Path,
    ) {
        let resolved = self
            .files
            .resolve_links(path)
            .filter(|resolved| resolved != path)
            .map(|resolved| format!(" (a link to {})", resolved.display()))
            .unwrap_or_default();
        let field = if what == "Dockerfile" {
            "build.dockerfile"
        } else {
            "build.context"
        };
        self.finding(
            Code::OutsideProject,
            service,
            Some((&build.source.file, build.source.line)),
            Subject::field(field),
            format!(
                "the {what} `{}`{resolved} lies outside the project directory: it does not travel with the project's source",
                self.relative(path)
            ),
            format!("move the {what} into the project directory, or carry it to the far side yourself"),
        );
    }

    /// Adds a finding with its rule's default severity; the caller may change it.
    fn finding(
        &mut self,
        code: Code,
        service: &str,
        place: Option<(&Path, Option<usize>)>,
        subject: Subject,
        message: String,
        fix: String,
    ) -> &mut PlanFinding {
        let (file, line) = match place {
            Some((file, line)) => (Some(PathBuf::from(self.relative(file))), line),
            None => (None, None),
        };
        self.findings.push(PlanFinding {
            code,
            subject,
            severity: code.default_severity(),
            service: service.to_string(),
            file,
            line,
            message,
            fix,
        });
        self.findings.last_mut().expect("a finding was just pushed")
    }

    /// Where `services.<service>.<field>` is written (the compose crate's precedence).
    fn locate(&self, service: &str, field: &str) -> Option<(&'a Path, Option<usize>)> {
        let location = self.project.field_locations.field(service, field)?;
        Some((location.file.as_path(), location.line))
    }

    fn service(&mut self, service: &Service) -> Result<ServicePlan> {
        let written_image = service.image_name(&self.project.name);
        let image = match familiar_name(&written_image) {
            Ok(image) => image,
            // docker compose neither pulls nor builds the image of a service whose profile is
            // not active, so a name only such a service uses must not stop the plan.
            Err(_) if !service.active => written_image,
            Err(e) => {
                return Err(e.context(format!(
                    "service {}: its image name is not a valid reference",
                    service.name
                )));
            }
        };
        let platforms = match (&service.platform, &service.build) {
            (Some(platform), _) => vec![platform.clone()],
            (None, Some(build)) if !build.platforms.is_empty() => {
                let mut all = build.platforms.clone();
                all.dedup();
                all
            }
            _ => vec![DEFAULT_PLATFORM.to_string()],
        };
        let acquire = match (&service.build, service.pull_policy.as_deref()) {
            (Some(_), _) => Acquire::Build,
            (None, Some("never")) => Acquire::Local,
            (None, _) => Acquire::Pull,
        };
        let mut plan = ServicePlan {
            name: service.name.clone(),
            active: service.active,
            profiles: service.profiles.clone(),
            image: image.clone(),
            image_from_compose: service.image.is_some(),
            acquire,
            built_by: None,
            platform: service.platform.clone(),
            platforms,
            pull_policy: service.pull_policy.clone(),
            build: None,
        };
        if service.active {
            self.pull_policy_findings(service, &plan);
        }
        let Some(build) = &service.build else {
            if !service.active {
                return Ok(plan);
            }
            let reference = ImageRef::parse(&image).with_context(|| {
                format!(
                    "service {}: invalid image reference `{image}`",
                    service.name
                )
            })?;
            if reference.digest.is_none() && reference.tag.as_deref() == Some("latest") {
                let written = service.image.as_deref().unwrap_or(&image);
                let fix = pin_fix(&image);
                let place = self.locate(&service.name, "image");
                self.finding(
                    Code::UNPINNED,
                    &service.name,
                    place,
                    Subject::field("image"),
                    format!(
                        "service image `{written}` is not pinned ({}): the far side may get another image than the one tested",
                        if written.ends_with(":latest") { "`latest`" } else { "no tag, so `latest`" }
                    ),
                    fix,
                );
            }
            return Ok(plan);
        };
        plan.build = Some(self.build(service, build, &image, &plan.platforms)?);
        Ok(plan)
    }

    /// Pull policies that make `docker compose up` pull even when the image is loaded.
    fn pull_policy_findings(&mut self, service: &Service, plan: &ServicePlan) {
        let Some(policy) = service.pull_policy.as_deref() else {
            return;
        };
        let fix = "set `pull_policy: missing` (or remove it) for the air-gapped side, e.g. in a compose \
                   override file, so that the loaded image is used";
        if policy == "build" {
            if service.build.is_some() {
                // compose v2 builds a `pull_policy: build` service on every `up`, even when
                // its image is present (compose's `build.go`).
                let place = self.locate(&service.name, "pull_policy");
                self.finding(
                    Code::PullPolicy,
                    &service.name,
                    place,
                    Subject::field("pull_policy"),
                    format!(
                        "`pull_policy: build` makes docker compose rebuild `{}` on every `up`, even when the bundle loaded it; \
                         offline that rebuild works only if each step is cached or needs no network",
                        plan.image
                    ),
                    format!("{fix}; rebuild on purpose with `offpack rebuild {}`", service.name),
                );
            }
            return;
        }
        let periodic =
            matches!(policy, "daily" | "weekly" | "refresh") || policy.starts_with("every_");
        if policy != "always" && !periodic {
            return;
        }
        let (severity, when, consequence) = match (periodic, service.build.is_some()) {
            (false, false) => (
                Severity::Error,
                "on every `up`",
                "the pull fails offline and `up` stops",
            ),
            (false, true) => (
                Severity::Warning,
                "on every `up`",
                "the pull fails offline and compose falls back to building it",
            ),
            (true, false) => (
                Severity::Warning,
                "periodically",
                "once a pull is due, it fails offline and `up` stops",
            ),
            (true, true) => (
                Severity::Warning,
                "periodically",
                "once a pull is due, it fails offline and compose falls back to building it",
            ),
        };
        let place = self.locate(&service.name, "pull_policy");
        self.finding(
            Code::PullPolicy,
            &service.name,
            place,
            Subject::field("pull_policy"),
            format!(
                "`pull_policy: {policy}` makes docker compose pull `{}` {when} even when the bundle loaded it; {consequence}",
                plan.image
            ),
            fix.into(),
        )
        .severity = severity;
    }

    fn build(
        &mut self,
        service: &Service,
        build: &offpack_compose::Build,
        image: &str,
        platforms: &[String],
    ) -> Result<BuildPlan> {
        let compose_file = build.source.file.clone();
        let compose_line = build.source.line;
        let context_dir = match &build.context {
            BuildContext::Local(dir) => {
                if self.outside_project(dir) {
                    self.outside_project_finding(&service.name, build, "build context", dir);
                }
                Some(dir.clone())
            }
            BuildContext::Remote(url) => {
                self.finding(
                    Code::RemoteContext,
                    &service.name,
                    Some((&compose_file, compose_line)),
                    Subject::field("build.context"),
                    format!("build context `{url}` is remote: the far side cannot fetch it"),
                    "check the sources out next to the compose file and use a local context".into(),
                );
                None
            }
        };
        let context = match &build.context {
            BuildContext::Local(dir) => self.relative(dir),
            BuildContext::Remote(url) => url.clone(),
        };
        let mut plan = BuildPlan {
            builder: self.builder,
            needs_buildkit: Vec::new(),
            context,
            dockerfile: String::new(),
            target: build.target.clone(),
            platforms: build.platforms.clone(),
            build_args: build.args.clone(),
            cache_from: build.cache_from.clone(),
            additional_contexts: build
                .additional_contexts
                .iter()
                .map(|(name, value)| (name.clone(), self.context_value(value)))
                .collect(),
            ssh: build.ssh.clone(),
            secrets: build.secrets.clone(),
            stages: Vec::new(),
            images: Vec::new(),
            frontend: None,
            package_files: Vec::new(),
            install_steps: Vec::new(),
        };
        // Errors quote the text of a Dockerfile, which a link may take anywhere (`/etc/shadow`).
        let mut hide_text = false;
        let parsed = match &build.dockerfile {
            DockerfileSource::Path(path) => match &build.context {
                BuildContext::Local(_) => {
                    if self.outside_project(path) {
                        self.outside_project_finding(&service.name, build, "Dockerfile", path);
                        hide_text = true;
                    }
                    let text = self
                        .files
                        .read_to_string(path, offpack_fs::DOCKERFILE)
                        .with_context(|| {
                        format!(
                            "service {}: cannot read its Dockerfile {}; check `build.dockerfile` and `build.context`",
                            service.name,
                            path.display()
                        )
                    })?;
                    let label = self.relative(path);
                    Some((label, text))
                }
                // Inside a remote context: offpack cannot read it (OP007 says so).
                BuildContext::Remote(_) => None,
            },
            DockerfileSource::Inline(text) => {
                Some(("(dockerfile_inline)".to_string(), text.clone()))
            }
        };
        plan.dockerfile = match (&parsed, &build.dockerfile) {
            (Some((label, _)), _) => label.clone(),
            (None, DockerfileSource::Path(path)) => path.display().to_string(),
            (None, DockerfileSource::Inline(_)) => "(dockerfile_inline)".to_string(),
        };
        if let Some((label, text)) = parsed {
            let hidden = |label: &str, line: Option<usize>| {
                anyhow::anyhow!(
                    "{label}{}: not a Dockerfile offpack can read (service {}); the file lies outside the project directory, \
                     so offpack does not show its text: check `build.dockerfile` and `build.context`",
                    line.map(|l| format!(":{l}")).unwrap_or_default(),
                    service.name
                )
            };
            let dockerfile = offpack_dockerfile::parse(&text).map_err(|e| {
                if hide_text {
                    return hidden(&label, Some(e.line));
                }
                anyhow::anyhow!(
                    "{label}:{}: {} (service {})",
                    e.line,
                    e.message,
                    service.name
                )
            })?;
            let parsed = ParsedDockerfile { label, dockerfile };
            let resolved = self.resolve_dockerfile(service, build, &parsed, platforms, &mut plan);
            if hide_text {
                resolved.map_err(|_| hidden(&parsed.label, None))?;
            } else {
                resolved?;
            }
        }
        self.additional_context_images(service, build, platforms, &mut plan)?;
        if let Some(dir) = &context_dir {
            let mut package_files: Vec<PackageFile> = self
                .files
                .list(dir, 3)
                .into_iter()
                .filter_map(|f| {
                    package_manager_of(&f).map(|m| PackageFile {
                        path: f,
                        manager: m.to_string(),
                    })
                })
                .collect();
            package_files.sort_by(|a, b| a.path.cmp(&b.path));
            plan.package_files = package_files;
        }
        self.cache_from_findings(service, build, image);
        Ok(plan)
    }

    /// A named context's value as the plan shows it: local paths relative, the rest as written.
    fn context_value(&self, value: &str) -> String {
        let path = Path::new(value);
        if path.is_absolute() {
            self.relative(path)
        } else {
            value.to_string()
        }
    }

    fn resolve_dockerfile(
        &mut self,
        service: &Service,
        build: &offpack_compose::Build,
        parsed: &ParsedDockerfile,
        platforms: &[String],
        plan: &mut BuildPlan,
    ) -> Result<()> {
        let label = &parsed.label;
        let dockerfile = &parsed.dockerfile;
        let mut findings: Vec<offpack_dockerfile::Finding> = Vec::new();
        for (n, platform) in platforms.iter().enumerate() {
            let options = ResolveOptions {
                target: build.target.as_deref(),
                build_args: &build.args,
                target_platform: platform,
                build_platform: DEFAULT_PLATFORM,
            };
            let resolved =
                offpack_dockerfile::resolve(dockerfile, &options).map_err(|e| match e {
                    offpack_dockerfile::ResolveError::At { line, message } => {
                        anyhow::anyhow!("{label}:{line}: {message} (service {})", service.name)
                    }
                    other => anyhow::anyhow!(
                        "{label}: cannot resolve the build of service {}: {other}",
                        service.name
                    ),
                })?;
            if n == 0 {
                plan.stages = resolved
                    .stages_needed
                    .iter()
                    .filter_map(|&i| dockerfile.stages.get(i))
                    .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
                    .collect();
                for step in &resolved.run_steps {
                    if !step.installs.is_empty() {
                        plan.install_steps.push(InstallStep {
                            line: step.line,
                            command: step.command.clone(),
                            installs: step.installs.iter().map(describe_install).collect(),
                        });
                    }
                }
                plan.needs_buildkit = resolved.classic_builder_features.clone();
                self.builder_findings(service, label, dockerfile, &resolved);
            }
            // BuildKit builds only the stages the target reaches; the classic builder (compose
            // v1, DOCKER_BUILDKIT=0) every stage up to the target, so it needs the superset.
            let used_images = match self.builder {
                Builder::BuildKit => &resolved.images,
                Builder::Classic => &resolved.classic_builder_images,
            };
            for used in used_images {
                let image_platform = used.platform.clone().unwrap_or_else(|| platform.clone());
                if named_context(&build.additional_contexts, &used.reference).is_some() {
                    // BuildKit takes a `FROM`/`--from` that names an additional context from
                    // that context, never from a registry.
                    continue;
                }
                add_source(&mut plan.images, image_source(used, label), &image_platform);
            }
            if let Some(frontend) = &resolved.frontend {
                let source = image_source(frontend, label);
                match &mut plan.frontend {
                    Some(existing) => push_unique(&mut existing.platforms, DEFAULT_PLATFORM),
                    None => {
                        let mut source = source;
                        source.platforms = vec![DEFAULT_PLATFORM.to_string()];
                        plan.frontend = Some(source);
                    }
                }
            }
            let mut platform_findings = resolved.findings.clone();
            if n == 0 && self.builder == Builder::Classic {
                platform_findings.extend(classic_only_findings(dockerfile, &resolved, &options));
            }
            for finding in platform_findings {
                let replaced = resolved
                    .classic_builder_images
                    .iter()
                    .filter(|u| u.line == finding.line)
                    .filter(|u| named_context(&build.additional_contexts, &u.reference).is_some())
                    .any(|u| names_image(&finding.subject, &u.written));
                if !replaced && !findings.contains(&finding) {
                    findings.push(finding);
                }
            }
        }
        for finding in findings {
            let code = Code::from(finding.code);
            let unpinned_image = (code == Code::UNPINNED)
                .then(|| {
                    plan.images.iter().find(|i| {
                        i.line == finding.line && names_image(&finding.subject, &i.written)
                    })
                })
                .flatten();
            let fix = match unpinned_image {
                Some(image) => pin_fix(&image.reference),
                None => finding.fix,
            };
            self.findings.push(PlanFinding {
                code,
                subject: Subject::Dockerfile(finding.subject),
                severity: code.default_severity(),
                service: service.name.clone(),
                file: Some(PathBuf::from(label)),
                line: Some(finding.line),
                message: finding.message,
                fix,
            });
        }
        Ok(())
    }

    /// OP010 for each BuildKit-only feature the classic builder would meet, when it is the
    /// builder; OP011 under BuildKit for each feature the frontend built into Docker Engine 20.10
    /// rejects, when no `# syntax=` line names a newer frontend.
    fn builder_findings(
        &mut self,
        service: &Service,
        label: &str,
        dockerfile: &offpack_dockerfile::Dockerfile,
        resolved: &offpack_dockerfile::Resolved,
    ) {
        let file = PathBuf::from(label);
        match self.builder {
            Builder::Classic => {
                for feature in &resolved.classic_builder_features {
                    self.findings.push(PlanFinding {
                        code: Code::NeedsBuildKit,
                        subject: Subject::BuildKitFeature(feature.feature),
                        severity: Code::NeedsBuildKit.default_severity(),
                        service: service.name.clone(),
                        file: Some(file.clone()),
                        line: Some(feature.line),
                        message: format!(
                            "`{}` needs BuildKit: the classic builder refuses it",
                            feature.feature
                        ),
                        fix: "build with BuildKit: `--builder buildkit` (or `--builder auto` on an engine that has it)"
                            .into(),
                    });
                }
            }
            Builder::BuildKit => {
                if dockerfile.directives.syntax.is_some() {
                    return;
                }
                let Some(newest) =
                    offpack_dockerfile::newest_frontend_needed(&resolved.frontend_features)
                else {
                    return;
                };
                let engine = newer_engine(&newest);
                for feature in &resolved.frontend_features {
                    let needed = feature.needs_frontend.unwrap_or_default();
                    self.findings.push(PlanFinding {
                        code: Code::NeedsNewerFrontend,
                        subject: Subject::BuildKitFeature(feature.feature),
                        severity: Code::NeedsNewerFrontend.default_severity(),
                        service: service.name.clone(),
                        file: Some(file.clone()),
                        line: Some(feature.line),
                        message: format!(
                            "`{}` needs Dockerfile frontend ≥{needed}: the one built into Docker Engine 20.10 ({}) rejects it, \
                             and there is no `# syntax=` line naming a newer one",
                            feature.feature,
                            offpack_dockerfile::DOCKER_20_10_FRONTEND
                        ),
                        fix: format!(
                            "add `# syntax=docker/dockerfile:{newest}` as the Dockerfile's first line and bundle it, or {engine}"
                        ),
                    });
                }
            }
        }
    }

    /// `additional_contexts` that are images (`docker-image://ref`) are pulled by BuildKit: carry them.
    fn additional_context_images(
        &mut self,
        service: &Service,
        build: &offpack_compose::Build,
        platforms: &[String],
        plan: &mut BuildPlan,
    ) -> Result<()> {
        let compose_file = build.source.file.clone();
        let label = self.relative(&compose_file);
        for (name, value) in &build.additional_contexts {
            if let Some(reference) = value.strip_prefix("docker-image://") {
                match ImageRef::parse(reference) {
                    Ok(parsed) => {
                        let mut aliases = Vec::new();
                        if let Some(plain) = mirror_alias(&parsed) {
                            aliases.push(plain);
                        }
                        let source = ImageSource {
                            reference: parsed.familiar(),
                            written: value.clone(),
                            kind: "additional-context".into(),
                            file: label.clone(),
                            line: build.source.line.unwrap_or(0),
                            platforms: Vec::new(),
                            aliases,
                            built_by: None,
                        };
                        for platform in platforms {
                            add_source(&mut plan.images, source.clone(), platform);
                        }
                    }
                    Err(e) => bail!(
                        "{}{}: service {}: additional context `{name}: {value}` is not a valid image reference ({}); fix the reference after `docker-image://`",
                        label,
                        build
                            .source
                            .line
                            .map(|l| format!(":{l}"))
                            .unwrap_or_default(),
                        service.name,
                        e.reason
                    ),
                }
            } else if let Some(other) = value.strip_prefix("service:") {
                // BuildKit gets the other service's image (compose builds that service first).
                let Some(other_service) = self.project.services.get(other) else {
                    bail!(
                        "{}{}: service {}: additional context `{name}: {value}` names no service of this project; define `{other}` or fix the name",
                        label,
                        build
                            .source
                            .line
                            .map(|l| format!(":{l}"))
                            .unwrap_or_default(),
                        service.name,
                    );
                };
                let reference = familiar_name(&other_service.image_name(&self.project.name))
                    .with_context(|| {
                        format!("service {other}: its image name is not a valid reference")
                    })?;
                let source = ImageSource {
                    reference,
                    written: value.clone(),
                    kind: "additional-context".into(),
                    file: label.clone(),
                    line: build.source.line.unwrap_or(0),
                    platforms: Vec::new(),
                    aliases: Vec::new(),
                    built_by: None,
                };
                for platform in platforms {
                    add_source(&mut plan.images, source.clone(), platform);
                }
            } else if Path::new(value).is_absolute() {
                // A local directory: part of the project's files.
            } else {
                self.finding(
                    Code::RemoteContext,
                    &service.name,
                    Some((&compose_file, build.source.line)),
                    Subject::entry("build.additional_contexts", name),
                    format!("additional context `{name}: {value}` is remote: the far side cannot fetch it"),
                    "check it out next to the compose file and name the local directory instead".into(),
                );
            }
        }
        Ok(())
    }

    fn cache_from_findings(
        &mut self,
        service: &Service,
        build: &offpack_compose::Build,
        image: &str,
    ) {
        let own = ImageRef::parse(image).ok();
        for cache in &build.cache_from {
            let named = cache_image(cache);
            let names_itself = named == image
                || own
                    .as_ref()
                    .zip(ImageRef::parse(named).ok())
                    .is_some_and(|(a, b)| *a == b);
            if names_itself {
                self.finding(
                    Code::CacheFromItself,
                    &service.name,
                    Some((&build.source.file, build.source.line)),
                    Subject::entry("build.cache_from", cache),
                    format!(
                        "`cache_from: {cache}` names the image this service builds; without a registry that has it, \
                         the build fails with \"importing cache manifest from {named}\""
                    ),
                    format!("remove `{cache}` from cache_from; `offpack rebuild` uses the loaded image as cache already"),
                );
            }
        }
    }
}

/// What a far side without a `# syntax=` line needs for frontend `newest`: Docker Engine 23.0
/// carries BuildKit 0.10, whose built-in frontend is Dockerfile 1.4 (decision 0080); for newer
/// ones offpack names no engine version it has not checked.
fn newer_engine(newest: &str) -> String {
    let (major, minor) = newest.split_once('.').unwrap_or((newest, "0"));
    let covered_by_23 = !newest.ends_with("-labs")
        && major == "1"
        && minor.parse::<u32>().is_ok_and(|minor| minor <= 4);
    if covered_by_23 {
        "the far side's engine must be Docker ≥ 23".to_string()
    } else {
        format!("the far side's engine must have a built-in Dockerfile frontend ≥{newest}")
    }
}

/// Findings in the stages the classic builder builds but BuildKit skips: the classic builder (what
/// `offpack rebuild` and docker-compose 1.29 use) runs every stage up to the target, so a network
/// `RUN` there breaks an offline rebuild too. Unnamed skipped stages cannot be targeted on their
/// own and are not covered.
fn classic_only_findings(
    dockerfile: &offpack_dockerfile::Dockerfile,
    resolved: &offpack_dockerfile::Resolved,
    options: &ResolveOptions,
) -> Vec<offpack_dockerfile::Finding> {
    let skipped: Vec<usize> = (0..resolved.target_stage)
        .filter(|i| !resolved.stages_needed.contains(i))
        .collect();
    let stage_of_line = |line: usize| dockerfile.stages.iter().rposition(|s| s.base.line <= line);
    let mut found: Vec<offpack_dockerfile::Finding> = Vec::new();
    for &index in &skipped {
        let Some(name) = dockerfile.stages.get(index).and_then(|s| s.name.as_deref()) else {
            continue;
        };
        let Ok(stage) = offpack_dockerfile::resolve(
            dockerfile,
            &ResolveOptions {
                target: Some(name),
                ..*options
            },
        ) else {
            continue;
        };
        for mut finding in stage.findings {
            let in_skipped = stage_of_line(finding.line).is_some_and(|s| skipped.contains(&s));
            if !in_skipped
                || found
                    .iter()
                    .any(|f| f.line == finding.line && f.code == finding.code)
            {
                continue;
            }
            finding.message.push_str(
                " (stage skipped by BuildKit, but the classic builder used by `offpack rebuild` and docker-compose 1.29 runs it)",
            );
            found.push(finding);
        }
    }
    found
}

/// True when a Dockerfile finding is about the image Docker resolves to `written`.
fn names_image(subject: &offpack_dockerfile::Subject, written: &str) -> bool {
    matches!(subject, offpack_dockerfile::Subject::Image(image) if image == written)
}

/// The image a `cache_from` entry names: the entry itself, or `ref=` of `type=registry,ref=…`.
fn cache_image(entry: &str) -> &str {
    if !entry.contains('=') {
        return entry;
    }
    entry
        .split(',')
        .find_map(|field| field.trim().strip_prefix("ref="))
        .unwrap_or(entry)
}

/// The additional context a `FROM`/`--from` image reference names, matched as BuildKit does:
/// the familiar form without a `:latest` suffix equals the context's name.
fn named_context<'a>(
    contexts: &'a BTreeMap<String, String>,
    reference: &ImageRef,
) -> Option<&'a String> {
    if contexts.is_empty() || reference.digest.is_some() {
        return None;
    }
    let familiar = reference.familiar();
    let key = familiar.strip_suffix(":latest").unwrap_or(&familiar);
    contexts.get(key)
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

/// Adds `source` for `platform`, merging with an earlier use of the same image at the same place.
fn add_source(images: &mut Vec<ImageSource>, source: ImageSource, platform: &str) {
    if let Some(existing) = images
        .iter_mut()
        .find(|i| i.reference == source.reference && i.line == source.line && i.kind == source.kind)
    {
        push_unique(&mut existing.platforms, platform);
        return;
    }
    let mut source = source;
    source.platforms = vec![platform.to_string()];
    images.push(source);
}

fn describe_install(install: &PackageInstall) -> String {
    match install {
        PackageInstall::Pip {
            tool,
            requirement_files,
            constraint_files,
            packages,
        } => {
            let mut words = vec![if tool == "uv" {
                "uv pip install".to_string()
            } else {
                "pip install".to_string()
            }];
            words.extend(requirement_files.iter().map(|f| format!("-r {f}")));
            words.extend(constraint_files.iter().map(|f| format!("-c {f}")));
            words.extend(packages.iter().cloned());
            words.join(" ")
        }
        PackageInstall::Npm { tool, command } | PackageInstall::PythonLock { tool, command } => {
            format!("{tool} {command}")
        }
    }
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
        platforms: Vec::new(),
        aliases,
        built_by: None,
    }
}

/// `mirror.example/library/node:18` is Docker Hub's `node:18` behind a mirror prefix.
fn mirror_alias(reference: &ImageRef) -> Option<String> {
    if reference.domain == "docker.io" || reference.domain.is_empty() {
        return None;
    }
    let name = reference.path.strip_prefix("library/")?;
    if name.contains('/') {
        return None;
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use offpack_compose::{Build, FieldLocations, Location};

    use super::*;

    /// Files in memory: path → text; `list` returns the names under a directory.
    struct Memory(BTreeMap<PathBuf, String>);

    impl ProjectFiles for Memory {
        fn read_to_string(&self, path: &Path, _kind: offpack_fs::Kind) -> std::io::Result<String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        }

        fn resolve_links(&self, path: &Path) -> Option<PathBuf> {
            Some(path.to_path_buf())
        }

        fn list(&self, dir: &Path, _max_depth: usize) -> Vec<String> {
            self.0
                .keys()
                .filter_map(|p| p.strip_prefix(dir).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        }
    }

    fn build(context: &str) -> Build {
        Build {
            context: BuildContext::Local(PathBuf::from(context)),
            dockerfile: DockerfileSource::Path(PathBuf::from(context).join("Dockerfile")),
            args: BTreeMap::new(),
            target: None,
            platforms: Vec::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            additional_contexts: BTreeMap::new(),
            ssh: Vec::new(),
            secrets: Vec::new(),
            labels: BTreeMap::new(),
            network: None,
            extra_hosts: Vec::new(),
            tags: Vec::new(),
            source: Location {
                file: PathBuf::from("/p/compose.yaml"),
                line: Some(3),
            },
        }
    }

    fn service(name: &str, image: Option<&str>, build: Option<Build>) -> Service {
        Service {
            name: name.to_string(),
            active: true,
            profiles: Vec::new(),
            image: image.map(str::to_string),
            build,
            platform: None,
            pull_policy: None,
            depends_on: Vec::new(),
        }
    }

    fn project(services: Vec<Service>) -> Project {
        Project {
            name: "shop".to_string(),
            project_directory: PathBuf::from("/p"),
            files: vec![PathBuf::from("/p/compose.yaml")],
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            warnings: Vec::new(),
            field_locations: FieldLocations::default(),
        }
    }

    fn files(entries: &[(&str, &str)]) -> Memory {
        Memory(
            entries
                .iter()
                .map(|(p, t)| (PathBuf::from(p), (*t).to_string()))
                .collect(),
        )
    }

    fn references(plan: &Plan) -> Vec<&str> {
        plan.images.iter().map(|i| i.reference.as_str()).collect()
    }

    fn codes(plan: &Plan) -> Vec<&str> {
        plan.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn built_service_needs_its_base_images_and_paths_are_relative() {
        let p = project(vec![
            service("api", None, Some(build("/p/api"))),
            service("db", Some("postgres:16"), None),
        ]);
        let f = files(&[
            (
                "/p/api/Dockerfile",
                "FROM python:3.12-slim\nRUN pip install -r requirements.txt\n",
            ),
            ("/p/api/requirements.txt", "flask\n"),
        ]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["postgres:16", "python:3.12-slim"]);
        let api = &plan.services[0];
        assert_eq!(api.image, "shop-api:latest");
        assert_eq!(api.acquire, Acquire::Build);
        let build = api.build.as_ref().unwrap();
        assert_eq!(build.context, "api");
        assert_eq!(build.dockerfile, "api/Dockerfile");
        assert_eq!(build.package_files[0].path, "requirements.txt");
        assert_eq!(
            build.install_steps[0].installs,
            ["pip install -r requirements.txt"]
        );
        assert!(plan.findings.is_empty());
    }

    #[test]
    fn from_naming_an_additional_context_is_not_pulled_but_a_docker_image_context_is() {
        let mut b = build("/p/app");
        b.additional_contexts
            .insert("base".into(), "docker-image://alpine:3.20".into());
        b.additional_contexts
            .insert("src".into(), "/p/shared".into());
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[("/p/app/Dockerfile", "FROM base\nCOPY --from=src . /src\n")]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["alpine:3.20"]);
        let build = plan.services[0].build.as_ref().unwrap();
        assert_eq!(build.images[0].kind, "additional-context");
        assert_eq!(build.additional_contexts["src"], "shared");
        // `FROM base` would be OP002 (untagged) if it were an image.
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
    }

    #[test]
    fn named_context_matches_the_familiar_name_without_latest() {
        let contexts: BTreeMap<String, String> = [(
            "alpine".to_string(),
            "docker-image://alpine:3.20".to_string(),
        )]
        .into();
        let r = |s| ImageRef::parse(s).unwrap();
        assert!(named_context(&contexts, &r("alpine")).is_some());
        assert!(named_context(&contexts, &r("docker.io/library/alpine:latest")).is_some());
        assert!(named_context(&contexts, &r("alpine:3.19")).is_none());
    }

    #[test]
    fn service_context_uses_the_other_services_image() {
        let mut app = build("/p/app");
        app.additional_contexts
            .insert("runtime".into(), "service:base".into());
        let p = project(vec![
            service("base", Some("acme/runtime:3"), Some(build("/p/base"))),
            service("app", None, Some(app)),
        ]);
        let f = files(&[
            ("/p/base/Dockerfile", "FROM debian:12.5-slim\n"),
            ("/p/app/Dockerfile", "FROM runtime\n"),
        ]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["debian:12.5-slim"]);
        let app = plan.services.iter().find(|s| s.name == "app").unwrap();
        let image = &app.build.as_ref().unwrap().images[0];
        assert_eq!(image.reference, "acme/runtime:3");
        assert_eq!(image.built_by.as_deref(), Some("base"));

        let mut broken = build("/p/app");
        broken
            .additional_contexts
            .insert("runtime".into(), "service:nope".into());
        let p = project(vec![service("app", None, Some(broken))]);
        let err = make_plan(&p, &f, Builder::BuildKit)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("service:nope") && err.contains("compose.yaml:3"),
            "{err}"
        );
    }

    #[test]
    fn remote_additional_context_is_a_finding() {
        let mut b = build("/p/app");
        b.additional_contexts
            .insert("docs".into(), "https://github.com/acme/docs.git".into());
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[("/p/app/Dockerfile", "FROM alpine:3.20\n")]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(codes(&plan), ["OP007"]);
        assert_eq!(plan.findings[0].file, Some(PathBuf::from("compose.yaml")));
    }

    #[test]
    fn invalid_docker_image_context_is_an_error_naming_the_file() {
        let mut b = build("/p/app");
        b.additional_contexts
            .insert("base".into(), "docker-image://Alpine".into());
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[("/p/app/Dockerfile", "FROM base\n")]);
        let err = make_plan(&p, &f, Builder::BuildKit)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("compose.yaml:3") && err.contains("Alpine"),
            "{err}"
        );
    }

    #[test]
    fn images_built_by_the_project_are_not_pulled_and_not_unpinned() {
        let p = project(vec![
            service("base", Some("acme/base"), Some(build("/p/base"))),
            service("api", None, Some(build("/p/api"))),
            service("worker", Some("acme/base"), None),
        ]);
        let f = files(&[
            ("/p/base/Dockerfile", "FROM python:3.12-slim\n"),
            ("/p/api/Dockerfile", "FROM acme/base\n"),
            (
                "/p/compose.yaml",
                "services:\n  worker:\n    image: acme/base\n",
            ),
        ]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["python:3.12-slim"]);
        let worker = plan.services.iter().find(|s| s.name == "worker").unwrap();
        assert_eq!(worker.acquire, Acquire::Build);
        assert_eq!(worker.built_by.as_deref(), Some("base"));
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
    }

    #[test]
    fn inactive_services_are_planned_but_not_bundled_or_linted() {
        let mut debug = service("debug", Some("busybox"), None);
        debug.active = false;
        debug.profiles = vec!["debug".into()];
        let p = project(vec![debug, service("web", Some("nginx:1.27"), None)]);
        let plan = make_plan(&p, &files(&[]), Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["nginx:1.27"]);
        assert_eq!(plan.services.len(), 2);
        assert!(plan.findings.is_empty());
    }

    #[test]
    fn only_an_active_services_invalid_image_stops_the_plan() {
        let mut debug = service("debug", Some("ACME/Tools"), None);
        debug.active = false;
        let p = project(vec![debug, service("web", Some("nginx:1.27"), None)]);
        let plan = make_plan(&p, &files(&[]), Builder::BuildKit).unwrap();
        assert_eq!(references(&plan), ["nginx:1.27"]);
        assert_eq!(plan.services[0].image, "ACME/Tools");

        let p = project(vec![service("debug", Some("ACME/Tools"), None)]);
        let err = format!(
            "{:#}",
            make_plan(&p, &files(&[]), Builder::BuildKit).unwrap_err()
        );
        assert!(
            err.contains("service debug") && err.contains("ACME/Tools"),
            "{err}"
        );
    }

    #[test]
    fn unpinned_service_image_fix_tells_how_to_find_the_digest() {
        let p = project(vec![service("cache", Some("redis"), None)]);
        let plan = make_plan(&p, &files(&[]), Builder::BuildKit).unwrap();
        assert_eq!(codes(&plan), ["OP002"]);
        let fix = &plan.findings[0].fix;
        assert!(fix.contains("`redis:<version>@sha256:<digest>`"), "{fix}");
        assert!(fix.contains("RepoDigests 0}}' redis:latest"), "{fix}");
    }

    #[test]
    fn pin_fix_names_the_repository_without_its_tag() {
        assert!(pin_fix("localhost:5000/app:v1").contains("`localhost:5000/app:<version>@"));
        assert!(pin_fix("bitnami/redis:7").contains("`bitnami/redis:<version>@"));
    }

    #[test]
    fn pull_policies() {
        let mut never = service("tool", Some("acme/tool:1"), None);
        never.pull_policy = Some("never".into());
        let mut always = service("feed", Some("acme/feed:1"), None);
        always.pull_policy = Some("always".into());
        let mut build_policy = service("web", Some("acme/web:1"), Some(build("/p/web")));
        build_policy.pull_policy = Some("build".into());
        let p = project(vec![never, always, build_policy]);
        let f = files(&[("/p/web/Dockerfile", "FROM python:3.12\n")]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        let acquire: Vec<Acquire> = plan.services.iter().map(|s| s.acquire).collect();
        assert_eq!(acquire, [Acquire::Pull, Acquire::Local, Acquire::Build]);
        assert_eq!(codes(&plan), ["OP008", "OP008"]);
        let feed = &plan.findings[0];
        assert_eq!(
            (feed.service.as_str(), feed.severity),
            ("feed", Severity::Error)
        );
        let web = &plan.findings[1];
        assert_eq!(
            (web.service.as_str(), web.severity),
            ("web", Severity::Warning)
        );
        assert!(web.message.contains("rebuild"), "{}", web.message);
        assert_eq!(
            references(&plan),
            ["acme/feed:1", "acme/tool:1", "python:3.12"]
        );
    }

    #[test]
    fn every_build_platform_is_resolved() {
        let mut b = build("/p/app");
        b.platforms = vec!["linux/amd64".into(), "linux/arm64".into()];
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[(
            "/p/app/Dockerfile",
            "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM alpine:3.20\nCOPY --from=build /a /a\n",
        )]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        let platforms: Vec<Vec<&str>> = plan
            .images
            .iter()
            .map(|i| i.platforms.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(references(&plan), ["alpine:3.20", "golang:1.22"]);
        assert_eq!(
            platforms,
            [vec!["linux/amd64", "linux/arm64"], vec!["linux/amd64"]]
        );
    }

    #[test]
    fn stages_only_the_classic_builder_runs_are_linted_too() {
        let mut b = build("/p/app");
        b.target = Some("prod".into());
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[(
            "/p/app/Dockerfile",
            "FROM python:3.12 AS base\nFROM base AS dev\nRUN apt-get update\nFROM base AS prod\nRUN echo ok\n",
        )]);
        let plan = make_plan(&p, &f, Builder::Classic).unwrap();
        assert_eq!(
            plan.services[0].build.as_ref().unwrap().stages,
            ["base", "prod"]
        );
        assert_eq!(codes(&plan), ["OP003"]);
        assert_eq!(plan.findings[0].line, Some(3));
        assert!(plan.findings[0].message.contains("classic builder"));

        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert!(
            plan.findings.is_empty(),
            "BuildKit skips the dev stage: {:?}",
            plan.findings
        );
    }

    const DEV_TOOLS: &str = "\
FROM python:3.11-slim AS base
RUN --mount=type=cache,target=/root/.cache pip install flask
FROM base AS dev
COPY --from=acme/devtools:1.2 /usr/local/bin/lint /usr/local/bin/lint
FROM base AS prod
COPY --link app.py /app/app.py
";

    #[test]
    fn the_plan_follows_the_builder() {
        let mut b = build("/p/app");
        b.target = Some("prod".into());
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[("/p/app/Dockerfile", DEV_TOOLS)]);

        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(plan.builder, Builder::BuildKit);
        assert_eq!(references(&plan), ["python:3.11-slim"]);
        let build = plan.services[0].build.as_ref().unwrap();
        assert_eq!(build.builder, Builder::BuildKit);
        let needs: Vec<(usize, &str)> = build
            .needs_buildkit
            .iter()
            .map(|f| (f.line, f.feature))
            .collect();
        assert_eq!(needs, [(2, "RUN --mount"), (6, "COPY --link")]);
        assert_eq!(codes(&plan), ["OP011"], "COPY --link needs frontend 1.4");
        let warning = &plan.findings[0];
        assert_eq!(
            (warning.severity, warning.line),
            (Severity::Warning, Some(6))
        );
        assert!(warning.message.contains("≥1.4"), "{}", warning.message);
        assert!(
            warning.fix.contains("`# syntax=docker/dockerfile:1.4`")
                && warning.fix.contains("Docker ≥ 23"),
            "{}",
            warning.fix
        );

        let plan = make_plan(&p, &f, Builder::Classic).unwrap();
        assert_eq!(
            references(&plan),
            ["acme/devtools:1.2", "python:3.11-slim"],
            "the classic builder builds dev too"
        );
        assert_eq!(codes(&plan), ["OP010", "OP010"]);
        let error = &plan.findings[0];
        assert_eq!(
            (error.severity, error.file.as_deref(), error.line),
            (Severity::Error, Some(Path::new("app/Dockerfile")), Some(2))
        );
        assert!(error.message.contains("`RUN --mount`"), "{}", error.message);
        assert!(error.fix.contains("--builder buildkit"), "{}", error.fix);
    }

    #[test]
    fn a_syntax_line_silences_the_frontend_warning() {
        let p = project(vec![service("app", None, Some(build("/p/app")))]);
        let f = files(&[(
            "/p/app/Dockerfile",
            "# syntax=docker/dockerfile:1.7\nFROM alpine:3.20\nCOPY --link --exclude=*.md . /src\n",
        )]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(codes(&plan), ["OP004"]);

        let f = files(&[(
            "/p/app/Dockerfile",
            "FROM alpine:3.20\nCOPY --link . /src\nRUN --network=none true\nCOPY --exclude=*.md . /src\n",
        )]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(codes(&plan), ["OP011", "OP011", "OP011"]);
        assert!(
            plan.findings
                .iter()
                .all(|f| f.fix.contains("`# syntax=docker/dockerfile:1.19`")
                    && f.fix.contains("frontend ≥1.19")),
            "the newest version any feature needs: {:?}",
            plan.findings
        );
    }

    #[test]
    fn newer_engine_names_docker_23_only_up_to_frontend_1_4() {
        assert!(newer_engine("1.3").contains("Docker ≥ 23"));
        assert!(newer_engine("1.4").contains("Docker ≥ 23"));
        assert!(newer_engine("1.6").contains("frontend ≥1.6"));
        assert!(newer_engine("1.4-labs").contains("frontend ≥1.4-labs"));
    }

    #[test]
    fn service_findings_name_the_compose_file_and_line() {
        let mut p = project(vec![service("cache", Some("redis"), None)]);
        p.field_locations = FieldLocations::of_texts([(
            Path::new("/p/compose.yaml"),
            "services:\n  cache:\n    image: redis\n",
        )]);
        let plan = make_plan(&p, &files(&[]), Builder::BuildKit).unwrap();
        assert_eq!(plan.findings[0].file, Some(PathBuf::from("compose.yaml")));
        assert_eq!(plan.findings[0].line, Some(3));
    }

    #[test]
    fn cache_from_own_image_in_registry_form_is_found() {
        let mut b = build("/p/app");
        b.cache_from = vec!["type=registry,ref=shop-app".into(), "acme/cache:1".into()];
        let p = project(vec![service("app", None, Some(b))]);
        let f = files(&[("/p/app/Dockerfile", "FROM alpine:3.20\n")]);
        let plan = make_plan(&p, &f, Builder::BuildKit).unwrap();
        assert_eq!(codes(&plan), ["OP006"]);
    }

    #[test]
    fn dockerfile_errors_name_file_and_line() {
        let p = project(vec![service("app", None, Some(build("/p/app")))]);
        let f = files(&[("/p/app/Dockerfile", "FROM alpine:3.20\n\nFROM Node:18\n")]);
        let err = make_plan(&p, &f, Builder::BuildKit)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("app/Dockerfile:3: "), "{err}");
    }

    #[test]
    fn package_files_are_recognized() {
        for (file, manager) in [
            ("requirements.txt", Some("pip")),
            ("requirements/base.txt", Some("pip")),
            ("constraints.txt", Some("pip")),
            ("sub/pyproject.toml", Some("pip")),
            ("yarn.lock", Some("npm")),
            ("pnpm-lock.yaml", Some("npm")),
            ("notes.txt", None),
        ] {
            assert_eq!(package_manager_of(file), manager, "{file}");
        }
    }

    #[test]
    fn mirror_prefixed_library_image_gets_its_plain_alias() {
        let r = ImageRef::parse("mirror.example:5000/library/node:18").unwrap();
        assert_eq!(mirror_alias(&r).as_deref(), Some("node:18"));
        let r = ImageRef::parse("ghcr.io/acme/node:18").unwrap();
        assert_eq!(mirror_alias(&r), None);
    }

    #[test]
    fn services_build_after_the_services_whose_images_they_use() {
        let mut files = BTreeMap::new();
        files.insert(
            PathBuf::from("/p/a-app/Dockerfile"),
            "FROM acme/base:1\nRUN true\n".to_string(),
        );
        files.insert(
            PathBuf::from("/p/z-base/Dockerfile"),
            "FROM python:3.11-slim\n".to_string(),
        );
        let project = project(vec![
            service("a-app", None, Some(build("/p/a-app"))),
            service("z-base", Some("acme/base:1"), Some(build("/p/z-base"))),
        ]);
        let plan = make_plan(&project, &Memory(files), Builder::BuildKit).unwrap();
        let order: Vec<&str> = build_order(&plan)
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, vec!["z-base", "a-app"]);
    }
}
