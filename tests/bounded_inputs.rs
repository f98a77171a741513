//! Every file offpack reads has a size limit for its kind, special files (a FIFO, a device) fail at
//! once, nesting has a limit, and files outside the project are never quoted (issue 16, classes
//! 4, 5 and 9). None of these needs the engine: each command must fail before it reaches one.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `cmd`, failing the test instead of hanging when it is not done within `limit`.
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drained while the child runs: a long message must not fill the pipe and block it.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "{cmd:?} still ran after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    eprintln!(
        "$ {cmd:?} ({:?})\n-> {}\n{}{}",
        started.elapsed(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const AT_ONCE: Duration = Duration::from_secs(10);

/// Exit code 2, no panic or stack overflow, and stderr names each of `needles`.
fn assert_input_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("overflowed its stack"),
        "{err}"
    );
    for needle in needles {
        assert!(err.contains(needle), "stderr names `{needle}`: {err}");
    }
}

/// A project with one service from an image, so that `bundle` has something to do.
fn image_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  cache:\n    image: redis:7\n",
    )
    .unwrap();
    dir
}

/// `offpack` pointed at an engine that does not exist: reaching it fails differently.
fn offpack_without_engine(dir: &Path) -> Command {
    let mut cmd = offpack(dir);
    cmd.env("DOCKER_HOST", "unix:///nonexistent/offpack-test-c.sock");
    cmd
}

fn mkfifo(path: &Path) {
    ok(Command::new("mkfifo").arg(path));
}

#[test]
fn bundle_refuses_a_device_as_inventory_or_key_before_the_engine() {
    let dir = image_project();
    for flag in ["--have", "--sign"] {
        let out = run_within(
            offpack_without_engine(dir.path()).args([
                "bundle",
                flag,
                "/dev/zero",
                "-o",
                "x.offpack",
            ]),
            AT_ONCE,
        );
        assert_input_error(&out, &["/dev/zero", "character device"]);
        assert!(!stderr(&out).contains("Docker Engine"), "{}", stderr(&out));
        assert!(!dir.path().join("x.offpack").exists());
    }
}

#[test]
fn bundle_refuses_an_oversized_key_naming_it() {
    let dir = image_project();
    let key = dir.path().join("big.key");
    std::fs::write(&key, vec![b'k'; 1 << 20]).unwrap();
    let out = run_within(
        offpack_without_engine(dir.path()).args(["bundle", "--sign", "big.key", "-o", "x.offpack"]),
        AT_ONCE,
    );
    assert_input_error(&out, &["big.key", "1048576 bytes"]);
}

#[test]
fn env_file_from_a_device_fails_at_once() {
    let dir = image_project();
    let out = run_within(
        offpack(dir.path()).args(["plan", "--env-file", "/dev/zero"]),
        AT_ONCE,
    );
    assert_input_error(&out, &["/dev/zero", "character device"]);
}

#[test]
fn verify_refuses_a_device_as_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.offpack"), b"not a bundle").unwrap();
    let out = run_within(
        offpack(dir.path()).args(["verify", "--key", "/dev/zero", "b.offpack"]),
        AT_ONCE,
    );
    assert_input_error(&out, &["/dev/zero", "character device"]);
}

#[test]
fn a_fifo_as_the_bundle_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("b.offpack"));
    for command in ["verify", "inspect"] {
        let out = run_within(offpack(dir.path()).args([command, "b.offpack"]), AT_ONCE);
        assert_input_error(&out, &["b.offpack", "FIFO"]);
    }
    // The part of a split bundle.
    mkfifo(&dir.path().join("s.offpack.001"));
    let out = run_within(offpack(dir.path()).args(["inspect", "s.offpack"]), AT_ONCE);
    assert_input_error(&out, &["s.offpack.001", "FIFO"]);
}

