//! Building a service's image through the engine with its compose build settings, never pulling.
//!
//! The same code builds on the networked side (`offpack bundle`) and on the far side
//! (`offpack rebuild`): [`prepare`] turns a service into the exact request the engine gets (the
//! context tar, the Dockerfile as sent, args, target, platform, network, labels) and its build
//! inputs digest, so that both sides send the same thing and get the same cache keys.

pub mod context;
pub mod inputs;
pub mod packages;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::Digest;
use offpack_compose::{BuildContext, DockerfileSource, Project, Service};

use crate::engine::{BuildOutcome, BuildRequest, Builder, Engine, channel_body};
use crate::plan::{ImageSource, ServicePlan};
use crate::reporter::Reporter;
use context::{ContextOverrides, DockerfileInContext, write_context};
use inputs::{BuildInputs, INPUTS_LABEL, build_inputs_digest};

/// The images offpack keeps of a multi-stage build's named intermediate stages, as
/// `(stage, tag)`, in build order: the "stage carriers". The final image's cache covers only the
/// final stage (the classic builder follows one `cachefrom` image per build; BuildKit's inline
/// cache holds the layers exported into the image), so the far side takes a build stage's `RUN`
/// steps (`npm ci`, `pip install`) from cache only through these. See
/// docs/decisions/0004-stage-cache-images.md.
pub fn stage_cache_tags(
    project: &Project,
    service: &Service,
    plan: &ServicePlan,
) -> Vec<(String, String)> {
    let Some(build) = &plan.build else {
        return Vec::new();
    };
    let Some((_, intermediate)) = build.stages.split_last() else {
        return Vec::new();
    };
    intermediate
        .iter()
        .filter(|stage| stage.parse::<usize>().is_err())
        .map(|stage| {
            (
                stage.clone(),
                format!("offpack-cache/{}-{}:{stage}", project.name, service.name),
            )
        })
        .collect()
}

/// The names a built service's image gets: its `image:`, or `<project>-<service>` (the Compose
/// Specification and compose v2) and `<project>_<service>` (compose v1), so that `up` in either
/// finds it instead of building.
/// `build.tags` are added as compose v2 adds them.
pub fn image_tags(project: &Project, service: &Service) -> Vec<String> {
    let mut tags = match &service.image {
        Some(image) => vec![image.clone()],
        None => vec![
            format!("{}-{}", project.name, service.name),
            format!("{}_{}", project.name, service.name),
        ],
    };
    if let Some(build) = &service.build {
        for tag in &build.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
    }
    tags
}

/// The name under which the engine holds an image a build uses: a digest-pinned reference under
/// its pin tag (a loaded image has no repository digest on the classic image store, so
/// `x@sha256:…` never resolves there), any other reference as written.
pub fn engine_name(image: &ImageSource) -> String {
    offpack_dockerfile::ImageRef::parse(&image.reference)
        .ok()
        .and_then(|r| offpack_dockerfile::pin_tag(&r))
        .unwrap_or_else(|| image.reference.clone())
}

/// The external images `plan`'s build needs in the engine before it starts: bases, `COPY
/// --from` and `RUN --mount from=` images of the stages the builder runs, and under BuildKit the
/// `# syntax=` frontend. Images another service of the project builds are left to that build.
pub fn needed_images(plan: &ServicePlan) -> Vec<&ImageSource> {
    let Some(build) = &plan.build else {
        return Vec::new();
    };
    let frontend = build
        .frontend
        .iter()
        .filter(|_| build.builder == Builder::BuildKit);
    build
        .images
        .iter()
        .chain(frontend)
        .filter(|image| image.built_by.is_none())
        .collect()
}

/// An image a service's build needs that the engine does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImage {
    pub service: String,
    pub reference: String,
    pub file: String,
    pub line: usize,
    pub frontend: bool,
}

impl std::fmt::Display for MissingImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.frontend {
            "the Dockerfile frontend"
        } else {
            "the image"
        };
        write!(
            f,
            "service {} needs {what} {} ({}:{}), which this engine does not have",
            self.service, self.reference, self.file, self.line
        )
    }
}

