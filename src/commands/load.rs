use std::process::ExitCode;

use anyhow::Result;
use offpack_bundle::escape_controls;
use serde::Serialize;

use crate::cli::{LoadArgs, Output};
use crate::ops::load::containerd::{ContainerdLoaded, ContainerdTarget, describe_names};
use crate::ops::load::job::{LoadRequest, load};
use crate::reporter::{Reporter, human_bytes};

#[derive(Debug, Serialize)]
struct LoadReport {
    loaded: Vec<String>,
    already_present: Vec<String>,
    retagged: Vec<String>,
    /// Names the bundle records that already point to another image in the engine (e.g. one
    /// `offpack rebuild` made): a load never moves them.
    kept: Vec<String>,
    /// Layers not sent because the engine already holds them (same layer on the same base).
    layers_skipped: usize,
    bytes_streamed: u64,
    /// Fingerprint of the key whose valid signature the bundle carries.
    signed_by: Option<String>,
    /// The `.sha256` file the whole bundle matched, when there is one beside it.
    sidecar: Option<String>,
    /// Packages put into the package store that it did not list before.
    packages_added: usize,
    /// Packages of the bundle the store listed already.
    packages_present: usize,
    /// With --containerd: where the images went, the names given and what was unpacked.
    #[serde(skip_serializing_if = "Option::is_none")]
    containerd: Option<ContainerdLoaded>,
}

pub async fn run(args: LoadArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let request = LoadRequest {
        bundle: args.bundle,
        key: args.key,
        services: args.services,
        containerd: args.containerd.then_some(ContainerdTarget {
            address: args.address,
            namespace: args.namespace,
            snapshotter: args.snapshotter,
        }),
    };
    let loaded = load(&request, reporter).await?;
    let report = LoadReport {
        loaded: loaded.loaded,
        already_present: loaded.already_present,
        retagged: loaded.retagged,
        kept: loaded.kept,
        layers_skipped: loaded.layers_skipped,
        bytes_streamed: loaded.bytes_streamed,
        signed_by: loaded.signed_by,
        sidecar: loaded.sidecar,
        packages_added: loaded.packages_added,
        packages_present: loaded.packages_present,
        containerd: loaded.containerd,
    };
    output.result(&report, || summary(&report));
    Ok(ExitCode::SUCCESS)
}

/// The human result line: the images (left out for a bundle of packages alone), the packages
/// (when the bundle has some), the checksum file.
fn summary(report: &LoadReport) -> String {
    let has_packages = report.packages_added + report.packages_present > 0;
    let mut parts = Vec::new();
    if !has_packages || !report.loaded.is_empty() || !report.already_present.is_empty() {
        parts.push(format!(
            "loaded {} images ({} streamed), {} already present{}",
            report.loaded.len(),
            human_bytes(report.bytes_streamed),
            report.already_present.len(),
            if report.retagged.is_empty() {
                String::new()
            } else {
                let names: Vec<_> = report.retagged.iter().map(|n| escape_controls(n)).collect();
                format!(", retagged {}", names.join(", "))
            }
        ));
    }
    if let Some(containerd) = &report.containerd {
        parts.push(describe_names(containerd));
    }
    if has_packages {
        parts.push(format!(
            "{} packages added to the package store, {} already there",
            report.packages_added, report.packages_present
        ));
    }
    if let Some(sidecar) = &report.sidecar {
        parts.push(format!("the bundle matches {sidecar}"));
    }
    parts.join("; ")
}
