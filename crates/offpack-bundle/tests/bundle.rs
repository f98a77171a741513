//! Writing, reading, verifying and extracting real bundles.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use offpack_bundle::{
    BlobRef, BundleReader, BundleWriter, Digest, FORMAT_VERSION, Image, Manifest, RebuildService,
    SidecarStatus, WriteOptions, extract, testkit, verify,
};

fn opts() -> WriteOptions {
    WriteOptions {
        level: 3,
        threads: 1,
        ..WriteOptions::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift), compressible enough to be realistic but not trivially.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a' + (x % 4) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// Writes a bundle with one image whose layers are `layers` (odd ones through `add_blob`, the unknown-digest
/// path). Returns the path and the manifest as written.
fn write_bundle(dir: &Path, name: &str, layers: &[Vec<u8>]) -> (PathBuf, Manifest) {
    write_bundle_with(dir, name, layers, |_| {})
}

/// [`write_bundle`], with `edit` applied to the manifest before it is written.
fn write_bundle_with(
    dir: &Path,
    name: &str,
    layers: &[Vec<u8>],
    edit: impl FnOnce(&mut Manifest),
) -> (PathBuf, Manifest) {
    let path = dir.join(name);
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    let mut refs = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let d = if i % 2 == 1 {
            w.add_blob(layer.len() as u64, &layer[..]).unwrap()
        } else {
            let d = Digest::of_bytes(layer);
            w.add_blob_with_digest(&d, layer.len() as u64, &layer[..])
                .unwrap();
            d
        };
        assert!(w.contains(&d));
        refs.push(BlobRef {
            digest: d,
            size: layer.len() as u64,
        });
    }
    let diff_ids: Vec<String> = refs.iter().map(|r| r.digest.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let mut manifest = Manifest::new("0.1.0-test", "shop");
    manifest.platforms.push("linux/amd64".into());
    let refs_named = ["python:3.11-slim", "mirror.local/library/python:3.11-slim"];
    manifest
        .images
        .push(testkit::add_image(&mut w, &refs_named, &config, refs).unwrap());
    edit(&mut manifest);
    let written = w.finish(manifest.clone()).unwrap();
    assert_eq!(written.path, path);
    assert_eq!(written.size, std::fs::metadata(&path).unwrap().len());
    let reader = BundleReader::open(&path).unwrap();
    (path, reader.manifest().clone())
}

fn read_blob(reader: &BundleReader, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    reader.blob(d).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn round_trip_verify_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![
        bytes(1, 3000),
        bytes(2, 0),
        bytes(3, 512),
        bytes(1, 3000),
        bytes(4, 100_001),
    ];
    let (path, manifest) = write_bundle(dir.path(), "shop.offpack", &layers);

    let mut last_progress = 0;
    let report = verify(&path, &mut |n| last_progress = n).unwrap();
    assert_eq!(last_progress, report.size);
    assert!(matches!(report.sidecar, SidecarStatus::Matched(_)));
    // 4 distinct layers + config + OCI manifest.
    assert_eq!(report.blobs, 6);
    assert!(report.unreferenced.is_empty());
    assert_eq!(report.manifest, manifest);

    let reader = BundleReader::open(&path).unwrap();
    for layer in &layers {
        assert_eq!(&read_blob(&reader, &Digest::of_bytes(layer)), layer);
    }
    let image = &reader.manifest().images[0];
    let oci = image.oci_manifest.as_ref().unwrap();
    let oci_json: serde_json::Value =
        serde_json::from_slice(&read_blob(&reader, &oci.digest)).unwrap();
    assert_eq!(oci_json["layers"].as_array().unwrap().len(), 5);
    assert_eq!(
        oci_json["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let missing = Digest::of_bytes(b"nope");
    assert_eq!(reader.blob(&missing).err().unwrap().kind(), "not-found");

    // The sidecar is in sha256sum format.
    let sidecar = std::fs::read_to_string(dir.path().join("shop.offpack.sha256")).unwrap();
    assert_eq!(
        sidecar,
        format!("{}  shop.offpack\n", report.sha256.unwrap())
    );
    let status = Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg("shop.offpack.sha256")
        .current_dir(dir.path())
        .status();
    if let Ok(status) = status {
        assert!(status.success());
    }
}

#[test]
fn duplicates_are_dropped_by_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.offpack");
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    let data = bytes(9, 70_000);
    let d1 = w.add_blob(data.len() as u64, &data[..]).unwrap();
    let d2 = w.add_blob(data.len() as u64, &data[..]).unwrap();
    let d3 = w.add_blob_bytes(&data).unwrap();
    assert_eq!(d1, d2);
    assert_eq!(d1, d3);
    let written = w.finish(Manifest::new("0", "p")).unwrap();
    assert_eq!(written.blobs, 1);
    let report = verify(&path, &mut |_| {}).unwrap();
    assert_eq!(report.unreferenced, vec![d1]);
}

#[test]
fn writer_rejects_bad_input_and_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.offpack");
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    let data = bytes(5, 10_000);
    let wrong = Digest::of_bytes(b"other");
    let err = w
        .add_blob_with_digest(&wrong, data.len() as u64, &data[..])
        .unwrap_err();
    assert_eq!(err.kind(), "source-mismatch");
    assert!(!err.is_corruption());
    assert!(!w.contains(&wrong));
    let err = w.add_blob(20_000, &data[..]).unwrap_err();
    assert!(
        err.to_string()
            .contains("ended after 10000 of the declared 20000"),
        "{err}"
    );
    let err = w.add_blob(5, &data[..]).unwrap_err();
    assert!(
        err.to_string().contains("longer than the declared 5"),
        "{err}"
    );
    let d = w.add_blob_bytes(&data).unwrap();

    let mut manifest = Manifest::new("0", "p");
    let ghost = Digest::of_bytes(b"ghost");
    manifest.images.push(Image {
        refs: vec!["a:1".into()],
        id: ghost.clone(),
        platform: "linux/amd64".into(),
        config: BlobRef {
            digest: ghost,
            size: 5,
        },
        layers: vec![BlobRef {
            digest: d,
            size: data.len() as u64,
        }],
        oci_manifest: None,
        registry: None,
    });
    let err = w.finish(manifest).unwrap_err();
    assert_eq!(err.kind(), "unwritten-blob");
    assert!(err.to_string().contains("config of image a:1"), "{err}");
    // No bundle appears and the temporary file is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn standard_tools_read_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![bytes(1, 5000), bytes(2, 777)];
    let (path, manifest) = write_bundle(dir.path(), "t.offpack", &layers);
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -t", path.display()))
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let names: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let image = &manifest.images[0];
    let mut expected = vec!["oci-layout".to_owned()];
    expected.extend(image.layers.iter().map(|l| l.digest.blob_path()));
    expected.push(image.config.digest.blob_path());
    expected.push(image.oci_manifest.as_ref().unwrap().digest.blob_path());
    expected.extend(["index.json", "manifest.json", "offpack.json"].map(str::to_owned));
    assert_eq!(names, expected);

    // `tar -x` gives files whose names are their hashes.
    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            path.display(),
            out.display()
        ))
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success());
    for l in &image.layers {
        let data = std::fs::read(out.join(l.digest.blob_path())).unwrap();
        assert_eq!(Digest::of_bytes(&data), l.digest);
    }
    let docker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(docker[0]["RepoTags"][0], "python:3.11-slim");
    assert_eq!(docker[0]["Config"], image.config.digest.blob_path());
}

