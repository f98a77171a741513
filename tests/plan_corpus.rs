//! `offpack plan --json` on every project of `tests/plan-corpus`, checked against a reviewed
//! snapshot (`tests/snapshots/plan_corpus__<project>.snap`). A project whose plan must fail
//! (missing required variable, unknown target, invalid reference) has its error message as the
//! snapshot instead. Paths are made machine-independent: the corpus directory is `[corpus]`.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test -p offpack --test plan_corpus`,
//! then review the diff of the `.snap` files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Projects whose plan is an error, with a word the error must contain.
const MUST_FAIL: &[(&str, &str)] = &[
    ("env-required-missing", "DB_PASSWORD"),
    ("invalid-reference", "must be lowercase"),
    ("unknown-target", "production"),
];

fn redact(text: &str, corpus: &Path) -> String {
    text.replace(&corpus.display().to_string(), "[corpus]")
}

#[test]
fn corpus_has_enough_projects() {
    let projects = plan_corpus();
    assert!(
        projects.len() >= 25,
        "only {} corpus projects",
        projects.len()
    );
}

#[test]
fn every_corpus_plan_matches_its_snapshot() {
    let corpus = repo_root().join("tests/plan-corpus");
    for (name, dir) in plan_corpus() {
        let out = run(offpack_isolated(&dir).args(["plan", "--json"]));
        let must_fail = MUST_FAIL.iter().find(|(project, _)| *project == name);
        let snapshot = match must_fail {
            Some((_, needle)) => {
                assert_eq!(
                    out.status.code(),
                    Some(2),
                    "{name}: plan must fail with exit code 2"
                );
                let err = stderr(&out);
                assert!(!err.contains("panicked"), "{name}: {err}");
                assert!(
                    err.contains(needle),
                    "{name}: the error names `{needle}`: {err}"
                );
                redact(&err, &corpus)
            }
            None => {
                assert!(
                    out.status.success(),
                    "{name}: plan failed: {}",
                    stderr(&out)
                );
                let plan: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON");
                assert_eq!(plan["schema_version"], 1, "{name}");
                redact(&stdout(&out), &corpus)
            }
        };
        insta::assert_snapshot!(name.as_str(), snapshot);
    }
}

/// Projects whose plan for the classic builder (`--builder classic`) is snapshot too, as
/// `plan_corpus__<project>-classic.snap`: the builders build different stages (decision 0080).
const CLASSIC_TOO: &[&str] = &["buildkit-dev-tools", "targets-dev-prod"];

#[test]
fn classic_builder_plans_match_their_snapshots() {
    let corpus = repo_root().join("tests/plan-corpus");
    for name in CLASSIC_TOO {
        let dir = corpus.join(name);
        let out = run(offpack_isolated(&dir).args(["plan", "--json", "--builder", "classic"]));
        assert!(
            out.status.success(),
            "{name}: plan failed: {}",
            stderr(&out)
        );
        insta::assert_snapshot!(format!("{name}-classic"), redact(&stdout(&out), &corpus));
    }
}

