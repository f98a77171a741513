//! Loading the compose project from the command line's project options.

use anyhow::{Context, Result};

use crate::cli::ProjectArgs;

/// Loads the compose project the way `docker compose` would from the same options and environment.
pub fn load_project(args: &ProjectArgs) -> Result<offpack_compose::Project> {
    let working_dir = std::env::current_dir().context("cannot read the current directory")?;
    let options = offpack_compose::LoadOptions {
        working_dir,
        files: args.files.clone(),
        project_directory: args.project_directory.clone(),
        project_name: args.project_name.clone(),
        env_files: args.env_files.clone(),
        profiles: args.profiles.clone(),
        environment: std::env::vars().collect(),
    };
    Ok(offpack_compose::load(&options)?)
}