#[test]
fn extract_writes_a_verified_layout() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![bytes(7, 40_000)];
    let (path, manifest) = write_bundle(dir.path(), "e.offpack", &layers);
    let out = dir.path().join("out");
    let report = extract(&path, &out).unwrap();
    assert_eq!(report.manifest, manifest);
    let layer = std::fs::read(out.join(manifest.images[0].layers[0].digest.blob_path())).unwrap();
    assert_eq!(layer, layers[0]);
    for name in ["oci-layout", "index.json", "manifest.json", "offpack.json"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    // No temporary files are left.
    let leftovers = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[cfg(unix)]
#[test]
fn extract_does_not_follow_planted_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_bundle(dir.path(), "s.offpack", &[bytes(1, 100)]);
    let out = dir.path().join("out");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("blobs")).unwrap();
    let err = extract(&path, &out).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// A small deterministic PRNG for positions.
fn positions(seed: u64, n: usize, max: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % max
        })
        .collect()
}

#[test]
fn flipped_bytes_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![bytes(1, 20_000), bytes(2, 700), bytes(3, 0)];
    let (path, _) = write_bundle(dir.path(), "f.offpack", &layers);
    let good = std::fs::read(&path).unwrap();
    let sidecar = std::fs::read(dir.path().join("f.offpack.sha256")).unwrap();
    let bad = dir.path().join("bad.offpack");
    let bad_sidecar = dir.path().join("bad.offpack.sha256");
    let mut undetected_without_sidecar = 0;
    for (i, pos) in positions(42, 400, good.len() as u64)
        .into_iter()
        .enumerate()
    {
        let mut copy = good.clone();
        let flip = 1u8 << (i % 8);
        copy[pos as usize] ^= flip;
        std::fs::write(&bad, &copy).unwrap();
        std::fs::write(&bad_sidecar, &sidecar).unwrap();
        let err = verify(&bad, &mut |_| {}).expect_err(&format!("flip at {pos} not detected"));
        assert!(err.is_corruption(), "flip at {pos}: {err}");

        // Without the sidecar, a flip either fails or left every byte of content intact (e.g. a bit zstd ignores).
        std::fs::remove_file(&bad_sidecar).unwrap();
        if verify(&bad, &mut |_| {}).is_ok() {
            undetected_without_sidecar += 1;
            let reader = BundleReader::open(&bad).unwrap();
            for layer in &layers {
                assert_eq!(&read_blob(&reader, &Digest::of_bytes(layer)), layer);
            }
        }
    }
    eprintln!(
        "{undetected_without_sidecar} of 400 flips changed no content and passed without the sidecar"
    );
    assert!(
        undetected_without_sidecar < 10,
        "{undetected_without_sidecar}"
    );
}

