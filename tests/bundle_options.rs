//! Signed, split and delta bundles through the real binary and engine.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A project whose `app` service builds FROM a local base image (built from scratch here), so that
/// the base's layer is shared: the case delta bundles exist for.
/// Each test has its own base image (`offpack-test/<name>-base:1`): tests run in parallel.
fn layered_project(base: &str) -> tempfile::TempDir {
    build_random_image(base, &[3_000_000]);

    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("app.txt"), "the app\n").unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        format!("FROM {base}\nCOPY app.txt /app.txt\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  app:\n    build: ./app\n",
    )
    .unwrap();
    dir
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn signed_bundles_verify_only_with_the_right_key() {
    require_engine();
    let project = layered_project("offpack-test/signed-base:1");
    let dir = project.path();
    let env = [("COMPOSE_PROJECT_NAME", "offpack-signed")];
    ok(offpack(dir).args(["keygen", "-o", "team"]));
    ok(offpack(dir).args(["keygen", "-o", "other"]));
    let again = run(offpack(dir).args(["keygen", "-o", "team"]));
    assert_eq!(
        again.status.code(),
        Some(2),
        "keygen never overwrites a key"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("team.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    ok(offpack(dir)
        .envs(env)
        .args(["bundle", "--sign", "team.key", "-o", "s.offpack"]));
    let out = ok(offpack(dir).args(["verify", "--json", "--key", "team.pub", "s.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["signed_by"].is_string(), "{report}");
    let out = run(offpack(dir).args(["verify", "--key", "other.pub", "s.offpack"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "another team's key fails the check"
    );
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));

    ok(offpack(dir).envs(env).args(["bundle", "-o", "u.offpack"]));
    let out = run(offpack(dir).args(["verify", "--key", "team.pub", "u.offpack"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unsigned bundle fails when a key is required"
    );
}

#[test]
fn split_bundles_verify_and_load_from_their_parts() {
    require_engine();
    let project = layered_project("offpack-test/split-base:1");
    let dir = project.path();
    let env = [("COMPOSE_PROJECT_NAME", "offpack-split")];
    ok(offpack(dir)
        .envs(env)
        .args(["bundle", "--split", "1M", "-o", "p.offpack"]));
    assert!(!dir.join("p.offpack").exists(), "only parts are written");
    for part in ["p.offpack.001", "p.offpack.002", "p.offpack.003"] {
        assert!(dir.join(part).exists(), "{part}");
        assert!(size(&dir.join(part)) <= 1_000_000);
    }
    ok(Command::new("sha256sum")
        .current_dir(dir)
        .args(["-c", "p.offpack.sha256"]));
    ok(offpack(dir).args(["verify", "p.offpack.001"]));

    let image = "offpack-split-app:latest";
    let id = image_id(image).unwrap();
    ok(Command::new("docker").args(["rmi", image, "offpack-split_app:latest"]));
    ok(offpack(dir).args(["load", "p.offpack"]));
    assert_eq!(image_id(image), Some(id));

    std::fs::remove_file(dir.join("p.offpack.002")).unwrap();
    let out = run(offpack(dir).args(["verify", "p.offpack.001"]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("p.offpack.002"),
        "names the missing part: {}",
        stderr(&out)
    );
}

#[test]
fn delta_bundles_leave_out_what_the_far_side_has() {
    require_engine();
    let base = "offpack-test/delta-base:1";
    let project = layered_project(base);
    let dir = project.path();
    let env = [("COMPOSE_PROJECT_NAME", "offpack-delta")];
    let app = "offpack-delta-app:latest";
    ok(offpack(dir)
        .envs(env)
        .args(["bundle", "--build", "-o", "full.offpack"]));
    let app_id = image_id(app).unwrap();

    // The far side has the base but not the app.
    ok(Command::new("docker").args(["rmi", app, "offpack-delta_app:latest"]));
    let have = ok(offpack(dir).arg("inventory"));
    std::fs::write(dir.join("have.json"), &have.stdout).unwrap();
    // Back on the networked side, which has the app.
    ok(offpack(dir).args(["load", "full.offpack"]));
    ok(offpack(dir).envs(env).args([
        "bundle",
        "--no-build",
        "--have",
        "have.json",
        "-o",
        "delta.offpack",
    ]));
    assert!(
        size(&dir.join("delta.offpack")) * 3 < size(&dir.join("full.offpack")),
        "the delta leaves out the 3 MB base layer: {} vs {}",
        size(&dir.join("delta.offpack")),
        size(&dir.join("full.offpack"))
    );
    let out = ok(offpack(dir).args(["verify", "--json", "delta.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["absent_layers"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );

    // On an engine with the base, the delta loads and the app comes back with its ID.
    ok(Command::new("docker").args(["rmi", app, "offpack-delta_app:latest"]));
    ok(offpack(dir).args(["load", "delta.offpack"]));
    assert_eq!(image_id(app), Some(app_id));

    // On an engine without the base, load refuses before streaming and names what is missing.
    ok(Command::new("docker").args(["rmi", app, "offpack-delta_app:latest", base]));
    let out = run(offpack(dir).args(["load", "delta.offpack"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("delta bundle") && stderr(&out).contains("layer sha256:"),
        "{}",
        stderr(&out)
    );
    assert!(!image_exists(app));
}

#[test]
fn bundling_for_a_platform_the_engine_cannot_hold_is_refused() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  cache:\n    image: redis:7\n",
    )
    .unwrap();
    let out =
        run(offpack(dir.path()).args(["bundle", "--platform", "linux/arm64", "-o", "x.offpack"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("linux/arm64"), "{}", stderr(&out));
    assert!(!dir.path().join("x.offpack").exists());
}

/// The `--json` event lines on stderr, each one parsed (a script reads every line as JSON).
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Checks that `events` have a total task labelled `<verb> N images` with one part per image,
/// labelled by `labels`, and that each part and the total end full; returns the total's ID.
fn check_image_tasks(events: &[serde_json::Value], verb: &str, labels: &[&str]) -> u64 {
    let of = |kind: &'static str| events.iter().filter(move |e| e["event"] == kind);
    let label = format!("{verb} {} images", labels.len());
    let total = of("start")
        .find(|e| e["label"] == label.as_str() && e["parent"].is_null())
        .unwrap_or_else(|| panic!("no `{label}` task: {events:?}"))["task"]
        .as_u64()
        .unwrap();
    let parts: Vec<&serde_json::Value> = of("start").filter(|e| e["parent"] == total).collect();
    let mut part_labels: Vec<&str> = parts.iter().map(|e| e["label"].as_str().unwrap()).collect();
    part_labels.sort();
    let mut expected = labels.to_vec();
    expected.sort();
    assert_eq!(part_labels, expected, "one task per image: {events:?}");
    for task in parts
        .iter()
        .map(|e| e["task"].as_u64().unwrap())
        .chain([total])
    {
        let start = of("start").find(|e| e["task"] == task).unwrap();
        let last_total = of("total")
            .rfind(|e| e["task"] == task)
            .map_or(start["total"].as_u64(), |e| e["total"].as_u64());
        let last_done = of("progress")
            .rfind(|e| e["task"] == task)
            .and_then(|e| e["done"].as_u64());
        assert!(
            last_done.is_some_and(|d| d > 0) && last_done == last_total,
            "task {task} ends full ({last_done:?} of {last_total:?}): {events:?}"
        );
        let finishes = of("finish").filter(|e| e["task"] == task).count();
        assert_eq!(finishes, 1, "task {task} finishes once: {events:?}");
    }
    total
}

#[test]
fn json_progress_has_a_task_per_image_and_a_total() {
    require_engine();
    let base = "offpack-test/progress-base:1";
    let project = layered_project(base);
    let dir = project.path();
    let env = [("COMPOSE_PROJECT_NAME", "offpack-progress")];
    let app = "offpack-progress-app:latest";
    let out = ok(offpack(dir)
        .envs(env)
        .args(["--json", "bundle", "--build", "-o", "b.offpack"]));
    check_image_tasks(&events(&out), "export", &[app, base]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["images"], 2, "{summary}");
    assert_eq!(summary["layers"], 2, "the base layer is shared: {summary}");
    assert!(
        summary["uncompressed"].as_u64().unwrap() > 3_000_000,
        "{summary}"
    );
    assert!(summary["size"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["seconds"].as_f64().is_some(), "{summary}");

    let app_id = image_id(app).unwrap();
    ok(Command::new("docker").args(["rmi", app, "offpack-progress_app:latest", base]));
    let out = ok(offpack(dir).args(["load", "--json", "b.offpack"]));
    let events = events(&out);
    check_image_tasks(&events, "load", &[app, base]);
    let importing = events
        .iter()
        .find(|e| e["event"] == "start" && e["kind"] == "wait")
        .unwrap_or_else(|| panic!("no wait for the engine's import: {events:?}"));
    assert_eq!(importing["label"], "engine importing 2 images");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "finish" && e["task"] == importing["task"]),
        "{events:?}"
    );
    assert_eq!(image_id(app), Some(app_id));
}