/// The IDs of the images `services` need, by reference; an error listing every missing one (with
/// the service and the Dockerfile line) before anything is built, instead of the engine's
/// "failed to resolve source metadata" halfway through.
pub async fn check_needed_images(
    engine: &Engine,
    services: &[&ServicePlan],
) -> Result<BTreeMap<String, Digest>> {
    let mut ids = BTreeMap::new();
    let mut missing = Vec::new();
    for plan in services {
        for image in needed_images(plan) {
            if ids.contains_key(&image.reference) {
                continue;
            }
            let mut found = None;
            for name in std::iter::once(engine_name(image)).chain(image.aliases.iter().cloned()) {
                if let Some(info) = engine.image(&name).await? {
                    found = Some(info.id);
                    break;
                }
            }
            match found {
                Some(id) => {
                    ids.insert(image.reference.clone(), id);
                }
                None => missing.push(MissingImage {
                    service: plan.name.clone(),
                    reference: image.reference.clone(),
                    file: image.file.clone(),
                    line: image.line,
                    frontend: image.kind == "frontend",
                }),
            }
        }
    }
    if !missing.is_empty() {
        let lines: Vec<String> = missing.iter().map(|m| format!("  {m}")).collect();
        bail!(
            "cannot build: images are missing from the engine, and offpack never pulls:\n{}\n\
             Load a bundle that carries them (`offpack load BUNDLE`); on the networked side, \
             `offpack bundle` carries every image the project's Dockerfiles use.",
            lines.join("\n")
        );
    }
    Ok(ids)
}

/// A service's build, ready to send: everything that decides its cache keys.
#[derive(Debug, Clone)]
pub struct PreparedBuild {
    pub service: String,
    pub builder: Builder,
    pub context_dir: PathBuf,
    pub dockerfile: DockerfileInContext,
    /// The request for the final image (the compose target), without its cache sources.
    pub request: BuildRequest,
    /// `(stage, tag)` of the stage carriers ([`stage_cache_tags`]).
    pub carriers: Vec<(String, String)>,
    /// The service's compose `cache_from`, the last cache sources ([`present_cache_sources`]).
    pub compose_cache_from: Vec<String>,
    /// The build inputs digest ([`inputs`]), also set as the image's [`INPUTS_LABEL`].
    pub inputs: Digest,
    /// Package files sent with other bytes (a far-side rebuild serving packages, decision 0085).
    /// Not build inputs: the digest is the user's files'.
    pub overrides: ContextOverrides,
}

