//! The package server: a read-only HTTP server that plays the Python package index (PEP 503,
//! PEP 691) and the npm registry for the packages of a [`PackageSource`], so that an unchanged
//! `pip install` or `npm ci` pointed at it installs them without any network.
//!
//! Routes: `/simple/` and `/simple/<normalized>/` (pip; a name that is not normalized is
//! redirected, as PyPI does), `/files/<sha256 hex>/<filename>` (the files the pages link),
//! `/<name>`, `/@scope%2fname`, `/@scope/name` (npm packuments), `/<name>/-/<file>.tgz` and
//! `/@scope/name/-/<file>.tgz` (npm tarballs). Only GET and HEAD.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use offpack_bundle::{Digest, Package};
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha512};

use crate::http::{Body, HttpServer, base_url_of, empty, full, json_ok, stream_blocking, text};

use super::source::PackageSource;
use offpack_packages::npm::Integrity;
use offpack_packages::npm::registry::{self, NpmRoute, PackumentVersion};
use offpack_packages::pip::index::{self, IndexFile};
use offpack_packages::pip::names::normalize;

/// Largest `package.json` read from an npm tarball; a larger one gives a minimal manifest.
const MAX_PACKAGE_JSON: u64 = 1 << 20;
/// A running package server. [`stop`](Self::stop), or dropping it, stops it and waits for its
/// thread.
#[derive(Debug)]
pub struct PackageServer {
    server: HttpServer,
}

impl PackageServer {
    /// Listens on `addr` (port 0: any free port) and serves `source` from a thread of its own
    /// with its own async runtime, so it runs alongside whatever the caller does. Fails at once
    /// when the address cannot be bound.
    pub fn start(source: Arc<dyn PackageSource>, addr: SocketAddr) -> Result<PackageServer> {
        let server = HttpServer::start("the package server", "--port", addr, |bound| {
            let state = Arc::new(State {
                source,
                bound,
                tarballs: Mutex::new(HashMap::new()),
            });
            Arc::new(move |request| Box::pin(handle(state.clone(), request)))
        })?;
        Ok(PackageServer { server })
    }

    /// The address it listens on (with the port chosen for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://HOST:PORT` without a trailing slash; a server listening on every interface
    /// (`0.0.0.0`, `::`) is named by the loopback address.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// How many requests it has answered or is answering.
    pub fn requests(&self) -> u64 {
        self.server.requests()
    }

    /// Stops listening, cuts open connections and waits for the server's thread.
    pub fn stop(self) {
        self.server.stop();
    }

    /// The HTTP server underneath.
    pub fn into_http(self) -> HttpServer {
        self.server
    }
}

struct State {
    source: Arc<dyn PackageSource>,
    bound: SocketAddr,
    /// What each npm tarball says of itself, read once.
    tarballs: Mutex<HashMap<Digest, Arc<TarballInfo>>>,
}

