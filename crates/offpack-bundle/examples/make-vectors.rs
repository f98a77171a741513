//! Regenerates `bundle-spec/vectors/`: `cargo run -p offpack-bundle --example make-vectors [DIR]`.
//!
//! Each vector is `<name>.offpack` with `<name>.expect` holding `ok` or the error kind `verify` must report
//! (`BundleError::kind()`); some have a `<name>.offpack.sha256` sidecar. Output is deterministic.

use std::error::Error;
use std::path::{Path, PathBuf};

use offpack_bundle::testkit::{self, RawEntry};
use offpack_bundle::{
    BlobRef, BundleWriter, Delta, Digest, ECOSYSTEM_NPM, ECOSYSTEM_PYPI, Image, IndexEntry,
    Manifest, Package, SigningKey, WriteOptions,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/vectors"));
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let part = name
            .rsplit_once(".offpack.")
            .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()));
        if name.ends_with(".offpack")
            || name.ends_with(".expect")
            || name.ends_with(".sha256")
            || name.ends_with(".pub")
            || part
        {
            std::fs::remove_file(&p)?;
        }
    }
    let v = Vectors { dir: dir.clone() };

    // Valid bundles written by the real writer.
    let minimal = v.path("ok-minimal");
    write_sample(&minimal, Sample::Image)?;
    std::fs::remove_file(sidecar(&minimal))?;
    v.expect("ok-minimal", "ok")?;
    write_sample(&v.path("ok-with-sidecar"), Sample::Image)?;
    v.expect("ok-with-sidecar", "ok")?;
    write_sample(&v.path("ok-no-images"), Sample::Empty)?;
    std::fs::remove_file(sidecar(&v.path("ok-no-images")))?;
    v.expect("ok-no-images", "ok")?;

    // Everything else is assembled from the entries of ok-minimal.
    let entries = testkit::read_entries(&minimal)?;
    let base: Vec<RawEntry> = entries.iter().map(|(e, data)| raw(e, data)).collect();
    let manifest_ref = |entries: &[RawEntry]| -> BlobRef {
        let last = entries
            .iter()
            .rev()
            .find(|e| e.index_path.as_deref() == Some("offpack.json"));
        let data = last.map(|e| e.data.clone()).unwrap_or_default();
        BlobRef {
            digest: Digest::of_bytes(&data),
            size: data.len() as u64,
        }
    };
    let blob_pos = base.iter().position(is_blob).ok_or("no blob")?;
    let some_hex = "ab".repeat(32);

    // ok with directory entries (allowed, not indexed).
    let mut with_dirs = base.clone();
    for (i, name) in [(1, "blobs/"), (2, "blobs/sha256/")] {
        with_dirs.insert(
            i,
            RawEntry {
                index_path: None,
                ..dir_entry(name)
            },
        );
    }
    v.write(
        "ok-directories",
        &testkit::assemble(&with_dirs, manifest_ref(&with_dirs)),
        "ok",
    )?;

    let mut bad_digest = base.clone();
    let last = bad_digest[blob_pos].data.len() - 1;
    bad_digest[blob_pos].data[last] ^= 1;
    v.write(
        "bad-digest",
        &testkit::assemble(&bad_digest, manifest_ref(&bad_digest)),
        "bad-digest",
    )?;

    let good = std::fs::read(&minimal)?;
    v.write("truncated-file", &good[..good.len() / 2], "not-a-bundle")?;

    // A frame cut short in the middle of the file, the trailer kept intact.
    let blob_entry = &entries[blob_pos].0;
    let cut_start = (blob_entry.offset + blob_entry.compressed_len - 9) as usize;
    let cut_end = (blob_entry.offset + blob_entry.compressed_len) as usize;
    let mut cut = good[..cut_start].to_vec();
    cut.extend_from_slice(&good[cut_end..]);
    v.write("truncated-frame", &cut, "corrupt-frame")?;

    let mut bad_index = good.clone();
    let index_byte = bad_index.len() - 48 - 20;
    bad_index[index_byte] ^= 0x01;
    v.write("bad-index-hash", &bad_index, "bad-index")?;

    // Index consistent with its hash but wrong about an offset.
    let shifted = base.clone();
    let mut bytes = testkit::assemble(&shifted, manifest_ref(&shifted));
    rewrite_index(&mut bytes, |idx| {
        if let Some(e) = idx["entries"].get_mut(blob_pos) {
            e["offset"] = (e["offset"].as_u64().unwrap_or(0) + 1).into();
        }
    })?;
    v.write("bad-index-offset", &bytes, "bad-index")?;

    for (name, path, kind) in [
        (
            "path-traversal",
            "blobs/../../../tmp/evil",
            "path-traversal",
        ),
        ("absolute-path", "/tmp/evil", "absolute-path"),
        ("unknown-entry", "etc/passwd", "unknown-entry"),
    ] {
        let mut e = base.clone();
        e.insert(1, RawEntry::regular(path, b"evil\n".to_vec()));
        v.write(name, &testkit::assemble(&e, manifest_ref(&e)), kind)?;
    }

    for (name, flag, kind) in [
        ("symlink", b'2', "symlink"),
        ("hardlink", b'1', "hardlink"),
        ("device-file", b'3', "device-file"),
        ("fifo", b'6', "device-file"),
        ("pax-header", b'x', "bad-tar-header"),
    ] {
        let mut h = testkit::header(&format!("blobs/sha256/{some_hex}"), 0, flag);
        if flag == b'1' || flag == b'2' {
            h[157..168].copy_from_slice(b"/etc/passwd");
            testkit::set_checksum(&mut h);
        }
        let mut e = base.clone();
        e.insert(
            1,
            RawEntry {
                header: h,
                data: Vec::new(),
                index_path: None,
                index_size: 0,
                index_digest: None,
                raw_header: false,
            },
        );
        v.write(name, &testkit::assemble(&e, manifest_ref(&e)), kind)?;
    }

    let mut dup = base.clone();
    dup.insert(blob_pos + 1, dup[blob_pos].clone());
    v.write(
        "duplicate-entry",
        &testkit::assemble(&dup, manifest_ref(&dup)),
        "duplicate-entry",
    )?;

    // The header claims 512 more bytes than the data (and the index) has.
    let mut lies = base.clone();
    let real = lies[blob_pos].data.len() as u64;
    let name = lies[blob_pos].index_path.clone().unwrap_or_default();
    lies[blob_pos].header = testkit::header(&name, real + 512, b'0');
    v.write(
        "size-lies",
        &testkit::assemble(&lies, manifest_ref(&lies)),
        "size-mismatch",
    )?;

    // Raw header frames (the unknown-digest layout) are valid.
    let mut raw_headers = base.clone();
    raw_headers[blob_pos].raw_header = true;
    v.write(
        "ok-raw-header",
        &testkit::assemble(&raw_headers, manifest_ref(&raw_headers)),
        "ok",
    )?;

    let mut future = base.clone();
    let last = future.len() - 1;
    let mut json: serde_json::Value = serde_json::from_slice(&future[last].data)?;
    json["format_version"] = "2.0".into();
    future[last] = RawEntry::regular("offpack.json", serde_json::to_vec_pretty(&json)?);
    v.write(
        "unknown-major-version",
        &testkit::assemble(&future, manifest_ref(&future)),
        "unsupported-version",
    )?;

    let mut missing = base.clone();
    missing.remove(blob_pos);
    v.write(
        "missing-blob",
        &testkit::assemble(&missing, manifest_ref(&missing)),
        "missing-blob",
    )?;

    let mismatch = v.path("sidecar-mismatch");
    std::fs::write(&mismatch, &good)?;
    std::fs::write(
        sidecar(&mismatch),
        format!("{}  sidecar-mismatch.offpack\n", "0".repeat(64)),
    )?;
    v.expect("sidecar-mismatch", "sidecar-mismatch")?;

    // Format 1.1 delta bundles: the second layer is absent on purpose.
    let delta = v.path("ok-delta");
    write_sample(&delta, Sample::Delta)?;
    std::fs::remove_file(sidecar(&delta))?;
    v.expect("ok-delta", "ok")?;
    // ... and one whose other layer is missing too: only the listed layer may be absent.
    let delta_entries: Vec<RawEntry> = testkit::read_entries(&delta)?
        .iter()
        .map(|(e, data)| raw(e, data))
        .collect();
    let first_blob = delta_entries.iter().position(is_blob).ok_or("no blob")?;
    let mut missing_other = delta_entries.clone();
    missing_other.remove(first_blob);
    v.write(
        "delta-missing-other-layer",
        &testkit::assemble(&missing_other, manifest_ref(&missing_other)),
        "missing-blob",
    )?;

    // Format 1.1 signatures: `<name>.pub` is the key `verify_with_key` must require.
    let key = SigningKey::from_text(
        "offpack-ed25519-secret:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
    )?;
    let other = SigningKey::from_text(
        "offpack-ed25519-secret:Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=",
    )?;
    let signed = v.path("signed-ok");
    write_sample_with(&signed, Sample::Image, None, Some(key.clone()))?;
    std::fs::remove_file(sidecar(&signed))?;
    v.key("signed-ok", &key)?;
    v.expect("signed-ok", "ok")?;
    let by_other = v.path("signed-by-other-key");
    write_sample_with(&by_other, Sample::Image, None, Some(other))?;
    std::fs::remove_file(sidecar(&by_other))?;
    v.key("signed-by-other-key", &key)?;
    v.expect("signed-by-other-key", "bad-signature")?;
    // The signed-ok bundle with its signature replaced by the other key's (over the same manifest): the
    // index still names `key`, whose check fails.
    let other_sig = index_of(&std::fs::read(&by_other)?)?["signature"]["signature"].clone();
    let mut tampered = std::fs::read(&signed)?;
    rewrite_index(&mut tampered, |index| {
        index["signature"]["signature"] = other_sig;
    })?;
    v.write("bad-signature", &tampered, "bad-signature")?;
    v.key("bad-signature", &key)?;
    std::fs::copy(&minimal, v.path("unsigned-when-key-required"))?;
    v.key("unsigned-when-key-required", &key)?;
    v.expect("unsigned-when-key-required", "unsigned")?;

    // Format 1.1 split volumes: `ok-split.offpack.001`, `.002`, ... with a sidecar line per part.
    let split = v.path("ok-split");
    write_sample_with(&split, Sample::Image, Some(4096), None)?;
    v.expect("ok-split", "ok")?;
    let split_missing = v.path("split-missing-part");
    write_sample_with(&split_missing, Sample::Image, Some(4096), None)?;
    std::fs::remove_file(split_missing.with_extension("offpack.002"))?;
    v.expect("split-missing-part", "missing-part")?;

    // Format 1.3 packages: a bundle of two packages and no image, and two broken copies of it.
    let packages = v.path("ok-packages");
    write_sample(&packages, Sample::Packages)?;
    std::fs::remove_file(sidecar(&packages))?;
    v.expect("ok-packages", "ok")?;
    let package_entries: Vec<RawEntry> = testkit::read_entries(&packages)?
        .iter()
        .map(|(e, data)| raw(e, data))
        .collect();
    let offpack_json = package_entries.len() - 1;
    let json: serde_json::Value = serde_json::from_slice(&package_entries[offpack_json].data)?;
    let wheel_blob = format!(
        "blobs/sha256/{}",
        json["packages"][0]["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .ok_or("no package digest")?
    );
    let mut no_blob = package_entries.clone();
    no_blob.retain(|e| e.index_path.as_deref() != Some(wheel_blob.as_str()));
    v.write(
        "package-missing-blob",
        &testkit::assemble(&no_blob, manifest_ref(&no_blob)),
        "missing-blob",
    )?;
    let mut traversal = package_entries.clone();
    let mut evil = json.clone();
    evil["packages"][0]["filename"] = "../../../tmp/evil.whl".into();
    traversal[offpack_json] = RawEntry::regular("offpack.json", serde_json::to_vec_pretty(&evil)?);
    v.write(
        "package-bad-filename",
        &testkit::assemble(&traversal, manifest_ref(&traversal)),
        "bad-manifest",
    )?;

    let plain = zstd::encode_all(&b"not a bundle"[..], 3)?;
    v.write("not-a-bundle", &plain, "not-a-bundle")?;

    // Format 1.4: an image in its registry form (gzip and zstd layers, a Docker manifest from a
    // two-platform index, one platform carried), and one whose zstd layer is not its diff ID.
    write_registry_sample(&v.path("ok-registry-form"), None)?;
    v.expect("ok-registry-form", "ok")?;
    write_registry_sample(
        &v.path("registry-bad-diff-id"),
        Some(Digest::of_bytes(b"another layer")),
    )?;
    v.expect("registry-bad-diff-id", "bad-layer")?;
    println!("vectors written to {}", dir.display());
    Ok(())
}

