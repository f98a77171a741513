//! The distribution API over HTTP(S): auth, retries, and the blob and manifest operations.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest as _, Sha256};
use ureq::http::{Response, StatusCode};
use ureq::{Body, SendBody};

use crate::challenge::Challenge;
use crate::credentials::{self, Credentials};

/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip OCI layer.
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd OCI layer.
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker image manifest, schema 2.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// How the client reaches the registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Plain HTTP (never chosen without the user asking).
    pub insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's roots (as Docker adds
    /// `certs.d/HOST/ca.crt`): a registry with its own CA, while token servers, redirects to
    /// storage and other registries keep their public certificates.
    pub ca_file: Option<PathBuf>,
    /// Attempts per request on transient errors (connection refused or reset, 5xx, 429);
    /// 0 means the default, 5.
    pub attempts: u32,
    /// The first wait between attempts, doubled each time; zero means the default, 500 ms.
    pub first_backoff: Duration,
    /// What a TLS failure tells the user to do, in the words of the command that made the client;
    /// `None`: `offpack push`'s options.
    pub tls_hint: Option<&'static str>,
}

/// `offpack push`'s advice on a failed TLS handshake.
const PUSH_TLS_HINT: &str =
    "a registry with its own CA needs --ca-file; one on plain HTTP needs --insecure";

/// What a blob upload cut off by a body-size limit asks the user to change.
const BODY_LIMIT_HINT: &str = ": a proxy in front of the registry that limits request bodies \
     does this, e.g. nginx needs `client_max_body_size 0;` for registry uploads, as for `docker push`";

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// Its media type (`Content-Type`, else the document's `mediaType`).
    pub media_type: String,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// The bytes, exactly as served (their digest is what a pinned reference names).
    pub bytes: Vec<u8>,
}

/// A blob the registry accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUpload {
    /// `sha256:<hex>` of what was sent.
    pub digest: String,
    /// Bytes sent.
    pub size: u64,
}

/// One registry (`HOST[:PORT]`), its saved login and the tokens it handed out.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    credentials: Option<Credentials>,
    /// `Authorization` values by scope (`""` for Basic, which covers every scope).
    auth: Mutex<HashMap<String, String>>,
    attempts: u32,
    first_backoff: Duration,
    tls_hint: &'static str,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A failed attempt: worth another try, or not.
enum Failure {
    Transient(anyhow::Error),
    Final(anyhow::Error),
}

type Attempt<T> = std::result::Result<T, Failure>;

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Final(e)
    }
}

/// The scope a token must cover: pull, or pull and push, on one or more repositories.
fn scope(repos: &[&str], push: bool) -> Vec<String> {
    let actions = if push { "pull,push" } else { "pull" };
    repos
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // A mount's source repository is only read.
            let actions = if i == 0 { actions } else { "pull" };
            format!("repository:{r}:{actions}")
        })
        .collect()
}

impl Client {
    /// A client for registry `host` (`HOST[:PORT]`), with the login the Docker config holds for
    /// it. Nothing is sent yet.
    pub fn new(host: &str, options: &ClientOptions) -> Result<Client> {
        let credentials = credentials::lookup(host)
            .with_context(|| format!("reading the saved login for {host}"))?;
        Client::with_credentials(host, options, credentials)
    }