/// A dev-tools stage the target does not reach: BuildKit skips it, so its image is not carried;
/// the classic builder builds it, so the classic plan carries it and says the Dockerfile needs
/// BuildKit.
#[test]
fn the_plan_follows_the_builder() {
    let dir = repo_root().join("tests/plan-corpus/buildkit-dev-tools");
    let codes = |plan: &serde_json::Value| -> Vec<String> {
        plan["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["code"].as_str().map(str::to_string))
            .collect()
    };
    for args in [
        &["plan", "--json"][..],
        &["plan", "--json", "--builder", "buildkit"],
    ] {
        let plan = plan_json(offpack_isolated(&dir).args(args));
        assert_eq!(plan["builder"], "buildkit", "{args:?}");
        assert_eq!(image_refs(&plan), ["python:3.11-slim"], "{args:?}");
        assert!(codes(&plan).is_empty(), "{args:?}: {:?}", codes(&plan));
        let build = &service(&plan, "api")["build"];
        assert_eq!(build["builder"], "buildkit");
        assert_eq!(build["needs_buildkit"][0]["feature"], "RUN --mount");
        assert_eq!(build["needs_buildkit"][0]["line"], 4);
    }
    let plan = plan_json(offpack_isolated(&dir).args(["plan", "--json", "--builder", "classic"]));
    assert_eq!(plan["builder"], "classic");
    assert_eq!(
        image_refs(&plan),
        ["acme/devtools:1.4.2", "python:3.11-slim"]
    );
    assert_eq!(codes(&plan), ["OP010", "OP010", "OP010"]);

    let human = stdout(&ok(offpack_isolated(&dir).arg("plan")));
    assert!(
        human.contains("builder buildkit; needs BuildKit for RUN --mount (line 4), RUN --mount (line 9), COPY --chmod (line 12)"),
        "{human}"
    );
    let human = stdout(&ok(offpack_isolated(&dir).args([
        "plan",
        "--builder",
        "classic",
    ])));
    assert!(
        human.contains("OP010 error [api] Dockerfile:4: `RUN --mount` needs BuildKit"),
        "{human}"
    );
}

/// The human table is printed for every project that plans (smoke: no panic, names each service).
#[test]
fn human_output_names_every_service() {
    for (name, dir) in plan_corpus() {
        if MUST_FAIL.iter().any(|(project, _)| *project == name) {
            continue;
        }
        let json = ok(offpack_isolated(&dir).args(["plan", "--json"]));
        let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
        let human = stdout(&ok(offpack_isolated(&dir).arg("plan")));
        for service in plan["services"].as_array().into_iter().flatten() {
            let service = service["name"].as_str().unwrap_or_default();
            assert!(
                human.contains(service),
                "{name}: table lists {service}:\n{human}"
            );
        }
    }
}

/// The plan is the same on every run (sorted output diffs cleanly).
#[test]
fn plan_is_stable_across_runs() {
    let dir = repo_root().join("tests/plan-corpus/forty-services");
    let first = ok(offpack_isolated(&dir).args(["plan", "--json"])).stdout;
    let second = ok(offpack_isolated(&dir).args(["plan", "--json"])).stdout;
    assert_eq!(first, second);
}

/// 40 services with 30 Dockerfile builds: the plan takes well under a second with a release
/// build (50 runs of `target/release/offpack plan --json`: median 21 ms, max 28 ms, on 2 cores at
/// load average 7). The bound here is generous so that a debug build on a busy CI machine
/// passes; it only catches accidental quadratic behaviour.
#[test]
fn forty_service_plan_is_fast() {
    let dir = repo_root().join("tests/plan-corpus/forty-services");
    let started = Instant::now();
    let out = ok(offpack_isolated(&dir).args(["plan", "--json"]));
    let elapsed = started.elapsed();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["services"].as_array().map(Vec::len), Some(40));
    assert!(
        elapsed < Duration::from_secs(10),
        "offpack plan on 40 services took {elapsed:?}"
    );
}

/// Projects `docker-compose` 1.29 (v1) can read: it must agree with offpack on the services, image
/// names, build contexts, targets and build args after interpolation and `.env`. The other corpus
/// projects use what v1 rejects, so they are not compared: `include` and `name:` (include), `!reset`
/// (extends-same-file), `${VAR:+alt}` (env-interpolation), `additional_contexts`
/// (additional-contexts, service-context), `dockerfile_inline`, `build.platforms`, `build.tags`
/// (compose-file-from-env), `depends_on.required` (profiles-depends-on), `pull_policy: daily`
/// (pull-policy); and the projects whose plan must fail (their Dockerfiles are what fails; v1's
/// `config` does not read Dockerfiles), except env-required-missing, compared below.
const COMPARED_WITH_COMPOSE_V1: &[&str] = &[
    "arg-before-from",
    "cache-from-self",
    "compose-v1-style",
    "copy-from-images",
    "env-defaults",
    "escape-directive",
    "extends-other-file",
    "forty-services",
    "heredocs",
    "mirror-prefix",
    "network-runs",
    "node-multistage",
    "npm-lockfiles",
    "override-file",
    "profiles",
    "profiles-from-env",
    "project-base-image",
    "python-postgres",
    "python-pyproject",
    "remote-context",
    "run-mount-from",
    "targets-dev-prod",
    "unpinned-latest",
];

