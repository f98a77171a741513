//! Which package files a service's install steps read, and the image each step runs on.
//!
//! The Dockerfile says `RUN pip install -r requirements.txt` with a path relative to the step's
//! working directory in the image; offpack needs the file of the build context that ends up
//! there. It takes the source of a `COPY`/`ADD` of the same stage, before the step, with that file
//! name; else the context file whose path is the written path or a tail of it (`/app/req.txt` →
//! `req.txt`). Files a requirements file includes (`-r`, `-c`) are relative to that file, as pip
//! reads them. No shell is run and no `WORKDIR` is followed: a file found by neither rule is named
//! in an error, so the user learns which step offpack could not follow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, anyhow};
use offpack_dockerfile::{CopySources, Dockerfile, PackageInstall, Resolved};
use offpack_packages::pip::requirements::{self, Entry};

/// The label a built image carries: the bundle-time digest of every package file its install
/// steps read (`{"requirements.txt": "sha256:…"}`). A rebuild carries it forward unchanged, so it
/// always names the files the bundle's packages were resolved from.
pub const PACKAGE_FILES_LABEL: &str = "dev.offpack.package-files";

/// Lock files npm-compatible tools read, in the order npm prefers them.
const NPM_LOCKS: &[&str] = &["npm-shrinkwrap.json", "package-lock.json", "yarn.lock"];

/// One install step of a needed stage, with the context files it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallNeed {
    /// 1-based line of the `RUN`.
    pub line: usize,
    /// The image the step's stage starts from, as written after `ARG` expansion
    /// (`python:3.11-slim`); `None` for `FROM scratch`.
    pub image: Option<String>,
    pub installer: Installer,
}

/// What an install step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    Pip {
        /// Context paths given to `-r`.
        requirement_files: Vec<String>,
        /// Context paths given to `-c`.
        constraint_files: Vec<String>,
        /// Positional requirements that name packages (local paths left out).
        packages: Vec<String>,
        /// Every context file the step reads: the above and what they include.
        files: Vec<String>,
    },
    Npm {
        /// `npm`, `yarn` or `pnpm`.
        tool: String,
        /// The lock file it installs from (context path); `None` when the context has none.
        lock: Option<String>,
    },
    /// `uv sync` (`pyproject.toml` + `uv.lock`), `pipenv install|sync` (`Pipfile` + `Pipfile.lock`).
    PythonLock {
        /// `uv` or `pipenv`.
        tool: String,
        /// The lock file it installs from (context path); `None` when the context has none.
        lock: Option<String>,
        /// The project file beside it; a change to it alone runs the step again too.
        manifest: Option<String>,
    },
}

/// The lock file and the project file a Python lock install reads, by tool.
pub fn python_lock_files(tool: &str) -> (&'static str, &'static str) {
    match tool {
        "pipenv" => ("Pipfile.lock", "Pipfile"),
        "poetry" => ("poetry.lock", "pyproject.toml"),
        _ => ("uv.lock", "pyproject.toml"),
    }
}

impl InstallNeed {
    /// Every context file this step reads.
    pub fn files(&self) -> Vec<&str> {
        match &self.installer {
            Installer::Pip { files, .. } => files.iter().map(String::as_str).collect(),
            Installer::Npm { lock, .. } => lock.iter().map(String::as_str).collect(),
            Installer::PythonLock { lock, manifest, .. } => {
                lock.iter().chain(manifest).map(String::as_str).collect()
            }
        }
    }
}

/// The install steps of a build and the contents of the files they read.
#[derive(Debug, Clone, Default)]
pub struct ServicePackages {
    pub needs: Vec<InstallNeed>,
    /// Context path → content, for every file of every need.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Install steps offpack cannot carry packages for, and why (a file it cannot find).
    pub warnings: Vec<String>,
}

impl ServicePackages {
    /// `{path: "sha256:…"}` of every file, the value of [`PACKAGE_FILES_LABEL`].
    pub fn digests(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.clone(), sha256_label(bytes)))
            .collect()
    }

    /// The label's value: compact JSON, keys sorted, so that equal files give an equal label.
    pub fn label(&self) -> String {
        serde_json::to_string(&self.digests()).unwrap_or_default()
    }

    /// Files whose content differs from `baseline` (a label's digests); a file the baseline does
    /// not list counts as changed.
    pub fn changed_since(&self, baseline: &BTreeMap<String, String>) -> BTreeSet<String> {
        self.digests()
            .into_iter()
            .filter(|(path, digest)| baseline.get(path) != Some(digest))
            .map(|(path, _)| path)
            .collect()
    }
}

