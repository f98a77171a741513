use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Output, RebuildArgs};
use crate::ops::rebuild::rebuild;
use crate::rebuild::short_id;
use crate::reporter::Reporter;

#[derive(Serialize)]
struct Rebuilt {
    service: String,
    image_id: offpack_bundle::Digest,
    tags: Vec<String>,
    cached_steps: usize,
}

pub async fn run(args: RebuildArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let request = args.request();
    let results: Vec<Rebuilt> = rebuild(&request, reporter)
        .await?
        .into_iter()
        .map(|r| Rebuilt {
            service: r.service,
            image_id: r.image_id,
            tags: r.tags,
            cached_steps: r.cached_steps,
        })
        .collect();
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
