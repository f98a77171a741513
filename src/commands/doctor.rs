use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{DoctorArgs, Output};
use crate::engine::Engine;
use crate::reporter::human_bytes;

pub async fn run(args: DoctorArgs, output: Output) -> Result<ExitCode> {
    let engine = Engine::connect().await?;
    let facts = engine.facts(&args.registries).await?;
    output.result(&facts, || {
        let mut s = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            s,
            "engine          {} ({})",
            facts.server_version, facts.endpoint
        );
        let _ = writeln!(
            s,
            "API             {} (min {}, offpack uses {})",
            facts.api_version, facts.min_api_version, facts.client_api_version
        );
        let _ = writeln!(
            s,
            "platform        {}/{} on {} (kernel {})",
            facts.os, facts.arch, facts.operating_system, facts.kernel
        );
        let _ = writeln!(
            s,
            "resources       {} CPUs, {}",
            facts.cpus,
            human_bytes(facts.memory_bytes.max(0) as u64)
        );
        let _ = writeln!(s, "storage driver  {}", facts.storage_driver);
        let _ = writeln!(
            s,
            "containerd store {}",
            yes_no(facts.containerd_image_store)
        );
        let _ = writeln!(s, "data root       {}", facts.docker_root_dir);
        let _ = writeln!(
            s,
            "builders        {} (buildx plugin: {})",
            facts.builders.join(", "),
            yes_no(facts.buildx_plugin)
        );
        let _ = writeln!(s, "save layout     {}", facts.save_layout);
        let _ = writeln!(
            s,
            "mirrors         {}",
            if facts.registry_mirrors.is_empty() {
                "none".to_string()
            } else {
                facts.registry_mirrors.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "insecure        {}",
            facts.insecure_registries.join(", ")
        );
        if facts.registries.is_empty() {
            let _ = writeln!(
                s,
                "registries      not checked (use --registry HOST[:PORT])"
            );
        }
        for check in &facts.registries {
            let _ = writeln!(
                s,
                "registry        {}: {} ({})",
                check.registry,
                if check.reachable {
                    "reachable"
                } else {
                    "NOT reachable"
                },
                check.detail
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
