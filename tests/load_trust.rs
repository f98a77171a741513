//! `offpack load` enforces what `offpack verify` checks: a bundle changed after signing, a signer
//! other than the required one, a `.sha256` that does not match, a hidden link entry or a lying size
//! loads nothing and retags nothing; split bundles by their base name; names from a bundle never
//! reach the terminal raw.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use offpack_bundle::testkit::{self, RawEntry};
use offpack_bundle::{BlobRef, BundleWriter, Digest, Image, Manifest, SigningKey, WriteOptions};

/// One image of a test bundle: its names and its layers (tars; their content makes the image,
/// and so its ID, unique to the test).
struct TestImage<'a> {
    refs: &'a [&'a str],
    layers: Vec<Vec<u8>>,
}

impl<'a> TestImage<'a> {
    /// An image of one layer holding one file.
    fn one(refs: &'a [&'a str], content: &str) -> Self {
        TestImage {
            refs,
            layers: vec![layer_tar(content.as_bytes())],
        }
    }
}

fn layer_tar(content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", content).unwrap();
    tar.into_inner().unwrap()
}

/// Writes a bundle of loadable one-layer images (a layer is stored the way `docker save`'s are,
/// its header in a frame of its own) and returns their IDs.
fn write_bundle(
    path: &Path,
    project: &str,
    images: &[TestImage],
    sign: Option<SigningKey>,
    split: Option<u64>,
) -> Vec<Digest> {
    let mut writer = BundleWriter::create(
        path,
        WriteOptions {
            level: 3,
            threads: 1,
            split,
            sign,
        },
    )
    .unwrap();
    let mut manifest = Manifest::new("test", project);
    let mut ids = Vec::new();
    let mut written = std::collections::HashSet::new();
    for image in images {
        let mut layers = Vec::new();
        for layer in &image.layers {
            // The same layer in two images is stored once.
            let digest = Digest::of_bytes(layer);
            if written.insert(digest.clone()) {
                writer.add_blob(layer.len() as u64, &layer[..]).unwrap();
            }
            layers.push(BlobRef {
                digest,
                size: layer.len() as u64,
            });
        }
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = writer.add_blob_bytes(&config).unwrap();
        manifest.images.push(Image {
            refs: image.refs.iter().map(|r| r.to_string()).collect(),
            id: config_digest.clone(),
            platform: "linux/amd64".into(),
            config: BlobRef {
                digest: config_digest.clone(),
                size: config.len() as u64,
            },
            layers,
            oci_manifest: None,
            registry: None,
        });
        ids.push(config_digest);
    }
    writer.finish(manifest).unwrap();
    ids
}

/// Removes the test's names and images from the engine (before, in case an earlier run left them,
/// and after).
fn remove(names: &[&str], ids: &[Digest]) {
    for name in names {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", name])
            .output();
    }
    for id in ids {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &id.to_string()])
            .output();
    }
}

fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit code 1 expected: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

fn sidecar(bundle: &Path) -> PathBuf {
    let mut path = bundle.as_os_str().to_owned();
    path.push(".sha256");
    PathBuf::from(path)
}

fn key_files(dir: &Path, name: &str) -> (SigningKey, PathBuf) {
    let (secret, public) = offpack_bundle::generate_keypair().unwrap();
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, public.to_text()).unwrap();
    (secret, path)
}

#[test]
fn a_signed_bundle_changed_after_signing_loads_nothing() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let name = "offpack-test-b-tamper:1";
    let added = "offpack-test-b-tamper:added";
    let content = "tampered signed bundle\n";
    let (secret, public) = key_files(dir.path(), "team");
    let signed = dir.path().join("signed.offpack");
    let ids = write_bundle(
        &signed,
        "p",
        &[TestImage::one(&[name], content)],
        Some(secret),
        None,
    );
    remove(&[name, added], &ids);

    // The same blobs, one tag added to offpack.json, every checksum recomputed (a new index and
    // sidecar), and the signature of the original kept.
    let tampered = dir.path().join("tampered.offpack");
    write_bundle(
        &tampered,
        "p",
        &[TestImage::one(&[name, added], content)],
        None,
        None,
    );
    let signature =
        testkit::index_of(&std::fs::read(&signed).unwrap()).unwrap()["signature"].clone();
    assert!(signature.is_object());
    let mut bytes = std::fs::read(&tampered).unwrap();
    testkit::rewrite_index(&mut bytes, |index| index["signature"] = signature).unwrap();
    std::fs::write(&tampered, &bytes).unwrap();
    std::fs::remove_file(sidecar(&tampered)).unwrap();

    let verify = run(offpack(dir.path()).args(["verify", "tampered.offpack"]));
    assert_refused(&verify, &["signature"]);
    for args in [
        vec!["load", "tampered.offpack"],
        vec![
            "load",
            "--key",
            public.to_str().unwrap(),
            "tampered.offpack",
        ],
    ] {
        let out = run(offpack(dir.path()).args(&args));
        assert_refused(&out, &["signature", "nothing was loaded"]);
        assert!(!image_exists(name) && !image_exists(added), "{args:?}");
        assert!(!image_exists(&ids[0].to_string()), "{args:?}");
    }
    remove(&[name, added], &ids);
}

