//! Image builds through the engine, with the classic builder (`POST /build`, through bollard)
//! or BuildKit (`POST /build?version=2` without a session, through [`super::raw`]), reported
//! step by step: which Dockerfile instructions ran, which came from cache, and how long they took.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use offpack_bundle::Digest;
use prost::Message as _;
use serde::Deserialize;

use super::buildkit_proto::{StatusResponse, Timestamp, Vertex};
use super::facts::api_at_least;
use super::{Engine, raw};
use crate::reporter::Reporter;

pub use crate::reporter::BuildStep;
pub use offpack_dockerfile::Builder;

/// How to build one image (the compose `build:` settings, resolved).
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Path of the Dockerfile inside the context tar.
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub target: Option<String>,
    pub cache_from: Vec<String>,
    pub labels: HashMap<String, String>,
    pub platform: Option<String>,
    pub network: Option<String>,
    pub extra_hosts: Vec<String>,
    pub no_cache: bool,
    pub builder: Builder,
    /// Put BuildKit's inline cache metadata into the image's config (build arg
    /// `BUILDKIT_INLINE_CACHE=1`), so that the image is a cache source wherever it is loaded.
    /// Ignored by the classic builder, whose images are cache sources as they are.
    pub inline_cache: bool,
}

impl Default for BuildRequest {
    fn default() -> Self {
        BuildRequest {
            dockerfile: "Dockerfile".to_string(),
            tags: Vec::new(),
            build_args: HashMap::new(),
            target: None,
            cache_from: Vec::new(),
            labels: HashMap::new(),
            platform: None,
            network: None,
            extra_hosts: Vec::new(),
            no_cache: false,
            builder: Builder::Classic,
            inline_cache: false,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub image_id: Digest,
    /// The Dockerfile's instructions other than `FROM`, in the order the builder reported them.
    pub steps: Vec<BuildStep>,
    /// The whole build's time, from the request to the image ID. BuildKit runs independent
    /// steps at the same time, so the steps' times can add up to more.
    pub wall_seconds: f64,
}

impl BuildOutcome {
    /// Steps the builder took from its cache.
    pub fn cached_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.cached).count()
    }

    pub fn total_steps(&self) -> usize {
        self.steps.len()
    }

    /// The build's time ([`BuildOutcome::wall_seconds`]).
    pub fn seconds(&self) -> f64 {
        self.wall_seconds
    }
}

impl Engine {
    /// Whether the engine builds with BuildKit over `POST /build?version=2`: a Linux engine
    /// with API 1.39 (Docker 18.09) or later.
    pub async fn supports_buildkit(&self) -> Result<bool> {
        let version = self
            .docker
            .version()
            .await
            .context("asking the engine for its version")?;
        let linux = version
            .os
            .as_deref()
            .is_some_and(|os| os.eq_ignore_ascii_case("linux"));
        Ok(linux && api_at_least(version.api_version.as_deref().unwrap_or_default(), 1, 39))
    }

