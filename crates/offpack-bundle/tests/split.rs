//! Split volumes (format 1.1): parts whose concatenation is the single-file bundle.

use std::io::Read;
use std::path::{Path, PathBuf};

use offpack_bundle::{
    BlobRef, BundleReader, BundleWriter, Delta, Digest, Manifest, WriteOptions, Written, testkit,
    verify,
};
use proptest::prelude::*;

/// Incompressible-ish deterministic bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes the same bundle (layers; the first `absent` ones left out as a delta) with or without split.
fn write(path: &Path, layers: &[Vec<u8>], absent: usize, split: Option<u64>) -> Written {
    let opts = WriteOptions {
        level: 1,
        threads: 2,
        split,
        ..WriteOptions::default()
    };
    let mut w = BundleWriter::create(path, opts).unwrap();
    let mut refs = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let d = Digest::of_bytes(layer);
        if i >= absent && !w.contains(&d) {
            if i % 2 == 0 {
                w.add_blob(layer.len() as u64, &layer[..]).unwrap();
            } else {
                w.add_blob_with_digest(&d, layer.len() as u64, &layer[..])
                    .unwrap();
            }
        }
        refs.push(BlobRef {
            digest: d,
            size: layer.len() as u64,
        });
    }
    let diff_ids: Vec<String> = refs.iter().map(|r| r.digest.to_string()).collect();
    let config = serde_json::to_vec(
        &serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}}),
    )
    .unwrap();
    let mut m = Manifest::new("0.1.0", "shop");
    m.created = "2026-01-01T00:00:00Z".into();
    let mut absent_layers: Vec<Digest> = refs[..absent].iter().map(|r| r.digest.clone()).collect();
    absent_layers.dedup();
    if absent > 0 {
        m.delta = Some(Delta {
            base: "test".into(),
            absent_layers,
        });
    }
    m.images
        .push(testkit::add_image(&mut w, &["app:1"], &config, refs).unwrap());
    w.finish(m).unwrap()
}

fn part(base: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n:03}", base.display()))
}

fn joined(written: &Written) -> Vec<u8> {
    written
        .files
        .iter()
        .flat_map(|(p, _)| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn a_header_patched_across_a_part_boundary_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![noise(1, 6000), noise(2, 3000), noise(3, 2000)];
    let single = write(&dir.path().join("s.offpack"), &layers, 0, None);
    let single_bytes = std::fs::read(&single.path).unwrap();
    // The third layer goes through add_blob: its raw header frame is patched after its data.
    let reader = BundleReader::open(&single.path).unwrap();
    let entry = reader
        .index()
        .entries
        .iter()
        .find(|e| e.digest == Some(Digest::of_bytes(&layers[2])))
        .unwrap()
        .clone();
    let part_size = entry.offset + 100; // inside the 522-byte raw header frame
    assert!(part_size >= offpack_bundle::MIN_PART_SIZE);
    let base = dir.path().join("p.offpack");
    let split = write(&base, &layers, 0, Some(part_size));
    assert!(split.files.len() >= 2, "{:?}", split.files);
    assert_eq!(split.files[0].0, part(&base, 1));
    assert!(!base.exists());
    for (p, _) in &split.files[..split.files.len() - 1] {
        assert_eq!(std::fs::metadata(p).unwrap().len(), part_size);
    }
    assert_eq!(joined(&split), single_bytes);
    assert_eq!(split.sha256, single.sha256);

    // The sidecar has one `sha256sum -c` line per part.
    let sidecar = std::fs::read_to_string(dir.path().join("p.offpack.sha256")).unwrap();
    assert_eq!(sidecar.lines().count(), split.files.len());
    assert!(sidecar.lines().next().unwrap().ends_with("  p.offpack.001"));
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "p.offpack.sha256"])
        .current_dir(dir.path())
        .status();
    if let Ok(status) = status {
        assert!(status.success());
    }

    // Readers accept the base name and the first part.
    for given in [base.clone(), part(&base, 1)] {
        let report = verify(&given, &mut |_| {}).unwrap();
        assert!(matches!(
            report.sidecar,
            offpack_bundle::SidecarStatus::Matched(_)
        ));
        let reader = BundleReader::open(&given).unwrap();
        assert_eq!(reader.files().len(), split.files.len());
        for layer in &layers {
            let mut out = Vec::new();
            reader
                .blob(&Digest::of_bytes(layer))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == *layer);
        }
    }
}

