//! `rebuild --up`: starts the rebuilt services with the user's own compose tool.
//!
//! offpack drives the engine through its API, but starting a compose project means networks,
//! volumes, dependencies and the compose file's whole run model, which is compose's job: offpack
//! runs `docker compose` (v2) or `docker-compose` (v1) with the project's own files and name, and
//! forbids building and pulling, so what starts is exactly the images offpack just built and the
//! bundle loaded (decision 0083).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use offpack_compose::Project;

use crate::project::ProjectOptions;

/// Which compose command is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose`, the v2 plugin.
    V2,
    /// `docker-compose` 1.x.
    V1,
}

impl ComposeTool {
    /// The compose command found on `PATH`: v2 first, as Docker installs it today.
    pub fn find() -> Result<ComposeTool> {
        let answers = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if answers("docker", &["compose", "version"]) {
            Ok(ComposeTool::V2)
        } else if answers("docker-compose", &["version"]) {
            Ok(ComposeTool::V1)
        } else {
            bail!(
                "--up needs compose to start the services, and neither `docker compose` nor \
                 `docker-compose` runs here; install one, or start the services yourself"
            )
        }
    }

    fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            ComposeTool::V2 => ("docker", &["compose"]),
            ComposeTool::V1 => ("docker-compose", &[]),
        }
    }
}

/// The arguments that make compose start `services` of `project` without building or pulling.
pub fn up_arguments(
    tool: ComposeTool,
    project: &Project,
    options: &ProjectOptions,
    services: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = tool.program().1.iter().map(|s| s.to_string()).collect();
    args.extend(["--project-name".into(), project.name.clone()]);
    args.extend([
        "--project-directory".into(),
        project.project_directory.display().to_string(),
    ]);
    for file in &project.files {
        args.extend(["--file".into(), file.display().to_string()]);
    }
    for env_file in &options.env_files {
        args.extend(["--env-file".into(), env_file.display().to_string()]);
    }
    for profile in &options.profiles {
        args.extend(["--profile".into(), profile.clone()]);
    }
    args.extend(["up".into(), "--detach".into(), "--no-build".into()]);
    if tool == ComposeTool::V2 {
        // v1 has no such flag; it pulls only images the engine lacks, and the bundle loaded them.
        args.extend(["--pull".into(), "never".into()]);
    }
    args.extend(services.iter().cloned());
    args
}

/// Starts `services` with compose; its output goes to the user's terminal (stderr), so stdout stays
/// the command's own (`--json`).
pub fn compose_up(project: &Project, options: &ProjectOptions, services: &[String]) -> Result<()> {
    let tool = ComposeTool::find()?;
    let args = up_arguments(tool, project, options, services);
    let program = tool.program().0;
    let shown = format!("{program} {}", args.join(" "));
    let status = Command::new(program)
        .args(&args)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status}); the images are built, only starting them failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn project() -> Project {
        Project {
            name: "shop".into(),
            project_directory: PathBuf::from("/p"),
            files: vec![PathBuf::from("/p/compose.yaml"), PathBuf::from("/p/o.yaml")],
            services: BTreeMap::new(),
            warnings: Vec::new(),
            field_locations: Default::default(),
        }
    }

    #[test]
    fn up_never_builds_and_v2_never_pulls() {
        let options = ProjectOptions {
            files: Vec::new(),
            project_directory: None,
            project_name: None,
            env_files: vec![PathBuf::from("prod.env")],
            profiles: vec!["web".into()],
        };
        let v2 = up_arguments(ComposeTool::V2, &project(), &options, &["backend".into()]);
        assert_eq!(
            v2.join(" "),
            "compose --project-name shop --project-directory /p --file /p/compose.yaml \
             --file /p/o.yaml --env-file prod.env --profile web up --detach --no-build \
             --pull never backend"
        );
        let v1 = up_arguments(ComposeTool::V1, &project(), &options, &["backend".into()]);
        assert!(
            v1.ends_with(&["--no-build".into(), "backend".into()]),
            "{v1:?}"
        );
        assert!(!v1.contains(&"--pull".to_string()));
    }
}