/// Prepares `service`'s build with `builder`; `image_ids` holds the IDs of the images it needs
/// ([`check_needed_images`]).
pub fn prepare(
    project: &Project,
    service: &Service,
    plan: &ServicePlan,
    builder: Builder,
    image_ids: &BTreeMap<String, Digest>,
) -> Result<PreparedBuild> {
    let Some(build) = &service.build else {
        bail!(
            "service {} has no `build:` section; it runs the image {} as is",
            service.name,
            plan.image
        );
    };
    let Some(build_plan) = &plan.build else {
        bail!(
            "service {} is missing its build from the plan",
            service.name
        );
    };
    let BuildContext::Local(context_dir) = &build.context else {
        bail!(
            "service {}: its build context is remote; offpack builds only local contexts",
            service.name
        );
    };
    if !build.additional_contexts.is_empty() {
        let names: Vec<&str> = build
            .additional_contexts
            .keys()
            .map(String::as_str)
            .collect();
        bail!(
            "service {} uses additional_contexts ({}), which offpack cannot send over the Engine \
             API's build endpoint; build it with `docker buildx` instead",
            service.name,
            names.join(", ")
        );
    }
    if builder == Builder::Classic
        && let Some(feature) = build_plan.needs_buildkit.first()
    {
        bail!(
            "service {}: {}:{} uses {}, which only BuildKit builds; the classic builder cannot \
             build this Dockerfile (use `--builder buildkit` on an engine with BuildKit)",
            service.name,
            build_plan.dockerfile,
            feature.line,
            feature.feature
        );
    }
    let mut dockerfile = match &build.dockerfile {
        DockerfileSource::Path(path) => DockerfileInContext::for_path(context_dir, path)?,
        DockerfileSource::Inline(text) => DockerfileInContext::inline(text),
    };
    let text = String::from_utf8(dockerfile.read(context_dir)?).map_err(|_| {
        anyhow!(
            "service {}: {} is not UTF-8 text",
            service.name,
            build_plan.dockerfile
        )
    })?;
    let rewritten = rewrite_digest_pins(&text, build, service, &build_plan.dockerfile, plan)?;
    if rewritten != text {
        dockerfile = dockerfile.with_contents(rewritten.clone().into_bytes());
    }
    let images: BTreeMap<String, Digest> = needed_images(plan)
        .into_iter()
        .filter_map(|image| {
            image_ids
                .get(&image.reference)
                .map(|id| (image.reference.clone(), id.clone()))
        })
        .collect();
    let build_args: BTreeMap<String, String> = build
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let compose_labels: BTreeMap<String, String> = build
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let inputs = build_inputs_digest(&BuildInputs {
        builder,
        dockerfile: rewritten.as_bytes(),
        context_dir,
        dockerfile_in_context: &dockerfile,
        build_args: &build_args,
        labels: &compose_labels,
        target: build.target.as_deref(),
        platform: service.platform.as_deref(),
        network: build.network.as_deref(),
        images: &images,
    })
    .with_context(|| format!("reading the build context of service {}", service.name))?;

    let mut labels: HashMap<String, String> = compose_labels.into_iter().collect();
    labels.insert(INPUTS_LABEL.to_string(), inputs.to_string());
    let request = BuildRequest {
        dockerfile: dockerfile.name.clone(),
        tags: image_tags(project, service),
        build_args: build_args.into_iter().collect(),
        target: build.target.clone(),
        cache_from: Vec::new(),
        labels,
        platform: service.platform.clone(),
        network: build.network.clone(),
        extra_hosts: build.extra_hosts.clone(),
        no_cache: false,
        builder,
        inline_cache: builder == Builder::BuildKit,
    };
    Ok(PreparedBuild {
        service: service.name.clone(),
        builder,
        context_dir: context_dir.clone(),
        dockerfile,
        request,
        carriers: stage_cache_tags(project, service, plan),
        compose_cache_from: build.cache_from.clone(),
        inputs,
        overrides: ContextOverrides::new(),
    })
}

/// `text` parsed and resolved as the plan resolved it: the service's target and build args, for
/// its first platform. `label` names the Dockerfile in errors.
pub(crate) fn parse_and_resolve(
    text: &str,
    build: &offpack_compose::Build,
    service: &Service,
    label: &str,
    plan: &ServicePlan,
) -> Result<(offpack_dockerfile::Dockerfile, offpack_dockerfile::Resolved)> {
    let parsed = offpack_dockerfile::parse(text).map_err(|e| {
        anyhow!(
            "{label}:{}: {} (service {})",
            e.line,
            e.message,
            service.name
        )
    })?;
    let platform = plan
        .platforms
        .first()
        .map(String::as_str)
        .unwrap_or(crate::plan::DEFAULT_PLATFORM);
    let resolved = offpack_dockerfile::resolve(
        &parsed,
        &offpack_dockerfile::ResolveOptions {
            target: build.target.as_deref(),
            build_args: &build.args,
            target_platform: platform,
            build_platform: crate::plan::DEFAULT_PLATFORM,
        },
    )
    .map_err(|e| anyhow!("{label}: {e} (service {})", service.name))?;
    Ok((parsed, resolved))
}