    /// Builds an image from a context tar stream with `request.builder`, never pulling; reports
    /// each finished step (`Reporter::build_step`), then gives the image `request.tags`.
    pub async fn build<S>(
        &self,
        request: &BuildRequest,
        context: S,
        reporter: &dyn Reporter,
    ) -> Result<BuildOutcome>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let started = Instant::now();
        let (image_id, steps) = match request.builder {
            Builder::Classic => self.build_classic(request, context, reporter).await?,
            Builder::BuildKit => self.build_buildkit(request, context, reporter).await?,
        };
        let wall_seconds = started.elapsed().as_secs_f64();
        let image_id: Digest = image_id.parse().with_context(|| {
            format!("the engine finished the build with image ID {image_id}, not a sha256 digest")
        })?;
        for tag in &request.tags {
            self.tag(&image_id.to_string(), tag).await?;
        }
        Ok(BuildOutcome {
            image_id,
            steps,
            wall_seconds,
        })
    }

    async fn build_classic<S>(
        &self,
        request: &BuildRequest,
        context: S,
        reporter: &dyn Reporter,
    ) -> Result<(String, Vec<BuildStep>)>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let options = build_options(request, BuilderVersion::BuilderV1);
        let body = bollard::body_try_stream(context);
        let mut stream = self.docker.build_image(options, None, Some(body));
        let started = Instant::now();
        let mut log = ClassicLog::default();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let at = started.elapsed().as_secs_f64();
            let info = match item {
                Ok(info) => info,
                // bollard turns the engine's `errorDetail` into this error.
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(log.failure(&error));
                }
                Err(e) => {
                    return Err(anyhow!(e).context(format!(
                        "the engine's build failed\n{}",
                        tail(&log.text, 20)
                    )));
                }
            };
            if let Some(detail) = info.error_detail {
                return Err(log.failure(&detail.message.unwrap_or_default()));
            }
            if let Some(text) = info.stream {
                for step in log.push(&text, at) {
                    reporter.build_step(&step);
                }
            }
            if let Some(aux) = info.aux
                && let Some(id) = aux.id
            {
                image_id = Some(id);
            }
        }
        let at = started.elapsed().as_secs_f64();
        let steps = log.finish(at, reporter);
        let image_id = image_id.ok_or_else(|| {
            anyhow!(
                "the engine finished the build without an image ID\n{}",
                tail(&log.text, 20)
            )
        })?;
        Ok((image_id, steps))
    }

    async fn build_buildkit<S>(
        &self,
        request: &BuildRequest,
        context: S,
        reporter: &dyn Reporter,
    ) -> Result<(String, Vec<BuildStep>)>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let options = build_options(request, BuilderVersion::BuilderBuildKit);
        let query = serde_urlencoded::to_string(&options)
            .context("encoding the build's options for the engine")?;
        let path = format!("/v{}/build?{query}", self.docker.client_version());
        let lines = raw::post_tar_lines(&self.endpoint, &path, context).await?;
        let mut lines = std::pin::pin!(lines);
        let mut progress = BuildKitProgress::default();
        while let Some(line) = lines.next().await {
            for step in progress.answer_line(&line?)? {
                reporter.build_step(&step);
            }
        }
        let image_id = progress.image_id.clone().ok_or_else(|| {
            anyhow!(
                "the engine finished the BuildKit build without an image ID (the answer ended early)"
            )
        })?;
        Ok((image_id, progress.steps()))
    }
}

/// The `id` of BuildKit's progress lines.
const TRACE_ID: &str = "moby.buildkit.trace";

/// One line of the engine's build answer.
#[derive(Debug, Deserialize)]
struct BuildMessage {
    id: Option<String>,
    /// A base64 `StatusResponse` (`moby.buildkit.trace`), or `{"ID": image ID}`.
    aux: Option<serde_json::Value>,
    error: Option<String>,
    #[serde(rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

fn build_options(request: &BuildRequest, version: BuilderVersion) -> BuildImageOptions {
    let mut build_args = request.build_args.clone();
    if request.inline_cache && version == BuilderVersion::BuilderBuildKit {
        build_args.insert("BUILDKIT_INLINE_CACHE".to_string(), "1".to_string());
    }
    BuildImageOptions {
        dockerfile: request.dockerfile.clone(),
        // No `t`: the names are given by offpack once the build is done. A build whose client
        // was killed goes on in the engine and would tag its image after a rerun had tagged
        // the new one, leaving the service's names on different images.
        t: None,
        extrahosts: (!request.extra_hosts.is_empty()).then(|| request.extra_hosts.join(",")),
        nocache: request.no_cache,
        cachefrom: (!request.cache_from.is_empty()).then(|| request.cache_from.clone()),
        pull: None,
        rm: true,
        forcerm: true,
        buildargs: Some(build_args),
        labels: Some(request.labels.clone()),
        networkmode: request.network.clone(),
        platform: request.platform.clone().unwrap_or_default(),
        target: request.target.clone().unwrap_or_default(),
        version,
        ..Default::default()
    }
}

fn decode_status(aux: &str) -> Result<StatusResponse> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(aux)
        .context("the engine sent BuildKit progress that is not base64")?;
    StatusResponse::decode(bytes.as_slice())
        .context("the engine sent BuildKit progress that is not a BuildKit StatusResponse")
}

