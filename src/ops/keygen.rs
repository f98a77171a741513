//! The job behind `offpack keygen`: a new key pair written atomically beside each other, never
//! over an existing file, and never half a pair.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

/// The key pair written.
#[derive(Debug)]
pub struct Keys {
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
    pub fingerprint: String,
}

/// Writes a new key pair to `NAME.key` (secret, mode 0600) and `NAME.pub` (public).
pub fn keygen(name: &Path) -> Result<Keys> {
    let secret_path = with_suffix(name, "key");
    let public_path = with_suffix(name, "pub");
    for path in [&secret_path, &public_path] {
        refuse_existing(path)?;
    }
    let (secret, public) = offpack_bundle::generate_keypair()?;
    let secret_tmp = write_temp(&secret_path, &secret.to_text(), 0o600)?;
    let public_tmp = write_temp(&public_path, &public.to_text(), 0o644)?;
    place_new(&secret_tmp, &secret_path, 0o600)?;
    if let Err(e) = place_new(&public_tmp, &public_path, 0o644) {
        // Half a pair is no use, and this secret key is one this run just made.
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    Ok(Keys {
        secret_key: secret_path,
        public_key: public_path,
        fingerprint: public.fingerprint(),
    })
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Fails naming `path` when anything is there, a dangling symbolic link included.
fn refuse_existing(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Err(exists(path)),
        Err(_) => Ok(()),
    }
}

fn exists(path: &Path) -> anyhow::Error {
    anyhow!(
        "{} exists already; offpack never overwrites a key: choose another name",
        path.display()
    )
}

/// `text` in a synced temporary file with `mode` beside `path`, removed when dropped.
fn write_temp(path: &Path, text: &str, mode: u32) -> Result<tempfile::TempPath> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".offpack-keygen.")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    writeln!(file, "{text}")
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", file.path().display()))?;
    Ok(file.into_temp_path())
}

/// Gives the complete temporary file its final name, failing instead of replacing whatever is at
/// `path` (a hard link is never made over an existing name, even one made since the first check).
fn place_new(tmp: &Path, path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::hard_link(tmp, path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists(path)),
        // File systems without hard links (FAT on a USB stick): an exclusive create never
        // replaces a file either, but a crash can leave the key half-written.
        Err(_) => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => exists(path),
            _ => anyhow!("cannot create {}: {e}", path.display()),
        })?;
    std::io::copy(&mut std::fs::File::open(tmp)?, &mut file)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
