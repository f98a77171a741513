//! `offpack push` against real registries (Debian's distribution registry: test-env's on 5000
//! plain, 5001 with htpasswd, 5002 with TLS from a test CA, and registries a test starts on a
//! port of its own), checked with the real engine pulling the pushed images back.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::containerd::Containerd;
use common::second_engine::SecondEngine;
use common::*;
use serde_json::Value;

const PASSWORD: &str = "offpack-test";
const TLS_CA: &str = "/var/lib/offpack-test/registry-5002/ca.crt";

/// An image of random layers under a unique name, bundled; removed (with what the test pulls)
/// when dropped.
struct Fixture {
    dir: tempfile::TempDir,
    image: String,
    remove: Vec<String>,
}

impl Fixture {
    fn new(what: &str, layer_sizes: &[usize]) -> Fixture {
        require_engine();
        let image = format!("offpack-push-{what}-{}:1", std::process::id());
        build_random_image(&image, layer_sizes);
        Fixture::bundle(image.clone(), vec![image])
    }

    /// Bundles a project whose one service runs `reference`.
    fn bundle(reference: String, remove: Vec<String>) -> Fixture {
        let dir = project_running("app", &reference);
        let fixture = Fixture {
            dir,
            image: reference,
            remove,
        };
        ok(offpack(fixture.path()).args(["bundle", "-o", "b.offpack"]));
        fixture
    }

    /// `push` into the plain registry on 5000 under `prefix`.
    fn push_plain(&self, prefix: &str) -> Command {
        self.push(&[
            "--registry",
            &format!("127.0.0.1:5000/{prefix}"),
            "--insecure",
        ])
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The registry on 5000 has no tag of the image under `prefix`: nothing was pushed.
    fn assert_no_tags(&self, prefix: &str) {
        let repo = self.image.split(':').next().unwrap();
        let tags = format!("http://127.0.0.1:5000/v2/{prefix}/library/{repo}/tags/list");
        assert_eq!(http_get(&tags, 1), None, "no tag of {repo} was pushed");
    }

    fn push(&self, args: &[&str]) -> Command {
        let mut cmd = offpack(self.path());
        cmd.args(["--json", "push", "b.offpack"]).args(args);
        cmd
    }

    /// Pulls `reference` with the engine (after removing any local copy) and returns its ID.
    fn pull(&mut self, reference: &str, docker_config: Option<&Path>) -> String {
        let _ = docker(&["rmi", reference]);
        let mut cmd = Command::new("docker");
        if let Some(dir) = docker_config {
            cmd.arg("--config").arg(dir);
        }
        ok(cmd.args(["pull", reference]));
        self.remove.push(reference.to_string());
        image_id(reference).expect("the pulled image is there")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for name in &self.remove {
            let _ = Command::new("docker").args(["rmi", name]).output();
        }
    }
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("push --json printed no JSON ({e}): {}", stdout(out)))
}

fn pushed_name(report: &Value) -> String {
    report["images"][0]["refs"][0]["pushed"]
        .as_str()
        .expect("a pushed name")
        .to_string()
}

fn unique(what: &str) -> String {
    format!("push-{what}-{}", std::process::id())
}