    /// A client with the given login (or none) instead of the Docker config's.
    pub fn with_credentials(
        host: &str,
        options: &ClientOptions,
        credentials: Option<Credentials>,
    ) -> Result<Client> {
        let mut tls = ureq::tls::TlsConfig::builder();
        tls = match &options.ca_file {
            Some(path) => {
                let pem = fs_read(path)?;
                let certs = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .with_context(|| format!("{} is not a PEM file", path.display()))?;
                if certs.is_empty() {
                    bail!("{} holds no PEM certificate", path.display());
                }
                // Unreadable system certificates leave only the file's: what the user named
                // still works.
                let system = rustls_native_certs::load_native_certs().certs;
                let all = system
                    .iter()
                    .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                    .chain(certs);
                tls.root_certs(ureq::tls::RootCerts::from(all))
            }
            None => tls.root_certs(ureq::tls::RootCerts::PlatformVerifier),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(format!("offpack/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            // A blob GET may be redirected to the registry's storage; the login is not sent
            // there (ureq drops Authorization on redirects).
            .max_redirects(5)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .build()
            .into();
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(Client {
            agent,
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            credentials,
            auth: Mutex::new(HashMap::new()),
            attempts: if options.attempts == 0 {
                5
            } else {
                options.attempts
            },
            first_backoff: if options.first_backoff.is_zero() {
                Duration::from_millis(500)
            } else {
                options.first_backoff
            },
            tls_hint: options.tls_hint.unwrap_or(PUSH_TLS_HINT),
        })
    }

    /// The registry's `HOST[:PORT]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`: the registry answers and the login works (a 401 is answered by logging in
    /// for `repository`'s push scope, as a push will need).
    pub fn ping(&self, repository: &str) -> Result<()> {
        self.retrying(&format!("reaching {}", self.host), || {
            let url = format!("{}/v2/", self.base);
            let resp = self.send("GET", &url, &scope(&[repository], true), &[], None)?;
            match resp.status().as_u16() {
                200..=299 => Ok(()),
                _ => Err(self.status_error(resp, &format!("GET {url}"), repository, None)),
            }
        })
    }

    /// `HEAD` a blob: its size when repository `repository` has it, `None` when not.
    pub fn blob_size(&self, repository: &str, digest: &str) -> Result<Option<u64>> {
        self.retrying(
            &format!("looking up blob {digest} in {}", self.repo(repository)),
            || {
                let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
                let resp = self.send("HEAD", &url, &scope(&[repository], true), &[], None)?;
                match resp.status().as_u16() {
                    200..=299 => Ok(Some(content_length(&resp).unwrap_or(0))),
                    404 => Ok(None),
                    _ => Err(self.status_error(resp, "HEAD", repository, Some(digest))),
                }
            },
        )
    }

    /// Mounts blob `digest` from repository `from` into `repository` on the same registry:
    /// `true` when the registry did, `false` when it refused (then upload the blob).
    pub fn mount_blob(&self, repository: &str, digest: &str, from: &str) -> Result<bool> {
        self.retrying(
            &format!("mounting blob {digest} into {}", self.repo(repository)),
            || {
                let url = format!(
                    "{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}",
                    self.base
                );
                let resp = self.send(
                    "POST",
                    &url,
                    &scope(&[repository, from], true),
                    &[],
                    Some(&[]),
                )?;
                match resp.status().as_u16() {
                    201 => Ok(true),
                    202 => {
                        // An upload session it opened instead; close it so it is not left behind.
                        if let Some(location) = self.location(&resp) {
                            let _ = self.send(
                                "DELETE",
                                &location,
                                &scope(&[repository], true),
                                &[],
                                None,
                            );
                        }
                        Ok(false)
                    }
                    _ => Err(self.status_error(resp, "mount", repository, Some(digest))),
                }
            },
        )
    }

    /// Uploads one blob into `repository`, streaming what `open` returns (called again for
    /// each retry: a stream sent halfway cannot be rewound): `POST` a session, one `PATCH` with
    /// the whole stream, `PUT ?digest=` with the sha256 computed while sending, which the
    /// registry checks. `expected`, when known beforehand, must match. `sent` hears the bytes
    /// sent so far in the current attempt.
    pub fn upload_blob<'r>(
        &self,
        repository: &str,
        expected: Option<&str>,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + 'r>>,
        sent: &dyn Fn(u64),
    ) -> Result<BlobUpload> {
        let what = match expected {
            Some(d) => format!("uploading blob {d} to {}", self.repo(repository)),
            None => format!("uploading a blob to {}", self.repo(repository)),
        };
        let scope = scope(&[repository], true);
        self.retrying(&what, || {
            let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
            let resp = self.send("POST", &url, &scope, &[], Some(&[]))?;
            if resp.status().as_u16() != 202 {
                return Err(self.status_error(resp, "starting an upload", repository, expected));
            }
            let location = self
                .location(&resp)
                .ok_or_else(|| anyhow!("{}: the upload answer has no Location", self.host))?;
            let source = open().map_err(Failure::Final)?;
            let mut hashing = Hashing {
                inner: source,
                hasher: Sha256::new(),
                size: 0,
                sent,
                read_error: None,
            };
            let result = self.send_stream("PATCH", &location, &scope, &mut hashing);
            if let Some(e) = hashing.read_error.take() {
                // The source failed (the bundle), not the registry: no retry helps.
                return Err(Failure::Final(e));
            }
            let resp = result?;
            if !resp.status().is_success() {
                return Err(session_lost(
                    self.status_error(resp, "sending", repository, expected),
                ));
            }
            let digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
            let size = hashing.size;
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(Failure::Final(anyhow!(
                    "blob {expected} read as {digest}: its source changed"
                )));
            }
            let location = self.location(&resp).unwrap_or(location);
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = format!("{location}{sep}digest={digest}");
            let resp = self.send("PUT", &put, &scope, &[], Some(&[]))?;
            match resp.status().as_u16() {
                201 | 204 => Ok(BlobUpload {
                    digest: digest.clone(),
                    size,
                }),
                _ => Err(session_lost(self.status_error(
                    resp,
                    "finishing the upload of",
                    repository,
                    Some(&digest),
                ))),
            }
        })
    }

    /// `PUT` a manifest or index under `reference` (a tag or its digest); returns the digest the
    /// registry gave it (`Docker-Content-Digest`), checked against the bytes' own.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let digest = digest_of(bytes);
        let what = format!("pushing manifest {}:{reference}", self.repo(repository));
        self.retrying(&what, || {
            let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
            let resp = self.send(
                "PUT",
                &url,
                &scope(&[repository], true),
                &[("Content-Type", media_type)],
                Some(bytes),
            )?;
            if !resp.status().is_success() {
                return Err(self.status_error(resp, "PUT manifest", repository, Some(reference)));
            }
            match header(&resp, "docker-content-digest") {
                Some(given) if given != digest => Err(Failure::Final(anyhow!(
                    "{}: the registry named manifest {digest} {given}",
                    self.repo(repository)
                ))),
                _ => Ok(digest.clone()),
            }
        })
    }

