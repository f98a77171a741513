//! npm tarballs named by a lock file, downloaded into the package cache and checked against the
//! lock's integrity.
//!
//! Downloads run in a few threads; each streams into a cache file while computing the sha256 (the
//! cache's and the bundle's name for it), sha512 and sha1 (what npm locks record), and the file
//! is committed only when the strongest hash the lock names matches: a tarball that does not match
//! leaves nothing in the cache. The cache maps each hash (`sha512-…`, `sha1-…`) to the file, so
//! a second fetch of the same lock makes no request at all.
//!
//! HTTP: `ureq` (blocking, small). It takes the proxy from `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY`
//! and honours `NO_PROXY`, and verifies TLS with the platform's verifier, so the system's CA
//! store is trusted (the workplace's TLS-intercepting proxy included) rather than a bundled list.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::Digest;
use offpack_packages::npm::integrity::{Integrity, IntegrityHash};
use offpack_packages::npm::registry;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::fetch::cache::{FetchedPackage, PackageCache};
use crate::reporter::Reporter;

/// The cache record kind mapping one hash (`sha512-<base64>`) to a cached file's sha256 (hex).
const INTEGRITY_KIND: &str = "npm-integrity";

/// One tarball to fetch, as a lock names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmFetch {
    /// The package's real name (`@scope/name`; an alias resolved).
    pub name: String,
    pub version: String,
    /// Where the lock says the tarball is (`resolved`).
    pub url: String,
    /// The lock's SRI integrity (`sha512-…`, maybe several hashes), if it has one.
    pub integrity: Option<String>,
}

/// Fetches every tarball of `list` into `cache`, `parallel` at a time, and returns them in the
/// order of `list` (one per entry; an entry repeated is fetched once). A tarball whose bytes do
/// not match its integrity is an error naming the package, its URL, the expected and the actual
/// hash; so is a download that fails (status, connection). Tarballs whose integrity the cache
/// knows are not requested.
pub fn fetch_tarballs(
    list: &[NpmFetch],
    cache: &PackageCache,
    parallel: usize,
    reporter: &dyn Reporter,
) -> Result<Vec<FetchedPackage>> {
    // Each integrity is parsed before anything is fetched: a lock with a broken one fails at once.
    let mut expected = Vec::with_capacity(list.len());
    for item in list {
        let sri = match &item.integrity {
            Some(text) => Some(Integrity::parse(text).ok_or_else(|| {
                anyhow!(
                    "{}@{}: the integrity {text:?} cannot be used: it names no sha1, sha256, \
                     sha384 or sha512 hash as `algorithm-base64` of the algorithm's length",
                    item.name,
                    item.version
                )
            })?),
            None => None,
        };
        expected.push(sri);
    }
    // One fetch per distinct tarball.
    let mut unique: Vec<usize> = Vec::new();
    let mut index_of: HashMap<(&str, &str, &str, Option<&str>), usize> = HashMap::new();
    let mut slot_of = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let key = (
            item.name.as_str(),
            item.version.as_str(),
            item.url.as_str(),
            item.integrity.as_deref(),
        );
        let slot = *index_of.entry(key).or_insert_with(|| {
            unique.push(i);
            unique.len() - 1
        });
        slot_of.push(slot);
    }

    let task = reporter.start(&format!("fetch {} npm tarballs", unique.len()), None);
    let agent = agent();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let bytes = AtomicU64::new(0);
    let downloaded = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<FetchedPackage>>>> =
        Mutex::new((0..unique.len()).map(|_| None).collect());
    let workers = parallel.clamp(1, unique.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    // After a failure no new download starts; those running finish.
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = unique.get(slot) else {
                        break;
                    };
                    let on_bytes = |n: u64| {
                        let done = bytes.fetch_add(n, Ordering::Relaxed) + n;
                        reporter.progress(task, done);
                    };
                    let result =
                        fetch_one(&agent, cache, &list[i], expected[i].as_ref(), &on_bytes);
                    match &result {
                        Ok((_, true)) => {
                            downloaded.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((_, false)) => {}
                        Err(_) => failed.store(true, Ordering::Relaxed),
                    }
                    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                    results[slot] = Some(result.map(|(package, _)| package));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    // Slots left `None` were not started after a failure.
    let mut fetched: Vec<Option<FetchedPackage>> = Vec::with_capacity(unique.len());
    let mut first_error = None;
    for result in results {
        match result {
            Some(Ok(package)) => fetched.push(Some(package)),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
                fetched.push(None);
            }
            None => fetched.push(None),
        }
    }
    if let Some(error) = first_error {
        reporter.finish(task, "failed");
        return Err(error);
    }
    let downloaded = downloaded.into_inner();
    reporter.finish(
        task,
        &format!(
            "{downloaded} downloaded, {} from the cache",
            unique.len() - downloaded
        ),
    );
    slot_of
        .iter()
        .map(|&slot| {
            fetched
                .get(slot)
                .cloned()
                .flatten()
                .context("every tarball was fetched")
        })
        .collect()
}

