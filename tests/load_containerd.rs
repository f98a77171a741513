//! `offpack load --containerd` into a containerd this test starts itself (`/usr/bin/containerd`
//! with its root, state and socket in a temporary directory, the CRI plugin off), checked with
//! the real `ctr`: the names and the bundle's manifest digests, the blobs with their garbage
//! collection labels, the committed snapshots, and a container run from the loaded image.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::containerd::Containerd;
use common::*;
use sha2::{Digest as _, Sha256};

/// A two-layer image FROM scratch whose second layer is a static `tini` (so that a container
/// of it runs), under a name of this test's own, and a compose project using it; removed from the
/// engine when dropped.
struct TestImage {
    name: String,
    project: tempfile::TempDir,
}

impl TestImage {
    fn build(tag: &str) -> TestImage {
        TestImage::build_with(tag, "")
    }

    /// The image under the same name with `extra` in its file: another image.
    fn build_with(tag: &str, extra: &str) -> TestImage {
        require_engine();
        let tini = Path::new("/usr/bin/tini-static");
        assert!(
            tini.exists(),
            "{} is missing: run `scripts/test-env up` (it installs tini)",
            tini.display()
        );
        let name = format!("offpack-test-ctd-{}-{tag}:1", std::process::id());
        let project = tempfile::tempdir().expect("tempdir");
        let ctx = project.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::copy(tini, ctx.join("tini")).unwrap();
        std::fs::write(ctx.join("hello.txt"), format!("hello from {name}\n{extra}")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            // The file of this image's own first: the classic builder's cache then shares no
            // step with another test's image, whose removal would take the step away.
            "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY tini /tini\n",
        )
        .unwrap();
        ok(Command::new("docker")
            .args(["build", "-q", "-t", &name])
            .arg(&ctx));
        std::fs::write(
            project.path().join("compose.yaml"),
            format!("services:\n  app:\n    image: {name}\n"),
        )
        .unwrap();
        TestImage { name, project }
    }

    fn dir(&self) -> &Path {
        self.project.path()
    }

    /// The fully qualified name containerd gets.
    fn qualified(&self) -> String {
        format!("docker.io/library/{}", self.name)
    }

    fn bundle(&self, file: &str) -> PathBuf {
        ok(offpack(self.dir()).args(["bundle", "-o", file]));
        self.dir().join(file)
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .output();
    }
}

/// The manifest digest, config digest and layer digests of the bundle's only image, as its
/// `index.json` and OCI manifest say.
fn bundle_image(bundle: &Path) -> (String, String, Vec<String>) {
    let reader = offpack_bundle::BundleReader::open(bundle).expect("open bundle");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader.entry("index.json").unwrap(), &mut text).unwrap();
    let index: serde_json::Value = serde_json::from_str(&text).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let digest = manifests[0]["digest"].as_str().unwrap().to_string();
    let manifest: offpack_bundle::Digest = digest.parse().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader.blob(&manifest).unwrap(), &mut text).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    (digest, config, layers)
}

/// The chain ID of `diff_ids`, computed here as the OCI image spec defines it.
fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for diff in &diff_ids[1..] {
        chain = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {diff}").as_bytes()))
        );
    }
    chain
}

fn load(dir: &Path, containerd: &Containerd, extra: &[&str], bundle: &Path) -> Output {
    run(offpack(dir)
        .args([
            "load",
            "--json",
            "--containerd",
            "--address",
            containerd.address(),
            "--namespace",
            "k8s.io",
            "--snapshotter",
            "overlayfs",
        ])
        .args(extra)
        .arg(bundle))
}

fn report(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "load failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("load --json")
}

