//! What a far-side rebuild must do so that the install steps that run again find their packages:
//! which package files to rewrite in the context it sends (docs/decisions/0085), and which
//! packages the store lacks. Pure: the store's list comes in, text goes out.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use offpack_bundle::Package;
use offpack_packages::npm::{self, NpmPackage, NpmSource};
use offpack_packages::pip::lockfile::LockedSource;
use offpack_packages::pip::uv_lock::BuiltWheel;
use offpack_packages::pip::{self, requirements::Entry};
use offpack_packages::request::{NpmRequestEntry, PythonRequest, RequestFile};

use super::needs::{InstallNeed, Installer, ServicePackages, join_relative};
use super::python_lock;

/// A package an install step needs that the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPackage {
    /// `pypi` or `npm`.
    pub ecosystem: &'static str,
    pub name: String,
    /// The version pinned (`None`: any version would do, and none is carried).
    pub version: Option<String>,
    /// The package file and line asking for it (`requirements.txt:3`).
    pub wanted_by: String,
    /// Why it cannot be served, when it is not just absent (a git dependency).
    pub reason: Option<String>,
}

impl std::fmt::Display for MissingPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (&self.version, self.ecosystem) {
            (Some(v), "pypi") => format!("{}=={v}", self.name),
            (Some(v), _) => format!("{}@{v}", self.name),
            (None, _) => self.name.clone(),
        };
        let ecosystem = if self.ecosystem == "pypi" {
            "Python"
        } else {
            "npm"
        };
        write!(f, "{ecosystem} package {what} ({})", self.wanted_by)?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

/// The outcome for one service.
#[derive(Debug, Clone, Default)]
pub struct ServingPlan {
    /// Context path → the bytes to send instead of the file's.
    pub overrides: BTreeMap<String, Vec<u8>>,
    pub missing: Vec<MissingPackage>,
    /// What the networked side needs to make the missing packages (`bundle --packages-for`).
    pub python_requests: Vec<PythonRequest>,
    pub npm_requests: Vec<NpmRequestEntry>,
}

impl ServingPlan {
    /// True when no install step needs the server.
    pub fn serves_nothing(&self) -> bool {
        self.overrides.is_empty()
    }
}

/// Where the build reaches offpack's package server, e.g. `http://172.17.0.1:3149`.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    pub host_port: String,
}

impl ServerUrl {
    pub fn base(&self) -> String {
        format!("http://{}", self.host_port)
    }
}

/// Plans the serving of `service`'s install steps whose files are in `changed`.
/// `image_ids` maps a need's image (as written) to its ID, for the request file.
pub fn plan_serving(
    service: &str,
    platform: &str,
    packages: &ServicePackages,
    changed: &BTreeSet<String>,
    store: &[Package],
    server: &ServerUrl,
    image_ids: &BTreeMap<String, String>,
) -> Result<ServingPlan> {
    let mut plan = ServingPlan::default();
    for need in &packages.needs {
        if !need.files().iter().any(|f| changed.contains(*f)) {
            continue;
        }
        match &need.installer {
            Installer::Pip {
                requirement_files,
                files,
                packages: positional,
                ..
            } => plan_pip(
                service,
                platform,
                need,
                requirement_files,
                files,
                positional,
                packages,
                changed,
                store,
                server,
                image_ids,
                &mut plan,
            )?,
            // Not carried (`bundle` said so): nothing to serve.
            Installer::Npm {
                lock: Some(lock), ..
            } if lock.ends_with("pnpm-lock.yaml") => {}
            Installer::Npm {
                lock: Some(lock), ..
            } => plan_npm(service, platform, lock, packages, store, server, &mut plan)?,
            Installer::Npm { lock: None, .. } => {}
            Installer::PythonLock {
                tool,
                lock: Some(lock),
                ..
            } => plan_python_lock(
                service, platform, need, tool, lock, packages, store, server, image_ids, &mut plan,
            )?,
            Installer::PythonLock { lock: None, .. } => {}
        }
    }
    Ok(plan)
}