#[test]
fn truncation_is_detected_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_bundle(dir.path(), "t.offpack", &[bytes(1, 30_000), bytes(2, 900)]);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("cut.offpack");
    let mut cuts = positions(7, 150, good.len() as u64);
    cuts.extend([0, 1, 47, 48, 56, good.len() as u64 - 1]);
    for cut in cuts {
        std::fs::write(&bad, &good[..cut as usize]).unwrap();
        let err = verify(&bad, &mut |_| {}).expect_err(&format!("cut at {cut} not detected"));
        assert!(err.is_corruption(), "cut at {cut}: {err}");
        assert!(BundleReader::open(&bad).is_err(), "cut at {cut}");
    }
}

#[test]
fn blob_reader_reports_corrupt_content_at_eof() {
    use offpack_bundle::testkit::{self, RawEntry};
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_bundle(dir.path(), "c.offpack", &[bytes(1, 3000)]);
    let mut entries: Vec<RawEntry> = testkit::read_entries(&path)
        .unwrap()
        .into_iter()
        .map(|(e, data)| RawEntry::regular(&e.path, data))
        .collect();
    let victim = entries
        .iter()
        .position(|e| e.index_path.as_deref().unwrap_or("").starts_with("blobs/"))
        .unwrap();
    let digest: Digest = format!(
        "sha256:{}",
        &entries[victim].index_path.clone().unwrap()[13..]
    )
    .parse()
    .unwrap();
    entries[victim].data[0] ^= 0xff;
    entries[victim].index_digest = Some(digest.clone());
    let offpack = entries.last().unwrap().data.clone();
    let bytes = testkit::assemble(
        &entries,
        BlobRef {
            digest: Digest::of_bytes(&offpack),
            size: offpack.len() as u64,
        },
    );
    let bad = dir.path().join("bad.offpack");
    std::fs::write(&bad, bytes).unwrap();
    let reader = BundleReader::open(&bad).unwrap();
    let mut out = Vec::new();
    let err = reader
        .blob(&digest)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(digest.hex()), "{err}");
    assert_eq!(verify(&bad, &mut |_| {}).unwrap_err().kind(), "bad-digest");
}

#[test]
fn not_a_bundle_and_missing_file_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let err = verify(&dir.path().join("absent.offpack"), &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "no-such-bundle");
    assert!(!err.is_corruption());
    assert!(
        err.to_string().contains("absent.offpack: no such file")
            && err.to_string().contains("absent.offpack.001"),
        "{err}"
    );
    let junk = dir.path().join("junk.offpack");
    std::fs::write(&junk, b"hello").unwrap();
    let err = verify(&junk, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "not-a-bundle");
    assert!(err.is_corruption());
    assert!(err.to_string().contains("copy the bundle again"), "{err}");
}

