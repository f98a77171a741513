//! Interrupted runs leave nothing half-written: a bundle killed or interrupted mid-stream leaves
//! no file at the target path, and a load killed mid-stream finishes when run again.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const IMAGE: &str = "offpack-test/interrupt:1";

/// A project whose one service runs a large (300 MB), incompressible image built from scratch,
/// so that bundling and loading take long enough to be interrupted.
fn big_image_project() -> tempfile::TempDir {
    if !image_exists(IMAGE) {
        let ctx = tempfile::tempdir().unwrap();
        ok(Command::new("head")
            .args(["-c", "300000000", "/dev/urandom"])
            .stdout(std::fs::File::create(ctx.path().join("blob.bin")).unwrap()));
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY blob.bin /blob.bin\n",
        )
        .unwrap();
        ok(Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(ctx.path()));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n  big:\n    image: {IMAGE}\n"),
    )
    .unwrap();
    dir
}

/// Starts `offpack ARGS` and sends `signal` once `ready` says so (or after `max` at the latest).
fn interrupt(
    dir: &Path,
    args: &[&str],
    signal: &str,
    ready: impl Fn() -> bool,
    max: Duration,
) -> std::process::Output {
    let child = offpack(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready() && started.elapsed() < max {
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]));
    child.wait_with_output().unwrap()
}

fn temp_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "compose.yaml")
        .collect()
}

#[test]
fn interrupted_bundle_leaves_nothing_at_the_target() {
    require_engine();
    let project = big_image_project();
    let dir = project.path();
    let target = dir.join("big.offpack");
    let has_temp = || temp_files_in(dir).iter().any(|n| n != "big.offpack");

    let out = interrupt(
        dir,
        &["bundle", "-o", "big.offpack"],
        "INT",
        has_temp,
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        !target.exists(),
        "Ctrl-C leaves no bundle at the target path"
    );
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(
        temp_files_in(dir),
        Vec::<String>::new(),
        "Ctrl-C removes the temporary file too"
    );

    let out = interrupt(
        dir,
        &["bundle", "-o", "big.offpack"],
        "KILL",
        has_temp,
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        !target.exists(),
        "SIGKILL leaves no bundle at the target path"
    );
    assert!(!dir.join("big.offpack.sha256").exists());
}

#[test]
fn killed_load_finishes_when_run_again() {
    require_engine();
    let project = big_image_project();
    let dir = project.path();
    ok(offpack(dir).args(["bundle", "-o", "big.offpack"]));
    let id = image_id(IMAGE).unwrap();
    ok(Command::new("docker").args(["rmi", IMAGE]));

    // Kill the load early, while the engine is still receiving the stream: a fast machine loads this
    // image in under 1.5 s, so a later kill found the load already done.
    let out = interrupt(
        dir,
        &["load", "big.offpack"],
        "KILL",
        || false,
        Duration::from_millis(300),
    );
    assert!(!out.status.success());
    let after_kill = image_exists(IMAGE);

    let out = ok(offpack(dir).args(["load", "--json", "big.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        image_id(IMAGE).as_deref(),
        Some(id.as_str()),
        "the image is back with its ID"
    );
    if after_kill {
        assert_eq!(
            report["loaded"].as_array().map(Vec::len),
            Some(0),
            "nothing redone: {report}"
        );
    } else {
        assert_eq!(
            report["loaded"].as_array().map(Vec::len),
            Some(1),
            "{report}"
        );
    }
}