/// The HTTP agent: proxy from the environment (ureq's default), the platform's TLS verifier,
/// statuses handled here, bounded waits.
fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(format!("offpack/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_recv_body(Some(Duration::from_secs(30 * 60)))
        .build()
        .into()
}

/// Fetches one tarball (or finds it in the cache: then `false`).
fn fetch_one(
    agent: &ureq::Agent,
    cache: &PackageCache,
    item: &NpmFetch,
    expected: Option<&Integrity>,
    on_bytes: &dyn Fn(u64),
) -> Result<(FetchedPackage, bool)> {
    let what = format!("{}@{}", item.name, item.version);
    if let Some(sri) = expected
        && let Some((digest, size)) = cached(cache, sri)?
    {
        let integrity = item.integrity.clone();
        return Ok((fetched(cache, item, digest, size, integrity), false));
    }

    let fail = |detail: String| anyhow!("cannot fetch {what} from {}: {detail}", item.url);
    let response = agent
        .get(&item.url)
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("the server answered HTTP {status}")));
    }
    let mut body = response.into_body().into_reader();
    let mut writer = cache.writer()?;
    let mut hashes = Hashes::new(expected.map(|sri| sri.best().algorithm.as_str()));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        hashes.update(&buf[..n]);
        writer
            .write_all(&buf[..n])
            .context("cannot write into the package cache")?;
        on_bytes(n as u64);
    }
    if let Some(sri) = expected {
        // Only the strongest algorithm the lock names is checked, as npm does.
        let algorithm = sri.best().algorithm.as_str();
        let actual = IntegrityHash {
            algorithm: algorithm.to_owned(),
            digest: hashes.digest(algorithm),
        };
        if !sri.matches(algorithm, &actual.digest) {
            // `writer` is dropped uncommitted: nothing of this download stays in the cache.
            bail!(
                "{what} from {} does not match the lock's integrity: expected {}, got {}",
                item.url,
                expected_text(sri, algorithm),
                actual.to_sri()
            );
        }
    }
    let (digest, size, _) = writer.commit()?;
    // Each hash of the bytes names the file from now on, so a lock recording another algorithm
    // (old locks have sha1) finds it too.
    for hash in hashes.all() {
        cache.put_key(INTEGRITY_KIND, &hash.to_sri(), digest.hex().as_bytes())?;
    }
    let integrity = item
        .integrity
        .clone()
        .unwrap_or_else(|| Integrity::sha512_of(&hashes.digest("sha512")));
    Ok((fetched(cache, item, digest, size, Some(integrity)), true))
}

