//! Test context for running the real `offpack` binary against the real engine.
#![allow(dead_code)]

pub mod containerd;
pub mod npm_registry;
pub mod offline;
pub mod registry_images;
pub mod second_engine;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `offpack` with an isolated environment: no inherited compose variables, the given working dir,
/// and offpack's own state under the build's temporary directory, never the user's: the package
/// cache (`OFFPACK_CACHE`, shared by the tests and kept between runs, as a user's is) and the far
/// side's package store (`OFFPACK_HOME`, one per test process; a test may set its own).
pub fn offpack(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_offpack"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    cmd.current_dir(dir)
        .env("OFFPACK_CACHE", tmp.join("offpack-cache"))
        .env(
            "OFFPACK_HOME",
            tmp.join(format!("offpack-home-{}", std::process::id())),
        );
    for var in [
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
        "COMPOSE_PATH_SEPARATOR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command and returns its output, printing it so a failing test shows what happened.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    eprintln!(
        "$ {cmd:?}\n-> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "command failed: {cmd:?}");
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The docker CLI, for the test's own checks of the engine's state.
pub fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

/// Whether the engine has an image under `reference`.
pub fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn image_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds `name` FROM scratch with one layer of random bytes per entry of `layer_sizes`: the bytes
/// do not compress, so bundling and loading it take time in proportion to its size, and no other
/// test's image shares its layers.
pub fn build_random_image(name: &str, layer_sizes: &[usize]) {
    let ctx = tempfile::tempdir().expect("tempdir");
    let mut dockerfile = String::from("FROM scratch\n");
    for (n, size) in layer_sizes.iter().enumerate() {
        let file = format!("blob{n}.bin");
        ok(Command::new("head")
            .args(["-c", &size.to_string(), "/dev/urandom"])
            .stdout(std::fs::File::create(ctx.path().join(&file)).expect("create blob")));
        dockerfile.push_str(&format!("COPY {file} /{file}\n"));
    }
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let build = || {
        run(Command::new("docker")
            .args(["build", "-q", "-t", name])
            .arg(ctx.path()))
    };
    let mut out = build();
    // Seen once here with two of these builds at once (engine 20.10, classic builder): the
    // step's commit succeeded, then the builder answered `unable to find image sha256:…` for
    // it. The same build again succeeds; anything else is a failure.
    if !out.status.success() && stderr(&out).contains("unable to find image") {
        out = build();
    }
    assert!(
        out.status.success(),
        "docker build of {name} failed: {}",
        stderr(&out)
    );
}

/// A compose project in a temporary directory whose one service `service` runs `image`.
pub fn project_running(service: &str, image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n  {service}:\n    image: {image}\n"),
    )
    .expect("write compose.yaml");
    dir
}

/// The engine must answer; tests that need it never skip silently.
pub fn require_engine() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "these tests need a running Docker Engine; run `scripts/test-env up` (the README's test command does)"
        ),
    }
}

/// The compose CLI of this machine (`docker compose` where installed, else `docker-compose`).
pub fn compose(dir: &Path, project: &str) -> Command {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut cmd = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    cmd.current_dir(dir).args(["-p", project]);
    cmd
}

/// Copies a directory tree (the example project) into `dest`.
pub fn copy_tree(src: &Path, dest: &Path) {
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.expect("walk the example");
        let relative = entry.path().strip_prefix(src).expect("inside src");
        let target = dest.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Polls `url` until it answers 2xx or `seconds` pass; returns the body.
pub fn http_get(url: &str, seconds: u64) -> Option<String> {
    for _ in 0..seconds * 2 {
        if let Ok(out) = Command::new("curl")
            .args(["-fsS", "--max-time", "2", url])
            .output()
            && out.status.success()
        {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    None
}

/// `offpack` with an empty environment (only `PATH`), so that what a corpus project's plan says
/// depends on its files alone.
pub fn offpack_isolated(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_offpack"));
    cmd.current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// The projects of `tests/plan-corpus`, sorted by name.
pub fn plan_corpus() -> Vec<(String, PathBuf)> {
    let root = repo_root().join("tests/plan-corpus");
    let mut projects: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    projects.sort();
    projects
}

/// The engine, for a test that runs containers of `image` (a test base image of
/// `scripts/test-env`); fails the test when either is missing.
pub async fn engine_with_image(image: &str) -> offpack::engine::Engine {
    require_engine();
    assert!(
        image_exists(image),
        "{image} is missing: run `scripts/test-env up`"
    );
    offpack::engine::Engine::connect()
        .await
        .expect("connect to the engine")
}

/// Flips one byte in the middle of the compressed data of `bundle`'s largest entry (a layer)
/// and returns that entry of the bundle's index.
pub fn damage_largest_entry(bundle: &Path) -> serde_json::Value {
    let mut bytes = std::fs::read(bundle).expect("read bundle");
    let index = offpack_bundle::testkit::index_of(&bytes).expect("bundle index");
    let largest = index["entries"]
        .as_array()
        .expect("index entries")
        .iter()
        .max_by_key(|e| e["compressed_len"].as_u64().unwrap_or(0))
        .expect("an entry")
        .clone();
    let middle =
        largest["offset"].as_u64().unwrap() + largest["compressed_len"].as_u64().unwrap() / 2;
    bytes[middle as usize] ^= 0x55;
    std::fs::write(bundle, &bytes).expect("write bundle");
    largest
}

/// The user of test-env's htpasswd registries on 5001 and 5002.
pub const REGISTRY_USER: &str = "offpack";

/// A Docker config directory holding the login `offpack:<password>` for `registry` (the user of
/// test-env's htpasswd registries on 5001 and 5002), for `DOCKER_CONFIG`.
pub fn docker_config(registry: &str, password: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    dir
}
