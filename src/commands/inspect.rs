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
            // Format 1.4: the registry's digests, which the bundle keeps valid.
            if let Some(registry) = &image.registry {
                let digests: Vec<_> = registry
                    .repo_digests
                    .iter()
                    .map(|d| escape_controls(d))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {:<23}  as its registry has it: {}",
                    "",
                    digests.join(", ")
                );
            }
        }
        write_packages(&mut s, &manifest.packages);
        s
    });
    Ok(ExitCode::SUCCESS)
}

/// The packages: how many of each ecosystem, then one line each (name, version, file, size), as
/// the manifest lists them. Nothing for a bundle without packages.
fn write_packages(s: &mut String, packages: &[offpack_bundle::Package]) {
    if packages.is_empty() {
        return;
    }
    let mut per_ecosystem = std::collections::BTreeMap::new();
    for p in packages {
        *per_ecosystem.entry(p.ecosystem.as_str()).or_insert(0usize) += 1;
    }
    let counts: Vec<String> = per_ecosystem
        .iter()
        .map(|(ecosystem, n)| format!("{} {n}", escape_controls(ecosystem)))
        .collect();
    let _ = writeln!(s, "packages: {} ({})", packages.len(), counts.join(", "));
    for p in packages {
        let _ = writeln!(
            s,
            "  {:<5} {} {}  {}  {}",
            escape_controls(&p.ecosystem),
            escape_controls(&p.name),
            escape_controls(&p.version),
            escape_controls(&p.filename),
            human_bytes(p.size)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_counted_per_ecosystem_and_listed() {
        let package = |ecosystem: &str, name: &str, filename: &str| offpack_bundle::Package {
            ecosystem: ecosystem.into(),
            name: name.into(),
            version: "1.0".into(),
            filename: filename.into(),
            digest: offpack_bundle::Digest::of_bytes(b"x"),
            size: 2048,
            services: vec![],
            integrity: None,
            platform: None,
        };
        let mut s = String::new();
        write_packages(&mut s, &[]);
        assert_eq!(s, "");
        write_packages(
            &mut s,
            &[
                package("pypi", "demo", "demo-1.0-py3-none-any.whl"),
                package("npm", "@s/x\u{1b}[2J", "x-1.0.tgz"),
                package("pypi", "other", "other-1.0.tar.gz"),
            ],
        );
        assert_eq!(
            s,
            "packages: 3 (npm 1, pypi 2)\n\
             \x20 pypi  demo 1.0  demo-1.0-py3-none-any.whl  2.0 KiB\n\
             \x20 npm   @s/x\\u{1b}[2J 1.0  x-1.0.tgz  2.0 KiB\n\
             \x20 pypi  other 1.0  other-1.0.tar.gz  2.0 KiB\n"
        );
    }
}
