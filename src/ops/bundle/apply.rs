//! Collects what a bundle holds: pulls and builds what [`decide_pull`], [`decide_build`] and
//! [`decide_stage`] ask for, in the plan's build order, recording each image in
//! [`BundleContents`].

use anyhow::{Result, anyhow};
use offpack_bundle::Digest;
use offpack_compose::Project;

use super::packages::ServiceNeeds;
use super::proof::{ProofJob, static_checks};
use super::{
    BuildDecision, BundleContents, PullDecision, decide_build, decide_pull, decide_stage,
    left_out_warning,
};
use crate::engine::Builder;
use crate::engine::Engine;
use crate::ops::pull_policy::PullPolicy;
use crate::plan::{ImageRole, Plan, build_order, familiar_name};
use crate::rebuild::packages::set_package_files_label;
use crate::rebuild::{
    Carriers, build_carrier, build_prepared, check_needed_images, image_tags, prepare,
    present_cache_sources, stage_cache_tags,
};
use crate::reporter::Reporter;
use offpack_dockerfile::ImageRef;

/// The command line's say in what is pulled and built.
#[derive(Debug, Clone, Copy)]
pub struct Collect {
    pub pull: PullPolicy,
    /// `--build`: build every built service, even when its image exists.
    pub build: bool,
    /// `--no-build`: build nothing; bundle built services only when their images exist.
    pub no_build: bool,
    /// The builder the far side's `rebuild` will use, and so the one `bundle` builds with.
    pub builder: Builder,
    /// `--from-registry`: images that only services run (no build uses them) are not pulled
    /// into the engine but recorded in [`BundleContents::from_registry`].
    pub from_registry: bool,
}

