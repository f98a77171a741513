//! The job behind `offpack rebuild`: the services checked against the project and every image
//! their builds need checked against the engine before anything is built, then each built in
//! dependency order (a service may build FROM another's image), from the cache the bundle carried.

use std::path::PathBuf;

use anyhow::{Result, bail};
use offpack_bundle::Digest;

use crate::engine::{BuildStep, Builder, Engine};
use crate::ops::builder::{BuilderChoice, choose_builder};
use crate::ops::compose_up::compose_up;
use crate::ops::serve_builds::serve_changed_package_files;
use crate::plan::{Disk, ServicePlan, build_order, make_plan};
use crate::project::{ProjectOptions, load_project};
use crate::rebuild::inputs::INPUTS_LABEL;
use crate::rebuild::{Carriers, build_prepared, check_needed_images, prepare};
use crate::reporter::Reporter;

/// What `offpack rebuild` is asked to do (what `cli::RebuildArgs` converts into).
#[derive(Debug, Clone)]
pub struct RebuildRequest {
    pub project: ProjectOptions,
    /// The services to rebuild; none means every active service with a `build:` section.
    pub services: Vec<String>,
    pub no_cache: bool,
    pub builder: BuilderChoice,
    /// Build only the services whose build inputs differ from those of their current image.
    pub changed: bool,
    /// Start the rebuilt services with compose afterwards.
    pub up: bool,
    /// Where a rebuild that lacks packages writes what the networked side must bundle.
    pub request_file: PathBuf,
}

/// One service rebuilt, or left alone by `--changed`.
#[derive(Debug)]
pub struct Rebuilt {
    pub service: String,
    pub image_id: Digest,
    pub tags: Vec<String>,
    pub builder: Builder,
    /// The build inputs digest of the image.
    pub inputs: Digest,
    /// `--changed` found the inputs unchanged: nothing was built.
    pub unchanged: bool,
    /// The final image's build steps (empty when unchanged).
    pub steps: Vec<BuildStep>,
    pub seconds: f64,
}

impl Rebuilt {
    pub fn cached_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.cached).count()
    }
}

/// What `offpack rebuild` did.
#[derive(Debug)]
pub struct RebuildOutcome {
    pub services: Vec<Rebuilt>,
    /// The services compose started (`--up`).
    pub started: Vec<String>,
}

/// Rebuilds the services `request` names, in dependency order.
pub async fn rebuild(request: &RebuildRequest, reporter: &dyn Reporter) -> Result<RebuildOutcome> {
    let project = load_project(&request.project)?;
    for name in &request.services {
        if !project.services.contains_key(name) {
            let known: Vec<&str> = project.services.keys().map(String::as_str).collect();
            bail!(
                "no service `{name}` in project {}; its services are: {}",
                project.name,
                known.join(", ")
            );
        }
    }
    let engine = Engine::connect().await?;
    let builder = choose_builder(&engine, request.builder).await?;
    let plan = make_plan(&project, &Disk, builder)?;
    let dependency_order: Vec<&ServicePlan> = build_order(&plan)?;
    let wanted: Vec<String> = if request.services.is_empty() {
        dependency_order.iter().map(|s| s.name.clone()).collect()
    } else {
        for name in &request.services {
            if project.services[name].build.is_none() {
                bail!(
                    "service {name} has no `build:` section: it runs an image as is, so there is \
                     nothing to rebuild"
                );
            }
        }
        request.services.clone()
    };
    let order: Vec<&ServicePlan> = rebuild_order(
        &dependency_order
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        &wanted,
    )
    .into_iter()
    .filter_map(|name| plan.services.iter().find(|s| s.name == name))
    .collect();
    // Every image every build needs, before the first build: a missing base fails in a second, not
    // after the first service took minutes.
    let image_ids = check_needed_images(&engine, &order).await?;

    let mut builds = Vec::new();
    for service_plan in order {
        let service = &project.services[&service_plan.name];
        builds.push((
            service_plan,
            prepare(&project, service, service_plan, builder, &image_ids)?,
        ));
    }
    // Stops when dropped, after the last build.
    let _package_server = serve_changed_package_files(
        &engine,
        &project,
        &mut builds,
        &image_ids,
        &request.request_file,
        reporter,
    )
    .await?;

    let mut results = Vec::new();
    for (service_plan, prepared) in builds {
        let service = &project.services[&service_plan.name];
        if request.changed
            && let Some(current) = engine.image(&prepared.request.tags[0]).await?
            && current.labels.get(INPUTS_LABEL) == Some(&prepared.inputs.to_string())
        {
            reporter.step(&format!(
                "{}: unchanged since its image was built (inputs {})",
                service.name, prepared.inputs
            ));
            results.push(Rebuilt {
                service: service.name.clone(),
                image_id: current.id,
                tags: prepared.request.tags.clone(),
                builder,
                inputs: prepared.inputs.clone(),
                unchanged: true,
                steps: Vec::new(),
                seconds: 0.0,
            });
            continue;
        }
        let built = build_prepared(
            &engine,
            &prepared,
            request.no_cache,
            Carriers::Keep,
            reporter,
        )
        .await?;
        // `Carriers::Keep`: the image's build is the only one.
        let seconds = built.outcome.seconds();
        results.push(Rebuilt {
            service: service.name.clone(),
            image_id: built.outcome.image_id.clone(),
            tags: prepared.request.tags.clone(),
            builder,
            inputs: prepared.inputs.clone(),
            unchanged: false,
            steps: built.outcome.steps,
            seconds,
        });
    }
    let mut started = Vec::new();
    if request.up {
        let names: Vec<String> = results.iter().map(|r| r.service.clone()).collect();
        compose_up(&project, &request.project, &names)?;
        started = names;
    }
    Ok(RebuildOutcome {
        services: results,
        started,
    })
}

/// The named services in the plan's build order, then those the build order does not list, in
/// the order they were named.
fn rebuild_order<'a>(dependency_order: &[&'a str], services: &'a [String]) -> Vec<&'a str> {
    let mut order: Vec<&str> = dependency_order
        .iter()
        .copied()
        .filter(|n| services.iter().any(|a| a == n))
        .collect();
    for name in services {
        if !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_services_build_in_dependency_order_then_as_named() {
        let named = ["app".to_string(), "extra".into(), "base".into()];
        assert_eq!(
            rebuild_order(&["base", "other", "app"], &named),
            ["base", "app", "extra"]
        );
    }
}
