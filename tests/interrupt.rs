//! Interrupted runs leave nothing half-written: a bundle killed or interrupted mid-stream leaves
//! no file at the target path, and a load killed mid-stream finishes when run again.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The image of the bundle test. The load test has its own, built from other random bytes: the two
/// tests run in parallel, and the load test removes its image from the engine, which must not take
/// the other test's image with it (nor may an image of the other test's build let `load` find the
/// removed image still there).
const BUNDLE_IMAGE: &str = "offpack-test/interrupt-bundle:1";
const LOAD_IMAGE: &str = "offpack-test/interrupt-load:1";

/// A project whose one service runs `image`, a large (300 MB), incompressible image built from
/// scratch, so that bundling and loading take long enough to be interrupted.
fn big_image_project(image: &str) -> tempfile::TempDir {
    if !image_exists(image) {
        build_random_image(image, &[300_000_000]);
    }
    project_running("big", image)
}

/// Starts `offpack ARGS` and sends `signal` once `ready` says so. `ready` sees the lines the child
/// has written to stderr so far, so a test can wait for the progress event that says the work it
/// means to interrupt is under way. Fails the test if that has not happened within `max`: a signal
/// sent after the work, or to a child that already exited, would prove nothing.
fn interrupt(
    dir: &Path,
    args: &[&str],
    signal: &str,
    ready: impl Fn(&[String]) -> bool,
    max: Duration,
) -> std::process::Output {
    let mut child = offpack(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr_pipe = child.stderr.take().unwrap();
    let collected = Arc::clone(&lines);
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            collected.lock().unwrap().push(line);
        }
    });
    let mut stdout_pipe = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut out);
        out
    });
    let started = Instant::now();
    let reached = loop {
        if ready(&lines.lock().unwrap()) {
            break true;
        }
        if started.elapsed() > max || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if reached {
        ok(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]));
    } else {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let stdout = stdout_reader.join().unwrap();
    stderr_reader.join().unwrap();
    let stderr = lines.lock().unwrap().join("\n");
    assert!(
        reached,
        "offpack {} exited or ran {max:?} without getting to the point to interrupt; its stderr:\n{stderr}",
        args.join(" ")
    );
    std::process::Output {
        status,
        stdout,
        stderr: stderr.into_bytes(),
    }
}

/// True once a `--json` run has reported the start of a task whose label begins with `label`.
fn task_started(lines: &[String], label: &str) -> bool {
    lines.iter().any(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|event| {
            event["event"] == "start"
                && event["label"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(label))
        })
    })
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
    let project = big_image_project(BUNDLE_IMAGE);
    let dir = project.path();
    let target = dir.join("big.offpack");
    let has_temp = |_: &[String]| temp_files_in(dir).iter().any(|n| n != "big.offpack");

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
    let project = big_image_project(LOAD_IMAGE);
    let dir = project.path();
    ok(offpack(dir).args(["bundle", "-o", "big.offpack"]));
    let id = image_id(LOAD_IMAGE).unwrap();
    ok(Command::new("docker").args(["rmi", LOAD_IMAGE]));

    // Kill the load once it has started streaming to the engine: the stream is 300 MB, so the
    // process is still running then, however fast the machine.
    let out = interrupt(
        dir,
        &["load", "--json", "big.offpack"],
        "KILL",
        |lines| task_started(lines, "load "),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let after_kill = image_exists(LOAD_IMAGE);

    let out = ok(offpack(dir).args(["load", "--json", "big.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        image_id(LOAD_IMAGE).as_deref(),
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