#[test]
fn offpack_json_matches_the_published_schema() {
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: python3 with jsonschema is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = write_bundle(dir.path(), "j.offpack", &[bytes(1, 10)]);
    let (with_services, manifest) =
        write_bundle_with(dir.path(), "r.offpack", &[bytes(2, 10)], |m| {
            let id = m.images[0].id.clone();
            m.rebuild.services.insert(
                "web".into(),
                RebuildService {
                    builder: Some(offpack_dockerfile::Builder::BuildKit),
                    built: true,
                    cache_images: vec!["shop-web:offpack-stage-deps".into()],
                    image: vec!["shop-web:latest".into()],
                    images: [id].into(),
                    inputs: Some(Digest::of_bytes(b"build inputs")),
                },
            );
        });
    assert_eq!(manifest.rebuild.services["web"].image, ["shop-web:latest"]);
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/offpack.schema.json");
    let script = "import json,sys,jsonschema\n\
        s=json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(s)\n\
        jsonschema.validate(json.load(open(sys.argv[2])), s)";
    let with_packages = dir.path().join("p.offpack");
    let wheel = bytes(3, 40);
    let mut w = BundleWriter::create(&with_packages, opts()).unwrap();
    w.add_blob_bytes(&wheel).unwrap();
    let mut m = Manifest::new("0.1.0-test", "shop");
    m.packages.push(offpack_bundle::Package {
        integrity: Some("sha512-x".into()),
        platform: Some("cp311-manylinux_2_17_x86_64 linux/amd64".into()),
        ..package("pypi", "demo", "demo-1.0.0-py3-none-any.whl", &wheel)
    });
    w.finish(m).unwrap();
    for path in [plain, with_services, with_packages] {
        let out = dir.path().join(format!("{}.x", path.display()));
        extract(&path, &out).unwrap();
        let status = Command::new("python3")
            .args(["-c", script])
            .arg(&schema)
            .arg(out.join("offpack.json"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{} does not match the schema",
            path.display()
        );
    }
}

#[test]
fn every_single_bit_flip_of_a_small_bundle_fails_or_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![bytes(1, 1500), bytes(2, 300)];
    let (path, _) = write_bundle(dir.path(), "small.offpack", &layers);
    std::fs::remove_file(dir.path().join("small.offpack.sha256")).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.offpack");
    let mut passed = Vec::new();
    for pos in 0..good.len() {
        let mut copy = good.clone();
        copy[pos] ^= 1 << (pos % 8);
        std::fs::write(&bad, &copy).unwrap();
        if verify(&bad, &mut |_| {}).is_ok() {
            passed.push(pos);
            let reader = BundleReader::open(&bad).unwrap();
            for layer in &layers {
                assert_eq!(&read_blob(&reader, &Digest::of_bytes(layer)), layer);
            }
        }
    }
    // A few bits of zstd's entropy-coded data do not affect the output (the frame checksum still matches);
    // the sidecar catches those. Everything else fails.
    eprintln!(
        "{} of {} bit flips passed verify with content intact",
        passed.len(),
        good.len()
    );
    assert!(passed.len() * 50 < good.len(), "{passed:?}");
}