#[test]
fn a_loaded_image_is_named_labelled_unpacked_and_runs_and_a_second_load_sends_nothing() {
    let image = TestImage::build("run");
    let bundle = image.bundle("b.offpack");
    let (manifest, config, layers) = bundle_image(&bundle);
    assert_eq!(layers.len(), 2);
    let containerd = Containerd::start();

    let first = report(&load(image.dir(), &containerd, &[], &bundle));
    assert_eq!(first["loaded"], serde_json::json!([image.name]));
    let details = &first["containerd"];
    assert_eq!(details["blobs_written"], 4, "two layers, config, manifest");
    assert_eq!(details["layers_unpacked"], 2);
    assert_eq!(
        details["images"],
        serde_json::json!([{"name": image.qualified(), "digest": manifest, "change": "created"}])
    );

    // The name, with the bundle's manifest digest.
    let images = containerd.ctr_text(&["images", "ls"]);
    let line = images
        .lines()
        .find(|l| l.starts_with(&format!("{} ", image.qualified())))
        .unwrap_or_else(|| panic!("no image {} in:\n{images}", image.qualified()));
    assert!(line.contains(&manifest), "{line}");
    // Complete and unpacked, as containerd itself sees it.
    let check = containerd.ctr_text(&["images", "check"]);
    assert!(
        check.lines().any(|l| l.starts_with(&image.qualified())
            && l.contains("complete (3/3)")
            && l.trim_end().ends_with("true")),
        "{check}"
    );

    // Every blob, with the labels that keep it.
    let content = containerd.ctr_text(&["content", "ls"]);
    let labels_of = |digest: &str| -> String {
        content
            .lines()
            .find(|l| l.starts_with(digest))
            .unwrap_or_else(|| panic!("no blob {digest} in:\n{content}"))
            .to_string()
    };
    let top = chain_id(&layers);
    assert!(
        labels_of(&manifest).contains(&format!("containerd.io/gc.ref.content.config={config}"))
    );
    assert!(
        labels_of(&manifest).contains(&format!("containerd.io/gc.ref.content.l.1={}", layers[1]))
    );
    assert!(labels_of(&config).contains(&format!("containerd.io/gc.ref.snapshot.overlayfs={top}")));
    for layer in &layers {
        assert!(labels_of(layer).contains(&format!("containerd.io/uncompressed={layer}")));
    }

    // Both chain IDs committed; the lease gone.
    let snapshots = containerd.ctr_text(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    for (chain, parent) in [(&layers[0], ""), (&top, layers[0].as_str())] {
        assert!(
            snapshots.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.first() == Some(&chain.as_str())
                    && fields.last() == Some(&"Committed")
                    && (parent.is_empty() || fields.get(1) == Some(&parent))
            }),
            "no committed snapshot {chain} in:\n{snapshots}"
        );
    }
    assert_no_lease_left(&containerd);

    // A container of the image runs (runc, overlayfs): the unpacked root holds /tini.
    let id = format!("offpack-test-{}", std::process::id());
    assert_tini_runs(&containerd, &image.qualified(), &id);

    // A second load finds everything and changes nothing.
    let second = report(&load(image.dir(), &containerd, &[], &bundle));
    assert_eq!(second["loaded"], serde_json::json!([]));
    assert_eq!(second["already_present"], serde_json::json!([image.name]));
    assert_eq!(second["bytes_streamed"], 0);
    let details = &second["containerd"];
    assert_eq!(details["blobs_written"], 0);
    assert_eq!(details["blobs_present"], 4);
    assert_eq!(details["layers_unpacked"], 0);
    assert_eq!(details["images"][0]["change"], "unchanged");
}

#[test]
fn a_bundle_that_fails_its_checks_names_nothing_and_leaves_nothing() {
    let image = TestImage::build("refused");
    let bundle = image.bundle("b.offpack");
    let containerd = Containerd::start();
    let empty = |what: &[&str]| containerd.ctr_text(what).lines().count() <= 1;

    // Not signed by the required key: refused before containerd hears of it.
    ok(offpack(image.dir()).args(["keygen", "-o", "team"]));
    let out = load(image.dir(), &containerd, &["--key", "team.pub"], &bundle);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not signed"), "{}", stderr(&out));
    assert!(empty(&["content", "ls"]) && empty(&["leases", "ls"]));
    assert!(empty(&["images", "ls"]));

    // A .sha256 that does not match: what was written is never named, and goes with the lease.
    let sidecar = image.dir().join("b.offpack.sha256");
    std::fs::write(&sidecar, format!("{}  b.offpack\n", "0".repeat(64))).unwrap();
    let out = load(image.dir(), &containerd, &[], &bundle);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("Nothing was named in containerd") && text.contains("b.offpack.sha256"),
        "{text}"
    );
    assert!(empty(&["images", "ls"]) && empty(&["leases", "ls"]));
    // containerd's garbage collector runs shortly after the lease went.
    let since = Instant::now();
    while !(empty(&["content", "ls"]) && empty(&["snapshots", "--snapshotter", "overlayfs", "ls"]))
    {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "containerd kept what the refused load wrote"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_missing_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::build("nosocket");
    let bundle = image.bundle("b.offpack");
    let socket = dir.path().join("containerd.sock");
    let out = run(offpack(image.dir())
        .args(["load", "--containerd", "--address"])
        .arg(&socket)
        .arg(&bundle));
    assert!(!out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("cannot reach containerd at {}", socket.display()))
            && text.contains("is it running?")
            && text.contains("--address"),
        "{text}"
    );
}