/// The instruction of a BuildKit vertex that is a build step: `[build 4/6] RUN npm ci` and
/// `[4/6] RUN npm ci` (a Dockerfile without stage names), not `FROM` (the base image, which
/// `load` brings, not the build) and not BuildKit's own work (`[internal] load metadata for …`,
/// `importing cache manifest from …`, `exporting to image`).
pub(crate) fn step_instruction(vertex_name: &str) -> Option<&str> {
    let rest = vertex_name.strip_prefix('[')?;
    let (label, instruction) = rest.split_once("] ")?;
    // `stage N/M`, `N/M`, or with a platform first (`linux/amd64 build 4/6`): the last word.
    let position = label.rsplit(' ').next()?;
    let (n, m) = position.split_once('/')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !number(n) || !number(m) {
        return None;
    }
    let keyword = instruction.split_whitespace().next()?;
    let is_instruction = keyword.bytes().all(|b| b.is_ascii_uppercase());
    (is_instruction && keyword != "FROM").then_some(instruction)
}

/// The last lines of a vertex's output kept for an error message.
const LOG_TAIL_LINES: usize = 20;
/// What is kept of one vertex's output, from its end.
const LOG_KEEP_BYTES: usize = 64 * 1024;

/// What BuildKit said about the build's vertices so far.
#[derive(Debug, Default)]
pub(crate) struct BuildKitProgress {
    /// In the order BuildKit first named them.
    vertices: Vec<VertexState>,
    by_digest: HashMap<String, usize>,
    /// The end of each vertex's output.
    logs: HashMap<String, Vec<u8>>,
    /// The built image's ID, once the engine gave it.
    image_id: Option<String>,
    /// When this build began on the engine's clock: the first start BuildKit reported.
    began: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct VertexState {
    digest: String,
    name: String,
    cached: bool,
    started: Option<Timestamp>,
    completed: Option<Timestamp>,
    error: String,
    reported: bool,
}

impl VertexState {
    /// BuildKit runs a step once for every build that asks for it at the same time: a build that
    /// asks while another's run of the same step is still held gets that run's report, started
    /// before this build began (measured: docs/engine-support.md). That step did no work for this
    /// build, so it counts as cached here; left as "ran", another build on the same engine would
    /// make this one look uncached.
    fn ran_for_another_build(&self, began: Option<Timestamp>) -> bool {
        match (self.started, began) {
            (Some(started), Some(began)) => {
                (started.seconds, started.nanos) < (began.seconds, began.nanos)
            }
            _ => false,
        }
    }

