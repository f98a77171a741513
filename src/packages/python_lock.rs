//! The Python lock formats offpack carries, by the tool that installs from them (`uv sync` from
//! `uv.lock`; `pipenv install|sync` from `Pipfile.lock`; `poetry install` from `poetry.lock`). Each format's parsing
//! and rewriting lives in `offpack_packages::pip`; this is the one place that picks it, so the
//! bundle side, the rebuild side and `--packages-for` treat every format alike.

use std::collections::BTreeSet;

use anyhow::Result;
use offpack_packages::pip::lockfile::{LockedDistribution, LockedSource, requirements_for_pip};
use offpack_packages::pip::markers::MarkerEnvironment;
use offpack_packages::pip::pipfile_lock;
use offpack_packages::pip::poetry_lock;
use offpack_packages::pip::uv_lock::{self, BuiltWheel};

/// The tool that installs from a lock file of this name (`app/uv.lock` → `uv`).
pub fn tool_of_lock(path: &str) -> Option<&'static str> {
    match path.rsplit('/').next().unwrap_or(path) {
        "uv.lock" => Some("uv"),
        "Pipfile.lock" => Some("pipenv"),
        "poetry.lock" => Some("poetry"),
        _ => None,
    }
}

/// Why offpack does not carry this tool's lock yet; `None` when it does.
pub fn not_carried_yet(tool: &str) -> Option<String> {
    match tool {
        "uv" | "pipenv" | "poetry" => None,
        other => Some(format!(
            "offpack does not carry the packages of `{other}` lock files (it carries uv.lock, \
             Pipfile.lock and poetry.lock)"
        )),
    }
}

/// The distributions the lock pins; `None` for a format not carried yet.
pub fn parse(tool: &str, path: &str, text: &str) -> Result<Option<Vec<LockedDistribution>>> {
    Ok(match tool {
        "uv" => Some(uv_lock::parse(path, text)?),
        "pipenv" => Some(pipfile_lock::parse(path, text)?),
        "poetry" => Some(poetry_lock::parse(path, text)?),
        _ => None,
    })
}

/// Packages (normalized name, version) for which a carried wheel of the same version is served
/// even when the lock does not pin its hash, added to the lock offpack sends. For uv.lock, those
/// pinned with an sdist only: uv would build them behind the gap (with a build backend from the
/// index), so offpack serves the wheel it built from the sdist on the networked side. A
/// Pipfile.lock lists hashes without file names, so every index entry: pipenv has pip check the
/// hashes, and a built wheel's hash is added to the entry's. For poetry.lock, those whose files
/// hold no wheel: poetry installs only a file the lock lists, so the built wheel is added.
pub fn sdist_only(tool: &str, path: &str, text: &str) -> Result<BTreeSet<(String, String)>> {
    Ok(match tool {
        "uv" => uv_lock::sdist_only(path, text)?,
        "pipenv" => pipfile_lock::parse(path, text)?
            .into_iter()
            .filter(|d| d.source == LockedSource::Index)
            .map(|d| (d.normalized(), d.version))
            .collect(),
        "poetry" => poetry_lock::sdist_only(path, text)?,
        _ => BTreeSet::new(),
    })
}

/// What is known, without running the image, of the environment `tool` installs `text` into on
/// `platform`: the platform's markers, and for a Pipfile.lock the Python version it was made for
/// (its markers are mostly `python_version` ones, from each package's `Requires-Python`). A
/// marker this cannot decide is left to the tool.
pub fn marker_environment(tool: &str, text: &str, platform: &str) -> MarkerEnvironment {
    let python = match tool {
        "pipenv" => pipfile_lock::required_python_version(text),
        _ => None,
    };
    MarkerEnvironment::for_platform(platform, python.as_deref())
}

/// What offpack sends in place of a lock and, for poetry, of its project file.
#[derive(Debug)]
pub struct Rewritten {
    pub lock: String,
    /// The project file (`pyproject.toml`) rewritten too: poetry reads its sources there.
    pub manifest: Option<String>,
}

