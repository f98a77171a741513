//! `offpack bundle --from-registry` against Debian's distribution registry on 127.0.0.1:5000
//! (test-env): the registry's manifests, index and compressed layers are carried as they are, so
//! the repository digests stay valid; verify passes and the engine loads the image with its ID,
//! the digest-pinned reference resolving through its pin tag.

mod common;

use std::process::Command;

use common::registry_images::{
    DOCKER_V2, REGISTRY, TwoPlatforms, bundle_from_registry, put_two_platform_index,
};
use common::{
    build_random_image, docker, docker_config, image_id, offpack, ok, require_engine, run, stderr,
};
use offpack_bundle::BundleReader;
use serde_json::Value;

/// Removes the test's images from the engine at the end, even when an assertion failed.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", name]).output();
        }
    }
}

#[test]
fn bundle_from_registry_keeps_registry_digests_and_loads() {
    require_engine();
    let repo = format!("offpack-bfr-{}", std::process::id());
    let tagged = format!("{REGISTRY}/{repo}/app:1");
    let mut cleanup = Cleanup(vec![tagged.clone()]);
    build_random_image(&tagged, &[200_000, 3_000]);
    let id = image_id(&tagged).unwrap();
    ok(Command::new("docker").args(["push", &tagged]));

    // The registry's manifest as docker push wrote it (gzip layers), and a small multi-platform
    // index made by hand over it.
    let path = format!("{repo}/app");
    let TwoPlatforms {
        amd64_digest: m1_digest,
        arm64_digest: m2_digest,
        index_digest,
        ..
    } = put_two_platform_index(&path, "1", "multi");

    // A project that names the image by tag, by digest and through the index, and builds one
    // service (whose image comes from the engine).
    let dir = tempfile::tempdir().unwrap();
    let pinned = format!("{REGISTRY}/{path}@{m1_digest}");
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "name: {repo}\nservices:\n  web:\n    image: {tagged}\n  pinned:\n    image: {pinned}\n  multi:\n    image: {REGISTRY}/{path}:multi\n  app:\n    build: .\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("hello"), "hello\n").unwrap();
    cleanup.0.push(format!("{repo}-app:latest"));
    cleanup.0.push(format!("{repo}_app:latest"));
    // The engine is not asked for these images: remove the local copy first.
    docker(&["rmi", "-f", &tagged]);
    bundle_from_registry(dir.path(), &["linux/amd64", "linux/arm64"]);
    assert!(
        image_id(&tagged).is_none(),
        "nothing was pulled into the engine"
    );
    let bundle = dir.path().join("b.offpack");

    let reader = BundleReader::open(&bundle).unwrap();
    let manifest = reader.manifest();
    assert_eq!(manifest.format_version, "1.4");
    let named = manifest
        .images
        .iter()
        .find(|i| i.refs.contains(&tagged))
        .expect("the tagged image");
    assert_eq!(
        named.id.to_string(),
        id,
        "the image ID is the registry's config"
    );
    assert_eq!(
        named.oci_manifest.as_ref().unwrap().digest.to_string(),
        m1_digest,
        "the registry's manifest is carried, byte for byte"
    );
    let registry = named.registry.as_ref().unwrap();
    assert_eq!(
        registry.index.as_ref().unwrap().digest.to_string(),
        index_digest
    );
    for digest in [&m1_digest, &index_digest] {
        let rd = format!("{REGISTRY}/{path}@{digest}");
        assert!(registry.repo_digests.contains(&rd), "{rd}: {registry:?}");
    }
    let pin_tag = format!(
        "{REGISTRY}/{path}:offpack-pin-sha256-{}",
        m1_digest.trim_start_matches("sha256:")
    );
    assert!(named.refs.contains(&pin_tag), "{:?}", named.refs);
    assert!(
        registry
            .layers
            .iter()
            .all(|l| l.media_type.ends_with("gzip")),
        "{registry:?}"
    );
    let other = manifest
        .images
        .iter()
        .find(|i| i.oci_manifest.as_ref().unwrap().digest.to_string() == m2_digest)
        .expect("the index's second platform is carried too");
    assert!(other.refs.is_empty());
    let built = manifest
        .images
        .iter()
        .find(|i| i.refs.contains(&format!("{repo}-app:latest")))
        .expect("the built image");
    assert!(
        built.registry.is_none(),
        "a built image comes from the engine"
    );
    assert_eq!(other.layers, named.layers, "its layers are the same blobs");
    let mut index_json = Vec::new();
    std::io::Read::read_to_end(&mut reader.entry("index.json").unwrap(), &mut index_json).unwrap();
    let index_json: Value = serde_json::from_slice(&index_json).unwrap();
    assert!(
        index_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["digest"] == m1_digest.as_str() && d["mediaType"] == DOCKER_V2),
        "{index_json}"
    );
    drop(reader);

    ok(offpack(dir.path()).args(["verify", "b.offpack"]));

    // Behind the gap: the engine loads it with the registry's image ID, and the digest-pinned
    // reference resolves through its pin tag (the name offpack's rebuild sends the engine).
    cleanup.0.push(pin_tag.clone());
    cleanup.0.push(format!("{REGISTRY}/{path}:multi"));
    ok(offpack(dir.path()).args(["load", "b.offpack"]));
    assert_eq!(image_id(&tagged).as_deref(), Some(id.as_str()));
    assert_eq!(image_id(&pin_tag).as_deref(), Some(id.as_str()));

    // Pushed on into another registry (the site's), the registry's blobs and manifest go as they
    // are: the digest the project pins is the pushed image's digest too.
    let site = format!("{REGISTRY}/{repo}-site");
    let out = ok(offpack(dir.path()).args([
        "--json",
        "push",
        "b.offpack",
        "--registry",
        &site,
        "--insecure",
    ]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pushed: Vec<&Value> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["manifest_digest"] == m1_digest.as_str())
        .collect();
    assert_eq!(pushed.len(), 1, "{report}");
    let pushed_name = pushed[0]["refs"][0]["pushed"].as_str().unwrap().to_string();
    cleanup.0.push(pushed_name.clone());
    ok(Command::new("docker").args(["pull", &pushed_name]));
    assert_eq!(image_id(&pushed_name).as_deref(), Some(id.as_str()));
}

