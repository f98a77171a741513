//! The far side's package store: the wheels and npm tarballs that `offpack load` took from bundles,
//! kept so that later rebuilds (and `offpack serve`) can serve them without the bundle.
//!
//! Layout of the store's directory (by default `$OFFPACK_HOME/packages`, see
//! [`PackageStore::default_dir`]):
//!
//! ```text
//! blobs/sha256/<hex>   each file once, named by the SHA-256 of its bytes
//! index.json           a JSON array of offpack_bundle::Package, sorted, one entry per
//!                      (ecosystem, normalized name, version, filename, digest)
//! .lock                taken (flock, exclusive) by every index update
//! ```
//!
//! Every file is written under a temporary name in its own directory, synced and renamed, so a
//! reader sees the old or the new file, never a part; a blob is in place before any index entry
//! names it. Index updates run under the lock, so two loads at once both keep their entries.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::{Digest, Package};
use sha2::{Digest as _, Sha256};

use crate::error::CheckFailed;

/// The largest `index.json` the store reads (about a million packages).
const INDEX_FILE: offpack_fs::Kind = offpack_fs::Kind {
    name: "package store index",
    limit: 512 << 20,
};

/// A package of the store and where its file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPackage {
    /// What the index says about it.
    pub package: Package,
    /// Its file (`blobs/sha256/<hex>` in the store).
    pub path: PathBuf,
}

