//! Images in Debian's distribution registry on 127.0.0.1:5000 (test-env), for tests of the
//! registry form: manifests read and written with plain HTTP, and a multi-platform index made
//! by hand over a pushed image.

use serde_json::{Value, json};

/// The plain registry `scripts/test-env up` starts.
pub const REGISTRY: &str = "127.0.0.1:5000";
/// Docker image manifest, schema 2 (what `docker push` writes).
pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Docker manifest list.
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest of repository `repo` of the registry on 5000, as served for `DOCKER_V2`.
pub fn get_manifest(repo: &str, reference: &str) -> Vec<u8> {
    get(repo, reference, DOCKER_V2).1
}

/// An index (OCI or Docker list) by tag or digest: its `Docker-Content-Digest` and bytes.
pub fn get_index(repo: &str, reference: &str) -> (String, Vec<u8>) {
    get(repo, reference, &format!("{OCI_INDEX}, {DOCKER_LIST}"))
}

fn get(repo: &str, reference: &str, accept: &str) -> (String, Vec<u8>) {
    let url = format!("http://{REGISTRY}/v2/{repo}/manifests/{reference}");
    let mut resp = ureq::get(&url)
        .header("Accept", accept)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e} (is `scripts/test-env up` done?)"));
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (digest, resp.body_mut().read_to_vec().unwrap())
}

pub fn put_manifest(repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let url = format!("http://{REGISTRY}/v2/{repo}/manifests/{reference}");
    let resp = ureq::put(&url)
        .header("Content-Type", media_type)
        .send(bytes)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert!(resp.status().is_success(), "PUT {url}: {}", resp.status());
}

pub fn sha256(bytes: &[u8]) -> String {
    offpack_bundle::Digest::of_bytes(bytes).to_string()
}

/// A two-platform index put under `path:tag`: the pushed manifest `path:from` for amd64, and a
/// second manifest of the same blobs (other bytes, so another digest) standing for an arm64
/// build.
pub struct TwoPlatforms {
    pub amd64: Vec<u8>,
    pub amd64_digest: String,
    pub arm64_digest: String,
    pub index: Vec<u8>,
    pub index_digest: String,
}

pub fn put_two_platform_index(path: &str, from: &str, tag: &str) -> TwoPlatforms {
    let amd64 = get_manifest(path, from);
    let amd64_digest = sha256(&amd64);
    let arm64 =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&amd64).unwrap()).unwrap();
    let arm64_digest = sha256(&arm64);
    put_manifest(path, &arm64_digest, DOCKER_V2, &arm64);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_V2, "digest": amd64_digest, "size": amd64.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": DOCKER_V2, "digest": arm64_digest, "size": arm64.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    let index_digest = sha256(&index);
    put_manifest(path, tag, OCI_INDEX, &index);
    TwoPlatforms {
        amd64,
        amd64_digest,
        arm64_digest,
        index,
        index_digest,
    }
}

/// `offpack bundle --from-registry` of the project in `dir` into `dir/b.offpack`, for
/// `platforms`, from the plain registry on 5000.
pub fn bundle_from_registry(dir: &std::path::Path, platforms: &[&str]) {
    let mut cmd = super::offpack(dir);
    cmd.args(["bundle", "--from-registry", "--insecure-registry", REGISTRY]);
    for platform in platforms {
        cmd.args(["--platform", platform]);
    }
    super::ok(cmd.args(["-o", "b.offpack"]));
}
