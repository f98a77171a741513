//! `fetch::npm::fetch_tarballs` against the fixture registry (`tests/common/npm_registry.rs`): a
//! real `npm install` writes the lock, every tarball it names is fetched and checked against the
//! lock's integrity, a second fetch makes no request, a tarball whose bytes differ is refused and
//! leaves nothing in the cache, and download failures name the URL. One test fetches over HTTPS
//! from PyPI's file host, for the TLS setup (system CA store, proxy from the environment).
//!
//! npm must be installed: without it these tests fail, they do not skip.

mod common;

use std::collections::BTreeSet;

use base64::Engine as _;
use common::npm_registry::{NpmFixtureRegistry, fixture_app};
use offpack::fetch::cache::PackageCache;
use offpack::fetch::npm::{NpmFetch, fetch_tarballs};
use offpack::reporter::SilentReporter;
use sha2::{Digest as _, Sha256, Sha512};

/// The tarballs a package-lock.json (v2/v3 `packages`) names, parsed just enough for the test.
fn lock_fetches(lock: &str) -> Vec<NpmFetch> {
    let doc: serde_json::Value = serde_json::from_str(lock).expect("the lock is JSON");
    let packages = doc["packages"].as_object().expect("a v2/v3 lock");
    let mut list = Vec::new();
    for (path, entry) in packages {
        if path.is_empty() || entry["link"].as_bool() == Some(true) {
            continue;
        }
        let name = entry["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                let at = path.rfind("node_modules/").expect("a node_modules path");
                path[at + "node_modules/".len()..].to_string()
            });
        list.push(NpmFetch {
            name,
            version: entry["version"].as_str().expect("version").to_string(),
            url: entry["resolved"].as_str().expect("resolved").to_string(),
            integrity: entry["integrity"].as_str().map(str::to_string),
        });
    }
    list
}

/// The files in the cache's blob directory.
fn cached_blobs(cache: &PackageCache) -> usize {
    std::fs::read_dir(cache.root().join("packages/sha256"))
        .unwrap()
        .count()
}

#[test]
fn every_tarball_of_a_real_lock_is_fetched_checked_and_then_cached() {
    let registry = NpmFixtureRegistry::start_default();
    let app = fixture_app(
        &registry,
        &[
            ("offpack-fixture-base", "1.0.0"),
            ("offpack-fixture-right", "^1.0.0"),
            ("@offpack-fixture/util", "^1.0.0"),
            ("offpack-fixture-native", "^1.0.0"),
        ],
    );
    let lock = std::fs::read_to_string(app.path().join("package-lock.json")).unwrap();
    let list = lock_fetches(&lock);
    let names: BTreeSet<String> = list
        .iter()
        .map(|f| format!("{}@{}", f.name, f.version))
        .collect();
    // Both versions of base (right needs ^1.1.0, the app pins 1.0.0), the scoped package, and
    // both optional platform packages, also the one this machine does not install.
    for expected in [
        "offpack-fixture-base@1.0.0",
        "offpack-fixture-base@1.1.0",
        "offpack-fixture-left@1.0.0",
        "offpack-fixture-right@1.0.0",
        "@offpack-fixture/util@1.0.0",
        "offpack-fixture-native@1.0.0",
        "@offpack-fixture/native-linux-x64@1.0.0",
        "@offpack-fixture/native-darwin-arm64@1.0.0",
    ] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    assert!(list.iter().all(|f| f.url.starts_with(&registry.url())));

    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();
    let before = registry.request_count();
    let fetched = fetch_tarballs(&list, &cache, 4, &SilentReporter::default()).expect("fetched");
    assert_eq!(fetched.len(), list.len());
    assert_eq!(registry.request_count() - before, names.len());
    for (item, got) in list.iter().zip(&fetched) {
        let bytes = std::fs::read(&got.path).unwrap();
        let fixture = registry.package(&item.name, &item.version).unwrap();
        assert_eq!(bytes, fixture.tarball, "{}@{}", item.name, item.version);
        assert_eq!(got.package.ecosystem, "npm");
        assert_eq!(got.package.name, item.name);
        assert_eq!(got.package.version, item.version);
        assert_eq!(got.package.filename, fixture.filename());
        assert_eq!(
            got.package.digest.hex(),
            hex::encode(Sha256::digest(&bytes))
        );
        assert_eq!(got.package.size, bytes.len() as u64);
        assert_eq!(got.package.integrity, item.integrity);
        assert_eq!(
            got.package.integrity.as_deref(),
            Some(fixture.integrity.as_str())
        );
    }

    // Again: everything from the cache, not one request.
    let before = registry.request_count();
    let again = fetch_tarballs(&list, &cache, 4, &SilentReporter::default()).expect("cached");
    assert_eq!(
        registry.request_count(),
        before,
        "the second fetch made requests"
    );
    assert_eq!(again, fetched);
}