    fn step(&self, began: Option<Timestamp>) -> Option<BuildStep> {
        step_instruction(&self.name)?;
        let cached = self.cached || self.ran_for_another_build(began);
        let seconds = match (cached, self.started, self.completed) {
            (false, Some(started), Some(completed)) => {
                (completed.as_secs_f64() - started.as_secs_f64()).max(0.0)
            }
            _ => 0.0,
        };
        Some(BuildStep {
            name: self.name.clone(),
            cached,
            seconds,
        })
    }
}

impl BuildKitProgress {
    /// Takes in one line of the engine's answer to `POST /build?version=2`; returns the steps
    /// that finished with it, or the build's failure.
    pub(crate) fn answer_line(&mut self, line: &[u8]) -> Result<Vec<BuildStep>> {
        if line.trim_ascii().is_empty() {
            return Ok(Vec::new());
        }
        let message: BuildMessage = serde_json::from_slice(line).with_context(|| {
            format!(
                "the engine's build answer has a line offpack cannot read: {}",
                String::from_utf8_lossy(line)
            )
        })?;
        if let Some(error) = message
            .error_detail
            .and_then(|d| d.message)
            .or(message.error)
        {
            return Err(self.failure(&error));
        }
        match (message.id.as_deref(), message.aux) {
            (Some(TRACE_ID), Some(serde_json::Value::String(aux))) => {
                Ok(self.update(decode_status(&aux)?))
            }
            (_, Some(aux)) => {
                if let Some(id) = aux.get("ID").and_then(|id| id.as_str()) {
                    self.image_id = Some(id.to_string());
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Takes in one progress message; returns the steps that finished with it.
    pub(crate) fn update(&mut self, status: StatusResponse) -> Vec<BuildStep> {
        for vertex in status.vertexes {
            self.vertex(vertex);
        }
        for log in status.logs {
            let kept = self.logs.entry(log.vertex).or_default();
            kept.extend_from_slice(&log.msg);
            if kept.len() > LOG_KEEP_BYTES {
                kept.drain(..kept.len() - LOG_KEEP_BYTES);
            }
        }
        let mut finished = Vec::new();
        for state in &mut self.vertices {
            if !state.reported && state.completed.is_some() && state.error.is_empty() {
                state.reported = true;
                finished.extend(state.step(self.began));
            }
        }
        finished
    }

    /// A vertex is sent again whenever it changes, each time whole; a field BuildKit left
    /// unset keeps what an earlier message said.
    fn vertex(&mut self, vertex: Vertex) {
        if self.began.is_none() {
            self.began = vertex.started;
        }
        let index = *self
            .by_digest
            .entry(vertex.digest.clone())
            .or_insert_with(|| {
                self.vertices.push(VertexState {
                    digest: vertex.digest.clone(),
                    ..Default::default()
                });
                self.vertices.len() - 1
            });
        let state = &mut self.vertices[index];
        if !vertex.name.is_empty() {
            state.name = vertex.name;
        }
        state.cached |= vertex.cached;
        state.started = vertex.started.or(state.started);
        state.completed = vertex.completed.or(state.completed);
        if !vertex.error.is_empty() {
            state.error = vertex.error;
        }
    }

    /// The build's steps, in the order BuildKit first named them.
    pub(crate) fn steps(&self) -> Vec<BuildStep> {
        self.vertices
            .iter()
            .filter_map(|v| v.step(self.began))
            .collect()
    }

    /// The error for a build BuildKit ended with `message`: the step that failed, the end of
    /// its output, and BuildKit's words; a base image BuildKit could not find, by name.
    pub(crate) fn failure(&self, message: &str) -> anyhow::Error {
        let message = message.trim();
        let failed = self
            .vertices
            .iter()
            .filter(|v| !v.error.is_empty())
            .min_by_key(|v| step_instruction(&v.name).is_none());
        if let Some(image) = failed
            .and_then(|v| v.name.strip_prefix("[internal] load metadata for "))
            .map(familiar)
            .or_else(|| image_in_registry_error(message))
        {
            return anyhow!(
                "the image {image} is not in the engine, and BuildKit could not fetch it: {message}\n\
                 Load it first (`offpack load BUNDLE`), or pull it on a networked machine."
            );
        }
        let Some(failed) = failed else {
            return anyhow!("BuildKit build failed: {message}");
        };
        let mut text = format!("step {} failed: {}", failed.name, failed.error.trim());
        let output = self
            .logs
            .get(&failed.digest)
            .map(|log| tail(&String::from_utf8_lossy(log), LOG_TAIL_LINES))
            .unwrap_or_default();
        if !output.trim().is_empty() {
            text.push_str("\nits output ended with:\n");
            for line in output.lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
            text.pop();
        }
        if message != failed.error.trim() {
            text.push_str(&format!("\nBuildKit: {message}"));
        }
        anyhow!(text)
    }
}

/// `docker.io/library/python:3.11` as the user wrote it: `python:3.11`.
fn familiar(name: &str) -> String {
    let name = name.trim();
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_string()
}

/// The image a registry request in `message` was about: BuildKit says
/// `failed to do request: Head "https://registry-1.docker.io/v2/library/x/manifests/1": …`
/// when a `FROM` image is in neither the engine nor a reachable registry.
fn image_in_registry_error(message: &str) -> Option<String> {
    let url = message.split('"').find(|part| part.contains("/v2/"))?;
    let url = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = url.split_once("/v2/")?;
    let (repo, reference) = path.rsplit_once("/manifests/")?;
    let repo = match host {
        "registry-1.docker.io" | "index.docker.io" | "docker.io" => {
            repo.strip_prefix("library/").unwrap_or(repo).to_string()
        }
        _ => format!("{host}/{repo}"),
    };
    let separator = if reference.contains(':') { '@' } else { ':' };
    Some(format!("{repo}{separator}{reference}"))
}

/// Steps from the classic builder's output: `Step N/M : INSTRUCTION` opens a step, ` ---> Using
/// cache` marks it cached, the next step (or the end) closes it.
#[derive(Debug, Default)]
pub(crate) struct ClassicLog {
    /// The whole output, for error messages.
    text: String,
    /// A line not yet ended.
    partial: String,
    current: Option<ClassicStep>,
    steps: Vec<BuildStep>,
}

#[derive(Debug)]
struct ClassicStep {
    /// `[N/M] INSTRUCTION`.
    name: String,
    from: bool,
    cached: bool,
    started: f64,
    output: Vec<String>,
}

impl ClassicLog {
    /// Takes in output that arrived `at` seconds into the build; returns the steps it closed.
    pub(crate) fn push(&mut self, text: &str, at: f64) -> Vec<BuildStep> {
        self.text.push_str(text);
        self.partial.push_str(text);
        let mut closed = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            closed.extend(self.line(line.trim_end_matches(['\n', '\r']), at));
        }
        closed
    }

    fn line(&mut self, line: &str, at: f64) -> Option<BuildStep> {
        if let Some(rest) = line.strip_prefix("Step ")
            && let Some((position, instruction)) = rest.split_once(" : ")
        {
            let closed = self.close(at);
            let from = instruction
                .split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("FROM"));
            self.current = Some(ClassicStep {
                name: format!("[{}] {}", position.trim(), instruction.trim()),
                from,
                cached: false,
                started: at,
                output: Vec::new(),
            });
            return closed;
        }
        if let Some(current) = &mut self.current {
            if line.trim() == "---> Using cache" {
                current.cached = true;
            }
            current.output.push(line.to_string());
        }
        if line.starts_with("Successfully built ") {
            return self.close(at);
        }
        None
    }

    fn close(&mut self, at: f64) -> Option<BuildStep> {
        let step = self.current.take()?;
        if step.from {
            return None;
        }
        let step = BuildStep {
            name: step.name,
            cached: step.cached,
            seconds: if step.cached {
                0.0
            } else {
                (at - step.started).max(0.0)
            },
        };
        self.steps.push(step.clone());
        Some(step)
    }

    /// The build's end: closes the last step, reports it, returns every step.
    fn finish(&mut self, at: f64, reporter: &dyn Reporter) -> Vec<BuildStep> {
        let rest = std::mem::take(&mut self.partial);
        let mut closed: Vec<BuildStep> = self.line(rest.trim_end(), at).into_iter().collect();
        closed.extend(self.close(at));
        for step in &closed {
            reporter.build_step(step);
        }
        self.steps.clone()
    }

    /// The error for a build the classic builder ended with `message`.
    pub(crate) fn failure(&mut self, message: &str) -> anyhow::Error {
        let message = message.trim();
        let rest = std::mem::take(&mut self.partial);
        if !rest.trim().is_empty() {
            self.line(rest.trim_end(), 0.0);
        }
        let Some(current) = &self.current else {
            return anyhow!("build failed: {message}\n{}", tail(&self.text, 20));
        };
        if current.from {
            let image = current
                .name
                .split_whitespace()
                .skip_while(|w| !w.eq_ignore_ascii_case("FROM"))
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .unwrap_or_default();
            return anyhow!(
                "the image {image} is not in the engine, and the engine could not fetch it: {message}\n\
                 Load it first (`offpack load BUNDLE`), or pull it on a networked machine."
            );
        }
        let mut output: Vec<&str> = current
            .output
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim_start().starts_with("--->"))
            .collect();
        while output.last().is_some_and(|l| l.trim().is_empty()) {
            output.pop();
        }
        let output = output[output.len().saturating_sub(LOG_TAIL_LINES)..].join("\n  ");
        if output.trim().is_empty() {
            anyhow!("step {} failed: {message}", current.name)
        } else {
            anyhow!(
                "step {} failed: {message}\nits output ended with:\n  {output}",
                current.name
            )
        }
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::SilentReporter;

    #[test]
    fn steps_are_dockerfile_instructions_but_from() {
        let step = |name| step_instruction(name);
        assert_eq!(step("[build 4/6] RUN npm ci"), Some("RUN npm ci"));
        assert_eq!(step("[2/3] COPY . ."), Some("COPY . ."));
        assert_eq!(step("[stage-0 3/3] WORKDIR /app"), Some("WORKDIR /app"));
        assert_eq!(
            step(
                "[linux/amd64 build 2/2] RUN --mount=type=cache,target=/root/.cache pip install ."
            ),
            Some("RUN --mount=type=cache,target=/root/.cache pip install .")
        );
        for not_a_step in [
            "[build 1/6] FROM docker.io/library/node:18-slim",
            "[1/2] FROM docker.io/library/python:3.11-slim@sha256:abc",
            "[internal] load metadata for docker.io/library/python:3.11-slim",
            "[internal] load build definition from Dockerfile",
            "[internal] load .dockerignore",
            "importing cache manifest from offpack-cache/shop-web:build",
            "exporting to image",
            "exporting cache",
            "[auth] library/python:pull token for registry-1.docker.io",
            "[build 4/x] RUN npm ci",
            "[build /6] RUN npm ci",
            "[4/6]RUN npm ci",
            "resolve image config for docker.io/docker/dockerfile:1",
            "",
        ] {
            assert_eq!(step(not_a_step), None, "{not_a_step}");
        }
    }

    #[test]
    fn a_registry_error_names_the_image() {
        let message = "failed to solve with frontend dockerfile.v0: failed to create LLB definition: \
            failed to do request: Head \"https://registry-1.docker.io/v2/offpack-bk-test/absent/manifests/1\": \
            dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host";
        assert_eq!(
            image_in_registry_error(message).as_deref(),
            Some("offpack-bk-test/absent:1")
        );
        let official = "failed to do request: Head \"https://registry-1.docker.io/v2/library/python/manifests/3.12\": x";
        assert_eq!(
            image_in_registry_error(official).as_deref(),
            Some("python:3.12")
        );
        let digest = format!(
            "Head \"https://registry.example:5000/v2/team/app/manifests/sha256:{}\": x",
            "a".repeat(64)
        );
        assert_eq!(
            image_in_registry_error(&digest),
            Some(format!(
                "registry.example:5000/team/app@sha256:{}",
                "a".repeat(64)
            ))
        );
        assert_eq!(image_in_registry_error("exit code: 1"), None);
    }

    /// What the classic builder of engine 20.10 printed for a Dockerfile of a FROM, a cached
    /// RUN, a COPY that ran and a CMD, in the pieces its stream lines came in.
    const CLASSIC_LOG: &[(&str, f64)] = &[
        ("Step 1/4 : FROM python:3.11-slim", 0.0),
        ("\n", 0.0),
        (" ---> 1a2b3c4d5e6f\n", 0.1),
        ("Step 2/4 : RUN pip install flask\n", 0.1),
        (" ---> Using cache\n", 0.2),
        (" ---> 2b3c4d5e6f7a\n", 0.2),
        ("Step 3/4 : COPY . /app\n", 0.3),
        (" ---> 3c4d5e6f7a8b\n", 1.5),
        ("Step 4/4 : CMD [\"python\", \"app.py\"]\n", 1.5),
        (" ---> Running in 4d5e6f7a8b9c\n", 1.6),
        ("Removing intermediate container 4d5e6f7a8b9c\n", 1.9),
        (" ---> 5e6f7a8b9c0d\n", 2.0),
        ("Successfully built 5e6f7a8b9c0d\n", 2.5),
    ];

    #[test]
    fn classic_output_gives_steps_without_from() {
        let mut log = ClassicLog::default();
        let mut reported = Vec::new();
        for (text, at) in CLASSIC_LOG {
            reported.extend(log.push(text, *at));
        }
        let steps = log.finish(3.0, &SilentReporter::default());
        assert_eq!(steps, reported, "every step is reported once it is closed");
        let names: Vec<(&str, bool)> = steps.iter().map(|s| (s.name.as_str(), s.cached)).collect();
        assert_eq!(
            names,
            [
                ("[2/4] RUN pip install flask", true),
                ("[3/4] COPY . /app", false),
                ("[4/4] CMD [\"python\", \"app.py\"]", false),
            ]
        );
        assert_eq!(steps[0].seconds, 0.0, "a cached step took no time");
        assert!(
            (steps[1].seconds - 1.2).abs() < 1e-9,
            "{}",
            steps[1].seconds
        );
        assert!(
            (steps[2].seconds - 1.0).abs() < 1e-9,
            "{}",
            steps[2].seconds
        );
    }

    #[test]
    fn classic_output_without_its_last_line_break_still_closes_the_last_step() {
        let mut log = ClassicLog::default();
        log.push("Step 1/2 : FROM scratch\n", 0.0);
        log.push("Step 2/2 : COPY a /a\n ---> Using cache\n ---> 1234", 0.5);
        assert_eq!(log.steps.len(), 0);
        let steps = log.finish(1.0, &SilentReporter::default());
        assert_eq!(steps.len(), 1);
        assert!(steps[0].cached);
    }

    #[test]
    fn a_classic_failure_names_the_step_and_shows_its_output() {
        let mut log = ClassicLog::default();
        for text in [
            "Step 1/3 : FROM python:3.11-slim\n",
            " ---> 1a2b3c4d5e6f\n",
            "Step 2/3 : RUN echo building && false\n",
            " ---> Running in 0123456789ab\n",
            "building\n",
        ] {
            log.push(text, 0.0);
        }
        let err = log
            .failure("The command '/bin/sh -c echo building && false' returned a non-zero code: 1")
            .to_string();
        assert_eq!(
            err,
            "step [2/3] RUN echo building && false failed: The command '/bin/sh -c echo building && \
             false' returned a non-zero code: 1\nits output ended with:\n  building"
        );
    }

    #[test]
    fn a_classic_failure_on_from_names_the_image() {
        let mut log = ClassicLog::default();
        log.push(
            "Step 1/2 : FROM --platform=linux/amd64 offpack-bk-test/absent:1 AS base\n",
            0.0,
        );
        let err = log
            .failure("pull access denied for offpack-bk-test/absent, repository does not exist")
            .to_string();
        assert!(
            err.starts_with("the image offpack-bk-test/absent:1 is not in the engine"),
            "{err}"
        );
    }

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.to_string(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn at(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn buildkit_vertices_become_steps_when_they_complete() {
        let mut progress = BuildKitProgress::default();
        let from = Vertex {
            cached: true,
            started: at(10, 0),
            completed: at(10, 0),
            ..vertex(
                "sha256:from",
                "[1/3] FROM docker.io/library/python:3.11-slim",
            )
        };
        let run = Vertex {
            started: at(10, 0),
            ..vertex("sha256:run", "[2/3] RUN pip install flask")
        };
        let copy = Vertex {
            cached: true,
            started: at(11, 0),
            completed: at(11, 0),
            ..vertex("sha256:copy", "[3/3] COPY . /app")
        };
        let finished = progress.update(StatusResponse {
            vertexes: vec![from, run.clone(), copy],
            logs: vec![],
        });
        assert_eq!(
            finished,
            [BuildStep {
                name: "[3/3] COPY . /app".into(),
                cached: true,
                seconds: 0.0
            }]
        );
        // The RUN is sent again, whole, once it completed; an empty name keeps the first one.
        let finished = progress.update(StatusResponse {
            vertexes: vec![Vertex {
                name: String::new(),
                completed: at(12, 500_000_000),
                ..run
            }],
            logs: vec![],
        });
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].name, "[2/3] RUN pip install flask");
        assert!((finished[0].seconds - 2.5).abs() < 1e-9);
        let names: Vec<String> = progress.steps().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["[2/3] RUN pip install flask", "[3/3] COPY . /app"]);
        assert!(progress.update(StatusResponse::default()).is_empty());
    }

    #[test]
    fn a_step_another_build_ran_meanwhile_counts_as_cached() {
        let mut progress = BuildKitProgress::default();
        // This build's first vertex; then the WORKDIR another build ran 6 s earlier and still
        // held, sent whole; then this build's own RUN.
        let context = Vertex {
            started: at(444, 750_000_000),
            completed: at(444, 916_000_000),
            ..vertex("sha256:context", "[internal] load remote build context")
        };
        let shared = Vertex {
            started: at(438, 901_000_000),
            completed: at(438, 959_000_000),
            ..vertex("sha256:workdir", "[2/3] WORKDIR /app")
        };
        let run = Vertex {
            started: at(445, 75_000_000),
            completed: at(445, 334_000_000),
            ..vertex("sha256:run", "[3/3] RUN echo b > /b")
        };
        for v in [context, shared, run] {
            progress.update(StatusResponse {
                vertexes: vec![v],
                logs: vec![],
            });
        }
        let steps = progress.steps();
        assert_eq!(steps.len(), 2);
        assert!(steps[0].cached && steps[0].seconds == 0.0, "{steps:?}");
        assert!(!steps[1].cached, "{steps:?}");
    }

    #[test]
    fn a_buildkit_failure_names_the_step_and_shows_its_log() {
        let mut progress = BuildKitProgress::default();
        let error = "executor failed running [/bin/sh -c echo boom && false]: exit code: 1";
        progress.update(StatusResponse {
            vertexes: vec![Vertex {
                started: at(1, 0),
                completed: at(2, 0),
                error: error.to_string(),
                ..vertex("sha256:run", "[2/2] RUN echo boom && false")
            }],
            logs: vec![
                super::super::buildkit_proto::VertexLog {
                    vertex: "sha256:run".into(),
                    msg: b"bo".to_vec(),
                    ..Default::default()
                },
                super::super::buildkit_proto::VertexLog {
                    vertex: "sha256:run".into(),
                    msg: b"om\n".to_vec(),
                    ..Default::default()
                },
            ],
        });
        assert_eq!(
            progress.failure(error).to_string(),
            format!(
                "step [2/2] RUN echo boom && false failed: {error}\nits output ended with:\n  boom"
            )
        );
    }

    /// Feeds an answer the engine (20.10.24, API 1.41) gave to `POST /build?version=2`.
    fn replay(answer: &str) -> (BuildKitProgress, Vec<BuildStep>, Result<()>) {
        let mut progress = BuildKitProgress::default();
        let mut reported = Vec::new();
        for line in answer.lines() {
            match progress.answer_line(line.as_bytes()) {
                Ok(steps) => reported.extend(steps),
                Err(e) => return (progress, reported, Err(e)),
            }
        }
        (progress, reported, Ok(()))
    }

    #[test]
    fn a_real_multi_stage_answer_gives_its_steps_and_image() {
        let (progress, reported, result) =
            replay(include_str!("testdata/buildkit-multi-stage-first.jsonl"));
        result.unwrap();
        let steps = progress.steps();
        assert_eq!(
            names_of(&steps),
            [
                (
                    "[build 2/2] RUN echo offpack-bk-fixture-1796402183726976448 > /n",
                    false
                ),
                ("[stage-1 2/2] COPY --from=build /n /n", false),
            ]
        );
        assert!(steps.iter().all(|s| s.seconds > 0.0), "{steps:?}");
        assert_eq!(names_of(&reported), names_of(&steps));
        assert_eq!(
            progress.image_id.as_deref(),
            Some("sha256:176917d0100c1cade3dd803f69d208cab5f23e78fb974dcd2756102051f7c956")
        );

        let (again, reported, result) =
            replay(include_str!("testdata/buildkit-multi-stage-again.jsonl"));
        result.unwrap();
        let steps = again.steps();
        assert_eq!(steps.len(), 2);
        assert!(
            steps.iter().all(|s| s.cached && s.seconds == 0.0),
            "{steps:?}"
        );
        assert_eq!(reported.len(), 2);
        assert_eq!(again.image_id, progress.image_id);
    }

    #[test]
    fn a_real_failed_answer_names_the_step() {
        let (_, _, result) = replay(include_str!("testdata/buildkit-run-false.jsonl"));
        assert_eq!(
            result.unwrap_err().to_string(),
            "step [4/4] RUN false failed: executor failed running [/bin/sh -c false]: exit code: 1"
        );
    }

    #[test]
    fn a_real_answer_for_an_absent_base_names_it() {
        let (_, _, result) = replay(include_str!("testdata/buildkit-absent-base.jsonl"));
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("the image offpack-bk-test/absent:1 is not in the engine, and BuildKit could not fetch it: failed to solve"),
            "{err}"
        );
    }

    fn names_of(steps: &[BuildStep]) -> Vec<(&str, bool)> {
        steps.iter().map(|s| (s.name.as_str(), s.cached)).collect()
    }
}