/// `text` with its digest-pinned references naming their pin tags (decision 0084): the Dockerfile
/// resolved as the plan resolved it, for the service's first platform.
fn rewrite_digest_pins(
    text: &str,
    build: &offpack_compose::Build,
    service: &Service,
    label: &str,
    plan: &ServicePlan,
) -> Result<String> {
    if !text.contains("@sha256:") && !text.contains("@SHA256:") {
        return Ok(text.to_string());
    }
    let (parsed, resolved) = parse_and_resolve(text, build, service, label, plan)?;
    offpack_dockerfile::rewrite_pins(text, &parsed, &resolved).map_err(|e| {
        anyhow!(
            "service {}: {label}:{e}; offpack sends the engine a local tag for a digest-pinned \
             image, since a loaded image has no repository digest",
            service.name
        )
    })
}

/// Whether a build also makes its stage carriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriers {
    /// Build them after the image (`bundle`: the far side's cache travels in them).
    Build,
    /// Leave the carriers the engine has (`rebuild`): after a rebuild the engine's own build
    /// cache holds the new steps, and the carried ones still cover the unchanged steps (`npm ci`
    /// while the lock file is unchanged). Exporting a carrier costs as much as exporting the image
    /// (8 s of a 20 s code-change rebuild of the example, measured in bench/).
    Keep,
}

/// What building a service produced: the final image's build, and the stage carriers'.
#[derive(Debug, Clone)]
pub struct ServiceBuild {
    pub outcome: BuildOutcome,
    /// `(tag, outcome)` of each stage carrier built.
    pub carriers: Vec<(String, BuildOutcome)>,
}

/// Builds a prepared service: the final image first (so its report shows every step that ran,
/// the build stages' included), then its stage carriers, which then come from the local cache
/// that build just wrote (also with `no_cache`: a carrier must hold the very results the final
/// image was built from). The cache sources are the carriers, the service's own names and its
/// compose `cache_from`, each only if the engine holds it (`no_cache`: none).
pub async fn build_prepared(
    engine: &Engine,
    prepared: &PreparedBuild,
    no_cache: bool,
    carriers: Carriers,
    reporter: &dyn Reporter,
) -> Result<ServiceBuild> {
    let cache_from = if no_cache {
        Vec::new()
    } else {
        present_cache_sources(engine, prepared).await?
    };
    let mut request = prepared.request.clone();
    request.cache_from = cache_from.clone();
    request.no_cache = no_cache;
    request.tags = Vec::new();
    let mut outcome = send_build(engine, prepared, &request, &prepared.service, reporter).await?;
    outcome.image_id = name_result(engine, &outcome.image_id, &prepared.request.tags).await?;
    let wanted = carriers;
    let mut carriers = Vec::new();
    if wanted == Carriers::Keep {
        return Ok(ServiceBuild { outcome, carriers });
    }
    // When no step of the final build ran, no stage changed: carriers the engine holds are the
    // ones this build's cache came from, and rebuilding them would only cost time.
    let nothing_ran = outcome.steps.iter().all(|s| s.cached);
    for (stage, tag) in &prepared.carriers {
        if nothing_ran
            && !no_cache
            && let Some(present) = engine.image(tag).await?
        {
            carriers.push((
                tag.clone(),
                BuildOutcome {
                    image_id: present.id,
                    steps: Vec::new(),
                    wall_seconds: 0.0,
                },
            ));
            continue;
        }
        let mut carrier_request = request.clone();
        carrier_request.no_cache = false;
        let stage_outcome =
            build_carrier(engine, prepared, &carrier_request, stage, tag, reporter).await?;
        carriers.push((tag.clone(), stage_outcome));
    }
    Ok(ServiceBuild { outcome, carriers })
}

/// Names the build result `built` with `tags`, unless the image the first tag names is the same
/// image ([`Engine::same_image`]): then that image keeps the names and its ID, and the new copy,
/// which differs only in the order of its cache metadata, is removed. A no-change rebuild thus
/// leaves the service's image ID as it was.
pub async fn name_result(engine: &Engine, built: &Digest, tags: &[String]) -> Result<Digest> {
    if let Some(first) = tags.first()
        && let Some(current) = engine.image(first).await?
        && current.id != *built
        && engine
            .same_image(&current.id.to_string(), &built.to_string())
            .await?
    {
        for tag in tags {
            engine.tag(&current.id.to_string(), tag).await?;
        }
        engine.remove_unnamed(&built.to_string()).await?;
        return Ok(current.id);
    }
    for tag in tags {
        engine.tag(&built.to_string(), tag).await?;
    }
    Ok(built.clone())
}