struct Vectors {
    dir: PathBuf,
}

impl Vectors {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.offpack"))
    }
    fn expect(&self, name: &str, kind: &str) -> Result<()> {
        std::fs::write(self.dir.join(format!("{name}.expect")), format!("{kind}\n"))?;
        Ok(())
    }
    fn key(&self, name: &str, key: &SigningKey) -> Result<()> {
        std::fs::write(
            self.dir.join(format!("{name}.pub")),
            key.verifying_key().to_text(),
        )?;
        Ok(())
    }
    fn write(&self, name: &str, bytes: &[u8], kind: &str) -> Result<()> {
        std::fs::write(self.path(name), bytes)?;
        self.expect(name, kind)
    }
}

fn sidecar(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn is_blob(e: &RawEntry) -> bool {
    e.index_path
        .as_deref()
        .is_some_and(|p| p.starts_with("blobs/"))
}

fn raw(e: &IndexEntry, data: &[u8]) -> RawEntry {
    RawEntry::regular(&e.path, data.to_vec())
}

fn dir_entry(name: &str) -> RawEntry {
    RawEntry {
        header: testkit::header(name, 0, b'5'),
        data: Vec::new(),
        index_path: None,
        index_size: 0,
        index_digest: None,
        raw_header: false,
    }
}

/// The trailer's index as JSON.
fn index_of(bytes: &[u8]) -> Result<serde_json::Value> {
    Ok(testkit::index_of(bytes)?)
}

/// Replaces the trailer's index with an edited one (hash recomputed).
fn rewrite_index(bytes: &mut Vec<u8>, edit: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    Ok(testkit::rewrite_index(bytes, edit)?)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sample {
    /// No image.
    Empty,
    /// One image with two layers.
    Image,
    /// The same image as a delta bundle: the second layer is listed as absent and not written.
    Delta,
    /// Format 1.3: no image, a Python wheel and an npm tarball.
    Packages,
}

/// A small realistic image: two layer tars (one added with an unknown digest), a config listing them.
fn write_sample(path: &Path, sample: Sample) -> Result<()> {
    write_sample_with(path, sample, None, None)
}

fn write_sample_with(
    path: &Path,
    sample: Sample,
    split: Option<u64>,
    sign: Option<SigningKey>,
) -> Result<()> {
    let opts = WriteOptions {
        level: 3,
        threads: 1,
        split,
        sign,
    };
    let mut w = BundleWriter::create(path, opts)?;
    let mut manifest = Manifest::new("0.1.0", "shop");
    manifest.created = "2026-01-01T00:00:00Z".into();
    manifest.platforms = vec!["linux/amd64".into()];
    if sample == Sample::Packages {
        manifest.platforms.clear();
        // Stand-ins for the real files: what matters to the format is the bytes and the names.
        let wheel = b"PK\x05\x06 stand-in for requests-2.32.3-py3-none-any.whl".to_vec();
        let tgz = b"\x1f\x8b stand-in for left-pad-1.3.0.tgz".to_vec();
        let wd = w.add_blob_bytes(&wheel)?;
        let td = w.add_blob(tgz.len() as u64, &tgz[..])?;
        manifest.packages = vec![
            Package {
                ecosystem: ECOSYSTEM_PYPI.into(),
                name: "requests".into(),
                version: "2.32.3".into(),
                filename: "requests-2.32.3-py3-none-any.whl".into(),
                digest: wd,
                size: wheel.len() as u64,
                services: vec!["backend".into()],
                integrity: None,
                platform: Some("py3-none-any linux/amd64".into()),
            },
            Package {
                ecosystem: ECOSYSTEM_NPM.into(),
                name: "@offpack-fixture/left-pad".into(),
                version: "1.3.0".into(),
                filename: "left-pad-1.3.0.tgz".into(),
                digest: td,
                size: tgz.len() as u64,
                services: vec!["frontend".into()],
                integrity: Some(
                    // The SRI string of the stand-in bytes above.
                    "sha512-ioRrLNwxm5cwuzg1X33Xnz5tC0Q5f0ppC7F9/6Iy5DFG1A0rlbLusl1kmWFifihBWJ+W9ew4qP2/x5Uu7PM6qg==".into(),
                ),
                platform: None,
            },
        ];
    } else if sample != Sample::Empty {
        let layer1 = layer_tar("app/main.py", b"print('hello')\n")?;
        let layer2 = layer_tar("etc/motd", b"offline\n")?;
        let d1 = w.add_blob(layer1.len() as u64, &layer1[..])?;
        let d2 = if sample == Sample::Delta {
            let d2 = Digest::of_bytes(&layer2);
            manifest.delta = Some(Delta {
                base: "the far side's engine had shop_backend:previous".into(),
                absent_layers: vec![d2.clone()],
            });
            d2
        } else {
            w.add_blob_bytes(&layer2)?
        };
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["python", "main.py"]},
            "rootfs": {"type": "layers", "diff_ids": [d1.to_string(), d2.to_string()]},
        });
        let config = serde_json::to_vec(&config)?;
        let cd = w.add_blob_bytes(&config)?;
        manifest.images.push(Image {
            refs: vec!["shop_backend:latest".into()],
            id: cd.clone(),
            platform: "linux/amd64".into(),
            config: BlobRef {
                digest: cd,
                size: config.len() as u64,
            },
            layers: vec![
                BlobRef {
                    digest: d1,
                    size: layer1.len() as u64,
                },
                BlobRef {
                    digest: d2,
                    size: layer2.len() as u64,
                },
            ],
            oci_manifest: None,
            registry: None,
        });
    }
    w.finish(manifest)?;
    Ok(())
}