#[test]
fn a_required_key_refuses_unsigned_and_other_signers() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let name = "offpack-test-b-key:1";
    let (team, team_pub) = key_files(dir.path(), "team");
    let (other, _) = key_files(dir.path(), "other");
    let refs = [name];
    let image = |refs| TestImage::one(refs, "a required key\n");
    let ids = write_bundle(
        &dir.path().join("unsigned.offpack"),
        "p",
        &[image(&refs)],
        None,
        None,
    );
    write_bundle(
        &dir.path().join("other.offpack"),
        "p",
        &[image(&refs)],
        Some(other),
        None,
    );
    write_bundle(
        &dir.path().join("team.offpack"),
        "p",
        &[image(&refs)],
        Some(team),
        None,
    );
    remove(&[name], &ids);
    let key = team_pub.to_str().unwrap();

    let out = run(offpack(dir.path()).args(["load", "--key", key, "unsigned.offpack"]));
    assert_refused(&out, &["not signed"]);
    let out = run(offpack(dir.path()).args(["load", "--key", key, "other.offpack"]));
    assert_refused(&out, &["signed by key", "not by the required key"]);
    // The site policy: OFFPACK_KEY set once requires the signature on every load.
    let out = run(offpack(dir.path())
        .env("OFFPACK_KEY", key)
        .args(["load", "unsigned.offpack"]));
    assert_refused(&out, &["not signed"]);
    assert!(!image_exists(name));

    let out = ok(offpack(dir.path())
        .env("OFFPACK_KEY", key)
        .args(["load", "team.offpack"]));
    assert!(stderr(&out).contains("signed by key"), "{}", stderr(&out));
    assert!(image_exists(name));
    remove(&[name], &ids);
}

#[test]
fn a_sidecar_mismatch_loads_and_retags_nothing() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let held = [
        "offpack-test-b-sidecar-held:1",
        "offpack-test-b-sidecar-held:2",
    ];
    let new = "offpack-test-b-sidecar-new:1";
    let bundle = dir.path().join("s.offpack");
    let ids = write_bundle(
        &bundle,
        "p",
        &[
            TestImage::one(&held, "sidecar: held\n"),
            TestImage::one(&[new], "sidecar: new\n"),
        ],
        None,
        None,
    );
    remove(&[held[0], held[1], new], &ids);
    // The engine holds the first image under one of its two names.
    ok(offpack(dir.path()).args(["load", "s.offpack"]));
    remove(&[held[1], new], &ids[1..]);
    assert!(image_exists(held[0]) && !image_exists(held[1]) && !image_exists(new));

    let good = std::fs::read_to_string(sidecar(&bundle)).unwrap();
    std::fs::write(sidecar(&bundle), format!("{}  s.offpack\n", "0".repeat(64))).unwrap();
    let out = run(offpack(dir.path()).args(["load", "s.offpack"]));
    assert_refused(&out, &["s.offpack.sha256", "copy it again"]);
    assert!(!image_exists(new), "nothing loaded");
    assert!(!image_exists(held[1]), "nothing retagged");

    // With the right sidecar the same load goes through.
    std::fs::write(sidecar(&bundle), good).unwrap();
    let out = ok(offpack(dir.path()).args(["load", "--json", "s.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["sidecar"]
            .as_str()
            .is_some_and(|s| s.ends_with("s.offpack.sha256")),
        "{report}"
    );
    assert!(image_exists(new) && image_exists(held[1]));
    remove(&[held[0], held[1], new], &ids);
}

#[test]
fn corruption_in_a_blob_load_does_not_stream_is_found_by_the_sidecar() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let names = ["offpack-test-b-unstreamed:1", "offpack-test-b-unstreamed:2"];
    let bundle = dir.path().join("c.offpack");
    // A layer large enough that its data lies in frames of its own, past its header's.
    let content: String = (0..20_000).map(|i| format!("{i:08}\n")).collect();
    let ids = write_bundle(
        &bundle,
        "p",
        &[TestImage::one(&names, &content)],
        None,
        None,
    );
    remove(&names, &ids);
    ok(offpack(dir.path()).args(["load", "c.offpack"]));
    remove(&names[1..], &[]);

    // One byte in the middle of the layer's data: the engine holds that layer, so the load would
    // not stream it; only the .sha256 beside the bundle can tell.
    damage_largest_entry(&bundle);

    let out = run(offpack(dir.path()).args(["load", "c.offpack"]));
    assert_refused(&out, &["c.offpack.sha256", "retagged"]);
    assert!(!image_exists(names[1]), "nothing retagged");
    remove(&names, &ids);
}

