//! The job behind `offpack verify`, and the public key `verify` and `load` check a signature
//! against.

use std::path::Path;

use anyhow::{Context, Result};
use offpack_bundle::{BundleReader, CheckedBundle, VerifyReport, VerifyingKey};

use crate::reporter::Reporter;

/// Reads every byte of the bundle at `bundle` against its checksums (and, given `key`, its
/// signature by that key), with a progress bar over the bundle's size.
pub fn verify(bundle: &Path, key: Option<&Path>, reporter: &dyn Reporter) -> Result<VerifyReport> {
    let key = key.map(read_public_key).transpose()?;
    // The size of every part of a split bundle, which may be named by its base name alone.
    let size = offpack_bundle::bundle_len(bundle)?;
    let task = reporter.start(&format!("verify {}", bundle.display()), Some(size));
    let report = match &key {
        Some(key) => {
            offpack_bundle::verify_with_key(bundle, key, &mut |done| reporter.progress(task, done))?
        }
        None => offpack_bundle::verify(bundle, &mut |done| reporter.progress(task, done))?,
    };
    reporter.finish(task, "ok");
    Ok(report)
}

/// Opens `bundle` with everything but its blob data checked ([`BundleReader::open_checked`]),
/// signed by the key in the file `key` when given: what `load` and `push` do before they act on
/// any name in it. A corrupt bundle's error says nothing was `undone` (`loaded`, `pushed`).
pub fn open_checked(bundle: &Path, key: Option<&Path>, undone: &str) -> Result<CheckedBundle> {
    let key = key.map(read_public_key).transpose()?;
    BundleReader::open_checked(bundle, key.as_ref()).map_err(|e| {
        if e.is_corruption() {
            anyhow::Error::new(e).context(format!(
                "{}: refused, nothing was {undone}",
                bundle.display()
            ))
        } else {
            e.into()
        }
    })
}

/// A public key file from `offpack keygen` (`--key`, `OFFPACK_KEY`).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = offpack_fs::read_to_string(path, offpack_fs::KEY)?;
    VerifyingKey::from_text(&text).with_context(|| {
        format!(
            "{} is not a public key from `offpack keygen`",
            path.display()
        )
    })
}