/// A changed Python lock (or its project file): the lock is sent with every carried file's URL
/// pointing at the server; an index distribution none of whose files the store holds is missing.
#[allow(clippy::too_many_arguments)]
fn plan_python_lock(
    service: &str,
    platform: &str,
    need: &InstallNeed,
    tool: &str,
    lock: &str,
    packages: &ServicePackages,
    store: &[Package],
    server: &ServerUrl,
    image_ids: &BTreeMap<String, String>,
    plan: &mut ServingPlan,
) -> Result<()> {
    let text = text_of(packages, lock)?;
    // Not carried yet (`bundle` said so): nothing to serve.
    let Some(locked) = python_lock::parse(tool, lock, &text)? else {
        return Ok(());
    };
    let sdists = python_lock::sdist_only(tool, lock, &text)?;
    let environment = python_lock::marker_environment(tool, &text, platform);
    let carried: BTreeMap<&str, &str> = store
        .iter()
        .filter(|p| p.ecosystem == "pypi")
        .map(|p| (p.digest.hex(), p.filename.as_str()))
        .collect();
    let mut missing_here = Vec::new();
    for dist in &locked {
        let wanted_by = format!("{lock}:{}", dist.line);
        let reason = match &dist.source {
            LockedSource::Project => continue,
            LockedSource::NotCarried(why) => Some(format!(
                "from {why}; offpack carries packages from an index only"
            )),
            LockedSource::Index if dist.sha256.iter().any(|h| carried.contains_key(h.as_str())) => {
                continue;
            }
            // Served as the wheel the networked side built from it, added to the lock.
            LockedSource::Index
                if sdists.contains(&(dist.normalized(), dist.version.clone()))
                    && !built_wheels(store, &dist.normalized(), &dist.version).is_empty() =>
            {
                continue;
            }
            // Excluded from this image by its marker, or a marker only the tool can decide
            // (it then names the package itself).
            LockedSource::Index
                if dist
                    .marker
                    .as_deref()
                    .is_some_and(|m| pip::markers::evaluate(m, &environment) != Some(true)) =>
            {
                continue;
            }
            LockedSource::Index => None,
        };
        missing_here.push(MissingPackage {
            ecosystem: "pypi",
            name: dist.name.clone(),
            version: Some(dist.version.clone()),
            wanted_by,
            reason,
        });
    }
    let manifest = match &need.installer {
        Installer::PythonLock {
            manifest: Some(manifest),
            ..
        } => Some((manifest.as_str(), text_of(packages, manifest)?)),
        _ => None,
    };
    let rewritten = python_lock::rewrite_for_server(
        tool,
        lock,
        &text,
        manifest.as_ref().map(|(path, text)| (*path, text.as_str())),
        &server.base(),
        &|hex| carried.get(hex).map(|f| f.to_string()),
        &|name, version| built_wheels(store, name, version),
    )?;
    if let Some(rewritten) = rewritten {
        plan.overrides
            .insert(lock.to_string(), rewritten.lock.into_bytes());
        // poetry's sources are in the project file, sent rewritten beside the lock.
        if let (Some(text), Some((path, _))) = (rewritten.manifest, &manifest) {
            plan.overrides.insert(path.to_string(), text.into_bytes());
        }
    }
    // Only what a networked side can fetch is asked for: the lock itself, resolved there.
    if missing_here.iter().any(|m| m.reason.is_none()) {
        plan.python_requests.push(PythonRequest {
            service: service.to_string(),
            image: need.image.clone().unwrap_or_default(),
            image_id: need
                .image
                .as_ref()
                .and_then(|i| image_ids.get(i))
                .cloned()
                .unwrap_or_default(),
            platform: platform.to_string(),
            files: vec![RequestFile {
                path: lock.to_string(),
                content: text.clone(),
            }],
            requirement_files: vec![lock.to_string()],
            constraint_files: Vec::new(),
            packages: Vec::new(),
            missing: missing_here
                .iter()
                .filter(|m| m.reason.is_none())
                .map(|m| m.to_string())
                .collect(),
        });
    }
    plan.missing.extend(missing_here);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plan_pip(
    service: &str,
    platform: &str,
    need: &InstallNeed,
    requirement_files: &[String],
    files: &[String],
    positional: &[String],
    packages: &ServicePackages,
    changed: &BTreeSet<String>,
    store: &[Package],
    server: &ServerUrl,
    image_ids: &BTreeMap<String, String>,
    plan: &mut ServingPlan,
) -> Result<()> {
    let carried: Vec<&Package> = store.iter().filter(|p| p.ecosystem == "pypi").collect();
    let mut missing_here = Vec::new();
    // Files reached through `-r` (index options are read there); constraints files are not.
    let mut requirement_tree: BTreeSet<String> = BTreeSet::new();
    let mut extra_hashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in files {
        let text = text_of(packages, path)?;
        let parsed = pip::requirements::parse(path, &text)?;
        if requirement_files.contains(path) {
            requirement_tree.insert(path.clone());
        }
        for entry in &parsed.entries {
            match entry {
                Entry::Include {
                    constraint: false,
                    path: included,
                    ..
                } if requirement_tree.contains(path) => {
                    requirement_tree.insert(join_relative(path, included));
                }
                Entry::Requirement(req) if req.url.is_none() => {
                    let pinned = req.pinned_version().map(str::to_string);
                    let matching: Vec<&&Package> = carried
                        .iter()
                        .filter(|p| pip::names::normalize(&p.name) == req.normalized)
                        .filter(|p| {
                            pinned
                                .as_deref()
                                .is_none_or(|v| same_version(&p.version, v))
                        })
                        .collect();
                    if matching.is_empty() {
                        missing_here.push(MissingPackage {
                            ecosystem: "pypi",
                            name: req.name.clone(),
                            version: pinned,
                            wanted_by: format!("{path}:{}", req.line),
                            reason: None,
                        });
                    } else if !req.hashes.is_empty() {
                        let hashes: Vec<String> = matching
                            .iter()
                            .map(|p| p.digest.hex().to_string())
                            .filter(|hex| !req.hashes.iter().any(|h| h.ends_with(hex.as_str())))
                            .collect();
                        if !hashes.is_empty() {
                            extra_hashes
                                .entry(req.normalized.clone())
                                .or_default()
                                .extend(hashes);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for name in positional {
        let (bare, version) = match name.split_once("==") {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (name.as_str(), None),
        };
        let normalized = pip::names::normalize(bare.split('[').next().unwrap_or(bare));
        let found = carried.iter().any(|p| {
            pip::names::normalize(&p.name) == normalized
                && version
                    .as_deref()
                    .is_none_or(|v| same_version(&p.version, v))
        });
        if !found {
            missing_here.push(MissingPackage {
                ecosystem: "pypi",
                name: bare.to_string(),
                version,
                wanted_by: format!("the RUN at line {}", need.line),
                reason: None,
            });
        }
    }
    // Rewrite the changed files pip reads options from; when only a constraints file changed,
    // the first requirements file carries the index (its COPY runs again: the price of serving).
    let mut to_rewrite: Vec<&String> = requirement_tree
        .iter()
        .filter(|f| changed.contains(*f))
        .collect();
    if to_rewrite.is_empty()
        && let Some(first) = requirement_files.first()
    {
        to_rewrite.push(first);
    }
    let index_url = format!("{}/simple/", server.base());
    for path in to_rewrite {
        let text = text_of(packages, path)?;
        let rewritten = pip::requirements::rewrite_for_index(
            &text,
            &index_url,
            &server.host_port,
            &extra_hashes,
        );
        plan.overrides.insert(path.clone(), rewritten.into_bytes());
    }
    if !missing_here.is_empty() {
        plan.python_requests.push(PythonRequest {
            service: service.to_string(),
            image: need.image.clone().unwrap_or_default(),
            image_id: need
                .image
                .as_ref()
                .and_then(|i| image_ids.get(i))
                .cloned()
                .unwrap_or_default(),
            platform: platform.to_string(),
            files: files
                .iter()
                .map(|path| {
                    Ok(RequestFile {
                        path: path.clone(),
                        content: text_of(packages, path)?,
                    })
                })
                .collect::<Result<_>>()?,
            requirement_files: requirement_files.to_vec(),
            constraint_files: match &need.installer {
                Installer::Pip {
                    constraint_files, ..
                } => constraint_files.clone(),
                Installer::Npm { .. } | Installer::PythonLock { .. } => Vec::new(),
            },
            packages: positional.to_vec(),
            missing: missing_here.iter().map(|m| m.to_string()).collect(),
        });
        plan.missing.extend(missing_here);
    }
    Ok(())
}

fn plan_npm(
    service: &str,
    platform: &str,
    lock: &str,
    packages: &ServicePackages,
    store: &[Package],
    server: &ServerUrl,
    plan: &mut ServingPlan,
) -> Result<()> {
    let text = text_of(packages, lock)?;
    let entries = parse_lock(lock, &text)?;
    let target = npm::platform::NpmTarget::from_platform(platform, None);
    let mut urls = BTreeMap::new();
    for entry in entries {
        if entry.in_bundle || !entry.installs_on(&target) {
            continue;
        }
        let resolved = match &entry.source {
            NpmSource::Registry { resolved } | NpmSource::Remote { url: resolved } => resolved,
            NpmSource::Git { spec } => {
                plan.missing.push(MissingPackage {
                    ecosystem: "npm",
                    name: entry.name.clone(),
                    version: Some(entry.version.clone()),
                    wanted_by: lock.to_string(),
                    reason: Some(format!(
                        "a git dependency ({spec}); offpack carries registry tarballs only"
                    )),
                });
                continue;
            }
            // In the context already, or a workspace link.
            _ => continue,
        };
        let carried = store.iter().find(|p| {
            p.ecosystem == "npm"
                && p.name == entry.name
                && p.version == entry.version
                && integrity_agrees(p, &entry)
        });
        if carried.is_none() {
            plan.missing.push(MissingPackage {
                ecosystem: "npm",
                name: entry.name.clone(),
                version: Some(entry.version.clone()),
                wanted_by: lock.to_string(),
                reason: None,
            });
            plan.npm_requests.push(NpmRequestEntry {
                service: service.to_string(),
                name: entry.name.clone(),
                version: entry.version.clone(),
                resolved: resolved.clone(),
                integrity: entry.integrity.as_ref().map(|i| i.to_string()),
            });
            continue;
        }
        // yarn checks the `#sha1` fragment of its URL: it stays.
        let fragment = resolved
            .split_once('#')
            .map(|(_, f)| format!("#{f}"))
            .unwrap_or_default();
        urls.insert(
            resolved.clone(),
            format!(
                "{}{}{fragment}",
                server.base(),
                npm::registry::tarball_path(&entry.name, &entry.version)
            ),
        );
    }
    plan.overrides.insert(
        lock.to_string(),
        npm::rewrite::rewrite_resolved(&text, &urls).into_bytes(),
    );
    Ok(())
}

/// The carried wheels of a Python package version.
fn built_wheels(store: &[Package], normalized: &str, version: &str) -> Vec<BuiltWheel> {
    store
        .iter()
        .filter(|p| {
            p.ecosystem == "pypi"
                && p.filename.ends_with(".whl")
                && pip::names::normalize(&p.name) == normalized
                && same_version(&p.version, version)
        })
        .map(|p| BuiltWheel {
            sha256: p.digest.hex().to_string(),
            filename: p.filename.clone(),
        })
        .collect()
}

/// The lock's packages, by the lock's file name.
pub fn parse_lock(path: &str, text: &str) -> Result<Vec<NpmPackage>> {
    Ok(if path.ends_with("yarn.lock") {
        npm::lock::parse_yarn_lock(path, text)?
    } else {
        npm::lock::parse_package_lock(path, text)?
    })
}

/// A carried tarball matches a lock entry when they share a hash (or the lock has none).
fn integrity_agrees(carried: &Package, entry: &NpmPackage) -> bool {
    let (Some(lock), Some(stored)) = (&entry.integrity, &carried.integrity) else {
        return true;
    };
    let Some(stored) = npm::integrity::Integrity::parse(stored) else {
        return false;
    };
    // With no algorithm in common the two cannot be compared; the tarball was checked against
    // its own lock's integrity when it was bundled.
    let common: Vec<_> = lock
        .hashes()
        .iter()
        .filter(|h| stored.hashes().iter().any(|s| s.algorithm == h.algorithm))
        .collect();
    common.is_empty()
        || common
            .iter()
            .any(|h| stored.matches(&h.algorithm, &h.digest))
}

fn same_version(carried: &str, pinned: &str) -> bool {
    carried == pinned || carried.trim_end_matches(".0") == pinned.trim_end_matches(".0")
}

fn text_of(packages: &ServicePackages, path: &str) -> Result<String> {
    let bytes = packages
        .files
        .get(path)
        .ok_or_else(|| anyhow!("{path}: not read with the build's package files"))?;
    String::from_utf8(bytes.clone()).map_err(|_| anyhow!("{path} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpack_bundle::Digest;

    const SERVER: &str = "172.17.0.1:3149";

    fn server() -> ServerUrl {
        ServerUrl {
            host_port: SERVER.to_string(),
        }
    }

    fn carried(
        ecosystem: &str,
        name: &str,
        version: &str,
        filename: &str,
        integrity: Option<&str>,
    ) -> Package {
        let digest = Digest::of_bytes(filename.as_bytes());
        Package {
            ecosystem: ecosystem.into(),
            name: name.into(),
            version: version.into(),
            filename: filename.into(),
            digest,
            size: 1,
            services: vec!["api".into()],
            integrity: integrity.map(str::to_string),
            platform: None,
        }
    }

    fn pip_packages(requirements: &str) -> ServicePackages {
        crate::packages::needs::one_pip_step("python:3.11-slim", 4, requirements)
    }

    fn plan(packages: &ServicePackages, changed: &[&str], store: &[Package]) -> ServingPlan {
        let changed: BTreeSet<String> = changed.iter().map(|s| s.to_string()).collect();
        let ids = BTreeMap::from([("python:3.11-slim".to_string(), "sha256:ab".to_string())]);
        plan_serving(
            "api",
            "linux/amd64",
            packages,
            &changed,
            store,
            &server(),
            &ids,
        )
        .unwrap()
    }

    #[test]
    fn an_unchanged_file_is_left_alone() {
        let packages = pip_packages("bottle==0.13.4\n");
        let plan = plan(&packages, &[], &[]);
        assert!(plan.serves_nothing());
        assert!(plan.missing.is_empty());
    }

    #[test]
    fn a_changed_requirements_file_points_at_the_server_and_gets_the_carried_hashes() {
        let docopt = carried(
            "pypi",
            "docopt",
            "0.6.2",
            "docopt-0.6.2-py2.py3-none-any.whl",
            None,
        );
        let bottle = carried(
            "pypi",
            "Bottle",
            "0.13.4",
            "bottle-0.13.4-py2.py3-none-any.whl",
            None,
        );
        let text = "bottle==0.13.4\ndocopt==0.6.2 --hash=sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491\n";
        let packages = pip_packages(text);
        let plan = plan(&packages, &["requirements.txt"], &[docopt.clone(), bottle]);
        assert!(plan.missing.is_empty(), "{:?}", plan.missing);
        let sent = String::from_utf8(plan.overrides["requirements.txt"].clone()).unwrap();
        assert!(
            sent.contains(&format!("--index-url http://{SERVER}/simple/")),
            "{sent}"
        );
        assert!(sent.contains(&format!("--trusted-host {SERVER}")), "{sent}");
        assert!(
            sent.contains(&format!("--hash=sha256:{}", docopt.digest.hex())),
            "the wheel built from the pinned sdist is allowed too: {sent}"
        );
        assert!(sent.contains("bottle==0.13.4\n"), "{sent}");
    }

    #[test]
    fn a_package_the_store_lacks_is_named_with_its_file_and_line_and_requested() {
        let packages = pip_packages("# deps\nbottle==0.13.4\nidna==3.7\nsix\n");
        let bottle = carried(
            "pypi",
            "bottle",
            "0.13.4",
            "bottle-0.13.4-py2.py3-none-any.whl",
            None,
        );
        let plan = plan(&packages, &["requirements.txt"], &[bottle]);
        let named: Vec<String> = plan.missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            named,
            [
                "Python package idna==3.7 (requirements.txt:3)",
                "Python package six (requirements.txt:4)"
            ]
        );
        let request = &plan.python_requests[0];
        assert_eq!(request.image, "python:3.11-slim");
        assert_eq!(request.image_id, "sha256:ab");
        assert_eq!(request.requirement_files, ["requirements.txt"]);
        assert_eq!(
            request.files[0].content,
            "# deps\nbottle==0.13.4\nidna==3.7\nsix\n"
        );
    }

    const BOTTLE_WHEEL: &str = "045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e";

    fn uv_lock() -> String {
        format!(
            r#"version = 1

[[package]]
name = "app"
version = "0.1.0"
source = {{ virtual = "." }}
dependencies = [{{ name = "bottle" }}, {{ name = "six" }}, {{ name = "colorama", marker = "sys_platform == 'win32'" }}]

[[package]]
name = "bottle"
version = "0.13.4"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/83/bottle-0.13.4-py2.py3-none-any.whl", hash = "sha256:{BOTTLE_WHEEL}" }},
]

[[package]]
name = "colorama"
version = "0.4.6"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/colorama-0.4.6-py2.py3-none-any.whl", hash = "sha256:{}" }},
]

[[package]]
name = "six"
version = "1.17.0"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/six-1.17.0-py2.py3-none-any.whl", hash = "sha256:{}" }},
]
"#,
            "c".repeat(64),
            "5".repeat(64)
        )
    }

    fn uv_packages(lock: &str) -> ServicePackages {
        ServicePackages {
            needs: vec![InstallNeed {
                line: 5,
                image: Some("python:3.11-slim".into()),
                installer: Installer::PythonLock {
                    tool: "uv".into(),
                    lock: Some("uv.lock".into()),
                    manifest: Some("pyproject.toml".into()),
                },
            }],
            files: [
                ("uv.lock".to_string(), lock.as_bytes().to_vec()),
                ("pyproject.toml".to_string(), b"[project]\n".to_vec()),
            ]
            .into(),
            warnings: Vec::new(),
        }
    }

    fn bottle_wheel() -> Package {
        Package {
            digest: offpack_bundle::Digest::from_hex(BOTTLE_WHEEL).unwrap(),
            ..carried(
                "pypi",
                "bottle",
                "0.13.4",
                "bottle-0.13.4-py2.py3-none-any.whl",
                None,
            )
        }
    }

    #[test]
    fn a_changed_uv_project_gets_its_lock_pointing_at_the_server_and_names_what_is_missing() {
        let packages = uv_packages(&uv_lock());
        // Only the project file changed: the lock is still what is sent rewritten.
        let plan = plan(&packages, &["pyproject.toml"], &[bottle_wheel()]);
        let sent = String::from_utf8(plan.overrides["uv.lock"].clone()).unwrap();
        assert!(
            sent.contains(&format!(
                "url = \"http://{SERVER}/files/{BOTTLE_WHEEL}/bottle-0.13.4-py2.py3-none-any.whl\""
            )),
            "{sent}"
        );
        assert!(sent.contains("https://files.pythonhosted.org/packages/six-1.17.0"));
        let named: Vec<String> = plan.missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            named,
            ["Python package six==1.17.0 (uv.lock:26)"],
            "colorama's marker may exclude it: not named"
        );
        let request = &plan.python_requests[0];
        assert_eq!(request.requirement_files, ["uv.lock"]);
        assert_eq!(request.files[0].content, uv_lock());
        assert_eq!(request.image_id, "sha256:ab");
    }

    #[test]
    fn a_changed_pipfile_lock_names_what_its_markers_install_on_the_image() {
        let lock = format!(
            r#"{{
    "_meta": {{
        "requires": {{"python_version": "3.11"}},
        "sources": [{{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": true}}]
    }},
    "default": {{
        "bottle": {{"hashes": ["sha256:{BOTTLE_WHEEL}"], "version": "==0.13.4"}},
        "colorama": {{"hashes": ["sha256:{c}"], "markers": "sys_platform == 'win32'", "version": "==0.4.6"}},
        "idna": {{"hashes": ["sha256:{c}"], "markers": "python_version >= '3.5'", "version": "==3.7"}},
        "tomli": {{"hashes": ["sha256:{c}"], "markers": "python_version < '3.11'", "version": "==2.0.1"}},
        "zipp": {{"hashes": ["sha256:{c}"], "markers": "implementation_name == 'pypy'", "version": "==3.20.0"}}
    }},
    "develop": {{}}
}}
"#,
            c = "c".repeat(64)
        );
        let mut packages = uv_packages(&lock);
        packages.needs[0].installer = Installer::PythonLock {
            tool: "pipenv".into(),
            lock: Some("Pipfile.lock".into()),
            manifest: Some("Pipfile".into()),
        };
        packages.files = [
            ("Pipfile.lock".to_string(), lock.clone().into_bytes()),
            ("Pipfile".to_string(), Vec::new()),
        ]
        .into();
        let plan = plan(&packages, &["Pipfile.lock"], &[bottle_wheel()]);
        let sent = String::from_utf8(plan.overrides["Pipfile.lock"].clone()).unwrap();
        assert!(
            sent.contains(&format!("\"url\": \"http://{SERVER}/simple/\"")),
            "{sent}"
        );
        // The lock is for Python 3.11 on linux/amd64: idna's marker holds there, colorama's and
        // tomli's do not, and zipp's is left to pipenv.
        let named: Vec<String> = plan.missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(named, ["Python package idna==3.7 (Pipfile.lock:9)"]);
    }

    #[test]
    fn a_changed_poetry_project_sends_its_pyproject_with_offpacks_source_beside_the_lock() {
        let project = "[tool.poetry]\npackage-mode = false\n\n[tool.poetry.dependencies]\npython = \"^3.11\"\nbottle = \"0.13.4\"\nsix = \"1.17.0\"\n";
        let lock = format!(
            "[[package]]\nname = \"bottle\"\nversion = \"0.13.4\"\nfiles = [\n    {{file = \"bottle-0.13.4-py2.py3-none-any.whl\", hash = \"sha256:{BOTTLE_WHEEL}\"}},\n]\n\n[[package]]\nname = \"six\"\nversion = \"1.17.0\"\nfiles = [\n    {{file = \"six-1.17.0.tar.gz\", hash = \"sha256:{c}\"}},\n]\n\n[metadata]\nlock-version = \"2.0\"\ncontent-hash = \"{hash}\"\n",
            c = "c".repeat(64),
            // python3: sha256 of json.dumps of [tool.poetry]'s legacy keys, sort_keys=True.
            hash = "093350b36d0020888aa83073e0b7be5c6d7df9180a09f77dcc9dcdb5abd79dc6"
        );
        let mut packages = uv_packages(&lock);
        packages.needs[0].installer = Installer::PythonLock {
            tool: "poetry".into(),
            lock: Some("poetry.lock".into()),
            manifest: Some("pyproject.toml".into()),
        };
        packages.files = [
            ("poetry.lock".to_string(), lock.clone().into_bytes()),
            ("pyproject.toml".to_string(), project.as_bytes().to_vec()),
        ]
        .into();
        let plan = plan(&packages, &["pyproject.toml"], &[bottle_wheel()]);
        let sent_project = String::from_utf8(plan.overrides["pyproject.toml"].clone()).unwrap();
        assert!(
            sent_project.ends_with(&format!(
                "[[tool.poetry.source]]\nname = \"offpack\"\nurl = \"http://{SERVER}/simple/\"\npriority = \"primary\"\n"
            )),
            "{sent_project}"
        );
        let sent_lock = String::from_utf8(plan.overrides["poetry.lock"].clone()).unwrap();
        // The same, computed by python3 for the project with offpack's source.
        assert!(
            sent_lock.contains(
                "content-hash = \"221cdae62f975206dae1173fcb0f81579643e4d0ef44621f81310d8c0fde7888\""
            ),
            "{sent_lock}"
        );
        let named: Vec<String> = plan.missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(named, ["Python package six==1.17.0 (poetry.lock:9)"]);
        assert_eq!(plan.python_requests[0].requirement_files, ["poetry.lock"]);
    }

    fn npm_packages(lock: &str) -> ServicePackages {
        ServicePackages {
            needs: vec![InstallNeed {
                line: 4,
                image: Some("node:18-slim".into()),
                installer: Installer::Npm {
                    tool: "npm".into(),
                    lock: Some("package-lock.json".into()),
                },
            }],
            files: [("package-lock.json".to_string(), lock.as_bytes().to_vec())].into(),
            warnings: Vec::new(),
        }
    }

    const LEFT_INTEGRITY: &str = "sha512-HV1Cm0Q3ZrpCR93tkWOYiuYIgLxZXZFVG2VgK+MBWjUqZTundupbfx2aXarXuw5Ko5aMcjtJgbSs4vUGBS5v6g==";

    fn lock() -> String {
        format!(
            r#"{{
  "name": "web", "lockfileVersion": 3, "requires": true,
  "packages": {{
    "": {{ "name": "web" }},
    "node_modules/left": {{ "version": "1.0.0", "resolved": "https://registry.npmjs.org/left/-/left-1.0.0.tgz", "integrity": "{LEFT_INTEGRITY}" }},
    "node_modules/@s/native-darwin": {{ "version": "1.0.0", "resolved": "https://registry.npmjs.org/@s/native-darwin/-/native-darwin-1.0.0.tgz", "optional": true, "os": ["darwin"] }},
    "node_modules/from-git": {{ "version": "2.0.0", "resolved": "git+ssh://git@example.invalid/x.git#abc" }}
  }}
}}
"#
        )
    }

    #[test]
    fn a_changed_lock_gets_the_servers_urls_and_names_what_it_cannot_serve() {
        let left = carried(
            "npm",
            "left",
            "1.0.0",
            "left-1.0.0.tgz",
            Some(LEFT_INTEGRITY),
        );
        let packages = npm_packages(&lock());
        let plan = plan(&packages, &["package-lock.json"], &[left]);
        let sent = String::from_utf8(plan.overrides["package-lock.json"].clone()).unwrap();
        assert!(
            sent.contains(&format!("\"http://{SERVER}/left/-/left-1.0.0.tgz\"")),
            "{sent}"
        );
        assert!(
            sent.contains("https://registry.npmjs.org/@s/native-darwin/"),
            "another platform's package is left as it is: {sent}"
        );
        let named: Vec<String> = plan.missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(named.len(), 1, "{named:?}");
        assert!(
            named[0]
                .starts_with("npm package from-git@2.0.0 (package-lock.json): a git dependency"),
            "{named:?}"
        );
    }

    #[test]
    fn a_tarball_with_another_integrity_is_missing_not_served() {
        let other = carried(
            "npm",
            "left",
            "1.0.0",
            "left-1.0.0.tgz",
            Some(
                "sha512-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            ),
        );
        let packages = npm_packages(&lock());
        let plan = plan(&packages, &["package-lock.json"], &[other]);
        assert!(
            plan.missing
                .iter()
                .any(|m| m.name == "left" && m.reason.is_none()),
            "{:?}",
            plan.missing
        );
        assert_eq!(plan.npm_requests[0].name, "left");
        assert_eq!(
            plan.npm_requests[0].integrity.as_deref(),
            Some(LEFT_INTEGRITY)
        );
    }
}
