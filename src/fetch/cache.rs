//! The networked side's package cache: wheels and tarballs offpack fetched, named by their sha256,
//! and small keyed records (a pip resolution's result, an npm integrity → sha256 map) so that a
//! second bundle of unchanged inputs fetches nothing.
//!
//! Layout under the cache root (`$OFFPACK_CACHE`, else `$XDG_CACHE_HOME/offpack`, else
//! `~/.cache/offpack`):
//! - `packages/sha256/<hex>`: the files, content-addressed;
//! - `keys/<kind>/<sha256 of the key>`: keyed records.
//!
//! Every write goes to a temporary file in the target's directory and is renamed into place after
//! an fsync, so a reader sees a whole file or none, and concurrent writers of the same content
//! are harmless. A cache file is never changed in place.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use offpack_bundle::Digest;
use sha2::{Digest as _, Sha256};

/// A package offpack fetched, in the cache, with what the bundle's manifest says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPackage {
    /// Ecosystem (`pypi`, `npm`), name, version, file name, digest, size; for npm the SRI
    /// integrity (the lock's, or `sha512-…` of the bytes when the lock had none); for a wheel
    /// that is not pure its target (`linux/amd64 cp311-cp311-manylinux_2_17_x86_64`); `services`
    /// empty (the caller knows who needs it).
    pub package: offpack_bundle::Package,
    /// The file in the cache.
    pub path: PathBuf,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct PackageCache {
    root: PathBuf,
}

impl PackageCache {
    /// The default cache: `$OFFPACK_CACHE`, else `$XDG_CACHE_HOME/offpack`, else
    /// `$HOME/.cache/offpack`.
    pub fn open_default() -> Result<PackageCache> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let root = if let Some(dir) = env("OFFPACK_CACHE") {
            PathBuf::from(dir)
        } else if let Some(dir) = env("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("offpack")
        } else if let Some(home) = env("HOME") {
            PathBuf::from(home).join(".cache").join("offpack")
        } else {
            bail!("no cache directory: set OFFPACK_CACHE (or HOME)");
        };
        PackageCache::open(root)
    }

    /// The cache at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<PackageCache> {
        let cache = PackageCache { root: root.into() };
        fs_err::create_dir_all(cache.blob_dir())
            .with_context(|| format!("cannot create the package cache {}", cache.root.display()))?;
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("packages").join("sha256")
    }

    /// Where the file with `digest` is (or would be).
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// The cached file with `digest` and its size, if the cache has it.
    pub fn get(&self, digest: &Digest) -> Option<(PathBuf, u64)> {
        let path = self.path_of(digest);
        let meta = fs_err::metadata(&path).ok()?;
        meta.is_file().then_some((path, meta.len()))
    }

    /// Copies the file at `path` into the cache; returns its digest and size.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64)> {
        let mut file = fs_err::File::open(path)?;
        let mut writer = self.writer()?;
        io::copy(&mut file, &mut writer)
            .with_context(|| format!("cannot copy {} into the package cache", path.display()))?;
        let (digest, size, _) = writer.commit()?;
        Ok((digest, size))
    }

    /// A writer of a new cache file; its content is in the cache only once
    /// [`CacheWriter::commit`] returns, and dropping it uncommitted leaves nothing behind.
    pub fn writer(&self) -> Result<CacheWriter> {
        let dir = self.blob_dir();
        let file = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&dir)
            .with_context(|| {
                format!(
                    "cannot create a file in the package cache {}",
                    dir.display()
                )
            })?;
        Ok(CacheWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
            dir,
        })
    }

    /// The record stored under (`kind`, `key`), if any.
    pub fn get_key(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.key_path(kind, key)?;
        match fs_err::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `value` under (`kind`, `key`), replacing what was there.
    pub fn put_key(&self, kind: &str, key: &str, value: &[u8]) -> Result<()> {
        let path = self.key_path(kind, key)?;
        let dir = path.parent().context("a key's file has a directory")?;
        fs_err::create_dir_all(dir)?;
        let mut file = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        file.write_all(value)
            .and_then(|()| file.as_file().sync_all())
            .with_context(|| format!("cannot write a file in {}", dir.display()))?;
        file.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn key_path(&self, kind: &str, key: &str) -> Result<PathBuf> {
        // The kind is a directory name chosen by offpack's code, never by input.
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("invalid package cache record kind {kind:?}");
        }
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        Ok(self.root.join("keys").join(kind).join(name))
    }
}

