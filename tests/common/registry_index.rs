//! A small multi-platform index made by hand in the registry on 127.0.0.1:5000 (test-env), and
//! plain HTTP reads and writes of manifests there, for tests of the registry form (format 1.4).

use serde_json::{Value, json};

/// test-env's plain registry.
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `GET` of a manifest with an `Accept` for Docker image manifests.
pub fn get_manifest(repo: &str, reference: &str) -> Vec<u8> {
    get(repo, reference, DOCKER_V2).1
}

/// `GET` of an index (OCI or Docker list) by tag or digest: its `Docker-Content-Digest` and
/// bytes.
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

/// The index [`two_platform_index`] made.
pub struct TwoPlatformIndex {
    /// The manifest `docker push` wrote (gzip layers), listed for linux/amd64.
    pub amd64: String,
    /// A second manifest of the same blobs (other bytes, so another digest), for linux/arm64.
    pub arm64: String,
    pub index: String,
}

/// Under `tag` in `repo` (on [`REGISTRY`]), an OCI index of two platforms: the manifest already
/// tagged `pushed_tag` there (for amd64) and a copy of it with other bytes standing for an arm64
/// build.
pub fn two_platform_index(repo: &str, pushed_tag: &str, tag: &str) -> TwoPlatformIndex {
    let m1 = get_manifest(repo, pushed_tag);
    let m2 = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&m1).unwrap()).unwrap();
    let (amd64, arm64) = (sha256(&m1), sha256(&m2));
    put_manifest(repo, &arm64, DOCKER_V2, &m2);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_V2, "digest": amd64, "size": m1.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": DOCKER_V2, "digest": arm64, "size": m2.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    put_manifest(repo, tag, OCI_INDEX, &index);
    TwoPlatformIndex {
        amd64,
        arm64,
        index: sha256(&index),
    }
}
