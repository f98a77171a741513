use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{KeygenArgs, Output};

#[derive(Serialize)]
struct Keys {
    secret_key: PathBuf,
    public_key: PathBuf,
    fingerprint: String,
}

pub fn run(args: KeygenArgs, output: Output) -> Result<ExitCode> {
    let secret_path = with_suffix(&args.output, "key");
    let public_path = with_suffix(&args.output, "pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            bail!(
                "{} exists already; offpack never overwrites a key: choose another name",
                path.display()
            );
        }
    }
    let (secret, public) = offpack_bundle::generate_keypair()?;
    write_new(&secret_path, &secret.to_text(), 0o600)?;
    write_new(&public_path, &public.to_text(), 0o644)?;
    let keys = Keys {
        secret_key: secret_path,
        public_key: public_path,
        fingerprint: public.fingerprint(),
    };
    output.result(&keys, || {
        format!(
            "wrote {} (secret: keep it on the networked side) and {} (public: give it to the far side)\nfingerprint {}",
            keys.secret_key.display(),
            keys.public_key.display(),
            keys.fingerprint
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` (never replacing a file) with `mode`, written in full and synced.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
