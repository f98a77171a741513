//! The read-only registry: the distribution API (`/v2/`) over a [`Catalog`] and the bundle's
//! blobs, each request reading its blob with a decoder of its own (positional reads of the
//! bundle file: no lock between concurrent pulls).

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use offpack_bundle::{BundleReader, Digest, escape_controls};
use serde_json::json;

use super::catalog::{Catalog, page};
use crate::http::{
    Body, HttpServer, RangeRequest, body_of, empty, full, json_ok, parse_range, stream_blocking,
};

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// Which reads check a blob's SHA-256 as it streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobChecks {
    /// Every whole-blob read: nothing vouched for the file's bytes before the server started.
    EachRead,
    /// None: the whole file matched its `.sha256` before the server started, and the frames'
    /// own checksums (SPEC 3.3) catch a byte that changes on disk afterwards. Hashing again
    /// cost about a core's worth of throughput with many clients, and every client checks the
    /// digest of what it pulls anyway.
    FileChecked,
}

/// Starts the registry on `addr` (port 0: any free port); see [`HttpServer::start`].
pub fn start(
    reader: Arc<BundleReader>,
    catalog: Catalog,
    checks: BlobChecks,
    addr: SocketAddr,
) -> Result<HttpServer> {
    let state = Arc::new(State {
        reader,
        catalog,
        checks,
    });
    HttpServer::start("the registry server", "--addr", addr, |_| {
        Arc::new(move |request| Box::pin(handle(state.clone(), request)))
    })
}

