use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{BundleArgs, Output};
use crate::ops::bundle::export::bundle;
use crate::ops::bundle::package_only::bundle_packages_for;
use crate::reporter::{Reporter, human_bytes};

#[derive(Serialize)]
struct BundleSummary {
    path: String,
    sha256: String,
    size: u64,
    uncompressed: u64,
    images: usize,
    /// Distinct layers of the bundled images (a shared layer once), those left out of a delta
    /// bundle included.
    layers: usize,
    /// Layers a delta bundle leaves out (the far side holds them).
    layers_left_out: usize,
    blobs: usize,
    /// Python and npm package files carried.
    packages: usize,
    /// Bytes of the engine's export stream.
    exported: u64,
    seconds: f64,
}

pub async fn run(args: BundleArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let request = args.request();
    let bundled = match &args.packages_for {
        Some(request_file) => bundle_packages_for(&request, request_file, reporter).await?,
        None => bundle(&request, reporter).await?,
    };
    let summary = BundleSummary {
        path: bundled.path.display().to_string(),
        sha256: bundled.sha256,
        size: bundled.size,
        uncompressed: bundled.uncompressed,
        images: bundled.images,
        layers: bundled.layers,
        layers_left_out: bundled.layers_left_out,
        blobs: bundled.blobs,
        packages: bundled.packages,
        exported: bundled.exported,
        seconds: bundled.seconds,
    };
    output.result(&summary, || {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wrote {}: {} images, {} unique layers{}{}; {} uncompressed, {} compressed ({:.1}x); {:.1}s",
            summary.path,
            summary.images,
            summary.layers,
            if summary.layers_left_out > 0 {
                format!(" ({} left out: the far side has them)", summary.layers_left_out)
            } else {
                String::new()
            },
            if summary.packages > 0 {
                format!(", {} package files", summary.packages)
            } else {
                String::new()
            },
            human_bytes(summary.uncompressed),
            human_bytes(summary.size),
            summary.uncompressed as f64 / summary.size.max(1) as f64,
            summary.seconds
        );
        let _ = writeln!(
            s,
            "sha256 {}  (also in {}.sha256)",
            summary.sha256, summary.path
        );
        s
    });
    Ok(ExitCode::SUCCESS)
}