/// A delta bundle (format 1.1) leaves out exactly the layers it lists as absent.
#[test]
fn delta_bundles_leave_out_only_the_listed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (present, absent) = (bytes(1, 5000), bytes(2, 7000));
    let (dp, da) = (Digest::of_bytes(&present), Digest::of_bytes(&absent));
    let image = |cd: Digest, config_len: usize| Image {
        refs: vec!["shop_backend:2".into()],
        id: cd.clone(),
        platform: "linux/amd64".into(),
        config: BlobRef {
            digest: cd,
            size: config_len as u64,
        },
        layers: vec![
            BlobRef {
                digest: da.clone(),
                size: absent.len() as u64,
            },
            BlobRef {
                digest: dp.clone(),
                size: present.len() as u64,
            },
        ],
        oci_manifest: None,
        registry: None,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "rootfs": {"type": "layers", "diff_ids": [da.to_string(), dp.to_string()]}
    }))
    .unwrap();
    let write = |name: &str, delta: Option<Vec<Digest>>, add_absent: bool| {
        let path = dir.path().join(name);
        let mut w = BundleWriter::create(&path, opts()).unwrap();
        w.add_blob_bytes(&present).unwrap();
        if add_absent {
            w.add_blob_bytes(&absent).unwrap();
        }
        let cd = w.add_blob_bytes(&config).unwrap();
        let mut m = Manifest::new("0.1.0", "shop");
        m.images.push(image(cd, config.len()));
        m.delta = delta.map(|absent_layers| offpack_bundle::Delta {
            base: "have.json of 2026-11-20".into(),
            absent_layers,
        });
        w.finish(m).map(|written| written.path)
    };

    let path = write("d.offpack", Some(vec![da.clone()]), false).unwrap();
    let report = verify(&path, &mut |_| {}).unwrap();
    assert_eq!(
        report.manifest.delta.as_ref().unwrap().absent_layers,
        std::slice::from_ref(&da)
    );
    assert_eq!(report.manifest.format_version, FORMAT_VERSION);
    let reader = BundleReader::open(&path).unwrap();
    assert!(reader.manifest().is_absent(&da));
    assert_eq!(reader.blob(&da).err().unwrap().kind(), "not-found");
    assert!(reader.contains(&dp));
    // manifest.json still lists the absent layer (docker load skips a layer whose chain it holds).
    let mut docker = String::new();
    reader
        .entry("manifest.json")
        .unwrap()
        .read_to_string(&mut docker)
        .unwrap();
    assert!(docker.contains(da.hex()), "{docker}");

    // Without the delta, the missing layer is the caller's mistake.
    let err = write("n.offpack", None, false).unwrap_err();
    assert_eq!(err.kind(), "unwritten-blob");
    // Listing a layer as absent and writing it anyway is refused too.
    let err = write("w.offpack", Some(vec![da.clone()]), true).unwrap_err();
    assert_eq!(err.kind(), "invalid-input");
    // Only layers of the bundle's images may be listed.
    let err = write("x.offpack", Some(vec![Digest::of_bytes(b"other")]), false).unwrap_err();
    assert_eq!(err.kind(), "invalid-input");
    assert!(err.to_string().contains("not a layer"), "{err}");
}

/// `sign` stores a signature that `verify_with_key` requires from exactly that key.
#[test]
fn signed_bundles_verify_only_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = offpack_bundle::generate_keypair().unwrap();
    let (_, stranger) = offpack_bundle::generate_keypair().unwrap();
    let layers = [bytes(9, 3000)];
    let (unsigned, _) = write_bundle(dir.path(), "u.offpack", &layers);
    let path = dir.path().join("s.offpack");
    let mut w = BundleWriter::create(
        &path,
        WriteOptions {
            sign: Some(secret.clone()),
            split: Some(4096),
            ..opts()
        },
    )
    .unwrap();
    w.add_blob_bytes(&layers[0]).unwrap();
    w.finish(Manifest::new("0.1.0", "shop")).unwrap();

    let report = offpack_bundle::verify_with_key(&path, &public, &mut |_| {}).unwrap();
    assert_eq!(report.signed_by, Some(public));
    assert_eq!(verify(&path, &mut |_| {}).unwrap().signed_by, Some(public));
    let err = offpack_bundle::verify_with_key(&path, &stranger, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "bad-signature");
    assert!(err.is_corruption());
    assert!(err.to_string().contains(&public.fingerprint()), "{err}");
    let err = offpack_bundle::verify_with_key(&unsigned, &public, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), "unsigned");
    assert!(err.is_corruption());
    // Key files round-trip through their text form.
    let text = secret.to_text();
    assert!(text.starts_with("offpack-ed25519-secret:"));
    assert_eq!(
        offpack_bundle::SigningKey::from_text(&text)
            .unwrap()
            .verifying_key(),
        public
    );
}