/// `sri`'s hashes of `algorithm`, as text (for messages).
fn expected_text(sri: &Integrity, algorithm: &str) -> String {
    sri.hashes()
        .iter()
        .filter(|h| h.algorithm == algorithm)
        .map(IntegrityHash::to_sri)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cached file one of `sri`'s strongest hashes names, if the cache has it.
fn cached(cache: &PackageCache, sri: &Integrity) -> Result<Option<(Digest, u64)>> {
    let algorithm = &sri.best().algorithm;
    for hash in sri.hashes() {
        if hash.algorithm != *algorithm {
            continue;
        }
        let Some(hex) = cache.get_key(INTEGRITY_KIND, &hash.to_sri())? else {
            continue;
        };
        let Ok(digest) = Digest::from_hex(&String::from_utf8_lossy(&hex)) else {
            continue;
        };
        if let Some((_, size)) = cache.get(&digest) {
            return Ok(Some((digest, size)));
        }
    }
    Ok(None)
}

fn fetched(
    cache: &PackageCache,
    item: &NpmFetch,
    digest: Digest,
    size: u64,
    integrity: Option<String>,
) -> FetchedPackage {
    let unscoped = registry::unscoped(&item.name);
    FetchedPackage {
        path: cache.path_of(&digest),
        package: offpack_bundle::Package {
            ecosystem: "npm".into(),
            name: item.name.clone(),
            version: item.version.clone(),
            // The registry's own name of the file (`/<name>/-/<unscoped>-<version>.tgz`).
            filename: format!("{unscoped}-{}.tgz", item.version),
            digest,
            size,
            services: Vec::new(),
            integrity,
            platform: None,
        },
    }
}

/// The hashes computed while a tarball streams: sha256, sha512 and sha1 always, sha384 when the
/// lock names it.
struct Hashes {
    sha256: Sha256,
    sha512: Sha512,
    sha1: Sha1,
    sha384: Option<Sha384>,
}

impl Hashes {
    /// `needed`: the algorithm the lock's integrity is checked with.
    fn new(needed: Option<&str>) -> Hashes {
        Hashes {
            sha256: Sha256::new(),
            sha512: Sha512::new(),
            sha1: Sha1::new(),
            sha384: (needed == Some("sha384")).then(Sha384::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.sha512.update(bytes);
        self.sha1.update(bytes);
        if let Some(h) = &mut self.sha384 {
            h.update(bytes);
        }
    }

    /// The digest of `algorithm` (an SRI name); empty for one not computed, which matches no
    /// integrity.
    fn digest(&self, algorithm: &str) -> Vec<u8> {
        match algorithm {
            "sha1" => self.sha1.clone().finalize().to_vec(),
            "sha256" => self.sha256.clone().finalize().to_vec(),
            "sha384" => self
                .sha384
                .clone()
                .map(|h| h.finalize().to_vec())
                .unwrap_or_default(),
            "sha512" => self.sha512.clone().finalize().to_vec(),
            _ => Vec::new(),
        }
    }

    /// Every hash computed.
    fn all(&self) -> Vec<IntegrityHash> {
        let mut algorithms = vec!["sha512", "sha256", "sha1"];
        if self.sha384.is_some() {
            algorithms.push("sha384");
        }
        algorithms
            .into_iter()
            .map(|algorithm| IntegrityHash {
                algorithm: algorithm.to_owned(),
                digest: self.digest(algorithm),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha512_of(bytes: &[u8]) -> String {
        Integrity::sha512_of(&Sha512::digest(bytes))
    }

    fn sha1_of(bytes: &[u8]) -> String {
        IntegrityHash {
            algorithm: "sha1".into(),
            digest: Sha1::digest(bytes).to_vec(),
        }
        .to_sri()
    }

    #[test]
    fn the_expected_text_names_the_hashes_of_the_checked_algorithm() {
        let (sha1, sha512) = (sha1_of(b"x"), sha512_of(b"x"));
        let sri = Integrity::parse(&format!("{sha1} {sha512}?opt md5-AAAA")).unwrap();
        assert_eq!(sri.best().algorithm, "sha512");
        assert_eq!(expected_text(&sri, "sha512"), sha512);
        assert_eq!(expected_text(&sri, "sha1"), sha1);
    }

    #[test]
    fn hashes_cover_what_locks_record() {
        let mut hashes = Hashes::new(Some("sha384"));
        hashes.update(b"ab");
        hashes.update(b"c");
        assert_eq!(hashes.digest("sha1"), Sha1::digest(b"abc").to_vec());
        assert_eq!(hashes.digest("sha384"), Sha384::digest(b"abc").to_vec());
        assert_eq!(hashes.digest("md5"), Vec::<u8>::new());
        let all = hashes.all();
        assert_eq!(all.len(), 4);
        assert!(all.iter().any(|h| h.to_sri() == sha512_of(b"abc")));
        assert_eq!(Hashes::new(None).all().len(), 3);
    }

    #[test]
    fn a_cached_tarball_is_found_by_any_of_its_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let bytes = b"tarball";
        let (digest, size, _) = crate::fetch::cache::put_reader(&cache, &bytes[..]).unwrap();
        let sha1 = sha1_of(bytes);
        cache
            .put_key(INTEGRITY_KIND, &sha1, digest.hex().as_bytes())
            .unwrap();
        let sri = Integrity::parse(&sha1).unwrap();
        assert_eq!(cached(&cache, &sri).unwrap(), Some((digest.clone(), size)));
        // Only the strongest algorithm counts: a sha512 the cache does not know is a miss.
        let both = Integrity::parse(&format!("{sha1} {}", sha512_of(bytes))).unwrap();
        assert_eq!(cached(&cache, &both).unwrap(), None);
        fs_err::remove_file(cache.path_of(&digest)).unwrap();
        assert_eq!(cached(&cache, &sri).unwrap(), None);
    }

    #[test]
    fn a_broken_integrity_fails_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let list = [NpmFetch {
            name: "left-pad".into(),
            version: "1.3.0".into(),
            // Nothing listens there; the integrity is refused before any connection.
            url: "http://127.0.0.1:9/left-pad/-/left-pad-1.3.0.tgz".into(),
            integrity: Some("sha512-nope".into()),
        }];
        let reporter = crate::reporter::SilentReporter::default();
        let err = fetch_tarballs(&list, &cache, 2, &reporter)
            .unwrap_err()
            .to_string();
        assert!(err.contains("left-pad@1.3.0"), "{err}");
        assert!(err.contains("sha512-nope"), "{err}");
    }
}