    /// `GET` a manifest or index by tag or digest, accepting OCI and Docker manifests and
    /// indexes. When `reference` is a digest the bytes are checked against it.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<PulledManifest> {
        let accept = [
            MEDIA_OCI_MANIFEST,
            MEDIA_OCI_INDEX,
            MEDIA_DOCKER_MANIFEST,
            MEDIA_DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        let what = format!("fetching manifest {}:{reference}", self.repo(repository));
        self.retrying(&what, || {
            let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
            let resp = self.send(
                "GET",
                &url,
                &scope(&[repository], false),
                &[("Accept", &accept)],
                None,
            )?;
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    return Err(Failure::Final(anyhow!(
                        "{}: no manifest {reference} (404)",
                        self.repo(repository)
                    )));
                }
                _ => {
                    return Err(self.status_error(
                        resp,
                        "GET manifest",
                        repository,
                        Some(reference),
                    ));
                }
            }
            let content_type = header(&resp, "content-type");
            let bytes = resp
                .into_body()
                .with_config()
                .limit(16 << 20)
                .read_to_vec()
                .map_err(|e| self.transport(e, "reading a manifest", repository))?;
            let digest = digest_of(&bytes);
            if reference.starts_with("sha256:") && reference != digest {
                return Err(Failure::Final(anyhow!(
                    "{}: manifest {reference} arrived as {digest}",
                    self.repo(repository)
                )));
            }
            let media_type = content_type
                .filter(|t| t.starts_with("application/vnd."))
                .or_else(|| {
                    serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()?
                        .get("mediaType")?
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string());
            Ok(PulledManifest {
                media_type,
                digest,
                bytes,
            })
        })
    }

    /// `GET` a blob as a stream (redirects to the registry's storage followed). The reader
    /// fails at its end when the data's sha256 is not `digest`.
    pub fn get_blob(&self, repository: &str, digest: &str) -> Result<impl Read + Send + use<>> {
        let what = format!("fetching blob {digest} from {}", self.repo(repository));
        self.retrying(&what, || {
            let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
            let resp = self.send("GET", &url, &scope(&[repository], false), &[], None)?;
            if !resp.status().is_success() {
                return Err(self.status_error(resp, "GET blob", repository, Some(digest)));
            }
            Ok(Checked {
                inner: resp.into_body().into_reader(),
                hasher: Sha256::new(),
                expected: digest.to_string(),
                what: format!("blob {digest} from {}", self.repo(repository)),
            })
        })
    }

    fn repo(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts run out, waiting longer each
    /// time; the error says what was being done.
    fn retrying<T>(&self, what: &str, mut f: impl FnMut() -> Attempt<T>) -> Result<T> {
        let mut wait = self.first_backoff;
        let mut attempt = 1;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e.context(what.to_string())),
                Err(Failure::Transient(e)) if attempt >= self.attempts => {
                    return Err(e.context(format!("{what} (gave up after {attempt} attempts)")));
                }
                Err(Failure::Transient(_)) => {
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// One request with the auth this scope has (logging in on a 401 challenge and sending it
    /// again once). `body`: `None` for none, `Some` for these bytes.
    fn send(
        &self,
        method: &str,
        url: &str,
        scope: &[String],
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Attempt<Response<Body>> {
        let key = scope.join(" ");
        let own_origin = self.vet_url(url)?;
        let mut authorization = self.cached_auth(&key).filter(|_| own_origin);
        for round in 0..2 {
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = &authorization {
                req = req.header("Authorization", a);
            }
            let req = req
                .body(())
                .map_err(|e| Failure::Final(anyhow!("bad request {method} {url}: {e}")))?;
            let result = match body {
                Some(bytes) => {
                    let (parts, ()) = req.into_parts();
                    self.agent
                        .run(ureq::http::Request::from_parts(parts, bytes))
                }
                None => self.agent.run(req),
            };
            let resp = result.map_err(|e| self.transport(e, method, url))?;
            if resp.status() == StatusCode::UNAUTHORIZED && round == 0 && own_origin {
                authorization = Some(self.login(&resp, &key, scope)?);
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns in its second round")
    }

    /// A request whose body streams from `body` (chunked), with the scope's cached auth.
    fn send_stream(
        &self,
        method: &str,
        url: &str,
        scope: &[String],
        body: &mut dyn Read,
    ) -> Attempt<Response<Body>> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Type", "application/octet-stream");
        if self.vet_url(url)?
            && let Some(a) = self.cached_auth(&scope.join(" "))
        {
            req = req.header("Authorization", a);
        }
        let req = req
            .body(SendBody::from_reader(body))
            .map_err(|e| Failure::Final(anyhow!("bad request {method} {url}: {e}")))?;
        self.agent
            .run(req)
            .map_err(|e| self.transport(e, method, url))
    }

    /// Whether the login may go with a request to `url` (a `Location` the registry sent may
    /// name another host: a login is only for the registry itself, as `docker push` does). A
    /// TLS registry sending us to plain HTTP (a TLS proxy that does not say so to the registry)
    /// is refused: layers and login would cross the network in clear.
    fn vet_url(&self, url: &str) -> Attempt<bool> {
        if self.base.starts_with("https://") && url.starts_with("http://") {
            return Err(Failure::Final(anyhow!(
                "{} sent offpack to {url}, plain HTTP, from a TLS registry: refused, so the login \
                 and layers do not cross the network in clear (behind a TLS proxy, have it set \
                 X-Forwarded-Proto: https, or set the registry's http.relativeurls)",
                self.host
            )));
        }
        Ok(same_origin(&self.base, url))
    }

    fn cached_auth(&self, key: &str) -> Option<String> {
        let cache = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).or_else(|| cache.get("")).cloned()
    }

    /// Answers a 401: the `Authorization` value for `scope`, from the saved login (Basic) or a
    /// token fetched with it (Bearer).
    fn login(&self, resp: &Response<Body>, key: &str, scope: &[String]) -> Attempt<String> {
        let challenge = header(resp, "www-authenticate")
            .and_then(|h| Challenge::parse(&h))
            .ok_or_else(|| {
                Failure::Final(anyhow!(
                    "{} answered 401 without an authentication method offpack knows",
                    self.host
                ))
            })?;
        let no_login = || {
            Failure::Final(anyhow!(
                "{} asks for a login (401) and none is saved for it: run `docker login {}` \
                 (or add it to ~/.docker/config.json, or set DOCKER_CONFIG)",
                self.host,
                self.host
            ))
        };
        match challenge {
            Challenge::Basic => {
                let value = basic_auth(self.credentials.as_ref().ok_or_else(no_login)?);
                self.remember("", &value);
                Ok(value)
            }
            Challenge::Bearer { realm, service, .. } => {
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                let value = format!("Bearer {token}");
                self.remember(key, &value);
                Ok(value)
            }
        }
    }

    fn remember(&self, key: &str, value: &str) {
        let mut cache = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(key.to_string(), value.to_string());
    }

    /// A token from the realm: `GET` with the login as Basic (anonymous without one), or the
    /// OAuth form `POST` with a saved identity token.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &[String]) -> Attempt<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scope {
            query.push(("scope", s));
        }
        let result = match self
            .credentials
            .as_ref()
            .and_then(|c| c.identity_token.as_deref())
        {
            Some(refresh) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "offpack"),
                ]);
                self.agent.post(realm).send_form(form)
            }
            None => {
                let mut req = self.agent.get(realm).query_pairs(query);
                if let Some(c) = &self.credentials {
                    req = req.header("Authorization", basic_auth(c));
                }
                req.call()
            }
        };
        let resp = result.map_err(|e| self.transport(e, "token", realm))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(Failure::Final(anyhow!(
                "{}: the token service {realm} refused the login ({status}): check `docker login {}` \
                 or {}",
                self.host,
                self.host,
                config_file()
            )));
        }
        if !resp.status().is_success() {
            return Err(classify(
                status,
                anyhow!("{}: token service {realm} answered {status}", self.host),
            ));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let bytes = resp
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.transport(e, "token", realm))?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Final(anyhow!("{}: token service {realm}: {e}", self.host)))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Final(anyhow!(
                    "{}: token service {realm} sent no token",
                    self.host
                ))
            })
    }

    /// The `Location` of an answer as an absolute URL.
    fn location(&self, resp: &Response<Body>) -> Option<String> {
        let location = header(resp, "location")?;
        if location.starts_with("http://") || location.starts_with("https://") {
            Some(location)
        } else {
            Some(format!("{}{location}", self.base))
        }
    }

    /// A transport error (no HTTP answer): transient when the connection failed or broke.
    fn transport(&self, e: ureq::Error, what: &str, target: &str) -> Failure {
        // rustls reports a failed handshake as an I/O error: no retry mends that.
        let text = e.to_string();
        let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || text.contains("corrupt message")
            || text.contains("certificate")
            || text.contains("HandshakeFailure");
        let transient = !tls
            && matches!(
                e,
                ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
            );
        let cut_off = matches!(&e, ureq::Error::Io(io) if matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ));
        let hint = if tls {
            format!(" ({})", self.tls_hint)
        } else if cut_off && what == "PATCH" {
            // Its answer (a 413) is lost with the connection: the write fails first.
            format!(" (the connection was closed while the blob was sent){BODY_LIMIT_HINT}")
        } else {
            String::new()
        };
        let err = anyhow!("{}: {what} {target}: {e}{hint}", self.host);
        if transient {
            Failure::Transient(err)
        } else {
            Failure::Final(err)
        }
    }

    /// An HTTP answer that is not the expected one, as an error naming the registry,
    /// repository and blob or manifest, with the registry's own message.
    fn status_error(
        &self,
        resp: Response<Body>,
        what: &str,
        repository: &str,
        object: Option<&str>,
    ) -> Failure {
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        let detail = registry_message(&body);
        let object = object.map(|o| format!(" {o}")).unwrap_or_default();
        let place = self.repo(repository);
        let err = match status {
            401 => anyhow!(
                "{place}: {what}{object}: the registry refused the login (401){detail}: check \
                 `docker login {}` or {}",
                self.host,
                config_file()
            ),
            403 => anyhow!(
                "{place}: {what}{object}: the login may not push here (403){detail}: check the \
                 account's rights on this repository"
            ),
            413 => anyhow!(
                "{place}: {what}{object}: the registry answered 413 (too large){detail}{BODY_LIMIT_HINT}"
            ),
            _ => anyhow!("{place}: {what}{object}: the registry answered {status}{detail}"),
        };
        classify(status, err)
    }
}

