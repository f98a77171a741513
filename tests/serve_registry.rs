//! `offpack serve --registry`: the real binary serving a bundle's images over the distribution
//! API to the real engine, skopeo, containerd and plain HTTP clients.
//!
//! The bundles are written here with the bundle crate (layers of random bytes, so no engine
//! holds them before the pull). These tests fail, not skip, when the engine, skopeo or
//! containerd is missing: `scripts/test-env up` installs them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::containerd::Containerd;
use common::second_engine::SecondEngine;
use common::{build_random_image, docker, image_id, ok, require_engine, run, stderr};
use offpack_bundle::{BlobRef, BundleReader, BundleWriter, Digest, Image, Manifest, WriteOptions};
use serde_json::{Value, json};

/// A bundle written for a test, and its images.
struct Bundle {
    dir: tempfile::TempDir,
    path: PathBuf,
    images: Vec<Image>,
}

/// Random bytes (they do not compress, and no other run's image shares them).
fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// A layer tar holding one file of `size` random bytes.
fn layer(name: &str, size: usize) -> Vec<u8> {
    let data = random(size);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, &data[..]).unwrap();
    builder.into_inner().unwrap()
}

/// One image to write: refs, platform, layer sizes.
type Spec<'a> = (&'a [&'a str], &'a str, &'a [usize]);

/// Writes a bundle of `images`.
fn write_bundle(images: &[Spec]) -> Bundle {
    write_bundle_with(WriteOptions::default(), images)
}

fn write_bundle_with(options: WriteOptions, images: &[Spec]) -> Bundle {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.offpack");
    let mut writer = BundleWriter::create(&path, options).unwrap();
    let mut manifest = Manifest::new("0.1.0", "serve-registry");
    for (n, (refs, platform, sizes)) in images.iter().enumerate() {
        let mut layers = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let tar = layer(&format!("image{n}-layer{i}.bin"), *size);
            let digest = writer.add_blob_bytes(&tar).unwrap();
            layers.push(BlobRef {
                digest,
                size: tar.len() as u64,
            });
        }
        let (os, architecture) = platform.split_once('/').unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture": architecture,
            "os": os,
            "config": {"Env": [format!("IMAGE={n}")]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        }))
        .unwrap();
        let config = BlobRef {
            digest: writer.add_blob_bytes(&config).unwrap(),
            size: config.len() as u64,
        };
        manifest.images.push(Image {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            id: config.digest.clone(),
            platform: platform.to_string(),
            config,
            layers,
            oci_manifest: None,
            registry: None,
        });
    }
    writer.finish(manifest).unwrap();
    let images = BundleReader::open(&path).unwrap().manifest().images.clone();
    Bundle { dir, path, images }
}

/// A name no other test run uses.
fn unique(name: &str) -> String {
    format!("offpack-sr-{}-{name}", std::process::id())
}

/// A running `offpack serve --registry`, killed when dropped.
struct Registry {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// `127.0.0.1:PORT`.
    addr: String,
    listing: Value,
}

impl Registry {
    fn start(bundle: &Path) -> Registry {
        let mut cmd = common::offpack(bundle.parent().unwrap());
        cmd.args(["--json", "serve", "--registry", "--addr", "127.0.0.1:0"])
            .arg(bundle)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start offpack serve --registry");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            !line.is_empty(),
            "offpack serve --registry ended before printing"
        );
        let listing: Value = serde_json::from_str(&line).unwrap();
        let addr = listing["registry"].as_str().unwrap().to_owned();
        Registry {
            child,
            _stdout: stdout,
            addr,
            listing,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// One request: status, headers, body.
fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut response = agent()
        .run(builder.body(()).unwrap())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let heads = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap();
    (response.status().as_u16(), heads, body)
}

fn get(url: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    request("GET", url, &[])
}

fn error_code(body: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(body).unwrap();
    doc["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// Removes the images a test pulled into the engine, however it ends.
struct Pulled(Vec<String>);

impl Drop for Pulled {
    fn drop(&mut self) {
        for reference in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "--force", reference])
                .output();
        }
    }
}

