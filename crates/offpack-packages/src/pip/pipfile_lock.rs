//! `Pipfile.lock` (pipenv): the distributions it pins, and the lock rewritten so that pipenv
//! installs from offpack's server.
//!
//! pipenv installs a locked project (`pipenv install --deploy`, `pipenv sync`) with pip, giving
//! it the lock's `_meta.sources` as `-i`/`--extra-index-url` (the Pipfile's `[[source]]` tables
//! only when the lock has none), and `--trusted-host` for a source with `verify_ssl: false`.
//! `--deploy` compares `_meta.hash` with a hash of the Pipfile, not of the lock, so a lock whose
//! sources name offpack's server still installs. Measured with pipenv 2026.10.3
//! (tests/serve_pipenv.rs).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::PackageError;
use crate::pip::lockfile::{
    LockedDistribution, LockedSource, requirements_for_pip, write_python_json_string,
};
use crate::pip::requirements::Entry;

/// The sections of distributions: `pipenv install` installs `default`, `--dev` also `develop`.
const SECTIONS: [&str; 2] = ["default", "develop"];

/// Reads the distributions `text` (a `Pipfile.lock` labelled `path`) pins, `default` first, then
/// those of `develop` that `default` does not pin already.
pub fn parse(path: &str, text: &str) -> Result<Vec<LockedDistribution>, PackageError> {
    let lock = read_json(path, text)?;
    let top = lock
        .as_object()
        .ok_or_else(|| PackageError::file(path, "not a Pipfile.lock: the JSON is not an object"))?;
    if !SECTIONS.iter().any(|s| top.contains_key(*s)) && !top.contains_key("_meta") {
        return Err(PackageError::file(
            path,
            "not a Pipfile.lock: none of \"_meta\", \"default\", \"develop\"",
        ));
    }
    // A key given twice: serde_json keeps the last value, so its line is the last one's.
    let lines: HashMap<(&str, String), usize> = entry_lines(text)
        .into_iter()
        .map(|(section, key, line)| ((section, key), line))
        .collect();
    let mut locked: Vec<LockedDistribution> = Vec::new();
    let mut pins = HashSet::new();
    for section in SECTIONS {
        let Some(entries) = top.get(section) else {
            continue;
        };
        let entries = entries.as_object().ok_or_else(|| {
            PackageError::file(path, format!("\"{section}\" is not an object of packages"))
        })?;
        for (name, entry) in entries {
            let line = lines.get(&(section, name.clone())).copied().unwrap_or(1);
            let dist = distribution(path, name, entry, line)?;
            let pin = (
                dist.normalized(),
                dist.version.clone(),
                format!("{:?}", dist.source),
            );
            if pins.insert(pin) {
                locked.push(dist);
            }
        }
    }
    Ok(locked)
}

/// The Python `major.minor` the lock was made for (`_meta.requires.python_version`, or the first
/// two parts of `python_full_version`), if it says. `pipenv install --deploy` refuses an
/// interpreter of another version (it checks the Pipfile's, whose hash the lock holds), so the
/// lock's markers can be read against it.
pub fn required_python_version(text: &str) -> Option<String> {
    let lock: Value = serde_json::from_str(text).ok()?;
    let requires = lock.get("_meta")?.get("requires")?;
    let version = match requires.get("python_version").and_then(Value::as_str) {
        Some(version) => version.trim().to_string(),
        None => {
            let full = requires.get("python_full_version")?.as_str()?.trim();
            full.split('.').take(2).collect::<Vec<_>>().join(".")
        }
    };
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then_some(version)
}

/// `text` (a `Pipfile.lock` labelled `path`) with every source of `_meta.sources` pointing at
/// `simple_url` with `verify_ssl: false` (so pipenv gives pip `--trusted-host`: offpack serves plain
/// HTTP); a lock without sources gets one named `pypi`, which pipenv then prefers to the
/// Pipfile's. The rest is kept, and the whole is written the way pipenv writes a lock.
pub fn rewrite_for_server(
    path: &str,
    text: &str,
    simple_url: &str,
) -> Result<String, PackageError> {
    rewrite_for_server_with_hashes(path, text, simple_url, &|_, _| Vec::new())
}