/// An upload session the registry no longer knows (it restarted, or the session expired) is
/// worth a new one: the blob is sent again from the start.
fn session_lost(failure: Failure) -> Failure {
    match failure {
        Failure::Final(e) if format!("{e}").contains("BLOB_UPLOAD_") => Failure::Transient(e),
        other => other,
    }
}

/// 5xx and 429 are worth another try; any other status is final.
fn classify(status: u16, err: anyhow::Error) -> Failure {
    if status >= 500 || status == 429 || status == 408 {
        Failure::Transient(err)
    } else {
        Failure::Final(err)
    }
}

/// The `errors[].message` of a distribution error body, as `: message`.
fn registry_message(body: &str) -> String {
    let messages: Vec<String> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            Some(
                v.get("errors")?
                    .as_array()?
                    .iter()
                    .filter_map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
                        let message = e.get("message").and_then(|m| m.as_str())?;
                        Some(if code.is_empty() {
                            message.to_string()
                        } else {
                            format!("{code}: {message}")
                        })
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    if messages.is_empty() {
        String::new()
    } else {
        format!(" ({})", messages.join("; "))
    }
}

/// `Basic <base64 user:password>`.
fn basic_auth(c: &Credentials) -> String {
    use base64::Engine as _;
    let pair = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The Docker config file logins are read from, for messages.
fn config_file() -> String {
    credentials::config_path().map_or_else(
        || "~/.docker/config.json".to_string(),
        |p| p.display().to_string(),
    )
}

/// The digest string (`sha256:<hex>`) of a manifest's bytes, as a registry names it.
fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn content_length(resp: &Response<Body>) -> Option<u64> {
    header(resp, "content-length")?.parse().ok()
}

fn fs_read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))
}