#[test]
fn the_engine_pulls_the_images_by_their_names_and_as_a_mirror_names_them() {
    require_engine();
    let app = unique("app");
    let tagged = format!("{app}:v1");
    let team = format!("team-{}/{app}:2", std::process::id());
    let bundle = write_bundle(&[(
        &[tagged.as_str(), team.as_str()],
        "linux/amd64",
        &[3 << 20, 200_000],
    )]);
    let image = &bundle.images[0];
    let registry = Registry::start(&bundle.path);
    // As a pull names it (`docker.io/library/APP` → `library/APP`), and a user's repository.
    let by_library = format!("{}/library/{tagged}", registry.addr);
    let by_path = format!("{}/{team}", registry.addr);
    let _pulled = Pulled(vec![by_library.clone(), by_path.clone()]);
    for reference in [&by_library, &by_path] {
        ok(Command::new("docker").args(["pull", reference]));
        assert_eq!(
            image_id(reference).as_deref(),
            Some(image.id.to_string().as_str()),
            "{reference} has the bundle's image ID"
        );
    }
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &by_library,
    ]);
    let layers: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(layers, expected);
}

#[test]
fn skopeo_copies_every_image_with_the_bundles_digests() {
    let skopeo = Command::new("skopeo").arg("--version").output();
    assert!(
        skopeo.is_ok_and(|o| o.status.success()),
        "skopeo is missing: run `scripts/test-env up`"
    );
    let one = unique("one");
    let two = format!("example.org/{}:latest", unique("two"));
    let bundle = write_bundle(&[
        (&[one.as_str()], "linux/amd64", &[100_000, 1 << 20]),
        (&[two.as_str()], "linux/amd64", &[50_000]),
    ]);
    let registry = Registry::start(&bundle.path);
    let repositories = registry.listing["repositories"].as_array().unwrap().clone();
    // `one` as `library/one`; `two` as `two` and `example.org/two`.
    assert_eq!(repositories.len(), 3, "{repositories:?}");
    for repository in repositories {
        let name = repository["name"].as_str().unwrap();
        for tag in repository["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let dest = bundle
                .dir
                .path()
                .join(format!("copy-{}", name.replace('/', "-")));
            ok(Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{}/{name}:{tag}", registry.addr))
                .arg(format!("dir:{}", dest.display())));
            let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
            let manifest: Value = serde_json::from_slice(&manifest).unwrap();
            let config = manifest["config"]["digest"].as_str().unwrap();
            let image = bundle
                .images
                .iter()
                .find(|i| i.config.digest.to_string() == config)
                .unwrap_or_else(|| panic!("{name}:{tag}: config {config} is not the bundle's"));
            let layers: Vec<&str> = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap())
                .collect();
            let expected: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
            assert_eq!(layers, expected, "{name}:{tag}");
            for digest in layers.iter().chain([&config]) {
                let hex = digest.trim_start_matches("sha256:");
                let data = std::fs::read(dest.join(hex)).unwrap();
                assert_eq!(Digest::of_bytes(&data).to_string(), *digest);
            }
        }
    }
}

