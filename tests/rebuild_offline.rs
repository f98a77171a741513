//! Issue 18, tests 1–7: the far side rebuilds from what the bundle carried, with the network of
//! build containers cut (`common::offline`).
//!
//! Each test copies a project of `tests/fixtures/rebuild/` into a temporary directory and then:
//! 1. networked side: `offpack bundle -o B` (under `build_network()`, so no cut overlaps it);
//! 2. far side, under `cut_build_network()` (the cut is proven before anything else runs):
//!    removes the bundle's images from the engine and the build cache records the bundle used,
//!    `offpack load B`, then `offpack rebuild` and the user's checks (image IDs, step names from
//!    `--json`, exit codes, messages).
//!
//! Shared base images (`python:3.11-slim`, `node:18-slim`, `redis:7`, made by `scripts/test-env`)
//! stay: other tests of this binary build on them at the same time and other engineers' tests on
//! this engine use them, and removing them proves nothing more. After `load` the engine holds them
//! exactly as a far side that loaded the bundle would: same image IDs. Test 6 is the one about a
//! missing base and uses an image of its own.
//!
//! The far side of each test holds the cut, which is the write side of the network lock: no other
//! test of this binary builds meanwhile, so emptying the build cache (`prune_all_build_cache`)
//! takes nothing another test is using.
//!
//! Source changes carry a per-run nonce: a build cache record of an earlier run's change would
//! otherwise make the changed step look cached.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::offline::{
    NetworkCut, ProbeBuilder, Reach, add_stray_tagged_rule, build_network, cut_build_network,
    default_bridge, probe, remove_tagged_rules, run_within, tagged_rules,
};
use common::*;
use serde_json::Value;

/// Every test fails rather than hangs past this (each command gets what is left of it).
const TEST_LIMIT: Duration = Duration::from_secs(15 * 60);
const SHARED_BASES: [&str; 3] = ["python:3.11-slim", "node:18-slim", "redis:7"];
/// The port offpack's package server listens on in these tests (`OFFPACK_PACKAGE_PORT`); the cut
/// lets build steps reach it, as a far side's firewall must.
const PACKAGE_PORT: u16 = 3149;

#[path = "rebuild_offline/packages.rs"]
mod packages;

// ---------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn harness_without_a_cut_build_steps_reach_pypi_and_the_host() {
    require_engine();
    let _net = build_network();
    let bridge = default_bridge();
    assert_eq!(bridge.interface, "docker0", "{bridge:?}");
    for builder in [ProbeBuilder::BuildKit, ProbeBuilder::Classic] {
        assert_eq!(
            probe(builder, &bridge),
            Reach::EVERYTHING,
            "{builder:?}: without the cut a RUN step reaches PyPI and the host \
             (if not, the cut's proof would prove nothing)"
        );
    }
}

#[test]
fn harness_cut_blocks_build_steps_and_goes_away() {
    require_engine();
    {
        // Creating the cut proves it: a BuildKit and a classic RUN reach nothing.
        let cut = cut_build_network();
        let rules = tagged_rules();
        assert_eq!(rules.len(), 2, "{rules:?}");
        let bridge = cut.bridge().clone();
        assert!(
            rules.iter().any(|r| r.starts_with("-A DOCKER-USER")
                && r.contains(&format!("-i {}", bridge.interface))
                && r.contains(&bridge.subnet)
                && r.contains("-j REJECT")),
            "{rules:?}"
        );
        assert!(
            rules.iter().any(|r| r.starts_with("-A INPUT")
                && r.contains(&format!("-i {}", bridge.interface))
                && r.contains("-j REJECT")),
            "{rules:?}"
        );
    }
    // Checked under the network lock: no other test's cut can be live meanwhile.
    let _net = build_network();
    assert!(tagged_rules().is_empty(), "{:?}", tagged_rules());
    assert_eq!(
        probe(ProbeBuilder::BuildKit, &default_bridge()),
        Reach::EVERYTHING,
        "the network is back after the cut"
    );
}