/// [`rewrite_for_server`], and each index entry also allows the files
/// `extra(normalized name, version)` names (SHA-256 hex): pipenv has pip check every download
/// against the entry's hashes, and a wheel the networked side built from a pinned sdist has a hash
/// of its own.
pub fn rewrite_for_server_with_hashes(
    path: &str,
    text: &str,
    simple_url: &str,
    extra: &dyn Fn(&str, &str) -> Vec<String>,
) -> Result<String, PackageError> {
    let mut lock = read_json(path, text)?;
    for section in SECTIONS {
        let Some(entries) = lock.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, entry) in entries.iter_mut() {
            let Some(entry) = entry.as_object_mut() else {
                continue;
            };
            let Some(version) = entry
                .get("version")
                .and_then(Value::as_str)
                .and_then(|v| v.trim().strip_prefix("=="))
                .map(|v| v.trim_start_matches('=').trim().to_string())
            else {
                continue;
            };
            if ["git", "path", "file"]
                .iter()
                .any(|k| entry.contains_key(*k))
            {
                continue;
            }
            let added = extra(&crate::pip::names::normalize(name), &version);
            if added.is_empty() {
                continue;
            }
            let Some(Value::Array(hashes)) = entry.get_mut("hashes") else {
                continue;
            };
            for hex in added {
                let hash = Value::String(format!("sha256:{hex}"));
                if !hashes.contains(&hash) {
                    hashes.push(hash);
                }
            }
        }
    }
    let top = lock
        .as_object_mut()
        .ok_or_else(|| PackageError::file(path, "not a Pipfile.lock: the JSON is not an object"))?;
    let meta = top
        .get_mut("_meta")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| PackageError::file(path, "not a Pipfile.lock: no \"_meta\" object"))?;
    let sources = meta
        .entry("sources")
        .or_insert_with(|| Value::Array(Vec::new()));
    let sources = sources.as_array_mut().ok_or_else(|| {
        PackageError::file(path, "\"_meta\".\"sources\" is not a list of sources")
    })?;
    if sources.is_empty() {
        let mut pypi = Map::new();
        pypi.insert("name".into(), Value::String("pypi".into()));
        sources.push(Value::Object(pypi));
    }
    for source in sources.iter_mut() {
        let source = source.as_object_mut().ok_or_else(|| {
            PackageError::file(path, "an entry of \"_meta\".\"sources\" is not an object")
        })?;
        source.insert("url".into(), Value::String(simple_url.into()));
        source.insert("verify_ssl".into(), Value::Bool(false));
    }
    let mut out = String::new();
    write_pipenv_json(&mut out, &lock, 0);
    out.push('\n');
    // pipenv keeps the line endings the lock had.
    if text.contains("\r\n") {
        out = out.replace('\n', "\r\n");
    }
    Ok(out)
}

fn read_json(path: &str, text: &str) -> Result<Value, PackageError> {
    serde_json::from_str(text).map_err(|e| PackageError {
        file: path.to_string(),
        line: Some(e.line()).filter(|l| *l > 0),
        message: format!("not valid JSON: {e}"),
    })
}

/// One entry of a section: `"name": {"version": "==1.0", "hashes": […], "markers": "…"}` from an
/// index, or `git`, `file`, `path` (with `editable`) for the other sources.
fn distribution(
    path: &str,
    name: &str,
    entry: &Value,
    line: usize,
) -> Result<LockedDistribution, PackageError> {
    let at = |message: String| PackageError::at(path, line, message);
    if !is_project_name(name) {
        return Err(at(format!("{name:?} is not a Python project name")));
    }
    let entry = entry
        .as_object()
        .ok_or_else(|| at(format!("the entry of {name} is not an object")))?;
    let text_field = |field: &str| -> Result<Option<&str>, PackageError> {
        match entry.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(at(format!("\"{field}\" of {name} is not a string"))),
        }
    };
    let version = text_field("version")?;
    let marker = text_field("markers")?
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let mut sha256 = Vec::new();
    match entry.get("hashes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(hashes)) => {
            for hash in hashes {
                let hash = hash
                    .as_str()
                    .ok_or_else(|| at(format!("a hash of {name} is not a string")))?;
                // pipenv writes sha256 only; another algorithm is not one pip can check here.
                if let Some(hex) = hash.strip_prefix("sha256:") {
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(at(format!("{name} has a malformed hash {hash:?}")));
                    }
                    sha256.push(hex.to_ascii_lowercase());
                }
            }
        }
        Some(_) => return Err(at(format!("\"hashes\" of {name} is not a list"))),
    }

    let source = if let Some(url) = text_field("git")? {
        LockedSource::NotCarried(format!("a git repository ({})", without_userinfo(url)))
    } else if let Some(local) = text_field("path")? {
        if is_project_itself(local) {
            LockedSource::Project
        } else {
            LockedSource::NotCarried(format!("a local path ({local})"))
        }
    } else if let Some(url) = text_field("file")? {
        if is_project_itself(url) {
            LockedSource::Project
        } else {
            LockedSource::NotCarried(format!("a direct URL ({})", without_userinfo(url)))
        }
    } else {
        LockedSource::Index
    };
    let pinned = version.and_then(|v| {
        let v = v.trim();
        v.strip_prefix("===")
            .or_else(|| v.strip_prefix("=="))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    });
    let version = match (pinned, version, &source) {
        (Some(pinned), _, _) => pinned.to_string(),
        (None, Some(v), LockedSource::Index) => {
            return Err(at(format!("{name} is pinned as {v:?}, not \"==VERSION\"")));
        }
        (None, None, LockedSource::Index) => {
            return Err(at(format!(
                "{name} has no pinned version (\"version\": \"==…\")"
            )));
        }
        // Named, not carried: the version is only for the message.
        (None, _, _) => String::new(),
    };
    let dist = LockedDistribution {
        name: name.to_string(),
        version,
        sha256,
        marker,
        line,
        source,
    };
    if dist.source == LockedSource::Index {
        check_requirement_line(&dist).map_err(at)?;
    }
    Ok(dist)
}

