//! `poetry.lock`, the lock file `poetry install` installs from, and the `pyproject.toml` beside
//! it, both rewritten so that poetry installs from offpack's server.
//!
//! A poetry lock has no URLs: each `[[package]]` lists its `files` (name and `sha256:` hash) and
//! poetry asks the sources of `pyproject.toml` for them (PyPI when none is primary). So offpack
//! adds a primary source (`[[tool.poetry.source]]`, which also turns PyPI off) pointing at its
//! simple index, and points every source already there at it too (a package locked from a named
//! source is looked up by that name). The sources are part of the lock's `metadata.content-hash`,
//! which `poetry install` compares with `pyproject.toml` ("pyproject.toml changed significantly
//! since poetry.lock was last generated"), so the lock gets the hash of the rewritten project,
//! computed the way the poetry that wrote it did ([`content_hash`]). A wheel the networked side
//! built from a locked sdist is added to the package's `files`: poetry only installs a file the
//! lock lists, with its hash. Measured with poetry 1.8.5 and 2.2.1 (decision 0087).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Deserialize;
use toml::Spanned;

use crate::PackageError;
use crate::pip::lockfile::{
    LockedDistribution, LockedSource, line_of, sha256_hex, write_python_json_string,
};
use crate::pip::names::normalize;
use crate::pip::uv_lock::BuiltWheel;

/// The name of the source offpack adds to `pyproject.toml`.
pub const SOURCE_NAME: &str = "offpack";

#[derive(Deserialize)]
struct LockDoc {
    #[serde(default)]
    package: Vec<LockPackage>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default, rename = "content-hash")]
    content_hash: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: Spanned<String>,
    version: String,
    #[serde(default)]
    files: Option<Spanned<Vec<LockFile>>>,
    /// A string, or (lock-version 2.1) a table of markers by dependency group.
    #[serde(default)]
    markers: Option<toml::Value>,
    #[serde(default)]
    source: Option<PackageSource>,
}

#[derive(Deserialize)]
struct LockFile {
    #[serde(default)]
    file: String,
    #[serde(default)]
    hash: String,
}

#[derive(Deserialize)]
struct PackageSource {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    url: String,
}

