//! `zstd -dc bundle | docker load` against a real engine. Needs docker and zstd: run with
//! `cargo test -p offpack-bundle --test docker -- --ignored --test-threads=1` (in parallel, a `docker save`
//! and a `docker load` of the tests can disturb each other).

use std::process::Command;

use offpack_bundle::{BlobRef, BundleWriter, Image, Manifest, WriteOptions, testkit};

const TAG: &str = "offpack-bundle-selftest:v1";

fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let content = b"hello from an offpack bundle\n";
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &content[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
#[ignore = "needs a docker engine"]
fn docker_loads_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.offpack");
    let layer = layer_tar();
    let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
    let ld = w.add_blob(layer.len() as u64, &layer[..]).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]},
        "history": [{"created_by": "offpack test"}],
    }))
    .unwrap();
    let layers = vec![BlobRef {
        digest: ld,
        size: layer.len() as u64,
    }];
    let mut m = Manifest::new("0", "selftest");
    let image = testkit::add_image(&mut w, &[TAG], &config, layers).unwrap();
    let cd = image.id.clone();
    m.images.push(image);
    w.finish(m).unwrap();

    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | docker load", path.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("Loaded image: {TAG}")), "{stdout}");
    let id = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", TAG])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", TAG]).output();
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), cd.to_string());
}

/// The legacy `docker save` layout streamed into a bundle with `add_blob` (digest unknown up front), then
/// verified and loaded back under a new tag. Uses `OFFPACK_TEST_IMAGE` (default `python:3.11-slim`), which
/// must already be in the engine.
#[test]
#[ignore = "needs a docker engine with the image loaded"]
fn docker_save_streams_into_a_bundle_and_loads_back() {
    use std::collections::HashMap;
    use std::io::Read;
    use std::process::Stdio;

    use offpack_bundle::Digest;

    let image = std::env::var("OFFPACK_TEST_IMAGE").unwrap_or_else(|_| "python:3.11-slim".into());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.offpack");
    let mut child = Command::new("docker")
        .args(["save", &image])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut archive = tar::Archive::new(child.stdout.take().unwrap());
    let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
    let started = std::time::Instant::now();
    // Path in the export → blob written.
    let mut written: HashMap<String, BlobRef> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut docker_manifest = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let size = entry.header().size().unwrap();
        match entry.header().entry_type() {
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let resolved = std::path::Path::new(&name).parent().unwrap().join(target);
                let resolved = resolved
                    .to_string_lossy()
                    .replace("../", "")
                    .trim_start_matches("./")
                    .to_owned();
                links.insert(
                    name,
                    resolved
                        .rsplit_once("/layer.tar")
                        .map_or(resolved.clone(), |(d, _)| {
                            format!("{}/layer.tar", d.rsplit('/').next().unwrap_or(d))
                        }),
                );
            }
            tar::EntryType::Regular
                if name.ends_with("/layer.tar")
                    || name.ends_with(".json") && !name.contains('/') =>
            {
                if name == "manifest.json" {
                    entry.read_to_end(&mut docker_manifest).unwrap();
                    continue;
                }
                let d = w.add_blob(size, &mut entry).unwrap();
                written.insert(name, BlobRef { digest: d, size });
            }
            _ => {}
        }
    }
    assert!(child.wait().unwrap().success());
    let resolve = |p: &str| -> BlobRef {
        let p = links.get(p).map_or(p, String::as_str);
        written
            .get(p)
            .unwrap_or_else(|| panic!("{p} not in export"))
            .clone()
    };
    let docker: serde_json::Value = serde_json::from_slice(&docker_manifest).unwrap();
    let item = &docker[0];
    let config = resolve(item["Config"].as_str().unwrap());
    let layers: Vec<BlobRef> = item["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| resolve(l.as_str().unwrap()))
        .collect();
    let tag = "offpack-bundle-selftest:saved";
    let mut m = Manifest::new("0", "selftest");
    m.images.push(Image {
        refs: vec![tag.into()],
        id: config.digest.clone(),
        platform: "linux/amd64".into(),
        config,
        layers,
        oci_manifest: None,
        registry: None,
    });
    let result = w.finish(m).unwrap();
    let write_time = started.elapsed();
    let started = std::time::Instant::now();
    let report = offpack_bundle::verify(&path, &mut |_| {}).unwrap();
    eprintln!(
        "{image}: {} bytes → {} bytes in {write_time:?}, verified in {:?}",
        result.uncompressed,
        result.size,
        started.elapsed()
    );
    assert_eq!(report.blobs, result.blobs);

    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | docker load", path.display()))
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", tag]).output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(tag), "{stdout}");
    let _ = Digest::of_bytes(b"");
}

/// A delta bundle (format 1.1) loads with `zstd -dc | docker load` when the engine holds the absent layer:
/// the classic store skips a layer whose chain it has without opening the (missing) file.
#[test]
#[ignore = "needs a docker engine"]
fn docker_loads_a_delta_bundle_over_its_base() {
    const BASE: &str = "offpack-bundle-selftest:delta-base";
    const NEXT: &str = "offpack-bundle-selftest:delta-next";
    let dir = tempfile::tempdir().unwrap();
    let base_layer = layer_tar();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let content = b"only in the delta\n";
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "next.txt", &content[..]).unwrap();
    let next_layer = b.into_inner().unwrap();
    let l1 = offpack_bundle::Digest::of_bytes(&base_layer);
    let l2 = offpack_bundle::Digest::of_bytes(&next_layer);

    let write = |name: &str, tag: &str, layers: &[(&[u8], bool)]| {
        let path = dir.path().join(name);
        let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
        let mut refs = Vec::new();
        let mut absent = Vec::new();
        for (data, carried) in layers {
            let d = offpack_bundle::Digest::of_bytes(data);
            if *carried {
                w.add_blob(data.len() as u64, *data).unwrap();
            } else {
                absent.push(d.clone());
            }
            refs.push(BlobRef {
                digest: d,
                size: data.len() as u64,
            });
        }
        let diff_ids: Vec<String> = refs.iter().map(|r| r.digest.to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "offpack test"})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut m = Manifest::new("0", "selftest");
        if !absent.is_empty() {
            m.delta = Some(offpack_bundle::Delta {
                base: BASE.into(),
                absent_layers: absent,
            });
        }
        let image = testkit::add_image(&mut w, &[tag], &config, refs).unwrap();
        let cd = image.id.clone();
        m.images.push(image);
        w.finish(m).unwrap();
        offpack_bundle::verify(&path, &mut |_| {}).unwrap();
        (path, cd)
    };
    let load = |path: &std::path::Path| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -dc '{}' | docker load", path.display()))
            .output()
            .unwrap()
    };
    let (base_path, _) = write("base.offpack", BASE, &[(&base_layer, true)]);
    let (delta_path, next_id) = write(
        "next.offpack",
        NEXT,
        &[(&base_layer, false), (&next_layer, true)],
    );
    assert!(!carries(&delta_path, &l1));
    assert!(carries(&delta_path, &l2));
    let base_out = load(&base_path);
    let out = load(&delta_path);
    let id = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", NEXT])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", NEXT, BASE]).output();
    assert!(base_out.status.success(), "{:?}", base_out);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        next_id.to_string()
    );
}

fn carries(path: &std::path::Path, d: &offpack_bundle::Digest) -> bool {
    offpack_bundle::BundleReader::open(path)
        .unwrap()
        .contains(d)
}
