//! The crash test: `bundle`, `load` and `rebuild` are killed with SIGKILL at random moments, many
//! times over, and after every kill the invariants of docs/reliability.md must hold:
//!
//! - nothing that is not a complete bundle that passes `verify` ever sits at the target path, and a
//!   checksum file beside it always matches it;
//! - the engine never holds a name of the bundle that points to another image, and no name
//!   appears or moves once the killed load is gone (a kill between two of offpack's tag calls can
//!   leave an image with some of its names: the Engine API names one at a time);
//! - a service's tag points to its old image or to a complete new one, never to anything else;
//! - a rerun always finishes.
//!
//! `OFFPACK_CRASH_RUNS` (default 50) sets the kills per command and `OFFPACK_CRASH_SECONDS`
//! (default 240) bounds each command's share of the time, so CI stays within its budget; the run
//! prints how many kills it made. `OFFPACK_CRASH_SEED` repeats a run's kill moments.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Every image and tag the tests make starts with this. Each test has its own project and images:
/// the tests run in parallel, and the load test removes its images from the engine.
const PREFIX: &str = "offpack-crash";

/// A kill moment generator (xorshift): no randomness crate for one test, and a printed seed makes
/// a failing sequence repeatable.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::env::var("OFFPACK_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("crash test seed: OFFPACK_CRASH_SEED={seed}");
        Moments(seed)
    }

    /// A moment in `[0, max]`.
    fn next(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        max.mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A project `offpack-crash-NAME` of two services: `data` runs an image of three incompressible
/// 8 MB layers made from scratch, `app` is built on it, so that exporting and loading take long
/// enough to be cut at many points.
fn crash_project(name: &str) -> tempfile::TempDir {
    let data_image = format!("{PREFIX}/{name}-data:1");
    if !image_exists(&data_image) {
        build_random_image(&data_image, &[8_000_000; 3]);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(
        dir.path().join("app/Dockerfile"),
        format!("FROM {data_image}\nCOPY version.txt /version.txt\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("app/version.txt"), "0\n").unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "name: {PREFIX}-{name}\nservices:\n  data:\n    image: {data_image}\n  app:\n    build: ./app\n"
        ),
    )
    .unwrap();
    dir
}

/// Runs `offpack ARGS` to its end; returns how long it took.
fn timed_run(dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    ok(offpack(dir).args(args));
    started.elapsed()
}

/// Starts `offpack ARGS` and kills it with SIGKILL after `after` (if it still runs then).
/// Returns whether the kill came before the command ended on its own.
fn kill_after(dir: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = offpack(dir)
        .args(args)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + after;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "offpack {} failed without being killed ({status}); a rerun must always finish",
                args.join(" ")
            );
            return false;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Files in `dir` other than the project's own.
fn litter(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// A bundle at `target`, if there is one, passes `verify` (which checks the checksum file beside
/// it), and a checksum file never stands there without its bundle.
fn assert_target_is_whole(dir: &Path, target: &Path, run: usize) {
    let sidecar = PathBuf::from(format!("{}.sha256", target.display()));
    if !target.exists() {
        assert!(
            !sidecar.exists(),
            "run {run}: a checksum file without its bundle"
        );
        return;
    }
    let out = run_quiet(offpack(dir).arg("verify").arg(target));
    assert!(
        out.status.success(),
        "run {run}: what sits at {} after a kill does not verify:\n{}",
        target.display(),
        stderr(&out)
    );
}

/// A file's content in an image (which has no shell to `cat` it with).
fn file_in_image(image: &str, path: &str) -> String {
    let out = ok(Command::new("docker").args(["create", image, "none"]));
    let container = stdout(&out).trim().to_owned();
    let dest = tempfile::tempdir().unwrap();
    let copied = run_quiet(
        Command::new("docker")
            .args(["cp", &format!("{container}:{path}")])
            .arg(dest.path().join("file")),
    );
    let _ = Command::new("docker").args(["rm", &container]).output();
    assert!(copied.status.success(), "cannot copy {path} out of {image}");
    std::fs::read_to_string(dest.path().join("file")).unwrap()
}

/// Like `common::run`, without echoing the output of a command that passed (there are hundreds).
fn run_quiet(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!("$ {cmd:?} -> {}\n{}", out.status, stderr(&out));
    }
    out
}

#[test]
fn killed_bundle_never_leaves_a_broken_bundle_at_the_target() {
    require_engine();
    let project = crash_project("bundle");
    let dir = project.path();
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("crash.offpack");
    let target_arg = target.to_str().unwrap();
    let runs = env_number("OFFPACK_CRASH_RUNS", 50) as usize;
    let budget = Duration::from_secs(env_number("OFFPACK_CRASH_SECONDS", 240));
    let mut moments = Moments::new();

    // The first run builds the app's image; the second is the length a kill is drawn within.
    timed_run(dir, &["bundle", "--quiet", "-o", target_arg]);
    let full = timed_run(dir, &["bundle", "--quiet", "-o", target_arg]);
    std::fs::remove_file(&target).unwrap();
    std::fs::remove_file(format!("{target_arg}.sha256")).unwrap();

    let started = Instant::now();
    let mut kills = 0;
    let mut done = 0;
    while done < runs && started.elapsed() < budget {
        if kill_after(dir, &["bundle", "-o", target_arg], moments.next(full)) {
            kills += 1;
        }
        assert_target_is_whole(dir, &target, done);
        done += 1;
    }
    eprintln!("bundle: {done} runs, {kills} killed mid-way, full run {full:?}");
    assert!(
        done >= runs.min(10),
        "only {done} runs fit in {budget:?}: raise OFFPACK_CRASH_SECONDS"
    );

    // A rerun finishes, verifies, and takes every leftover of the killed runs with it.
    ok(offpack(dir).args(["bundle", "--quiet", "-o", target_arg]));
    ok(offpack(dir).arg("verify").arg(&target));
    assert_eq!(
        litter(out_dir.path(), &["crash.offpack", "crash.offpack.sha256"]),
        Vec::<String>::new(),
        "a finished run leaves no temporary files of the killed runs behind"
    );
}

/// The names a bundle gives each image, by image ID.
fn bundle_names(dir: &Path, bundle: &Path) -> BTreeMap<String, Vec<String>> {
    let out = ok(offpack(dir).args(["inspect", "--json"]).arg(bundle));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            let names = image["refs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str())
                .filter(|r| !r.contains('@'))
                .map(str::to_owned)
                .collect();
            (image["id"].as_str().unwrap().to_owned(), names)
        })
        .collect()
}

/// Removes the bundle's images from the engine: children first, so the IDs go too.
fn remove_images(images: &BTreeMap<String, Vec<String>>) {
    for _ in 0..2 {
        for (id, names) in images {
            for name in names {
                let _ = Command::new("docker").args(["rmi", name]).output();
            }
            let _ = Command::new("docker").args(["rmi", id]).output();
        }
    }
}

/// The bundle's names the engine holds now, with the image each points to.
fn names_in_engine(images: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    images
        .values()
        .flatten()
        .filter_map(|name| image_id(name).map(|id| (name.clone(), id)))
        .collect()
}

/// Every name of the bundle in the engine points to the bundled image, and once the killed run is
/// gone no name appears or moves: the engine, which goes on with a load whose client died, names
/// nothing (offpack names the images itself, after the engine's load returned).
fn assert_names_consistent(images: &BTreeMap<String, Vec<String>>, run: usize) {
    let after_kill = names_in_engine(images);
    for (id, names) in images {
        for name in names {
            if let Some(now) = after_kill.get(name) {
                assert_eq!(
                    now, id,
                    "run {run}: {name} points to another image after a killed load"
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        names_in_engine(images),
        after_kill,
        "run {run}: names changed after the load was killed"
    );
}

#[test]
fn killed_load_leaves_consistent_names_and_a_rerun_finishes() {
    require_engine();
    let project = crash_project("load");
    let dir = project.path();
    let out_dir = tempfile::tempdir().unwrap();
    let bundle = out_dir.path().join("load.offpack");
    let bundle_arg = bundle.to_str().unwrap();
    ok(offpack(dir).args(["bundle", "--quiet", "-o", bundle_arg]));
    let images = bundle_names(dir, &bundle);
    let runs = env_number("OFFPACK_CRASH_RUNS", 50) as usize;
    let budget = Duration::from_secs(env_number("OFFPACK_CRASH_SECONDS", 240));
    let mut moments = Moments::new();

    remove_images(&images);
    let full = timed_run(dir, &["load", "--quiet", bundle_arg]);

    let started = Instant::now();
    let mut kills = 0;
    let mut done = 0;
    while done < runs && started.elapsed() < budget {
        remove_images(&images);
        if kill_after(dir, &["load", bundle_arg], moments.next(full)) {
            kills += 1;
        }
        assert_names_consistent(&images, done);
        // The rerun finishes the load.
        let out = run_quiet(offpack(dir).args(["load", "--quiet", bundle_arg]));
        assert!(
            out.status.success(),
            "run {done}: the load after a kill failed"
        );
        for (id, names) in &images {
            for name in names {
                assert_eq!(
                    image_id(name).as_deref(),
                    Some(id.as_str()),
                    "run {done}: the rerun did not give {name} back"
                );
            }
        }
        done += 1;
    }
    eprintln!("load: {done} runs, {kills} killed mid-way, full run {full:?}");
    assert!(
        done >= runs.min(10),
        "only {done} runs fit in {budget:?}: raise OFFPACK_CRASH_SECONDS"
    );
}

#[test]
fn killed_rebuild_leaves_the_old_image_or_a_whole_new_one() {
    require_engine();
    let project = crash_project("rebuild");
    let dir = project.path();
    let runs = env_number("OFFPACK_CRASH_RUNS", 50) as usize;
    let budget = Duration::from_secs(env_number("OFFPACK_CRASH_SECONDS", 240));
    let mut moments = Moments::new();
    let version_file = dir.join("app/version.txt");

    ok(offpack(dir).args(["rebuild", "--quiet", "app"]));
    let out = ok(offpack(dir).args(["rebuild", "--quiet", "--json", "app"]));
    let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tags: Vec<String> = rebuilt[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert!(!tags.is_empty(), "rebuild names its tags: {rebuilt}");

    // A change, so that the build has a step to run; its length is what a kill is drawn within.
    std::fs::write(&version_file, "timing\n").unwrap();
    let full = timed_run(dir, &["rebuild", "--quiet", "app"]);
    let started = Instant::now();
    let mut kills = 0;
    let mut done = 0;
    while done < runs && started.elapsed() < budget {
        let before: Vec<String> = tags
            .iter()
            .map(|t| image_id(t).expect("the app's image is tagged"))
            .collect();
        std::fs::write(&version_file, format!("{done}\n")).unwrap();
        if kill_after(dir, &["rebuild", "app"], moments.next(full)) {
            kills += 1;
        }
        for (tag, before) in tags.iter().zip(&before) {
            let now = image_id(tag).expect("a killed rebuild never removes the service's tag");
            if &now != before {
                assert_eq!(
                    file_in_image(&now, "/version.txt"),
                    format!("{done}\n"),
                    "run {done}: {tag} moved to an image without the change"
                );
            }
        }
        ok(offpack(dir).args(["rebuild", "--quiet", "app"]));
        let after = image_id(&tags[0]).unwrap();
        for tag in &tags {
            assert_eq!(
                image_id(tag).as_deref(),
                Some(after.as_str()),
                "run {done}: after the rerun every name of the service is its new image"
            );
        }
        assert_eq!(
            file_in_image(&after, "/version.txt"),
            format!("{done}\n"),
            "run {done}: the rerun built the change"
        );
        done += 1;
    }
    eprintln!("rebuild: {done} runs, {kills} killed mid-way, full run {full:?}");
    assert!(
        done >= runs.min(10),
        "only {done} runs fit in {budget:?}: raise OFFPACK_CRASH_SECONDS"
    );
    // Leave no images of this test's project behind but the data image, which later runs reuse.
    for tag in &tags {
        let _ = Command::new("docker").args(["rmi", tag]).output();
    }
}