/// A valid bundle's entries, for assembling a broken one around them.
fn entries_of(path: &Path) -> Vec<RawEntry> {
    testkit::read_entries(path)
        .unwrap()
        .into_iter()
        .map(|(e, data)| RawEntry::regular(&e.path, data))
        .collect()
}

fn manifest_ref(entries: &[RawEntry]) -> BlobRef {
    let offpack = entries.last().unwrap();
    BlobRef {
        digest: Digest::of_bytes(&offpack.data),
        size: offpack.data.len() as u64,
    }
}

#[test]
fn a_hidden_link_entry_or_a_lying_size_loads_nothing() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let name = "offpack-test-b-structure:1";
    let good = dir.path().join("good.offpack");
    let ids = write_bundle(
        &good,
        "p",
        &[TestImage::one(&[name], "structure\n")],
        None,
        None,
    );
    remove(&[name], &ids);
    let entries = entries_of(&good);

    // A hard link to /etc/passwd between two entries, which the index does not list.
    let mut linked = entries.clone();
    let mut link = testkit::header("blobs/sha256/link", 0, b'1');
    link[157..168].copy_from_slice(b"/etc/passwd");
    testkit::set_checksum(&mut link);
    linked.insert(
        1,
        RawEntry {
            header: link,
            data: Vec::new(),
            index_path: None,
            index_size: 0,
            index_digest: None,
            raw_header: false,
        },
    );
    std::fs::write(
        dir.path().join("link.offpack"),
        testkit::assemble(&linked, manifest_ref(&linked)),
    )
    .unwrap();

    // A layer's header claims 512 bytes more than it holds (and than the index says).
    let mut lying = entries.clone();
    let layer = lying
        .iter()
        .position(|e| e.index_path.as_deref() != Some("oci-layout"))
        .unwrap();
    let path = lying[layer].index_path.clone().unwrap();
    lying[layer].header = testkit::header(&path, lying[layer].data.len() as u64 + 512, b'0');
    std::fs::write(
        dir.path().join("lying.offpack"),
        testkit::assemble(&lying, manifest_ref(&lying)),
    )
    .unwrap();

    for (bundle, needle) in [("link.offpack", "hard link"), ("lying.offpack", "bytes")] {
        let out = run(offpack(dir.path()).args(["load", bundle]));
        assert_refused(&out, &[bundle, needle, "nothing was loaded"]);
        assert!(!image_exists(name), "{bundle}");
        assert!(!image_exists(&ids[0].to_string()), "{bundle}");
    }
    remove(&[name], &ids);
}

