//! `offpack serve`: the real binary serving a bundle's packages to the real pip and npm.
//!
//! The wheels come from PyPI (downloaded once into the target directory), the npm tarballs are
//! made by `npm pack` of fixture packages written here. These tests fail, not skip, when pip or
//! npm is missing: they are what proves the server speaks both protocols.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{offpack, ok, run, stderr};
use offpack_bundle::{BundleReader, BundleWriter, Manifest, Package, WriteOptions};
use serde_json::{Value, json};

/// One file to carry: ecosystem, name, version, path.
type Carried = (&'static str, String, String, PathBuf);

/// `bottle==0.13.4` and `six==1.16.0` wheels, downloaded once per target directory.
fn wheels() -> Vec<Carried> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-wheels");
    let files = [
        ("bottle", "0.13.4", "bottle-0.13.4-py2.py3-none-any.whl"),
        ("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl"),
    ];
    if !files.iter().all(|(_, _, f)| dir.join(f).is_file()) {
        let mut pip = host_pip();
        pip.args(["download", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&dir)
            .args(["bottle==0.13.4", "six==1.16.0"]);
        ok(&mut pip);
    }
    files
        .iter()
        .map(|(name, version, file)| {
            (
                "pypi",
                name.to_string(),
                version.to_string(),
                dir.join(file),
            )
        })
        .collect()
}

/// The host's pip without the machine's `PIP_*` settings (find-links and the like).
fn host_pip() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIP_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    no_proxy(&mut cmd);
    cmd
}

/// The local server is reached directly, whatever proxy the machine sets.
fn no_proxy(cmd: &mut Command) {
    for var in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
}

/// npm with no settings but its cache and config under `home`.
fn npm(home: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("npm");
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy().to_ascii_lowercase();
        if key_text.starts_with("npm_config_") {
            cmd.env_remove(&key);
        }
    }
    fs_err::create_dir_all(home).unwrap();
    let userconfig = home.join("npmrc");
    if !userconfig.exists() {
        fs_err::write(&userconfig, "").unwrap();
    }
    cmd.current_dir(dir)
        .env("npm_config_cache", home.join("cache"))
        .env("npm_config_userconfig", &userconfig)
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false");
    no_proxy(&mut cmd);
    cmd
}

/// Tarballs of `offpack-fixture-base` 1.0.0 and 1.1.0 and `@offpack-fixture/util` 1.0.0 (which
/// depends on `offpack-fixture-base@^1.0.0`), made by `npm pack`.
fn npm_tarballs(work: &Path) -> Vec<Carried> {
    let out = work.join("tarballs");
    fs_err::create_dir_all(&out).unwrap();
    let packages = [
        (
            "offpack-fixture-base",
            "1.0.0",
            json!({"name": "offpack-fixture-base", "version": "1.0.0", "main": "index.js"}),
            "module.exports = 40;\n",
        ),
        (
            "offpack-fixture-base",
            "1.1.0",
            json!({"name": "offpack-fixture-base", "version": "1.1.0", "main": "index.js"}),
            "module.exports = 41;\n",
        ),
        (
            "@offpack-fixture/util",
            "1.0.0",
            json!({
                "name": "@offpack-fixture/util",
                "version": "1.0.0",
                "main": "index.js",
                "dependencies": {"offpack-fixture-base": "^1.0.0"},
            }),
            "module.exports = require('offpack-fixture-base') + 1;\n",
        ),
    ];
    let mut carried = Vec::new();
    for (name, version, manifest, code) in packages {
        let src = work.join("src").join(name.replace('/', "+")).join(version);
        fs_err::create_dir_all(&src).unwrap();
        fs_err::write(src.join("package.json"), manifest.to_string()).unwrap();
        fs_err::write(src.join("index.js"), code).unwrap();
        let mut pack = npm(&work.join("npm-home"), &src);
        pack.arg("pack").arg("--pack-destination").arg(&out);
        ok(&mut pack);
        let file = format!(
            "{}-{version}.tgz",
            name.trim_start_matches('@').replace('/', "-")
        );
        let path = out.join(&file);
        assert!(path.is_file(), "npm pack made no {}", path.display());
        carried.push(("npm", name.to_owned(), version.to_owned(), path));
    }
    carried
}

/// Writes a bundle holding `files` as packages.
fn write_bundle(path: &Path, files: &[Carried]) {
    let mut writer = BundleWriter::create(path, WriteOptions::default()).unwrap();
    let mut manifest = Manifest::new(env!("CARGO_PKG_VERSION"), "serve-test");
    for (ecosystem, name, version, file) in files {
        let data = fs_err::read(file).unwrap();
        let digest = writer.add_blob_bytes(&data).unwrap();
        // From JSON, so that fields a later format adds keep this compiling.
        let package: Package = serde_json::from_value(json!({
            "ecosystem": ecosystem,
            "name": name,
            "version": version,
            "filename": file.file_name().unwrap().to_string_lossy(),
            "digest": digest.to_string(),
            "size": data.len(),
        }))
        .unwrap();
        manifest.packages.push(package);
    }
    writer.finish(manifest).unwrap();
}

