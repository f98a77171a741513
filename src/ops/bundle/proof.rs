//! The bundle-time proof: before the bundle is written, each service offpack built is built
//! again exactly as the far side's `offpack rebuild` will build it (same builder, Dockerfile as
//! sent, args, target, platform, network, and as cache only the carriers the bundle holds), and
//! must come entirely from cache with the image ID the bundle carries. A step that would run again
//! behind the gap is named now, with its service, instead of being discovered there.
//!
//! What it cannot show: the networked engine's local build cache also answers, so a step is
//! "cached" here if either the carriers or that cache hold it. The carriers' coverage itself is
//! shown by the far-side tests (wipe, load, network cut; docs/rebuild.md).

use anyhow::Result;
use offpack_bundle::Digest;

use offpack_dockerfile::FindingCode;

use crate::engine::Engine;
use crate::error::CheckFailed;
use crate::plan::{Code, Plan, ServicePlan};
use crate::rebuild::{PreparedBuild, rebuild_as_the_far_side_will, short_id};
use crate::reporter::Reporter;

/// One service to prove: how it was built and the image the bundle carries for it.
#[derive(Debug, Clone)]
pub struct ProofJob {
    pub prepared: PreparedBuild,
    pub carried: Digest,
    /// Steps that cannot run behind the gap whatever the cache holds (an `ADD` that downloads:
    /// BuildKit checks the URL on every build), from the plan.
    pub never_offline: Vec<String>,
}

/// What the plan says of `service` that the proof build cannot show: steps that fetch on every
/// build (failures) and unnamed intermediate stages, which no carrier can cover (warnings: their
/// steps run again behind the gap, which is fine only if they need no network).
pub fn static_checks(plan: &Plan, service: &ServicePlan) -> (Vec<String>, Vec<String>) {
    let never_offline = plan
        .findings
        .iter()
        .filter(|f| f.service == service.name && f.code == Code::Dockerfile(FindingCode::RemoteAdd))
        .map(|f| {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{}:{line}: ", file.display()),
                _ => String::new(),
            };
            format!("{place}{}", f.message)
        })
        .collect();
    let uncovered = service
        .build
        .iter()
        .flat_map(|build| build.stages.split_last().map(|(_, rest)| rest).unwrap_or(&[]))
        .filter(|stage| stage.parse::<usize>().is_ok())
        .map(|stage| {
            format!(
                "service {}: stage {stage} of {} has no name, so offpack cannot carry its cache: its \
                 steps run again behind the gap; name it (`FROM … AS build`) if they need the network",
                service.name,
                service.build.as_ref().map(|b| b.dockerfile.as_str()).unwrap_or_default()
            )
        })
        .collect();
    (never_offline, uncovered)
}

/// What the proof of one service found wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFailure {
    pub service: String,
    /// Steps the far side's rebuild would run.
    pub ran: Vec<String>,
    /// The image the far side's rebuild would make, when it is not the carried one.
    pub other_image: Option<Digest>,
    pub carried: Digest,
}

impl std::fmt::Display for ProofFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}:", self.service)?;
        for step in &self.ran {
            write!(f, "\n    would run again offline: {step}")?;
        }
        if let Some(other) = &self.other_image {
            write!(
                f,
                "\n    would make image {}, not the carried {}: the build is not reproducible from \
                 its inputs (a step's result changes from build to build)",
                short_id(other),
                short_id(&self.carried)
            )?;
        }
        Ok(())
    }
}

/// Judges a proof build: every step from cache, and the carried image (`same_image`: the image
/// made is the carried one apart from the order of its cache metadata, [`Engine::same_image`]).
pub fn judge(
    job: &ProofJob,
    steps_ran: Vec<String>,
    image: &Digest,
    same_image: bool,
) -> Option<ProofFailure> {
    let other_image = (image != &job.carried && !same_image).then(|| image.clone());
    if steps_ran.is_empty() && other_image.is_none() {
        return None;
    }
    Some(ProofFailure {
        service: job.prepared.service.clone(),
        ran: steps_ran,
        other_image,
        carried: job.carried.clone(),
    })
}

/// Runs every proof; an error (exit 1) naming each service and step that would not come from cache.
pub async fn prove(engine: &Engine, jobs: &[ProofJob], reporter: &dyn Reporter) -> Result<()> {
    let mut failures = Vec::new();
    for job in jobs {
        let outcome = rebuild_as_the_far_side_will(engine, &job.prepared, reporter).await?;
        // Steps that fetch on every build fail the proof as steps that ran do.
        let ran = outcome
            .steps
            .iter()
            .filter(|s| !s.cached)
            .map(|s| s.name.clone())
            .chain(job.never_offline.iter().cloned())
            .collect();
        let same_image = outcome.image_id == job.carried
            || engine
                .same_image(&outcome.image_id.to_string(), &job.carried.to_string())
                .await?;
        if outcome.image_id != job.carried {
            engine.remove_unnamed(&outcome.image_id.to_string()).await?;
        }
        failures.extend(judge(job, ran, &outcome.image_id, same_image));
    }
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
    Err(CheckFailed(format!(
        "the bundle would not rebuild from cache behind the gap; nothing was written:\n{}\n\
         Fix the steps named (a step that differs from build to build, e.g. one that writes the \
         time, cannot be cached), or pass --no-proof to bundle anyway.",
        lines.join("\n")
    ))
    .into())
}
