//! Collects what a bundle holds: pulls and builds what [`decide_pull`], [`decide_build`] and
//! [`decide_stage`] ask for, in the plan's build order, recording each image in
//! [`BundleContents`].

use anyhow::{Result, anyhow};
use offpack_bundle::Digest;
use offpack_compose::Project;

use super::{
    BuildDecision, BundleContents, PullDecision, decide_build, decide_pull, decide_stage,
    left_out_warning,
};
use crate::engine::Engine;
use crate::ops::pull_policy::PullPolicy;
use crate::plan::{Plan, build_order, familiar_name};
use crate::rebuild::{BuildSettings, build_service, image_tags, stage_cache_tags};
use crate::reporter::Reporter;

/// The command line's say in what is pulled and built.
#[derive(Debug, Clone, Copy)]
pub struct Collect {
    pub pull: PullPolicy,
    /// `--build`: build every built service, even when its image exists.
    pub build: bool,
    /// `--no-build`: build nothing; bundle built services only when their images exist.
    pub no_build: bool,
}

/// The images `plan` needs, pulled or built as `options` say, and the rebuild metadata.
pub async fn collect_images(
    engine: &Engine,
    project: &Project,
    plan: &Plan,
    options: Collect,
    reporter: &dyn Reporter,
) -> Result<BundleContents> {
    let mut contents = BundleContents::default();
    for image in &plan.images {
        let id = match decide_pull(engine, &image.reference, &image.aliases, options.pull).await? {
            PullDecision::Present(id) => id,
            PullDecision::Pull => pull(engine, &image.reference, reporter).await?,
        };
        contents.add_image(&id, &image.reference, &image.aliases, &image.used_by);
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
        let decision = decide_build(existing.as_ref(), options.build, options.no_build);
        let id = match &decision {
            BuildDecision::Build => {
                build_service(
                    engine,
                    project,
                    service,
                    service_plan,
                    &BuildSettings::default(),
                    reporter,
                )
                .await?
                .image_id
            }
            BuildDecision::UseExisting(id) => id.clone(),
            BuildDecision::LeaveOut => {
                reporter.warn(&left_out_warning(&service_plan.name, &tags[0]));
                continue;
            }
        };
        contents.add_built(&service_plan.name, &tags, &id);
        let built_now = decision == BuildDecision::Build;
        // The named stages before the final one, as images the far side rebuilds from.
        for (stage, tag) in stage_cache_tags(project, service, service_plan) {
            let existing = engine.image(&tag).await?;
            let stage_id = match decide_stage(existing.as_ref(), built_now, options.no_build) {
                BuildDecision::UseExisting(id) => id,
                BuildDecision::LeaveOut => continue,
                BuildDecision::Build => {
                    let settings = BuildSettings {
                        stage: Some((stage.clone(), vec![tag.clone()])),
                        ..Default::default()
                    };
                    build_service(engine, project, service, service_plan, &settings, reporter)
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
    Ok(contents)
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