#[test]
fn add_blob_unless_drops_a_blob_it_is_told_to_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        offpack_bundle::BundleWriter::create(&dir.path().join("d.offpack"), Default::default())
            .unwrap();
    let held = vec![9u8; 70_000];
    let held_digest = offpack_bundle::Digest::of_bytes(&held);
    let (digest, stored) = w
        .add_blob_unless(held.len() as u64, held.as_slice(), &|d| *d == held_digest)
        .unwrap();
    assert_eq!(digest, held_digest);
    assert!(!stored);
    assert!(
        !w.contains(&held_digest),
        "a left-out blob is not in the bundle"
    );
    let other = b"kept".to_vec();
    let (digest, stored) = w
        .add_blob_unless(other.len() as u64, other.as_slice(), &|d| *d == held_digest)
        .unwrap();
    assert!(stored);
    assert!(w.contains(&digest));
}

/// Entries overlap in the compression pool (an entry's last frames are still being compressed while the
/// next one is read): a failed entry, a duplicate and a left-out blob in the middle of multi-frame blobs
/// must leave the same bundle, byte for byte, whatever the thread count.
#[test]
fn overlapping_entries_roll_back_alone_and_the_output_does_not_depend_on_threads() {
    let big = |seed| bytes(seed, (8 << 20) * 2 + 12_345);
    let (a, c, d) = (big(21), big(22), big(23));
    let small = bytes(24, 3000);
    let write = |threads: u32, name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let mut w = BundleWriter::create(
            &path,
            WriteOptions {
                level: 1,
                threads,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let da = w.add_blob(a.len() as u64, &a[..]).unwrap();
        let ds = Digest::of_bytes(&small);
        w.add_blob_with_digest(&ds, small.len() as u64, &small[..])
            .unwrap();
        let err = w.add_blob(c.len() as u64 + 1, &c[..]).unwrap_err();
        assert!(err.to_string().contains("ended after"), "{err}");
        assert_eq!(w.add_blob(a.len() as u64, &a[..]).unwrap(), da);
        let dd = Digest::of_bytes(&d);
        let (left_out, kept) = w
            .add_blob_unless(d.len() as u64, &d[..], &|x| *x == dd)
            .unwrap();
        assert_eq!((left_out, kept), (dd, false));
        let dc = w.add_blob(c.len() as u64, &c[..]).unwrap();
        let mut manifest = Manifest::new("0", "p");
        manifest.created = "2026-01-01T00:00:00Z".into();
        let written = w.finish(manifest).unwrap();
        assert_eq!(written.blobs, 3);
        let report = verify(&path, &mut |_| {}).unwrap();
        assert_eq!(report.unreferenced.len(), 3);
        let reader = BundleReader::open(&path).unwrap();
        for (digest, data) in [(&da, &a), (&ds, &small), (&dc, &c)] {
            assert_eq!(&read_blob(&reader, digest), data);
        }
        (std::fs::read(&path).unwrap(), dir)
    };
    let (one, _d1) = write(1, "one.offpack");
    let (three, _d3) = write(3, "three.offpack");
    assert!(one == three, "the bundle depends on the thread count");
}

fn package(ecosystem: &str, name: &str, filename: &str, data: &[u8]) -> offpack_bundle::Package {
    offpack_bundle::Package {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: "1.0.0".into(),
        filename: filename.into(),
        digest: Digest::of_bytes(data),
        size: data.len() as u64,
        services: vec!["web".into()],
        integrity: None,
        platform: None,
    }
}

#[test]
fn a_package_only_bundle_writes_verifies_opens_and_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pkgs.offpack");
    let wheel = bytes(21, 5000);
    let tgz = bytes(22, 700);
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    w.add_blob_bytes(&wheel).unwrap();
    w.add_blob(tgz.len() as u64, &tgz[..]).unwrap();
    let mut manifest = Manifest::new("0.1.0-test", "shop");
    manifest.packages = vec![
        package("pypi", "demo", "demo-1.0.0-py3-none-any.whl", &wheel),
        // The same file under another name: its blob is stored once.
        package(
            "pypi",
            "demo-alias",
            "demo_alias-1.0.0-py3-none-any.whl",
            &wheel,
        ),
        offpack_bundle::Package {
            integrity: Some("sha512-x".into()),
            ..package("npm", "@scope/tiny", "tiny-1.0.0.tgz", &tgz)
        },
    ];
    let written = w.finish(manifest.clone()).unwrap();
    assert_eq!(written.blobs, 2, "each package blob once, no OCI manifest");

    let report = verify(&path, &mut |_| {}).unwrap();
    assert_eq!(report.manifest.packages, manifest.packages);
    assert_eq!(report.manifest.format_version, FORMAT_VERSION);
    assert!(report.unreferenced.is_empty());
    let checked = BundleReader::open_checked(&path, None).unwrap();
    assert_eq!(read_blob(&checked.reader, &Digest::of_bytes(&tgz)), tgz);
    checked.sidecar.unwrap().run().unwrap();
    let out = dir.path().join("x");
    extract(&path, &out).unwrap();
    assert_eq!(
        std::fs::read(out.join(Digest::of_bytes(&wheel).blob_path())).unwrap(),
        wheel
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), b"[]");
}

