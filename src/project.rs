//! Loading the compose project from the options that name it.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Where the compose project is: the options `docker compose` takes for it, as given on the
/// command line (`cli::ProjectArgs` converts into this).
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// `-f` files in order; empty means `COMPOSE_FILE`, else discovery.
    pub files: Vec<PathBuf>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file` files in order; empty means `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    /// `--profile` values; empty means `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
}

/// Loads the compose project the way `docker compose` would from the same options and environment.
pub fn load_project(options: &ProjectOptions) -> Result<offpack_compose::Project> {
    let working_dir = std::env::current_dir().context("cannot read the current directory")?;
    let options = offpack_compose::LoadOptions {
        working_dir,
        files: options.files.clone(),
        project_directory: options.project_directory.clone(),
        project_name: options.project_name.clone(),
        env_files: options.env_files.clone(),
        profiles: options.profiles.clone(),
        environment: std::env::vars().collect(),
    };
    Ok(offpack_compose::load(&options)?)
}
