//! `uv.lock`, the lock file `uv sync` installs from: every `[[package]]` with its source, its
//! files (`sdist`, `wheels`, each with a `url` and a `hash`) and its dependency edges.
//!
//! [`parse`] turns it into [`LockedDistribution`]s. uv writes markers on the edges
//! (`dependencies = [{ name = "x", marker = "sys_platform == 'win32'" }]`), not on the packages,
//! so a package's marker is the OR, over its parents, of the parent's marker AND the edge's,
//! starting from the project's own packages (always installed). A package in a dependency cycle,
//! or one no root reaches, counts as always installed: the list may be a superset of what
//! `uv sync` installs, never a subset. Optional and dev dependencies are followed too.
//!
//! [`rewrite_for_server`] points the `url` of every carried file at offpack's server; it edits
//! the text at the spans the TOML parser reports, so every other byte uv wrote stays.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use crate::PackageError;
use crate::pip::lockfile::{LockedDistribution, LockedSource, line_of, sha256_hex};
use crate::pip::names::normalize;

/// A marker longer than this counts as "always": the lock is a superset, and pip would only
/// spend time evaluating a long OR of ANDs that a deep graph can build.
const MARKER_LIMIT: usize = 2000;

#[derive(Deserialize)]
struct LockDoc {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: Spanned<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    source: Option<toml::Table>,
    #[serde(default)]
    sdist: Option<Spanned<LockFile>>,
    /// `None` when the package has no `wheels` key (an sdist-only package).
    #[serde(default)]
    wheels: Option<Vec<LockFile>>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
    #[serde(default, rename = "optional-dependencies")]
    optional_dependencies: BTreeMap<String, Vec<Dependency>>,
    #[serde(default, rename = "dev-dependencies")]
    dev_dependencies: BTreeMap<String, Vec<Dependency>>,
}

#[derive(Deserialize)]
struct LockFile {
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    marker: Option<String>,
}

/// The distributions `text` (a `uv.lock`, labelled `path` in errors) pins, in the lock's order.
pub fn parse(path: &str, text: &str) -> Result<Vec<LockedDistribution>, PackageError> {
    let doc = read(path, text)?;
    check(path, text, &doc)?;
    let sources: Vec<LockedSource> = doc.package.iter().map(source_of).collect();
    let markers = markers(&doc.package, &sources);
    Ok(doc
        .package
        .iter()
        .zip(sources)
        .zip(markers)
        .map(|((package, source), marker)| LockedDistribution {
            name: package.name.get_ref().clone(),
            version: package.version.clone().unwrap_or_default(),
            sha256: files_of(package)
                .filter_map(|f| f.hash.as_deref().and_then(sha256_hex))
                .map(str::to_string)
                .collect(),
            marker,
            line: line_of(text, package.name.span().start),
            source,
        })
        .collect())
}

/// The packages (normalized name, version) the lock pins with an sdist and no wheel. uv would
/// build them behind the gap, with a build backend from the index; offpack serves the wheel it
/// built from the sdist instead, by adding it to the lock ([`rewrite_for_server_with_built`]).
pub fn sdist_only(path: &str, text: &str) -> Result<BTreeSet<(String, String)>, PackageError> {
    let doc = read(path, text)?;
    Ok(doc
        .package
        .iter()
        .filter(|p| is_sdist_only(p))
        .map(|p| {
            (
                normalize(p.name.get_ref()),
                p.version.clone().unwrap_or_default(),
            )
        })
        .collect())
}

/// A wheel offpack carries that was built from a package's sdist on the networked side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltWheel {
    /// SHA-256 hex digest of the wheel.
    pub sha256: String,
    /// The wheel's file name.
    pub filename: String,
}

fn is_sdist_only(package: &LockPackage) -> bool {
    package.wheels.is_none() && package.sdist.is_some()
}

/// `text` with the `url` of every `sdist` and wheel whose `hash = "sha256:HEX"` is carried
/// (`carried(HEX)` gives the carried file's name) replaced by `{base_url}/files/HEX/{name}`;
/// nothing else changes.
pub fn rewrite_for_server(
    path: &str,
    text: &str,
    base_url: &str,
    carried: &dyn Fn(&str) -> Option<String>,
) -> Result<String, PackageError> {
    rewrite_for_server_with_built(path, text, base_url, carried, &|_, _| Vec::new())
}

