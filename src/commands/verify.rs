use std::process::ExitCode;

use anyhow::Result;
use offpack_bundle::SidecarStatus;
use serde::Serialize;

use crate::cli::{Output, VerifyArgs};
use crate::ops::verify::verify;
use crate::reporter::{Reporter, human_bytes};

#[derive(Serialize)]
struct Verified {
    bundle: String,
    ok: bool,
    size: u64,
    uncompressed: u64,
    blobs: usize,
    images: usize,
    packages: usize,
    /// The checksum file that matched, if there is one beside the bundle.
    sidecar: Option<String>,
    sha256: Option<String>,
    /// Fingerprint of the key whose valid signature the bundle carries, if any.
    signed_by: Option<String>,
    /// The files read: the bundle, or each part of a split bundle.
    files: Vec<String>,
    /// Layers a delta bundle leaves out, which the far side's engine must hold.
    absent_layers: usize,
}

pub async fn run(args: VerifyArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let report = verify(&args.bundle, args.key.as_deref(), reporter)?;
    let verified = Verified {
        bundle: args.bundle.display().to_string(),
        ok: true,
        size: report.size,
        uncompressed: report.uncompressed,
        blobs: report.blobs,
        images: report.manifest.images.len(),
        packages: report.manifest.packages.len(),
        sidecar: match &report.sidecar {
            SidecarStatus::Matched(p) => Some(p.display().to_string()),
            SidecarStatus::Absent => None,
        },
        sha256: report.sha256.clone(),
        signed_by: report.signed_by.as_ref().map(|k| k.fingerprint()),
        files: report
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect(),
        absent_layers: report
            .manifest
            .delta
            .as_ref()
            .map_or(0, |d| d.absent_layers.len()),
    };
    output.result(&verified, || {
        format!(
            "{}: OK, {} blobs for {} images{} checked ({} compressed, {} uncompressed){}",
            verified.bundle,
            verified.blobs,
            verified.images,
            match verified.packages {
                0 => String::new(),
                n => format!(" and {n} packages"),
            },
            human_bytes(verified.size),
            human_bytes(verified.uncompressed),
            match &verified.sidecar {
                Some(p) => format!("; matches {p}"),
                None => "; no .sha256 checksum file beside it".to_string(),
            }
        ) + &match &verified.signed_by {
            Some(fingerprint) => format!("\nsigned by key {fingerprint}"),
            None => String::new(),
        } + &if verified.absent_layers > 0 {
            format!(
                "\ndelta bundle: {} layers must already be in the engine that loads it",
                verified.absent_layers
            )
        } else {
            String::new()
        }
    });
    Ok(ExitCode::SUCCESS)
}