/// A running `offpack serve`, killed when dropped.
struct Served {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Served {
    fn start(args: &[&str], dir: &Path) -> Served {
        let mut cmd = offpack(dir);
        cmd.arg("serve").args(args);
        Served::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Served {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        eprintln!("$ {cmd:?}");
        let mut child = cmd.spawn().expect("start offpack serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Served { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "offpack serve ended before printing");
        eprintln!("serve: {}", line.trim_end());
        line
    }

    /// SIGTERM; it must exit 0.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        ok(Command::new("kill").args(["-TERM", &pid]));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "offpack serve exited {status} on SIGTERM");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request: status, headers (lower-case names), body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    accept: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn real_pip_and_npm_install_from_a_served_bundle() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let mut files = wheels();
    files.extend(npm_tarballs(work));
    let bundle = work.join("packages.offpack");
    write_bundle(&bundle, &files);

    let mut served = Served::start(&[bundle.to_str().unwrap(), "--port", "0", "--json"], work);
    let listening: Value = serde_json::from_str(&served.line()).unwrap();
    let pip_url = listening["pip_index_url"].as_str().unwrap().to_owned();
    let registry = listening["npm_registry"].as_str().unwrap().to_owned();
    let addr = listening["address"].as_str().unwrap().to_owned();
    assert_eq!(listening["packages"], 5);
    assert_eq!(pip_url, format!("http://{addr}/simple/"));
    assert_eq!(registry, format!("http://{addr}/"));

    // pip, from the index alone.
    let target = work.join("site");
    let mut pip = host_pip();
    pip.args(["install", "--no-cache-dir", "--target"])
        .arg(&target)
        .args(["--index-url", &pip_url, "bottle==0.13.4", "six"]);
    ok(&mut pip);
    assert!(target.join("bottle.py").is_file());
    assert!(target.join("six.py").is_file());
    assert!(target.join("six-1.16.0.dist-info").is_dir());

    // npm install resolves through the packuments and writes a lock pointing at the server.
    let project = work.join("project");
    fs_err::create_dir_all(&project).unwrap();
    fs_err::write(
        project.join("package.json"),
        r#"{"name": "serve-test", "version": "1.0.0", "private": true}"#,
    )
    .unwrap();
    let mut install = npm(&work.join("npm-install-home"), &project);
    install.args(["install", "--registry", &registry, "@offpack-fixture/util"]);
    ok(&mut install);
    for name in ["@offpack-fixture/util", "offpack-fixture-base"] {
        assert!(
            project
                .join("node_modules")
                .join(name)
                .join("package.json")
                .is_file(),
            "npm installed no {name}"
        );
    }
    let lock: Value =
        serde_json::from_str(&fs_err::read_to_string(project.join("package-lock.json")).unwrap())
            .unwrap();
    let base = &lock["packages"]["node_modules/offpack-fixture-base"];
    assert_eq!(base["version"], "1.1.0", "the highest match of ^1.0.0");
    assert_eq!(
        base["resolved"],
        format!("{registry}offpack-fixture-base/-/offpack-fixture-base-1.1.0.tgz")
    );
    assert!(base["integrity"].as_str().unwrap().starts_with("sha512-"));
    assert_eq!(
        lock["packages"]["node_modules/@offpack-fixture/util"]["resolved"],
        format!("{registry}@offpack-fixture/util/-/util-1.0.0.tgz")
    );

    // npm ci from that lock, with an empty cache: every tarball comes from the server.
    let fresh = work.join("fresh");
    fs_err::create_dir_all(&fresh).unwrap();
    for file in ["package.json", "package-lock.json"] {
        fs_err::copy(project.join(file), fresh.join(file)).unwrap();
    }
    let mut ci = npm(&work.join("npm-ci-home"), &fresh);
    ci.args(["ci", "--registry", &registry]);
    ok(&mut ci);
    let out = ok(Command::new("node")
        .current_dir(&fresh)
        .args(["-e", "console.log(require('@offpack-fixture/util'))"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // What is not carried is a 404 that says so.
    let (status, headers, body) = http(&addr, "GET", "/simple/requests/", "text/html");
    assert_eq!(status, 404);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        String::from_utf8_lossy(&body),
        "offpack: pypi package requests is not in the bundle\n"
    );
    let (status, _, body) = http(&addr, "GET", "/left-pad", "application/json");
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "offpack: npm package left-pad is not in the bundle\n"
    );
    // pip's names are redirected to the normalized page, as PyPI does.
    let (status, headers, _) = http(&addr, "GET", "/simple/Bottle/", "text/html");
    assert_eq!(status, 301);
    assert_eq!(header(&headers, "location"), Some("/simple/bottle/"));
    // HEAD: the headers of GET, no body.
    let (status, headers, body) = http(
        &addr,
        "HEAD",
        "/offpack-fixture-base/-/offpack-fixture-base-1.0.0.tgz",
        "*/*",
    );
    assert_eq!(status, 200);
    let tarball_len = fs_err::metadata(&files[2].3).unwrap().len();
    assert_eq!(
        header(&headers, "content-length"),
        Some(tarball_len.to_string().as_str())
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert!(body.is_empty());
    let (status, _, body) = http(
        &addr,
        "GET",
        "/offpack-fixture-base/-/offpack-fixture-base-1.0.0.tgz",
        "*/*",
    );
    assert_eq!(status, 200);
    assert_eq!(body, fs_err::read(&files[2].3).unwrap());
    // PEP 691 when asked.
    let (status, headers, body) = http(
        &addr,
        "GET",
        "/simple/six/",
        "application/vnd.pypi.simple.v1+json",
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        page["files"][0]["filename"],
        "six-1.16.0-py2.py3-none-any.whl"
    );
    // Read-only.
    let (status, headers, _) = http(&addr, "PUT", "/offpack-fixture-base", "*/*");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

    served.terminate();
}

#[test]
fn print_env_prints_shell_settings_for_the_address_it_serves() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let files = npm_tarballs(work);
    let bundle = work.join("npm.offpack");
    write_bundle(&bundle, &files);
    let mut served = Served::start(
        &[
            bundle.to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--print-env",
        ],
        work,
    );
    let lines: Vec<String> = (0..3).map(|_| served.line()).collect();
    let index = lines[0]
        .strip_prefix("export PIP_INDEX_URL='http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/simple/'\n"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let port: u16 = index.parse().unwrap();
    assert_eq!(
        lines[1],
        format!("export PIP_TRUSTED_HOST='127.0.0.1:{port}'\n")
    );
    assert_eq!(
        lines[2],
        format!("export npm_config_registry='http://127.0.0.1:{port}/'\n")
    );
    let (status, _, body) = http(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/@offpack-fixture%2futil",
        "*/*",
    );
    assert_eq!(status, 200);
    let packument: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(packument["dist-tags"]["latest"], "1.0.0");
    assert_eq!(
        packument["versions"]["1.0.0"]["dependencies"]["offpack-fixture-base"],
        "^1.0.0"
    );
    served.terminate();
}

#[test]
fn a_tampered_bundle_is_refused_before_anything_is_served() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let files = npm_tarballs(work);
    let bundle = work.join("tampered.offpack");
    write_bundle(&bundle, &files);
    // Change one byte in the middle of the util tarball's compressed data.
    let util = &files[2];
    let digest = offpack_bundle::Digest::of_bytes(&fs_err::read(&util.3).unwrap());
    let entry = BundleReader::open(&bundle)
        .unwrap()
        .index()
        .entry(&digest.blob_path())
        .unwrap()
        .clone();
    let mut bytes = fs_err::read(&bundle).unwrap();
    let at = (entry.offset + entry.compressed_len / 2) as usize;
    bytes[at] ^= 0x55;
    fs_err::write(&bundle, &bytes).unwrap();

    let out = run(offpack(work).args(["serve", bundle.to_str().unwrap(), "--port", "0"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a corrupt bundle is a failed check"
    );
    assert!(out.stdout.is_empty(), "nothing may be printed as served");
    let err = stderr(&out);
    assert!(err.contains("refused, nothing is served"), "{err}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let store = work.join("home");
    fs_err::create_dir_all(store.join("packages")).unwrap();
    let out = run(offpack(work)
        .env("OFFPACK_HOME", &store)
        .args(["serve", "--port", &port]));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("--port"),
        "{err}"
    );
}

#[test]
fn without_a_bundle_it_serves_the_package_store() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let home = work.join("home");
    let store = home.join("packages");
    fs_err::create_dir_all(store.join("blobs/sha256")).unwrap();
    let data = b"not really a wheel".to_vec();
    let digest = offpack_bundle::Digest::of_bytes(&data);
    fs_err::write(store.join("blobs/sha256").join(digest.hex()), &data).unwrap();
    let index = json!([{
        "ecosystem": "pypi",
        "name": "Demo_Pkg",
        "version": "1.0",
        "filename": "demo_pkg-1.0-py3-none-any.whl",
        "digest": digest.to_string(),
        "size": data.len(),
    }]);
    fs_err::write(store.join("index.json"), index.to_string()).unwrap();
    let mut cmd = offpack(work);
    cmd.env("OFFPACK_HOME", &home).args(["serve", "--json"]);
    let mut served = Served::spawn(cmd);
    let listening: Value = serde_json::from_str(&served.line()).unwrap();
    assert_eq!(listening["bundle"], false);
    assert_eq!(listening["pypi"], 1);
    let addr = listening["address"].as_str().unwrap().to_owned();
    let (status, _, body) = http(&addr, "GET", "/simple/demo-pkg/", "text/html");
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body).into_owned();
    let href = format!("/files/{}/demo_pkg-1.0-py3-none-any.whl", digest.hex());
    assert!(
        page.contains(&format!("{href}#sha256={}", digest.hex())),
        "{page}"
    );
    let (status, _, body) = http(&addr, "GET", &href, "*/*");
    assert_eq!(status, 200);
    assert_eq!(body, data);
    let (status, _, body) = http(&addr, "GET", "/simple/other/", "text/html");
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "offpack: pypi package other is not in the package store\n"
    );
    served.terminate();
}
