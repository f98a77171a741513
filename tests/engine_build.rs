//! `Engine::build` against the real engine: BuildKit (`POST /build?version=2`, no session) and
//! the classic builder, their per-step reports, their errors, and BuildKit's inline cache.
//! Nothing here uses the network: the bases are `python:3.11-slim` (made by `scripts/test-env
//! up`) and `scratch`. Every image is named `offpack-bk-test/…` and removed at the end.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::Stream;
use offpack::engine::{BuildOutcome, BuildRequest, BuildStep, Builder, Engine};
use offpack::reporter::{Reporter, TaskId};

/// Removes the images it names when the test ends, passed or not.
struct Names(Vec<String>);

impl Names {
    fn new(test: &str) -> Names {
        let name = format!("offpack-bk-test/{test}-{}:{}", std::process::id(), nonce());
        Names(vec![name])
    }
    fn first(&self) -> &str {
        &self.0[0]
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["image", "rm", "-f", name])
                .output();
        }
    }
}

/// Different in every run, so that no earlier build (this test's or another's) is a cache hit.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}")
}

/// A context tar of `files` (Dockerfile first).
fn context(files: &[(&str, &str)]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    let bytes = Bytes::from(tar.into_inner().unwrap());
    futures_util::stream::iter([Ok(bytes)])
}

/// Keeps the steps it is told of.
#[derive(Default)]
struct Steps {
    next: AtomicU64,
    steps: Mutex<Vec<BuildStep>>,
}

impl Reporter for Steps {
    fn start(&self, _label: &str, _total: Option<u64>) -> TaskId {
        TaskId(self.next.fetch_add(1, Ordering::Relaxed))
    }
    fn progress(&self, _task: TaskId, _done: u64) {}
    fn finish(&self, _task: TaskId, _outcome: &str) {}
    fn step(&self, _message: &str) {}
    fn warn(&self, _message: &str) {}
    fn build_step(&self, step: &BuildStep) {
        self.steps.lock().unwrap().push(step.clone());
    }
}

async fn build(
    engine: &Engine,
    request: &BuildRequest,
    files: &[(&str, &str)],
) -> anyhow::Result<(BuildOutcome, Vec<BuildStep>)> {
    let reporter = Steps::default();
    let outcome = engine.build(request, context(files), &reporter).await?;
    let reported = reporter.steps.into_inner().unwrap();
    Ok((outcome, reported))
}

fn request(builder: Builder, names: &Names) -> BuildRequest {
    BuildRequest {
        tags: names.0.clone(),
        builder,
        ..Default::default()
    }
}

fn names_of(steps: &[BuildStep]) -> Vec<(&str, bool)> {
    steps.iter().map(|s| (s.name.as_str(), s.cached)).collect()
}

#[tokio::test]
async fn buildkit_reports_steps_that_ran_then_steps_from_cache() {
    common::require_engine();
    let engine = Engine::connect().await.unwrap();
    assert!(engine.supports_buildkit().await.unwrap());
    let names = Names::new("steps");
    let nonce = nonce();
    let dockerfile = format!(
        "FROM python:3.11-slim\nRUN echo {nonce} > /nonce.txt\nCOPY app.txt /app/app.txt\nCMD [\"cat\", \"/app/app.txt\"]\n"
    );
    let files = [("Dockerfile", dockerfile.as_str()), ("app.txt", "hello\n")];
    let mut request = request(Builder::BuildKit, &names);
    request
        .labels
        .insert("dev.offpack.test".to_string(), nonce.clone());

    let (first, reported) = build(&engine, &request, &files).await.unwrap();
    // BuildKit makes no vertex of CMD (it changes the config only) and none of FROM is a step.
    assert_eq!(
        names_of(&first.steps),
        [
            (
                format!("[2/3] RUN echo {nonce} > /nonce.txt").as_str(),
                false
            ),
            ("[3/3] COPY app.txt /app/app.txt", false),
        ]
    );
    assert_eq!((first.cached_steps(), first.total_steps()), (0, 2));
    assert!(first.steps.iter().all(|s| s.seconds > 0.0), "{first:?}");
    assert!(first.seconds() > 0.0);
    assert_eq!(
        names_of(&reported),
        names_of(&first.steps),
        "each step is reported once"
    );

    let image = engine.image(names.first()).await.unwrap().expect("tagged");
    assert_eq!(image.id, first.image_id);
    assert_eq!(image.labels.get("dev.offpack.test"), Some(&nonce));

    let (second, reported) = build(&engine, &request, &files).await.unwrap();
    assert_eq!((second.cached_steps(), second.total_steps()), (2, 2));
    assert!(second.steps.iter().all(|s| s.seconds == 0.0));
    assert_eq!(second.image_id, first.image_id);
    assert_eq!(reported.len(), 2);
}

