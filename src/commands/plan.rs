use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Output, PlanArgs};
use crate::plan::Disk;
use crate::plan::{Acquire, FindingLayout, Plan, ServicePlan, Severity, make_plan};
use crate::project::load_project;

pub fn run(args: PlanArgs, output: Output) -> Result<ExitCode> {
    let project = load_project(&args.project.options())?;
    let plan = make_plan(&project, &Disk, args.builder.without_engine())?;
    output.result(&plan, || render(&plan));
    Ok(ExitCode::SUCCESS)
}

/// The plan as a person reads it: services, images, findings.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let files: Vec<String> = plan
        .compose_files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let _ = writeln!(
        s,
        "project {} in {} ({})",
        plan.project,
        plan.project_directory.display(),
        files.join(", ")
    );
    let width = plan
        .services
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max("SERVICE".len());
    let _ = writeln!(
        s,
        "\n{:<width$}  {:<6}  {:<5}  IMAGE",
        "SERVICE", "ACTIVE", "HOW"
    );
    for service in &plan.services {
        render_service(&mut s, service, width);
    }
    let _ = writeln!(s, "\nimages to carry ({}):", plan.images.len());
    for image in &plan.images {
        let users: Vec<&str> = image.used_by.iter().map(String::as_str).collect();
        let role = match image.role {
            crate::plan::ImageRole::Build => "build",
            crate::plan::ImageRole::Service => "service",
            crate::plan::ImageRole::Frontend => "frontend",
        };
        let _ = write!(
            s,
            "  {:<40} {role:<8} for {}",
            image.reference,
            users.join(", ")
        );
        if image
            .platforms
            .iter()
            .any(|p| p != crate::plan::DEFAULT_PLATFORM)
        {
            let platforms: Vec<&str> = image.platforms.iter().map(String::as_str).collect();
            let _ = write!(s, " [{}]", platforms.join(", "));
        }
        if !image.aliases.is_empty() {
            let aliases: Vec<&str> = image.aliases.iter().map(String::as_str).collect();
            let _ = write!(s, " (also as {})", aliases.join(", "));
        }
        let _ = writeln!(s);
    }
    if !plan.findings.is_empty() {
        let errors = plan
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let _ = writeln!(
            s,
            "\nfindings ({errors} error(s), {} warning(s)):",
            plan.findings.len() - errors
        );
        for finding in &plan.findings {
            s.push_str(&finding.render(FindingLayout::ListEntry));
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "\ncompose warnings:");
        for warning in &plan.warnings {
            let _ = writeln!(s, "  {warning}");
        }
    }
    s
}

fn render_service(s: &mut String, service: &ServicePlan, width: usize) {
    let active = if service.active { "yes" } else { "no" };
    let how = match service.acquire {
        Acquire::Pull => "pull",
        Acquire::Build => "build",
        Acquire::Local => "local",
    };
    let _ = write!(
        s,
        "{:<width$}  {active:<6}  {how:<5}  {}",
        service.name, service.image
    );
    if let Some(builder) = &service.built_by {
        let _ = write!(s, " (built by {builder})");
    }
    if !service.active && !service.profiles.is_empty() {
        let _ = write!(s, " (profiles: {})", service.profiles.join(", "));
    }
    let _ = writeln!(s);
    let indent = " ".repeat(width + 4);
    let Some(build) = &service.build else {
        return;
    };
    let mut what = format!("{} in {}", build.dockerfile, build.context);
    if let Some(target) = &build.target {
        let _ = write!(what, ", target {target}");
    }
    let _ = write!(what, ", for {}", service.platforms.join(", "));
    let _ = writeln!(s, "{indent}build {what}");
    let _ = write!(s, "{indent}builder {}", build.builder);
    if !build.needs_buildkit.is_empty() {
        let reasons: Vec<String> = build
            .needs_buildkit
            .iter()
            .map(|f| format!("{} (line {})", f.feature, f.line))
            .collect();
        let _ = write!(s, "; needs BuildKit for {}", reasons.join(", "));
    }
    let _ = writeln!(s);
    if !build.stages.is_empty() {
        let _ = writeln!(s, "{indent}stages {}", build.stages.join(", "));
    }
    for image in &build.images {
        let _ = write!(
            s,
            "{indent}{} {} ({}:{})",
            image.kind, image.reference, image.file, image.line
        );
        if let Some(builder) = &image.built_by {
            let _ = write!(s, " built by {builder}");
        }
        let _ = writeln!(s);
    }
    if let Some(frontend) = &build.frontend {
        let _ = writeln!(
            s,
            "{indent}frontend {} ({}:{})",
            frontend.reference, frontend.file, frontend.line
        );
    }
    if !build.build_args.is_empty() {
        let args: Vec<String> = build
            .build_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "{indent}args {}", args.join(" "));
    }
    for file in &build.package_files {
        let _ = writeln!(s, "{indent}{} manifest {}", file.manager, file.path);
    }
    for step in &build.install_steps {
        let _ = writeln!(
            s,
            "{indent}installs (line {}): {}",
            step.line,
            step.installs.join("; ")
        );
    }
}