/// The images `plan` needs, pulled or built as `options` say, and the rebuild metadata. A built
/// image gets the package-files label of its service's entry in `package_needs`.
pub async fn collect_images(
    engine: &Engine,
    project: &Project,
    plan: &Plan,
    options: Collect,
    package_needs: &[ServiceNeeds],
    reporter: &dyn Reporter,
) -> Result<(BundleContents, Vec<ProofJob>)> {
    let builder = options.builder;
    let mut contents = BundleContents::default();
    let mut proofs = Vec::new();
    for image in &plan.images {
        if options.from_registry && image.role == ImageRole::Service {
            // The pin tag is a name for the engine; the registry is asked for the digest.
            let name = ImageRef::parse(&image.reference)
                .ok()
                .and_then(|r| offpack_dockerfile::pin_tag(&r))
                .unwrap_or_else(|| image.reference.clone());
            let names = std::iter::once(name)
                .chain(image.aliases.iter().cloned())
                .collect();
            contents.from_registry.push((
                crate::fetch::registry::Wanted {
                    reference: image.reference.clone(),
                    names,
                },
                image.used_by.clone(),
            ));
            continue;
        }
        let id = match decide_pull(engine, &image.reference, &image.aliases, options.pull).await? {
            PullDecision::Present(id) => id,
            PullDecision::Pull => pull(engine, &image.reference, reporter).await?,
        };
        // A digest-pinned image is carried under its pin tag, the name both sides' builds use for
        // it: a digest is not a name an engine can give a loaded image (it has no repository
        // digest to resolve `x@sha256:…` by), and `docker load` refuses one.
        let reference = match ImageRef::parse(&image.reference)
            .ok()
            .and_then(|r| offpack_dockerfile::pin_tag(&r))
        {
            Some(pin) => {
                engine.tag(&id.to_string(), &pin).await?;
                pin
            }
            None => image.reference.clone(),
        };
        contents.add_image(&id, &reference, &image.aliases, &image.used_by);
    }
    for service_plan in plan
        .services
        .iter()
        .filter(|s| s.active && s.build.is_none())
    {
        contents.set_service_image(&service_plan.name, &service_plan.image);
    }
    for service_plan in build_order(plan)? {
        let service = &project.services[&service_plan.name];
        let tags = image_tags(project, service)
            .iter()
            .map(|t| familiar_name(t))
            .collect::<Result<Vec<_>>>()?;
        let existing = engine.image(&tags[0]).await?;
        // BuildKit's cache travels only in images it built with inline cache: an image built by
        // another tool is a cache source, never the image carried. `--no-build` says never build:
        // the image the engine has is carried as it is.
        let always_build = options.build || (builder == Builder::BuildKit && !options.no_build);
        let decision = decide_build(existing.as_ref(), always_build, options.no_build);
        if decision == BuildDecision::LeaveOut {
            reporter.warn(&left_out_warning(&service_plan.name, &tags[0]));
            continue;
        }
        let id = match &decision {
            BuildDecision::Build => {
                let image_ids = check_needed_images(engine, &[service_plan]).await?;
                let mut prepared = prepare(project, service, service_plan, builder, &image_ids)?;
                if let Some(needs) = package_needs
                    .iter()
                    .find(|n| n.service == service_plan.name)
                    .filter(|n| !n.packages.files.is_empty())
                {
                    set_package_files_label(&mut prepared, &needs.packages.label());
                }
                // Without the engine's cache (decision 0088): a build answered from a cache
                // BuildKit imported from an image writes inline cache metadata that lacks those
                // steps, and the far side would run them again, network and all.
                let built =
                    build_prepared(engine, &prepared, true, Carriers::Build, reporter).await?;
                for (tag, outcome) in &built.carriers {
                    contents.add_stage(
                        &service_plan.name,
                        tag,
                        familiar_name(tag)?,
                        &outcome.image_id,
                    );
                }
                contents.add_built(&service_plan.name, &tags, &built.outcome.image_id);
                contents.set_inputs(&service_plan.name, builder, &prepared.inputs);
                let (never_offline, uncovered) = static_checks(plan, service_plan);
                for warning in uncovered {
                    reporter.warn(&warning);
                }
                proofs.push(ProofJob {
                    prepared: prepared.clone(),
                    carried: built.outcome.image_id.clone(),
                    never_offline,
                });
                continue;
            }
            BuildDecision::UseExisting(id) => id.clone(),
            BuildDecision::LeaveOut => unreachable!("left out above"),
        };
        contents.add_built(&service_plan.name, &tags, &id);
        // The named stages before the final one, as images the far side rebuilds from. The image
        // found is bundled as it is, so the build is prepared (which reads the whole context, and
        // refuses what offpack cannot build) only when a stage image must be built.
        for (stage, tag) in stage_cache_tags(project, service, service_plan) {
            let existing = engine.image(&tag).await?;
            let stage_id = match decide_stage(existing.as_ref(), false, options.no_build) {
                BuildDecision::UseExisting(id) => id,
                BuildDecision::LeaveOut => continue,
                BuildDecision::Build => {
                    let image_ids = check_needed_images(engine, &[service_plan]).await?;
                    let prepared = prepare(project, service, service_plan, builder, &image_ids)?;
                    let mut request = prepared.request.clone();
                    request.cache_from = present_cache_sources(engine, &prepared).await?;
                    build_carrier(engine, &prepared, &request, &stage, &tag, reporter)
                        .await?
                        .image_id
                }
            };
            contents.add_stage(&service_plan.name, &tag, familiar_name(&tag)?, &stage_id);
        }
    }
    // Services that run an image another service builds need that image too.
    for service_plan in plan.services.iter().filter(|s| s.active) {
        if let Some(by) = &service_plan.built_by {
            contents.add_runs_built(&service_plan.name, by);
        }
    }
    Ok((contents, proofs))
}

/// Pulls `reference`; returns the image ID the engine then has under it.
async fn pull(engine: &Engine, reference: &str, reporter: &dyn Reporter) -> Result<Digest> {
    engine.pull(reference, reporter).await?;
    let info = engine
        .image(reference)
        .await?
        .ok_or_else(|| anyhow!("the engine pulled {reference} but does not show it"))?;
    Ok(info.id)
}
