//! The packages a bundle carries: for each built service's install steps, the Python wheels
//! resolved in a container of the step's image (its interpreter and platform, sdists built into
//! wheels there) and the npm tarballs its lock file names, checked against their integrity; plus
//! those of the files given with `--packages`. Each file is stored once (`offpack.json`'s
//! `packages` lists it with the services that need it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::{BundleWriter, Package};
use offpack_packages::npm::{NpmSource, platform::NpmTarget};

use crate::engine::Engine;
use crate::fetch::cache::{FetchedPackage, PackageCache};
use crate::fetch::npm::{NpmFetch, fetch_tarballs};
use crate::fetch::pip::{PipJob, resolve_in_image};
use crate::packages::needs::{ContextDir, Installer, ServicePackages, collect_requirement_files};
use crate::packages::python_lock;
use crate::packages::serving::parse_lock;
use crate::plan::{Plan, build_order};
use crate::rebuild::packages::service_packages;
use crate::reporter::Reporter;
use offpack_compose::Project;

/// Parallel npm downloads.
const NPM_PARALLEL: usize = 8;

/// The install steps of one service, as `bundle` found them.
#[derive(Debug, Clone)]
pub struct ServiceNeeds {
    pub service: String,
    /// The platform its image is built for (`linux/amd64`).
    pub platform: String,
    pub packages: ServicePackages,
}

/// What to fetch, merged over the services: one pip resolution per distinct (image, files, args),
/// one download per tarball.
#[derive(Debug, Default)]
pub struct PackageWork {
    pub pip: Vec<(PipJob, Vec<String>)>,
    pub npm: Vec<(NpmFetch, Vec<String>)>,
    pub warnings: Vec<String>,
}

impl PackageWork {
    pub fn is_empty(&self) -> bool {
        self.pip.is_empty() && self.npm.is_empty()
    }

    fn add_pip(&mut self, job: PipJob, service: &str) {
        match self.pip.iter_mut().find(|(j, _)| same_pip_job(j, &job)) {
            Some((_, services)) => push_unique(services, service),
            None => self.pip.push((job, vec![service.to_string()])),
        }
    }

    fn add_npm(&mut self, fetch: NpmFetch, service: &str) {
        match self
            .npm
            .iter_mut()
            .find(|(f, _)| f.name == fetch.name && f.version == fetch.version && f.url == fetch.url)
        {
            Some((_, services)) => push_unique(services, service),
            None => self.npm.push((fetch, vec![service.to_string()])),
        }
    }
}

fn same_pip_job(a: &PipJob, b: &PipJob) -> bool {
    a.image == b.image
        && a.platform == b.platform
        && a.files == b.files
        && a.root_files == b.root_files
        && a.constraint_files == b.constraint_files
        && a.packages == b.packages
        && a.no_deps == b.no_deps
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|s| s == item) {
        list.push(item.to_string());
    }
}

