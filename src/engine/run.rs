//! Runs one command in a throwaway container of an image and collects what it printed: for work
//! that must happen inside an image (pip resolving wheels for the image's own interpreter and
//! platform). The container is removed however the run ends: success, failure, an error of the
//! engine, or the caller dropping the future (a Ctrl-C handler's `select!`), best effort.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::Engine;

/// The label every container of [`Engine::run_to_completion`] carries (value: the spec's
/// `purpose`), so that one left behind by a killed run can be told apart from the user's.
pub const RUN_LABEL: &str = "dev.offpack.run";
/// The ID of the process that started the container: whose a leftover is, when several offpack
/// runs share an engine.
pub const RUN_PID_LABEL: &str = "dev.offpack.run.pid";

/// Containers this process has started with [`Engine::run_to_completion`]; lets a test prove that
/// a cached result started none.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// An image the engine has (a name or an ID).
    pub image: String,
    /// The command, run as is: the image's entrypoint is not used.
    pub cmd: Vec<String>,
    /// Environment variables, on top of the image's.
    pub env: Vec<(String, String)>,
    pub binds: Vec<Bind>,
    /// `uid:gid` (or a name the image knows); the image's user when `None`.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Why the container exists, for the [`RUN_LABEL`] label (`pip-wheel`).
    pub purpose: String,
}

/// A host directory mounted into the container.
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// How the command ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i64,
    /// Its standard output and error, interleaved as the engine kept them.
    pub logs: String,
}

impl RunOutcome {
    /// The last `n` non-empty lines of the logs, for an error message.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self
            .logs
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Engine {
    /// Creates a container of `spec.image` on the default network, starts it, waits for its
    /// command to end and returns its exit code and output. The container is always removed.
    /// A non-zero exit code is an outcome, not an error; errors are the engine's (no such image,
    /// a bind it refuses).
    pub async fn run_to_completion(&self, spec: &RunSpec) -> Result<RunOutcome> {
        let docker = self.docker();
        let binds = spec
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{}:{}:{}",
                    b.host.display(),
                    b.container,
                    if b.read_only { "ro" } else { "rw" }
                )
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            // An empty entrypoint (not an absent one) replaces the image's, so `cmd` runs as is.
            entrypoint: Some(Vec::new()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            labels: Some(HashMap::from([
                (RUN_LABEL.to_string(), spec.purpose.clone()),
                (RUN_PID_LABEL.to_string(), std::process::id().to_string()),
            ])),
            host_config: Some(HostConfig {
                binds: Some(binds),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .with_context(|| format!("cannot create a container of {}", spec.image))?;
        let guard = RemoveOnDrop {
            docker: docker.clone(),
            id: Some(created.id.clone()),
        };
        let outcome = run_created(docker, &created.id, &spec.image).await;
        guard.remove().await;
        outcome
    }
}

/// The number of containers this process started with [`Engine::run_to_completion`].
pub fn containers_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

async fn run_created(docker: &Docker, id: &str, image: &str) -> Result<RunOutcome> {
    docker
        .start_container(id, None)
        .await
        .with_context(|| format!("cannot start a container of {image}"))?;
    STARTED.fetch_add(1, Ordering::Relaxed);
    let mut wait = docker.wait_container(
        id,
        Some(WaitContainerOptions {
            condition: "not-running".to_string(),
        }),
    );
    let mut exit_code = None;
    while let Some(item) = wait.next().await {
        match item {
            Ok(response) => exit_code = Some(response.status_code),
            // bollard reports a non-zero exit code as an error; it is the outcome here.
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                exit_code = Some(code)
            }
            Err(e) => {
                return Err(e).with_context(|| format!("waiting for a container of {image}"));
            }
        }
    }
    let exit_code = exit_code
        .with_context(|| format!("the engine did not say how the container of {image} ended"))?;
    let mut logs = Vec::new();
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        }),
    );
    while let Some(item) = stream.next().await {
        match item.with_context(|| format!("reading the output of a container of {image}"))? {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => logs.extend_from_slice(&message),
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(RunOutcome {
        exit_code,
        logs: String::from_utf8_lossy(&logs).into_owned(),
    })
}

/// Removes the container when the run ends, and also when its future is dropped before (the
/// caller gave up on it, e.g. on Ctrl-C).
struct RemoveOnDrop {
    docker: Docker,
    id: Option<String>,
}

const REMOVE: RemoveContainerOptions = RemoveContainerOptions {
    v: true,
    force: true,
    link: false,
};

impl RemoveOnDrop {
    async fn remove(mut self) {
        if let Some(id) = self.id.take() {
            // Nothing to do about a failure: the run's own outcome is what the caller needs.
            let _ = self.docker.remove_container(&id, Some(REMOVE)).await;
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        // The future was dropped mid-run, maybe on the runtime's last turn before the process
        // ends: remove the container now, from a thread with its own runtime and connection (the
        // caller's runtime may be the current-thread one this drop blocks). Bounded, best effort.
        let removal = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let removal = async {
                let docker = Docker::connect_with_defaults().ok()?;
                // The engine refuses a client newer than it knows (20.10 knows API 1.41).
                let docker = docker.negotiate_version().await.ok()?;
                docker.remove_container(&id, Some(REMOVE)).await.ok()
            };
            runtime.block_on(async {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(20), removal).await;
            });
        });
        let _ = removal.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_non_empty_lines() {
        let outcome = RunOutcome {
            exit_code: 1,
            logs: "a\n\nb\nc  \n\nd\n".to_string(),
        };
        assert_eq!(outcome.tail(2), "c\nd");
        assert_eq!(outcome.tail(10), "a\nb\nc\nd");
    }
}