/// docker-compose v1, which `scripts/test-env up` installs: these comparisons are written for v1's
/// `config` output, and a missing or other tool fails them rather than letting them pass unchecked.
fn require_compose_v1() {
    let version = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .unwrap_or_else(|e| {
            panic!("docker-compose is not installed ({e}); run `scripts/test-env up`")
        });
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("version 1."),
        "docker-compose is not v1: these comparisons are written for v1's `config` output:\n{}",
        String::from_utf8_lossy(&version.stdout)
    );
}

fn compose_v1_config(dir: &Path) -> std::process::Output {
    let mut compose = std::process::Command::new("docker-compose");
    compose.current_dir(dir).env_clear().args(["config"]);
    if let Some(path) = std::env::var_os("PATH") {
        compose.env("PATH", path);
    }
    run(&mut compose)
}

#[test]
fn compose_v1_also_refuses_a_missing_required_variable() {
    require_compose_v1();
    let dir = repo_root().join("tests/plan-corpus/env-required-missing");
    let v1 = compose_v1_config(&dir);
    assert!(!v1.status.success());
    assert!(
        stderr(&v1).contains("set DB_PASSWORD in .env"),
        "{}",
        stderr(&v1)
    );
    let ours = run(offpack_isolated(&dir).args(["plan", "--json"]));
    assert_eq!(ours.status.code(), Some(2));
    assert!(stderr(&ours).contains("DB_PASSWORD"));
}