/// [`rewrite_for_server`], and for each sdist-only package a `wheels` line after its `sdist`
/// listing the wheels built from it that offpack carries (`built(normalized name, version)`):
/// uv installs a wheel the lock lists, with that wheel's
/// own hash, where it would otherwise build the sdist (measured with uv 0.13.9, `--frozen` and
/// `--locked` alike).
pub fn rewrite_for_server_with_built(
    path: &str,
    text: &str,
    base_url: &str,
    carried: &dyn Fn(&str) -> Option<String>,
    built: &dyn Fn(&str, &str) -> Vec<BuiltWheel>,
) -> Result<String, PackageError> {
    let doc = read(path, text)?;
    let url_of = |hex: &str, filename: &str| {
        format!(
            "{}/files/{hex}/{}",
            base_url.trim_end_matches('/'),
            crate::pip::index::percent_encode_segment(filename)
        )
    };
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for package in &doc.package {
        if is_sdist_only(package)
            && let Some(sdist) = &package.sdist
            // Only after an inline table: a line added after a `[package.sdist]` table would
            // land in it. uv writes inline tables.
            && text.get(sdist.span().start..).is_some_and(|t| t.starts_with('{'))
        {
            let wheels = built(
                &normalize(package.name.get_ref()),
                package.version.as_deref().unwrap_or_default(),
            );
            if !wheels.is_empty() {
                let at = text[sdist.span().end..]
                    .find('\n')
                    .map_or(text.len(), |i| sdist.span().end + i + 1);
                let mut lines = String::new();
                if !text[..at].ends_with('\n') {
                    lines.push('\n');
                }
                lines.push_str("wheels = [\n");
                for wheel in &wheels {
                    lines.push_str(&format!(
                        "    {{ url = {}, hash = {} }},\n",
                        basic_string(&url_of(&wheel.sha256, &wheel.filename)),
                        basic_string(&format!("sha256:{}", wheel.sha256))
                    ));
                }
                lines.push_str("]\n");
                edits.push((at..at, lines));
            }
        }
        for file in files_of(package) {
            let (Some(url), Some(hex)) = (&file.url, file.hash.as_deref().and_then(sha256_hex))
            else {
                continue;
            };
            let Some(filename) = carried(hex) else {
                continue;
            };
            edits.push((url.span(), basic_string(&url_of(hex, &filename))));
        }
    }
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (span, replacement) in edits {
        // Spans come from the parser and never overlap; a span outside the text is skipped.
        let (Some(before), true) = (text.get(copied..span.start), span.end <= text.len()) else {
            continue;
        };
        out.push_str(before);
        out.push_str(&replacement);
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// Names, versions and markers that go into a requirements file are what PEP 508 allows there.
fn check(path: &str, text: &str, doc: &LockDoc) -> Result<(), PackageError> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let is_version = |v: &str| {
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+!*".contains(&b))
    };
    // A word starting with `-` would read as an option of the requirements line.
    let is_marker = |m: &str| {
        !m.contains(|c: char| c.is_control() || c == '#' || c == '\\')
            && !m.split_whitespace().any(|w| w.starts_with('-'))
    };
    for package in &doc.package {
        let at = |message: String| {
            PackageError::at(path, line_of(text, package.name.span().start), message)
        };
        let name = package.name.get_ref();
        if !is_name(name) {
            return Err(at(format!("{name:?} is not a package name")));
        }
        match &package.version {
            Some(version) if !is_version(version) || version.is_empty() => {
                return Err(at(format!("{name}: {version:?} is not a version")));
            }
            None if matches!(source_of(package), LockedSource::Index) => {
                return Err(at(format!(
                    "{name}: a package from an index has no version"
                )));
            }
            _ => {}
        }
        let deps = package
            .dependencies
            .iter()
            .chain(package.optional_dependencies.values().flatten())
            .chain(package.dev_dependencies.values().flatten());
        for dep in deps {
            if let Some(marker) = &dep.marker
                && !is_marker(marker)
            {
                return Err(at(format!(
                    "{name}: the marker {marker:?} of its dependency {} is not a PEP 508 marker",
                    dep.name
                )));
            }
        }
    }
    Ok(())
}

fn read(path: &str, text: &str) -> Result<LockDoc, PackageError> {
    toml::from_str::<LockDoc>(text).map_err(|e| {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => PackageError::at(path, line_of(text, span.start), message),
            None => PackageError::file(path, message),
        }
    })
}