/// Counts and hashes what the upload reads; a read error is kept so it is reported as the
/// source's, not as the registry's.
struct Hashing<'a, R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    sent: &'a dyn Fn(u64),
    read_error: Option<anyhow::Error>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                (self.sent)(self.size);
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                self.read_error = Some(anyhow::Error::new(e));
                Err(io::Error::other(msg))
            }
        }
    }
}

/// A blob stream that fails at its end when its digest is wrong.
struct Checked<R> {
    inner: R,
    hasher: Sha256,
    expected: String,
    what: String,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let got = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if got != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} arrived as {got}", self.what),
                ));
            }
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `url` is on `base`'s scheme, host and port (`base`: `scheme://host[:port]`).
fn same_origin(base: &str, url: &str) -> bool {
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_goes_only_to_the_registry_itself() {
        let base = "https://registry.example:5000";
        assert!(same_origin(
            base,
            "https://registry.example:5000/v2/a/blobs/uploads/x?y=1"
        ));
        assert!(!same_origin(base, "https://registry.example:50001/v2/"));
        assert!(!same_origin(base, "https://registry.example/v2/"));
        assert!(!same_origin(base, "https://storage.example/v2/a"));
        assert!(!same_origin(base, "https://registry.example:5000.evil/v2/"));
    }

    #[test]
    fn a_tls_registry_cannot_send_the_upload_to_plain_http() {
        let client =
            Client::with_credentials("registry.example", &ClientOptions::default(), None).unwrap();
        assert!(matches!(
            client.vet_url("https://registry.example/v2/a/blobs/uploads/1"),
            Ok(true)
        ));
        assert!(matches!(
            client.vet_url("https://cdn.example/u/1"),
            Ok(false)
        ));
        let Err(Failure::Final(e)) = client.vet_url("http://registry.example/v2/a/blobs/uploads/1")
        else {
            panic!("plain HTTP from a TLS registry is refused");
        };
        assert!(e.to_string().contains("X-Forwarded-Proto"), "{e}");
    }

    #[test]
    fn scope_reads_only_the_mount_source() {
        assert_eq!(
            scope(&["a/b", "c"], true),
            ["repository:a/b:pull,push", "repository:c:pull"]
        );
        assert_eq!(scope(&["a"], false), ["repository:a:pull"]);
    }

    #[test]
    fn registry_message_quotes_every_error() {
        let body = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
        assert_eq!(
            registry_message(body),
            " (DIGEST_INVALID: provided digest did not match uploaded content)"
        );
        assert_eq!(registry_message("<html>"), "");
    }

    #[test]
    fn a_lost_upload_session_is_tried_again_a_bad_digest_is_not() {
        let lost = anyhow!(
            "r/x: sending: the registry answered 404 (BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry)"
        );
        assert!(matches!(
            session_lost(Failure::Final(lost)),
            Failure::Transient(_)
        ));
        let bad = anyhow!(
            "r/x: finishing: the registry answered 400 (DIGEST_INVALID: provided digest did not match uploaded content)"
        );
        assert!(matches!(
            session_lost(Failure::Final(bad)),
            Failure::Final(_)
        ));
    }

    #[test]
    fn transient_statuses() {
        assert!(matches!(classify(503, anyhow!("x")), Failure::Transient(_)));
        assert!(matches!(classify(429, anyhow!("x")), Failure::Transient(_)));
        assert!(matches!(classify(401, anyhow!("x")), Failure::Final(_)));
        assert!(matches!(classify(400, anyhow!("x")), Failure::Final(_)));
    }
}
