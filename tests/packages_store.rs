//! A bundle of packages alone (format 1.3) through the built binary: `verify`, `inspect --json`,
//! and `load` into the package store with no engine, and a tampered package refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, run, stdout};
use offpack_bundle::{BundleWriter, Digest, Manifest, Package, WriteOptions};

/// A stand-in for a wheel: a zip's empty-archive record after a little text.
fn wheel_bytes() -> Vec<u8> {
    let mut bytes = b"offpack test wheel demo_pkg-1.0\n".to_vec();
    bytes.extend_from_slice(b"PK\x05\x06");
    bytes.extend_from_slice(&[0; 18]);
    bytes
}

/// A stand-in for an npm tarball: a gzip header and bytes.
fn tgz_bytes() -> Vec<u8> {
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend_from_slice(b"offpack test tarball tiny-2.0.0");
    bytes
}

/// Bytes zstd stores as they are (xorshift noise), so that a test can find them in the bundle.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x0ff1_ce00_dead_beefu64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn package(ecosystem: &str, name: &str, version: &str, filename: &str, data: &[u8]) -> Package {
    Package {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: version.into(),
        filename: filename.into(),
        digest: Digest::of_bytes(data),
        size: data.len() as u64,
        services: vec!["web".into()],
        integrity: None,
        platform: None,
    }
}

/// Writes a bundle of `files` (package, bytes) and no image.
fn write_package_bundle(path: &Path, files: &[(Package, Vec<u8>)]) {
    let mut w = BundleWriter::create(path, WriteOptions::default()).unwrap();
    let mut manifest = Manifest::new("0.1.0-test", "shop");
    for (package, data) in files {
        w.add_blob_bytes(data).unwrap();
        manifest.packages.push(package.clone());
    }
    w.finish(manifest).unwrap();
}

fn two_packages() -> Vec<(Package, Vec<u8>)> {
    let wheel = wheel_bytes();
    let tgz = tgz_bytes();
    vec![
        (
            package(
                "pypi",
                "Demo_Pkg",
                "1.0",
                "demo_pkg-1.0-py3-none-any.whl",
                &wheel,
            ),
            wheel,
        ),
        (
            Package {
                integrity: Some("sha512-dGVzdA==".into()),
                ..package(
                    "npm",
                    "@offpack-fixture/tiny",
                    "2.0.0",
                    "tiny-2.0.0.tgz",
                    &tgz,
                )
            },
            tgz,
        ),
    ]
}

/// `offpack` with the package store under `home` and an engine address nothing answers at, so
/// that any attempt to reach the engine fails the command.
fn offpack_far_side(dir: &Path, home: &Path) -> Command {
    let mut cmd = common::offpack(dir);
    cmd.env("OFFPACK_HOME", home)
        .env("DOCKER_HOST", "unix:///nonexistent/offpack-h2/docker.sock");
    cmd
}