#[test]
fn a_split_bundle_is_verified_by_its_base_name_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Content that does not compress well, for a bundle of several parts.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let content: String = (0..4_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{state:016x}\n")
        })
        .collect();
    write_bundle(
        &dir.path().join("s.offpack"),
        "p",
        &[TestImage::one(&["offpack-test-b-split:1"], &content)],
        None,
        Some(offpack_bundle::MIN_PART_SIZE),
    );
    assert!(dir.path().join("s.offpack.003").exists());
    assert!(!dir.path().join("s.offpack").exists());
    let out = ok(offpack(dir.path()).args(["verify", "s.offpack"]));
    assert!(stdout(&out).contains("OK"), "{}", stdout(&out));
    ok(offpack(dir.path()).args(["verify", "s.offpack.001"]));

    let out = run(offpack(dir.path()).args(["verify", "missing.offpack"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing.offpack: no such file"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("metadata"), "{}", stderr(&out));

    std::fs::remove_file(dir.path().join("s.offpack.002")).unwrap();
    let out = run(offpack(dir.path()).args(["verify", "s.offpack"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("s.offpack.002"), "{}", stderr(&out));
}

#[test]
fn names_from_a_bundle_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "offpack-test-b-escape:1\u{1b}]0;owned\u{7}\nfake: line";
    write_bundle(
        &dir.path().join("e.offpack"),
        "shop\u{1b}[2J",
        &[TestImage::one(&[evil], "escape\n")],
        None,
        None,
    );
    let out = ok(offpack(dir.path()).args(["inspect", "e.offpack"]));
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}') && !text.contains("\nfake"),
        "{text:?}"
    );
    assert!(text.contains("shop\\u{1b}[2J"), "{text}");
    assert!(
        text.contains("offpack-test-b-escape:1\\u{1b}]0;owned\\u{7}\\nfake: line"),
        "{text}"
    );
    // --json stays JSON, with the names as they are.
    let out = ok(offpack(dir.path()).args(["--json", "inspect", "e.offpack"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["images"][0]["refs"][0], evil);

    // load refuses the name, and its message shows it escaped.
    let out = run(offpack(dir.path()).args(["load", "e.offpack"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains('\u{1b}') && !err.contains("\nfake"),
        "{err:?}"
    );
    assert!(err.contains("\\u{1b}]0;owned"), "{err}");
}

#[test]
fn load_service_from_a_bundle_that_records_no_services_says_so() {
    // Bundles whose `rebuild` is empty (`{}`) still open; `--service` then names what is missing
    // before the engine is asked anything.
    let dir = tempfile::tempdir().unwrap();
    write_bundle(
        &dir.path().join("n.offpack"),
        "shop",
        &[TestImage::one(
            &["offpack-test-h-noservices:1"],
            "no services\n",
        )],
        None,
        None,
    );
    let out = run(offpack(dir.path()).args(["load", "--service", "web", "n.offpack"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the bundle has no service `web`; it has: no services"),
        "{err}"
    );
    assert!(!image_exists("offpack-test-h-noservices:1"), "{err}");
}

/// Bytes that do not compress (so that streaming them takes a while).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn an_image_removed_during_a_load_is_explained_and_a_second_load_finishes() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let base = "offpack-test-b-lost-base:1";
    let app = "offpack-test-b-lost-app:1";
    let base_layer = layer_tar(b"the base layer of the lost-image test\n");
    let ids = write_bundle(
        &dir.path().join("base.offpack"),
        "p",
        &[TestImage {
            refs: &[base],
            layers: vec![base_layer.clone()],
        }],
        None,
        None,
    );
    let app_ids = write_bundle(
        &dir.path().join("app.offpack"),
        "p",
        &[TestImage {
            refs: &[app],
            layers: vec![base_layer, layer_tar(&noise(200 << 20))],
        }],
        None,
        None,
    );
    remove(&[base, app], &[ids.clone(), app_ids.clone()].concat());
    ok(offpack(dir.path()).args(["load", "base.offpack"]));

    // The load leaves the base layer out of its stream (the engine holds it); the base image is
    // removed while the app's 200 MiB layer streams, before the engine imports.
    let mut child = offpack(dir.path())
        .args(["--json", "load", "app.offpack"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started = serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|e| {
            e["event"] == "start" && e["label"].as_str().is_some_and(|l| l.starts_with("load "))
        });
        seen.push(line);
        if started {
            break;
        }
    }
    ok(std::process::Command::new("docker").args(["rmi", base]));
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let err = seen.join("\n");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("the engine lost an image or layer this load relied on")
            && err.contains("run the same `offpack load` again"),
        "{err}"
    );
    assert!(!image_exists(app));

    ok(offpack(dir.path()).args(["load", "app.offpack"]));
    assert!(image_exists(app), "the second load finishes it");
    remove(&[base, app], &[ids, app_ids].concat());
}
