//! Outputs never clobber inputs, special files or (without --force) files that are not bundles;
//! one writer per target; leftovers of killed runs go; a failed sidecar write says what is true.
//! Issue 16, classes 1, 3, 7b, 8a, 8b.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// An engine address where nothing answers: a check that must come before any engine work fails
/// with its own message under it, not with "cannot reach the Docker Engine".
const NO_ENGINE: &str = "unix:///nonexistent/offpack-test-a.sock";

/// A project that needs no engine to plan: an image service, a built service, `.env`.
fn project_without_engine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("app")).unwrap();
    std::fs::write(
        d.join("app/Dockerfile"),
        "FROM offpack-test-a/never-built-base:1\n",
    )
    .unwrap();
    std::fs::write(
        d.join("compose.yaml"),
        "services:\n  db:\n    image: offpack-test-a/never-pulled:1\n  app:\n    build: ./app\n",
    )
    .unwrap();
    std::fs::write(d.join(".env"), "A=1\n").unwrap();
    std::fs::write(d.join("have.json"), "{}\n").unwrap();
    std::fs::write(d.join("x.sha256"), "B=2\n").unwrap();
    std::fs::write(d.join("part.002"), "C=3\n").unwrap();
    ok(offpack(d).args(["keygen", "-o", "k"]));
    std::os::unix::fs::symlink("compose.yaml", d.join("link.yaml")).unwrap();
    std::fs::hard_link(d.join("compose.yaml"), d.join("hard.yaml")).unwrap();
    dir
}

/// Runs `offpack bundle ARGS` with no engine reachable.
fn bundle_without_engine(dir: &Path, args: &[&str]) -> Output {
    run(offpack(dir)
        .env("DOCKER_HOST", NO_ENGINE)
        .arg("bundle")
        .args(args))
}