#[test]
fn the_api_answers_catalog_tags_manifests_blobs_ranges_and_errors() {
    let names: Vec<String> = ["a", "b", "c"].iter().map(|n| unique(n)).collect();
    let tagged: Vec<String> = names.iter().map(|n| format!("{n}:1")).collect();
    let also = format!("{}:2", names[0]);
    let bundle = write_bundle(&[
        (
            &[tagged[0].as_str(), also.as_str()],
            "linux/amd64",
            // Over two of the bundle's 8 MiB frames: a range can start in a later frame.
            &[17 << 20],
        ),
        (&[tagged[1].as_str()], "linux/amd64", &[1000]),
        (&[tagged[2].as_str()], "linux/amd64", &[1000]),
    ]);
    let image = &bundle.images[0];
    let registry = Registry::start(&bundle.path);
    let repo = format!("library/{}", names[0]);

    let (status, heads, body) = get(&registry.url("/v2/"));
    assert_eq!(status, 200);
    assert_eq!(heads["docker-distribution-api-version"], "registry/2.0");
    assert_eq!(body, b"{}");

    // The catalog, whole and by pages.
    let (status, _, body) = get(&registry.url("/v2/_catalog"));
    assert_eq!(status, 200);
    let all: Value = serde_json::from_slice(&body).unwrap();
    let expected: Vec<String> = names.iter().map(|n| format!("library/{n}")).collect();
    assert_eq!(all["repositories"], json!(expected));
    let (_, heads, body) = get(&registry.url("/v2/_catalog?n=2"));
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["repositories"], json!(expected[..2]));
    let link = &heads["link"];
    assert!(link.contains("rel=\"next\""), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let (_, heads, body) = get(&registry.url(next));
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["repositories"], json!(expected[2..]));
    assert!(!heads.contains_key("link"));

    let (status, _, body) = get(&registry.url(&format!("/v2/{repo}/tags/list")));
    assert_eq!(status, 200);
    let tags: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tags, json!({"name": repo, "tags": ["1", "2"]}));

    // Manifests by tag and by digest, GET and HEAD, as stored in the bundle.
    let stored = image.oci_manifest.as_ref().unwrap();
    for reference in ["1".to_owned(), stored.digest.to_string()] {
        let url = registry.url(&format!("/v2/{repo}/manifests/{reference}"));
        for method in ["GET", "HEAD"] {
            let (status, heads, body) = request(method, &url, &[]);
            assert_eq!(status, 200, "{method} {url}");
            assert_eq!(
                heads["content-type"],
                "application/vnd.oci.image.manifest.v1+json"
            );
            assert_eq!(heads["docker-content-digest"], stored.digest.to_string());
            assert_eq!(heads["content-length"], stored.size.to_string());
            if method == "GET" {
                assert_eq!(Digest::of_bytes(&body), stored.digest);
            } else {
                assert!(body.is_empty());
            }
        }
    }

    // Blobs: whole, HEAD, ranges.
    let layer = &image.layers[0];
    let url = registry.url(&format!("/v2/{repo}/blobs/{}", layer.digest));
    let (status, heads, whole) = get(&url);
    assert_eq!(status, 200);
    assert_eq!(Digest::of_bytes(&whole), layer.digest);
    assert_eq!(heads["docker-content-digest"], layer.digest.to_string());
    let (status, heads, body) = request("HEAD", &url, &[]);
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(heads["content-length"], layer.size.to_string());
    assert_eq!(heads["accept-ranges"], "bytes");
    let size = whole.len();
    for (range, start, end) in [
        ("bytes=0-0".to_owned(), 0, 0),
        ("bytes=1000-200999".to_owned(), 1000, 200_999),
        (format!("bytes={}-", size - 10), size - 10, size - 1),
        ("bytes=-512".to_owned(), size - 512, size - 1),
        ("bytes=8388000-8389000".to_owned(), 8_388_000, 8_389_000),
        ("bytes=16777216-16777316".to_owned(), 16_777_216, 16_777_316),
        (format!("bytes=5-{}", size * 2), 5, size - 1),
    ] {
        let (status, heads, body) = request("GET", &url, &[("Range", &range)]);
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            heads["content-range"],
            format!("bytes {start}-{end}/{size}")
        );
        assert_eq!(body, &whole[start..=end], "{range}");
    }
    let (status, heads, _) = request("GET", &url, &[("Range", &format!("bytes={size}-"))]);
    assert_eq!(status, 416);
    assert_eq!(heads["content-range"], format!("bytes */{size}"));

    // What is not there: the distribution error codes.
    let other = &bundle.images[1].layers[0].digest;
    for (path, code) in [
        ("/v2/nothing/tags/list".to_owned(), "NAME_UNKNOWN"),
        ("/v2/nothing/manifests/1".to_owned(), "NAME_UNKNOWN"),
        (format!("/v2/{repo}/manifests/3"), "MANIFEST_UNKNOWN"),
        (
            format!("/v2/{repo}/manifests/sha256:{}", "0".repeat(64)),
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/{repo}/blobs/sha256:{}", "0".repeat(64)),
            "BLOB_UNKNOWN",
        ),
        // A blob of another repository is not handed out under this one.
        (format!("/v2/{repo}/blobs/{other}"), "BLOB_UNKNOWN"),
    ] {
        let (status, heads, body) = get(&registry.url(&path));
        assert_eq!(status, 404, "{path}");
        assert_eq!(heads["content-type"], "application/json");
        assert_eq!(error_code(&body), code, "{path}");
    }
    // Writes.
    for (method, path) in [
        ("PUT", format!("/v2/{repo}/manifests/3")),
        ("POST", format!("/v2/{repo}/blobs/uploads/")),
        ("DELETE", format!("/v2/{repo}/manifests/1")),
        ("PATCH", format!("/v2/{repo}/blobs/uploads/x")),
    ] {
        let (status, _, body) = request(method, &registry.url(&path), &[]);
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(error_code(&body), "UNSUPPORTED");
    }
}

