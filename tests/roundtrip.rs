//! The air-gap round trip on the real engine: bundle the example, remove every image it uses,
//! verify, load, rebuild the backend offline, start the project and check it answers; then a
//! corrupted bundle must fail `verify` and `load` and load nothing.

mod common;

use std::path::Path;

use common::*;

const PROJECT: &str = "offpack-e2e";
const HTTP_PORT: &str = "18080";

fn images_of(bundle: &Path, dir: &Path) -> Vec<String> {
    let out = ok(offpack(dir).args(["inspect", "--json"]).arg(bundle));
    let manifest: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    manifest["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(|i| {
            i["refs"]
                .as_array()
                .expect("refs")
                .iter()
                .map(|r| r.as_str().expect("ref").to_string())
        })
        .collect()
}

/// Removes the images from the engine, as on a far side that never had them; returns the IDs
/// that are gone. An ID that other images of this engine are built on (say, the demo's images,
/// made from the same base images) or that a running container uses stays, untagged: the engine
/// keeps those, and a far side may well hold other images and containers on the same base. Every
/// name is gone.
fn remove_all(images: &[String]) -> Vec<String> {
    // By ID too: an image that other images were built on is only untagged by name.
    // A multi-stage rebuild leaves its earlier stages' steps as dangling images whose parents are
    // the base images: prune those (untagged, unused by definition) before removing by ID.
    let ids: Vec<String> = images.iter().filter_map(|i| image_id(i)).collect();
    for image in images {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", image])
            .output();
    }
    let _ = std::process::Command::new("docker")
        .args(["image", "prune", "-f"])
        .output();
    for id in &ids {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", id])
            .output();
    }
    for image in images {
        assert!(!image_exists(image), "{image} is still in the engine");
    }
    let mut gone = Vec::new();
    for id in ids {
        if !image_exists(&id) {
            gone.push(id);
        } else {
            let containers = containers_of(&id);
            assert!(
                has_children(&id) || !containers.is_empty(),
                "image {id} is still in the engine, and no other image or container uses it"
            );
            eprintln!(
                "image {id} stays: other images or containers of this engine use it {containers:?}"
            );
        }
    }
    gone.sort();
    gone.dedup();
    gone
}

/// The containers (running or not) of image `id` or of an image built on it: the engine keeps
/// an image a running container uses, and a far side may run other containers on the same base.
fn containers_of(id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("ancestor={id}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether another image of the engine has `id` as its parent (the classic store keeps parents).
fn has_children(id: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args(["image", "ls", "-a", "-q", "--no-trunc", "--filter"])
        .arg(format!("since={id}"))
        .output()
        .expect("docker image ls");
    String::from_utf8_lossy(&out.stdout).lines().any(|child| {
        std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Parent}}", child])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == id)
    })
}

/// `scripts/test-env up`: the test base images and the registries, as every test expects them.
fn test_env_up() {
    ok(std::process::Command::new("bash")
        .args(["scripts/test-env", "up"])
        .current_dir(repo_root()));
}

/// However the test ends, the engine gets its base images and registries back for later tests.
struct RestoreTestEnv;

impl Drop for RestoreTestEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .args(["scripts/test-env", "up"])
            .current_dir(repo_root())
            .status();
    }
}

struct ComposeDown<'a>(&'a Path);

impl Drop for ComposeDown<'_> {
    fn drop(&mut self) {
        let _ = compose(self.0, PROJECT)
            .args(["down", "--remove-orphans"])
            .output();
    }
}