/// An npm tarball's `package.json` and integrity.
#[derive(Debug)]
struct TarballInfo {
    manifest: Value,
    integrity: String,
}

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/`: a line saying what this is.
    Home,
    /// `/simple/`.
    SimpleRoot,
    /// `/simple/<normalized>/`.
    SimpleProject(String),
    /// Answered with 301 to this path.
    Redirect(String),
    /// `/files/<hex>/<filename>`.
    File {
        hex: String,
        filename: String,
    },
    Npm(NpmRoute),
    NotFound,
}

fn route(path: &str) -> Route {
    if path == "/" {
        return Route::Home;
    }
    if let Some(rest) = path.strip_prefix("/simple/") {
        if rest.is_empty() {
            return Route::SimpleRoot;
        }
        let project = match rest.split_once('/') {
            None => Some((rest, false)),
            Some((name, "")) => Some((name, true)),
            // `/simple/-/simple-1.0.0.tgz` is the tarball of an npm package named `simple`.
            Some(_) => None,
        };
        if let Some((name, slash)) = project
            && name != "-"
        {
            let Some(name) = index::percent_decode_segment(name) else {
                return Route::NotFound;
            };
            let normalized = normalize(&name);
            if normalized.is_empty() || normalized.contains(['/', '\\']) {
                return Route::NotFound;
            }
            return if slash && normalized == name {
                Route::SimpleProject(normalized)
            } else {
                Route::Redirect(format!(
                    "/simple/{}/",
                    index::percent_encode_segment(&normalized)
                ))
            };
        }
    }
    if let Some(rest) = path.strip_prefix("/files/")
        && let Some((hex, filename)) = rest.split_once('/')
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return match index::percent_decode_segment(filename) {
            Some(filename) if !filename.is_empty() && !filename.contains('/') => Route::File {
                hex: hex.to_owned(),
                filename,
            },
            _ => Route::NotFound,
        };
    }
    match registry::parse_request_path(path) {
        Some(npm) => Route::Npm(npm),
        None => Route::NotFound,
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "offpack: the package server is read-only: only GET and HEAD\n".into(),
                false,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    match route(request.uri().path()) {
        Route::Home => text(
            StatusCode::OK,
            "offpack package server: pip index at /simple/, npm registry at /\n".into(),
            head,
        ),
        Route::Redirect(location) => redirect(&location, head),
        Route::NotFound => text(
            StatusCode::NOT_FOUND,
            format!(
                "offpack: nothing is served at {}\n",
                offpack_bundle::escape_controls(request.uri().path())
            ),
            head,
        ),
        Route::SimpleRoot => simple_root(&state, wants_pypi_json(&request), head),
        Route::SimpleProject(name) => {
            simple_project(&state, &name, wants_pypi_json(&request), head)
        }
        Route::File { hex, filename } => {
            let package = state
                .source
                .packages()
                .into_iter()
                .find(|p| p.digest.hex() == hex && p.filename == filename);
            match package {
                Some(package) => {
                    blob_response(&state, package, content_type_of(&filename), head).await
                }
                None => not_carried(&state, "", &filename, head),
            }
        }
        Route::Npm(NpmRoute::Packument(name)) => {
            let base = client_base_url(&request, state.bound);
            packument(&state, &name, &base, head).await
        }
        Route::Npm(NpmRoute::Tarball { name, filename }) => {
            let package = state.source.packages().into_iter().find(|p| {
                p.ecosystem == "npm"
                    && p.name == name
                    && (p.filename == filename
                        || registry::tarball_path(&p.name, &p.version)
                            .ends_with(&format!("/-/{filename}")))
            });
            match package {
                Some(package) => {
                    blob_response(&state, package, "application/octet-stream", head).await
                }
                None => not_carried(&state, "npm", &name, head),
            }
        }
    }
}

fn content_type_of(filename: &str) -> &'static str {
    if filename.ends_with(".whl") || filename.ends_with(".zip") {
        "application/zip"
    } else if filename.ends_with(".tar.gz") || filename.ends_with(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

/// Whether the client prefers PEP 691 JSON to HTML (pip ≥ 22.2 asks for it first).
fn wants_pypi_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(prefers_pypi_json_header)
}

fn prefers_pypi_json_header(accept: &str) -> bool {
    let mut json_q = 0.0f32;
    let mut html_q = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            index::JSON_MEDIA_TYPE => json_q = json_q.max(q),
            "application/vnd.pypi.simple.v1+html" | "text/html" | "*/*" => html_q = html_q.max(q),
            _ => {}
        }
    }
    json_q > 0.0 && json_q >= html_q
}

/// The base URL as the client named the server (its `Host`), so that tarball URLs work through
/// whatever address reached it; the listening address when the header is missing or odd.
fn client_base_url(request: &Request<Incoming>, bound: SocketAddr) -> String {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h));
    match host {
        Some(host) => format!("http://{host}"),
        None => base_url_of(bound),
    }
}

fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

fn simple_root(state: &State, json: bool, head: bool) -> Response<Body> {
    let packages = state.source.packages();
    // The renderers normalize, sort and deduplicate the names.
    let names: Vec<&str> = packages
        .iter()
        .filter(|p| p.ecosystem == "pypi")
        .map(|p| p.name.as_str())
        .collect();
    if json {
        json_ok(
            &index::render_root_json(&names),
            index::JSON_MEDIA_TYPE,
            head,
        )
    } else {
        html(index::render_root(&names), head)
    }
}

fn simple_project(state: &State, normalized: &str, json: bool, head: bool) -> Response<Body> {
    let mut files: Vec<IndexFile> = state
        .source
        .packages()
        .iter()
        .filter(|p| p.ecosystem == "pypi" && normalize(&p.name) == normalized)
        .map(|p| IndexFile {
            filename: p.filename.clone(),
            url: format!(
                "/files/{}/{}",
                p.digest.hex(),
                index::percent_encode_segment(&p.filename)
            ),
            sha256_hex: p.digest.hex().to_owned(),
            requires_python: None,
        })
        .collect();
    if files.is_empty() {
        return not_carried(state, "pypi", normalized, head);
    }
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    files.dedup_by(|a, b| a.filename == b.filename);
    if json {
        json_ok(
            &index::render_project_json(normalized, &files),
            index::JSON_MEDIA_TYPE,
            head,
        )
    } else {
        html(index::render_project(normalized, &files), head)
    }
}

async fn packument(state: &Arc<State>, name: &str, base: &str, head: bool) -> Response<Body> {
    let mut packages: Vec<Package> = state
        .source
        .packages()
        .into_iter()
        .filter(|p| p.ecosystem == "npm" && p.name == name)
        .collect();
    if packages.is_empty() {
        // `/simple` without its slash, when no npm package is called `simple`.
        if name == "simple" {
            return redirect("/simple/", head);
        }
        return not_carried(state, "npm", name, head);
    }
    packages.sort_by(|a, b| a.version.cmp(&b.version));
    packages.dedup_by(|a, b| a.version == b.version);
    let mut versions = Vec::with_capacity(packages.len());
    for package in packages {
        let info = match tarball_info(state, &package).await {
            Ok(info) => info,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "offpack: cannot read npm package {}@{}: {e}\n",
                        offpack_bundle::escape_controls(&package.name),
                        offpack_bundle::escape_controls(&package.version)
                    ),
                    head,
                );
            }
        };
        versions.push(PackumentVersion {
            tarball_url: format!(
                "{base}{}",
                registry::tarball_path(&package.name, &package.version)
            ),
            version: package.version,
            manifest: info.manifest.clone(),
            integrity: info.integrity.clone(),
            shasum: None,
        });
    }
    json_ok(
        &registry::render_packument(name, &versions),
        "application/json",
        head,
    )
}

/// The tarball's manifest and integrity, read once per blob on a blocking thread.
async fn tarball_info(state: &Arc<State>, package: &Package) -> io::Result<Arc<TarballInfo>> {
    if let Some(info) = lock(&state.tarballs).get(&package.digest) {
        return Ok(info.clone());
    }
    let source = state.source.clone();
    let job_package = package.clone();
    let info = tokio::task::spawn_blocking(move || read_tarball_info(&*source, &job_package))
        .await
        .map_err(io::Error::other)??;
    let info = Arc::new(info);
    lock(&state.tarballs).insert(package.digest.clone(), info.clone());
    Ok(info)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hashes what passes through it.
struct Hashing<R> {
    inner: R,
    sha256: Sha256,
    sha512: Sha512,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        self.sha512.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn read_tarball_info(source: &dyn PackageSource, package: &Package) -> io::Result<TarballInfo> {
    let mut hashing = Hashing {
        inner: source.open(&package.digest)?,
        sha256: Sha256::new(),
        sha512: Sha512::new(),
        len: 0,
    };
    // A tarball that is not gzip'd tar, or has no readable package.json, still installs as
    // far as npm can make of it: the packument gives it a minimal manifest.
    let manifest = package_json(&mut hashing).unwrap_or(Value::Null);
    // The rest of the file, so that the hashes cover all of it.
    io::copy(&mut hashing, &mut io::sink())?;
    let sha256 = hex::encode(hashing.sha256.finalize());
    if sha256 != package.digest.hex() || hashing.len != package.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has {} bytes with sha256 {sha256}, expected {} bytes with {}",
                package.filename, hashing.len, package.size, package.digest
            ),
        ));
    }
    let manifest = match manifest {
        Value::Object(mut m) => {
            // The readme can be large and no client needs it to install.
            m.remove("readme");
            Value::Object(m)
        }
        _ => serde_json::json!({"name": package.name, "version": package.version}),
    };
    Ok(TarballInfo {
        manifest,
        integrity: Integrity::sha512_of(&hashing.sha512.finalize()),
    })
}

/// The first `<dir>/package.json` of a gzip'd tar (`package/package.json` in what `npm pack`
/// makes), at most [`MAX_PACKAGE_JSON`] bytes.
fn package_json(data: &mut impl Read) -> Option<Value> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let is_manifest = {
            let path = entry.path().ok()?;
            let components: Vec<_> = path.components().collect();
            components.len() == 2 && components[1].as_os_str() == "package.json"
        };
        if !is_manifest {
            continue;
        }
        if entry.size() > MAX_PACKAGE_JSON {
            return None;
        }
        let mut bytes = Vec::new();
        entry.take(MAX_PACKAGE_JSON).read_to_end(&mut bytes).ok()?;
        return serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object);
    }
    None
}

/// Streams a package's blob from a blocking thread, in chunks.
async fn blob_response(
    state: &Arc<State>,
    package: Package,
    content_type: &'static str,
    head: bool,
) -> Response<Body> {
    let mut response = if head {
        Response::new(empty())
    } else {
        let source = state.source.clone();
        let digest = package.digest.clone();
        let body = stream_blocking(move |sink| {
            let mut reader = source.open(&digest)?;
            sink.copy_from(&mut reader)
        })
        .await;
        match body {
            Ok(body) => Response::new(body),
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "offpack: cannot read {}: {e}\n",
                        offpack_bundle::escape_controls(&package.filename)
                    ),
                    false,
                );
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(package.size));
    response
}

fn html(body: String, head: bool) -> Response<Body> {
    full(
        StatusCode::OK,
        "text/html; charset=utf-8",
        body.into_bytes(),
        head,
    )
}

fn redirect(location: &str, head: bool) -> Response<Body> {
    let mut response = text(
        StatusCode::MOVED_PERMANENTLY,
        format!("moved to {location}\n"),
        head,
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 404 naming what is not carried.
fn not_carried(state: &State, ecosystem: &str, name: &str, head: bool) -> Response<Body> {
    let what = if ecosystem.is_empty() {
        format!("file {}", offpack_bundle::escape_controls(name))
    } else {
        format!(
            "{ecosystem} package {}",
            offpack_bundle::escape_controls(name)
        )
    };
    text(
        StatusCode::NOT_FOUND,
        format!("offpack: {what} is not in {}\n", state.source.describe()),
        head,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::time::Duration;

    #[test]
    fn routes_pip_npm_and_files() {
        assert_eq!(route("/"), Route::Home);
        assert_eq!(route("/simple/"), Route::SimpleRoot);
        assert_eq!(route("/simple/six/"), Route::SimpleProject("six".into()));
        assert_eq!(
            route("/simple/Six/"),
            Route::Redirect("/simple/six/".into())
        );
        assert_eq!(
            route("/simple/zope.interface/"),
            Route::Redirect("/simple/zope-interface/".into())
        );
        assert_eq!(route("/simple/six"), Route::Redirect("/simple/six/".into()));
        assert_eq!(
            route("/simple/a%5Fb/"),
            Route::Redirect("/simple/a-b/".into())
        );
        assert_eq!(route("/simple/%zz/"), Route::NotFound);
        // An npm package called `simple`.
        assert_eq!(
            route("/simple"),
            Route::Npm(NpmRoute::Packument("simple".into()))
        );
        assert_eq!(
            route("/simple/-/simple-1.0.0.tgz"),
            Route::Npm(NpmRoute::Tarball {
                name: "simple".into(),
                filename: "simple-1.0.0.tgz".into()
            })
        );
        let hex = "a".repeat(64);
        assert_eq!(
            route(&format!("/files/{hex}/six-1.16.0-py2.py3-none-any.whl")),
            Route::File {
                hex: hex.clone(),
                filename: "six-1.16.0-py2.py3-none-any.whl".into()
            }
        );
        assert_eq!(
            route(&format!("/files/{hex}/a%2B1.whl")),
            Route::File {
                hex: hex.clone(),
                filename: "a+1.whl".into()
            }
        );
        assert_eq!(route(&format!("/files/{hex}/a%2Fb")), Route::NotFound);
        // Not a digest: an npm package called `files`.
        assert_eq!(
            route("/files/-/files-1.0.0.tgz"),
            Route::Npm(NpmRoute::Tarball {
                name: "files".into(),
                filename: "files-1.0.0.tgz".into()
            })
        );
        assert_eq!(
            route("/@offpack-fixture%2futil"),
            Route::Npm(NpmRoute::Packument("@offpack-fixture/util".into()))
        );
        assert_eq!(route("/a/b/c"), Route::NotFound);
        assert_eq!(route("/../etc/passwd"), Route::NotFound);
    }

    #[test]
    fn pip_accept_header_picks_json_only_when_preferred() {
        // What pip 23 sends.
        assert!(prefers_pypi_json_header(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
        ));
        assert!(!prefers_pypi_json_header("text/html"));
        assert!(!prefers_pypi_json_header("*/*"));
        assert!(!prefers_pypi_json_header(
            "application/vnd.pypi.simple.v1+json; q=0.5, text/html"
        ));
        assert!(!prefers_pypi_json_header(
            "application/vnd.pypi.simple.v1+json; q=0"
        ));
    }

    #[test]
    fn base_url_names_loopback_for_every_interface() {
        assert_eq!(
            base_url_of("0.0.0.0:3149".parse().unwrap()),
            "http://127.0.0.1:3149"
        );
        assert_eq!(base_url_of("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            base_url_of("172.17.0.1:3149".parse().unwrap()),
            "http://172.17.0.1:3149"
        );
        assert!(is_plain_host("127.0.0.1:3149"));
        assert!(is_plain_host("[::1]:80"));
        assert!(!is_plain_host("a b"));
        assert!(!is_plain_host("evil/x"));
    }

    #[test]
    fn reads_package_json_from_a_tarball_and_checks_its_digest() {
        let tgz = npm_tarball(
            br#"{"name":"x","version":"1.0.0","readme":"long","dependencies":{"y":"1"}}"#,
        );
        let source = Memory::new(vec![("npm", "x", "1.0.0", tgz.clone())]);
        let package = source.packages().remove(0);
        let info = read_tarball_info(&source, &package).unwrap();
        assert_eq!(info.manifest["dependencies"]["y"], "1");
        assert!(info.manifest.get("readme").is_none());
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tgz));
        assert_eq!(info.integrity, format!("sha512-{expected}"));

        // Not a tarball: a minimal manifest.
        let source = Memory::new(vec![("npm", "x", "1.0.0", b"not gzip".to_vec())]);
        let package = source.packages().remove(0);
        let info = read_tarball_info(&source, &package).unwrap();
        assert_eq!(
            info.manifest,
            serde_json::json!({"name": "x", "version": "1.0.0"})
        );

        // Bytes that are not the package's.
        let mut package = package;
        package.size += 1;
        assert!(read_tarball_info(&source, &package).is_err());
    }

    #[test]
    fn server_answers_packuments_files_and_errors_then_stops() {
        let tgz = npm_tarball(br#"{"name":"@s/n","version":"1.0.0"}"#);
        let wheel = b"PK wheel".to_vec();
        let source = Memory::new(vec![
            ("npm", "@s/n", "1.0.0", tgz.clone()),
            ("pypi", "Some.Thing", "2.0", wheel.clone()),
        ]);
        let hex = Digest::of_bytes(&wheel).hex().to_owned();
        let server =
            PackageServer::start(Arc::new(source), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(server.base_url(), format!("http://{addr}"));

        let (status, head, body) = get(addr, "GET", "/@s%2fn");
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc["versions"]["1.0.0"]["dist"]["tarball"],
            format!("http://{addr}/@s/n/-/n-1.0.0.tgz")
        );
        let (status, _, body) = get(addr, "GET", "/@s/n/-/n-1.0.0.tgz");
        assert_eq!(status, 200);
        assert_eq!(body, tgz);

        let (status, _, body) = get(addr, "GET", "/simple/some-thing/");
        assert_eq!(status, 200);
        let page = String::from_utf8(body).unwrap();
        let href = format!("/files/{hex}/Some.Thing-2.0.tgz");
        assert!(page.contains(&format!("{href}#sha256={hex}")), "{page}");
        let (status, head, body) = get(addr, "GET", &href);
        assert_eq!(status, 200);
        assert!(
            head.contains(&format!("content-length: {}", wheel.len())),
            "{head}"
        );
        assert_eq!(body, wheel);
        // The digest of a file, under another name, is not served.
        assert_eq!(get(addr, "GET", &format!("/files/{hex}/other.whl")).0, 404);

        let (status, head, body) = get(addr, "HEAD", "/simple/");
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(body.is_empty());
        let (status, _, body) = get(addr, "GET", "/n");
        assert_eq!(status, 404);
        assert_eq!(
            body,
            b"offpack: npm package n is not in the packages served\n"
        );
        assert_eq!(get(addr, "DELETE", "/n").0, 405);
        assert_eq!(get(addr, "GET", "/simple").0, 301);
        assert_eq!(server.requests(), 9);

        server.stop();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening"
        );
    }

    #[test]
    fn a_port_in_use_is_refused_at_start() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = PackageServer::start(Arc::new(Memory::new(vec![])), addr).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    }

    /// One request on its own connection: status, lower-case head, body.
    fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    fn npm_tarball(package_json: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, data) in [
            ("package/index.js", &b"1"[..]),
            ("package/package.json", package_json),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// Packages in memory.
    struct Memory {
        files: Vec<(Package, Vec<u8>)>,
    }

    impl Memory {
        fn new(files: Vec<(&str, &str, &str, Vec<u8>)>) -> Self {
            let files = files
                .into_iter()
                .map(|(ecosystem, name, version, data)| {
                    let package: Package = serde_json::from_value(serde_json::json!({
                        "ecosystem": ecosystem,
                        "name": name,
                        "version": version,
                        "filename": format!("{name}-{version}.tgz"),
                        "digest": Digest::of_bytes(&data).to_string(),
                        "size": data.len(),
                    }))
                    .unwrap();
                    (package, data)
                })
                .collect();
            Memory { files }
        }
    }

    impl PackageSource for Memory {
        fn packages(&self) -> Vec<Package> {
            self.files.iter().map(|(p, _)| p.clone()).collect()
        }
        fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
            let (_, data) = self
                .files
                .iter()
                .find(|(p, _)| p.digest == *digest)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            Ok(Box::new(&data[..]))
        }
    }
}