impl StoredPackage {
    /// Its file still has the package's digest; a failed check (exit 1) naming the package and
    /// the file when it does not.
    pub fn check(&self) -> Result<()> {
        let package = &self.package;
        let mut file = fs_err::File::open(&self.path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let actual = hex::encode(hasher.finalize());
        if actual != package.digest.hex() {
            return Err(anyhow::Error::new(CheckFailed(format!(
                "the package store's file for {} {} ({}) at {} is corrupt: its sha256 is {actual}, \
                 not {}; load the bundle that carries it again",
                package.name,
                package.version,
                package.filename,
                self.path.display(),
                package.digest.hex()
            ))));
        }
        Ok(())
    }
}

/// The package store in one directory. Cheap to open; every call reads what it needs.
#[derive(Debug, Clone)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    /// The store's directory: `$OFFPACK_HOME/packages`, where `OFFPACK_HOME` defaults to
    /// `$XDG_DATA_HOME/offpack`, else `$HOME/.local/share/offpack`.
    pub fn default_dir() -> Result<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = if let Some(home) = var("OFFPACK_HOME") {
            PathBuf::from(home)
        } else if let Some(data) = var("XDG_DATA_HOME") {
            PathBuf::from(data).join("offpack")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".local/share/offpack")
        } else {
            bail!(
                "cannot tell where offpack keeps its packages: set OFFPACK_HOME (or HOME) to a directory"
            );
        };
        Ok(home.join("packages"))
    }

    /// The store at [`PackageStore::default_dir`], created if missing.
    pub fn open_default() -> Result<PackageStore> {
        PackageStore::open(&Self::default_dir()?)
    }

    /// The store in `dir`, created (with its blob directory) if missing.
    pub fn open(dir: &Path) -> Result<PackageStore> {
        fs_err::create_dir_all(dir.join("blobs/sha256"))
            .context("cannot create the package store")?;
        Ok(PackageStore {
            dir: dir.to_owned(),
        })
    }

    /// The store in `dir` as it is, creating nothing: for readers (`offpack serve`), which must
    /// not leave an empty store behind. A missing index reads as an empty store.
    pub fn at(dir: &Path) -> PackageStore {
        PackageStore {
            dir: dir.to_owned(),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is (or would be) kept.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.blob_path())
    }

    /// The index file (it changes whenever a package is recorded).
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// True if the store holds the file whose SHA-256 is `digest`.
    pub fn has(&self, digest: &Digest) -> bool {
        std::fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Adds the package `meta` whose file's bytes `data` gives: streams them into the store while
    /// hashing and counting, and refuses them (keeping nothing) unless they are `meta.size` bytes
    /// whose SHA-256 is `meta.digest`. A file the store holds already is not read again. Returns
    /// true when the index did not list the package yet (a package it listed gets the services
    /// of `meta` added).
    pub fn add(&self, meta: &Package, data: impl Read) -> Result<bool> {
        self.store_file(meta, data)?;
        Ok(self.record(std::slice::from_ref(meta))?[0])
    }

    /// The first half of [`PackageStore::add`]: puts the file of `meta` into the store, checked as
    /// `add` checks it, without listing it in the index (a file no entry names is never served).
    /// Returns true when the file was written now, false when the store held it (then `data` is
    /// not read). For adding many packages all or none: store every file, then [`record`] them.
    ///
    /// [`record`]: PackageStore::record
    pub fn store_file(&self, meta: &Package, data: impl Read) -> Result<bool> {
        meta.check()
            .map_err(|why| anyhow!("package {}: {why}", meta.display_name()))?;
        let blob = self.blob_path(&meta.digest);
        if self.check_present(meta)? {
            return Ok(false);
        }
        self.write_blob(meta, data, &blob)?;
        Ok(true)
    }

    /// The second half of [`PackageStore::add`]: lists `packages`, whose files must be in the store
    /// already, in the index, in one update under the store's lock. Returns, for each, whether
    /// the index did not list it yet.
    pub fn record(&self, packages: &[Package]) -> Result<Vec<bool>> {
        for meta in packages {
            meta.check()
                .map_err(|why| anyhow!("package {}: {why}", meta.display_name()))?;
            if !self.check_present(meta)? {
                bail!(
                    "package {}: its file {} is not in the package store",
                    meta.display_name(),
                    self.blob_path(&meta.digest).display()
                );
            }
        }
        self.update_index(|index| Ok(packages.iter().map(|p| merge(index, p)).collect()))
    }

    /// True if the store holds the file of `meta`; an error if it holds another size under its
    /// digest.
    fn check_present(&self, meta: &Package) -> Result<bool> {
        let blob = self.blob_path(&meta.digest);
        match std::fs::symlink_metadata(&blob) {
            Ok(m) if m.is_file() && m.len() == meta.size => Ok(true),
            Ok(m) if m.is_file() => bail!(
                "{}: the package store holds {} bytes under this digest, but package {} has {}; \
                 remove the file and load again",
                blob.display(),
                m.len(),
                meta.display_name(),
                meta.size
            ),
            Ok(_) => bail!(
                "{}: not a regular file; remove it and load again",
                blob.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", blob.display()))),
        }
    }

    /// Every package the index lists, sorted by ecosystem, name, version and file name.
    pub fn list(&self) -> Result<Vec<StoredPackage>> {
        Ok(self
            .read_index()?
            .into_iter()
            .map(|package| StoredPackage {
                path: self.blob_path(&package.digest),
                package,
            })
            .collect())
    }

    /// The packages of `ecosystem` named `name` (compared normalized: PEP 503 for `pypi`).
    pub fn find(&self, ecosystem: &str, name: &str) -> Result<Vec<StoredPackage>> {
        let wanted = normalized_name(ecosystem, name);
        Ok(self
            .list()?
            .into_iter()
            .filter(|s| {
                s.package.ecosystem == ecosystem
                    && normalized_name(ecosystem, &s.package.name) == wanted
            })
            .collect())
    }

    /// Streams `data` into a temporary file beside `blob`, checks it against `meta`, syncs it and
    /// renames it into place; on any failure the temporary file is removed.
    fn write_blob(&self, meta: &Package, mut data: impl Read, blob: &Path) -> Result<()> {
        let dir = blob.parent().unwrap_or(&self.dir);
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let what = || format!("package {}", meta.display_name());
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", what()))),
            };
            count += n as u64;
            // A source longer than the package says is refused as soon as it is.
            if count > meta.size {
                bail!(
                    "{} is larger than its {} bytes; nothing was stored",
                    what(),
                    meta.size
                );
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        }
        if count != meta.size {
            bail!(
                "{} has {count} bytes, not the {} it should have; nothing was stored",
                what(),
                meta.size
            );
        }
        let actual = Digest::from_hex(&hex::encode(hasher.finalize()))?;
        if actual != meta.digest {
            bail!(
                "{}: its content hashes to {actual}, not {}; nothing was stored",
                what(),
                meta.digest
            );
        }
        let file = tmp.as_file();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", tmp.path().display()))?;
        }
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.path().display()))?;
        tmp.persist(blob)
            .map_err(|e| anyhow::Error::new(e.error))
            .with_context(|| format!("cannot rename a temporary file to {}", blob.display()))?;
        sync_dir(dir)
    }

    fn read_index(&self) -> Result<Vec<Package>> {
        let path = self.index_path();
        let bytes = match offpack_fs::read(&path, INDEX_FILE) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: not a package store index (a JSON array of packages); move it away and load the bundles again",
                path.display()
            )
        })
    }

    /// Runs `edit` on the index under the store's lock and writes the result if it changed.
    fn update_index<T>(&self, edit: impl FnOnce(&mut Vec<Package>) -> Result<T>) -> Result<T> {
        let _lock = StoreLock::take(&self.dir.join(".lock"))?;
        let mut index = self.read_index()?;
        let before = index.clone();
        let outcome = edit(&mut index)?;
        sort_and_merge(&mut index);
        if index != before {
            self.write_index(&index)?;
        }
        Ok(outcome)
    }

    fn write_index(&self, index: &[Package]) -> Result<()> {
        let path = self.index_path();
        let mut json = serde_json::to_vec_pretty(index).context("serializing the package index")?;
        json.push(b'\n');
        let mut tmp = tempfile::Builder::new()
            .prefix(".index.json.")
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot create a temporary file in {}", self.dir.display()))?;
        tmp.write_all(&json)
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", tmp.path().display()))?;
        }
        tmp.persist(&path)
            .map_err(|e| anyhow::Error::new(e.error))
            .with_context(|| format!("cannot rename a temporary file to {}", path.display()))?;
        sync_dir(&self.dir)
    }
}