struct State {
    reader: Arc<BundleReader>,
    catalog: Catalog,
    checks: BlobChecks,
}

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/…`: only ever a write.
    Upload,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::NotFound;
    };
    let rest = match rest {
        "" | "/" => return Route::Base,
        "/_catalog" => return Route::Catalog,
        _ => match rest.strip_prefix('/') {
            Some(rest) => rest,
            None => return Route::NotFound,
        },
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name);
    }
    if rest.contains("/blobs/uploads") {
        return Route::Upload;
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(name, reference);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob(name, digest);
    }
    Route::NotFound
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let mut response = answer(&state, &request).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn answer(state: &Arc<State>, request: &Request<Incoming>) -> Response<Body> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "offpack serves the bundle read-only: only GET and HEAD".into(),
                false,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).unwrap_or_default();
    let ns = query.get("ns").map(String::as_str);
    let catalog = &state.catalog;
    let unknown_name = |name: &str| {
        error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {} is not in the bundle", escape_controls(name)),
            head,
        )
    };
    match route(request.uri().path()) {
        Route::Base => full(StatusCode::OK, "application/json", "{}", head),
        Route::NotFound => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "nothing is served at {}",
                escape_controls(request.uri().path())
            ),
            head,
        ),
        Route::Upload => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "offpack serves the bundle read-only: no uploads".into(),
            head,
        ),
        Route::Catalog => {
            let (names, more) = page(
                catalog.repositories.keys(),
                paging(&query),
                query.get("last").map(String::as_str),
            );
            let mut response = json_ok(&json!({ "repositories": names }), "application/json", head);
            if more && let Some(last) = names.last() {
                link_next(&mut response, "/v2/_catalog", last, &query);
            }
            response
        }
        Route::Tags(name) => match catalog.repository(name, ns) {
            None => unknown_name(name),
            Some(repository) => {
                let (tags, more) = page(
                    repository.tags.keys(),
                    paging(&query),
                    query.get("last").map(String::as_str),
                );
                let mut response = json_ok(
                    &json!({ "name": name, "tags": tags }),
                    "application/json",
                    head,
                );
                if more && let Some(last) = tags.last() {
                    link_next(
                        &mut response,
                        &format!("/v2/{name}/tags/list"),
                        last,
                        &query,
                    );
                }
                response
            }
        },
        Route::Manifest(name, reference) => match catalog.repository(name, ns) {
            None => unknown_name(name),
            Some(repository) => match catalog.manifest(repository, reference) {
                None => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!(
                        "manifest {} of {} is not in the bundle",
                        escape_controls(reference),
                        escape_controls(name)
                    ),
                    head,
                ),
                Some((digest, document)) => {
                    let mut response = Response::new(if head {
                        empty()
                    } else {
                        body_of(document.bytes.clone())
                    });
                    let headers = response.headers_mut();
                    if let Ok(value) = HeaderValue::from_str(&document.media_type) {
                        headers.insert(header::CONTENT_TYPE, value);
                    }
                    headers.insert(header::CONTENT_LENGTH, document.bytes.len().into());
                    digest_headers(headers, &digest);
                    response
                }
            },
        },
        Route::Blob(name, digest) => {
            let Some(repository) = catalog.repository(name, ns) else {
                return unknown_name(name);
            };
            let blob_unknown = || {
                error(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    format!(
                        "blob {} of {} is not in the bundle",
                        escape_controls(digest),
                        escape_controls(name)
                    ),
                    head,
                )
            };
            let Ok(digest) = digest.parse::<Digest>() else {
                return blob_unknown();
            };
            let Some(size) = catalog.blob(repository, &digest) else {
                return blob_unknown();
            };
            let range = request
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            blob_response(state, digest, size, parse_range(range, size), head).await
        }
    }
}

/// `?n=`: the page size (a registry may answer fewer; 0 or garbage: no limit).
fn paging(query: &HashMap<String, String>) -> Option<usize> {
    query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
}

/// The `Link` header to the next page, as the distribution spec says.
fn link_next(
    response: &mut Response<Body>,
    path: &str,
    last: &str,
    query: &HashMap<String, String>,
) {
    let mut params = vec![("last", last.to_owned())];
    if let Some(n) = query.get("n") {
        params.push(("n", n.clone()));
    }
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    if let Ok(value) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
        response.headers_mut().insert(header::LINK, value);
    }
}

async fn blob_response(
    state: &Arc<State>,
    digest: Digest,
    size: u64,
    range: RangeRequest,
    head: bool,
) -> Response<Body> {
    let (status, start, end) = match range {
        _ if head => (StatusCode::OK, 0, size),
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        RangeRequest::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                format!("blob {digest} has {size} bytes"),
                false,
            );
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let body = if head {
        empty()
    } else if let Some(document) = state.catalog.documents.get(&digest) {
        body_of(document.bytes.slice(start as usize..end as usize))
    } else {
        let reader = state.reader.clone();
        let blob = digest.clone();
        let unchecked = state.checks == BlobChecks::FileChecked;
        let streamed = stream_blocking(move |sink| {
            if start > 0 || unchecked {
                // From the frame that holds the range's first byte (or the whole blob, when the
                // file was checked); not checked against the digest here: the client checks
                // the blob it assembles.
                let data = reader.blob_from(&blob, start).map_err(io::Error::other)?;
                return sink.copy_from(&mut data.take(end - start));
            }
            let mut data = reader.blob(&blob).map_err(io::Error::other)?;
            if end == size {
                // Read to the end, so that the reader checks the blob's digest.
                sink.copy_from(&mut data)
            } else {
                sink.copy_from(&mut data.take(end))
            }
        })
        .await;
        match streamed {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    format!("cannot read blob {digest}: {e}"),
                    false,
                );
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, (end - start).into());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    digest_headers(headers, &digest);
    response
}

fn digest_headers(headers: &mut hyper::HeaderMap, digest: &Digest) {
    if let Ok(value) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert(CONTENT_DIGEST, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, value);
    }
}

/// An error in the distribution spec's form: `{"errors":[{"code","message","detail"}]}`.
fn error(status: StatusCode, code: &str, message: String, head: bool) -> Response<Body> {
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    full(status, "application/json", body, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_distribution_api() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            route("/v2/library/python/tags/list"),
            Route::Tags("library/python")
        );
        assert_eq!(
            route("/v2/a/b/c/manifests/3.11-slim"),
            Route::Manifest("a/b/c", "3.11-slim")
        );
        assert_eq!(
            route("/v2/x/blobs/sha256:00"),
            Route::Blob("x", "sha256:00")
        );
        assert_eq!(route("/v2/x/blobs/uploads/"), Route::Upload);
        assert_eq!(route("/v2/x/blobs/uploads/123"), Route::Upload);
        assert_eq!(route("/v3/"), Route::NotFound);
        assert_eq!(route("/v2x"), Route::NotFound);
        assert_eq!(route("/v2/x"), Route::NotFound);
    }
}