/// Reads the distributions `text` (a `poetry.lock` labelled `path`) pins.
pub fn parse(path: &str, text: &str) -> Result<Vec<LockedDistribution>, PackageError> {
    let doc = read::<LockDoc>(path, text)?;
    let mut locked = Vec::new();
    for package in doc.package {
        let line = line_of(text, package.name.span().start);
        let name = package.name.into_inner();
        // What goes into the requirements file the networked side gives pip: PEP 508 there.
        if !is_name(&name) {
            return Err(PackageError::at(
                path,
                line,
                format!("{name:?} is not a package name"),
            ));
        }
        if !is_version(&package.version) {
            return Err(PackageError::at(
                path,
                line,
                format!("{name}: {:?} is not a version", package.version),
            ));
        }
        let source = match package.source.as_ref().map(|s| s.kind.as_str()) {
            None | Some("legacy") => LockedSource::Index,
            Some("directory") if package.source.as_ref().is_some_and(|s| s.url == ".") => {
                LockedSource::Project
            }
            Some("git") => LockedSource::NotCarried("a git repository".into()),
            Some("directory") => LockedSource::NotCarried("a local directory".into()),
            Some("file") => LockedSource::NotCarried("a local file".into()),
            Some("url") => LockedSource::NotCarried("a direct URL".into()),
            Some(other) => LockedSource::NotCarried(format!("a source of type {other:?}")),
        };
        let mut sha256 = Vec::new();
        for file in package.files.iter().flat_map(|f| f.get_ref()) {
            if let Some(hex) = sha256_hex(&file.hash)
                && !sha256.iter().any(|h| h == hex)
            {
                sha256.push(hex.to_string());
            }
        }
        let marker = match package.markers {
            Some(toml::Value::String(m)) if !m.trim().is_empty() => {
                if !is_marker(&m) {
                    return Err(PackageError::at(
                        path,
                        line,
                        format!("{name}: {m:?} is not a PEP 508 marker"),
                    ));
                }
                Some(m)
            }
            _ => None,
        };
        locked.push(LockedDistribution {
            name,
            version: package.version,
            sha256,
            marker,
            line,
            source,
        });
    }
    Ok(locked)
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_version(version: &str) -> bool {
    !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+!*".contains(&b))
}

/// A word starting with `-` would read as an option of the requirements line.
fn is_marker(marker: &str) -> bool {
    !marker.contains(|c: char| c.is_control() || c == '#' || c == '\\')
        && !marker.split_whitespace().any(|w| w.starts_with('-'))
}

/// Packages (normalized name, version) locked with no wheel among their files: the networked side
/// builds the sdist into a wheel, which the rewritten lock lists.
pub fn sdist_only(path: &str, text: &str) -> Result<BTreeSet<(String, String)>, PackageError> {
    let doc = read::<LockDoc>(path, text)?;
    Ok(doc
        .package
        .into_iter()
        .filter(|p| p.source.as_ref().is_none_or(|s| s.kind == "legacy"))
        .filter(|p| {
            p.files
                .as_ref()
                .is_some_and(|f| !f.get_ref().iter().any(|f| f.file.ends_with(".whl")))
        })
        .map(|p| (normalize(p.name.get_ref()), p.version))
        .collect())
}

#[derive(Deserialize)]
struct Pyproject {
    #[serde(default)]
    tool: Option<PyprojectTool>,
}

#[derive(Deserialize)]
struct PyprojectTool {
    #[serde(default)]
    poetry: Option<PoetryTable>,
}

#[derive(Deserialize)]
struct PoetryTable {
    #[serde(default)]
    source: Option<Vec<PoetrySource>>,
}

#[derive(Deserialize)]
struct PoetrySource {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: Option<Spanned<String>>,
}

/// `text` (a `pyproject.toml` labelled `path`) with every `[[tool.poetry.source]]` pointing at
/// `simple_url`, and a primary source named `offpack` there added (poetry then leaves PyPI out).
/// Only those spans change, and the added table goes at the end; a project whose sources are
/// written as an inline array cannot take another table, and is an error.
pub fn rewrite_pyproject_for_server(
    path: &str,
    text: &str,
    simple_url: &str,
) -> Result<String, PackageError> {
    let doc = read::<Pyproject>(path, text)?;
    let sources = doc
        .tool
        .and_then(|t| t.poetry)
        .and_then(|p| p.source)
        .unwrap_or_default();
    let mut spans: Vec<std::ops::Range<usize>> = sources
        .iter()
        .filter_map(|s| s.url.as_ref().map(|u| u.span()))
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.start));
    let mut out = text.to_string();
    let quoted = toml_string(simple_url);
    for span in spans {
        out.replace_range(span, &quoted);
    }
    if !sources.iter().any(|s| s.name == SOURCE_NAME) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = write!(
            out,
            "\n[[tool.poetry.source]]\nname = \"{SOURCE_NAME}\"\nurl = {quoted}\npriority = \"primary\"\n"
        );
    }
    if let Err(e) = toml::from_str::<toml::Table>(&out) {
        return Err(PackageError::file(
            path,
            format!(
                "offpack cannot add its package source to this file ({}); write the poetry \
                 sources as [[tool.poetry.source]] tables",
                e.message().trim()
            ),
        ));
    }
    Ok(out)
}

