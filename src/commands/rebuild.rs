use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Output, RebuildArgs};
use crate::engine::Builder;
use crate::ops::rebuild::{Rebuilt, rebuild};
use crate::rebuild::short_id;
use crate::reporter::Reporter;

/// One service in `rebuild --json` (docs/rebuild.md).
#[derive(Serialize)]
struct ServiceResult {
    service: String,
    image_id: offpack_bundle::Digest,
    tags: Vec<String>,
    builder: Builder,
    /// The build inputs digest (`rebuild --changed` compares it).
    inputs: offpack_bundle::Digest,
    /// `--changed` left the service alone: its inputs are those of its image.
    skipped_unchanged: bool,
    steps: Vec<Step>,
    cached_steps: usize,
    total_steps: usize,
    seconds: f64,
    /// `--up` started it.
    started: bool,
}

#[derive(Serialize)]
struct Step {
    name: String,
    cached: bool,
    seconds: f64,
}

pub async fn run(args: RebuildArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let request = args.request();
    let outcome = rebuild(&request, reporter).await?;
    let results: Vec<ServiceResult> = outcome
        .services
        .iter()
        .map(|r| service_result(r, outcome.started.contains(&r.service)))
        .collect();
    output.result(&results, || results.iter().map(render).collect());
    Ok(ExitCode::SUCCESS)
}

fn service_result(r: &Rebuilt, started: bool) -> ServiceResult {
    ServiceResult {
        service: r.service.clone(),
        image_id: r.image_id.clone(),
        tags: r.tags.clone(),
        builder: r.builder,
        inputs: r.inputs.clone(),
        skipped_unchanged: r.unchanged,
        steps: r
            .steps
            .iter()
            .map(|s| Step {
                name: s.name.clone(),
                cached: s.cached,
                seconds: s.seconds,
            })
            .collect(),
        cached_steps: r.cached_steps(),
        total_steps: r.steps.len(),
        seconds: r.seconds,
        started,
    }
}

/// `backend -> 1a2b3c4d5e6f as shop-backend, shop_backend: 12/14 steps from cache, 3.1 s`
fn render(r: &ServiceResult) -> String {
    let started = if r.started { "; started" } else { "" };
    if r.skipped_unchanged {
        return format!(
            "{}: unchanged, {} as {}{started}\n",
            r.service,
            short_id(&r.image_id),
            r.tags.join(", ")
        );
    }
    format!(
        "rebuilt {} -> {} as {} ({}): {}/{} steps from cache, {:.1} s{started}\n",
        r.service,
        short_id(&r.image_id),
        r.tags.join(", "),
        r.builder,
        r.cached_steps,
        r.total_steps,
        r.seconds
    )
}