fn files_of(package: &LockPackage) -> impl Iterator<Item = &LockFile> {
    package
        .sdist
        .iter()
        .map(|s| s.get_ref())
        .chain(package.wheels.iter().flatten())
}

fn source_of(package: &LockPackage) -> LockedSource {
    let Some(source) = &package.source else {
        // uv writes a source for every package; one without is the project as older locks wrote it.
        return LockedSource::Project;
    };
    let value = |key: &str| {
        source.get(key).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{v:?}"))
        })
    };
    if source.contains_key("registry") {
        LockedSource::Index
    } else if source.contains_key("editable")
        || source.contains_key("virtual")
        || source.contains_key("directory")
    {
        LockedSource::Project
    } else if let Some(url) = value("git") {
        LockedSource::NotCarried(format!("a git repository ({url})"))
    } else if let Some(url) = value("url") {
        LockedSource::NotCarried(format!("a direct URL ({url})"))
    } else if let Some(path) = value("path") {
        LockedSource::NotCarried(format!("a local file ({path})"))
    } else {
        let keys: Vec<&str> = source.keys().map(String::as_str).collect();
        LockedSource::NotCarried(format!("a source uv.lock names {{{}}}", keys.join(", ")))
    }
}

/// Each package's marker (`None`: always), from the project's packages down the edges.
fn markers(packages: &[LockPackage], sources: &[LockedSource]) -> Vec<Option<String>> {
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        by_name
            .entry(normalize(p.name.get_ref()))
            .or_default()
            .push(i);
    }
    // Edges parent → child with the edge's marker; a dependency naming a version picks that one,
    // else every package of the name (uv names the version only when the name is ambiguous).
    let mut edges: Vec<Vec<(usize, Option<String>)>> = vec![Vec::new(); packages.len()];
    let mut indegree = vec![0usize; packages.len()];
    for (parent, p) in packages.iter().enumerate() {
        let deps = p
            .dependencies
            .iter()
            .chain(p.optional_dependencies.values().flatten())
            .chain(p.dev_dependencies.values().flatten());
        for dep in deps {
            for &child in by_name.get(&normalize(&dep.name)).into_iter().flatten() {
                if dep
                    .version
                    .as_ref()
                    .is_some_and(|v| packages[child].version.as_ref() != Some(v))
                {
                    continue;
                }
                edges[parent].push((child, dep.marker.clone().filter(|m| !m.trim().is_empty())));
                indegree[child] += 1;
            }
        }
    }
    // Kahn's order: a package's marker is known once all its parents' are. What the order never
    // reaches is in a cycle or below one: always.
    let mut incoming: Vec<Vec<Option<String>>> = vec![Vec::new(); packages.len()];
    let mut result: Vec<Option<Option<String>>> = vec![None; packages.len()];
    let mut ready: Vec<usize> = (0..packages.len()).filter(|&i| indegree[i] == 0).collect();
    while let Some(node) = ready.pop() {
        let marker = if sources[node] == LockedSource::Project || incoming[node].is_empty() {
            None
        } else {
            any_of(&incoming[node])
        };
        for (child, edge) in &edges[node] {
            incoming[*child].push(all_of(marker.as_deref(), edge.as_deref()));
            indegree[*child] -= 1;
            if indegree[*child] == 0 {
                ready.push(*child);
            }
        }
        result[node] = Some(marker);
    }
    result.into_iter().map(Option::flatten).collect()
}

/// `a and b`; `None` is "always".
fn all_of(a: Option<&str>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (None, None) => None,
        (Some(m), None) | (None, Some(m)) => Some(m.to_string()),
        (Some(a), Some(b)) if a == b => Some(a.to_string()),
        (Some(a), Some(b)) => Some(format!("({a}) and ({b})")),
    }
}

/// `a or b or …`; always when one of them is, or when the result grows past [`MARKER_LIMIT`].
fn any_of(markers: &[Option<String>]) -> Option<String> {
    let mut distinct: Vec<&str> = Vec::new();
    for marker in markers {
        let marker = marker.as_deref()?;
        if !distinct.contains(&marker) {
            distinct.push(marker);
        }
    }
    let joined = match distinct.as_slice() {
        [] => return None,
        [one] => one.to_string(),
        many => many
            .iter()
            .map(|m| format!("({m})"))
            .collect::<Vec<_>>()
            .join(" or "),
    };
    (joined.len() <= MARKER_LIMIT).then_some(joined)
}

