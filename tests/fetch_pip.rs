//! `fetch::pip::resolve_in_image` against the real engine and the real PyPI (through the
//! workplace's proxy, whose CA the test images trust): pip runs in a container of
//! `python:3.11-slim` (made by `scripts/test-env up`), so the wheels are the image's
//! interpreter's and platform's; an sdist is built into a wheel there; `--hash` pins are pip's to
//! enforce; a second resolution of the same inputs starts no container.
//!
//! The tests run one at a time (a process-wide lock), so that the count of containers this
//! process started tells what one call did; each holds `build_network()` (no network cut of
//! another test overlaps a step that needs PyPI).

mod common;

use offpack::engine::{Engine, containers_started};
use offpack::fetch::cache::{FetchedPackage, PackageCache};
use offpack::fetch::pip::{PipJob, resolve_in_image};
use offpack::reporter::SilentReporter;
use sha2::{Digest as _, Sha256};

const IMAGE: &str = "python:3.11-slim";
/// From PyPI's simple index (`/simple/bottle/`) when this test was written.
const BOTTLE_WHEEL_SHA256: &str =
    "045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e";
const BOTTLE_SDIST_SHA256: &str =
    "787e78327e12b227938de02248333d788cfe45987edca735f8f88e03472c3f47";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn engine() -> Engine {
    common::engine_with_image(IMAGE).await
}

/// What every test here starts from: alone (they share the engine's pip runs), with the build
/// network, and an empty package cache. Fields drop in order: the cache before its directory,
/// the locks last.
struct Setup {
    engine: Engine,
    cache: PackageCache,
    _dir: tempfile::TempDir,
    _network: common::offline::NetworkUse,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup() -> Setup {
    let serial = SERIAL.lock().await;
    let network = common::offline::build_network();
    let engine = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();
    Setup {
        engine,
        cache,
        _dir: dir,
        _network: network,
        _serial: serial,
    }
}

fn job(files: &[(&str, &str)], roots: &[&str], label: &str) -> PipJob {
    PipJob {
        image: IMAGE.into(),
        platform: "linux/amd64".into(),
        files: files
            .iter()
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect(),
        root_files: roots.iter().map(|r| r.to_string()).collect(),
        constraint_files: Vec::new(),
        packages: Vec::new(),
        no_deps: false,
        label: label.into(),
    }
}

/// Every file is in the cache with the digest and size its package says.
fn assert_in_cache(packages: &[FetchedPackage]) {
    for p in packages {
        let bytes = std::fs::read(&p.path).expect("the wheel is in the cache");
        assert_eq!(hex::encode(Sha256::digest(&bytes)), p.package.digest.hex());
        assert_eq!(bytes.len() as u64, p.package.size);
        assert_eq!(p.package.ecosystem, "pypi");
        assert!(
            p.package.filename.ends_with(".whl"),
            "{}",
            p.package.filename
        );
    }
}

/// No container this test process started with `run_to_completion` is left, running or not
/// (other processes on this engine, e.g. a bundle, may have theirs meanwhile).
fn assert_no_container_left() {
    let out = common::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={}", offpack::engine::RUN_LABEL),
        "--filter",
        &format!(
            "label={}={}",
            offpack::engine::RUN_PID_LABEL,
            std::process::id()
        ),
    ]);
    assert!(
        common::stdout(&out).trim().is_empty(),
        "containers were left behind"
    );
}