/// A cache file being written; hashes what passes.
pub struct CacheWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    dir: PathBuf,
}

impl CacheWriter {
    /// Syncs the file and moves it to its content's name; returns its digest, size and path.
    pub fn commit(self) -> Result<(Digest, u64, PathBuf)> {
        let CacheWriter {
            file,
            hasher,
            size,
            dir,
        } = self;
        let hex = hex::encode(hasher.finalize());
        let digest = Digest::from_hex(&hex).context("a sha256 digest")?;
        file.as_file()
            .sync_all()
            .with_context(|| format!("cannot write a file in {}", dir.display()))?;
        let path = dir.join(&hex);
        file.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok((digest, size, path))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Write for CacheWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads `reader` to its end into the cache.
pub fn put_reader(cache: &PackageCache, mut reader: impl Read) -> Result<(Digest, u64, PathBuf)> {
    let mut writer = cache.writer()?;
    io::copy(&mut reader, &mut writer).context("cannot write into the package cache")?;
    writer.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, PackageCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path().join("cache")).unwrap();
        (dir, cache)
    }

    #[test]
    fn files_are_named_by_their_sha256() {
        let (dir, cache) = cache();
        let source = dir.path().join("a.whl");
        fs_err::write(&source, b"wheel bytes").unwrap();
        let (digest, size) = cache.put_file(&source).unwrap();
        assert_eq!(digest, Digest::of_bytes(b"wheel bytes"));
        assert_eq!(size, 11);
        let (path, len) = cache.get(&digest).unwrap();
        assert_eq!(len, 11);
        assert_eq!(fs_err::read(path).unwrap(), b"wheel bytes");
        // The same content again is the same file.
        let (again, _) = cache.put_file(&source).unwrap();
        assert_eq!(again, digest);
        assert_eq!(fs_err::read_dir(cache.blob_dir()).unwrap().count(), 1);
        assert!(cache.get(&Digest::of_bytes(b"other")).is_none());
    }

    #[test]
    fn an_uncommitted_writer_leaves_nothing() {
        let (_dir, cache) = cache();
        let mut writer = cache.writer().unwrap();
        writer.write_all(b"half a tarball").unwrap();
        assert_eq!(writer.size(), 14);
        drop(writer);
        assert_eq!(fs_err::read_dir(cache.blob_dir()).unwrap().count(), 0);
    }

    #[test]
    fn keyed_records_round_trip_and_replace() {
        let (_dir, cache) = cache();
        assert_eq!(cache.get_key("npm-integrity", "sha512-abc").unwrap(), None);
        cache
            .put_key("npm-integrity", "sha512-abc", b"one")
            .unwrap();
        cache
            .put_key("npm-integrity", "sha512-abc", b"two")
            .unwrap();
        assert_eq!(
            cache.get_key("npm-integrity", "sha512-abc").unwrap(),
            Some(b"two".to_vec())
        );
        assert_eq!(cache.get_key("pip-resolution", "sha512-abc").unwrap(), None);
        assert!(cache.put_key("../x", "k", b"").is_err());
    }

    #[test]
    fn put_reader_streams_into_the_cache() {
        let (_dir, cache) = cache();
        let (digest, size, path) = put_reader(&cache, &b"streamed"[..]).unwrap();
        assert_eq!(size, 8);
        assert_eq!(path, cache.path_of(&digest));
    }
}