#[test]
fn a_fifo_or_an_oversized_file_as_the_sidecar_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("bundle-spec/vectors/ok-minimal.offpack"),
        dir.path().join("b.offpack"),
    )
    .unwrap();
    let sidecar = dir.path().join("b.offpack.sha256");
    mkfifo(&sidecar);
    let out = run_within(offpack(dir.path()).args(["verify", "b.offpack"]), AT_ONCE);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("b.offpack.sha256"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&sidecar).unwrap();
    std::fs::write(&sidecar, vec![b'a'; 2 << 20]).unwrap();
    let out = run_within(offpack(dir.path()).args(["verify", "b.offpack"]), AT_ONCE);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("b.offpack.sha256"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_oversized_env_or_compose_file_is_refused_naming_it() {
    let dir = image_project();
    std::fs::write(dir.path().join("big.env"), vec![b'#'; (4 << 20) + 1]).unwrap();
    let out = run_within(
        offpack(dir.path()).args(["plan", "--env-file", "big.env"]),
        AT_ONCE,
    );
    assert_input_error(&out, &["big.env", "4194305 bytes"]);

    let mut compose = b"services:\n  cache:\n    image: redis:7\n".to_vec();
    compose.resize((16 << 20) + 1, b'#');
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    let out = run_within(offpack(dir.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["compose.yaml", "16777217 bytes"]);
}

#[test]
fn a_fifo_as_the_dockerfile_or_compose_file_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    build: .\n",
    )
    .unwrap();
    mkfifo(&dir.path().join("Dockerfile"));
    let out = run_within(offpack(dir.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["Dockerfile", "FIFO", "web"]);

    mkfifo(&dir.path().join("other.yaml"));
    let out = run_within(
        offpack(dir.path()).args(["plan", "-f", "other.yaml"]),
        AT_ONCE,
    );
    assert_input_error(&out, &["other.yaml", "FIFO"]);
}

#[test]
fn deep_interpolation_fails_quickly_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: \"{}x{}\"\n",
            "${A:-".repeat(n),
            "}".repeat(n)
        ),
    )
    .unwrap();
    let out = run_within(offpack(dir.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["compose.yaml", "services.web.image", "64 levels"]);
}

#[test]
fn deep_dockerfile_substitution_fails_quickly_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    build: .\n",
    )
    .unwrap();
    // Line continuations make one instruction of any length.
    let n = 100_000;
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}redis:7{}\n",
            "${A:-\\\n".repeat(n),
            "}}}}}}}}}}\\\n".repeat(n / 10)
        ),
    )
    .unwrap();
    let out = run_within(offpack(dir.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["Dockerfile:1", "64 levels", "web"]);
}

#[test]
fn deep_yaml_fails_quickly_naming_the_file_and_line() {
    let n = 100_000;
    for (name, text) in [
        (
            "flow",
            format!("x: 1\nservices: {}{}\n", "[".repeat(n), "]".repeat(n)),
        ),
        (
            "map",
            format!("x: 1\nservices: {}1{}\n", "{a: ".repeat(n), "}".repeat(n)),
        ),
        (
            "json",
            format!(
                "{{\"x\": 1,\n\"services\": {}1{}}}\n",
                "{\"a\": ".repeat(n),
                "}".repeat(n)
            ),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
        let started = Instant::now();
        let out = run_within(offpack(dir.path()).arg("plan"), AT_ONCE);
        assert_input_error(&out, &["compose.yaml:2:", "128 levels"]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_dockerfile_outside_the_project_is_never_quoted() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(
        &secret,
        "OFFPACK-TEST-C-SECRET:$6$hash:19000:0:99999:7:::\nmore\n",
    )
    .unwrap();
    let project = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&secret, project.path().join("Dockerfile")).unwrap();
    std::fs::write(
        project.path().join("compose.yaml"),
        "services:\n  web:\n    build: .\n",
    )
    .unwrap();
    let out = run_within(offpack(project.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["Dockerfile", "outside the project directory"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("OFFPACK-TEST-C-SECRET"), "{all}");
    assert!(!all.contains("hash"), "{all}");

    // Named through `dockerfile:` with a path that leaves the project.
    std::fs::write(
        project.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    build:\n      context: .\n      dockerfile: {}\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = run_within(offpack(project.path()).arg("plan"), AT_ONCE);
    assert_input_error(&out, &["outside the project directory"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("OFFPACK-TEST-C-SECRET"), "{all}");
}

#[test]
fn a_dockerfile_or_context_outside_the_project_is_a_warning() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("Dockerfile"), "FROM redis:7\n").unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    build:\n      context: .\n      dockerfile: {outside}/Dockerfile\n  \
             worker:\n    build: {outside}\n  inside:\n    build: .\n",
            outside = outside.path().display()
        ),
    )
    .unwrap();
    std::fs::write(project.path().join("Dockerfile"), "FROM redis:7\n").unwrap();
    let out = run_within(offpack(project.path()).args(["plan", "--json"]), AT_ONCE);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outside_findings: Vec<(String, String)> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "OP009")
        .map(|f| {
            (
                f["service"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let about = |service: &str, what: &str| {
        outside_findings
            .iter()
            .any(|(s, m)| s == service && m.contains(what) && m.contains("does not travel"))
    };
    assert!(about("web", "Dockerfile"), "{outside_findings:?}");
    assert!(about("worker", "build context"), "{outside_findings:?}");
    assert!(about("worker", "Dockerfile"), "{outside_findings:?}");
    assert!(
        !outside_findings.iter().any(|(s, _)| s == "inside"),
        "{outside_findings:?}"
    );
}