#[test]
fn plain_registry_push_pull_back_and_a_second_push_sends_nothing() {
    let mut f = Fixture::new("plain", &[300_000, 200_000]);
    let original_id = image_id(&f.image).unwrap();
    let prefix = unique("plain");
    let registry = format!("127.0.0.1:5000/{prefix}");
    let mapping = f.path().join("mapping.json");
    let out = ok(f
        .push(&["--registry", &registry, "--insecure", "--mapping"])
        .arg(&mapping));
    let report = json(&out);
    let name = pushed_name(&report);
    assert_eq!(name, format!("127.0.0.1:5000/{prefix}/library/{}", f.image));
    assert_eq!(report["blobs_sent"], 3, "config and two layers");
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    assert_eq!(
        written["images"], report["images"],
        "--mapping writes the mapping"
    );
    let hosts = &written["settings"]["containerd"][0];
    assert_eq!(
        hosts["path"],
        "/etc/containerd/certs.d/docker.io/hosts.toml"
    );
    assert!(
        hosts["content"]
            .as_str()
            .unwrap()
            .contains(&format!("[host.\"http://127.0.0.1:5000/v2/{prefix}\"]")),
        "{hosts}"
    );
    // The hosts.toml as printed makes containerd resolve the ORIGINAL Docker Hub name through
    // the push's registry and prefix, to the pushed manifest.
    let containerd = Containerd::start();
    let hosts_dir = containerd.dir().join("certs.d");
    std::fs::create_dir_all(hosts_dir.join("docker.io")).unwrap();
    std::fs::write(
        hosts_dir.join("docker.io/hosts.toml"),
        hosts["content"].as_str().unwrap(),
    )
    .unwrap();
    let original = format!("docker.io/library/{}", f.image);
    containerd.ctr(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        &original,
    ]);
    let listed = containerd.ctr_text(&["images", "ls"]);
    let digest = report["images"][0]["manifest_digest"].as_str().unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&original) && l.contains(digest)),
        "{original} is listed with the pushed manifest {digest}:\n{listed}"
    );

    assert_eq!(
        f.pull(&name, None),
        original_id,
        "the engine pulls the same image"
    );

    let again = json(&ok(&mut f.push(&["--registry", &registry, "--insecure"])));
    assert_eq!(again["blobs_sent"], 0, "nothing is sent twice");
    assert_eq!(again["bytes_sent"], 0);
    assert_eq!(again["blobs_present"], 3, "every blob was HEAD-skipped");
    assert_eq!(
        again["images"][0]["manifest_digest"], report["images"][0]["manifest_digest"],
        "the same bundle gives the same manifest"
    );
}

#[test]
fn registry_with_login_from_the_docker_config_and_wrong_credentials() {
    let mut f = Fixture::new("login", &[100_000]);
    let original_id = image_id(&f.image).unwrap();
    let registry = format!("127.0.0.1:5001/{}", unique("login"));

    let wrong = docker_config("127.0.0.1:5001", "not-the-password");
    let out = run(f
        .push(&["--registry", &registry, "--insecure"])
        .env("DOCKER_CONFIG", wrong.path()));
    assert_eq!(out.status.code(), Some(2), "a refused login fails");
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:5001") && err.contains("401") && err.contains("docker login"),
        "the error names the registry and what to do: {err}"
    );

    let login = docker_config("127.0.0.1:5001", PASSWORD);
    let report = json(&ok(f
        .push(&["--registry", &registry, "--insecure"])
        .env("DOCKER_CONFIG", login.path())));
    let name = pushed_name(&report);
    assert_eq!(f.pull(&name, Some(login.path())), original_id);
}

#[test]
fn tls_registry_with_its_ca_file() {
    let mut f = Fixture::new("tls", &[100_000]);
    let original_id = image_id(&f.image).unwrap();
    let registry = format!("127.0.0.1:5002/{}", unique("tls"));
    let login = docker_config("127.0.0.1:5002", PASSWORD);
    assert!(
        Path::new(TLS_CA).is_file(),
        "{TLS_CA} is missing: run `scripts/test-env up`"
    );

    let out = run(f
        .push(&["--registry", &registry])
        .env("DOCKER_CONFIG", login.path()));
    assert!(
        !out.status.success(),
        "a certificate from an unknown CA is refused"
    );
    assert!(stderr(&out).contains("--ca-file"), "{}", stderr(&out));

    let report = json(&ok(f
        .push(&["--registry", &registry, "--ca-file", TLS_CA])
        .env("DOCKER_CONFIG", login.path())));
    let hosts = report["settings"]["containerd"][0]["content"]
        .as_str()
        .unwrap();
    assert!(
        hosts.contains("ca = \"/etc/containerd/certs.d/127.0.0.1:5002/ca.crt\""),
        "{hosts}"
    );
    let name = pushed_name(&report);
    assert_eq!(f.pull(&name, Some(login.path())), original_id);
}

