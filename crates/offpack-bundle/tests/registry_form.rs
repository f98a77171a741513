//! Format 1.4: images in their registry form (compressed blobs, the registry's manifest and index
//! kept byte for byte) beside engine images, verified down to the diff IDs.

use std::path::{Path, PathBuf};

use offpack_bundle::testkit::{
    self, RegistryLayerInput, add_image, add_registry_image, gzip_then_zstd,
};
use offpack_bundle::{
    BlobRef, BundleReader, BundleWriter, Compression, Digest, Image, Manifest, WriteOptions, verify,
};
use serde_json::Value;

fn opts() -> WriteOptions {
    WriteOptions {
        level: 1,
        threads: 1,
        ..WriteOptions::default()
    }
}

fn tar_of(seed: u8, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    testkit::layer_tar(&format!("file-{seed}"), &data)
}

/// A bundle with a registry image (gzip + zstd layers, from a two-platform index) and an engine
/// image; `diff_ids` breaks the registry image's config when given.
fn write(dir: &Path, diff_ids: Option<Vec<Digest>>) -> (PathBuf, Manifest) {
    let path = dir.join("r.offpack");
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    let (a, b) = (tar_of(3, 200_000), tar_of(5, 3000));
    let layers = gzip_then_zstd(&a, &b);
    let reg = add_registry_image(
        &mut w,
        "127.0.0.1:5000/team/app",
        "1.0",
        &layers,
        &["linux/amd64", "linux/arm64"],
        diff_ids,
    )
    .unwrap();
    let engine_layer = tar_of(7, 1000);
    let d = w.add_blob_bytes(&engine_layer).unwrap();
    let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#);
    let engine = add_image(
        &mut w,
        &["shop-web:latest"],
        config.as_bytes(),
        vec![BlobRef {
            digest: d,
            size: engine_layer.len() as u64,
        }],
    )
    .unwrap();
    let mut m = Manifest::new("test", "shop");
    m.images = vec![reg, engine];
    let written = w.finish(m).unwrap();
    let read = BundleReader::open(&written.path)
        .unwrap()
        .manifest()
        .clone();
    (written.path, read)
}

fn registry_image(m: &Manifest) -> &Image {
    m.images.iter().find(|i| i.registry.is_some()).unwrap()
}

#[test]
fn registry_form_keeps_the_registry_blobs_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write(dir.path(), None);
    assert_eq!(m.format_version, "1.4");
    let report = verify(&path, &mut |_| {}).unwrap();
    assert!(report.unreferenced.is_empty(), "{:?}", report.unreferenced);
    let reg = registry_image(&m);
    let registry = reg.registry.as_ref().unwrap();
    let oci = reg.oci_manifest.as_ref().unwrap();
    assert!(registry.repo_digests[0].ends_with(&oci.digest.to_string()));
    assert!(
        registry.repo_digests[1].ends_with(&registry.index.as_ref().unwrap().digest.to_string())
    );
    assert_ne!(
        reg.layers[0].digest, registry.layers[0].diff_id,
        "compressed"
    );
    assert_eq!(reg.diff_ids().len(), 2);

    // index.json points at the registry's manifest, by its own media type; manifest.json at the
    // compressed blobs (docker load decompresses gzip itself).
    let reader = BundleReader::open(&path).unwrap();
    let mut index = Vec::new();
    std::io::Read::read_to_end(&mut reader.entry("index.json").unwrap(), &mut index).unwrap();
    let index: Value = serde_json::from_slice(&index).unwrap();
    let ours = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == oci.digest.to_string())
        .unwrap();
    assert_eq!(
        ours["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        ours["annotations"]["io.containerd.image.name"],
        "127.0.0.1:5000/team/app:1.0"
    );
    // The registry's manifest, byte for byte: its digest is the repository digest.
    let mut stored = Vec::new();
    std::io::Read::read_to_end(&mut reader.blob(&oci.digest).unwrap(), &mut stored).unwrap();
    assert_eq!(Digest::of_bytes(&stored), oci.digest);
}

#[test]
fn a_layer_that_does_not_decompress_to_its_diff_id_fails_naming_image_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = Digest::of_bytes(b"not this layer");
    let (_, good) = write(dir.path(), None);
    let mut diff_ids = registry_image(&good).diff_ids();
    diff_ids[1] = wrong.clone();
    let (path, m) = write(dir.path(), Some(diff_ids));
    let err = verify(&path, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "bad-layer", "{err}");
    let msg = err.to_string();
    let blob = &registry_image(&m).layers[1].digest;
    assert!(
        msg.contains("127.0.0.1:5000/team/app:1.0")
            && msg.contains("layer 2")
            && msg.contains(&blob.to_string())
            && msg.contains(&wrong.to_string()),
        "{msg}"
    );
    assert!(err.is_corruption());
}

/// A writer holding one registry-form image of one gzip layer, and that image.
fn one_gzip_layer_image(path: &Path) -> (BundleWriter, Image) {
    let mut w = BundleWriter::create(path, opts()).unwrap();
    let a = tar_of(3, 1000);
    let layers = [RegistryLayerInput {
        tar: &a,
        compression: Compression::Gzip,
    }];
    let image = add_registry_image(
        &mut w,
        "reg.local/app",
        "1",
        &layers,
        &["linux/amd64"],
        None,
    )
    .unwrap();
    (w, image)
}

#[test]
fn a_registry_manifest_that_disagrees_with_offpack_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (w, mut image) = one_gzip_layer_image(&dir.path().join("r.offpack"));
    // offpack.json claims zstd where the registry's manifest says gzip.
    image.registry.as_mut().unwrap().layers[0].media_type =
        "application/vnd.oci.image.layer.v1.tar+zstd".into();
    let mut m = Manifest::new("test", "shop");
    m.images = vec![image];
    let written = w.finish(m).unwrap();
    let err = verify(&written.path, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "bad-manifest", "{err}");
    assert!(err.to_string().contains("registry manifest"), "{err}");
}

#[test]
fn a_repository_digest_must_name_the_manifest_or_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (w, mut image) = one_gzip_layer_image(&dir.path().join("r.offpack"));
    image.registry.as_mut().unwrap().repo_digests =
        vec![format!("reg.local/app@{}", Digest::of_bytes(b"x"))];
    let mut m = Manifest::new("test", "shop");
    m.images = vec![image];
    let err = w.finish(m).unwrap_err();
    assert!(err.to_string().contains("names neither"), "{err}");
}