fn store_index(home: &Path) -> serde_json::Value {
    let path = home.join("packages/index.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

fn blob(home: &Path, data: &[u8]) -> PathBuf {
    home.join("packages")
        .join(Digest::of_bytes(data).blob_path())
}

#[test]
fn a_package_only_bundle_verifies_inspects_and_loads_into_the_store_without_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let files = two_packages();
    write_package_bundle(&dir.path().join("pkgs.offpack"), &files);

    let out = ok(offpack_far_side(dir.path(), &home).args(["verify", "pkgs.offpack"]));
    assert!(
        stdout(&out).contains("OK, 2 blobs for 0 images and 2 packages checked"),
        "{}",
        stdout(&out)
    );

    let out = ok(offpack_far_side(dir.path(), &home).args(["inspect", "--json", "pkgs.offpack"]));
    let inspected: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(inspected["format_version"], offpack_bundle::FORMAT_VERSION);
    assert_eq!(inspected["images"], serde_json::json!([]));
    let packages = inspected["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 2);
    assert_eq!(packages[0]["filename"], "demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(packages[1]["integrity"], "sha512-dGVzdA==");
    let out = ok(offpack_far_side(dir.path(), &home).args(["inspect", "pkgs.offpack"]));
    let text = stdout(&out);
    assert!(
        text.contains("packages: 2 (npm 1, pypi 1)")
            && text.contains("@offpack-fixture/tiny 2.0.0  tiny-2.0.0.tgz"),
        "{text}"
    );

    let out = ok(offpack_far_side(dir.path(), &home).args(["load", "--json", "pkgs.offpack"]));
    let loaded: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(loaded["packages_added"], 2, "{loaded}");
    assert_eq!(loaded["packages_present"], 0, "{loaded}");
    assert_eq!(loaded["loaded"], serde_json::json!([]));

    let index = store_index(&home);
    let listed: Vec<(&str, &str)> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ecosystem"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("npm", "@offpack-fixture/tiny"), ("pypi", "Demo_Pkg")],
        "sorted by ecosystem, then name"
    );
    for (package, data) in &files {
        assert_eq!(std::fs::read(blob(&home, data)).unwrap(), *data);
        assert!(
            index
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["digest"] == package.digest.to_string())
        );
    }

    // Again: everything is there already; the human line says so.
    let out = ok(offpack_far_side(dir.path(), &home).args(["load", "pkgs.offpack"]));
    let text = stdout(&out);
    assert!(
        text.contains("0 packages added to the package store, 2 already there"),
        "{text}"
    );
    assert!(!text.contains("images"), "{text}");
    assert_eq!(store_index(&home), index);
}

#[test]
fn a_tampered_package_is_refused_and_the_store_keeps_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut files = two_packages();
    let big = noise(8192);
    files.push((
        package("pypi", "noise", "3.0", "noise-3.0.tar.gz", &big),
        big.clone(),
    ));
    let path = dir.path().join("t.offpack");
    write_package_bundle(&path, &files);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &big[4000..4064])
        .expect("noise is stored as it is");
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // With the .sha256 beside it, and without (the blob's own digest check then refuses it).
    for with_sidecar in [true, false] {
        if !with_sidecar {
            std::fs::remove_file(dir.path().join("t.offpack.sha256")).unwrap();
        }
        let out = run(offpack_far_side(dir.path(), &home).args(["verify", "t.offpack"]));
        assert_eq!(out.status.code(), Some(1));
        let out = run(offpack_far_side(dir.path(), &home).args(["load", "t.offpack"]));
        assert_eq!(out.status.code(), Some(1), "a failed check");
        let err = common::stderr(&out);
        assert!(
            err.contains("corrupt") || err.contains("sha256"),
            "{with_sidecar}: {err}"
        );
        let index = home.join("packages/index.json");
        assert!(
            !index.exists() || store_index(&home).as_array().unwrap().is_empty(),
            "{with_sidecar}: the index lists nothing of a corrupt bundle"
        );
        assert!(!blob(&home, &big).exists());
    }
}

/// A bundle with an image and a package: the image goes into the engine, then the package into
/// the store (the real engine; the image is this test's own and removed at the end).
#[test]
fn a_bundle_with_an_image_and_packages_loads_both() {
    common::require_engine();
    const TAG: &str = "offpack-h2-packages-store:1";
    let _ = Command::new("docker").args(["rmi", "-f", TAG]).output();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let path = dir.path().join("both.offpack");

    let mut layer = tar::Builder::new(Vec::new());
    let content = noise(2048);
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    layer
        .append_data(&mut h, "offpack-h2-noise.bin", &content[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
    let ld = w.add_blob_bytes(&layer).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/offpack-h2-noise.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]},
        "history": [{"created_by": "offpack packages_store test"}],
    }))
    .unwrap();
    let image = offpack_bundle::testkit::add_image(
        &mut w,
        &[TAG],
        &config,
        vec![offpack_bundle::BlobRef {
            digest: ld,
            size: layer.len() as u64,
        }],
    )
    .unwrap();
    let mut manifest = Manifest::new("0.1.0-test", "shop");
    manifest.images.push(image);
    for (package, data) in two_packages() {
        w.add_blob_bytes(&data).unwrap();
        manifest.packages.push(package);
    }
    w.finish(manifest).unwrap();

    let mut cmd = common::offpack(dir.path());
    cmd.env("OFFPACK_HOME", &home)
        .args(["load", "--json", "both.offpack"]);
    let out = run(&mut cmd);
    let removed = Command::new("docker").args(["rmi", "-f", TAG]).output();
    assert!(out.status.success());
    let loaded: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(loaded["loaded"], serde_json::json!([TAG]), "{loaded}");
    assert_eq!(loaded["packages_added"], 2, "{loaded}");
    assert!(removed.is_ok_and(|o| o.status.success()));
    assert_eq!(store_index(&home).as_array().unwrap().len(), 2);
}