#[test]
fn a_newer_bundle_moves_the_name_to_its_image() {
    let containerd = Containerd::start();
    let first = TestImage::build("moved");
    let old = first.bundle("old.offpack");
    let (old_manifest, _, _) = bundle_image(&old);
    report(&load(first.dir(), &containerd, &[], &old));
    drop(first);

    let second = TestImage::build_with("moved", "a newer build\n");
    let new = second.bundle("new.offpack");
    let (new_manifest, _, _) = bundle_image(&new);
    assert_ne!(old_manifest, new_manifest);
    let loaded = report(&load(second.dir(), &containerd, &[], &new));
    assert_eq!(
        loaded["containerd"]["images"],
        serde_json::json!([{"name": second.qualified(), "digest": new_manifest, "change": "updated"}])
    );
    let images = containerd.ctr_text(&["images", "ls"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(&second.qualified()) && l.contains(&new_manifest)),
        "{images}"
    );
}

#[test]
fn a_damaged_blob_stops_the_load_and_names_nothing() {
    let image = TestImage::build("damaged");
    let bundle = image.bundle("d.offpack");
    // No .sha256: the damage is found as the blob streams, by its digest.
    std::fs::remove_file(image.dir().join("d.offpack.sha256")).unwrap();
    let largest = damage_largest_entry(&bundle);

    let containerd = Containerd::start();
    let out = load(image.dir(), &containerd, &[], &bundle);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed check: {}",
        stderr(&out)
    );
    let text = stderr(&out);
    assert!(
        text.contains(
            largest["path"]
                .as_str()
                .unwrap()
                .trim_start_matches("blobs/sha256/")
        ) && text.contains("Nothing was named in containerd"),
        "{text}"
    );
    let empty = |what: &[&str]| containerd.ctr_text(what).lines().count() <= 1;
    assert!(empty(&["images", "ls"]) && empty(&["leases", "ls"]));
}

/// A bundle of one image of 128 MiB of random bytes (they do not compress: writing them into
/// containerd takes long enough to break in), under a name of this test's own, removed from the
/// engine when the guard drops.
struct SlowBundle {
    name: String,
    project: tempfile::TempDir,
}

impl SlowBundle {
    fn make(tag: &str) -> SlowBundle {
        require_engine();
        let name = format!("offpack-test-ctd-{}-{tag}:1", std::process::id());
        build_random_image(&name, &[128 << 20]);
        let project = project_running("app", &name);
        ok(offpack(project.path()).args(["bundle", "-o", "slow.offpack"]));
        SlowBundle { name, project }
    }

    /// Starts `offpack load --containerd` of it and returns once the blob writes began, with
    /// the rest of its stderr to read and what it printed so far.
    fn start_load(&self, containerd: &Containerd) -> (Child, StderrLines, String) {
        start_load(self.project.path(), "slow.offpack", containerd)
    }
}

type StderrLines = std::io::Lines<std::io::BufReader<std::process::ChildStderr>>;

/// Starts `offpack load --containerd` of `bundle` in `dir` and returns once the blob writes
/// began (every blob containerd holds was looked up), with the rest of its stderr to read and
/// what it printed so far.
fn start_load(dir: &Path, bundle: &str, containerd: &Containerd) -> (Child, StderrLines, String) {
    let mut child = offpack(dir)
        .args(["load", "--containerd", "--address", containerd.address()])
        .arg(bundle)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start offpack load");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stderr.take().expect("stderr"),
    ));
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("write ") {
            break;
        }
    }
    (child, lines, seen)
}

impl Drop for SlowBundle {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .output();
    }
}

/// Waits for `child`, adding the rest of its stderr to `seen`; whether it succeeded.
fn finish(mut child: Child, lines: StderrLines, seen: &mut String) -> bool {
    for line in lines {
        seen.push_str(&line.expect("read stderr"));
        seen.push('\n');
    }
    let status = child.wait().expect("wait for offpack");
    eprintln!("{seen}");
    status.success()
}