/// `lock` (a `poetry.lock` labelled `path`, made for `pyproject`) for `rewritten_pyproject`: its
/// `content-hash` recomputed the way the lock's was (when the lock's matched `pyproject`; a stale
/// lock stays stale, poetry says so), and each package's files with the wheels built from its
/// sdist (`built(normalized name, version)`) added. Every other byte stays.
pub fn rewrite_lock_for_server(
    path: &str,
    lock: &str,
    pyproject: &str,
    rewritten_pyproject: &str,
    built: &dyn Fn(&str, &str) -> Vec<BuiltWheel>,
) -> Result<String, PackageError> {
    let doc = read::<LockDoc>(path, lock)?;
    let original = read::<toml::Table>("pyproject.toml", pyproject)?;
    let rewritten = read::<toml::Table>("pyproject.toml", rewritten_pyproject)?;
    // (span, replacement), applied from the end.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    if let Some(hash) = doc.metadata.as_ref().and_then(|m| m.content_hash.as_ref()) {
        let matching = HashScheme::ALL
            .into_iter()
            .find(|scheme| content_hash(&original, *scheme).as_deref() == Ok(hash.get_ref()));
        if let Some(scheme) = matching {
            let new = content_hash(&rewritten, scheme).map_err(|e| PackageError::file(path, e))?;
            edits.push((hash.span(), toml_string(&new)));
        }
    }
    for package in &doc.package {
        if package.source.as_ref().is_some_and(|s| s.kind != "legacy") {
            continue;
        }
        let Some(files) = &package.files else {
            continue;
        };
        let wheels = built(&normalize(package.name.get_ref()), &package.version);
        let mut added = String::new();
        for wheel in wheels {
            if files
                .get_ref()
                .iter()
                .any(|f| sha256_hex(&f.hash) == Some(wheel.sha256.as_str()))
            {
                continue;
            }
            let _ = write!(
                added,
                "\n    {{file = {}, hash = {}}},",
                toml_string(&wheel.filename),
                toml_string(&format!("sha256:{}", wheel.sha256))
            );
        }
        if !added.is_empty() {
            // Right after the array's `[`: a trailing comma is valid TOML, so any layout holds.
            let at = files.span().start + 1;
            edits.push((at..at, added));
        }
    }
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = lock.to_string();
    for (span, replacement) in edits {
        out.replace_range(span, &replacement);
    }
    Ok(out)
}

/// How a poetry version computes `content-hash` from `pyproject.toml`
/// (`poetry/packages/locker.py`, `Locker._get_content_hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// poetry 2.3 and later: `[project]`'s `requires-python`, `dependencies`,
    /// `optional-dependencies`, `[dependency-groups]`, and `[tool.poetry]`'s `dependencies`,
    /// `source`, `extras`, `dev-dependencies`, `group`; the latter at the top level (with the
    /// first four as `null` when missing) when the former are all absent, as poetry 1 wrote it.
    Poetry23,
    /// poetry 2.0 to 2.2: as 2.3, without `[dependency-groups]`.
    Poetry20,
    /// poetry 1.x: `[tool.poetry]`'s keys only, at the top level.
    Poetry1,
}

impl HashScheme {
    /// Newest first: the one a lock's hash matches is the one its poetry used.
    pub const ALL: [HashScheme; 3] = [
        HashScheme::Poetry23,
        HashScheme::Poetry20,
        HashScheme::Poetry1,
    ];
}

const LEGACY_KEYS: [&str; 4] = ["dependencies", "source", "extras", "dev-dependencies"];
const PROJECT_KEYS: [&str; 3] = ["requires-python", "dependencies", "optional-dependencies"];