/// The work the services' install steps and the `--packages` files ask for.
pub fn plan_package_work(needs: &[ServiceNeeds], extra: &[PathBuf]) -> Result<PackageWork> {
    let mut work = PackageWork::default();
    for service in needs {
        work.warnings.extend(
            service
                .packages
                .warnings
                .iter()
                .map(|w| format!("service {}: {w}", service.service)),
        );
        for need in &service.packages.needs {
            let label = format!(
                "service {}, the install step at line {}",
                service.service, need.line
            );
            match &need.installer {
                Installer::Pip {
                    requirement_files,
                    constraint_files,
                    packages,
                    files,
                } => {
                    let Some(image) = &need.image else {
                        work.warnings.push(format!(
                            "{label}: its stage starts FROM scratch; offpack has no interpreter to \
                             resolve its Python packages in"
                        ));
                        continue;
                    };
                    if requirement_files.is_empty()
                        && constraint_files.is_empty()
                        && packages.is_empty()
                    {
                        continue;
                    }
                    let files = files
                        .iter()
                        .map(|path| (path.clone(), service.packages.files[path].clone()))
                        .collect();
                    work.add_pip(
                        PipJob {
                            image: image.clone(),
                            platform: service.platform.clone(),
                            files,
                            root_files: requirement_files.clone(),
                            constraint_files: constraint_files.clone(),
                            packages: packages.clone(),
                            no_deps: false,
                            label,
                        },
                        &service.service,
                    );
                }
                Installer::PythonLock { tool, lock, .. } => {
                    let Some(image) = &need.image else {
                        work.warnings.push(format!(
                            "{label}: its stage starts FROM scratch; offpack has no interpreter to \
                             resolve its Python packages in"
                        ));
                        continue;
                    };
                    if let Some(why) = python_lock::not_carried_yet(tool) {
                        work.warnings.push(format!("{label}: {why}"));
                        continue;
                    }
                    let Some(lock) = lock else {
                        let (lock_name, _) = crate::packages::needs::python_lock_files(tool);
                        work.warnings.push(format!(
                            "{label}: `{tool}` installs without a {lock_name} in the build \
                             context; offpack carries the packages of a lock file only"
                        ));
                        continue;
                    };
                    let text = String::from_utf8(service.packages.files[lock].clone())
                        .map_err(|_| anyhow!("{lock} is not UTF-8 text"))?;
                    let (job, warnings) =
                        lock_job(tool, lock, &text, image, &service.platform, &label)?;
                    work.warnings.extend(warnings);
                    if let Some(job) = job {
                        work.add_pip(job, &service.service);
                    }
                }
                Installer::Npm { lock: None, tool } => work.warnings.push(format!(
                    "{label}: `{tool}` installs without a lock file in the build context; offpack \
                     carries npm packages from package-lock.json, npm-shrinkwrap.json or yarn.lock"
                )),
                Installer::Npm {
                    lock: Some(lock), ..
                } if lock.ends_with("pnpm-lock.yaml") => work.warnings.push(format!(
                    "{label}: pnpm installs from {lock}, which offpack does not read yet; it \
                     carries npm packages from package-lock.json, npm-shrinkwrap.json or yarn.lock"
                )),
                Installer::Npm {
                    lock: Some(lock), ..
                } => {
                    let text = String::from_utf8(service.packages.files[lock].clone())
                        .map_err(|_| anyhow!("{lock} is not UTF-8 text"))?;
                    add_lock(&mut work, lock, &text, &service.platform, &service.service)?;
                }
            }
        }
    }
    for file in extra {
        add_extra_file(&mut work, needs, file)?;
    }
    Ok(work)
}

/// The pip resolution of a Python lock file (`uv.lock`) in `image`: its index distributions,
/// hash-pinned, `--no-deps`; and warnings naming what is not carried. No job when the lock pins
/// nothing offpack can fetch.
pub fn lock_job(
    tool: &str,
    lock: &str,
    text: &str,
    image: &str,
    platform: &str,
    label: &str,
) -> Result<(Option<PipJob>, Vec<String>)> {
    let Some(found) = python_lock::requirements(tool, lock, text)? else {
        let why = python_lock::not_carried_yet(tool).unwrap_or_default();
        return Ok((None, vec![format!("{label}: {why}")]));
    };
    let Some(requirements) = found.requirements else {
        return Ok((None, found.warnings));
    };
    // Beside the lock, under a name of its own: the container sees only this file.
    let file = format!("{lock}.requirements.txt");
    let job = PipJob {
        image: image.to_string(),
        platform: platform.to_string(),
        files: vec![(file.clone(), requirements.into_bytes())],
        root_files: vec![file],
        constraint_files: Vec::new(),
        packages: Vec::new(),
        no_deps: true,
        label: label.to_string(),
    };
    Ok((Some(job), found.warnings))
}

/// The tarballs of a lock file that install on `platform`.
fn add_lock(
    work: &mut PackageWork,
    label: &str,
    text: &str,
    platform: &str,
    service: &str,
) -> Result<()> {
    let target = NpmTarget::from_platform(platform, None);
    for entry in parse_lock(label, text)? {
        if entry.in_bundle || !entry.installs_on(&target) {
            continue;
        }
        let url = match &entry.source {
            NpmSource::Registry { resolved } => resolved.clone(),
            NpmSource::Remote { url } => url.clone(),
            NpmSource::Git { spec } => {
                work.warnings.push(format!(
                    "{label}: {}@{} is a git dependency ({spec}); offpack carries registry \
                     tarballs only, so `npm ci` behind the gap cannot install it",
                    entry.name, entry.version
                ));
                continue;
            }
            NpmSource::Unknown => {
                work.warnings.push(format!(
                    "{label}: {}@{} has no `resolved` URL in the lock file; offpack cannot carry \
                     it (run `npm install` once with a current npm to complete the lock)",
                    entry.name, entry.version
                ));
                continue;
            }
            // In the build context, or a workspace link: nothing to fetch.
            NpmSource::File { .. } | NpmSource::Link { .. } => continue,
        };
        if entry.integrity.is_none() {
            work.warnings.push(format!(
                "{label}: {}@{} has no integrity in the lock file; offpack carries it unchecked",
                entry.name, entry.version
            ));
        }
        work.add_npm(
            NpmFetch {
                name: entry.name.clone(),
                version: entry.version.clone(),
                url,
                integrity: entry.integrity.as_ref().map(|i| i.to_string()),
            },
            service,
        );
    }
    Ok(())
}

