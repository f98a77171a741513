//! Building a service's image through the engine with its compose build settings, never pulling.
//!
//! The same code builds on the networked side (`offpack bundle` for services whose image is
//! missing) and on the far side (`offpack rebuild`), so the context tar, and with it the
//! builder's `COPY` cache keys, are the same on both sides of the air gap.

pub mod context;

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use offpack_bundle::Digest;
use offpack_compose::{BuildContext, DockerfileSource, Project, Service};

use crate::engine::{BuildOutcome, BuildRequest, Builder, Engine, channel_body};
use crate::plan::ServicePlan;
use crate::reporter::Reporter;
use context::{DockerfileInContext, write_context};

/// Options of one build.
#[derive(Debug, Clone, Default)]
pub struct BuildSettings {
    pub no_cache: bool,
    /// Build this stage instead of the compose target, under `tags` (the stage cache images).
    pub stage: Option<(String, Vec<String>)>,
}

/// The images offpack keeps of a multi-stage build's named intermediate stages, as
/// `(stage, tag)`, in build order. The classic builder follows one `cachefrom` image per build
/// (docs/engine-support.md), and the final image holds none of the earlier stages' layers: with
/// these listed first, an offline rebuild takes the build stage's `RUN` steps (`npm ci`,
/// `pip install`) from cache. See docs/decisions/0004-stage-cache-images.md.
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

/// Builds `service` with the engine. The images its Dockerfile needs must already be in the
/// engine (nothing is pulled); its own image, if present, is the cache.
pub async fn build_service(
    engine: &Engine,
    project: &Project,
    service: &Service,
    plan: &ServicePlan,
    settings: &BuildSettings,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome> {
    let Some(build) = &service.build else {
        bail!(
            "service {} has no `build:` section; it runs the image {} as is",
            service.name,
            plan.image
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
            "service {} uses additional_contexts ({}), which the classic builder offpack builds with \
             on this engine does not support; build it with BuildKit (docker compose v2 / buildx) instead",
            service.name,
            names.join(", ")
        );
    }
    if let Some(build_plan) = &plan.build {
        let mut missing = Vec::new();
        // The `# syntax` frontend is not checked: the classic builder reads that line as a comment.
        for image in &build_plan.images {
            if engine.image(&image.reference).await?.is_none() {
                missing.push(format!(
                    "{} ({}:{})",
                    image.reference, image.file, image.line
                ));
            }
        }
        if !missing.is_empty() {
            bail!(
                "service {} needs images the engine does not have: {}\n\
                 Load them first (`offpack load BUNDLE`), or pull them on a networked machine.",
                service.name,
                missing.join(", ")
            );
        }
    }
    let dockerfile = match &build.dockerfile {
        DockerfileSource::Path(path) => DockerfileInContext::for_path(context_dir, path)?,
        DockerfileSource::Inline(text) => DockerfileInContext::inline(text),
    };
    let (target, tags) = match &settings.stage {
        Some((stage, tags)) => (Some(stage.clone()), tags.clone()),
        None => (build.target.clone(), image_tags(project, service)),
    };
    let stage_images: Vec<String> = stage_cache_tags(project, service, plan)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut cache_from: Vec<String> = Vec::new();
    for candidate in stage_images
        .iter()
        .chain(tags.iter())
        .chain(build.cache_from.iter())
    {
        // Only images the engine holds: a cache source it would have to fetch breaks offline.
        if !cache_from.contains(candidate) && engine.image(candidate).await?.is_some() {
            cache_from.push(candidate.clone());
        }
    }
    let request = BuildRequest {
        dockerfile: dockerfile.name.clone(),
        tags: tags.clone(),
        build_args: build
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target,
        cache_from: if settings.no_cache {
            Vec::new()
        } else {
            cache_from
        },
        labels: build
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        platform: service.platform.clone(),
        network: build.network.clone(),
        extra_hosts: build.extra_hosts.clone(),
        no_cache: settings.no_cache,
        builder: Builder::Classic,
        inline_cache: false,
    };

    let (writer, body) = channel_body();
    let dir = context_dir.clone();
    let tar_task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        match write_context(&dir, &dockerfile, &mut writer) {
            Ok(n) => Ok(n),
            Err(e) => {
                writer.fail(&e);
                Err(e)
            }
        }
    });
    let task = reporter.start(&format!("build {}", service.name), None);
    let outcome = engine.build(&request, body, reporter).await;
    let tarred = tar_task.await.context("the build context writer stopped")?;
    let outcome = match (outcome, tarred) {
        (_, Err(e)) => {
            return Err(e.context(format!("sending the build context of {}", service.name)));
        }
        (Err(e), _) => return Err(e.context(format!("building service {}", service.name))),
        (Ok(outcome), Ok(_)) => outcome,
    };
    reporter.finish(
        task,
        &format!(
            "{} ({} steps from cache)",
            short_id(&outcome.image_id),
            outcome.cached_steps()
        ),
    );
    Ok(outcome)
}

/// The first 12 hex digits of an image ID, as `docker image ls` shows it.
pub fn short_id(id: &Digest) -> &str {
    &id.hex()[..12]
}