/// Pushed at a registry's root, the `daemon.json` push prints is given to a second engine of the
/// test's own (the shared one cannot be restarted): it pulls the ORIGINAL Docker Hub name through
/// the registry as its mirror, and gets the bundle's image.
#[test]
fn docker_pulls_the_original_name_through_the_registry_with_the_printed_daemon_json() {
    let f = Fixture::new("docker-mirror", &[400_000, 100_000]);
    let original_id = image_id(&f.image).unwrap();
    let registry = OwnRegistry::start();
    let mapping = f.path().join("mapping.json");
    ok(
        f.push(&["--registry", &registry.host(), "--insecure", "--mapping"])
            .arg(&mapping),
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    let daemon_json = &written["settings"]["docker_daemon_json"];
    assert_eq!(
        daemon_json["registry-mirrors"][0],
        format!("http://{}", registry.host()),
        "{daemon_json}"
    );
    let engine = SecondEngine::start(daemon_json);
    let pull = engine.docker(&["pull", &f.image]);
    assert!(
        pull.status.success(),
        "docker pull {} through the mirror: {}\n{}",
        f.image,
        stderr(&pull),
        engine.log()
    );
    assert_eq!(engine.image_id(&f.image), Some(original_id));
}

#[test]
fn a_digest_pinned_name_gets_its_new_digest_and_a_pin_tag() {
    require_engine();
    // An image the engine knows by repository digest, as after a pull by digest.
    let source = format!("127.0.0.1:5000/{}", unique("pinsrc"));
    let tagged = format!("{source}:1");
    build_random_image(&tagged, &[50_000]);
    ok(Command::new("docker").args(["push", &tagged]));
    let out = ok(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &tagged,
    ]));
    let pinned = stdout(&out).trim().to_string();
    let old_digest = pinned.split_once('@').unwrap().1.to_string();
    // `bundle` tags the image under its pin tag (decision 0084): removed with it.
    let local_pin = format!(
        "{source}:offpack-pin-sha256-{}",
        old_digest.trim_start_matches("sha256:")
    );
    let mut f = Fixture::bundle(pinned.clone(), vec![tagged.clone(), local_pin]);
    let original_id = image_id(&tagged).unwrap();

    let registry = format!("127.0.0.1:5000/{}", unique("pin"));
    let report = json(&ok(&mut f.push(&["--registry", &registry, "--insecure"])));
    let refs = report["images"][0]["refs"].as_array().unwrap();
    let r = refs
        .iter()
        .find(|r| r["original"].as_str() == Some(pinned.as_str()))
        .unwrap_or_else(|| panic!("{pinned} is in the mapping: {refs:?}"));
    assert_eq!(r["old_digest"], old_digest.as_str());
    let new_digest = report["images"][0]["manifest_digest"].as_str().unwrap();
    assert_ne!(new_digest, old_digest, "a pushed image has a new manifest");
    assert_eq!(
        r["pushed"].as_str().unwrap(),
        format!(
            "{registry}/{}@{new_digest}",
            source.split_once('/').unwrap().1
        )
    );
    let pin_tag = format!(
        "offpack-pin-sha256-{}",
        old_digest.trim_start_matches("sha256:")
    );
    assert_eq!(r["pin_tag"], pin_tag.as_str());
    let by_pin = format!("{registry}/{}:{pin_tag}", source.split_once('/').unwrap().1);
    assert_eq!(
        f.pull(&by_pin, None),
        original_id,
        "the pin tag names the image"
    );
}

/// `curl` of a registry path on 127.0.0.1:5000, with an `Accept` for OCI manifests.
fn registry_get(path: &str) -> Vec<u8> {
    let out = ok(Command::new("curl").args([
        "-fsS",
        "--noproxy",
        "*",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://127.0.0.1:5000/v2/{path}"),
    ]));
    out.stdout
}

#[test]
fn zstd_and_uncompressed_layers_when_asked() {
    let f = Fixture::new("zstd", &[100_000]);
    let repo_name = f.image.split(':').next().unwrap().to_string();
    for (compression, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let prefix = unique(compression);
        let registry = format!("127.0.0.1:5000/{prefix}");
        ok(&mut f.push(&[
            "--registry",
            &registry,
            "--insecure",
            "--compression",
            compression,
        ]));
        let repo = format!("{prefix}/library/{repo_name}");
        let manifest: Value =
            serde_json::from_slice(&registry_get(&format!("{repo}/manifests/1"))).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], media_type);
        let blob = registry_get(&format!(
            "{repo}/blobs/{}",
            layer["digest"].as_str().unwrap()
        ));
        match compression {
            "zstd" => assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame"),
            _ => assert_eq!(&blob[257..262], b"ustar", "a tar as it is"),
        }
    }
}