#[test]
fn compose_v1_agrees_on_images_contexts_and_build_args() {
    require_compose_v1();
    let corpus = repo_root().join("tests/plan-corpus");
    for name in COMPARED_WITH_COMPOSE_V1 {
        let dir = corpus.join(name);
        let v1 = compose_v1_config(&dir);
        assert!(v1.status.success(), "{name}: docker-compose config failed");
        let v1: serde_norway::Value =
            serde_norway::from_slice(&v1.stdout).expect("docker-compose config prints YAML");
        let plan = ok(offpack_isolated(&dir).args(["plan", "--json"]));
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
        let planned: BTreeMap<&str, &serde_json::Value> = plan["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?, s)))
            .collect();
        let services = v1["services"].as_mapping().expect("v1 lists services");
        assert_eq!(services.len(), planned.len(), "{name}: same services");
        for (service, v1_service) in services {
            let service = service.as_str().unwrap_or_default();
            let ours = planned
                .get(service)
                .unwrap_or_else(|| panic!("{name}: offpack plans {service}"));
            compare_service(name, service, v1_service, ours, &dir);
        }
    }
}

/// `docker-compose config` writes `$` as `$$` again; the value compose uses has one.
fn v1_value(value: &serde_norway::Value) -> String {
    let text = match value {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Null => String::new(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    text.replace("$$", "$")
}

fn compare_service(
    project: &str,
    service: &str,
    v1: &serde_norway::Value,
    ours: &serde_json::Value,
    dir: &Path,
) {
    let context = format!("{project}/{service}");
    if let Some(image) = v1.get("image") {
        let image = v1_value(image);
        let expected = if image.contains(':') || image.contains('@') {
            image
        } else {
            format!("{image}:latest")
        };
        assert_eq!(
            ours["image"].as_str(),
            Some(expected.as_str()),
            "{context}: image"
        );
    }
    let Some(build) = v1.get("build") else {
        assert!(ours["build"].is_null(), "{context}: v1 has no build");
        return;
    };
    let build_plan = &ours["build"];
    let planned_context = build_plan["context"].as_str().unwrap_or_default();
    if planned_context.contains("://") {
        let v1_context = build.get("context").map(v1_value);
        assert_eq!(
            v1_context.as_deref(),
            Some(planned_context),
            "{context}: remote context"
        );
    } else if let Some(v1_context) = build.get("context") {
        let ours_context = dir.join(build_plan["context"].as_str().unwrap_or_default());
        let ours_context = std::fs::canonicalize(&ours_context).unwrap_or(ours_context);
        let v1_context = std::path::PathBuf::from(v1_value(v1_context));
        let v1_context = std::fs::canonicalize(&v1_context).unwrap_or(v1_context);
        assert_eq!(ours_context, v1_context, "{context}: build context");
    }
    if let Some(target) = build.get("target") {
        assert_eq!(
            build_plan["target"].as_str(),
            Some(v1_value(target).as_str()),
            "{context}: target"
        );
    }
    let ours_args = build_plan["build_args"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let v1_args = build
        .get("args")
        .and_then(serde_norway::Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for (key, value) in &v1_args {
        let key = key.as_str().unwrap_or_default();
        let value = v1_value(value);
        match ours_args.get(key) {
            Some(ours) => assert_eq!(ours.as_str(), Some(value.as_str()), "{context}: arg {key}"),
            // v1 prints an arg listed without a value and unset in the environment as ''; compose
            // v2 (and offpack, decision 0021) drops it.
            None => assert_eq!(value, "", "{context}: arg {key} is missing from the plan"),
        }
    }
    for key in ours_args.keys() {
        assert!(
            v1_args.contains_key(serde_norway::Value::String(key.clone())),
            "{context}: arg {key} is not in v1's config"
        );
    }
}

/// The command line's project options reach the plan as they reach `docker compose`.
#[test]
fn project_options_change_the_plan() {
    let profiles = repo_root().join("tests/plan-corpus/profiles");
    let plan =
        plan_json(offpack_isolated(&profiles).args(["plan", "--json", "--profile", "tools"]));
    assert_eq!(service(&plan, "migrate")["active"], true);
    assert_eq!(service(&plan, "debug-shell")["active"], false);
    assert!(image_refs(&plan).contains(&"flyway/flyway:10.15".to_string()));

    let plan = plan_json(
        offpack_isolated(&profiles)
            .args(["plan", "--json"])
            .env("COMPOSE_PROFILES", "debug"),
    );
    assert_eq!(service(&plan, "debug-shell")["active"], true);
    assert!(image_refs(&plan).contains(&"busybox:1.36".to_string()));

    let plan = plan_json(offpack_isolated(&profiles).args(["plan", "--json", "--profile", "*"]));
    assert!(
        plan["services"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["active"] == true)
    );

    let python = repo_root().join("tests/plan-corpus/python-postgres");
    let plan = plan_json(offpack_isolated(&python).args(["plan", "--json", "-p", "shop"]));
    assert_eq!(plan["project"], "shop");
    assert_eq!(service(&plan, "web")["image"], "shop-web:latest");

    // The process environment wins over .env.
    let env = repo_root().join("tests/plan-corpus/env-defaults");
    let plan = plan_json(
        offpack_isolated(&env)
            .args(["plan", "--json"])
            .env("TAG", "1.27.0"),
    );
    assert_eq!(service(&plan, "web")["image"], "nginx:1.27.0");
}

fn plan_json(cmd: &mut std::process::Command) -> serde_json::Value {
    serde_json::from_slice(&ok(cmd).stdout).expect("plan --json prints JSON")
}

fn service<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in the plan"))
}

fn image_refs(plan: &serde_json::Value) -> Vec<String> {
    plan["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["reference"].as_str().map(str::to_string))
        .collect()
}