/// The `content-hash` poetry writes for the project `pyproject` under `scheme`: the SHA-256 hex of
/// Python's `json.dumps(relevant, sort_keys=True)`. Errs for a value JSON cannot hold (a date).
pub fn content_hash(pyproject: &toml::Table, scheme: HashScheme) -> Result<String, String> {
    let empty = toml::Table::new();
    let table = |value: Option<&toml::Value>| -> toml::Table {
        value
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let poetry = table(
        pyproject
            .get("tool")
            .and_then(toml::Value::as_table)
            .unwrap_or(&empty)
            .get("poetry"),
    );
    // poetry 1 reads [tool.poetry] only.
    let project = match scheme {
        HashScheme::Poetry1 => toml::Table::new(),
        _ => table(pyproject.get("project")),
    };
    let mut relevant_project = toml::Table::new();
    for key in PROJECT_KEYS {
        if let Some(value) = project.get(key) {
            relevant_project.insert(key.to_string(), value.clone());
        }
    }
    let groups = match scheme {
        HashScheme::Poetry23 => table(pyproject.get("dependency-groups")),
        _ => toml::Table::new(),
    };
    let nested = !relevant_project.is_empty() || !groups.is_empty();
    let mut relevant_poetry = toml::Table::new();
    let mut legacy_nulls = Vec::new();
    for key in LEGACY_KEYS.iter().chain(&["group"]) {
        match poetry.get(*key) {
            Some(v) => {
                relevant_poetry.insert(key.to_string(), v.clone());
            }
            None if !nested && LEGACY_KEYS.contains(key) => legacy_nulls.push(*key),
            None => {}
        }
    }
    let mut json = String::new();
    if nested {
        let mut top = toml::Table::new();
        if !relevant_project.is_empty() {
            top.insert("project".into(), toml::Value::Table(relevant_project));
        }
        if !groups.is_empty() {
            top.insert("dependency-groups".into(), toml::Value::Table(groups));
        }
        let mut tool = toml::Table::new();
        tool.insert("poetry".into(), toml::Value::Table(relevant_poetry));
        top.insert("tool".into(), toml::Value::Table(tool));
        write_json(&mut json, &toml::Value::Table(top))?;
    } else {
        // The legacy keys poetry writes as `null` when missing: objects with nulls, sorted.
        let mut entries: Vec<(&str, Option<&toml::Value>)> = relevant_poetry
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v)))
            .chain(legacy_nulls.iter().map(|k| (*k, None)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        json.push('{');
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                json.push_str(", ");
            }
            write_python_json_string(&mut json, key);
            json.push_str(": ");
            match value {
                Some(v) => write_json(&mut json, v)?,
                None => json.push_str("null"),
            }
        }
        json.push('}');
    }
    Ok(sha256_hex_of(json.as_bytes()))
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, keys sorted by code
/// point, every character outside printable ASCII as `\uXXXX` (UTF-16 surrogate pairs above
/// U+FFFF).
fn write_json(out: &mut String, value: &toml::Value) -> Result<(), String> {
    match value {
        toml::Value::String(s) => write_python_json_string(out, s),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Float(f) => {
            // Python's repr for the floats a project file holds in practice.
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
            } else if f.fract() == 0.0 && f.abs() < 1e16 {
                let _ = write!(out, "{f:.1}");
            } else {
                let _ = write!(out, "{f}");
            }
        }
        toml::Value::Datetime(d) => {
            return Err(format!(
                "the date {d} in pyproject.toml cannot be hashed as poetry does (JSON has no dates)"
            ));
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(out, item)?;
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            // UTF-8 byte order is code point order, Python's string order.
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json_string(out, key);
                out.push_str(": ");
                write_json(out, &table[key.as_str()])?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn sha256_hex_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn read<T: serde::de::DeserializeOwned>(path: &str, text: &str) -> Result<T, PackageError> {
    toml::from_str::<T>(text).map_err(|e| {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => PackageError::at(path, line_of(text, span.start), message),
            None => PackageError::file(path, message),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Locked by poetry 1.8.5 from a `[tool.poetry.dependencies]` project.
    const PYPROJECT_18: &str = include_str!("poetry_lock/poetry18/pyproject.toml");
    const LOCK_18: &str = include_str!("poetry_lock/poetry18/poetry.lock");
    /// Locked by poetry 2.2.1 from a `[project]` project (the rebuild fixture's).
    const PYPROJECT_2: &str =
        include_str!("../../../../tests/fixtures/rebuild/poetry-packages/planned/pyproject.toml");
    const LOCK_2: &str =
        include_str!("../../../../tests/fixtures/rebuild/poetry-packages/planned/poetry.lock");

    /// Locked by poetry 2.5.1 from a `[project]` project with `[dependency-groups]`.
    const PYPROJECT_25: &str = include_str!("poetry_lock/poetry25/pyproject.toml");
    const LOCK_25: &str = include_str!("poetry_lock/poetry25/poetry.lock");

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn lock_hash(lock: &str) -> String {
        let doc: LockDoc = toml::from_str(lock).unwrap();
        doc.metadata.unwrap().content_hash.unwrap().into_inner()
    }

    #[test]
    fn the_content_hash_is_the_one_real_poetry_wrote() {
        let hash_18 = lock_hash(LOCK_18);
        assert_eq!(
            content_hash(&table(PYPROJECT_18), HashScheme::Poetry1).unwrap(),
            hash_18
        );
        // Without [project] content poetry 2 hashes [tool.poetry] at the top level, as 1.x did.
        assert_eq!(
            content_hash(&table(PYPROJECT_18), HashScheme::Poetry23).unwrap(),
            hash_18
        );
        let hash_2 = lock_hash(LOCK_2);
        assert_eq!(
            content_hash(&table(PYPROJECT_2), HashScheme::Poetry20).unwrap(),
            hash_2
        );
        assert_eq!(
            content_hash(&table(PYPROJECT_2), HashScheme::Poetry23).unwrap(),
            hash_2
        );
        assert_ne!(
            content_hash(&table(PYPROJECT_2), HashScheme::Poetry1).unwrap(),
            hash_2
        );
        // Since 2.3 [dependency-groups] counts.
        let hash_25 = lock_hash(LOCK_25);
        assert_eq!(
            content_hash(&table(PYPROJECT_25), HashScheme::Poetry23).unwrap(),
            hash_25
        );
        assert_ne!(
            content_hash(&table(PYPROJECT_25), HashScheme::Poetry20).unwrap(),
            hash_25
        );
    }

    #[test]
    fn json_is_written_as_pythons_json_dumps_with_sorted_keys() {
        // python3 -c 'json.dumps({...}, sort_keys=True)' gave this.
        let value: toml::Table = toml::from_str(
            "b = [1, true, \"\u{e9}\u{1f600}\\u007f\\\"\\\\\\n\"]\n\"\u{e4}\" = \"x\"\na = { z = 1.5, y = 2.0 }\n",
        )
        .unwrap();
        let mut out = String::new();
        write_json(&mut out, &toml::Value::Table(value)).unwrap();
        assert_eq!(
            out,
            r#"{"a": {"y": 2.0, "z": 1.5}, "b": [1, true, "\u00e9\ud83d\ude00\u007f\"\\\n"], "\u00e4": "x"}"#
        );
    }

    #[test]
    fn a_lock_becomes_distributions_with_their_lines_and_sources() {
        let locked = parse("poetry.lock", LOCK_2).unwrap();
        let names: Vec<&str> = locked.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["bottle", "docopt", "markupsafe", "six"]);
        assert!(locked.iter().all(|d| d.source == LockedSource::Index));
        let docopt = &locked[1];
        assert_eq!(
            docopt.sha256,
            ["49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491"]
        );
        assert_eq!(
            LOCK_2.lines().nth(docopt.line - 1),
            Some("name = \"docopt\"")
        );
        assert_eq!(
            sdist_only("poetry.lock", LOCK_2)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [("docopt".to_string(), "0.6.2".to_string())]
        );
        let other = "[[package]]\nname = \"tool\"\nversion = \"1.0\"\nfiles = []\n\n[package.source]\ntype = \"git\"\nurl = \"https://example.invalid/tool.git\"\n\n[[package]]\nname = \"Internal\"\nversion = \"2.0\"\nmarkers = \"sys_platform == 'linux'\"\nfiles = [{file = \"internal-2.0.tar.gz\", hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}]\n\n[package.source]\ntype = \"legacy\"\nurl = \"https://example.invalid/simple\"\nreference = \"internal\"\n";
        let locked = parse("poetry.lock", other).unwrap();
        assert_eq!(
            locked[0].source,
            LockedSource::NotCarried("a git repository".into())
        );
        assert_eq!(locked[1].source, LockedSource::Index);
        assert_eq!(locked[1].marker.as_deref(), Some("sys_platform == 'linux'"));
        assert_eq!(locked[1].line, 11);
        let err = parse("app/poetry.lock", "[[package]]\nname = 3\n").unwrap_err();
        assert!(err.to_string().contains("app/poetry.lock:2"), "{err}");
    }

    #[test]
    fn the_rewritten_project_and_lock_agree_and_list_the_built_wheel() {
        // The hash poetry 2.2.1 accepted, measured with this project and a source at this URL.
        let measured = rewrite_pyproject_for_server(
            "pyproject.toml",
            PYPROJECT_2,
            "http://172.20.0.2:8000/simple/",
        )
        .unwrap();
        assert_eq!(
            content_hash(&table(&measured), HashScheme::Poetry23).unwrap(),
            "f9730e65ddc5f86df1c1223314568709a2e3e38d0fe8da5b3e1ea29515e6f989"
        );
        let url = "http://172.17.0.1:3149/simple/";
        let project = rewrite_pyproject_for_server("pyproject.toml", PYPROJECT_2, url).unwrap();
        assert!(project.starts_with(PYPROJECT_2), "{project}");
        assert!(project.ends_with(
            "\n[[tool.poetry.source]]\nname = \"offpack\"\nurl = \"http://172.17.0.1:3149/simple/\"\npriority = \"primary\"\n"
        ));
        let wheel = "caa5ca2fb497ab738326d7ae25f2b66bcc074592c3cbe85660621ad07ca424dd";
        let lock = rewrite_lock_for_server(
            "poetry.lock",
            LOCK_2,
            PYPROJECT_2,
            &project,
            &|name, version| {
                if (name, version) == ("docopt", "0.6.2") {
                    vec![BuiltWheel {
                        sha256: wheel.into(),
                        filename: "docopt-0.6.2-py2.py3-none-any.whl".into(),
                    }]
                } else {
                    Vec::new()
                }
            },
        )
        .unwrap();
        assert_eq!(
            lock_hash(&lock),
            content_hash(&table(&project), HashScheme::Poetry23).unwrap()
        );
        assert_ne!(lock_hash(&lock), lock_hash(LOCK_2));
        assert!(lock.contains(&format!(
            "files = [\n    {{file = \"docopt-0.6.2-py2.py3-none-any.whl\", hash = \"sha256:{wheel}\"}},\n    {{file = \"docopt-0.6.2.tar.gz\""
        )));
        let locked = parse("poetry.lock", &lock).unwrap();
        assert!(locked[1].sha256.contains(&wheel.to_string()));
        // Otherwise the same bytes.
        assert_eq!(lock.lines().count(), LOCK_2.lines().count() + 1);

        // A project with sources: each points at the server, and a stale lock stays stale.
        let with_source = format!(
            "{PYPROJECT_18}\n[[tool.poetry.source]]\nname = \"internal\"\nurl = \"https://example.invalid/simple/\"\npriority = \"supplemental\"\n"
        );
        let project = rewrite_pyproject_for_server("pyproject.toml", &with_source, url).unwrap();
        assert!(
            !project.contains("https://example.invalid/simple/"),
            "{project}"
        );
        assert_eq!(project.matches(url).count(), 2, "{project}");
        let lock =
            rewrite_lock_for_server("poetry.lock", LOCK_18, &with_source, &project, &|_, _| {
                Vec::new()
            })
            .unwrap();
        assert_eq!(lock, LOCK_18);
        let lock =
            rewrite_lock_for_server("poetry.lock", LOCK_18, PYPROJECT_18, &project, &|_, _| {
                Vec::new()
            })
            .unwrap();
        assert_eq!(
            lock_hash(&lock),
            content_hash(&table(&project), HashScheme::Poetry1).unwrap()
        );

        let inline =
            "[tool.poetry]\nsource = [{name = \"a\", url = \"https://example.invalid/\"}]\n";
        let err = rewrite_pyproject_for_server("app/pyproject.toml", inline, url).unwrap_err();
        assert!(err.to_string().contains("app/pyproject.toml"), "{err}");
    }
}