/// Reads a [`PACKAGE_FILES_LABEL`] value; `None` when it is not a JSON object of strings.
pub fn parse_label(value: &str) -> Option<BTreeMap<String, String>> {
    serde_json::from_str(value).ok()
}

fn sha256_label(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A build context as the finder sees it: does a file exist, and its bytes.
pub trait ContextFiles {
    fn is_file(&self, path: &str) -> bool;
    fn read(&self, path: &str) -> Result<Vec<u8>>;
}

/// A context directory on disk.
pub struct ContextDir<'a>(pub &'a Path);

impl ContextFiles for ContextDir<'_> {
    fn is_file(&self, path: &str) -> bool {
        // A link may point out of the context; BuildKit would not follow it either.
        std::fs::symlink_metadata(self.0.join(path)).is_ok_and(|m| m.is_file())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        Ok(offpack_fs::read(
            &self.0.join(path),
            offpack_fs::PACKAGE_FILE,
        )?)
    }
}

/// The install steps of the stages `resolved` needs, and the files they read. `label` names the
/// Dockerfile in errors.
pub fn find_install_needs(
    df: &Dockerfile,
    resolved: &Resolved,
    context: &dyn ContextFiles,
    label: &str,
) -> Result<ServicePackages> {
    let mut out = ServicePackages::default();
    for step in &resolved.run_steps {
        let copies: Vec<&CopySources> = resolved
            .copy_sources
            .iter()
            .filter(|c| c.stage == step.stage && c.line < step.line && c.from.is_none())
            .collect();
        let image = resolved
            .base_image(df, step.stage)
            .map(|u| u.written.clone());
        for install in &step.installs {
            let mut step_files = BTreeMap::new();
            let installer =
                match installer_of(install, step.line, &copies, context, label, &mut step_files) {
                    Ok(installer) => installer,
                    Err(e) => {
                        out.warnings.push(format!("{e:#}"));
                        continue;
                    }
                };
            out.files.extend(step_files);
            if let Installer::Npm {
                tool,
                lock: Some(lock),
            } = &installer
            {
                out.warnings
                    .extend(corepack_warning(tool, lock, context, label, step.line));
            }
            out.needs.push(InstallNeed {
                line: step.line,
                image: image.clone(),
                installer,
            });
        }
    }
    Ok(out)
}