#[test]
fn a_registry_that_does_not_answer_is_named_and_no_bundle_is_written() {
    require_engine();
    let dir = common::project_running("web", "127.0.0.1:1/offpack-nowhere/app:1");
    let out = run(offpack(dir.path()).args([
        "bundle",
        "--from-registry",
        "--insecure-registry",
        "127.0.0.1:1",
        "-o",
        "b.offpack",
    ]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:1/offpack-nowhere/app:1") && err.contains("registry"),
        "{err}"
    );
    assert!(!dir.path().join("b.offpack").exists());
}

/// Docker 20.10's `docker load` reads gzip layer files but not zstd ones (measured: "unexpected
/// EOF"): `offpack load` sends a registry-form image's zstd layers decompressed.
#[test]
fn registry_form_gzip_and_zstd_layers_load_into_the_engine() {
    use offpack_bundle::testkit::{add_registry_image, gzip_then_zstd};
    use offpack_bundle::{BundleWriter, Manifest, WriteOptions};
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.offpack");
    let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
    let a = offpack_bundle::testkit::layer_tar("a.txt", b"gzip layer\n");
    let b = offpack_bundle::testkit::layer_tar("b.txt", b"zstd layer\n");
    let repo = format!("offpack-bfr-zstd-{}", std::process::id());
    let layers = gzip_then_zstd(&a, &b);
    let image = add_registry_image(
        &mut w,
        &format!("registry.example/{repo}"),
        "1",
        &layers,
        &["linux/amd64"],
        None,
    )
    .unwrap();
    let (id, name) = (image.id.to_string(), image.refs[0].clone());
    let _cleanup = Cleanup(vec![name.clone()]);
    let mut m = Manifest::new("test", "z");
    m.images.push(image);
    w.finish(m).unwrap();
    ok(offpack(dir.path()).args(["load", "z.offpack"]));
    assert_eq!(image_id(&name).as_deref(), Some(id.as_str()));
}

const TLS_CA: &str = "/var/lib/offpack-test/registry-5002/ca.crt";

/// The TLS registry on 5002 (test CA, htpasswd): the login comes from the Docker config, the CA
/// from --registry-ca-file; a wrong password and an unknown CA are named.
#[test]
fn from_a_tls_registry_with_a_login_and_its_ca_file() {
    require_engine();
    assert!(
        std::path::Path::new(TLS_CA).is_file(),
        "{TLS_CA} is missing: run `scripts/test-env up`"
    );
    let registry = "127.0.0.1:5002";
    let image = format!("{registry}/offpack-bfr-tls-{}/app:1", std::process::id());
    let _cleanup = Cleanup(vec![image.clone()]);
    build_random_image(&image, &[50_000]);
    let id = image_id(&image).unwrap();
    let login = docker_config(registry, "offpack-test");
    let push = ok(Command::new("docker")
        .arg("--config")
        .arg(login.path())
        .args(["push", &image]));
    let pushed = String::from_utf8_lossy(&push.stdout).into_owned();
    let dir = common::project_running("web", &image);
    let bundle = |config: &std::path::Path, ca: bool| {
        let mut cmd = offpack(dir.path());
        cmd.args(["bundle", "--from-registry", "-o", "b.offpack"])
            .env("DOCKER_CONFIG", config);
        if ca {
            cmd.args(["--registry-ca-file", TLS_CA]);
        }
        run(&mut cmd)
    };

    let out = bundle(login.path(), false);
    assert!(!out.status.success(), "an unknown CA is refused");
    let err = stderr(&out);
    assert!(
        err.contains(registry) && err.contains("--registry-ca-file"),
        "names the registry and bundle's own option: {err}"
    );

    let wrong = docker_config(registry, "not-the-password");
    let out = bundle(wrong.path(), true);
    assert!(!out.status.success(), "a refused login fails");
    let err = stderr(&out);
    assert!(err.contains(registry) && err.contains("401"), "{err}");
    assert!(!dir.path().join("b.offpack").exists());

    let out = bundle(login.path(), true);
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = BundleReader::open(&dir.path().join("b.offpack")).unwrap();
    let carried = &reader.manifest().images[0];
    assert_eq!(carried.id.to_string(), id);
    let digest = carried.oci_manifest.as_ref().unwrap().digest.to_string();
    assert!(
        pushed.contains(&digest),
        "the digest docker push printed is the one carried: {pushed}"
    );
    ok(offpack(dir.path()).args(["verify", "b.offpack"]));

    // The file adds to the system's CAs, it does not replace them (a project's public registries
    // and token servers keep working): with the test CA as the system's (SSL_CERT_FILE) and an
    // unrelated CA in the file, the registry is still trusted.
    let other = tempfile::tempdir().unwrap();
    ok(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=offpack unrelated test CA", "-keyout"])
        .arg(other.path().join("ca.key"))
        .arg("-out")
        .arg(other.path().join("ca.crt")));
    std::fs::remove_file(dir.path().join("b.offpack")).unwrap();
    let out = run(offpack(dir.path())
        .args([
            "bundle",
            "--from-registry",
            "-o",
            "b.offpack",
            "--registry-ca-file",
        ])
        .arg(other.path().join("ca.crt"))
        .env("DOCKER_CONFIG", login.path())
        .env("SSL_CERT_FILE", TLS_CA));
    assert!(out.status.success(), "{}", stderr(&out));
    ok(offpack(dir.path()).args(["verify", "b.offpack"]));
}