/// Adds `meta` to `index`: its services join an entry with the same key, else it becomes one.
/// Returns true when it became a new entry.
fn merge(index: &mut Vec<Package>, meta: &Package) -> bool {
    let key = key_of(meta);
    if let Some(existing) = index.iter_mut().find(|p| key_of(p) == key) {
        let services: BTreeSet<String> = existing
            .services
            .iter()
            .chain(&meta.services)
            .cloned()
            .collect();
        existing.services = services.into_iter().collect();
        if existing.integrity.is_none() {
            existing.integrity.clone_from(&meta.integrity);
        }
        if existing.platform.is_none() {
            existing.platform.clone_from(&meta.platform);
        }
        return false;
    }
    let mut new = meta.clone();
    new.services.sort();
    new.services.dedup();
    index.push(new);
    true
}

/// Sorts the index by its key, merging entries with the same key (an index edited by hand, or
/// written by an older offpack).
fn sort_and_merge(index: &mut Vec<Package>) {
    let entries = std::mem::take(index);
    for p in entries {
        merge(index, &p);
    }
    index.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
}

/// What makes two index entries the same package file.
fn key_of(p: &Package) -> (&str, String, &str, &str, &Digest) {
    (
        &p.ecosystem,
        normalized_name(&p.ecosystem, &p.name),
        &p.version,
        &p.filename,
        &p.digest,
    )
}

/// A package name as its ecosystem compares it: PEP 503 for `pypi` (lowercase, each run of `-`,
/// `_`, `.` as one `-`); npm names are compared as written (the registry only has lowercase ones).
pub fn normalized_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == offpack_bundle::ECOSYSTEM_PYPI {
        offpack_packages::pip::names::normalize(name)
    } else {
        name.to_owned()
    }
}

