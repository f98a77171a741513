//! Where the package server's files come from: a bundle, or the far side's package store.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;
use offpack_bundle::{BundleReader, Digest, Package};

use super::store::PackageStore;

/// The packages a server offers and their bytes.
pub trait PackageSource: Send + Sync {
    /// Every package, as the bundle's manifest or the store's index lists them.
    fn packages(&self) -> Vec<Package>;
    /// Streams the blob of a package. The reader may borrow the source (a bundle's blob reader
    /// does): the server reads it on a blocking thread that holds the source.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;
    /// Where the packages are, for messages: "the bundle", "the package store".
    fn describe(&self) -> String {
        "the packages served".into()
    }
}

/// The packages of an open bundle. Each blob's size and digest are checked as it is read, so a
/// blob changed after the bundle was opened ends its response with an error, never with other
/// bytes than the bundle's.
pub struct BundleSource {
    reader: BundleReader,
}

impl BundleSource {
    pub fn new(reader: BundleReader) -> Self {
        BundleSource { reader }
    }

    /// The bundle.
    pub fn reader(&self) -> &BundleReader {
        &self.reader
    }
}

impl PackageSource for BundleSource {
    fn packages(&self) -> Vec<Package> {
        self.reader.manifest().packages.clone()
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        // Only a package's blob: the bundle's image layers are not the server's to give.
        if !self
            .reader
            .manifest()
            .packages
            .iter()
            .any(|p| p.digest == *digest)
        {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not a package of the bundle"),
            ));
        }
        let blob = self.reader.blob(digest).map_err(io::Error::other)?;
        Ok(Box::new(blob))
    }

    fn describe(&self) -> String {
        "the bundle".into()
    }
}

/// The far side's package store, as `offpack load` writes it ([`PackageStore`]). The index is
/// read again when it changes, so a `load` while the server runs adds to what it serves.
pub struct StoreSource {
    store: PackageStore,
    cached: Mutex<Option<(IndexStamp, Vec<Package>)>>,
}

/// What tells that `index.json` changed.
type IndexStamp = (Option<SystemTime>, u64);

impl StoreSource {
    /// Serves `store`; fails when its index cannot be read or parsed.
    pub fn new(store: PackageStore) -> Result<Self> {
        let source = StoreSource {
            store,
            cached: Mutex::new(None),
        };
        source.read_index()?;
        Ok(source)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    fn read_index(&self) -> Result<Vec<Package>> {
        let path = self.store.index_path();
        let meta = match fs_err::metadata(&path) {
            Ok(meta) => meta,
            // An empty store: nothing loaded yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_stamp, packages)) = cached.as_ref()
            && *cached_stamp == stamp
        {
            return Ok(packages.clone());
        }
        let packages: Vec<Package> = self
            .store
            .list()?
            .into_iter()
            .map(|stored| stored.package)
            .collect();
        *cached = Some((stamp, packages.clone()));
        Ok(packages)
    }
}

impl PackageSource for StoreSource {
    fn packages(&self) -> Vec<Package> {
        // A store whose index went bad while serving keeps serving what it listed before.
        match self.read_index() {
            Ok(packages) => packages,
            Err(_) => self
                .cached
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
        }
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(fs_err::File::open(self.store.blob_path(digest))?))
    }

    fn describe(&self) -> String {
        "the package store".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_source_reads_the_index_and_blobs_and_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreSource::new(PackageStore::at(dir.path())).unwrap();
        assert!(store.packages().is_empty());
        let data = b"wheel bytes";
        let digest = Digest::of_bytes(data);
        fs_err::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs_err::write(dir.path().join("blobs/sha256").join(digest.hex()), data).unwrap();
        // Built from JSON so that fields a later format adds keep this compiling.
        let package: Package = serde_json::from_value(serde_json::json!({
            "ecosystem": "pypi",
            "name": "six",
            "version": "1.16.0",
            "filename": "six-1.16.0-py2.py3-none-any.whl",
            "digest": digest.to_string(),
            "size": data.len(),
        }))
        .unwrap();
        fs_err::write(
            dir.path().join("index.json"),
            serde_json::to_vec(&vec![package]).unwrap(),
        )
        .unwrap();
        assert_eq!(store.packages().len(), 1);
        let mut read = Vec::new();
        store.open(&digest).unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
        fs_err::write(dir.path().join("index.json"), b"{").unwrap();
        assert!(StoreSource::new(PackageStore::at(dir.path())).is_err());
        // The running server keeps what it had.
        assert_eq!(store.packages().len(), 1);
    }
}