#[test]
fn a_bundle_that_fails_its_checksum_tags_nothing() {
    let f = Fixture::new("sidecar", &[100_000]);
    std::fs::write(
        f.path().join("b.offpack.sha256"),
        format!("{}  b.offpack\n", "0".repeat(64)),
    )
    .unwrap();
    let prefix = unique("sidecar");
    let out = run(&mut f.push(&[
        "--registry",
        &format!("127.0.0.1:5000/{prefix}"),
        "--insecure",
    ]));
    assert_eq!(out.status.code(), Some(1), "a check failed");
    assert!(
        stderr(&out).contains("b.offpack.sha256"),
        "{}",
        stderr(&out)
    );
    f.assert_no_tags(&prefix);
}

#[test]
fn a_corrupt_layer_in_the_bundle_is_a_failed_check_and_tags_nothing() {
    let f = Fixture::new("corrupt", &[2 << 20]);
    std::fs::remove_file(f.path().join("b.offpack.sha256")).unwrap();
    // A byte in the middle of the bundle: inside the layer's data, which random bytes leave stored
    // as they are.
    let path = f.path().join("b.offpack");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let prefix = unique("corrupt");
    let out = run(&mut f.push(&[
        "--registry",
        &format!("127.0.0.1:5000/{prefix}"),
        "--insecure",
    ]));
    assert_eq!(out.status.code(), Some(1), "a check failed");
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    f.assert_no_tags(&prefix);
}