#[test]
fn air_gap_round_trip_of_the_example() {
    require_engine();
    test_env_up();
    let _restore = RestoreTestEnv;
    // Which image store this run exercised: the classic store and the containerd store load differently.
    let facts = ok(offpack(&repo_root()).args(["doctor", "--json"]));
    let facts: serde_json::Value = serde_json::from_slice(&facts.stdout).expect("doctor --json");
    eprintln!(
        "image store: {} ({})",
        facts["storage_driver"],
        if facts["containerd_image_store"] == true {
            "containerd image store"
        } else {
            "classic graphdriver store"
        }
    );
    let work = tempfile::tempdir().expect("tempdir");
    let project = work.path().join("shop");
    copy_tree(&repo_root().join("examples/shop"), &project);
    let env = [
        ("COMPOSE_PROJECT_NAME", PROJECT),
        ("SHOP_HTTP_PORT", HTTP_PORT),
        ("SHOP_API_PORT", "18000"),
    ];
    let bundle = work.path().join("shop.offpack");
    let _down = ComposeDown(&project);

    // Networked side.
    ok(offpack(&project)
        .envs(env)
        .args(["bundle", "-o"])
        .arg(&bundle));
    assert!(bundle.exists(), "bundle written");
    let sidecar = work.path().join("shop.offpack.sha256");
    let sidecar_text = std::fs::read_to_string(&sidecar).expect("sidecar written");
    assert!(
        sidecar_text.ends_with("  shop.offpack\n"),
        "sha256sum format: {sidecar_text}"
    );
    ok(std::process::Command::new("sha256sum")
        .current_dir(work.path())
        .args(["-c", "shop.offpack.sha256"]));
    ok(offpack(&project).arg("verify").arg(&bundle));

    let images = images_of(&bundle, &project);
    for expected in [
        "python:3.11-slim",
        "node:18-slim",
        "redis:7",
        "offpack-e2e-backend",
        "offpack-e2e-frontend",
        "offpack-cache/offpack-e2e-frontend:build",
    ] {
        assert!(
            images
                .iter()
                .any(|i| i == expected || i == &format!("{expected}:latest")),
            "bundle holds {expected}: {images:?}"
        );
    }
    let ids_before: Vec<(String, Option<String>)> =
        images.iter().map(|i| (i.clone(), image_id(i))).collect();

    // The air gap: the engine has none of the project's images, and no registry answers.
    let _ = std::process::Command::new("bash")
        .args(["scripts/test-env", "registry-stop"])
        .current_dir(repo_root())
        .output();
    remove_all(&images);

    // Air-gapped side.
    ok(offpack(&project).arg("verify").arg(&bundle));
    let loaded = ok(offpack(&project).args(["load", "--json"]).arg(&bundle));
    let report: serde_json::Value = serde_json::from_slice(&loaded.stdout).expect("load --json");
    assert!(
        report["loaded"].as_array().is_some_and(|a| !a.is_empty()),
        "{report}"
    );
    for (image, id) in &ids_before {
        assert_eq!(&image_id(image), id, "{image} comes back with the same ID");
    }
    // A second load finds everything present and streams nothing.
    let again = ok(offpack(&project).args(["load", "--json"]).arg(&bundle));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("load --json");
    assert_eq!(again["loaded"].as_array().map(Vec::len), Some(0), "{again}");

    // Change the backend's code and rebuild it offline from cache.
    let app = project.join("backend/app.py");
    let mut code = std::fs::read_to_string(&app).expect("backend/app.py");
    code.push_str("\n# changed on the air-gapped side\n");
    std::fs::write(&app, code).expect("write app.py");
    let rebuilt = ok(offpack(&project)
        .envs(env)
        .args(["rebuild", "backend", "--json"]));
    let rebuilt: serde_json::Value =
        serde_json::from_slice(&rebuilt.stdout).expect("rebuild --json");
    assert!(
        rebuilt[0]["cached_steps"].as_u64().unwrap_or(0) >= 1,
        "the pip install step came from cache: {rebuilt}"
    );

    // The frontend is multi-stage: its build stage's `npm ci` must come from the stage image.
    let page_source = project.join("frontend/src/index.html");
    let mut html = std::fs::read_to_string(&page_source).expect("frontend/src/index.html");
    html = html.replace("</body>", "<p>changed on the air-gapped side</p></body>");
    std::fs::write(&page_source, html).expect("write index.html");
    let rebuilt = ok(offpack(&project)
        .envs(env)
        .args(["rebuild", "frontend", "--json"]));
    let rebuilt: serde_json::Value =
        serde_json::from_slice(&rebuilt.stdout).expect("rebuild --json");
    assert!(
        rebuilt[0]["cached_steps"].as_u64().unwrap_or(0) >= 3,
        "WORKDIR, COPY of the lockfile and `npm ci` came from cache: {rebuilt}"
    );

    ok(compose(&project, PROJECT)
        .envs(env)
        .args(["up", "-d", "--no-build"]));
    let health = http_get(&format!("http://127.0.0.1:{HTTP_PORT}/api/health"), 60);
    assert!(health.is_some(), "the backend answers through the frontend");
    let page = http_get(&format!("http://127.0.0.1:{HTTP_PORT}/"), 10).expect("frontend answers");
    assert!(
        page.contains("changed on the air-gapped side"),
        "the rebuilt frontend is served: {page}"
    );
    ok(compose(&project, PROJECT)
        .envs(env)
        .args(["down", "--remove-orphans"]));

    // One corrupt byte: verify fails naming what is corrupt, load loads nothing. The byte is in a
    // layer that load must send: the file's middle byte can fall in a base layer that the rebuilt
    // images still hold, which load rightly leaves out of its stream (and so never reads).
    let middle = {
        let reader = offpack_bundle::BundleReader::open(&bundle).expect("open bundle");
        let redis = reader
            .manifest()
            .images
            .iter()
            .find(|i| i.refs.iter().any(|r| r.contains("redis")))
            .expect("redis is bundled");
        let layer = &redis.layers.last().expect("redis has layers").digest;
        let entry = reader
            .index()
            .entries
            .iter()
            .filter(|e| e.digest.as_ref() == Some(layer))
            .max_by_key(|e| e.compressed_len)
            .expect("the layer is in the index");
        (entry.offset + entry.compressed_len / 2) as usize
    };
    let mut bytes = std::fs::read(&bundle).expect("read bundle");
    bytes[middle] ^= 0x5a;
    std::fs::write(&bundle, &bytes).expect("write corrupt bundle");
    let verify = run(offpack(&project).arg("verify").arg(&bundle));
    assert_eq!(
        verify.status.code(),
        Some(1),
        "verify exits 1 on corruption"
    );
    let message = stderr(&verify);
    assert!(
        message.contains("blobs/sha256/")
            || message.contains("sha256:")
            || message.contains("checksum"),
        "names what is corrupt: {message}"
    );

    let gone = remove_all(&images);
    let load = run(offpack(&project).arg("load").arg(&bundle));
    assert_eq!(load.status.code(), Some(1), "load exits 1 on corruption");
    for id in &gone {
        assert!(
            !image_exists(id),
            "image {id} must not be loaded from a corrupt bundle"
        );
    }
    for (image, _) in &ids_before {
        assert!(
            !image_exists(image),
            "{image} must not be loaded from a corrupt bundle"
        );
    }

    // Leave the engine as we found it: the good images back in place.
    bytes[middle] ^= 0x5a;
    std::fs::write(&bundle, &bytes).expect("restore bundle");
    ok(offpack(&project).arg("load").arg(&bundle));
}