/// What one install command reads; `files` receives the contents of the files it reads.
fn installer_of(
    install: &PackageInstall,
    line: usize,
    copies: &[&CopySources],
    context: &dyn ContextFiles,
    label: &str,
    contents: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Installer> {
    Ok(match install {
        PackageInstall::Pip {
            requirement_files,
            constraint_files,
            packages,
            ..
        } => {
            let at = |written: &String| {
                locate(written, copies, context).ok_or_else(|| {
                    anyhow!(
                        "{label}:{line}: `{written}`, read by this install step, is not a file of \
                         the build context (offpack looks for the COPY source of that name, then \
                         for the path in the context); offpack carries no packages for this step"
                    )
                })
            };
            let requirement_files: Vec<String> =
                requirement_files.iter().map(at).collect::<Result<_>>()?;
            let constraint_files: Vec<String> =
                constraint_files.iter().map(at).collect::<Result<_>>()?;
            let mut files = Vec::new();
            for root in requirement_files.iter().chain(&constraint_files) {
                collect_includes(root, context, &mut files, contents)?;
            }
            let packages = packages
                .iter()
                .filter(|p| !is_local_path(p))
                .cloned()
                .collect();
            Installer::Pip {
                requirement_files,
                constraint_files,
                packages,
                files,
            }
        }
        PackageInstall::PythonLock { tool, .. } => {
            let (lock_name, manifest_name) = python_lock_files(tool);
            let lock = find_file(&[lock_name], copies, context);
            let manifest = find_file(&[manifest_name], copies, context);
            for path in lock.iter().chain(&manifest) {
                contents.insert(path.clone(), context.read(path)?);
            }
            Installer::PythonLock {
                tool: tool.clone(),
                lock,
                manifest,
            }
        }
        PackageInstall::Npm { tool, .. } => {
            let lock = find_lock(tool, copies, context);
            if let Some(lock) = &lock {
                contents.insert(lock.clone(), context.read(lock)?);
            }
            Installer::Npm {
                tool: tool.clone(),
                lock,
            }
        }
    })
}

/// Paths in the order read, and path → content.
pub type FilesRead = (Vec<String>, BTreeMap<String, Vec<u8>>);

/// A requirements file and every file it includes, with their contents (`bundle --packages`).
pub fn collect_requirement_files(context: &dyn ContextFiles, root: &str) -> Result<FilesRead> {
    let mut files = Vec::new();
    let mut contents = BTreeMap::new();
    collect_includes(root, context, &mut files, &mut contents)?;
    Ok((files, contents))
}

/// Adds `path` and what it includes (depth first, each file once) to `files` and `contents`.
fn collect_includes(
    path: &str,
    context: &dyn ContextFiles,
    files: &mut Vec<String>,
    contents: &mut BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    if files.iter().any(|f| f == path) {
        return Ok(());
    }
    files.push(path.to_string());
    let bytes = match contents.get(path) {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes = context.read(path)?;
            contents.insert(path.to_string(), bytes.clone());
            bytes
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{path} is not UTF-8 text"))?;
    let parsed = requirements::parse(path, &text)?;
    for entry in &parsed.entries {
        if let Entry::Include {
            path: included,
            line,
            ..
        } = entry
        {
            let joined = join_relative(path, included);
            if !context.is_file(&joined) {
                return Err(anyhow!(
                    "{path}:{line}: includes `{included}`, which is not a file of the build \
                     context ({joined})"
                ));
            }
            collect_includes(&joined, context, files, contents)?;
        }
    }
    Ok(())
}

/// The context file a path written in a `RUN` names.
fn locate(written: &str, copies: &[&CopySources], context: &dyn ContextFiles) -> Option<String> {
    let written = written.trim_start_matches("./");
    let name = written.rsplit('/').next().unwrap_or(written);
    // The source of a COPY of this file name, latest first: `COPY backend/req.txt .`.
    for copy in copies.iter().rev() {
        for source in copy.sources.iter().rev() {
            let source = normalize(source);
            if source.rsplit('/').next() == Some(name) && context.is_file(&source) {
                return Some(source);
            }
        }
    }
    // The written path, or a tail of it: `/app/requirements.txt` → `requirements.txt`.
    let parts: Vec<&str> = written.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len())
        .map(|skip| parts[skip..].join("/"))
        .find(|candidate| context.is_file(candidate))
}

/// The lock file an npm-compatible install reads: one copied before the step, else one at the
/// root of a directory copied before it, else one at the context root.
fn find_lock(tool: &str, copies: &[&CopySources], context: &dyn ContextFiles) -> Option<String> {
    let wanted: &[&str] = match tool {
        "yarn" => &["yarn.lock"],
        "pnpm" => &["pnpm-lock.yaml"],
        _ => &NPM_LOCKS[..2],
    };
    find_file(wanted, copies, context)
}

/// The first file named in `wanted` that a COPY before the step copies (by name, or at the root
/// of a copied directory), else one at the context root.
fn find_file(
    wanted: &[&str],
    copies: &[&CopySources],
    context: &dyn ContextFiles,
) -> Option<String> {
    for copy in copies.iter().rev() {
        for source in copy.sources.iter().rev() {
            let source = normalize(source);
            let name = source.rsplit('/').next().unwrap_or(&source);
            if wanted.contains(&name) && context.is_file(&source) {
                return Some(source);
            }
            for lock in wanted {
                let inside = join_dir(&source, lock);
                if context.is_file(&inside) {
                    return Some(inside);
                }
            }
        }
    }
    wanted
        .iter()
        .find(|lock| context.is_file(lock))
        .map(|lock| lock.to_string())
}

/// A warning when the `package.json` beside `lock` pins a package manager for corepack
/// (`"packageManager": "yarn@4.1.0"`): where corepack is enabled, the `yarn`/`pnpm` a step runs is
/// downloaded from the npm registry by corepack itself, at build time, which no rewritten lock
/// reaches. offpack does not carry package managers.
fn corepack_warning(
    tool: &str,
    lock: &str,
    context: &dyn ContextFiles,
    label: &str,
    line: usize,
) -> Option<String> {
    let manifest = join_relative(lock, "package.json");
    if !context.is_file(&manifest) {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&context.read(&manifest).ok()?).ok()?;
    let pinned = json.get("packageManager")?.as_str()?;
    let manager = pinned.split('@').next().unwrap_or_default();
    if !matches!(manager, "yarn" | "pnpm") || manager != tool {
        return None;
    }
    Some(format!(
        "{label}:{line}: {manifest} pins \"packageManager\": \"{pinned}\"; where corepack is          enabled in the image, corepack downloads {manager} from the npm registry during the          build, and offpack does not carry package managers: install {manager} in an earlier          step (`RUN npm install -g {}`), whose result the bundle carries",
        pinned.split('+').next().unwrap_or(pinned)
    ))
}

fn is_local_path(requirement: &str) -> bool {
    requirement == "."
        || requirement.starts_with("./")
        || requirement.starts_with("../")
        || requirement.starts_with('/')
        || requirement.starts_with("-e")
        || requirement.starts_with("file:")
}

/// `/`-separated, no `./`, no trailing `/`, `.` for the root.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

fn join_dir(dir: &str, name: &str) -> String {
    normalize(&format!("{dir}/{name}"))
}

/// `included` as pip reads it from the file `from`: relative to `from`'s directory.
pub(crate) fn join_relative(from: &str, included: &str) -> String {
    match from.rsplit_once('/') {
        Some((dir, _)) if !included.starts_with('/') => join_dir(dir, included),
        _ => normalize(included),
    }
}

/// One `RUN pip install -r requirements.txt` at `line` on `image`, reading `requirements`: the
/// fixture of the unit tests that plan from install steps.
#[cfg(test)]
pub(crate) fn one_pip_step(image: &str, line: usize, requirements: &str) -> ServicePackages {
    ServicePackages {
        needs: vec![InstallNeed {
            line,
            image: Some(image.into()),
            installer: Installer::Pip {
                requirement_files: vec!["requirements.txt".into()],
                constraint_files: Vec::new(),
                packages: Vec::new(),
                files: vec!["requirements.txt".into()],
            },
        }],
        files: [(
            "requirements.txt".to_string(),
            requirements.as_bytes().to_vec(),
        )]
        .into(),
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(BTreeMap<&'static str, &'static str>);

    impl ContextFiles for Files {
        fn is_file(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>> {
            self.0
                .get(path)
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| anyhow!("no {path}"))
        }
    }

    fn needs(dockerfile: &str, files: &[(&'static str, &'static str)]) -> ServicePackages {
        needs_at("Dockerfile", dockerfile, files)
    }

    /// The needs of `dockerfile`, named `path` in messages, in a context of `files`.
    fn needs_at(
        path: &str,
        dockerfile: &str,
        files: &[(&'static str, &'static str)],
    ) -> ServicePackages {
        let df = offpack_dockerfile::parse(dockerfile).unwrap();
        let args = BTreeMap::new();
        let resolved = offpack_dockerfile::resolve(
            &df,
            &offpack_dockerfile::ResolveOptions {
                target: None,
                build_args: &args,
                target_platform: "linux/amd64",
                build_platform: "linux/amd64",
            },
        )
        .unwrap();
        let context = Files(files.iter().copied().collect());
        find_install_needs(&df, &resolved, &context, path).unwrap()
    }

    #[test]
    fn a_package_manager_corepack_would_download_is_named() {
        let found = needs(
            "FROM node:18-slim\nWORKDIR /app\nCOPY package.json yarn.lock ./\n\
             RUN corepack enable && yarn install --frozen-lockfile\n",
            &[
                (
                    "package.json",
                    r#"{"name": "app", "packageManager": "yarn@4.1.0+sha512.abc"}"#,
                ),
                ("yarn.lock", "# yarn lockfile v1\n"),
            ],
        );
        assert_eq!(found.needs.len(), 1);
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        let warning = &found.warnings[0];
        assert!(
            warning.starts_with(
                "Dockerfile:4: package.json pins \"packageManager\": \"yarn@4.1.0+sha512.abc\""
            ) && warning.contains("npm install -g yarn@4.1.0`"),
            "{warning}"
        );
        // No pin, or a pin for another tool than the step runs: nothing to say.
        let plain = needs(
            "FROM node:18-slim\nCOPY package.json package-lock.json ./\nRUN npm ci\n",
            &[
                ("package.json", r#"{"packageManager": "yarn@4.1.0"}"#),
                ("package-lock.json", "{}"),
            ],
        );
        assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
    }

    #[test]
    fn a_requirements_file_and_its_includes_are_found_with_the_stage_image() {
        let found = needs(
            "FROM python:3.11-slim AS base\nWORKDIR /app\nFROM base\n\
             COPY backend/requirements/ ./req/\nCOPY backend/requirements/prod.txt .\n\
             RUN pip install -r prod.txt flask==3.0.0 .\n",
            &[
                (
                    "backend/requirements/prod.txt",
                    "-r base.txt\nredis==5.0.8\n",
                ),
                (
                    "backend/requirements/base.txt",
                    "-c ../constraints.txt\nbottle\n",
                ),
                ("backend/constraints.txt", "bottle==0.13.4\n"),
            ],
        );
        assert_eq!(found.needs.len(), 1);
        let need = &found.needs[0];
        assert_eq!(need.image.as_deref(), Some("python:3.11-slim"));
        assert_eq!(need.line, 6);
        let Installer::Pip {
            requirement_files,
            packages,
            files,
            ..
        } = &need.installer
        else {
            panic!("{need:?}")
        };
        assert_eq!(requirement_files, &["backend/requirements/prod.txt"]);
        assert_eq!(packages, &["flask==3.0.0"]);
        assert_eq!(
            files,
            &[
                "backend/requirements/prod.txt",
                "backend/requirements/base.txt",
                "backend/constraints.txt"
            ]
        );
        assert_eq!(found.files.len(), 3);
    }

    #[test]
    fn an_absolute_path_falls_back_to_its_tail_in_the_context() {
        let found = needs(
            "FROM python:3.11-slim\nCOPY . /app\nRUN pip install -r /app/requirements.txt\n",
            &[("requirements.txt", "bottle==0.13.4\n")],
        );
        assert!(
            matches!(&found.needs[0].installer, Installer::Pip { files, .. } if files == &["requirements.txt"])
        );
    }

    #[test]
    fn npm_ci_reads_the_lock_copied_before_it() {
        let found = needs(
            "FROM node:18-slim AS build\nWORKDIR /app\nCOPY frontend/package.json frontend/package-lock.json ./\n\
             RUN npm ci\nFROM node:18-slim\nCOPY --from=build /app /app\n",
            &[
                ("frontend/package.json", "{}"),
                ("frontend/package-lock.json", "{}"),
                ("package-lock.json", "{}"),
            ],
        );
        assert_eq!(
            found.needs[0].installer,
            Installer::Npm {
                tool: "npm".into(),
                lock: Some("frontend/package-lock.json".into())
            }
        );
        assert_eq!(found.needs[0].image.as_deref(), Some("node:18-slim"));
    }

    #[test]
    fn uv_sync_reads_the_lock_and_pyproject_copied_before_it() {
        let found = needs(
            "FROM python:3.11-slim\nWORKDIR /app\nCOPY app/pyproject.toml app/uv.lock ./\n\
             RUN uv sync --frozen --no-install-project\nCOPY app/ .\n",
            &[
                ("app/pyproject.toml", "[project]\n"),
                ("app/uv.lock", "version = 1\n"),
                ("uv.lock", "version = 1\n"),
            ],
        );
        assert_eq!(
            found.needs[0].installer,
            Installer::PythonLock {
                tool: "uv".into(),
                lock: Some("app/uv.lock".into()),
                manifest: Some("app/pyproject.toml".into()),
            }
        );
        assert_eq!(
            found.needs[0].files(),
            ["app/uv.lock", "app/pyproject.toml"]
        );
        assert_eq!(found.files.len(), 2);
        let found = needs(
            "FROM python:3.11-slim\nCOPY . /app\nRUN pipenv install --deploy --system\n",
            &[("Pipfile", ""), ("Pipfile.lock", "{}")],
        );
        assert_eq!(
            found.needs[0].installer,
            Installer::PythonLock {
                tool: "pipenv".into(),
                lock: Some("Pipfile.lock".into()),
                manifest: Some("Pipfile".into()),
            }
        );
    }

    #[test]
    fn a_step_whose_file_is_not_in_the_context_is_a_warning_naming_it() {
        let found = needs_at(
            "backend/Dockerfile",
            "FROM python:3\nRUN pip install -r nope.txt\n",
            &[],
        );
        assert!(found.needs.is_empty());
        assert!(
            found.warnings[0].starts_with("backend/Dockerfile:2: `nope.txt`"),
            "{:?}",
            found.warnings
        );
    }

    #[test]
    fn the_label_lists_changed_files() {
        let found = needs(
            "FROM python:3\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n",
            &[("requirements.txt", "bottle==0.13.4\n")],
        );
        let label = found.label();
        let baseline = parse_label(&label).unwrap();
        assert!(found.changed_since(&baseline).is_empty());
        let mut old = baseline.clone();
        old.insert("requirements.txt".into(), "sha256:00".into());
        assert_eq!(
            found.changed_since(&old).into_iter().collect::<Vec<_>>(),
            ["requirements.txt"]
        );
    }
}