#[tokio::test]
async fn a_failed_buildkit_step_is_named_with_its_output() {
    common::require_engine();
    let engine = Engine::connect().await.unwrap();
    let names = Names::new("fails");
    let nonce = nonce();
    let dockerfile = format!("FROM python:3.11-slim\nRUN echo offpack-marker-{nonce} && false\n");
    let request = request(Builder::BuildKit, &names);
    let err = build(&engine, &request, &[("Dockerfile", &dockerfile)])
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    eprintln!("{text}");
    assert!(
        text.starts_with(&format!(
            "step [2/2] RUN echo offpack-marker-{nonce} && false failed: "
        )),
        "{text}"
    );
    assert!(text.contains("exit code: 1"), "{text}");
    assert!(
        text.contains(&format!("its output ended with:\n  offpack-marker-{nonce}")),
        "{text}"
    );
    assert!(engine.image(names.first()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_buildkit_build_whose_base_is_absent_names_it() {
    common::require_engine();
    let engine = Engine::connect().await.unwrap();
    let names = Names::new("absent");
    let base = format!("offpack-bk-test/absent-{}:1", nonce());
    let dockerfile = format!("FROM {base}\nRUN true\n");
    let request = request(Builder::BuildKit, &names);
    let err = build(&engine, &request, &[("Dockerfile", &dockerfile)])
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    eprintln!("{text}");
    assert!(
        text.starts_with(&format!("the image {base} is not in the engine")),
        "{text}"
    );
}

#[tokio::test]
async fn the_classic_builder_still_builds_and_reports_steps() {
    common::require_engine();
    let engine = Engine::connect().await.unwrap();
    let names = Names::new("classic");
    let nonce = nonce();
    let dockerfile = format!(
        "FROM python:3.11-slim\nRUN echo {nonce} > /nonce.txt\nCOPY app.txt /app/app.txt\nCMD [\"cat\", \"/app/app.txt\"]\n"
    );
    let files = [("Dockerfile", dockerfile.as_str()), ("app.txt", "hello\n")];
    let request = request(Builder::Classic, &names);
    let (first, reported) = build(&engine, &request, &files).await.unwrap();
    assert_eq!(
        names_of(&first.steps),
        [
            (
                format!("[2/4] RUN echo {nonce} > /nonce.txt").as_str(),
                false
            ),
            ("[3/4] COPY app.txt /app/app.txt", false),
            ("[4/4] CMD [\"cat\", \"/app/app.txt\"]", false),
        ]
    );
    assert_eq!(names_of(&reported), names_of(&first.steps));
    assert_eq!(
        engine.image(names.first()).await.unwrap().map(|i| i.id),
        Some(first.image_id.clone())
    );
    let (second, _) = build(&engine, &request, &files).await.unwrap();
    assert_eq!((second.cached_steps(), second.total_steps()), (3, 3));
    assert_eq!(second.image_id, first.image_id);

    let failing = format!("FROM python:3.11-slim\nRUN echo offpack-marker-{nonce} && false\n");
    let err = build(&engine, &request, &[("Dockerfile", &failing)])
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!(
            "step [2/2] RUN echo offpack-marker-{nonce} && false failed: "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("its output ended with:\n  offpack-marker-{nonce}")),
        "{text}"
    );
}

#[tokio::test]
async fn inline_cache_puts_buildkits_cache_metadata_in_the_image_config() {
    common::require_engine();
    let engine = Engine::connect().await.unwrap();
    let names = Names::new("inline");
    let files = [
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
        ("a.txt", &*nonce()),
    ];
    let mut request = request(Builder::BuildKit, &names);
    request.inline_cache = true;
    let (outcome, _) = build(&engine, &request, &files).await.unwrap();
    let config = image_config(names.first());
    assert!(
        config.contains_key("moby.buildkit.cache.v0"),
        "config of {}: {:?}",
        outcome.image_id,
        config.keys().collect::<Vec<_>>()
    );

    let plain = Names::new("no-inline");
    let request = self::request(Builder::BuildKit, &plain);
    build(
        &engine,
        &request,
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /b.txt\n"),
            files[1],
        ],
    )
    .await
    .unwrap();
    assert!(!image_config(plain.first()).contains_key("moby.buildkit.cache.v0"));
}

/// The config JSON of image `name`, from `docker save`.
fn image_config(name: &str) -> HashMap<String, serde_json::Value> {
    let out = std::process::Command::new("docker")
        .args(["save", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker save {name} failed");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.ends_with(".json") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, bytes);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}