/// Blobs and snapshots containerd holds but no name does (an interrupted load's, say) are found
/// by the next load and not written again: its lease keeps them from then on, so containerd's
/// garbage collection, running meanwhile, cannot take them from under the name it gives.
#[test]
fn what_a_load_finds_in_containerd_stays_until_it_is_named() {
    let image = TestImage::build("kept");
    let small = image.bundle("small.offpack");
    let slow = SlowBundle::make("kept-slow");
    // One bundle of both: the small image's blobs are found, the slow one's take a while.
    std::fs::write(
        slow.project.path().join("compose.yaml"),
        format!(
            "services:\n  app:\n    image: {}\n  small:\n    image: {}\n",
            slow.name, image.name
        ),
    )
    .unwrap();
    ok(offpack(slow.project.path()).args(["bundle", "-o", "both.offpack"]));
    let containerd = Containerd::start();
    report(&load(image.dir(), &containerd, &[], &small));

    let (child, lines, mut seen) = start_load(slow.project.path(), "both.offpack", &containerd);
    // The name goes while the load writes, and garbage collection runs at once: now only the
    // load's lease holds the small image's blobs.
    containerd.ctr(&["images", "rm", "--sync", &image.qualified()]);
    assert!(finish(child, lines, &mut seen), "the load failed: {seen}");

    let check = containerd.ctr_text(&["images", "check"]);
    assert!(
        check.lines().any(|l| l.starts_with(&image.qualified())
            && l.contains("complete (3/3)")
            && l.trim_end().ends_with("true")),
        "the small image is named again, complete and unpacked:\n{check}"
    );
    let id = format!("offpack-test-kept-{}", std::process::id());
    assert_tini_runs(&containerd, &image.qualified(), &id);
    assert_no_lease_left(&containerd);
}

