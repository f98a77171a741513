use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Output, PlanArgs};
use crate::plan::{Disk, Plan, make_plan};
use crate::project::load_project;

pub fn run(args: PlanArgs, output: Output) -> Result<ExitCode> {
    let project = load_project(&args.project)?;
    let plan = make_plan(&project, &Disk)?;
    output.result(&plan, || render(&plan));
    Ok(ExitCode::SUCCESS)
}

/// The plan as a person reads it: services, images, findings.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "project {} ({})",
        plan.project,
        plan.project_directory.display()
    );
    let _ = writeln!(s, "\nservices:");
    for service in &plan.services {
        let state = if service.active {
            ""
        } else {
            "  (inactive: profile not enabled)"
        };
        match &service.build {
            None => {
                let _ = writeln!(s, "  {:<16} image {}{state}", service.name, service.image);
            }
            Some(build) => {
                let _ = writeln!(
                    s,
                    "  {:<16} build {} -> {}{state}",
                    service.name, build.dockerfile, service.image
                );
                if let Some(target) = &build.target {
                    let _ = writeln!(s, "  {:<16}   target {target}", "");
                }
                let _ = writeln!(s, "  {:<16}   stages {}", "", build.stages.join(" -> "));
                for image in &build.images {
                    let _ = writeln!(
                        s,
                        "  {:<16}   {} {} (line {})",
                        "", image.kind, image.reference, image.line
                    );
                }
                if let Some(frontend) = &build.frontend {
                    let _ = writeln!(
                        s,
                        "  {:<16}   frontend {} (line {})",
                        "", frontend.reference, frontend.line
                    );
                }
                for file in &build.package_files {
                    let _ = writeln!(s, "  {:<16}   {} manifest {}", "", file.manager, file.path);
                }
            }
        }
    }
    let _ = writeln!(s, "\nimages:");
    for image in &plan.images {
        let users: Vec<&str> = image.used_by.iter().map(String::as_str).collect();
        let _ = write!(
            s,
            "  {:<40} {:?} for {}",
            image.reference,
            image.role,
            users.join(", ")
        );
        if !image.aliases.is_empty() {
            let aliases: Vec<&str> = image.aliases.iter().map(String::as_str).collect();
            let _ = write!(s, " (also as {})", aliases.join(", "));
        }
        let _ = writeln!(s);
    }
    if !plan.findings.is_empty() {
        let _ = writeln!(s, "\nfindings:");
        for f in &plan.findings {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{}:{line}", file.display()),
                (Some(file), None) => file.display().to_string(),
                _ => format!("service {}", f.service),
            };
            let _ = writeln!(
                s,
                "  {} {:?} {place}: {}\n      fix: {}",
                f.code, f.severity, f.message, f.fix
            );
        }
    }
    s
}
