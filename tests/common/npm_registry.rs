//! A fixture npm registry on 127.0.0.1 for tests (the public registry cannot be reached here):
//! it plays the registry's read side for the tiny packages of `tests/fixtures/npm/packages/`,
//! packed by the real `npm pack`, so a real `npm install --registry <url>` against it writes a
//! real package-lock.json whose `resolved` URLs point back to it.
//!
//! Routes, as the public registry has them: `GET /<name>` and `GET /@scope%2fname` (also `%2F`
//! and `@scope/name`) answer the packument (every version, `dist.tarball` on this server,
//! `dist.integrity` sha512, `dist.shasum`); `GET /<name>/-/<unscoped>-<version>.tgz` answers the
//! tarball. Every request is counted; [`NpmFixtureRegistry::corrupt`] makes a tarball's bytes
//! differ from its integrity.
//!
//! npm is required: without it these helpers panic, so a test that needs them fails instead of
//! skipping.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha512};

/// One fixture package, packed.
#[derive(Debug, Clone)]
pub struct FixturePackage {
    pub name: String,
    pub version: String,
    /// Its package.json.
    pub manifest: serde_json::Value,
    /// The `npm pack` tarball.
    pub tarball: Vec<u8>,
    /// `sha512-<base64>` of the tarball.
    pub integrity: String,
    /// sha1 hex of the tarball (the packument's `dist.shasum`).
    pub shasum: String,
}

impl FixturePackage {
    /// `<unscoped name>-<version>.tgz`, the registry's file name.
    pub fn filename(&self) -> String {
        let unscoped = self.name.rsplit('/').next().unwrap_or(&self.name);
        format!("{unscoped}-{}.tgz", self.version)
    }
}

/// The fixture packages of the repository.
pub fn fixture_packages_dir() -> PathBuf {
    super::repo_root().join("tests/fixtures/npm/packages")
}