/// Two loads of one bundle at once (two nodes' scripts sharing a containerd, or a retry while
/// the first still runs): the second waits for the first's write of each blob they share, then
/// finds it there; both succeed.
#[test]
fn two_loads_of_one_bundle_at_once_both_succeed() {
    let bundle = SlowBundle::make("twice");
    let containerd = Containerd::start();
    let (first, first_lines, mut first_seen) = bundle.start_load(&containerd);
    // Drained meanwhile, so that the first load never waits on a full pipe.
    let first = std::thread::spawn(move || {
        let ok = finish(first, first_lines, &mut first_seen);
        (ok, first_seen)
    });
    let (second, second_lines, mut second_seen) = bundle.start_load(&containerd);
    let second_ok = finish(second, second_lines, &mut second_seen);
    let (first_ok, first_seen) = first.join().expect("the first load's reader");
    assert!(first_ok, "the first load failed: {first_seen}");
    assert!(second_ok, "the second load failed: {second_seen}");
    let qualified = format!("docker.io/library/{}", bundle.name);
    let check = containerd.ctr_text(&["images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(&qualified) && l.trim_end().ends_with("true")),
        "{check}"
    );
    assert_eq!(containerd.ctr_text(&["leases", "ls"]).lines().count(), 1);
}

#[test]
fn an_interrupted_load_deletes_its_lease_and_names_nothing() {
    let bundle = SlowBundle::make("interrupted");
    let containerd = Containerd::start();
    let (child, lines, mut seen) = bundle.start_load(&containerd);
    ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    assert!(!finish(child, lines, &mut seen));
    assert!(
        seen.contains("interrupted: the load's lease is deleted"),
        "{seen}"
    );
    let empty = |what: &[&str]| containerd.ctr_text(what).lines().count() <= 1;
    assert!(empty(&["images", "ls"]) && empty(&["leases", "ls"]));
}

#[test]
fn containerd_stopping_mid_load_is_said_plainly() {
    let bundle = SlowBundle::make("stopped");
    let mut containerd = Containerd::start();
    let (child, lines, mut seen) = bundle.start_load(&containerd);
    containerd.child.kill().expect("kill containerd");
    assert!(!finish(child, lines, &mut seen));
    assert!(
        seen.contains(&format!(
            "containerd at {} did not answer",
            containerd.address()
        )) && seen.contains("did it stop?")
            && seen.contains("writing blob sha256:")
            && seen.contains(&format!("loading image {}", bundle.name)),
        "{seen}"
    );
}

#[test]
fn the_native_snapshotter_gets_the_layers_when_asked() {
    let image = TestImage::build("native");
    let bundle = image.bundle("n.offpack");
    let (_, config, layers) = bundle_image(&bundle);
    let containerd = Containerd::start();
    let out = run(offpack(image.dir())
        .args(["load", "--containerd", "--address", containerd.address()])
        .args(["--snapshotter", "native"])
        .arg(&bundle));
    assert!(out.status.success(), "{}", stderr(&out));
    let top = chain_id(&layers);
    let snapshots = containerd.ctr_text(&["snapshots", "--snapshotter", "native", "ls"]);
    assert!(
        snapshots.lines().any(|l| l.starts_with(&top)),
        "{snapshots}"
    );

    // A snapshotter containerd does not have: said before anything is written.
    let out = run(offpack(image.dir())
        .args(["load", "--containerd", "--address", containerd.address()])
        .args(["--snapshotter", "nope"])
        .arg(&bundle));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("containerd has no snapshotter nope ready"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("write "), "{}", stderr(&out));
    let overlay = containerd.ctr_text(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    assert_eq!(
        overlay.lines().count(),
        1,
        "nothing in overlayfs: {overlay}"
    );
    let content = containerd.ctr_text(&["content", "ls"]);
    assert!(
        content.lines().any(|l| l.starts_with(&config)
            && l.contains(&format!("containerd.io/gc.ref.snapshot.native={top}"))),
        "{content}"
    );
}

#[test]
fn a_delta_bundle_loads_once_containerd_has_its_base() {
    require_engine();
    let pid = std::process::id();
    let base = format!("offpack-test-ctd-{pid}-base:1");
    let app = format!("offpack-test-ctd-{pid}-app:1");
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Command::new("docker").args(["rmi", "-f", name]).output();
            }
        }
    }
    let _remove = Remove(vec![app.clone(), base.clone()]);
    build_random_image(&base, &[1_000_000]);
    let base_project = project_running("base", &base);
    let dir = base_project.path();
    // The far side holds the base, not the app.
    let have = ok(offpack(dir).arg("inventory"));
    std::fs::write(dir.join("have.json"), &have.stdout).unwrap();
    ok(offpack(dir).args(["bundle", "-o", "base.offpack"]));
    let ctx = dir.join("app");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("app.txt"), format!("{app}\n")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY app.txt /app.txt\n"),
    )
    .unwrap();
    ok(Command::new("docker")
        .args(["build", "-q", "-t", &app])
        .arg(&ctx));
    let app_project = project_running("app", &app);
    std::fs::copy(dir.join("have.json"), app_project.path().join("have.json")).unwrap();
    ok(offpack(app_project.path()).args(["bundle", "--have", "have.json", "-o", "delta.offpack"]));
    let delta = app_project.path().join("delta.offpack");
    let (_, _, layers) = bundle_image(&delta);
    let containerd = Containerd::start();

    // containerd lacks the base layer the delta left out: refused, the blob named, nothing written.
    let out = load(app_project.path(), &containerd, &[], &delta);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("delta bundle") && text.contains(&format!("lacks blob {}", layers[0])),
        "{text}"
    );
    let empty = |what: &[&str]| containerd.ctr_text(what).lines().count() <= 1;
    assert!(empty(&["content", "ls"]) && empty(&["images", "ls"]));

    // With the base loaded first, the delta loads.
    report(&load(dir, &containerd, &[], &dir.join("base.offpack")));
    let loaded = report(&load(app_project.path(), &containerd, &[], &delta));
    assert_eq!(loaded["containerd"]["images"][0]["change"], "created");
    assert_eq!(loaded["containerd"]["layers_present"], 1, "{loaded}");
    assert_eq!(loaded["containerd"]["layers_unpacked"], 1, "{loaded}");
}