#[test]
fn eight_clients_pull_everything_at_once() {
    let names: Vec<String> = (0..3)
        .map(|n| format!("{}:1", unique(&format!("c{n}"))))
        .collect();
    let bundle = write_bundle(&[
        (&[names[0].as_str()], "linux/amd64", &[4 << 20, 1 << 20]),
        (&[names[1].as_str()], "linux/amd64", &[2 << 20, 10_000]),
        (&[names[2].as_str()], "linux/amd64", &[3 << 20]),
    ]);
    let registry = Registry::start(&bundle.path);
    let started = Instant::now();
    let bytes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let registry = &registry;
                let names = &names;
                scope.spawn(move || {
                    let mut bytes = 0u64;
                    for name in names {
                        let (repo, tag) = name.split_once(':').unwrap();
                        let base = format!("/v2/library/{repo}");
                        let (status, _, manifest) =
                            get(&registry.url(&format!("{base}/manifests/{tag}")));
                        assert_eq!(status, 200);
                        let manifest: Value = serde_json::from_slice(&manifest).unwrap();
                        let mut blobs = vec![manifest["config"]["digest"].clone()];
                        blobs.extend(
                            manifest["layers"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|l| l["digest"].clone()),
                        );
                        for digest in blobs {
                            let digest = digest.as_str().unwrap();
                            let (status, _, data) =
                                get(&registry.url(&format!("{base}/blobs/{digest}")));
                            assert_eq!(status, 200);
                            assert_eq!(Digest::of_bytes(&data).to_string(), digest);
                            bytes += data.len() as u64;
                        }
                    }
                    bytes
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "8 clients: {} MiB in {seconds:.2}s ({:.0} MiB/s)",
        bytes >> 20,
        bytes as f64 / (1 << 20) as f64 / seconds
    );
}

#[test]
fn a_damaged_bundle_is_refused_before_anything_is_served() {
    let name = format!("{}:1", unique("damaged"));
    let bundle = write_bundle(&[(&[name.as_str()], "linux/amd64", &[1 << 20])]);
    let original = std::fs::read(&bundle.path).unwrap();
    let serve = |path: &Path| {
        let out = run(common::offpack(bundle.dir.path())
            .args(["serve", "--registry", "--addr", "127.0.0.1:0"])
            .arg(path)
            .stdout(Stdio::null()));
        assert!(!out.status.success(), "served a damaged bundle");
        stderr(&out)
    };

    // Cut short: no trailer.
    let truncated = bundle.dir.path().join("truncated.offpack");
    std::fs::write(&truncated, &original[..original.len() / 2]).unwrap();
    let err = serve(&truncated);
    assert!(err.contains("truncated.offpack"), "{err}");

    // One byte of a layer changed: the `.sha256` beside it tells before anything is served.
    let entry = BundleReader::open(&bundle.path)
        .unwrap()
        .index()
        .entries
        .iter()
        .find(|e| e.digest.as_ref() == Some(&bundle.images[0].layers[0].digest))
        .unwrap()
        .clone();
    let mut changed = original.clone();
    changed[(entry.offset + entry.compressed_len / 2) as usize] ^= 0x55;
    std::fs::write(&bundle.path, &changed).unwrap();
    let err = serve(&bundle.path);
    assert!(err.contains("images.offpack"), "{err}");
    assert!(err.contains("refused, nothing is served"), "{err}");
    assert!(err.contains("sha256"), "{err}");

    // Without the `.sha256`, the server starts, and the damaged layer's response ends short of
    // its length: the client never gets other bytes as the blob.
    std::fs::remove_file(bundle.path.with_extension("offpack.sha256")).unwrap();
    let registry = Registry::start(&bundle.path);
    assert_eq!(registry.listing["sha256_file"], Value::Null);
    let url = registry.url(&format!(
        "/v2/library/{}/blobs/{}",
        unique("damaged"),
        bundle.images[0].layers[0].digest
    ));
    let response = agent().get(&url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let read = response
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec();
    assert!(read.is_err(), "a damaged layer was served whole");
}

#[test]
fn containerd_pulls_the_docker_hub_names_through_the_server_as_a_mirror() {
    let name = unique("mirrored");
    let bundle = write_bundle(&[(&[format!("{name}:1").as_str()], "linux/amd64", &[500_000])]);
    let registry = Registry::start(&bundle.path);
    let containerd = Containerd::start();
    // The hosts.toml that docs/fleet.md shows, for docker.io.
    let hosts = bundle.dir.path().join("certs.d");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    std::fs::write(
        hosts.join("docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.addr
        ),
    )
    .unwrap();
    let reference = format!("docker.io/library/{name}:1");
    let pull = containerd.run_ctr(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts.to_str().unwrap(),
        &reference,
    ]);
    assert!(
        pull.status.success(),
        "ctr pull through the mirror failed: {}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let listed = containerd.run_ctr(&["images", "ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let manifest = bundle.images[0].oci_manifest.as_ref().unwrap();
    let line = listed
        .lines()
        .find(|l| l.starts_with(&reference))
        .unwrap_or_else(|| panic!("{reference} not listed:\n{listed}"));
    assert!(line.contains(&manifest.digest.to_string()), "{line}");
    let check = containerd.run_ctr(&["images", "check"]);
    let check = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.contains("complete"), "{check}");
}

/// docs/fleet.md's `daemon.json` for the server as Docker's mirror, given to a second engine of
/// the test's own (the shared one cannot be restarted): it pulls the image by its original
/// Docker Hub name, and gets the bundle's image.
#[test]
fn docker_pulls_docker_hub_names_through_the_server_as_its_registry_mirror() {
    require_engine();
    let name = format!("{}:1", unique("docker-mirror"));
    let bundle = write_bundle(&[(&[name.as_str()], "linux/amd64", &[500_000, 100_000])]);
    let registry = Registry::start(&bundle.path);
    let engine = SecondEngine::start(&json!({
        "registry-mirrors": [format!("http://{}", registry.addr)],
        "insecure-registries": [registry.addr],
    }));
    let pull = engine.docker(&["pull", &name]);
    assert!(
        pull.status.success(),
        "docker pull {name} through the mirror: {}\n{}",
        stderr(&pull),
        engine.log()
    );
    assert_eq!(
        engine.image_id(&name).as_deref(),
        Some(bundle.images[0].id.to_string().as_str()),
        "{name} has the bundle's image ID"
    );
}

#[test]
fn beyond_loopback_it_warns_and_it_prints_the_names_to_pull() {
    let name = unique("exposed");
    let bundle = write_bundle(&[(&[format!("{name}:1").as_str()], "linux/amd64", &[1000])]);
    let mut child = common::offpack(bundle.dir.path())
        .args(["serve", "--registry", "--addr", "0.0.0.0:0"])
        .arg(&bundle.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("stop with Ctrl-C") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
    }
    ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exited {status}: {err}");
    assert!(
        printed.contains("docker pull 127.0.0.1:")
            && printed.contains(&format!("/library/{name}:1\n")),
        "{printed}"
    );
    assert!(
        err.contains("warning: listening on 0.0.0.0:") && err.contains("every host"),
        "{err}"
    );
}

#[test]
fn a_tag_of_several_platforms_is_an_index_the_engine_picks_its_own_from() {
    require_engine();
    let name = format!("{}:1", unique("multi"));
    let bundle = write_bundle(&[
        (&[name.as_str()], "linux/amd64", &[100_000]),
        (&[name.as_str()], "linux/arm64", &[100_000]),
    ]);
    let registry = Registry::start(&bundle.path);
    let (repo, tag) = name.split_once(':').unwrap();
    let (status, heads, body) = get(&registry.url(&format!("/v2/library/{repo}/manifests/{tag}")));
    assert_eq!(status, 200);
    assert_eq!(
        heads["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index: Value = serde_json::from_slice(&body).unwrap();
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    // The same index at every start: its digest comes from the bundle alone.
    let digest = heads["docker-content-digest"].clone();
    drop(registry);
    let registry = Registry::start(&bundle.path);
    let (_, again, _) = request(
        "HEAD",
        &registry.url(&format!("/v2/library/{repo}/manifests/{tag}")),
        &[],
    );
    assert_eq!(again["docker-content-digest"], digest);

    let reference = format!("{}/library/{name}", registry.addr);
    let _pulled = Pulled(vec![reference.clone()]);
    ok(Command::new("docker").args(["pull", &reference]));
    assert_eq!(
        image_id(&reference).as_deref(),
        Some(bundle.images[0].id.to_string().as_str()),
        "the engine took the amd64 image"
    );
}

#[test]
fn a_split_bundle_is_served_across_its_parts() {
    let name = format!("{}:1", unique("split"));
    let options = WriteOptions {
        split: Some(1 << 20),
        ..WriteOptions::default()
    };
    let bundle = write_bundle_with(options, &[(&[name.as_str()], "linux/amd64", &[3 << 20])]);
    assert!(
        bundle.dir.path().join("images.offpack.003").is_file(),
        "not split"
    );
    let registry = Registry::start(&bundle.dir.path().join("images.offpack.001"));
    let (repo, _) = name.split_once(':').unwrap();
    let layer = &bundle.images[0].layers[0];
    let url = registry.url(&format!("/v2/library/{repo}/blobs/{}", layer.digest));
    let (status, _, whole) = get(&url);
    assert_eq!(status, 200);
    assert_eq!(Digest::of_bytes(&whole), layer.digest);
    let (status, _, part) = request("GET", &url, &[("Range", "bytes=1000000-2100000")]);
    assert_eq!(status, 206);
    assert_eq!(part, &whole[1_000_000..=2_100_000]);
}

#[test]
fn with_key_only_a_bundle_signed_by_it_is_served() {
    let name = format!("{}:1", unique("signed"));
    let (signing, verifying) = offpack_bundle::generate_keypair().unwrap();
    let (_, other) = offpack_bundle::generate_keypair().unwrap();
    let options = WriteOptions {
        sign: Some(signing),
        ..WriteOptions::default()
    };
    let bundle = write_bundle_with(options, &[(&[name.as_str()], "linux/amd64", &[1000])]);
    let key = bundle.dir.path().join("k.pub");
    let wrong = bundle.dir.path().join("other.pub");
    std::fs::write(&key, verifying.to_text()).unwrap();
    std::fs::write(&wrong, other.to_text()).unwrap();

    let mut cmd = common::offpack(bundle.dir.path());
    cmd.args([
        "--json",
        "serve",
        "--registry",
        "--addr",
        "127.0.0.1:0",
        "--key",
    ])
    .arg(&key)
    .arg(&bundle.path)
    .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let listing: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(listing["signed_by"], json!(verifying.fingerprint()));

    let out = run(common::offpack(bundle.dir.path())
        .args(["serve", "--registry", "--addr", "127.0.0.1:0", "--key"])
        .arg(&wrong)
        .arg(&bundle.path));
    assert!(!out.status.success(), "served with another key");
    assert!(stderr(&out).contains("images.offpack"), "{}", stderr(&out));
}

/// The image IDs and repository digests the engine records for `reference`.
fn repo_digests(reference: &str) -> Vec<String> {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        reference,
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// A registry-form bundle (`bundle --from-registry` from the registry on 5000): one image whose
/// tag names a single Docker schema 2 manifest, one whose tag names an index of two platforms of
/// which only amd64 is bundled. Served, both keep the registry's digests, by tag and by digest.
#[test]
fn registry_form_images_keep_the_registrys_manifests_index_and_digests() {
    use common::registry_images::{
        DOCKER_V2, OCI_INDEX, REGISTRY, bundle_from_registry, get_manifest, put_two_platform_index,
        sha256,
    };
    require_engine();
    let repo = unique("form");
    let single = format!("{REGISTRY}/{repo}/single:1");
    let multi = format!("{REGISTRY}/{repo}/multi:1");
    let mut pulled = Pulled(vec![single.clone(), multi.clone()]);
    build_random_image(&single, &[300_000]);
    build_random_image(&multi, &[200_000]);
    let (single_id, multi_id) = (image_id(&single).unwrap(), image_id(&multi).unwrap());
    for image in [&single, &multi] {
        ok(Command::new("docker").args(["push", image]));
        docker(&["rmi", "-f", image]);
    }
    let single_manifest = get_manifest(&format!("{repo}/single"), "1");
    let single_digest = sha256(&single_manifest);
    let two = put_two_platform_index(&format!("{repo}/multi"), "1", "1");

    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("compose.yaml"),
        format!("services:\n  web:\n    image: {single}\n  multi:\n    image: {multi}\n"),
    )
    .unwrap();
    bundle_from_registry(project.path(), &["linux/amd64"]);
    let registry = Registry::start(&project.path().join("b.offpack"));
    let manifests = |name: &str, reference: &str| {
        get(&registry.url(&format!("/v2/{repo}/{name}/manifests/{reference}")))
    };

    let (status, heads, body) = manifests("single", "1");
    assert_eq!(status, 200);
    assert_eq!(heads["content-type"], DOCKER_V2);
    assert_eq!(
        body, single_manifest,
        "the registry's manifest, byte for byte"
    );
    let (status, heads, body) = manifests("multi", "1");
    assert_eq!(status, 200);
    assert_eq!(heads["content-type"], OCI_INDEX);
    assert_eq!(heads["docker-content-digest"], two.index_digest);
    assert_eq!(
        body, two.index,
        "the registry's index, not one offpack makes"
    );
    let (status, _, body) = manifests("multi", &two.amd64_digest);
    assert_eq!((status, body), (200, two.amd64.clone()));
    let (status, _, body) = manifests("multi", &two.arm64_digest);
    assert_eq!(status, 404, "the arm64 manifest is not bundled");
    assert_eq!(error_code(&body), "MANIFEST_UNKNOWN");

    // The engine pulls by the upstream digests and by tag, and records those digests.
    let served = |name: &str| format!("{}/{repo}/{name}", registry.addr);
    let by_digest = format!("{}@{single_digest}", served("single"));
    let by_index = format!("{}@{}", served("multi"), two.index_digest);
    let by_tag = format!("{}:1", served("multi"));
    let single_by_tag = format!("{}:1", served("single"));
    pulled.0.extend([
        by_digest.clone(),
        by_index.clone(),
        by_tag.clone(),
        single_by_tag.clone(),
    ]);
    for (reference, id, digest) in [
        (&by_digest, &single_id, &by_digest),
        (&single_by_tag, &single_id, &by_digest),
        (&by_index, &multi_id, &by_index),
        (&by_tag, &multi_id, &by_index),
    ] {
        ok(Command::new("docker").args(["pull", reference]));
        assert_eq!(image_id(reference).as_ref(), Some(id), "{reference}");
        assert!(
            repo_digests(reference).contains(digest),
            "{reference}: {:?}",
            repo_digests(reference)
        );
    }

    // skopeo, a second client: the index by its digest, unchanged.
    let out = ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{by_index}")));
    assert_eq!(out.stdout, two.index);
}