/// `npm` with none of the caller's npm configuration: no `npm_config_*` variables, empty user and
/// global config files, no update check. Panics when npm cannot run.
pub fn npm(config_dir: &Path) -> Command {
    let version = Command::new("npm").arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "these tests need npm (Debian package `npm`), which does not run here: {other:?}"
        ),
    }
    std::fs::create_dir_all(config_dir).expect("create the npm config dir");
    let userconfig = config_dir.join("npmrc");
    let globalconfig = config_dir.join("npmrc-global");
    for file in [&userconfig, &globalconfig] {
        if !file.exists() {
            std::fs::write(file, "").expect("write an empty npmrc");
        }
    }
    let mut cmd = Command::new("npm");
    for (name, _) in std::env::vars_os() {
        let lower = name.to_string_lossy().to_ascii_lowercase();
        if lower.starts_with("npm_config_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("npm_config_userconfig", &userconfig)
        .env("npm_config_globalconfig", &globalconfig)
        .env("npm_config_cache", config_dir.join("cache"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false");
    cmd
}

/// Packs every package dir under `packages_dir` (a dir with a package.json) once per process.
pub fn packed(packages_dir: &Path) -> Arc<Vec<FixturePackage>> {
    static PACKED: OnceLock<Mutex<HashMap<PathBuf, Arc<Vec<FixturePackage>>>>> = OnceLock::new();
    let mut packed = PACKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    packed
        .entry(packages_dir.to_path_buf())
        .or_insert_with(|| Arc::new(pack_all(packages_dir)))
        .clone()
}

fn pack_all(packages_dir: &Path) -> Vec<FixturePackage> {
    let work = tempfile::tempdir().expect("tempdir");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(packages_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", packages_dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("package.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixture packages in {}",
        packages_dir.display()
    );
    let mut packages = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let dest = work.path().join(format!("pack-{n}"));
        std::fs::create_dir_all(&dest).expect("create the pack dir");
        let out = super::run(
            npm(&work.path().join("npm"))
                .args(["pack", "--ignore-scripts", "--json", "--pack-destination"])
                .arg(&dest)
                .arg(dir),
        );
        assert!(out.status.success(), "npm pack {} failed", dir.display());
        let tgz = std::fs::read_dir(&dest)
            .expect("list the pack dir")
            .map(|e| e.expect("dir entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "tgz"))
            .unwrap_or_else(|| panic!("npm pack {} wrote no tarball", dir.display()));
        let tarball = std::fs::read(&tgz).expect("read the tarball");
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("package.json")).expect("read package.json"),
        )
        .expect("package.json is JSON");
        let field = |name: &str| {
            manifest[name]
                .as_str()
                .unwrap_or_else(|| panic!("{}: package.json has no {name}", dir.display()))
                .to_string()
        };
        packages.push(FixturePackage {
            name: field("name"),
            version: field("version"),
            integrity: format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
            ),
            shasum: hex::encode(Sha1::digest(&tarball)),
            manifest,
            tarball,
        });
    }
    packages
}

struct State {
    packages: Arc<Vec<FixturePackage>>,
    base_url: String,
    requests: AtomicUsize,
    corrupt: Mutex<HashSet<(String, String)>>,
    stop: AtomicBool,
}

/// The running fixture registry; stops when dropped.
pub struct NpmFixtureRegistry {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl NpmFixtureRegistry {
    /// Packs the packages of `packages_dir` (once per process) and serves them on 127.0.0.1.
    pub fn start(packages_dir: &Path) -> NpmFixtureRegistry {
        NpmFixtureRegistry::start_at(packages_dir, std::net::Ipv4Addr::LOCALHOST)
    }

    /// The same on `ip`, e.g. the bridge gateway, where build containers reach it (a bundle's
    /// own build runs `npm ci` against it).
    pub fn start_at(packages_dir: &Path, ip: std::net::Ipv4Addr) -> NpmFixtureRegistry {
        let packages = packed(packages_dir);
        let listener = TcpListener::bind((ip, 0)).expect("listen for the fixture registry");
        let addr = listener.local_addr().expect("listener address");
        let state = Arc::new(State {
            packages,
            base_url: format!("http://{addr}"),
            requests: AtomicUsize::new(0),
            corrupt: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
        });
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                std::thread::spawn(move || {
                    let _ = serve(&state, stream);
                });
            }
        });
        NpmFixtureRegistry {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// The registry of the repository's fixture packages.
    pub fn start_default() -> NpmFixtureRegistry {
        NpmFixtureRegistry::start(&fixture_packages_dir())
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.state.base_url.clone()
    }

    /// Requests answered so far (any route, any status).
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// From now on the tarball of `name@version` is served with one byte changed.
    pub fn corrupt(&self, name: &str, version: &str) {
        assert!(
            self.package(name, version).is_some(),
            "no fixture package {name}@{version}"
        );
        self.state
            .corrupt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((name.to_string(), version.to_string()));
    }

    pub fn packages(&self) -> &[FixturePackage] {
        &self.state.packages
    }

    pub fn package(&self, name: &str, version: &str) -> Option<&FixturePackage> {
        self.state
            .packages
            .iter()
            .find(|p| p.name == name && p.version == version)
    }

    /// Where this registry serves the tarball of `name@version`.
    pub fn tarball_url(&self, name: &str, version: &str) -> String {
        let unscoped = name.rsplit('/').next().unwrap_or(name);
        format!("{}/{name}/-/{unscoped}-{version}.tgz", self.state.base_url)
    }
}

impl Drop for NpmFixtureRegistry {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request and closes the connection.
fn serve(state: &State, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Headers: read and ignore, up to the blank line.
    let mut header_bytes = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        header_bytes += n;
        if n == 0 || line == "\r\n" || line == "\n" || header_bytes > 64 * 1024 {
            break;
        }
    }
    if state.stop.load(Ordering::SeqCst) || request_line.is_empty() {
        return Ok(());
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = if method != "GET" && method != "HEAD" {
        (405, "text/plain", b"only GET\n".to_vec())
    } else {
        route(state, path)
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()?;
    // Let the client read everything before the socket closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = [0u8; 256];
    let _ = stream.read(&mut rest);
    Ok(())
}

fn route(state: &State, path: &str) -> (u16, &'static str, Vec<u8>) {
    let decoded = path
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%40", "@");
    let decoded = decoded.trim_start_matches('/');
    let not_found = |what: String| {
        (
            404,
            "text/plain",
            format!("{what} not found\n").into_bytes(),
        )
    };
    if let Some((name, file)) = decoded.split_once("/-/") {
        let Some(package) = state
            .packages
            .iter()
            .find(|p| p.name == name && p.filename() == file)
        else {
            return not_found(format!("tarball /{decoded}"));
        };
        let mut bytes = package.tarball.clone();
        let corrupt = state
            .corrupt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(package.name.clone(), package.version.clone()));
        if corrupt {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }
        return (200, "application/octet-stream", bytes);
    }
    let versions: Vec<&FixturePackage> = state
        .packages
        .iter()
        .filter(|p| p.name == decoded)
        .collect();
    if versions.is_empty() {
        return not_found(format!("package {decoded}"));
    }
    let body = packument(&state.base_url, decoded, &versions);
    (200, "application/json", body.to_string().into_bytes())
}

/// The registry's document of package `name`.
fn packument(base_url: &str, name: &str, versions: &[&FixturePackage]) -> serde_json::Value {
    let mut docs = serde_json::Map::new();
    let mut time = BTreeMap::new();
    for package in versions {
        let mut doc = package.manifest.clone();
        doc["_id"] = format!("{name}@{}", package.version).into();
        doc["dist"] = serde_json::json!({
            "tarball": format!("{base_url}/{name}/-/{}", package.filename()),
            "integrity": package.integrity,
            "shasum": package.shasum,
        });
        docs.insert(package.version.clone(), doc);
        time.insert(package.version.clone(), "2024-01-01T00:00:00.000Z");
    }
    let latest = versions
        .iter()
        .map(|p| p.version.as_str())
        .max_by_key(|v| {
            v.split('.')
                .map(|n| n.parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    serde_json::json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": latest },
        "versions": docs,
        "time": time,
    })
}

/// A fixture app in a temporary directory: a package.json with `dependencies`, installed with the
/// real `npm install` from `registry`, so the directory holds a real package-lock.json (and
/// node_modules).
pub fn fixture_app(
    registry: &NpmFixtureRegistry,
    dependencies: &[(&str, &str)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps: serde_json::Map<String, serde_json::Value> = dependencies
        .iter()
        .map(|(name, range)| (name.to_string(), serde_json::Value::from(*range)))
        .collect();
    let manifest = serde_json::json!({
        "name": "offpack-fixture-app",
        "version": "1.0.0",
        "private": true,
        "dependencies": deps,
    });
    std::fs::write(
        dir.path().join("package.json"),
        serde_json::to_string_pretty(&manifest).expect("JSON"),
    )
    .expect("write package.json");
    npm_install(registry, dir.path());
    dir
}

/// Runs `npm install` in `dir` against `registry` (npm's cache and config in a temporary
/// directory); panics when it fails.
pub fn npm_install(registry: &NpmFixtureRegistry, dir: &Path) {
    let npm_home = tempfile::tempdir().expect("tempdir");
    let out = super::run(
        npm(npm_home.path())
            .current_dir(dir)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--registry",
            ])
            .arg(registry.url()),
    );
    assert!(
        out.status.success(),
        "npm install against the fixture registry failed in {}",
        dir.display()
    );
    assert!(
        dir.join("package-lock.json").is_file(),
        "npm install wrote no package-lock.json"
    );
}