/// The store's exclusive lock, held until dropped (closing the file releases it).
struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    fn take(path: &Path) -> Result<StoreLock> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?
            .into_parts()
            .0;
        // Blocks while another load updates the index: updates are short.
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(io::Error::from(e))
                        .context(format!("cannot lock {}", path.display())));
                }
            }
        }
        Ok(StoreLock { _file: file })
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, filename: &str, data: &[u8]) -> Package {
        Package {
            ecosystem: "pypi".into(),
            name: name.into(),
            version: "1.0".into(),
            filename: filename.into(),
            digest: Digest::of_bytes(data),
            size: data.len() as u64,
            services: vec!["web".into()],
            integrity: None,
            platform: None,
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_changed_file_fails_its_check_naming_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(&dir.path().join("packages")).unwrap();
        let wheel = b"wheel bytes".to_vec();
        let meta = pkg("six", "six-1.0-py3-none-any.whl", &wheel);
        store.add(&meta, &wheel[..]).unwrap();
        let stored = store.list().unwrap();
        stored[0].check().unwrap();
        std::fs::write(&stored[0].path, b"other bytes").unwrap();
        let err = stored[0].check().unwrap_err();
        assert_eq!(
            crate::error::failure_kind(&err),
            crate::error::FailureKind::CheckFailed
        );
        let message = err.to_string();
        assert!(
            message.contains("six 1.0 (six-1.0-py3-none-any.whl)"),
            "{message}"
        );
        assert!(message.contains(meta.digest.hex()), "{message}");
    }

    #[test]
    fn adds_lists_finds_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(&dir.path().join("packages")).unwrap();
        let wheel = b"wheel bytes".to_vec();
        let meta = pkg("Foo_Bar", "Foo_Bar-1.0-py3-none-any.whl", &wheel);
        assert!(!store.has(&meta.digest));
        assert!(store.add(&meta, &wheel[..]).unwrap());
        assert!(store.has(&meta.digest));
        assert_eq!(std::fs::read(store.blob_path(&meta.digest)).unwrap(), wheel);

        let reopened = PackageStore::open(&dir.path().join("packages")).unwrap();
        let listed = reopened.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].package, meta);
        assert_eq!(listed[0].path, store.blob_path(&meta.digest));
        assert_eq!(reopened.find("pypi", "foo-bar").unwrap().len(), 1);
        assert_eq!(reopened.find("pypi", "FOO.bar").unwrap().len(), 1);
        assert!(reopened.find("npm", "foo-bar").unwrap().is_empty());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("packages/index.json")).unwrap())
                .unwrap();
        assert_eq!(index[0]["filename"], "Foo_Bar-1.0-py3-none-any.whl");
    }

    #[test]
    fn a_second_add_is_not_new_reads_nothing_and_merges_services() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let data = b"tarball".to_vec();
        let mut meta = pkg("left-pad", "left-pad-1.0.tgz", &data);
        meta.ecosystem = "npm".into();
        assert!(store.add(&meta, &data[..]).unwrap());
        meta.services = vec!["api".into(), "web".into()];
        meta.integrity = Some("sha512-x".into());
        struct Unread;
        impl Read for Unread {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("a file the store holds is read again")
            }
        }
        assert!(!store.add(&meta, Unread).unwrap());
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].package.services, ["api", "web"]);
        assert_eq!(listed[0].package.integrity.as_deref(), Some("sha512-x"));

        // The same file under another name is a second entry, one blob.
        let other = pkg("alias", "alias-1.0.tgz", &data);
        assert!(store.add(&other, &data[..]).unwrap());
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(files_in(dir.path()).len(), 3, "{:?}", files_in(dir.path()));
    }

    #[test]
    fn a_mismatch_is_refused_naming_the_package_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let data = b"the real bytes".to_vec();
        let meta = pkg("demo", "demo-1.0.tar.gz", &data);
        let cases: [(&[u8], &str); 3] = [
            (b"the fake bytes", "hashes to"),
            (b"the real", "has 8 bytes"),
            (b"the real bytes and more", "is larger than"),
        ];
        for (bytes, expected) in cases {
            let err = store.add(&meta, bytes).unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.contains(expected) && text.contains("demo 1.0 (demo-1.0.tar.gz)"),
                "{text}"
            );
        }
        assert!(
            files_in(dir.path()).is_empty(),
            "{:?}",
            files_in(dir.path())
        );
        let mut bad = meta.clone();
        bad.filename = "../escape.whl".into();
        assert!(store.add(&bad, &data[..]).is_err());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn files_first_then_one_record_and_a_missing_file_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        let (pa, pb) = (pkg("a", "a-1.0.tar.gz", &a), pkg("b", "b-1.0.tar.gz", &b));
        assert!(store.store_file(&pa, &a[..]).unwrap());
        assert!(!store.store_file(&pa, &a[..]).unwrap());
        assert!(
            store.list().unwrap().is_empty(),
            "a stored file is not listed yet"
        );
        let err = format!("{:#}", store.record(&[pa.clone(), pb.clone()]).unwrap_err());
        assert!(
            err.contains("b 1.0") && err.contains("not in the package store"),
            "{err}"
        );
        assert!(store.list().unwrap().is_empty());
        store.store_file(&pb, &b[..]).unwrap();
        assert_eq!(store.record(&[pa, pb]).unwrap(), [true, true]);
        assert_eq!(store.list().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let data = format!("package {t} {i}").into_bytes();
                        let name = format!("p{t}-{i}");
                        let meta = pkg(&name, &format!("{name}-1.0.tar.gz"), &data);
                        assert!(store.add(&meta, &data[..]).unwrap());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 50);
        let names: Vec<&str> = listed.iter().map(|s| s.package.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_by_key(|n| normalized_name("pypi", n));
        assert_eq!(names, sorted, "the index is sorted");
        assert!(listed.iter().all(|s| s.path.is_file()));
    }

    #[test]
    fn a_blob_of_another_size_under_the_digest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let data = b"abc".to_vec();
        let meta = pkg("demo", "demo-1.0.tar.gz", &data);
        std::fs::write(store.blob_path(&meta.digest), b"abcd").unwrap();
        let err = format!("{:#}", store.add(&meta, &data[..]).unwrap_err());
        assert!(
            err.contains(meta.digest.hex()) && err.contains("4 bytes"),
            "{err}"
        );
    }

    #[test]
    fn names_normalize_like_pep_503_for_pypi_only() {
        assert_eq!(
            normalized_name("pypi", "Foo__Bar.baz-Qux"),
            "foo-bar-baz-qux"
        );
        assert_eq!(normalized_name("pypi", "a-_.b"), "a-b");
        assert_eq!(normalized_name("npm", "@Scope/Name_x"), "@Scope/Name_x");
    }

    #[test]
    fn a_damaged_index_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("index.json"), b"{not json").unwrap();
        let err = format!("{:#}", store.list().unwrap_err());
        assert!(err.contains("index.json"), "{err}");
    }
}