#[test]
fn a_missing_or_corrupt_part_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("b.offpack");
    let layers = vec![noise(3, 20_000)];
    let written = write(&base, &layers, 0, Some(4096));
    let n = written.files.len();
    assert!(n >= 5);

    // A byte flipped inside part 2: verify says which part.
    let p2 = part(&base, 2);
    let original = std::fs::read(&p2).unwrap();
    let mut bad = original.clone();
    bad[100] ^= 0x20;
    std::fs::write(&p2, &bad).unwrap();
    let err = verify(&base, &mut |_| {}).unwrap_err();
    assert!(err.is_corruption());
    assert!(err.to_string().contains("b.offpack.002"), "{err}");
    std::fs::write(&p2, &original).unwrap();

    // A middle part missing.
    std::fs::rename(&p2, dir.path().join("elsewhere")).unwrap();
    let err = verify(&base, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "missing-part");
    assert!(err.to_string().contains("b.offpack.002"), "{err}");
    assert!(BundleReader::open(&base).is_err());
    std::fs::rename(dir.path().join("elsewhere"), &p2).unwrap();

    // The last part missing: the sidecar names it.
    let last = part(&base, n);
    std::fs::rename(&last, dir.path().join("elsewhere")).unwrap();
    let err = verify(&base, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "missing-part");
    assert!(
        err.to_string().contains(&format!("b.offpack.{n:03}")),
        "{err}"
    );
    // Without the sidecar, the bundle has no index: a later part may be missing.
    std::fs::remove_file(dir.path().join("b.offpack.sha256")).unwrap();
    let err = verify(&base, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "not-a-bundle");
    assert!(err.to_string().contains("later part"), "{err}");
    std::fs::rename(dir.path().join("elsewhere"), &last).unwrap();
    verify(&base, &mut |_| {}).unwrap();

    // Rewriting the bundle unsplit removes the stale parts.
    let single = write(&base, &layers, 0, None);
    assert_eq!(single.files.len(), 1);
    assert!(!part(&base, 1).exists());
    verify(&base, &mut |_| {}).unwrap();
}

#[test]
fn too_small_parts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriteOptions {
        split: Some(100),
        ..WriteOptions::default()
    };
    let err = BundleWriter::create(&dir.path().join("b.offpack"), opts)
        .err()
        .unwrap();
    assert_eq!(err.kind(), "invalid-input");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Split and delta bundles round-trip: the parts join to the single-file bundle byte for byte, verify
    /// passes, and every carried blob reads back identical.
    #[test]
    fn split_and_delta_bundles_round_trip(
        sizes in prop::collection::vec(0usize..40_000, 1..6),
        absent in 0usize..3,
        part_size in 4096u64..30_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let layers: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| noise(i as u64 + 7, n)).collect();
        let absent = absent.min(layers.len());
        // A layer both absent and carried is not allowed: only take the absent prefix if distinct.
        let absent = if layers[..absent].iter().any(|a| layers[absent..].contains(a)) { 0 } else { absent };
        let single = write(&dir.path().join("s.offpack"), &layers, absent, None);
        let base = dir.path().join("p.offpack");
        let split = write(&base, &layers, absent, Some(part_size));
        prop_assert_eq!(joined(&split), std::fs::read(&single.path).unwrap());
        let report = verify(&base, &mut |_| {}).unwrap();
        prop_assert_eq!(report.manifest.delta.is_some(), absent > 0);
        let reader = BundleReader::open(&part(&base, 1)).unwrap();
        for (i, layer) in layers.iter().enumerate() {
            let d = Digest::of_bytes(layer);
            if i < absent {
                prop_assert!(reader.manifest().is_absent(&d));
                prop_assert!(!reader.contains(&d));
                continue;
            }
            let mut out = Vec::new();
            reader.blob(&d).unwrap().read_to_end(&mut out).unwrap();
            prop_assert!(out == *layer);
        }
    }
}
