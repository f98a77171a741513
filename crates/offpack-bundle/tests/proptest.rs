//! Random blobs → write → verify → read back identical.

use std::io::Read;

use offpack_bundle::{
    BlobRef, BundleReader, BundleWriter, Digest, Image, Manifest, WriteOptions, verify,
};
use proptest::prelude::*;

fn blob_sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => Just(0usize),
        4 => 1usize..2048,
        2 => Just(512usize),
        2 => 8190usize..8200,
        1 => Just((8 << 20) + 700),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn written_blobs_verify_and_read_back(
        specs in prop::collection::vec((blob_sizes(), any::<u8>(), any::<bool>(), 0usize..4), 1..7)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.offpack");
        let mut w = BundleWriter::create(&path, WriteOptions { level: 1, threads: 2 }).unwrap();
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        for (size, seed, unknown, dup) in specs {
            // Sometimes repeat an earlier blob.
            let data = if dup == 0 && !blobs.is_empty() {
                blobs[usize::from(seed) % blobs.len()].clone()
            } else {
                (0..size).map(|i| (i as u8).wrapping_mul(seed).wrapping_add((i >> 9) as u8)).collect()
            };
            let d = if unknown {
                w.add_blob(data.len() as u64, &data[..]).unwrap()
            } else {
                let d = Digest::of_bytes(&data);
                w.add_blob_with_digest(&d, data.len() as u64, &data[..]).unwrap();
                d
            };
            prop_assert_eq!(&d, &Digest::of_bytes(&data));
            blobs.push(data);
        }
        let layers: Vec<BlobRef> = blobs
            .iter()
            .map(|b| BlobRef { digest: Digest::of_bytes(b), size: b.len() as u64 })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
        let cd = w.add_blob_bytes(&config).unwrap();
        let mut manifest = Manifest::new("0", "p");
        manifest.images.push(Image {
            refs: vec!["app:1".into()],
            id: cd.clone(),
            platform: "linux/amd64".into(),
            config: BlobRef { digest: cd, size: config.len() as u64 },
            layers,
            oci_manifest: None,
        });
        w.finish(manifest).unwrap();

        let report = verify(&path, &mut |_| {}).unwrap();
        prop_assert!(report.unreferenced.is_empty());
        let reader = BundleReader::open(&path).unwrap();
        for b in &blobs {
            let mut out = Vec::new();
            reader.blob(&Digest::of_bytes(b)).unwrap().read_to_end(&mut out).unwrap();
            prop_assert!(out == *b);
        }
    }
}
