use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{Output, RebuildArgs};
use crate::engine::Engine;
use crate::plan::{Disk, build_order, make_plan};
use crate::project::load_project;
use crate::rebuild::{BuildSettings, build_service, image_tags, short_id};
use crate::reporter::Reporter;

#[derive(Serialize)]
struct Rebuilt {
    service: String,
    image_id: String,
    tags: Vec<String>,
    cached_steps: usize,
}

pub async fn run(args: RebuildArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let project = load_project(&args.project.options())?;
    let plan = make_plan(&project, &Disk)?;
    for name in &args.services {
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
        no_cache: args.no_cache,
    };
    let mut results = Vec::new();
    // Rebuild in dependency order: a service may build FROM another's image.
    let mut order: Vec<&str> = build_order(&plan)?
        .into_iter()
        .map(|s| s.name.as_str())
        .filter(|n| args.services.iter().any(|a| a == n))
        .collect();
    for name in &args.services {
        if !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    for name in order {
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
    output.result(&results, || {
        results
            .iter()
            .map(|r| {
                format!(
                    "rebuilt {} -> {} as {} ({} steps from cache)\n",
                    r.service,
                    short_id(&r.image_id),
                    r.tags.join(", "),
                    r.cached_steps
                )
            })
            .collect()
    });
    Ok(ExitCode::SUCCESS)
}