/// A `--packages` file: a lock file's tarballs, or a requirements file resolved in the image of
/// every service step that installs Python packages.
fn add_extra_file(work: &mut PackageWork, needs: &[ServiceNeeds], file: &Path) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = offpack_fs::read_to_string(file, offpack_fs::PACKAGE_FILE)?;
    let label = file.display().to_string();
    if matches!(
        name.as_str(),
        "package-lock.json" | "npm-shrinkwrap.json" | "yarn.lock"
    ) {
        let npm_services: Vec<&ServiceNeeds> = needs
            .iter()
            .filter(|s| {
                s.packages
                    .needs
                    .iter()
                    .any(|n| matches!(n.installer, Installer::Npm { .. }))
            })
            .collect();
        let platform = needs
            .first()
            .map(|s| s.platform.clone())
            .unwrap_or_else(|| crate::plan::DEFAULT_PLATFORM.to_string());
        let service = npm_services
            .first()
            .map(|s| s.service.as_str())
            .unwrap_or("");
        return add_lock(work, &label, &text, &platform, service);
    }
    // Resolved once per (image, platform) a Python install step runs on.
    let mut targets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for service in needs {
        for need in &service.packages.needs {
            if let (Installer::Pip { .. } | Installer::PythonLock { .. }, Some(image)) =
                (&need.installer, &need.image)
            {
                let services = targets
                    .entry((image.clone(), service.platform.clone()))
                    .or_default();
                push_unique(services, &service.service);
            }
        }
    }
    if targets.is_empty() {
        bail!(
            "--packages {label}: no service of the project installs Python packages, so \
             offpack has no image to resolve this file in"
        );
    }
    if let Some(tool) = python_lock::tool_of_lock(&name) {
        for ((image, platform), services) in targets {
            let (job, warnings) = lock_job(
                tool,
                &name,
                &text,
                &image,
                &platform,
                &format!("--packages {label}"),
            )?;
            work.warnings.extend(warnings);
            if let Some(job) = job {
                for service in &services {
                    work.add_pip(job.clone(), service);
                }
            }
        }
        return Ok(());
    }
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (files, contents) = collect_requirement_files(&ContextDir(dir), &name)
        .with_context(|| format!("reading --packages {label}"))?;
    for ((image, platform), services) in targets {
        let job = PipJob {
            image,
            platform,
            files: files
                .iter()
                .map(|f| (f.clone(), contents[f].clone()))
                .collect(),
            root_files: vec![name.clone()],
            constraint_files: Vec::new(),
            packages: Vec::new(),
            no_deps: false,
            label: format!("--packages {label}"),
        };
        for service in &services {
            work.add_pip(job.clone(), service);
        }
    }
    Ok(())
}

/// The install steps of every built service of `plan`.
pub fn service_needs(project: &Project, plan: &Plan) -> Result<Vec<ServiceNeeds>> {
    let mut needs = Vec::new();
    for service_plan in build_order(plan)? {
        let service = &project.services[&service_plan.name];
        needs.push(ServiceNeeds {
            service: service_plan.name.clone(),
            platform: service_plan
                .platforms
                .first()
                .cloned()
                .unwrap_or_else(|| crate::plan::DEFAULT_PLATFORM.to_string()),
            packages: service_packages(service, service_plan)?,
        });
    }
    Ok(needs)
}