#[test]
fn a_required_signer_is_checked_before_anything_is_sent() {
    let f = Fixture::new("signed", &[100_000]);
    ok(offpack(f.path()).args(["keygen", "-o", "site"]));
    ok(offpack(f.path()).args(["keygen", "-o", "other"]));
    ok(offpack(f.path()).args(["bundle", "--sign", "site.key", "-o", "b.offpack"]));
    let prefix = unique("signed");
    let registry = format!("127.0.0.1:5000/{prefix}");
    let out = run(&mut f.push(&["--registry", &registry, "--insecure", "--key", "other.pub"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "another signer is a failed check"
    );
    f.assert_no_tags(&prefix);
    let report = json(&ok(&mut f.push(&[
        "--registry",
        &registry,
        "--insecure",
        "--key",
        "site.pub",
    ])));
    assert!(report["signed_by"].is_string(), "{report}");
}

#[test]
fn an_image_under_two_repositories_is_sent_once_and_mounted() {
    require_engine();
    let first = format!("offpack-push-mount-a-{}:1", std::process::id());
    let second = format!("offpack-push-mount-b-{}:1", std::process::id());
    build_random_image(&first, &[200_000]);
    ok(Command::new("docker").args(["tag", &first, &second]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n  a:\n    image: {first}\n  b:\n    image: {second}\n"),
    )
    .unwrap();
    let f = Fixture {
        dir,
        image: first.clone(),
        remove: vec![first, second],
    };
    ok(offpack(f.path()).args(["bundle", "-o", "b.offpack"]));
    let registry = format!("127.0.0.1:5000/{}", unique("mount"));
    let report = json(&ok(&mut f.push(&["--registry", &registry, "--insecure"])));
    assert_eq!(
        report["images"][0]["refs"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert_eq!(report["blobs_sent"], 2, "config and layer once: {report}");
    assert_eq!(
        report["blobs_mounted"], 2,
        "then mounted into the other repository: {report}"
    );
}

/// Debian's distribution registry on a free loopback port of this test, with its storage in a
/// temporary directory; killed when dropped.
struct OwnRegistry {
    child: Child,
    port: u16,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnRegistry {
    fn start() -> OwnRegistry {
        OwnRegistry::start_with_auth("")
    }

    /// A registry whose config ends with `auth` (YAML, or empty for none).
    fn start_with_auth(auth: &str) -> OwnRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  \
                 filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = OwnRegistry::spawn(&config, port);
        OwnRegistry {
            child,
            port,
            config,
            _dir: dir,
        }
    }

    /// Runs the registry with `config` until it answers on `port`.
    fn spawn(config: &Path, port: u16) -> Child {
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package) runs: run `scripts/test-env up`");
        for _ in 0..100 {
            // 200, or 401 when it asks for a login: it is up.
            let code = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "1",
                ])
                .arg(format!("http://127.0.0.1:{port}/v2/"))
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if code == b"200" || code == b"401" {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the registry on 127.0.0.1:{port} did not answer");
    }

    /// Kills the registry and starts it again on the same port and storage.
    fn restart(&mut self) {
        self.kill();
        self.child = OwnRegistry::spawn(&self.config, self.port);
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `cmd` and waits until its `--json` progress on stderr reports two blobs sent (the
/// config, which goes first, and a layer).
fn start_until_a_layer_is_sent(cmd: &mut Command) -> Child {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut sent = 0;
    while sent < 2 {
        match lines.next() {
            Some(Ok(line)) if line.contains("\"step\"") && line.contains(" sent to ") => sent += 1,
            Some(Ok(_)) => {}
            _ => panic!("the push ended before it sent a layer"),
        }
    }
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

/// Many layers, so that stopping after the first leaves most of them to send.
const MANY_LAYERS: [usize; 8] = [4 << 20; 8];

#[test]
fn an_interrupted_push_resumes_sending_only_what_is_missing() {
    let f = Fixture::new("resume", &MANY_LAYERS);
    let registry = OwnRegistry::start();
    let target = format!("{}/{}", registry.host(), unique("resume"));
    let cache = tempfile::tempdir().unwrap();

    let mut first = start_until_a_layer_is_sent(
        f.push(&["--registry", &target, "--insecure"])
            .env("OFFPACK_CACHE", cache.path())
            .stdout(Stdio::null()),
    );
    first.kill().unwrap();
    first.wait().unwrap();

    let report = json(&ok(f
        .push(&["--registry", &target, "--insecure"])
        .env("OFFPACK_CACHE", cache.path())));
    let total: u64 = MANY_LAYERS.iter().map(|s| *s as u64).sum();
    let sent = report["bytes_sent"].as_u64().unwrap();
    eprintln!("resumed push sent {sent} of {total} layer bytes");
    assert!(report["blobs_present"].as_u64().unwrap() >= 1, "{report}");
    assert!(sent < total, "the second run sent {sent} bytes of {total}");
}

/// A push of many layers into a registry of the test's own, started and run until a layer is
/// in; `then` does something to the registry; returns the push's exit code and JSON result.
fn push_and_meanwhile(
    what: &str,
    then: impl FnOnce(&mut OwnRegistry),
) -> (Option<i32>, Value, String) {
    let f = Fixture::new(what, &MANY_LAYERS);
    let mut registry = OwnRegistry::start();
    let target = format!("{}/{}", registry.host(), unique(what));
    let cache = tempfile::tempdir().unwrap();
    let child = start_until_a_layer_is_sent(
        f.push(&["--registry", &target, "--insecure"])
            .env("OFFPACK_CACHE", cache.path())
            .stdout(Stdio::piped()),
    );
    then(&mut registry);
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, target)
}

#[test]
fn a_registry_restarted_mid_push_is_waited_for() {
    // Down for less than the retries wait (0.5 + 1 + 2 + 4 s).
    let (code, report, target) = push_and_meanwhile("restart", OwnRegistry::restart);
    assert_eq!(code, Some(0), "the push retried and finished: {report}");
    let pushed = report["images"][0]["refs"][0]["pushed"].as_str().unwrap();
    assert!(pushed.starts_with(&target), "{pushed}");
}

#[test]
fn a_registry_that_goes_away_mid_push_is_a_clear_error() {
    let (code, report, target) = push_and_meanwhile("gone", OwnRegistry::kill);
    assert_eq!(code, Some(2), "the push fails");
    let err = report["error"].as_str().unwrap_or_default();
    let host = target.split('/').next().unwrap();
    assert!(
        err.contains(host) && err.contains("gave up after"),
        "the error names the registry and says it was retried: {err}"
    );
}

/// A token service for a registry with `auth: token` (what Docker Hub and Harbor speak): checks
/// the Basic login, grants what the scope asks, signs the JWT with `openssl` and a test key
/// whose certificate the registry trusts. Serves until the test process ends.
struct TokenService {
    port: u16,
    cert: std::path::PathBuf,
}

impl TokenService {
    fn start(dir: &Path) -> TokenService {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        ok(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=offpack-test-token",
                "-days",
                "1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = ok(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert))
        .stdout;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer_token_request(stream, &key, &der);
            }
        });
        TokenService { port, cert }
    }
}

fn answer_token_request(
    mut stream: std::net::TcpStream,
    key: &Path,
    cert_der: &[u8],
) -> std::io::Result<()> {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let path = request
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let login =
        base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{PASSWORD}"));
    let authorized = request
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l.ends_with(&login));
    if !authorized {
        return stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let access: Vec<Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(|scope| {
            let scope = scope.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()})
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)]});
    let claims = serde_json::json!({
        "iss": "offpack-test-issuer", "sub": REGISTRY_USER, "aud": "offpack-test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())?;
    let signature = openssl.wait_with_output()?.stdout;
    let body = serde_json::json!({"token": format!("{signing_input}.{}", b64.encode(signature))})
        .to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_registry_with_bearer_tokens() {
    let f = Fixture::new("token", &[100_000]);
    let tokens = TokenService::start(f.path());
    let registry = OwnRegistry::start_with_auth(&format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: offpack-test-registry\n    \
         issuer: offpack-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        tokens.cert.display()
    ));
    let target = format!("{}/{}", registry.host(), unique("token"));

    let wrong = docker_config(&registry.host(), "not-the-password");
    let out = run(f
        .push(&["--registry", &target, "--insecure"])
        .env("DOCKER_CONFIG", wrong.path()));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("token service") && err.contains("docker login"),
        "{err}"
    );

    let login = docker_config(&registry.host(), PASSWORD);
    let report = json(&ok(f
        .push(&["--registry", &target, "--insecure"])
        .env("DOCKER_CONFIG", login.path())));
    assert_eq!(report["blobs_sent"], 2, "{report}");
    let again = json(&ok(f
        .push(&["--registry", &target, "--insecure"])
        .env("DOCKER_CONFIG", login.path())));
    assert_eq!(again["blobs_present"], 2, "HEAD with a token: {again}");
}

/// An image pushed to 5000 under a unique repository with a hand-made two-platform index of it
/// tagged `multi` (tests/common/registry_images.rs), bundled from the registry for `platforms`,
/// named by that tag or, `pinned`, by the index digest.
fn index_fixture(
    what: &str,
    platforms: &[&str],
    pinned: bool,
) -> (Fixture, common::registry_images::TwoPlatforms, String) {
    use common::registry_images::{REGISTRY, bundle_from_registry, put_two_platform_index};
    require_engine();
    let path = format!("{}/app", unique(what));
    let tagged = format!("{REGISTRY}/{path}:1");
    build_random_image(&tagged, &[200_000, 3_000]);
    let id = image_id(&tagged).unwrap();
    ok(Command::new("docker").args(["push", &tagged]));
    let index = put_two_platform_index(&path, "1", "multi");
    let image = match pinned {
        true => format!("{REGISTRY}/{path}@{}", index.index_digest),
        false => format!("{REGISTRY}/{path}:multi"),
    };
    let f = Fixture {
        dir: project_running("app", &image),
        image: path,
        remove: vec![tagged],
    };
    bundle_from_registry(f.path(), platforms);
    (f, index, id)
}

/// The pushed image with a name ending in `suffix` (the index's tag or digest), and that name.
fn index_ref<'a>(report: &'a Value, suffix: &str) -> (&'a Value, &'a Value) {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| {
            let refs = i["refs"].as_array().unwrap();
            let r = refs
                .iter()
                .find(|r| r["original"].as_str().unwrap().ends_with(suffix))?;
            Some((i, r))
        })
        .unwrap_or_else(|| panic!("no pushed name ending in {suffix}: {report}"))
}