#[test]
fn the_writer_refuses_packages_without_their_blob_or_with_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(23, 100);
    type Edit = fn(&mut offpack_bundle::Package);
    let cases: [(&str, Edit); 4] = [
        ("not added", |p| p.digest = Digest::of_bytes(b"other")),
        ("the manifest says 101", |p| p.size += 1),
        ("plain file name", |p| p.filename = "../up.whl".into()),
        ("version is empty", |p| p.version.clear()),
    ];
    for (i, (expected, edit)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.offpack"));
        let mut w = BundleWriter::create(&path, opts()).unwrap();
        w.add_blob_bytes(&data).unwrap();
        let mut manifest = Manifest::new("0.1.0-test", "shop");
        let mut p = package("pypi", "demo", "demo-1.0.0.tar.gz", &data);
        edit(&mut p);
        manifest.packages.push(p);
        let err = w.finish(manifest).unwrap_err();
        assert!(!err.is_corruption(), "{err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert!(!path.exists());
    }
}

#[test]
fn a_package_blob_changed_after_writing_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.offpack");
    // Stored uncompressed by zstd (random bytes), so the bytes can be found in the file.
    let mut x = 0x1234_5678_9abc_def1u64;
    let data: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut w = BundleWriter::create(&path, opts()).unwrap();
    w.add_blob_bytes(&data).unwrap();
    let mut manifest = Manifest::new("0.1.0-test", "shop");
    manifest
        .packages
        .push(package("npm", "tiny", "tiny-1.0.0.tgz", &data));
    w.finish(manifest).unwrap();
    std::fs::remove_file(dir.path().join("t.offpack.sha256")).unwrap();
    let mut file = std::fs::read(&path).unwrap();
    let at = file
        .windows(64)
        .position(|w| w == &data[1000..1064])
        .expect("the package bytes are stored raw");
    file[at] ^= 0xff;
    std::fs::write(&path, &file).unwrap();
    let checked = BundleReader::open_checked(&path, None).unwrap();
    let mut sink = Vec::new();
    let err = checked
        .reader
        .blob(&Digest::of_bytes(&data))
        .unwrap()
        .read_to_end(&mut sink)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(verify(&path, &mut |_| {}).unwrap_err().is_corruption());
}

/// A read from a byte in a later frame gives exactly the blob's bytes from there, across the
/// writer's 8 MiB frames and for a blob written behind a raw header frame.
#[test]
fn blob_from_reads_from_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.offpack");
    let blob = bytes(7, 20 << 20);
    let small = b"small blob".to_vec();
    let mut writer = BundleWriter::create(&path, opts()).unwrap();
    let digest = writer.add_blob_bytes(&blob).unwrap();
    let streamed = writer.add_blob(small.len() as u64, &small[..]).unwrap();
    writer.finish(Manifest::new("0.1.0", "t")).unwrap();
    let reader = BundleReader::open(&path).unwrap();
    let chunk = 8 << 20;
    for start in [
        0,
        1,
        chunk - 513,
        chunk - 512,
        chunk - 511,
        chunk,
        2 * chunk - 512,
        blob.len() - 1,
        blob.len(),
    ] {
        let mut got = Vec::new();
        reader
            .blob_from(&digest, start as u64)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == blob[start..], "from byte {start}");
    }
    let mut got = Vec::new();
    reader
        .blob_from(&streamed, 3)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, small[3..]);
    assert!(reader.blob_from(&digest, blob.len() as u64 + 1).is_err());
}
