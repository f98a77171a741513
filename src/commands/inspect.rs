use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{InspectArgs, Output};
use crate::reporter::human_bytes;

pub fn run(args: InspectArgs, output: Output) -> Result<ExitCode> {
    let bundle = offpack_bundle::BundleReader::open(&args.bundle)?;
    let manifest = bundle.manifest();
    output.result(manifest, || {
        let mut s = String::new();
        let _ = writeln!(s, "bundle    {}", args.bundle.display());
        let _ = writeln!(
            s,
            "format    {} (offpack {}), created {}",
            manifest.format_version, manifest.offpack_version, manifest.created
        );
        let _ = writeln!(s, "project   {}", manifest.project.name);
        let _ = writeln!(s, "images:");
        for image in &manifest.images {
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            let _ = writeln!(
                s,
                "  {:<12} {:>10}  {}",
                &image.id.hex()[..12],
                human_bytes(size),
                image.refs.join(", ")
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
