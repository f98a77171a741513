//! Bad input gets a clear error and exit code 2 (or 1 for a failed check), never a panic.

mod common;

use common::*;

fn assert_clean_failure(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr names `{needle}`: {err}");
    }
}

#[test]
fn no_compose_file_names_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(offpack(dir.path()).arg("plan"));
    assert_clean_failure(&out, 2, &["compose.yaml", "docker-compose.yml"]);
}

#[test]
fn malformed_compose_file_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: [unclosed\n",
    )
    .unwrap();
    let out = run(offpack(dir.path()).arg("plan"));
    assert_clean_failure(&out, 2, &["compose.yaml"]);
    assert!(
        stderr(&out).contains("line") || stderr(&out).contains(":3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_dockerfile_names_the_service_and_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  api:\n    build: ./api\n",
    )
    .unwrap();
    let out = run(offpack(dir.path()).arg("plan"));
    assert_clean_failure(&out, 2, &["api", "Dockerfile"]);
}

#[test]
fn malformed_dockerfile_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    std::fs::write(
        dir.path().join("api/Dockerfile"),
        "FROM python:3.11-slim\nFLY away\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  api:\n    build: ./api\n",
    )
    .unwrap();
    let out = run(offpack(dir.path()).arg("plan"));
    assert_clean_failure(&out, 2, &["Dockerfile:2:", "FLY"]);
}

#[test]
fn engine_not_running_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(offpack(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("doctor"));
    assert_clean_failure(&out, 2, &["/nonexistent/docker.sock", "DOCKER_HOST"]);
}

#[test]
fn missing_bundle_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(offpack(dir.path()).args(["verify", "nope.offpack"]));
    assert_clean_failure(&out, 2, &["nope.offpack"]);
}

#[test]
fn garbage_bundle_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.offpack"), vec![0x42u8; 4096]).unwrap();
    let out = run(offpack(dir.path()).args(["verify", "junk.offpack"]));
    assert_clean_failure(&out, 1, &["junk.offpack"]);
    let out = run(offpack(dir.path()).args(["inspect", "junk.offpack"]));
    assert_clean_failure(&out, 1, &["junk.offpack", "not an offpack bundle"]);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(offpack(dir.path()).arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(offpack(dir.path()).args(["bundle"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "bundle without -o is a usage error"
    );
    for sub in [
        "plan", "bundle", "verify", "inspect", "load", "rebuild", "doctor", "serve",
    ] {
        let out = ok(offpack(dir.path()).args([sub, "--help"]));
        assert!(stdout(&out).contains("Usage: offpack"), "{sub} --help");
    }
}

#[test]
fn json_errors_are_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(offpack(dir.path()).args(["plan", "--json"]));
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().is_some_and(|e| e.contains("compose")));
}

/// Issue 18: a `# syntax=` frontend the engine lacks is named, with its service and line, before
/// anything is built (instead of BuildKit's failed request to a registry); a Dockerfile that needs
/// BuildKit is never sent to the classic builder.
#[test]
fn rebuild_names_a_missing_frontend_and_refuses_buildkit_files_for_classic() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  tool:\n    build: .\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "# syntax=offpack-test/absent-frontend:1.4\nFROM python:3.11-slim\n\
         RUN --mount=type=cache,target=/root/.cache true\n",
    )
    .unwrap();
    let out = run(offpack(dir.path()).args(["rebuild", "-p", "offpack-frontend-test"]));
    assert_clean_failure(
        &out,
        2,
        &[
            "service tool needs the Dockerfile frontend offpack-test/absent-frontend:1.4",
            "Dockerfile:1",
            "offpack load",
        ],
    );
    let out = run(offpack(dir.path()).args([
        "rebuild",
        "-p",
        "offpack-frontend-test",
        "--builder",
        "classic",
    ]));
    assert_clean_failure(&out, 2, &["Dockerfile:3", "RUN --mount", "only BuildKit"]);
    assert!(!image_exists("offpack-frontend-test-tool"));
}
