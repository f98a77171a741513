use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Output, PushArgs};
use crate::ops::push::{Pushed, push};
use crate::reporter::{Reporter, human_bytes};

pub fn run(args: PushArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let request = args.into();
    // The push is blocking HTTP on a few threads of its own.
    let pushed = tokio::task::block_in_place(|| push(&request, reporter))?;
    output.result(&pushed, || summary(&pushed));
    Ok(ExitCode::SUCCESS)
}

/// The mapping, the mirror settings and the counts, for people.
fn summary(pushed: &Pushed) -> String {
    let mut lines = Vec::new();
    for image in &pushed.mapping.images {
        for r in &image.refs {
            let old = match (&r.old_digest, &r.pin_tag) {
                (Some(old), Some(tag)) => format!(" (was {old}; tag {tag})"),
                (Some(old), None) => format!(" (was {old})"),
                (None, _) => String::new(),
            };
            lines.push(format!(
                "{} -> {}{old}",
                offpack_bundle::escape_controls(&r.original),
                r.pushed
            ));
        }
    }
    let settings = &pushed.mapping.settings;
    if let Some(json) = &settings.docker_daemon_json {
        lines.push(format!(
            "Docker (/etc/docker/daemon.json): {}",
            serde_json::to_string(json).unwrap_or_default()
        ));
    }
    for note in &settings.docker_notes {
        lines.push(format!("Docker: {note}"));
    }
    for file in &settings.containerd {
        lines.push(format!("containerd, {}:", file.path));
        lines.extend(file.content.lines().map(|l| format!("  {l}")));
    }
    lines.push(format!(
        "pushed {} images to {}, {} blobs sent ({}), {} already there, {} mounted{}",
        pushed.mapping.images.len(),
        pushed.mapping.registry,
        pushed.blobs_sent,
        human_bytes(pushed.bytes_sent),
        pushed.blobs_present,
        pushed.blobs_mounted,
        match &pushed.sidecar {
            Some(s) => format!("; the bundle matches {s}"),
            None => String::new(),
        }
    ));
    lines.join("\n")
}
