//! The job behind `offpack rebuild`: the named services checked against the project before the
//! engine is contacted, then built in dependency order (a service may build FROM another's image).

use anyhow::{Result, bail};
use offpack_bundle::Digest;
use offpack_dockerfile::Builder;

use crate::engine::Engine;
use crate::ops::builder::BuilderChoice;
use crate::plan::{Disk, build_order, make_plan};
use crate::project::{ProjectOptions, load_project};
use crate::rebuild::{BuildSettings, build_service, image_tags};
use crate::reporter::Reporter;

/// What `offpack rebuild` is asked to do (what `cli::RebuildArgs` converts into).
#[derive(Debug, Clone)]
pub struct RebuildRequest {
    pub project: ProjectOptions,
    pub services: Vec<String>,
    pub no_cache: bool,
    /// `--builder`: the builder to build with (`auto`: BuildKit when the engine has it).
    pub builder: BuilderChoice,
    /// `--changed`: build only the services whose build inputs differ from those recorded on
    /// the image their name points to (the `dev.offpack.build-inputs` label); say so for the others.
    pub changed: bool,
    /// `--up`: afterwards start the rebuilt services with compose (`up -d --no-build`, and
    /// `--pull never` on compose v2), with the same project files, name and profiles.
    pub up: bool,
}

/// One service rebuilt.
#[derive(Debug)]
pub struct Rebuilt {
    pub service: String,
    pub image_id: Digest,
    pub tags: Vec<String>,
    pub cached_steps: usize,
}

/// Rebuilds the services `request` names, in dependency order.
pub async fn rebuild(request: &RebuildRequest, reporter: &dyn Reporter) -> Result<Vec<Rebuilt>> {
    let project = load_project(&request.project)?;
    // The builds below use the classic builder until the BuildKit build lands (issue 18), so the
    // plan is the classic one whatever `request.builder` says.
    let plan = make_plan(&project, &Disk, Builder::Classic)?;
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
    let settings = BuildSettings {
        stage: None,
        no_cache: request.no_cache,
    };
    let mut results = Vec::new();
    let dependency_order: Vec<&str> = build_order(&plan)?
        .into_iter()
        .map(|s| s.name.as_str())
        .collect();
    for name in rebuild_order(&dependency_order, &request.services) {
        let service = &project.services[name];
        let Some(service_plan) = plan.services.iter().find(|s| s.name == name) else {
            bail!("service {name} is missing from the plan");
        };
        let outcome = build_service(
            &engine,
            &project,
            service,
            service_plan,
            &settings,
            reporter,
        )
        .await?;
        results.push(Rebuilt {
            service: name.to_string(),
            image_id: outcome.image_id,
            tags: image_tags(&project, service),
            cached_steps: outcome.cached_steps,
        });
    }
    Ok(results)
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