/// [`testkit::add_registry_image`] with two layers; `second_diff_id` replaces the second's.
fn write_registry_sample(path: &Path, second_diff_id: Option<Digest>) -> Result<()> {
    let opts = WriteOptions {
        level: 3,
        threads: 1,
        ..WriteOptions::default()
    };
    let mut w = BundleWriter::create(path, opts)?;
    let layer1 = layer_tar("app/main.py", b"print('hello')\n")?;
    let layer2 = layer_tar("etc/motd", b"offline\n")?;
    let layers = testkit::gzip_then_zstd(&layer1, &layer2);
    let diff_ids = second_diff_id.map(|d| vec![Digest::of_bytes(&layer1), d]);
    let image = testkit::add_registry_image(
        &mut w,
        "registry.example/team/app",
        "1.0",
        &layers,
        &["linux/amd64", "linux/arm64"],
        diff_ids,
    )?;
    let mut manifest = Manifest::new("0.1.0", "shop");
    manifest.created = "2026-01-01T00:00:00Z".into();
    manifest.platforms = vec!["linux/amd64".into()];
    manifest.images.push(image);
    w.finish(manifest)?;
    Ok(())
}

fn layer_tar(name: &str, content: &[u8]) -> Result<Vec<u8>> {
    Ok(testkit::layer_tar(name, content))
}
