use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{KeygenArgs, Output};
use crate::ops::keygen::keygen;

#[derive(Serialize)]
struct Keys {
    secret_key: PathBuf,
    public_key: PathBuf,
    fingerprint: String,
}

pub fn run(args: KeygenArgs, output: Output) -> Result<ExitCode> {
    let written = keygen(&args.output)?;
    let keys = Keys {
        secret_key: written.secret_key,
        public_key: written.public_key,
        fingerprint: written.fingerprint,
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