/// The run failed with exit 2 before any engine work, and its message contains `needle`.
fn refused_before_engine(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "the message names {needle}: {err}");
    assert!(
        !err.contains("Docker Engine"),
        "refused before any engine work: {err}"
    );
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn bundle_never_writes_over_its_own_inputs() {
    let project = project_without_engine();
    let d = project.path();
    let before = snapshot(d);
    let cases: &[(&[&str], &str)] = &[
        (&["-o", "compose.yaml"], "a compose file of the project"),
        (&["-o", "./compose.yaml"], "a compose file of the project"),
        (&["-o", "link.yaml"], "a compose file of the project"),
        (&["-o", "hard.yaml"], "a compose file of the project"),
        (&["-o", ".env"], "environment file"),
        (&["-o", "app/Dockerfile"], "the Dockerfile of service app"),
        (
            &["-o", "app/../app/Dockerfile"],
            "the Dockerfile of service app",
        ),
        (
            &["--sign", "k.key", "-o", "k.key"],
            "the secret key (--sign)",
        ),
        (
            &["--have", "have.json", "-o", "have.json"],
            "the inventory (--have)",
        ),
        // The sidecar of `-o x` is x.sha256; the parts of a split `-o part` are part.001, ...
        (&["--env-file", "x.sha256", "-o", "x"], "--env-file"),
        (
            &["--env-file", "part.002", "--split", "4096", "-o", "part"],
            "--env-file",
        ),
        // A single-file bundle removes the parts of an older split bundle of its name.
        (&["--env-file", "part.002", "-o", "part"], "--env-file"),
    ];
    for (args, what) in cases {
        let out = bundle_without_engine(d, args);
        refused_before_engine(&out, what);
        assert!(
            stderr(&out).contains("never writes over"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            snapshot(d),
            before,
            "offpack bundle {args:?} changed nothing"
        );
    }
    assert!(
        std::fs::symlink_metadata(d.join("link.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn bundle_never_writes_over_a_special_file() {
    let dir = project_without_engine();
    let d = dir.path();
    ok(Command::new("mkfifo").arg(d.join("fifo")));
    let out = bundle_without_engine(d, &["-o", "fifo"]);
    refused_before_engine(&out, "is a FIFO (named pipe), not a regular file");
    assert!(
        std::fs::metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // What `-o /dev/null` would be as root: a device node of its own, the same as /dev/null's.
    let made = run(Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"]))
    .status
    .success();
    if made {
        let out = bundle_without_engine(d, &["-o", "null"]);
        refused_before_engine(&out, "is a character device, not a regular file");
        assert!(
            std::fs::metadata(d.join("null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    } else {
        let uid = stdout(&ok(Command::new("id").arg("-u")));
        assert_ne!(
            uid.trim(),
            "0",
            "mknod failed although the test runs as root"
        );
    }

    std::fs::create_dir(d.join("b.offpack.sha256")).unwrap();
    let out = bundle_without_engine(d, &["-o", "b.offpack"]);
    refused_before_engine(&out, "b.offpack.sha256, the checksum file of the output");
    assert!(stderr(&out).contains("a directory"), "{}", stderr(&out));

    let out = bundle_without_engine(d, &["-o", "app"]);
    refused_before_engine(&out, "is a directory, not a regular file");

    // A FIFO among the parts is refused without being opened (that would block).
    std::fs::write(d.join("s.offpack.001"), "not a part").unwrap();
    ok(Command::new("mkfifo").arg(d.join("s.offpack.002")));
    let out = bundle_without_engine(d, &["-o", "s.offpack"]);
    refused_before_engine(
        &out,
        "s.offpack.002, part 2 of the split output s.offpack, is a FIFO",
    );

    // A link planted in place of the lock file is never followed (the lock file is truncated).
    std::os::unix::fs::symlink("compose.yaml", d.join(".c.offpack.offpack-lock")).unwrap();
    let compose = std::fs::read(d.join("compose.yaml")).unwrap();
    let out = bundle_without_engine(d, &["-o", "c.offpack"]);
    refused_before_engine(&out, ".c.offpack.offpack-lock, offpack's lock file");
    assert_eq!(std::fs::read(d.join("compose.yaml")).unwrap(), compose);
}

#[test]
fn replacing_a_file_that_is_not_a_bundle_needs_force() {
    let dir = project_without_engine();
    let d = dir.path();
    std::fs::write(d.join("notes.txt"), "my notes\n").unwrap();
    let out = bundle_without_engine(d, &["-o", "notes.txt"]);
    refused_before_engine(&out, "--force");
    assert!(stderr(&out).contains("notes.txt"), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("notes.txt")).unwrap(), b"my notes\n");

    std::fs::write(d.join("b.offpack.sha256"), "my other notes\n").unwrap();
    let out = bundle_without_engine(d, &["-o", "b.offpack"]);
    refused_before_engine(&out, "--force");
    assert!(
        stderr(&out).contains("b.offpack.sha256"),
        "{}",
        stderr(&out)
    );

    // With --force the run gets past the check, to the engine (absent here).
    let out = bundle_without_engine(d, &["--force", "-o", "notes.txt"]);
    assert!(stderr(&out).contains("Docker Engine"), "{}", stderr(&out));
    // --force never covers the run's own inputs.
    let out = bundle_without_engine(d, &["--force", "-o", "compose.yaml"]);
    refused_before_engine(&out, "never writes over");
}

#[test]
fn a_bundle_name_with_a_line_break_is_refused() {
    let dir = project_without_engine();
    let out = bundle_without_engine(dir.path(), &["-o", "a\nb.offpack"]);
    refused_before_engine(&out, "line break");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 10);
}

#[test]
fn keygen_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(offpack(d).args(["keygen", "-o", "k"]));
    let key = std::fs::read(d.join("k.key")).unwrap();
    let out = run(offpack(d).args(["keygen", "-o", "k"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("k.key exists already"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(d.join("k.key")).unwrap(), key);

    // Only the public half is there (a dangling link): no new secret key is left behind either.
    std::os::unix::fs::symlink("nowhere", d.join("j.pub")).unwrap();
    let out = run(offpack(d).args(["keygen", "-o", "j"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("j.pub exists already"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::symlink_metadata(d.join("j.key")).is_err());
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["j.pub", "k.key", "k.pub"],
        "no temporary files left"
    );
}

/// A project whose one service runs `image`, built here from `size` random bytes.
fn tiny_image_project(image: &str, size: usize) -> tempfile::TempDir {
    build_random_image(image, &[size]);
    project_running("app", image)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn replacing_an_earlier_bundle_needs_no_force_and_force_replaces_a_file() {
    require_engine();
    let image = "offpack-test-a/replace:1";
    let project = tiny_image_project(image, 100_000);
    let d = project.path();
    ok(offpack(d).args(["bundle", "-o", "b.offpack"]));
    ok(offpack(d).args(["bundle", "--level", "5", "-o", "b.offpack"]));
    ok(offpack(d).args(["verify", "b.offpack"]));
    // A split bundle replaces the single file, and back.
    ok(offpack(d).args(["bundle", "--split", "40000", "-o", "b.offpack"]));
    ok(offpack(d).args(["verify", "b.offpack.001"]));
    ok(offpack(d).args(["bundle", "-o", "b.offpack"]));
    ok(offpack(d).args(["verify", "b.offpack"]));
    std::fs::write(d.join("notes.txt"), "my notes\n").unwrap();
    ok(offpack(d).args(["bundle", "--force", "-o", "notes.txt"]));
    ok(offpack(d).args(["verify", "notes.txt"]));
    assert_eq!(
        names_in(d),
        [
            "b.offpack",
            "b.offpack.sha256",
            "compose.yaml",
            "notes.txt",
            "notes.txt.sha256"
        ],
        "no lock or temporary file is left"
    );
    ok(Command::new("docker").args(["rmi", image]));
}

#[test]
fn concurrent_runs_to_one_target_leave_a_matching_pair() {
    require_engine();
    let image = "offpack-test-a/concurrent:1";
    let project = tiny_image_project(image, 2_000_000);
    let d = project.path();
    let mut refused = 0;
    for round in 0..25 {
        // Two project names: two bundles that differ, so that a bundle with the other run's
        // sidecar fails verify.
        let start = |name: &str| {
            offpack(d)
                .args(["bundle", "-p", name, "-o", "b.offpack"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (first, second) = (start("offpack-test-a-one"), start("offpack-test-a-two"));
        let outs = [
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        ];
        let mut succeeded = 0;
        for out in &outs {
            if out.status.success() {
                succeeded += 1;
            } else {
                refused += 1;
                assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
                assert!(
                    stderr(out).contains("another offpack run (pid")
                        && stderr(out).contains("is writing the bundle b.offpack"),
                    "round {round}: {}",
                    stderr(out)
                );
            }
        }
        assert!(succeeded >= 1, "round {round}: one run wrote the bundle");
        let out = ok(offpack(d).args(["--json", "verify", "b.offpack"]));
        let report = stdout(&out);
        assert!(
            report.contains("b.offpack.sha256"),
            "the sidecar was checked: {report}"
        );
        assert_eq!(
            names_in(d),
            ["b.offpack", "b.offpack.sha256", "compose.yaml"],
            "round {round}"
        );
    }
    eprintln!("{refused} of 25 second runs found the target busy");
    assert!(
        refused > 0,
        "the runs never overlapped: the lock was not exercised"
    );
    ok(Command::new("docker").args(["rmi", image]));
}

/// Waits until the running `child` has a temporary bundle file in `dir`; false if it never does.
fn wait_for_partial(dir: &Path, child: &mut std::process::Child) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none() {
        if names_in(dir).iter().any(|n| n.ends_with(".partial")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn leftovers_of_killed_runs_are_removed_and_a_live_writers_are_kept() {
    require_engine();
    let image = "offpack-test-a/leftovers:1";
    let project = tiny_image_project(image, 40_000_000);
    let d = project.path();
    // A run killed while it writes leaves its temporary file and its lock file.
    let mut child = offpack(d)
        .args(["bundle", "-o", "b.offpack"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = wait_for_partial(d, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed, "the run was never writing");
    let left = names_in(d);
    assert!(left.iter().any(|n| n.ends_with(".partial")), "{left:?}");
    assert!(
        left.contains(&".b.offpack.offpack-lock".to_string()),
        "{left:?}"
    );
    let out = ok(offpack(d).args(["bundle", "-o", "b.offpack"]));
    assert!(
        stderr(&out).contains("removed 1 temporary file(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        names_in(d),
        ["b.offpack", "b.offpack.sha256", "compose.yaml"]
    );

    // What a writer killed mid-write leaves: its temporary bundle and sidecar and its lock file
    // (unlocked: the lock went with the process). Another target's temporary file stays.
    let dead = [
        ".b.offpack.Ab12Cd.partial",
        ".b.offpack.Zz99Yy.sha256-partial",
        ".b.offpack.offpack-lock",
    ];
    for name in dead {
        std::fs::write(d.join(name), "half a bundle").unwrap();
    }
    std::fs::write(d.join(".b.offpack.x.Ab12Cd.partial"), "another target's").unwrap();

    // A live writer of the same target holds the lock (here `flock`, the same kind of lock):
    // the run fails at once and leaves its files alone.
    let signals = tempfile::tempdir().unwrap();
    let ready = signals.path().join("ready");
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(d.join(".b.offpack.offpack-lock"))
        .arg("-c")
        .arg(format!("touch '{}' && sleep 30", ready.display()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run(offpack(d).args(["bundle", "-o", "b.offpack"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("another offpack run is writing the bundle b.offpack"));
    for name in dead {
        assert!(d.join(name).exists(), "{name} of a live writer is kept");
    }
    holder.kill().unwrap();
    holder.wait().unwrap();

    let out = ok(offpack(d).args(["bundle", "-o", "b.offpack"]));
    assert!(
        stderr(&out).contains("removed 2 temporary file(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        names_in(d),
        [
            ".b.offpack.x.Ab12Cd.partial",
            "b.offpack",
            "b.offpack.sha256",
            "compose.yaml"
        ]
    );
    ok(offpack(d).args(["verify", "b.offpack"]));
    ok(Command::new("docker").args(["rmi", image]));
}

#[test]
fn a_failed_sidecar_write_says_the_bundle_is_complete() {
    require_engine();
    let image = "offpack-test-a/sidecar-fails:1";
    let project = tiny_image_project(image, 40_000_000);
    let d = project.path();
    let mut child = offpack(d)
        .args(["bundle", "-o", "b.offpack"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the bundle is being written (its checks passed), a directory takes the sidecar's place.
    let writing = wait_for_partial(d, &mut child);
    if writing {
        std::fs::create_dir(d.join("b.offpack.sha256")).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        writing,
        "the bundle was never being written: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the bundle b.offpack is complete and in place, but its checksum file b.offpack.sha256 could not be written"),
        "{err}"
    );
    std::fs::remove_dir(d.join("b.offpack.sha256")).unwrap();
    ok(offpack(d).args(["verify", "b.offpack"]));
    // The lines the message gives make a checksum file that sha256sum -c accepts.
    let line = err
        .lines()
        .find(|l| l.ends_with("  b.offpack"))
        .unwrap_or_else(|| panic!("no sha256sum line in: {err}"));
    std::fs::write(d.join("b.offpack.sha256"), format!("{line}\n")).unwrap();
    ok(Command::new("sha256sum")
        .args(["-c", "b.offpack.sha256"])
        .current_dir(d));
    ok(offpack(d).args(["verify", "b.offpack"]));
    ok(Command::new("docker").args(["rmi", image]));
}
