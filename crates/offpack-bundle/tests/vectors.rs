//! Every vector in `bundle-spec/vectors/` gives the result its `.expect` file names.

use std::path::{Path, PathBuf};

/// A test vector: the bundle (or the first part of a split one), its name, the result its
/// `.expect` file names, and the key it must be verified against (`<name>.pub`), if any.
struct Vector {
    path: PathBuf,
    name: String,
    expected: String,
    key: Option<offpack_bundle::VerifyingKey>,
}

/// Every vector of `bundle-spec/vectors/`, sorted by file name.
fn vectors() -> Vec<Vector> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/vectors");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            let stem = name
                .strip_suffix(".offpack")
                .or_else(|| name.strip_suffix(".offpack.001"))?;
            let expect_path = dir.join(format!("{stem}.expect"));
            let expected = std::fs::read_to_string(&expect_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()))
                .trim()
                .to_owned();
            let key = std::fs::read_to_string(dir.join(format!("{stem}.pub")))
                .ok()
                .map(|text| offpack_bundle::VerifyingKey::from_text(&text).unwrap());
            Some(Vector {
                path,
                name,
                expected,
                key,
            })
        })
        .collect()
}

#[test]
fn every_vector_gives_its_expected_result() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for Vector {
        path,
        expected,
        key,
        ..
    } in vectors()
    {
        let result = match &key {
            Some(key) => offpack_bundle::verify_with_key(&path, key, &mut |_| {}),
            None => offpack_bundle::verify(&path, &mut |_| {}),
        };
        let actual = match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                assert!(
                    e.is_corruption(),
                    "{}: {e} is not classed as corruption",
                    path.display()
                );
                format!("{} ({e})", e.kind())
            }
        };
        let kind = actual.split(' ').next().unwrap_or("");
        if kind != expected {
            failures.push(format!(
                "{}: expected {expected}, got {actual}",
                path.display()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} vectors found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_vectors_open_and_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/vectors");
    let reader = offpack_bundle::BundleReader::open(&dir.join("ok-minimal.offpack")).unwrap();
    assert_eq!(reader.manifest().images.len(), 1);
    assert_eq!(reader.manifest().images[0].refs, ["shop_backend:latest"]);
    let err =
        offpack_bundle::BundleReader::open(&dir.join("unknown-major-version.offpack")).unwrap_err();
    assert!(
        err.to_string().contains("2.0") && err.to_string().contains("1.x"),
        "{err}"
    );
}

#[test]
fn the_package_vector_lists_its_packages_and_reads_their_blobs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/vectors");
    let checked =
        offpack_bundle::BundleReader::open_checked(&dir.join("ok-packages.offpack"), None).unwrap();
    let manifest = checked.reader.manifest();
    assert!(manifest.images.is_empty());
    assert_eq!(manifest.format_version, "1.4");
    let names: Vec<(&str, &str)> = manifest
        .packages
        .iter()
        .map(|p| (p.ecosystem.as_str(), p.filename.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("pypi", "requests-2.32.3-py3-none-any.whl"),
            ("npm", "left-pad-1.3.0.tgz")
        ]
    );
    assert!(manifest.packages[1].integrity.is_some());
    for p in &manifest.packages {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut checked.reader.blob(&p.digest).unwrap(), &mut data)
            .unwrap();
        assert_eq!(data.len() as u64, p.size);
    }
    let err =
        offpack_bundle::BundleReader::open_checked(&dir.join("package-bad-filename.offpack"), None)
            .unwrap_err();
    assert!(err.to_string().contains("evil.whl"), "{err}");
}

#[test]
fn extracting_vectors_never_writes_outside_the_destination() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundle-spec/vectors");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // Signature vectors expect a result that depends on the key given, which extract does not take.
        if path.extension().and_then(|e| e.to_str()) != Some("offpack")
            || path.with_extension("pub").exists()
        {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expect")).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("a/b/dest");
        let result = offpack_bundle::extract(&path, &dest);
        assert_eq!(
            result.is_ok(),
            expected.trim() == "ok",
            "{}: {:?}",
            path.display(),
            result.err()
        );
        // Only `a/b/dest` exists under the root, and only regular files and the blobs directories under it.
        let mut stack = vec![root.path().to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let kind = e.file_type().unwrap();
                assert!(
                    !kind.is_symlink(),
                    "{}: link {}",
                    path.display(),
                    p.display()
                );
                if kind.is_dir() {
                    let rel = p
                        .strip_prefix(root.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    assert!(
                        [
                            "a",
                            "a/b",
                            "a/b/dest",
                            "a/b/dest/blobs",
                            "a/b/dest/blobs/sha256"
                        ]
                        .contains(&rel.as_str()),
                        "{}: unexpected directory {rel}",
                        path.display()
                    );
                    stack.push(p);
                } else {
                    assert!(
                        p.starts_with(&dest),
                        "{}: wrote {}",
                        path.display(),
                        p.display()
                    );
                }
            }
        }
    }
}

/// What `offpack load` relies on: `open_checked`, then reading every blob, then the sidecar check,
/// refuses every vector `verify` refuses and accepts every valid one; the check before reading any
/// blob data already refuses each vector whose fault is outside the blob data.
#[test]
fn checked_open_and_reads_refuse_what_verify_refuses() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for Vector {
        path,
        name,
        expected,
        key,
    } in vectors()
    {
        let before_data = offpack_bundle::BundleReader::open_checked(&path, key.as_ref());
        let result = before_data.and_then(|checked| {
            for e in &checked.reader.index().entries {
                let mut sink = Vec::new();
                std::io::Read::read_to_end(&mut checked.reader.entry(&e.path)?, &mut sink)
                    .map_err(|err| offpack_bundle::BundleError::Source {
                        what: e.path.clone(),
                        source: err,
                    })?;
            }
            if let Some(sidecar) = checked.sidecar {
                sidecar.run()?;
            }
            Ok(())
        });
        // Faults that only reading the data of a blob (or the whole file) can find.
        let in_blob_data = ["bad-digest", "truncated-frame", "sidecar-mismatch"];
        match (&result, expected.as_str()) {
            (Ok(()), "ok") => {}
            // A registry-form layer that does not decompress to its diff ID (format 1.4): reading
            // its blob only checks the compressed digest; the engine checks the diff ID as it
            // loads (`docker load` refuses the layer), and `verify` decompresses every layer.
            (Ok(()), "bad-layer") => {}
            (Err(e), "ok") => failures.push(format!("{name}: valid, but refused: {e}")),
            (Ok(()), _) => failures.push(format!("{name}: accepted, verify says {expected}")),
            (Err(_), _) => {
                let early = offpack_bundle::BundleReader::open_checked(&path, key.as_ref());
                if early.is_ok() && !in_blob_data.contains(&expected.as_str()) {
                    failures.push(format!(
                        "{name}: {expected} is outside the blob data but passed the check before it"
                    ));
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} vectors");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