#[test]
fn harness_removes_rules_a_killed_run_left() {
    require_engine();
    let cut = cut_build_network();
    // What a run killed before its cut's drop leaves behind (a rule that matches no traffic).
    add_stray_tagged_rule();
    assert_eq!(tagged_rules().len(), 3);
    // The same removal a new cut does first.
    remove_tagged_rules();
    assert!(tagged_rules().is_empty(), "{:?}", tagged_rules());
    add_stray_tagged_rule();
    drop(cut);
    let _net = build_network();
    assert!(
        tagged_rules().is_empty(),
        "dropping the cut removes every tagged rule: {:?}",
        tagged_rules()
    );
}

#[test]
fn harness_a_command_over_its_limit_fails() {
    let result = std::panic::catch_unwind(|| {
        run_within(Command::new("sleep").arg("30"), Duration::from_secs(1))
    });
    let message = result
        .expect_err("sleep 30 must be killed after 1 s")
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("took longer than"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// A test case: a fixture project, its bundle, its images

struct Case {
    name: String,
    project: String,
    dir: tempfile::TempDir,
    bundle: PathBuf,
    deadline: Instant,
    since: SystemTime,
    /// Image references this test made (the bundle's, except shared bases): removed at the end.
    made: BTreeSet<String>,
    /// Image IDs this test made: removed at the end when nothing names them any more.
    made_ids: BTreeSet<String>,
    /// The shared bases' image IDs, which no cleanup touches.
    shared_ids: BTreeSet<String>,
    /// The far side's offpack state (`OFFPACK_HOME`: the package store `load` fills).
    state: tempfile::TempDir,
}

impl Case {
    /// Copies `tests/fixtures/rebuild/<fixture>` into a temporary directory; the compose project
    /// is named `offline-<name>` (images `offline-<name>-<service>` / `offline-<name>_<service>`).
    fn new(name: &str, fixture: &str) -> Case {
        require_engine();
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(
            &repo_root().join("tests/fixtures/rebuild").join(fixture),
            dir.path(),
        );
        let bundle = dir.path().join(format!("{name}.offpack"));
        Case {
            name: name.to_string(),
            project: format!("offline-{name}"),
            dir,
            bundle,
            deadline: Instant::now() + TEST_LIMIT,
            since: SystemTime::now(),
            made: BTreeSet::new(),
            made_ids: BTreeSet::new(),
            shared_ids: SHARED_BASES.iter().filter_map(|b| image_id(b)).collect(),
            state: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn left(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "test {} ran past its limit of {TEST_LIMIT:?}",
            self.name
        );
        left
    }

    fn offpack(&self) -> Command {
        let mut cmd = offpack(self.path());
        cmd.env("COMPOSE_PROJECT_NAME", &self.project)
            .env("OFFPACK_HOME", self.state.path())
            .env("OFFPACK_PACKAGE_PORT", PACKAGE_PORT.to_string());
        cmd
    }

    fn run(&self, cmd: &mut Command) -> Output {
        run_within(cmd, self.left())
    }

    fn ok(&self, cmd: &mut Command) -> Output {
        let out = self.run(cmd);
        assert!(out.status.success(), "command failed: {cmd:?}");
        out
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.run(Command::new("docker").args(args))
    }

    /// Compose v2's name for the service's image (offpack tags v1's too).
    fn image_of(&self, service: &str) -> String {
        format!("{}-{service}", self.project)
    }

    /// Networked side: `offpack bundle -o B`; returns the bundle's manifest.
    fn bundle(&mut self) -> Manifest {
        self.bundle_with(&[])
    }

    /// Networked side: `offpack bundle -o B ARGS`; returns the bundle's manifest.
    fn bundle_with(&mut self, args: &[&str]) -> Manifest {
        self.since = SystemTime::now();
        {
            let _net = build_network();
            let mut cmd = self.offpack();
            cmd.args(["bundle", "-o"]).arg(&self.bundle).args(args);
            self.ok(&mut cmd);
        }
        let mut cmd = self.offpack();
        cmd.args(["inspect", "--json"]).arg(&self.bundle);
        let out = self.ok(&mut cmd);
        let manifest = Manifest::parse(&stdout(&out));
        for image in &manifest.images {
            let ours: Vec<&String> = image.refs.iter().filter(|r| !is_shared_base(r)).collect();
            if ours.len() == image.refs.len() {
                self.made_ids.insert(image.id.clone());
            }
            self.made.extend(ours.into_iter().cloned());
        }
        manifest
    }

    /// Far side: cuts the network, removes what the bundle carried (except shared bases) and the
    /// build cache records the bundle used, then loads the bundle. The cut lasts as long as the
    /// returned guard.
    fn far_side(&self, manifest: &Manifest) -> NetworkCut {
        let cut = cut_build_network();
        cut.allow_host_port(PACKAGE_PORT);
        for reference in &self.made {
            let _ = self.docker(&["rmi", reference]);
        }
        for reference in &self.made {
            assert!(
                !image_exists(reference),
                "{reference} is still on the engine after the wipe"
            );
        }
        prune_all_build_cache();
        let mut cmd = self.offpack();
        cmd.arg("load").arg(&self.bundle);
        self.ok(&mut cmd);
        for image in &manifest.images {
            for reference in &image.refs {
                assert_eq!(
                    image_id(reference).as_deref(),
                    Some(image.id.as_str()),
                    "after load, {reference} is the bundle's image"
                );
            }
        }
        cut
    }

    /// `offpack rebuild --json ARGS`, which must succeed; its per-service reports.
    fn rebuild(&mut self, args: &[&str]) -> Vec<ServiceReport> {
        let mut cmd = self.offpack();
        cmd.arg("rebuild").args(args).arg("--json");
        let out = self.ok(&mut cmd);
        let reports = ServiceReport::parse_all(&stdout(&out));
        for report in &reports {
            self.made_ids.insert(report.image_id.clone());
            self.made.extend(report.tags.iter().cloned());
        }
        reports
    }

    /// Writes `relative` with content no earlier run wrote (see the module doc).
    fn change(&self, relative: &str, content: &str) {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        std::fs::write(
            self.path().join(relative),
            format!("{content}\n# change {nonce} of test {}\n", self.name),
        )
        .expect("write the changed source");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        for reference in &self.made {
            let _ = Command::new("docker").args(["rmi", reference]).output();
        }
        // Images the rebuild replaced are left without a name: removed by ID.
        for id in self.made_ids.difference(&self.shared_ids) {
            // `docker rmi ID` would also untag the last name of an image: only nameless ones go.
            let names = Command::new("docker")
                .args(["image", "inspect", "--format", "{{len .RepoTags}}", id])
                .output();
            if matches!(names, Ok(o) if o.status.success() && o.stdout.trim_ascii() == b"0") {
                let _ = Command::new("docker").args(["rmi", id]).output();
            }
        }
    }
}

fn is_shared_base(reference: &str) -> bool {
    let short = reference
        .strip_prefix("docker.io/library/")
        .unwrap_or(reference);
    SHARED_BASES.contains(&short)
}

/// Empties the engine's build cache, as on a real far side: the rebuild can then only be cached
/// from what the loaded images carry (inline cache). A record an earlier run left, whose last use
/// the engine does not always move, would otherwise answer a step with its own timestamps. Safe
/// here: `cargo test` runs one test binary at a time, and within this one every networked step
/// waits while a far side holds the cut. On a machine where others build at the same time it
/// costs them their build cache (never an image).
fn prune_all_build_cache() {
    let out = run_within(
        Command::new("docker").args(["builder", "prune", "--all", "--force"]),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "docker builder prune failed");
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC.
fn rfc3339_utc_seconds(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn harness_utc_timestamps() {
    assert_eq!(rfc3339_utc_seconds(UNIX_EPOCH), "1970-01-01T00:00:00");
    assert_eq!(
        rfc3339_utc_seconds(UNIX_EPOCH + Duration::from_secs(1_796_400_000)),
        "2026-12-04T16:00:00"
    );
    assert_eq!(
        rfc3339_utc_seconds(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00"
    );
}

// ---------------------------------------------------------------------------------------------
// What the user reads: the bundle's manifest, the rebuild's JSON

struct Manifest {
    images: Vec<BundleImage>,
}

struct BundleImage {
    id: String,
    refs: Vec<String>,
}

impl Manifest {
    fn parse(json: &str) -> Manifest {
        let doc: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("`inspect --json` is not JSON ({e}): {json}"));
        let images = doc["images"]
            .as_array()
            .unwrap_or_else(|| panic!("no `images` in the manifest: {json}"))
            .iter()
            .map(|image| BundleImage {
                id: image["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("image without id: {image}"))
                    .to_string(),
                refs: image["refs"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
            })
            .collect();
        Manifest { images }
    }

    /// The ID of the bundle's image named `reference` (with or without `:latest`).
    fn id_of(&self, reference: &str) -> String {
        let wanted = [reference.to_string(), format!("{reference}:latest")];
        self.images
            .iter()
            .find(|i| i.refs.iter().any(|r| wanted.contains(r)))
            .map(|i| i.id.clone())
            .unwrap_or_else(|| panic!("the bundle carries no image named {reference}"))
    }
}

#[derive(Debug)]
struct Step {
    name: String,
    cached: bool,
}

/// One service of `rebuild --json` (design: `{service, image_id, tags, builder, steps:[{name,
/// cached, seconds}], cached_steps, total_steps, seconds, skipped_unchanged}`).
#[derive(Debug)]
struct ServiceReport {
    service: String,
    image_id: String,
    tags: Vec<String>,
    steps: Vec<Step>,
    cached_steps: u64,
    total_steps: u64,
    skipped_unchanged: bool,
}

impl ServiceReport {
    /// The document is a list of services, or an object holding it under `services`.
    fn parse_all(json: &str) -> Vec<ServiceReport> {
        let doc: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("`rebuild --json` printed no JSON document ({e}): {json}"));
        let services = doc
            .as_array()
            .or_else(|| doc["services"].as_array())
            .unwrap_or_else(|| panic!("`rebuild --json` lists no services: {json}"));
        services
            .iter()
            .map(|s| {
                let field = |name: &str| {
                    s.get(name)
                        .unwrap_or_else(|| panic!("`rebuild --json` service without `{name}`: {s}"))
                };
                let skipped_unchanged = s
                    .get("skipped_unchanged")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                ServiceReport {
                    service: field("service").as_str().unwrap_or_default().to_string(),
                    image_id: field("image_id").as_str().unwrap_or_default().to_string(),
                    tags: s["tags"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect(),
                    steps: if skipped_unchanged {
                        Vec::new()
                    } else {
                        field("steps")
                            .as_array()
                            .unwrap_or_else(|| panic!("`steps` is not a list: {s}"))
                            .iter()
                            .map(|step| Step {
                                name: step["name"].as_str().unwrap_or_default().to_string(),
                                cached: step["cached"].as_bool().unwrap_or_else(|| {
                                    panic!("step without a boolean `cached`: {step}")
                                }),
                            })
                            .collect()
                    },
                    cached_steps: s["cached_steps"].as_u64().unwrap_or(0),
                    total_steps: s["total_steps"].as_u64().unwrap_or(0),
                    skipped_unchanged,
                }
            })
            .collect()
    }

    fn ran(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| !s.cached)
            .map(|s| s.name.as_str())
            .collect()
    }

    fn assert_all_cached(&self) {
        assert!(
            !self.steps.is_empty(),
            "{}: no steps reported",
            self.service
        );
        assert_eq!(
            self.ran(),
            Vec::<&str>::new(),
            "{}: steps ran although nothing changed",
            self.service
        );
        assert_eq!(
            self.cached_steps, self.total_steps,
            "{}: summary says not every step came from cache",
            self.service
        );
    }

    /// The steps that ran are exactly the Dockerfile instructions `expected` (matched by their
    /// text, as BuildKit names a step `[stage n/m] INSTRUCTION`); every other instruction step is
    /// cached. Steps that are not instructions (BuildKit's own, e.g. exporting) are not judged.
    fn assert_ran_exactly(&self, expected: &[&str]) {
        let ran = self.ran();
        for want in expected {
            assert_eq!(
                ran.iter().filter(|name| name.contains(want)).count(),
                1,
                "{}: `{want}` must have run once; ran: {ran:?}; all: {:?}",
                self.service,
                self.steps
            );
        }
        let unexpected: Vec<&&str> = ran
            .iter()
            .filter(|name| is_instruction_step(name))
            .filter(|name| !expected.iter().any(|want| name.contains(want)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: these steps ran but their inputs did not change: {unexpected:?}; all: {:?}",
            self.service,
            self.steps
        );
    }
}

fn is_instruction_step(name: &str) -> bool {
    let text = name.rsplit(']').next().unwrap_or(name).trim_start();
    [
        "FROM ", "RUN ", "COPY ", "ADD ", "WORKDIR ", "ENV ", "ARG ", "USER ", "LABEL ",
    ]
    .iter()
    .any(|instruction| text.starts_with(instruction))
}

fn only<'a>(reports: &'a [ServiceReport], service: &str) -> &'a ServiceReport {
    assert_eq!(
        reports.len(),
        1,
        "one service rebuilt, got {:?}",
        reports.iter().map(|r| &r.service).collect::<Vec<_>>()
    );
    assert_eq!(reports[0].service, service);
    &reports[0]
}

// ---------------------------------------------------------------------------------------------
// Issue 18, tests 1–7

/// Issue 18, test 1 (no change): every step comes from cache, and the image is the bundle's, to
/// the ID.
#[test]
fn no_change_rebuild_runs_no_step_and_keeps_the_image_id() {
    let mut case = Case::new("nochange", "simple");
    let manifest = case.bundle();
    let image = case.image_of("app");
    let bundled = manifest.id_of(&image);
    let _cut = case.far_side(&manifest);

    let reports = case.rebuild(&[]);
    let app = only(&reports, "app");
    app.assert_all_cached();
    assert_eq!(app.image_id, bundled, "same image ID as the bundle's");
    assert_eq!(image_id(&image).as_deref(), Some(bundled.as_str()));
}

/// Issue 18, test 2 (a source change): the steps from that file's `COPY` on run, the ones before
/// come from cache.
#[test]
fn source_change_runs_only_the_steps_from_its_copy_on() {
    let mut case = Case::new("source", "simple");
    let manifest = case.bundle();
    let image = case.image_of("app");
    let bundled = manifest.id_of(&image);
    let _cut = case.far_side(&manifest);

    case.change("lib.py", "def greet():\n    return \"changed\"");
    let reports = case.rebuild(&["app"]);
    let app = only(&reports, "app");
    app.assert_ran_exactly(&[
        "COPY lib.py .",
        "RUN python3 -m py_compile lib.py",
        "COPY app.py .",
    ]);
    for cached in ["WORKDIR /app", "COPY settings.txt .", "settings.built"] {
        assert!(
            app.steps
                .iter()
                .any(|s| s.cached && s.name.contains(cached)),
            "`{cached}` comes from cache: {:?}",
            app.steps
        );
    }
    assert_ne!(app.image_id, bundled);
    assert_eq!(image_id(&image).as_deref(), Some(app.image_id.as_str()));
    let out = case.docker(&["run", "--rm", "--network", "none", &image]);
    assert_eq!(
        stdout(&out).trim(),
        "changed",
        "the new image runs the change"
    );
}

/// Issue 18, test 3 (multi-stage): the build stage changed, so its steps from the changed `COPY`
/// on and the final stage's `COPY --from` run; nothing else.
#[test]
fn build_stage_change_runs_that_stage_and_the_final_copy_from() {
    let mut case = Case::new("multistage", "multistage");
    let manifest = case.bundle();
    let image = case.image_of("site");
    let bundled = manifest.id_of(&image);
    let _cut = case.far_side(&manifest);

    case.change("src/page.py", "def page():\n    return \"v2\"");
    let reports = case.rebuild(&["site"]);
    let site = only(&reports, "site");
    site.assert_ran_exactly(&[
        "COPY src/ ./src/",
        "RUN mkdir -p /out",
        "COPY --from=build /out /app/out",
    ]);
    assert_ne!(site.image_id, bundled);
    let out = case.docker(&["run", "--rm", "--network", "none", &image]);
    assert_eq!(stdout(&out).trim(), "v2");
}

/// Issue 18, test 4: `RUN --mount=type=cache`, `RUN --mount=type=bind,from=<image>`, a stage the
/// target does not reach (its `COPY --from` image exists nowhere) and a digest-pinned `FROM`:
/// rebuilds offline, first unchanged (all cached, same ID), then with a change the mount steps
/// run behind the cut.
#[test]
fn mounts_unreachable_stage_and_pinned_from_rebuild_offline() {
    let mut case = Case::new("mounts", "mounts");
    let assets = "offline-mounts/assets:1".to_string();
    let pinned;
    {
        let _net = build_network();
        // The image the bind mount reads, ours only.
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(ctx.path().join("assets")).expect("mkdir");
        std::fs::write(
            ctx.path().join("assets/data.txt"),
            "assets of the mounts test\n",
        )
        .expect("write");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY assets /assets\n",
        )
        .expect("write");
        case.ok(Command::new("docker")
            .args(["build", "-q", "-t", &assets])
            .arg(ctx.path()));
        case.made.insert(assets.clone());

        // A repository digest for the base: push it to a registry of this test, pull it by digest.
        let registry = Registry::start(&case);
        let repo = format!("127.0.0.1:{}/offline-mounts/python", registry.port);
        let tag = format!("{repo}:3.11-slim");
        case.ok(Command::new("docker").args(["tag", "python:3.11-slim", &tag]));
        case.made.insert(tag.clone());
        case.ok(Command::new("docker").args(["push", &tag]));
        let out = case.ok(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            &tag,
        ]));
        pinned = stdout(&out)
            .lines()
            .find(|d| d.starts_with(&format!("{repo}@sha256:")))
            .unwrap_or_else(|| panic!("no repository digest for {tag}"))
            .to_string();
        case.ok(Command::new("docker").args(["rmi", &tag]));
        case.ok(Command::new("docker").args(["pull", &pinned]));
        case.made.insert(pinned.clone());
        // The far side has no registry: it stops here, before the bundle (the engine itself
        // reaches 127.0.0.1, which the cut of the build containers does not cover).
        drop(registry);
    }
    let template =
        std::fs::read_to_string(case.path().join("Dockerfile.in")).expect("read Dockerfile.in");
    std::fs::write(
        case.path().join("Dockerfile"),
        template
            .replace("@BASE@", &pinned)
            .replace("@ASSETS@", &assets),
    )
    .expect("write Dockerfile");

    let manifest = case.bundle();
    let image = case.image_of("worker");
    let bundled = manifest.id_of(&image);
    assert!(
        !manifest
            .images
            .iter()
            .any(|i| i.refs.iter().any(|r| r.contains("not-in-any-bundle"))),
        "the unreachable stage's image is not needed"
    );
    let _cut = case.far_side(&manifest);
    assert!(
        !image_exists(&pinned),
        "{pinned} resolves after the wipe and load: the far side would not need the pin"
    );

    let reports = case.rebuild(&[]);
    let worker = only(&reports, "worker");
    worker.assert_all_cached();
    assert_eq!(worker.image_id, bundled);

    case.change("job.py", "print(open('/work/data.txt').read().strip())");
    let reports = case.rebuild(&["worker"]);
    let worker = only(&reports, "worker");
    worker.assert_ran_exactly(&["COPY job.py .", "--mount=type=cache", "--mount=type=bind"]);
    let out = case.docker(&["run", "--rm", "--network", "none", &image]);
    assert_eq!(stdout(&out).trim(), "assets of the mounts test");
}

/// A `docker-registry` on a free loopback port with its storage in a temporary directory; stopped
/// on drop.
struct Registry {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(case: &Case) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "start docker-registry (Debian package docker-registry, from scripts/test-env)",
            );
        let registry = Registry {
            port,
            child,
            _dir: dir,
        };
        assert!(
            http_get(&format!("http://127.0.0.1:{port}/v2/"), 20).is_some(),
            "the registry of test {} did not come up on 127.0.0.1:{port}",
            case.name
        );
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 18, test 5: compose `cache_from` naming the service's own image and a registry that is
/// not running: the rebuild neither pulls nor asks the registry, and is fully cached.
#[test]
fn cache_from_own_image_and_a_dead_registry_rebuilds_offline() {
    let mut case = Case::new("cachefrom", "cachefrom");
    let manifest = case.bundle();
    let image = "offline-cachefrom/web:1";
    let bundled = manifest.id_of(image);
    let _cut = case.far_side(&manifest);

    let reports = case.rebuild(&[]);
    let web = only(&reports, "web");
    web.assert_all_cached();
    assert_eq!(web.image_id, bundled);
    assert_eq!(image_id(image).as_deref(), Some(bundled.as_str()));

    case.change("web.py", "print('web, changed')");
    let reports = case.rebuild(&["web"]);
    let web = only(&reports, "web");
    web.assert_ran_exactly(&["COPY web.py .", "RUN python3 -m py_compile web.py"]);
}

/// Issue 18, test 6: a base image missing after load: exit 2, the message names the image and the
/// service, and nothing is built.
#[test]
fn missing_base_image_is_named_with_its_service_and_exits_2() {
    let mut case = Case::new("missingbase", "missing-base");
    let base = "offline-missing/python:3.11-slim";
    {
        let _net = build_network();
        // A base of this test alone (its own image ID), so removing it removes the image.
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM python:3.11-slim\nLABEL dev.offpack.test=offline-missing-base\n",
        )
        .expect("write");
        case.ok(Command::new("docker")
            .args(["build", "-q", "-t", base])
            .arg(ctx.path()));
        case.made.insert(base.to_string());
    }
    let manifest = case.bundle();
    let image = case.image_of("ledger");
    let bundled = manifest.id_of(&image);
    assert!(
        manifest
            .images
            .iter()
            .any(|i| i.refs.iter().any(|r| r == base)),
        "the bundle carries the base"
    );
    let _cut = case.far_side(&manifest);
    case.ok(Command::new("docker").args(["rmi", base]));
    assert!(!image_exists(base));

    let mut cmd = case.offpack();
    cmd.arg("rebuild");
    let out = case.run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "exit 2 for a missing image");
    let message = stderr(&out);
    assert!(message.contains(base), "names the image: {message}");
    assert!(message.contains("ledger"), "names the service: {message}");
    assert!(
        message.contains("Dockerfile:1"),
        "names the Dockerfile line: {message}"
    );
    assert_eq!(
        image_id(&image).as_deref(),
        Some(bundled.as_str()),
        "nothing was built"
    );
}