/// Format 1.4: an image in its registry form (a gzip and a zstd layer, the registry's Docker
/// manifest) goes into containerd with its blobs as carried, unpacked by its diff IDs, and named
/// by its repository digest too, so that a digest-pinned reference finds it.
#[test]
fn a_registry_form_image_is_unpacked_by_its_diff_ids_and_named_by_its_digest() {
    use offpack_bundle::testkit::{add_registry_image, gzip_then_zstd, layer_tar};
    use offpack_bundle::{BundleWriter, Manifest, WriteOptions};
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("r.offpack");
    let mut w = BundleWriter::create(&bundle, WriteOptions::default()).unwrap();
    let a = layer_tar("a.txt", b"gzip layer\n");
    let b = layer_tar("b.txt", b"zstd layer\n");
    let repo = format!(
        "registry.example/offpack-test-ctd-{}/app",
        std::process::id()
    );
    let image = add_registry_image(
        &mut w,
        &repo,
        "1",
        &gzip_then_zstd(&a, &b),
        &["linux/amd64"],
        None,
    )
    .unwrap();
    let manifest = image.oci_manifest.clone().unwrap().digest.to_string();
    let diff_ids: Vec<String> = image.diff_ids().iter().map(|d| d.to_string()).collect();
    let mut m = Manifest::new("test", "r");
    m.images.push(image);
    w.finish(m).unwrap();
    let containerd = Containerd::start();

    let loaded = report(&load(dir.path(), &containerd, &[], &bundle));
    assert_eq!(loaded["containerd"]["layers_unpacked"], 2, "{loaded}");
    let images = containerd.ctr_text(&["images", "ls"]);
    for name in [format!("{repo}:1"), format!("{repo}@{manifest}")] {
        let line = images
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no image {name} in:\n{images}"));
        assert!(line.contains(&manifest), "{line}");
    }
    let check = containerd.ctr_text(&["images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(&format!("{repo}:1")) && l.trim_end().ends_with("true")),
        "{check}"
    );
    let snapshots = containerd.ctr_text(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    assert!(snapshots.contains(&chain_id(&diff_ids)), "{snapshots}");
}

/// A bundle that gives one tag to images of two platforms (the format allows it; a registry
/// serves such a tag as an index): containerd's name goes to the image of this node's platform,
/// whichever comes last, and the other is not loaded, since no name would hold it.
#[test]
fn a_tag_of_two_platforms_names_the_nodes_image() {
    use offpack_bundle::testkit::layer_tar;
    use offpack_bundle::{BlobRef, BundleWriter, Image, Manifest, WriteOptions};
    let node = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("this test knows no platform for {other}"),
    };
    let other = if node == "linux/amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.offpack");
    let mut writer = BundleWriter::create(&path, WriteOptions::default()).unwrap();
    let name = format!("offpack-test-ctd-{}-platforms:1", std::process::id());
    let mut manifest = Manifest::new("test", "platforms");
    // The node's image first: a load that named the last image would name the other one.
    for platform in [node, other] {
        let tar = layer_tar("platform.txt", platform.as_bytes());
        let layer = BlobRef {
            digest: writer.add_blob_bytes(&tar).unwrap(),
            size: tar.len() as u64,
        };
        let (os, arch) = platform.split_once('/').unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
        }))
        .unwrap();
        let config = BlobRef {
            digest: writer.add_blob_bytes(&config).unwrap(),
            size: config.len() as u64,
        };
        manifest.images.push(Image {
            refs: vec![name.clone()],
            id: config.digest.clone(),
            platform: platform.to_string(),
            config,
            layers: vec![layer],
            oci_manifest: None,
            registry: None,
        });
    }
    writer.finish(manifest).unwrap();
    let images = offpack_bundle::BundleReader::open(&path)
        .unwrap()
        .manifest()
        .images
        .clone();
    let node_manifest = images[0].oci_manifest.as_ref().unwrap().digest.to_string();
    let containerd = Containerd::start();

    let out = load(dir.path(), &containerd, &[], &path);
    let loaded = report(&out);
    let qualified = format!("docker.io/library/{name}");
    assert_eq!(
        loaded["containerd"]["images"],
        serde_json::json!([{"name": qualified, "digest": node_manifest, "change": "created"}]),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("({other}): not loaded")),
        "{}",
        stderr(&out)
    );
    let listed = containerd.ctr_text(&["images", "ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("{qualified} ")) && l.contains(&node_manifest)),
        "{listed}"
    );
}

/// A container of `image` runs (runc, overlayfs): its unpacked root holds /tini.
fn assert_tini_runs(containerd: &Containerd, image: &str, id: &str) {
    let out = containerd.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "overlayfs",
        image,
        id,
        "/tini",
        "--version",
    ]);
    assert!(stdout(&out).contains("tini version"), "{}", stdout(&out));
}

fn assert_no_lease_left(containerd: &Containerd) {
    assert_eq!(
        containerd.ctr_text(&["leases", "ls"]).lines().count(),
        1,
        "only the header: the load's lease is gone"
    );
}