/// The lock with its carried files pointing at `base_url` (`carried(sha256 hex)` names a carried
/// file), and for a package pinned with an sdist only, the wheels built from it
/// (`built(normalized name, version)`); `None` for a format not carried yet. `manifest` is the
/// project file beside the lock (path, text), which poetry's rewrite needs.
pub fn rewrite_for_server(
    tool: &str,
    path: &str,
    text: &str,
    manifest: Option<(&str, &str)>,
    base_url: &str,
    carried: &dyn Fn(&str) -> Option<String>,
    built: &dyn Fn(&str, &str) -> Vec<BuiltWheel>,
) -> Result<Option<Rewritten>> {
    let simple = format!("{}/simple/", base_url.trim_end_matches('/'));
    let lock = match tool {
        "uv" => uv_lock::rewrite_for_server_with_built(path, text, base_url, carried, built)?,
        // pipenv reads the index from the lock's sources: the simple index of the server.
        "pipenv" => {
            pipfile_lock::rewrite_for_server_with_hashes(path, text, &simple, &|name, version| {
                built(name, version)
                    .into_iter()
                    .map(|wheel| wheel.sha256)
                    .collect()
            })?
        }
        // poetry reads its sources from pyproject.toml, whose hash the lock holds.
        "poetry" => {
            let Some((manifest_path, manifest_text)) = manifest else {
                anyhow::bail!(
                    "{path}: poetry installs it with the pyproject.toml beside it, which the build \
                     context does not hold"
                );
            };
            let project =
                poetry_lock::rewrite_pyproject_for_server(manifest_path, manifest_text, &simple)?;
            let lock =
                poetry_lock::rewrite_lock_for_server(path, text, manifest_text, &project, built)?;
            return Ok(Some(Rewritten {
                lock,
                manifest: Some(project),
            }));
        }
        _ => return Ok(None),
    };
    Ok(Some(Rewritten {
        lock,
        manifest: None,
    }))
}

/// What the networked side resolves for a lock: a hash-pinned requirements file of its index
/// distributions (pip then picks the image's wheels, `--no-deps`: the lock is complete), and
/// warnings naming what is not carried.
#[derive(Debug, Default)]
pub struct LockRequirements {
    /// `None` when the lock pins nothing offpack can fetch.
    pub requirements: Option<String>,
    pub warnings: Vec<String>,
}

/// The requirements and warnings for `path` (read by `tool`); `None` for a format not carried yet.
pub fn requirements(tool: &str, path: &str, text: &str) -> Result<Option<LockRequirements>> {
    let Some(locked) = parse(tool, path, text)? else {
        return Ok(None);
    };
    let mut out = LockRequirements::default();
    let mut fetch = Vec::new();
    for dist in locked {
        match &dist.source {
            LockedSource::Project => {}
            LockedSource::NotCarried(why) => out.warnings.push(format!(
                "{path}:{}: {}=={} comes from {why}; offpack carries packages from an index only, \
                 so `{tool}` behind the gap cannot install it",
                dist.line, dist.name, dist.version
            )),
            LockedSource::Index => fetch.push(dist),
        }
    }
    if !fetch.is_empty() {
        out.requirements = Some(requirements_for_pip(&fetch));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"version = 1

[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "bottle" }, { name = "docopt" }, { name = "tool" }]

[[package]]
name = "bottle"
version = "0.13.4"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/83/bottle-0.13.4-py2.py3-none-any.whl", hash = "sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e" },
]

[[package]]
name = "docopt"
version = "0.6.2"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/docopt-0.6.2.tar.gz", hash = "sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491" }

[[package]]
name = "tool"
version = "1.0"
source = { git = "https://example.invalid/tool.git#abc" }
"#;

    #[test]
    fn a_uv_lock_becomes_pinned_requirements_and_names_what_is_not_carried() {
        let got = requirements("uv", "app/uv.lock", LOCK).unwrap().unwrap();
        // docopt's sdist is built into a wheel there, served behind the gap in its place.
        assert_eq!(
            got.requirements.as_deref(),
            Some(
                "bottle==0.13.4 --hash=sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e\n\
                 docopt==0.6.2 --hash=sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491\n"
            )
        );
        assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
        assert!(
            got.warnings[0].starts_with("app/uv.lock:24: tool==1.0 comes from a git repository"),
            "{:?}",
            got.warnings
        );
        assert_eq!(
            sdist_only("uv", "app/uv.lock", LOCK)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [("docopt".to_string(), "0.6.2".to_string())]
        );
    }

    #[test]
    fn a_pipfile_lock_is_read_and_pointed_at_the_simple_index() {
        let lock = include_str!("../../tests/fixtures/packages/pipenv/Pipfile.lock");
        let got = requirements("pipenv", "Pipfile.lock", lock)
            .unwrap()
            .unwrap();
        let text = got.requirements.expect("pins");
        assert!(
            text.starts_with("bottle==0.13.4 ") && text.contains("\nsix==1.16.0 "),
            "{text}"
        );
        assert!(not_carried_yet("pipenv").is_none());
        assert!(not_carried_yet("poetry").is_none());
        assert!(not_carried_yet("pdm").is_some());
        let rewritten = rewrite_for_server(
            "pipenv",
            "Pipfile.lock",
            lock,
            None,
            "http://172.17.0.1:3149",
            &|_| None,
            &|_, _| Vec::new(),
        )
        .unwrap()
        .unwrap()
        .lock;
        assert!(
            rewritten.contains("\"url\": \"http://172.17.0.1:3149/simple/\""),
            "{rewritten}"
        );
        assert_eq!(tool_of_lock("a/uv.lock"), Some("uv"));
        assert_eq!(tool_of_lock("Pipfile.lock"), Some("pipenv"));
        assert_eq!(tool_of_lock("app/poetry.lock"), Some("poetry"));
        assert_eq!(tool_of_lock("requirements.txt"), None);
    }
}