/// Downloads the npm tarballs `work` asks for (none the cache has), checked against their
/// integrity, with the services that need each.
pub fn fetch_npm_work(work: &PackageWork, reporter: &dyn Reporter) -> Result<Vec<FetchedPackage>> {
    if work.npm.is_empty() {
        return Ok(Vec::new());
    }
    let cache = PackageCache::open_default()?;
    let list: Vec<NpmFetch> = work.npm.iter().map(|(f, _)| f.clone()).collect();
    let task = reporter.start(&format!("npm: {} tarballs", list.len()), None);
    let results = fetch_tarballs(&list, &cache, NPM_PARALLEL, reporter)?;
    reporter.finish(task, "each checked against its lock file's integrity");
    Ok(results
        .into_iter()
        .zip(&work.npm)
        .map(|(mut package, (_, services))| {
            package.package.services = services.clone();
            package
        })
        .collect())
}

/// Resolves the Python requirements `work` asks for, each in a container of its image (none the
/// cache has resolved with the same inputs), with the services that need each wheel.
pub async fn fetch_pip_work(
    engine: &Engine,
    work: &PackageWork,
    reporter: &dyn Reporter,
) -> Result<Vec<FetchedPackage>> {
    if work.pip.is_empty() {
        return Ok(Vec::new());
    }
    let cache = PackageCache::open_default()?;
    let mut fetched = Vec::new();
    for (job, services) in &work.pip {
        for mut package in resolve_in_image(engine, job, &cache, reporter).await? {
            package.package.services = services.clone();
            fetched.push(package);
        }
    }
    Ok(fetched)
}