/// `url` without the `user:password@` it may carry (a token in a git URL), for messages.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A PEP 508 project name: letters and digits at both ends, `.`, `_`, `-` between.
fn is_project_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An index entry becomes one line of the requirements file pip resolves on the networked side
/// (`requirements_for_pip`); the lock is input from anywhere, so that line must read back as
/// exactly this pin: no second line, option or comment smuggled in through a version or marker.
fn check_requirement_line(dist: &LockedDistribution) -> Result<(), String> {
    let name = &dist.name;
    let version_ok = dist
        .version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'!' | b'+' | b'_' | b'-'));
    if !version_ok {
        return Err(format!(
            "{name} is pinned to {:?}, not a version",
            dist.version
        ));
    }
    if let Some(marker) = &dist.marker {
        if marker
            .chars()
            .any(|c| c.is_control() || c == '#' || c == '\\')
        {
            return Err(format!(
                "the markers of {name} are not a marker pip reads: {marker:?}"
            ));
        }
    }
    let line = requirements_for_pip(std::slice::from_ref(dist));
    let read = crate::pip::requirements::parse("Pipfile.lock", &line).ok();
    let same = read.as_ref().is_some_and(|file| {
        let hashes: Vec<String> = dist.sha256.iter().map(|h| format!("sha256:{h}")).collect();
        match file.entries.as_slice() {
            [Entry::Requirement(r)] => {
                r.name == *name
                    && r.pinned_version() == Some(dist.version.as_str())
                    && r.marker == dist.marker
                    && r.hashes == hashes
                    && r.extras.is_empty()
                    && r.url.is_none()
                    && !r.editable
            }
            _ => false,
        }
    });
    if !same {
        return Err(format!(
            "{name} {} with markers {:?} does not make a requirement pip reads as that pin",
            dist.version,
            dist.marker.as_deref().unwrap_or("")
        ));
    }
    Ok(())
}

/// `path: "."` (usually with `editable: true`): the project the Pipfile belongs to, built from
/// the context rather than carried.
fn is_project_itself(local: &str) -> bool {
    matches!(local.trim(), "." | "./")
}

/// `(section, package, 1-based line)` of every key two levels down (`"default": {"six": …}`),
/// found by walking the text: serde_json keeps no positions. Runs on text serde_json accepted.
fn entry_lines(text: &str) -> Vec<(&'static str, String, usize)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut line = 1;
    // For each open container: whether it is an object, and the key it was opened under.
    let mut stack: Vec<(bool, Option<String>)> = Vec::new();
    let mut last_key: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'{' | b'[' => {
                stack.push((bytes[i] == b'{', last_key.take()));
            }
            b'}' | b']' => {
                stack.pop();
                last_key = None;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let end = (i + 1).min(bytes.len());
                let mut after = end;
                while after < bytes.len() && bytes[after].is_ascii_whitespace() {
                    after += 1;
                }
                let is_key = bytes.get(after) == Some(&b':') && stack.last().is_some_and(|c| c.0);
                if is_key {
                    let key: Option<String> = serde_json::from_str(&text[start..end]).ok();
                    if stack.len() == 2 {
                        let section = stack[1]
                            .1
                            .as_deref()
                            .and_then(|s| SECTIONS.iter().find(|n| **n == s));
                        if let (Some(section), Some(key)) = (section, &key) {
                            found.push((*section, key.clone(), line));
                        }
                    }
                    last_key = key;
                }
            }
            b',' => last_key = None,
            _ => {}
        }
        i += 1;
    }
    found
}

/// `value` as Python's `json.dumps(indent=4, separators=(",", ": "), sort_keys=True)` writes it,
/// which is how pipenv writes a lock (`ensure_ascii`: every character outside printable ASCII
/// escaped).
fn write_pipenv_json(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_python_json_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                out.push_str(if n == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_pipenv_json(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            // Sorted here, whatever order serde_json's map keeps (its `preserve_order` feature).
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                out.push_str(if n == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_python_json_string(out, key);
                out.push_str(": ");
                write_pipenv_json(out, &map[key], depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

#[cfg(test)]
mod tests;