/// A TOML basic string of `s`.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTTLE_WHEEL: &str = "045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e";
    const BOTTLE_SDIST: &str = "787e78327e12b227938de02248333d788cfe45987edca735f8f88e03472c3f47";
    const COLORAMA: &str = "4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6";
    const DOCOPT: &str = "49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491";

    fn lock() -> String {
        format!(
            r#"version = 1
revision = 3
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = {{ editable = "." }}
dependencies = [
    {{ name = "bottle" }},
    {{ name = "click" }},
]

[package.optional-dependencies]
cli = [
    {{ name = "docopt" }},
]

[package.metadata]
requires-dist = [{{ name = "tool", git = "https://example.invalid/tool.git" }}]

[[package]]
name = "bottle"
version = "0.13.4"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {{ url = "https://files.pythonhosted.org/packages/7a/bottle-0.13.4.tar.gz", hash = "sha256:{BOTTLE_SDIST}", size = 98717 }}
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/83/bottle-0.13.4-py2.py3-none-any.whl", hash = "sha256:{BOTTLE_WHEEL}", size = 103807 }},
]

[[package]]
name = "click"
version = "8.1.8"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [
    {{ name = "colorama", marker = "sys_platform == 'win32'" }},
]
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/click-8.1.8-py3-none-any.whl", hash = "sha256:{}" }},
]

[[package]]
name = "colorama"
version = "0.4.6"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/colorama-0.4.6-py2.py3-none-any.whl", hash = "sha256:{COLORAMA}" }},
]

[[package]]
name = "docopt"
version = "0.6.2"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {{ url = "https://files.pythonhosted.org/packages/docopt-0.6.2.tar.gz", hash = "sha256:{DOCOPT}" }}

[[package]]
name = "tool"
version = "1.0"
source = {{ git = "https://example.invalid/tool.git?rev=abc#abc" }}
"#,
            "1".repeat(64)
        )
    }

    #[test]
    fn registry_packages_are_index_distributions_with_every_hash_and_their_line() {
        let text = lock();
        let locked = parse("uv.lock", &text).unwrap();
        let names: Vec<(&str, &LockedSource)> = locked
            .iter()
            .map(|d| (d.name.as_str(), &d.source))
            .collect();
        assert_eq!(names[0], ("app", &LockedSource::Project));
        assert_eq!(names[1], ("bottle", &LockedSource::Index));
        assert!(
            matches!(names[5], ("tool", LockedSource::NotCarried(why)) if why.starts_with("a git repository")),
            "{names:?}"
        );
        let bottle = &locked[1];
        assert_eq!(bottle.version, "0.13.4");
        assert_eq!(bottle.sha256, [BOTTLE_SDIST, BOTTLE_WHEEL]);
        assert_eq!(text.lines().nth(bottle.line - 1), Some("name = \"bottle\""));
        assert_eq!(bottle.marker, None);
    }

    #[test]
    fn markers_come_from_the_edges_down_from_the_project() {
        let locked = parse("uv.lock", &lock()).unwrap();
        let marker = |name: &str| {
            locked
                .iter()
                .find(|d| d.name == name)
                .unwrap()
                .marker
                .clone()
        };
        assert_eq!(marker("click"), None);
        assert_eq!(
            marker("colorama").as_deref(),
            Some("sys_platform == 'win32'")
        );
        assert_eq!(marker("docopt"), None, "optional dependencies are included");
        let pip = crate::pip::lockfile::requirements_for_pip(&locked);
        assert!(
            pip.contains(&format!(
                "colorama==0.4.6 ; sys_platform == 'win32' --hash=sha256:{COLORAMA}\n"
            )),
            "{pip}"
        );
    }

    #[test]
    fn markers_combine_over_paths_and_cycles_are_always() {
        let text = r#"
[[package]]
name = "root"
version = "1"
source = { virtual = "." }
dependencies = [
    { name = "a", marker = "sys_platform == 'linux'" },
    { name = "b", marker = "python_version < '3.12'" },
    { name = "x" },
]

[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "c", marker = "os_name == 'posix'" }]