/// Each file once (by digest and file name), with the union of the services that need it, in a
/// stable order.
pub fn merge_fetched(all: Vec<FetchedPackage>) -> Vec<FetchedPackage> {
    let mut merged: Vec<FetchedPackage> = Vec::new();
    for package in all {
        match merged.iter_mut().find(|f| {
            f.package.digest == package.package.digest
                && f.package.filename == package.package.filename
        }) {
            Some(existing) => {
                for s in &package.package.services {
                    push_unique(&mut existing.package.services, s);
                }
            }
            None => merged.push(package),
        }
    }
    for package in &mut merged {
        package.package.services.sort();
    }
    merged.sort_by(|a, b| {
        let key = |p: &FetchedPackage| {
            (
                p.package.ecosystem.clone(),
                p.package.name.to_lowercase(),
                p.package.version.clone(),
                p.package.filename.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    merged
}

/// Adds the fetched files to the bundle (each blob once); returns the manifest entries.
pub fn add_packages(writer: &mut BundleWriter, fetched: &[FetchedPackage]) -> Result<Vec<Package>> {
    let mut entries = Vec::new();
    for package in fetched {
        let file = fs_err::File::open(&package.path)?;
        writer
            .add_blob_with_digest(&package.package.digest, package.package.size, file)
            .with_context(|| {
                format!(
                    "adding {} {} ({}) to the bundle",
                    package.package.name, package.package.version, package.package.filename
                )
            })?;
        entries.push(package.package.clone());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pip_service(service: &str, image: &str, requirements: &str) -> ServiceNeeds {
        ServiceNeeds {
            service: service.into(),
            platform: "linux/amd64".into(),
            packages: crate::packages::needs::one_pip_step(image, 3, requirements),
        }
    }

    #[test]
    fn equal_resolutions_are_one_job_for_every_service_that_needs_them() {
        let needs = [
            pip_service("api", "python:3.11-slim", "bottle==0.13.4\n"),
            pip_service("worker", "python:3.11-slim", "bottle==0.13.4\n"),
            pip_service("legacy", "python:3.9-slim", "bottle==0.13.4\n"),
        ];
        let work = plan_package_work(&needs, &[]).unwrap();
        let jobs: Vec<(&str, &[String])> = work
            .pip
            .iter()
            .map(|(job, services)| (job.image.as_str(), services.as_slice()))
            .collect();
        assert_eq!(
            jobs,
            [
                (
                    "python:3.11-slim",
                    &["api".to_string(), "worker".into()][..]
                ),
                ("python:3.9-slim", &["legacy".to_string()][..]),
            ]
        );
    }

    #[test]
    fn a_planned_requirements_file_is_resolved_in_each_pip_image() {
        let dir = tempfile::tempdir().unwrap();
        let planned = dir.path().join("next.txt");
        fs_err::write(&planned, "-r base.txt\nsix==1.16.0\n").unwrap();
        fs_err::write(dir.path().join("base.txt"), "idna==3.7\n").unwrap();
        let needs = [
            pip_service("api", "python:3.11-slim", "bottle\n"),
            pip_service("legacy", "python:3.9-slim", "bottle\n"),
        ];
        let work = plan_package_work(&needs, &[planned]).unwrap();
        let planned_jobs: Vec<&PipJob> = work
            .pip
            .iter()
            .map(|(job, _)| job)
            .filter(|job| job.root_files == ["next.txt"])
            .collect();
        assert_eq!(planned_jobs.len(), 2, "{:?}", work.pip);
        let files: Vec<&str> = planned_jobs[0]
            .files
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(
            files,
            ["next.txt", "base.txt"],
            "its includes travel with it"
        );
    }

    const UV_LOCK: &str = r#"
[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "bottle" }]

[[package]]
name = "bottle"
version = "0.13.4"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://files.pythonhosted.org/b/bottle-0.13.4-py2.py3-none-any.whl", hash = "sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e" }]
"#;

    const PIPFILE_LOCK: &str = include_str!("../../../tests/fixtures/packages/pipenv/Pipfile.lock");

    const POETRY_LOCK: &str = r#"
[[package]]
name = "bottle"
version = "0.13.4"
files = [{file = "bottle-0.13.4-py2.py3-none-any.whl", hash = "sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e"}]
"#;

    fn uv_service(service: &str, tool: &str) -> ServiceNeeds {
        let (lock, manifest) = crate::packages::needs::python_lock_files(tool);
        let content = match tool {
            "pipenv" => PIPFILE_LOCK,
            "poetry" => POETRY_LOCK,
            _ => UV_LOCK,
        };
        ServiceNeeds {
            service: service.into(),
            platform: "linux/amd64".into(),
            packages: ServicePackages {
                needs: vec![crate::packages::needs::InstallNeed {
                    line: 4,
                    image: Some("python:3.11-slim".into()),
                    installer: Installer::PythonLock {
                        tool: tool.into(),
                        lock: Some(lock.into()),
                        manifest: Some(manifest.into()),
                    },
                }],
                files: [
                    (lock.to_string(), content.as_bytes().to_vec()),
                    (manifest.to_string(), Vec::new()),
                ]
                .into(),
                warnings: Vec::new(),
            },
        }
    }

    #[test]
    fn a_uv_lock_is_one_pinned_no_deps_resolution_and_a_planned_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let planned = dir.path().join("uv.lock");
        fs_err::write(&planned, UV_LOCK.replace("0.13.4", "0.13.3")).unwrap();
        let work = plan_package_work(
            &[
                uv_service("api", "uv"),
                uv_service("old", "pipenv"),
                uv_service("legacy", "poetry"),
            ],
            &[planned],
        )
        .unwrap();
        assert_eq!(work.pip.len(), 4, "{:?}", work.pip);
        let (job, services) = &work.pip[0];
        assert!(job.no_deps);
        assert_eq!(services, &["api"]);
        assert_eq!(job.root_files, ["uv.lock.requirements.txt"]);
        assert!(
            String::from_utf8_lossy(&job.files[0].1).starts_with("bottle==0.13.4 --hash=sha256:"),
            "{:?}",
            job.files
        );
        // A Pipfile.lock the same way: its pins, hash-checked, no dependencies.
        let (job, services) = &work.pip[1];
        assert!(job.no_deps);
        assert_eq!(services, &["old"]);
        let pinned = String::from_utf8_lossy(&job.files[0].1).to_string();
        assert!(
            pinned.starts_with("bottle==0.13.4 --hash=sha256:")
                && pinned.contains("\nsix==1.16.0 "),
            "{pinned}"
        );
        // A poetry.lock too: its files' hashes.
        let (job, services) = &work.pip[2];
        assert!(job.no_deps);
        assert_eq!(services, &["legacy"]);
        assert_eq!(
            String::from_utf8_lossy(&job.files[0].1),
            "bottle==0.13.4 --hash=sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e\n"
        );
        assert!(String::from_utf8_lossy(&work.pip[3].0.files[0].1).starts_with("bottle==0.13.3"));
        assert!(work.warnings.is_empty(), "{:?}", work.warnings);
    }

    #[test]
    fn a_planned_requirements_file_without_a_pip_step_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let planned = dir.path().join("requirements.txt");
        fs_err::write(&planned, "six\n").unwrap();
        let err = plan_package_work(&[], &[planned]).unwrap_err();
        assert!(
            err.to_string()
                .contains("no service of the project installs Python packages"),
            "{err}"
        );
    }
}