/// Builds the stage carrier `tag` of `prepared`'s stage `stage`, with the final build's settings
/// and cache sources (`request`).
pub async fn build_carrier(
    engine: &Engine,
    prepared: &PreparedBuild,
    request: &BuildRequest,
    stage: &str,
    tag: &str,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome> {
    let mut stage_request = request.clone();
    stage_request.target = Some(stage.to_string());
    stage_request.tags = Vec::new();
    stage_request.labels.remove(INPUTS_LABEL);
    let label = format!("{} (stage {stage})", prepared.service);
    let mut outcome = send_build(engine, prepared, &stage_request, &label, reporter).await?;
    outcome.image_id = name_result(engine, &outcome.image_id, &[tag.to_string()]).await?;
    Ok(outcome)
}

/// Sends the far side's rebuild of `prepared` now, naming nothing: what `bundle`'s proof
/// compares with the image it carries.
pub async fn rebuild_as_the_far_side_will(
    engine: &Engine,
    prepared: &PreparedBuild,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome> {
    let mut request = prepared.request.clone();
    request.cache_from = present_cache_sources(engine, prepared).await?;
    request.tags = Vec::new();
    let label = format!("{} (proof)", prepared.service);
    send_build(engine, prepared, &request, &label, reporter).await
}

/// The cache sources a build of `prepared` gets: stage carriers first, then the service's own
/// names, then compose's `cache_from`; only what the engine holds, since BuildKit would ask a
/// registry for the rest, and `cache_from` naming the image being built is then simply its own
/// image.
pub async fn present_cache_sources(
    engine: &Engine,
    prepared: &PreparedBuild,
) -> Result<Vec<String>> {
    let mut sources: Vec<String> = Vec::new();
    let candidates = prepared
        .carriers
        .iter()
        .map(|(_, tag)| tag)
        .chain(prepared.request.tags.iter())
        .chain(prepared.compose_cache_from.iter());
    for candidate in candidates {
        if !sources.contains(candidate) && engine.image(candidate).await?.is_some() {
            sources.push(candidate.clone());
        }
    }
    Ok(sources)
}

async fn send_build(
    engine: &Engine,
    prepared: &PreparedBuild,
    request: &BuildRequest,
    label: &str,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome> {
    let (writer, body) = channel_body();
    let dir = prepared.context_dir.clone();
    let dockerfile = prepared.dockerfile.clone();
    let overrides = prepared.overrides.clone();
    let tar_task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        match write_context(&dir, &dockerfile, &overrides, &mut writer) {
            Ok(n) => Ok(n),
            Err(e) => {
                writer.fail(&e);
                Err(e)
            }
        }
    });
    let task = reporter.start(&format!("build {label} ({})", request.builder), None);
    let outcome = engine.build(request, body, reporter).await;
    let tarred = tar_task.await.context("the build context writer stopped")?;
    let outcome = match (outcome, tarred) {
        (_, Err(e)) => {
            return Err(e.context(format!("sending the build context of {label}")));
        }
        (Err(e), _) => return Err(e.context(format!("building service {label}"))),
        (Ok(outcome), Ok(_)) => outcome,
    };
    reporter.finish(task, &step_summary(&outcome));
    Ok(outcome)
}

/// `shop-backend 1a2b3c4d5e6f: 12/14 steps from cache, 3.1 s`.
pub fn step_summary(outcome: &BuildOutcome) -> String {
    format!(
        "{}: {}/{} steps from cache, {:.1} s",
        short_id(&outcome.image_id),
        outcome.cached_steps(),
        outcome.total_steps(),
        outcome.seconds()
    )
}

/// The first 12 hex digits of an image ID, as `docker image ls` shows it.
pub fn short_id(id: &Digest) -> &str {
    &id.hex()[..12]
}