#[test]
fn an_index_whose_every_platform_is_bundled_is_pushed_unchanged() {
    use common::registry_images::{get_index, get_manifest, sha256};
    let (mut f, upstream, id) =
        index_fixture("index-whole", &["linux/amd64", "linux/arm64"], false);
    let site = unique("index-whole-site");
    let report = json(&ok(&mut f.push_plain(&site)));
    let repo = format!("{site}/{}", f.image);

    let (by_tag, _) = get_index(&repo, "multi");
    assert_eq!(
        by_tag, upstream.index_digest,
        "the tag ends on the upstream index"
    );
    let (by_digest, _) = get_index(&repo, &upstream.index_digest);
    assert_eq!(
        by_digest, upstream.index_digest,
        "the upstream index digest resolves"
    );
    assert_eq!(
        sha256(&get_manifest(&repo, &upstream.arm64_digest)),
        upstream.arm64_digest,
        "the other platform's manifest is pushed by digest"
    );

    let (image, name) = index_ref(&report, ":multi");
    assert_eq!(image["manifest_digest"], upstream.amd64_digest.as_str());
    assert_eq!(
        image["index"]["digest"],
        upstream.index_digest.as_str(),
        "{report}"
    );
    assert_eq!(image["index"]["old_digest"], upstream.index_digest.as_str());
    assert_eq!(image["index"]["manifests"], 2);
    assert_eq!(name["digest"], upstream.index_digest.as_str());
    assert_eq!(name["old_digest"], Value::Null, "nothing changed: {report}");
    let other = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["manifest_digest"] == upstream.arm64_digest.as_str())
        .expect("the nameless platform is in the mapping");
    assert_eq!(other["index"]["digest"], upstream.index_digest.as_str());

    let pushed = format!("127.0.0.1:5000/{repo}:multi");
    assert_eq!(name["pushed"], pushed.as_str());
    assert_eq!(f.pull(&pushed, None), id, "a pull by tag gives the image");
}

