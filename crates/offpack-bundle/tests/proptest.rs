//! Random blobs → write → verify → read back identical.

use std::io::Read;

use offpack_bundle::{
    BlobRef, BundleReader, BundleWriter, Digest, Manifest, WriteOptions, testkit, verify,
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
        let mut w = BundleWriter::create(&path, WriteOptions { level: 1, threads: 2, ..WriteOptions::default() }).unwrap();
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
        let mut manifest = Manifest::new("0", "p");
        manifest.images.push(testkit::add_image(&mut w, &["app:1"], &config, layers).unwrap());
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

/// A small valid bundle, written once.
fn small_bundle() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.offpack");
        let mut w = BundleWriter::create(
            &path,
            WriteOptions {
                level: 3,
                threads: 1,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let layer: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let d = w.add_blob(layer.len() as u64, &layer[..]).unwrap();
        let config = serde_json::to_vec(
            &serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [d.to_string()]}}),
        )
        .unwrap();
        let layers = vec![BlobRef {
            digest: d,
            size: layer.len() as u64,
        }];
        let mut m = Manifest::new("0", "p");
        m.images
            .push(testkit::add_image(&mut w, &["app:1"], &config, layers).unwrap());
        w.finish(m).unwrap();
        std::fs::read(&path).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary damage (overwrites, deletions, insertions) never makes verify, open or blob reads panic,
    /// and what still verifies reads back its blobs intact.
    #[test]
    fn damaged_bundles_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>(), 1usize..40), 1..4)
    ) {
        let mut bytes = small_bundle().to_vec();
        for (at, op, value, len) in edits {
            let pos = at.index(bytes.len());
            match op {
                0 => {
                    let end = (pos + len).min(bytes.len());
                    bytes[pos..end].fill(value);
                }
                1 => {
                    let end = (pos + len).min(bytes.len());
                    bytes.drain(pos..end);
                }
                _ => {
                    bytes.splice(pos..pos, std::iter::repeat_n(value, len));
                }
            }
            if bytes.is_empty() {
                bytes.push(0);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.offpack");
        std::fs::write(&path, &bytes).unwrap();
        let verified = verify(&path, &mut |_| {}).is_ok();
        // The same bytes as two split parts give the same verdict.
        let cut = bytes.len() / 3;
        std::fs::write(dir.path().join("s.offpack.001"), &bytes[..cut]).unwrap();
        std::fs::write(dir.path().join("s.offpack.002"), &bytes[cut..]).unwrap();
        prop_assert_eq!(verify(&dir.path().join("s.offpack"), &mut |_| {}).is_ok(), verified);
        if let Ok(reader) = BundleReader::open(&path) {
            for e in reader.index().entries.clone() {
                if let Ok(mut r) = reader.entry(&e.path) {
                    let mut out = Vec::new();
                    let read = r.read_to_end(&mut out);
                    if verified {
                        prop_assert!(read.is_ok());
                        prop_assert_eq!(e.digest.clone(), Some(Digest::of_bytes(&out)));
                    }
                }
            }
        }
    }
}
