use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use offpack_bundle::escape_controls;

use crate::cli::{InspectArgs, Output};
use crate::reporter::human_bytes;

pub fn run(args: InspectArgs, output: Output) -> Result<ExitCode> {
    let bundle = offpack_bundle::BundleReader::open(&args.bundle)?;
    let manifest = bundle.manifest();
    output.result(manifest, || {
        let mut s = String::new();
        let _ = writeln!(s, "bundle    {}", args.bundle.display());
        // Everything below is the sender's text: escaped, so that it cannot fake lines or
        // drive the terminal.
        let _ = writeln!(
            s,
            "format    {} (offpack {}), created {}",
            escape_controls(&manifest.format_version),
            escape_controls(&manifest.offpack_version),
            escape_controls(&manifest.created)
        );
        let _ = writeln!(s, "project   {}", escape_controls(&manifest.project.name));
        let _ = writeln!(s, "images:");
        for image in &manifest.images {
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            let refs: Vec<_> = image.refs.iter().map(|r| escape_controls(r)).collect();
            let _ = writeln!(
                s,
                "  {:<12} {:>10}  {}",
                &image.id.hex()[..12],
                human_bytes(size),
                refs.join(", ")
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