#[test]
fn an_index_bundled_for_one_platform_is_pushed_as_a_new_index_of_it() {
    use common::registry_images::{OCI_INDEX, get_index};
    let (mut f, upstream, id) = index_fixture("index-one", &["linux/amd64"], false);
    let site = unique("index-one-site");
    let mapping = f.path().join("mapping.json");
    let out = ok(f.push_plain(&site).arg("--mapping").arg(&mapping));
    let report = json(&out);
    assert!(stderr(&out).contains("new index"), "{}", stderr(&out));
    let repo = format!("{site}/{}", f.image);

    let (image, name) = index_ref(&report, ":multi");
    let new = image["index"]["digest"].as_str().unwrap().to_string();
    assert_ne!(new, upstream.index_digest);
    assert_eq!(image["index"]["old_digest"], upstream.index_digest.as_str());
    assert_eq!(image["index"]["manifests"], 1);
    assert_eq!(name["digest"], new.as_str());
    assert_eq!(
        name["old_digest"],
        upstream.index_digest.as_str(),
        "the mapping says old index -> new"
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    assert_eq!(written["images"], report["images"]);

    let (by_tag, bytes) = get_index(&repo, "multi");
    assert_eq!(by_tag, new, "the tag ends on the new index");
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], upstream.amd64_digest.as_str());
    assert_eq!(listed[0]["platform"]["architecture"], "amd64");

    let pushed = format!("127.0.0.1:5000/{repo}:multi");
    assert_eq!(f.pull(&pushed, None), id, "a pull by tag gives the image");
}

#[test]
fn a_name_pinned_to_an_index_bundled_for_one_platform_maps_to_the_new_index() {
    use common::registry_images::get_index;
    let (mut f, upstream, id) = index_fixture("index-pin", &["linux/amd64"], true);
    let site = unique("index-pin-site");
    let report = json(&ok(&mut f.push_plain(&site)));
    let repo = format!("{site}/{}", f.image);
    let (image, name) = index_ref(&report, &format!("@{}", upstream.index_digest));
    let new = image["index"]["digest"].as_str().unwrap();
    assert_ne!(new, upstream.index_digest);
    assert_eq!(name["digest"], new);
    assert_eq!(name["old_digest"], upstream.index_digest.as_str());
    let pin_tag = format!(
        "offpack-pin-sha256-{}",
        upstream.index_digest.trim_start_matches("sha256:")
    );
    assert_eq!(name["pin_tag"], pin_tag.as_str(), "{report}");
    assert_eq!(
        get_index(&repo, &pin_tag).0,
        new,
        "the pin tag ends on the new index"
    );
    let pushed = name["pushed"].as_str().unwrap();
    assert_eq!(pushed, format!("127.0.0.1:5000/{repo}@{new}"));
    assert_eq!(
        f.pull(pushed, None),
        id,
        "a pull by the new digest gives the image"
    );
}

/// A login kept by a credential helper (`credHelpers` in the Docker config, as `docker login`
/// leaves it with a helper): the push asks `docker-credential-<name> get` for the registry.
#[test]
fn a_credential_helper_gives_the_login() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new("helper", &[100_000]);
    let registry = format!("127.0.0.1:5001/{}", unique("helper"));
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-offpack-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r server\n[ \"$server\" = 127.0.0.1:5001 ] || exit 1\n\
             printf '%s' '{{\"ServerURL\":\"127.0.0.1:5001\",\"Username\":\"{REGISTRY_USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        r#"{"credHelpers":{"127.0.0.1:5001":"offpack-test"}}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let report = json(&ok(f
        .push(&["--registry", &registry, "--insecure"])
        .env("DOCKER_CONFIG", config.path())
        .env("PATH", &path)));
    assert_eq!(report["blobs_sent"], 2, "config and layer: {report}");
}