#[test]
fn a_corrupted_tarball_is_refused_and_leaves_nothing_in_the_cache() {
    let registry = NpmFixtureRegistry::start_default();
    let left = registry
        .package("offpack-fixture-left", "1.0.0")
        .unwrap()
        .clone();
    registry.corrupt("offpack-fixture-left", "1.0.0");
    let url = registry.tarball_url("offpack-fixture-left", "1.0.0");
    let list = [NpmFetch {
        name: left.name.clone(),
        version: left.version.clone(),
        url: url.clone(),
        integrity: Some(left.integrity.clone()),
    }];
    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();
    let err = fetch_tarballs(&list, &cache, 2, &SilentReporter::default())
        .expect_err("the bytes do not match")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("offpack-fixture-left@1.0.0"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.contains(&left.integrity), "expected hash named: {err}");
    let mut corrupted = left.tarball.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&corrupted))
    );
    assert!(err.contains(&actual), "actual hash named: {err}");
    assert_eq!(
        cached_blobs(&cache),
        0,
        "the refused tarball stayed in the cache"
    );
    assert!(
        !cache.root().join("keys").exists()
            || walkdir::WalkDir::new(cache.root().join("keys"))
                .into_iter()
                .filter_map(Result::ok)
                .all(|e| e.file_type().is_dir()),
        "an integrity record of the refused tarball was written"
    );

    // Among good ones, with several workers: the same refusal, the good ones may be cached.
    let mut list = vec![list[0].clone()];
    for p in registry.packages() {
        if p.name != "offpack-fixture-left" {
            list.push(NpmFetch {
                name: p.name.clone(),
                version: p.version.clone(),
                url: registry.tarball_url(&p.name, &p.version),
                integrity: Some(p.integrity.clone()),
            });
        }
    }
    let err = fetch_tarballs(&list, &cache, 3, &SilentReporter::default())
        .expect_err("still corrupt")
        .to_string();
    assert!(err.contains("offpack-fixture-left@1.0.0"), "{err}");
}

#[test]
fn download_failures_name_the_url() {
    let registry = NpmFixtureRegistry::start_default();
    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();

    // Not on the registry: its status.
    let missing = format!(
        "{}/offpack-fixture-none/-/offpack-fixture-none-1.0.0.tgz",
        registry.url()
    );
    let list = [NpmFetch {
        name: "offpack-fixture-none".into(),
        version: "1.0.0".into(),
        url: missing.clone(),
        integrity: None,
    }];
    let err = fetch_tarballs(&list, &cache, 1, &SilentReporter::default())
        .expect_err("404")
        .to_string();
    assert!(err.contains(&missing), "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("offpack-fixture-none@1.0.0"), "{err}");

    // Nothing listening: connection refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused =
        format!("http://127.0.0.1:{port}/offpack-fixture-base/-/offpack-fixture-base-1.0.0.tgz");
    let list = [NpmFetch {
        name: "offpack-fixture-base".into(),
        version: "1.0.0".into(),
        url: refused.clone(),
        integrity: None,
    }];
    let err = fetch_tarballs(&list, &cache, 1, &SilentReporter::default())
        .expect_err("refused")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains(&refused), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert_eq!(cached_blobs(&cache), 0);
}

#[test]
fn a_tarball_without_integrity_is_fetched_and_given_one() {
    let registry = NpmFixtureRegistry::start_default();
    let base = registry
        .package("offpack-fixture-base", "1.1.0")
        .unwrap()
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();
    let list = [
        NpmFetch {
            name: base.name.clone(),
            version: base.version.clone(),
            url: registry.tarball_url(&base.name, &base.version),
            integrity: None,
        },
        // The same tarball twice: one request.
        NpmFetch {
            name: base.name.clone(),
            version: base.version.clone(),
            url: registry.tarball_url(&base.name, &base.version),
            integrity: None,
        },
    ];
    let before = registry.request_count();
    let fetched = fetch_tarballs(&list, &cache, 2, &SilentReporter::default()).unwrap();
    assert_eq!(registry.request_count() - before, 1);
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0], fetched[1]);
    assert_eq!(
        fetched[0].package.integrity.as_deref(),
        Some(base.integrity.as_str())
    );

    // A lock with the sha1 form (old lockfiles) now finds it in the cache.
    let sha1 = format!(
        "sha1-{}",
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&base.shasum).unwrap())
    );
    let before = registry.request_count();
    let by_sha1 = fetch_tarballs(
        &[NpmFetch {
            integrity: Some(sha1.clone()),
            ..list[0].clone()
        }],
        &cache,
        1,
        &SilentReporter::default(),
    )
    .unwrap();
    assert_eq!(registry.request_count(), before);
    assert_eq!(by_sha1[0].package.digest, fetched[0].package.digest);
    assert_eq!(by_sha1[0].package.integrity.as_deref(), Some(sha1.as_str()));
}

/// Over HTTPS from PyPI's file host: TLS is verified with the system's CA store (the workplace's
/// TLS-intercepting proxy's CA is in it, not in any bundled list) and a `sha256-` integrity is
/// checked. The file's URL and hash come from PyPI's simple index (JSON form).
#[test]
fn https_downloads_trust_the_system_ca_store() {
    let _network = common::offline::build_network();
    let out = common::run(std::process::Command::new("curl").args([
        "-fsS",
        "--max-time",
        "60",
        "-H",
        "Accept: application/vnd.pypi.simple.v1+json",
        "https://pypi.org/simple/bottle/",
    ]));
    assert!(out.status.success(), "PyPI's simple index did not answer");
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON index");
    let file = index["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["filename"] == "bottle-0.13.4-py2.py3-none-any.whl")
        .expect("bottle 0.13.4's wheel");
    let url = file["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("https://"), "{url}");
    let sha256 = hex::decode(file["hashes"]["sha256"].as_str().expect("sha256")).unwrap();
    let integrity = format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(&sha256)
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = PackageCache::open(dir.path().join("cache")).unwrap();
    let fetched = fetch_tarballs(
        &[NpmFetch {
            name: "bottle".into(),
            version: "0.13.4".into(),
            url,
            integrity: Some(integrity),
        }],
        &cache,
        1,
        &SilentReporter::default(),
    )
    .expect("fetched over HTTPS");
    assert_eq!(fetched[0].package.digest.hex(), hex::encode(&sha256));
}
