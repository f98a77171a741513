use std::process::ExitCode;

use anyhow::Result;
use offpack_bundle::SidecarStatus;
use serde::Serialize;

use crate::cli::{Output, VerifyArgs};
use crate::commands::human_bytes;
use crate::reporter::Reporter;

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
}

pub async fn run(args: VerifyArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let size = fs_err::metadata(&args.bundle)?.len();
    let task = reporter.start(&format!("verify {}", args.bundle.display()), Some(size));
    let path = args.bundle.clone();
    let report = offpack_bundle::verify(&path, &mut |done| reporter.progress(task, done))?;
    reporter.finish(task, "ok");
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
    };
    output.result(&verified, || {
        format!(
            "{}: OK, {} blobs for {} images checked ({} compressed, {} uncompressed){}",
            verified.bundle,
            verified.blobs,
            verified.images,
            human_bytes(verified.size),
            human_bytes(verified.uncompressed),
            match &verified.sidecar {
                Some(p) => format!("; matches {p}"),
                None => "; no .sha256 checksum file beside it".to_string(),
            }
        )
    });
    Ok(ExitCode::SUCCESS)
}