[[package]]
name = "b"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "c" }]

[[package]]
name = "c"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "x"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "y", marker = "os_name == 'nt'" }]

[[package]]
name = "y"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "x" }]
"#;
        let locked = parse("uv.lock", text).unwrap();
        let marker = |name: &str| {
            locked
                .iter()
                .find(|d| d.name == name)
                .unwrap()
                .marker
                .clone()
        };
        let c = marker("c").unwrap();
        assert!(
            c.contains("(sys_platform == 'linux') and (os_name == 'posix')")
                && c.contains("python_version < '3.12'")
                && c.contains(" or "),
            "{c}"
        );
        assert_eq!(marker("x"), None, "in a cycle: always");
        assert_eq!(marker("y"), None, "in a cycle: always");
    }

    #[test]
    fn a_dependency_naming_a_version_picks_that_package() {
        let text = r#"
[[package]]
name = "root"
version = "1"
source = { virtual = "." }
dependencies = [
    { name = "numpy", version = "1.26.4", source = { registry = "https://pypi.org/simple" }, marker = "python_version < '3.12'" },
    { name = "numpy", version = "2.1.0", source = { registry = "https://pypi.org/simple" }, marker = "python_version >= '3.12'" },
]

[[package]]
name = "numpy"
version = "1.26.4"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "numpy"
version = "2.1.0"
source = { registry = "https://pypi.org/simple" }
"#;
        let locked = parse("uv.lock", text).unwrap();
        assert_eq!(locked[1].marker.as_deref(), Some("python_version < '3.12'"));
        assert_eq!(
            locked[2].marker.as_deref(),
            Some("python_version >= '3.12'")
        );
    }

    #[test]
    fn other_sources_are_named() {
        let text = r#"
[[package]]
name = "w"
version = "1"
source = { url = "https://example.invalid/w-1-py3-none-any.whl" }

[[package]]
name = "p"
version = "1"
source = { path = "dist/p-1.tar.gz" }

[[package]]
name = "d"
version = "1"
source = { directory = "libs/d" }
"#;
        let locked = parse("uv.lock", text).unwrap();
        assert!(
            matches!(&locked[0].source, LockedSource::NotCarried(w) if w.starts_with("a direct URL"))
        );
        assert!(
            matches!(&locked[1].source, LockedSource::NotCarried(w) if w.contains("dist/p-1.tar.gz"))
        );
        assert_eq!(locked[2].source, LockedSource::Project);
    }

    #[test]
    fn sdist_only_packages_are_named() {
        let only = sdist_only("uv.lock", &lock()).unwrap();
        assert_eq!(
            only.into_iter().collect::<Vec<_>>(),
            [("docopt".to_string(), "0.6.2".to_string())]
        );
    }

    #[test]
    fn carried_files_point_at_the_server_and_nothing_else_changes() {
        let text = lock();
        let carried = |hex: &str| {
            (hex == BOTTLE_WHEEL).then(|| "bottle-0.13.4-py2.py3-none-any.whl".to_string())
        };
        let out =
            rewrite_for_server("uv.lock", &text, "http://172.17.0.1:3149/", &carried).unwrap();
        let expected = text.replace(
            "https://files.pythonhosted.org/packages/83/bottle-0.13.4-py2.py3-none-any.whl",
            &format!(
                "http://172.17.0.1:3149/files/{BOTTLE_WHEEL}/bottle-0.13.4-py2.py3-none-any.whl"
            ),
        );
        assert_eq!(out, expected);
        // The sdist's URL and the git source stay; the result still parses to the same pins.
        assert!(out.contains("bottle-0.13.4.tar.gz"));
        assert_eq!(
            parse("uv.lock", &out).unwrap(),
            parse("uv.lock", &text).unwrap()
        );
        let none = rewrite_for_server("uv.lock", &text, "http://x", &|_| None).unwrap();
        assert_eq!(none, text);
    }

    #[test]
    fn an_sdist_only_package_gets_the_wheel_built_from_it() {
        let text = lock();
        let built_hex = "b".repeat(64);
        let built = |name: &str, version: &str| {
            if (name, version) == ("docopt", "0.6.2") {
                vec![BuiltWheel {
                    sha256: built_hex.clone(),
                    filename: "docopt-0.6.2-py2.py3-none-any.whl".to_string(),
                }]
            } else {
                Vec::new()
            }
        };
        let out =
            rewrite_for_server_with_built("uv.lock", &text, "http://gw:3149", &|_| None, &built)
                .unwrap();
        let sdist_line = text
            .lines()
            .find(|l| l.starts_with("sdist") && l.contains("docopt"))
            .unwrap();
        assert!(
            out.contains(&format!(
                "{sdist_line}\nwheels = [\n    {{ url = \"http://gw:3149/files/{built_hex}/docopt-0.6.2-py2.py3-none-any.whl\", hash = \"sha256:{built_hex}\" }},\n]\n"
            )),
            "{out}"
        );
        let docopt = parse("uv.lock", &out)
            .unwrap()
            .into_iter()
            .find(|d| d.name == "docopt")
            .unwrap();
        assert_eq!(docopt.sha256, [DOCOPT.to_string(), built_hex.clone()]);
        assert!(sdist_only("uv.lock", &out).unwrap().is_empty());
        // At the very end of a file without a last newline, too.
        let tail = "[[package]]\nname = \"docopt\"\nversion = \"0.6.2\"\nsource = { registry = \"https://pypi.org/simple\" }\nsdist = { url = \"https://x/docopt-0.6.2.tar.gz\", hash = \"sha256:00\" }";
        let out =
            rewrite_for_server_with_built("uv.lock", tail, "http://gw:3149", &|_| None, &built)
                .unwrap();
        assert_eq!(parse("uv.lock", &out).unwrap()[0].sha256, [built_hex]);
    }

    #[test]
    fn bad_toml_is_an_error_with_its_line() {
        let err = parse("uv.lock", "version = 1\n\n[[package]]\nname = \n").unwrap_err();
        assert_eq!(err.file, "uv.lock");
        assert_eq!(err.line, Some(4), "{err}");
        let err = parse("uv.lock", "[[package]]\nversion = \"1\"\n").unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
        let err = parse("uv.lock", "\n[[package]]\nname = \"a b\"\n").unwrap_err();
        assert_eq!(err.to_string(), "uv.lock:3: \"a b\" is not a package name");
        let err = rewrite_for_server("uv.lock", "[[package]\n", "http://x", &|_| None).unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_an_error_or_a_list_never_a_panic(text in "\\PC{0,400}") {
            if let Ok(locked) = parse("uv.lock", &text) {
                let pinned = crate::pip::lockfile::requirements_for_pip(&locked);
                proptest::prop_assert!(crate::pip::requirements::parse("r.txt", &pinned).is_ok(), "{pinned}");
            }
            let _ = sdist_only("uv.lock", &text);
            let _ = rewrite_for_server("uv.lock", &text, "http://x", &|h| Some(format!("{h}.whl")));
            if let Ok(out) = rewrite_for_server_with_built("uv.lock", &text, "http://x", &|_| None, &|n, _| vec![BuiltWheel { sha256: "a".repeat(64), filename: format!("{n}.whl") }]) {
                proptest::prop_assert!(read("uv.lock", &out).is_ok(), "{out}");
            }
        }

        #[test]
        fn a_damaged_lock_is_an_error_or_a_list_never_a_panic(cut in 0usize..2000, byte in 0u8..128) {
            let mut text = lock().into_bytes();
            let at = cut.min(text.len() - 1);
            text[at] = byte;
            if let Ok(text) = String::from_utf8(text) {
                if let Ok(locked) = parse("uv.lock", &text) {
                    let pinned = crate::pip::lockfile::requirements_for_pip(&locked);
                    proptest::prop_assert!(crate::pip::requirements::parse("r.txt", &pinned).is_ok(), "{pinned}");
                    for d in &locked {
                        proptest::prop_assert!(d.line >= 1 && d.line <= text.lines().count().max(1));
                    }
                }
                let _ = rewrite_for_server("uv.lock", &text, "http://x", &|h| Some(format!("{h}.whl")));
                if let Ok(out) = rewrite_for_server_with_built("uv.lock", &text, "http://x", &|_| None, &|n, _| vec![BuiltWheel { sha256: "a".repeat(64), filename: format!("{n}.whl") }]) {
                    proptest::prop_assert!(read("uv.lock", &out).is_ok(), "{out}");
                }
            }
        }
    }
}