/// Issue 18, test 7: `rebuild --changed` on three services, one changed: one build; the JSON
/// says the other two were skipped as unchanged, and their images stay.
#[test]
fn changed_rebuilds_only_the_service_whose_inputs_changed() {
    let mut case = Case::new("changed", "three");
    let manifest = case.bundle();
    let bundled: Vec<(&str, String)> = ["alpha", "beta", "gamma"]
        .into_iter()
        .map(|s| (s, manifest.id_of(&case.image_of(s))))
        .collect();
    let _cut = case.far_side(&manifest);

    case.change("beta/main.py", "print('beta, changed')");
    let reports = case.rebuild(&["--changed"]);
    let built: Vec<&ServiceReport> = reports.iter().filter(|r| !r.skipped_unchanged).collect();
    assert_eq!(
        built.iter().map(|r| r.service.as_str()).collect::<Vec<_>>(),
        ["beta"],
        "exactly one build: {reports:?}"
    );
    built[0].assert_ran_exactly(&["COPY main.py .", "RUN python3 -m py_compile main.py"]);
    let mut skipped: Vec<&str> = reports
        .iter()
        .filter(|r| r.skipped_unchanged)
        .map(|r| r.service.as_str())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["alpha", "gamma"], "{reports:?}");
    for (service, id) in &bundled {
        let now = image_id(&case.image_of(service)).expect("the service's image");
        if *service == "beta" {
            assert_ne!(&now, id, "beta was rebuilt");
        } else {
            assert_eq!(&now, id, "{service} was not rebuilt");
        }
    }
}
