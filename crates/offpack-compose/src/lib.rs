//! Loads a Docker Compose project the way the Compose Specification (and `docker compose
//! config`, i.e. compose-go) does — as pure logic: it reads files, nothing else. The caller
//! passes the process environment in [`LoadOptions::environment`].
//!
//! Covered: file discovery (`compose.yaml` … upward from the working directory, override
//! files, `-f`, `COMPOSE_FILE`), `.env`/`--env-file`, interpolation, project name, merging of
//! several files (`!reset`/`!override`), YAML anchors and `<<` merge keys, profiles, `build`,
//! `extends` and `include`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

mod dotenv;
mod error;
mod field_lines;
mod loader;
mod merge;
mod model;
mod node;
mod paths;
mod template;
mod validate;
mod yaml_depth;

pub use error::ComposeError;
pub use field_lines::FieldLocations;

/// What to load, as given on the command line and by the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Directory offpack was started in (absolute); relative paths of options resolve here.
    pub working_dir: PathBuf,
    /// `-f` files in order; empty means `COMPOSE_FILE`, else discovery.
    pub files: Vec<PathBuf>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `-p`; must already be a valid project name, as compose requires.
    pub project_name: Option<String>,
    /// `--env-file` files in order; empty means `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    /// `--profile` values; empty means `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// The process environment (`std::env::vars()`); it wins over `.env` values.
    pub environment: BTreeMap<String, String>,
}

/// A loaded Compose project: the part of the model offpack needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Project name, normalized like compose (lowercase, `[a-z0-9_-]`).
    pub name: String,
    /// Absolute project directory.
    pub project_directory: PathBuf,
    /// Absolute paths of every Compose file read, in load order (`-f`/discovered files,
    /// then the files reached through `include` and `extends`).
    pub files: Vec<PathBuf>,
    /// All services, active or not, by name.
    pub services: BTreeMap<String, Service>,
    /// Things compose would warn about (unset variables, obsolete `version`, ...).
    pub warnings: Vec<String>,
    /// Where each service and its fields are written, for messages that point at a line.
    pub field_locations: FieldLocations,
}

/// One service of the project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Service name (the key under `services:`).
    pub name: String,
    /// Selected by the active profiles, or needed by a selected service (`depends_on`).
    pub active: bool,
    /// `profiles:` of the service.
    pub profiles: Vec<String>,
    /// `image:` as written, after interpolation.
    pub image: Option<String>,
    /// `build:` section.
    pub build: Option<Build>,
    /// `platform:`.
    pub platform: Option<String>,
    /// `pull_policy:`.
    pub pull_policy: Option<String>,
    /// Names of the services this one depends on, sorted.
    pub depends_on: Vec<String>,
}

impl Service {
    /// Name of the image the service runs: `image:` if set, else `<project>-<service>`
    /// (the Compose Specification / compose v2 default for built images).
    pub fn image_name(&self, project_name: &str) -> String {
        match &self.image {
            Some(image) => image.clone(),
            None => format!("{project_name}-{}", self.name),
        }
    }
}

/// A service's `build:` section, with paths resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Build {
    /// Where the build context is.
    pub context: BuildContext,
    /// Which Dockerfile to use.
    pub dockerfile: DockerfileSource,
    /// Build arguments; an argument listed without a value takes it from the environment
    /// (process environment, then `.env`) and is dropped when that is unset, as compose does.
    pub args: BTreeMap<String, String>,
    /// `target:` stage.
    pub target: Option<String>,
    /// `platforms:`.
    pub platforms: Vec<String>,
    /// `cache_from:` in order (compose appends across files and keeps duplicates).
    pub cache_from: Vec<String>,
    /// `cache_to:`.
    pub cache_to: Vec<String>,
    /// `additional_contexts:`; local paths made absolute, other forms as written.
    pub additional_contexts: BTreeMap<String, String>,
    /// `ssh:` ids (`default`, or the id of `id=path`), sorted; never paths or keys.
    pub ssh: Vec<String>,
    /// Names of the build secrets (their `source`); never values.
    pub secrets: Vec<String>,
    /// `labels:`.
    pub labels: BTreeMap<String, String>,
    /// `network:`.
    pub network: Option<String>,
    /// `extra_hosts:` in the engine's `host:ip` form, sorted.
    pub extra_hosts: Vec<String>,
    /// `tags:` (extra tags for the built image).
    pub tags: Vec<String>,
    /// Where the build was first declared.
    pub source: Location,
}

/// Build context of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildContext {
    /// A local directory (absolute).
    Local(PathBuf),
    /// A Git repository or HTTP(S) URL (or another `scheme://` context), as written.
    Remote(String),
}

/// Dockerfile of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DockerfileSource {
    /// A file: absolute for a local context; as written (relative to the context root) for a
    /// remote one.
    Path(PathBuf),
    /// `dockerfile_inline:` content.
    Inline(String),
}

/// A place in a Compose file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Absolute path of the file.
    pub file: PathBuf,
    /// 1-based line, when it could be found (block-style YAML).
    pub line: Option<usize>,
}

/// Loads the Compose project described by `opts`.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    loader::load(opts)
}

#[cfg(test)]
mod fuzz_tests;
