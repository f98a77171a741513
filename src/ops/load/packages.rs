//! `load`'s packages: the bundle's wheels and npm tarballs go into the far side's package store
//! (`crate::packages::store`), where rebuilds and `offpack serve` find them.
//!
//! All or nothing, like the images: every file is streamed from the bundle into the store (the
//! bundle's reader checks each blob's digest as it ends, the store hashes it again) before the
//! store's index lists any of them, so a corrupt blob leaves the index as it was.

use std::io::{self, Read};

use anyhow::{Context, Result};
use offpack_bundle::{BundleReader, Package};

use crate::packages::store::PackageStore;
use crate::reporter::{Reporter, TaskId, human_bytes};

/// What storing the bundle's packages did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredPackages {
    /// Packages the store's index did not list before.
    pub added: usize,
    /// Packages it listed already (their services are merged).
    pub present: usize,
    /// Bytes copied from the bundle (files the store did not hold).
    pub bytes: u64,
}

/// Puts every package of `bundle` into `store`. Packages of an ecosystem offpack does not know
/// are stored too: the store keeps what the bundle carries, serving is what picks by ecosystem.
pub fn store_packages(
    bundle: &BundleReader,
    store: &PackageStore,
    reporter: &dyn Reporter,
) -> Result<StoredPackages> {
    let packages: &[Package] = &bundle.manifest().packages;
    let mut result = StoredPackages::default();
    if packages.is_empty() {
        return Ok(result);
    }
    let missing: Vec<&Package> = packages.iter().filter(|p| !store.has(&p.digest)).collect();
    let total: u64 = missing.iter().map(|p| p.size).sum();
    let task = reporter.start(
        &format!(
            "store {} packages in {}",
            packages.len(),
            store.dir().display()
        ),
        Some(total),
    );
    for package in missing {
        // Two packages may share a file: the second finds it stored.
        if store.has(&package.digest) {
            continue;
        }
        let blob = bundle.blob(&package.digest)?;
        let counted = Counted {
            inner: blob,
            reporter,
            task,
            done: &mut result.bytes,
        };
        store.store_file(package, counted).with_context(|| {
            format!(
                "storing package {} in {}",
                package.display_name(),
                store.dir().display()
            )
        })?;
    }
    for new in store.record(packages)? {
        if new {
            result.added += 1;
        } else {
            result.present += 1;
        }
    }
    reporter.finish(
        task,
        &format!(
            "{} added, {} already present ({} copied)",
            result.added,
            result.present,
            human_bytes(result.bytes)
        ),
    );
    Ok(result)
}

/// Reports the bytes read through it as the task's progress.
struct Counted<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
    task: TaskId,
    done: &'a mut u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            *self.done += n as u64;
            self.reporter.progress(self.task, *self.done);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::SilentReporter;
    use offpack_bundle::{BundleWriter, Digest, Manifest, WriteOptions};

    fn package(name: &str, filename: &str, data: &[u8]) -> Package {
        Package {
            ecosystem: "pypi".into(),
            name: name.into(),
            version: "1.0".into(),
            filename: filename.into(),
            digest: Digest::of_bytes(data),
            size: data.len() as u64,
            services: vec![],
            integrity: None,
            platform: None,
        }
    }

    #[test]
    fn stores_every_package_once_and_counts_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.offpack");
        let mut w = BundleWriter::create(&path, WriteOptions::default()).unwrap();
        let (a, b) = (b"file a".to_vec(), b"file b".to_vec());
        w.add_blob_bytes(&a).unwrap();
        w.add_blob_bytes(&b).unwrap();
        let mut m = Manifest::new("0", "shop");
        m.packages = vec![
            package("a", "a-1.0.tar.gz", &a),
            package("b", "b-1.0.tar.gz", &b),
            package("a-again", "a_again-1.0.tar.gz", &a),
        ];
        w.finish(m).unwrap();
        let reader = BundleReader::open(&path).unwrap();
        let store = PackageStore::open(&dir.path().join("store")).unwrap();
        let first = store_packages(&reader, &store, &SilentReporter::default()).unwrap();
        assert_eq!(
            first,
            StoredPackages {
                added: 3,
                present: 0,
                bytes: 12
            }
        );
        let second = store_packages(&reader, &store, &SilentReporter::default()).unwrap();
        assert_eq!(
            second,
            StoredPackages {
                added: 0,
                present: 3,
                bytes: 0
            }
        );
        assert_eq!(store.list().unwrap().len(), 3);
    }
}