fn find<'a>(packages: &'a [FetchedPackage], name: &str) -> &'a FetchedPackage {
    packages
        .iter()
        .find(|p| p.package.name.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no {name} among {packages:#?}"))
}

#[tokio::test]
async fn pip_resolves_wheels_for_the_image_and_a_second_call_starts_no_container() {
    let Setup { engine, cache, .. } = &setup().await;
    // A root file that includes another, relative to its own directory, as pip reads them.
    let job = job(
        &[
            (
                "requirements/prod.txt",
                "-r base.txt\nMarkupSafe==2.1.5\ndocopt==0.6.2\n",
            ),
            ("requirements/base.txt", "bottle==0.13.4\n"),
        ],
        &["requirements/prod.txt"],
        "service web, requirements/prod.txt",
    );
    let before = containers_started();
    let packages = resolve_in_image(engine, &job, cache, &SilentReporter::default())
        .await
        .expect("pip resolves");
    assert_eq!(containers_started(), before + 1);
    assert_eq!(packages.len(), 3, "{packages:#?}");
    assert_in_cache(&packages);

    // A pure wheel, as PyPI has it.
    let bottle = find(&packages, "bottle");
    assert_eq!(bottle.package.version, "0.13.4");
    assert_eq!(bottle.package.digest.hex(), BOTTLE_WHEEL_SHA256);
    assert_eq!(bottle.package.platform, None);
    // A platform wheel for the image's CPython 3.11 on Linux.
    let markupsafe = find(&packages, "MarkupSafe");
    let filename = &markupsafe.package.filename;
    assert!(filename.contains("-2.1.5-cp311-cp311-"), "{filename}");
    assert!(filename.contains("manylinux"), "{filename}");
    if cfg!(target_arch = "x86_64") {
        assert!(filename.ends_with("x86_64.whl"), "{filename}");
    }
    let platform = markupsafe
        .package
        .platform
        .as_deref()
        .expect("a platform wheel");
    assert!(
        platform.starts_with("linux/amd64 cp311-cp311-manylinux"),
        "{platform}"
    );
    // An sdist only on PyPI: built into a pure wheel in the container.
    let docopt = find(&packages, "docopt");
    assert_eq!(docopt.package.version, "0.6.2");
    let filename = &docopt.package.filename;
    assert!(
        filename.starts_with("docopt-0.6.2-") && filename.ends_with("-none-any.whl"),
        "{filename}"
    );
    assert_no_container_left();

    // The same inputs again: the cached result, no container.
    let again = resolve_in_image(engine, &job, cache, &SilentReporter::default())
        .await
        .expect("cached");
    assert_eq!(containers_started(), before + 1, "a second call ran pip");
    assert_eq!(again, packages);

    // A changed file is another resolution.
    let mut changed = job.clone();
    changed.files[1].1 = b"bottle==0.13.4\n# a comment\n".to_vec();
    let third = resolve_in_image(engine, &changed, cache, &SilentReporter::default())
        .await
        .expect("resolves again");
    assert_eq!(containers_started(), before + 2);
    // The same wheels (docopt's is built again, maybe with other bytes).
    let names = |ps: &[FetchedPackage]| {
        ps.iter()
            .map(|p| (p.package.name.clone(), p.package.version.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&third), names(&packages));
    assert_eq!(
        find(&third, "MarkupSafe").package.digest,
        markupsafe.package.digest
    );
}

#[tokio::test]
async fn hash_pins_are_enforced() {
    let Setup { engine, cache, .. } = &setup().await;

    let pinned = format!(
        "bottle==0.13.4 \\\n    --hash=sha256:{BOTTLE_WHEEL_SHA256} \\\n    --hash=sha256:{BOTTLE_SDIST_SHA256}\n"
    );
    let good = job(
        &[("requirements-hashed.txt", &pinned)],
        &["requirements-hashed.txt"],
        "service api, requirements-hashed.txt",
    );
    let packages = resolve_in_image(engine, &good, cache, &SilentReporter::default())
        .await
        .expect("the pinned hashes match");
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].package.digest.hex(), BOTTLE_WHEEL_SHA256);
    assert_in_cache(&packages);

    let wrong = format!("bottle==0.13.4 --hash=sha256:{}\n", "0".repeat(64));
    let bad = job(
        &[("requirements-hashed.txt", &wrong)],
        &["requirements-hashed.txt"],
        "service api, requirements-hashed.txt",
    );
    let err = resolve_in_image(engine, &bad, cache, &SilentReporter::default())
        .await
        .expect_err("a wrong hash fails")
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("service api, requirements-hashed.txt"),
        "{err}"
    );
    assert!(err.contains("bottle==0.13.4"), "{err}");
    assert!(err.contains("HASHES"), "{err}");
    assert_no_container_left();
}

#[tokio::test]
async fn a_failure_names_the_service_and_quotes_pip() {
    let Setup { engine, cache, .. } = &setup().await;
    let job = job(
        &[("requirements.txt", "bottle==9.9\n")],
        &["requirements.txt"],
        "service worker, requirements.txt",
    );
    let err = resolve_in_image(engine, &job, cache, &SilentReporter::default())
        .await
        .expect_err("no such version")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("service worker, requirements.txt"), "{err}");
    assert!(
        err.contains("No matching distribution found for bottle==9.9"),
        "{err}"
    );
    // Pip's tail, not its whole log.
    assert!(err.lines().count() <= 17, "{err}");
    assert_no_container_left();
    // Nothing was recorded: the failure is not cached.
    let blobs = std::fs::read_dir(cache.root().join("packages/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn positional_requirements_need_no_file_and_an_unknown_image_is_named() {
    let Setup { engine, cache, .. } = &setup().await;
    let mut positional = job(&[], &[], "service cli, Dockerfile:4");
    positional.packages = vec!["bottle==0.13.4".into()];
    let packages = resolve_in_image(engine, &positional, cache, &SilentReporter::default())
        .await
        .expect("resolves");
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].package.name, "bottle");

    let mut absent = positional.clone();
    absent.image = "offpack-h4-test/absent:none".into();
    let err = resolve_in_image(engine, &absent, cache, &SilentReporter::default())
        .await
        .expect_err("no such image")
        .to_string();
    assert!(err.contains("offpack-h4-test/absent:none"), "{err}");
    assert!(err.contains("service cli, Dockerfile:4"), "{err}");
}
