//! npm `package-lock.json` / `npm-shrinkwrap.json` (lockfileVersion 1, 2, 3)
//! and yarn v1 `yarn.lock`, reduced to the packages they pin.

use serde_json::{Map, Value};

use super::integrity::Integrity;
use crate::PackageError;

/// One package a lock pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmPackage {
    /// The real package name (an `npm:` alias resolved), e.g. `@scope/pkg`.
    pub name: String,
    /// The name it is installed under when that differs (`npm:` aliases).
    pub alias: Option<String>,
    /// Exact version (for git/file sources what the lock wrote).
    pub version: String,
    /// Where the lock says it comes from.
    pub source: NpmSource,
    /// The lock's integrity (or one derived from a sha1 `shasum` / yarn `#sha1`).
    pub integrity: Option<Integrity>,
    /// `node_modules/...` install path (package-lock) or the entry's key (yarn.lock).
    pub path: String,
    /// Optional dependency (`optional` or `devOptional`): npm skips it when it does not fit.
    pub optional: bool,
    /// Only a dev dependency.
    pub dev: bool,
    /// Shipped inside its parent's tarball (`inBundle`/`bundled`): nothing to fetch.
    pub in_bundle: bool,
    /// `os` list (`!` negates), empty = any.
    pub os: Vec<String>,
    /// `cpu` list, empty = any.
    pub cpu: Vec<String>,
    /// `libc` list, empty = any.
    pub libc: Vec<String>,
}

/// Where a locked package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpmSource {
    /// A registry tarball: an http(s) URL ending in `.tgz` with `/-/` in its path.
    Registry {
        /// The URL exactly as the lock has it (yarn keeps its `#sha1` fragment).
        resolved: String,
    },
    /// A git dependency (`git+…`, `git://`, `github:`, …).
    Git {
        /// The spec or URL as written.
        spec: String,
    },
    /// A local tarball or directory (`file:`).
    File {
        /// The spec as written.
        spec: String,
    },
    /// A symlinked local package (`link: true`, yarn `link:`, workspace folders).
    Link {
        /// The target path as written.
        path: String,
    },
    /// A tarball at another http(s) URL.
    Remote {
        /// The URL as written.
        url: String,
    },
    /// No usable source (no `resolved`, unknown scheme).
    Unknown,
}

impl NpmSource {
    /// Classifies a `resolved` URL or version spec.
    pub fn classify(spec: &str) -> NpmSource {
        let lower = spec.to_ascii_lowercase();
        let git_prefixes = [
            "git+",
            "git://",
            "git@",
            "github:",
            "gitlab:",
            "bitbucket:",
            "gist:",
        ];
        if git_prefixes.iter().any(|p| lower.starts_with(p)) {
            return NpmSource::Git {
                spec: spec.to_string(),
            };
        }
        if lower.starts_with("file:") {
            return NpmSource::File {
                spec: spec.to_string(),
            };
        }
        if let Some(path) = spec.strip_prefix("link:") {
            return NpmSource::Link {
                path: path.to_string(),
            };
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let base = spec.split(['#', '?']).next().unwrap_or(spec);
            if base.ends_with(".tgz") && base.contains("/-/") {
                return NpmSource::Registry {
                    resolved: spec.to_string(),
                };
            }
            return NpmSource::Remote {
                url: spec.to_string(),
            };
        }
        NpmSource::Unknown
    }

    /// The URL of a registry or remote tarball.
    pub fn url(&self) -> Option<&str> {
        match self {
            NpmSource::Registry { resolved } => Some(resolved),
            NpmSource::Remote { url } => Some(url),
            _ => None,
        }
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn flag(entry: &Map<String, Value>, key: &str) -> bool {
    entry.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn str_field<'a>(entry: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str)
}

/// The package name at the end of an install path: after the last
/// `node_modules/`, keeping a `@scope/`.
fn name_from_path(path: &str) -> Option<&str> {
    let i = path.rfind("node_modules/")?;
    let name = &path[i + "node_modules/".len()..];
    (!name.is_empty()).then_some(name)
}

/// `npm:real@1.2.3` → (`real`, `1.2.3`); `npm:@s/real@^1` → (`@s/real`, `^1`).
fn split_npm_alias(spec: &str) -> Option<(&str, &str)> {
    let rest = spec.strip_prefix("npm:")?;
    split_name_range(rest)
}

/// `name@range`, `@scope/name@range` → (name, range); the `@` at 0 belongs to the scope.
fn split_name_range(spec: &str) -> Option<(&str, &str)> {
    // A name never contains '@' past its scope; a range may (`npm:x@1`, `git@host`).
    let skip = usize::from(spec.starts_with('@'));
    let at = spec[skip..].find('@')? + skip;
    let (name, range) = (&spec[..at], &spec[at + 1..]);
    (!name.is_empty()).then_some((name, range))
}

fn integrity_of(
    label: &str,
    what: &str,
    integrity: Option<&str>,
    sha1_hex: Option<&str>,
) -> Result<Option<Integrity>, PackageError> {
    match integrity {
        Some(s) if !s.trim().is_empty() => Integrity::parse(s).map(Some).ok_or_else(|| {
            PackageError::file(label, format!("{what}: unreadable integrity {s:?}"))
        }),
        _ => Ok(sha1_hex.and_then(Integrity::from_sha1_hex)),
    }
}

/// Parses a package-lock.json or npm-shrinkwrap.json (lockfileVersion 1, 2 or 3).
/// Version 2 and 3 are read from `packages` (the root `""` entry is skipped);
/// version 1 from the nested `dependencies`. Sorted by install path.
pub fn parse_package_lock(path_label: &str, text: &str) -> Result<Vec<NpmPackage>, PackageError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value = serde_json::from_str(text).map_err(|e| PackageError {
        file: path_label.to_string(),
        line: Some(e.line()),
        message: format!("not valid JSON: {e}"),
    })?;
    let Some(root) = root.as_object() else {
        return Err(PackageError::file(
            path_label,
            "not a lock file (expected a JSON object)",
        ));
    };
    let version = root.get("lockfileVersion").and_then(Value::as_u64);
    let mut out = match (version, root.get("packages")) {
        (Some(2..), Some(Value::Object(packages))) => parse_packages(path_label, packages)?,
        (Some(v), _) if v >= 2 => match root.get("dependencies") {
            // npm 7+ reads a v2 lock's v1 section when `packages` is missing; so do we.
            Some(Value::Object(deps)) if v == 2 => {
                let mut out = Vec::new();
                parse_v1_deps(path_label, deps, "", &mut out, 0)?;
                out
            }
            _ => {
                return Err(PackageError::file(
                    path_label,
                    format!("lockfileVersion {v} without a \"packages\" map"),
                ));
            }
        },
        (Some(1) | None, _) => {
            let mut out = Vec::new();
            if let Some(deps) = root.get("dependencies") {
                let Some(deps) = deps.as_object() else {
                    return Err(PackageError::file(
                        path_label,
                        "\"dependencies\" is not an object",
                    ));
                };
                parse_v1_deps(path_label, deps, "", &mut out, 0)?;
            } else if version.is_none() {
                return Err(PackageError::file(
                    path_label,
                    "not a package-lock (no lockfileVersion, packages or dependencies)",
                ));
            }
            out
        }
        (Some(v), _) => {
            return Err(PackageError::file(
                path_label,
                format!("unsupported lockfileVersion {v}"),
            ));
        }
    };
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn parse_packages(
    label: &str,
    packages: &Map<String, Value>,
) -> Result<Vec<NpmPackage>, PackageError> {
    let mut out = Vec::new();
    for (path, entry) in packages {
        if path.is_empty() {
            continue;
        }
        let Some(entry) = entry.as_object() else {
            return Err(PackageError::file(
                label,
                format!("packages[{path:?}] is not an object"),
            ));
        };
        let installed_as = name_from_path(path);
        let field_name = str_field(entry, "name");
        // Workspace folders (keys outside node_modules) are named by their package.json name.
        let name = field_name
            .or(installed_as)
            .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path));
        let alias = match (installed_as, field_name) {
            (Some(a), Some(n)) if a != n => Some(a.to_string()),
            _ => None,
        };
        let resolved = str_field(entry, "resolved");
        let source = if flag(entry, "link") {
            NpmSource::Link {
                path: resolved.unwrap_or("").to_string(),
            }
        } else if installed_as.is_none() {
            NpmSource::Link { path: path.clone() }
        } else {
            resolved
                .map(NpmSource::classify)
                .unwrap_or(NpmSource::Unknown)
        };
        let what = format!("packages[{path:?}]");
        out.push(NpmPackage {
            name: name.to_string(),
            alias,
            version: str_field(entry, "version").unwrap_or("").to_string(),
            source,
            integrity: integrity_of(label, &what, str_field(entry, "integrity"), None)?,
            path: path.clone(),
            optional: flag(entry, "optional") || flag(entry, "devOptional"),
            dev: flag(entry, "dev"),
            in_bundle: flag(entry, "inBundle"),
            os: string_list(entry.get("os")),
            cpu: string_list(entry.get("cpu")),
            libc: string_list(entry.get("libc")),
        });
    }
    Ok(out)
}

/// Lock files nest at most as deep as node_modules does; this bounds a hostile one.
const MAX_DEPTH: usize = 200;

fn parse_v1_deps(
    label: &str,
    deps: &Map<String, Value>,
    parent: &str,
    out: &mut Vec<NpmPackage>,
    depth: usize,
) -> Result<(), PackageError> {
    if depth > MAX_DEPTH {
        return Err(PackageError::file(label, "dependencies nested too deeply"));
    }
    for (key, entry) in deps {
        let path = format!("{parent}node_modules/{key}");
        let Some(entry) = entry.as_object() else {
            return Err(PackageError::file(
                label,
                format!("dependency {path:?} is not an object"),
            ));
        };
        let raw_version = str_field(entry, "version").unwrap_or("");
        let (name, alias, version) = match split_npm_alias(raw_version) {
            Some((real, v)) => (real.to_string(), Some(key.clone()), v.to_string()),
            None => (key.clone(), None, raw_version.to_string()),
        };
        let resolved = str_field(entry, "resolved");
        let source = match resolved {
            Some(r) => NpmSource::classify(r),
            // Git and file dependencies keep their spec in `version`.
            None => match NpmSource::classify(raw_version) {
                s @ (NpmSource::Git { .. } | NpmSource::File { .. } | NpmSource::Link { .. }) => s,
                _ => NpmSource::Unknown,
            },
        };
        let sha1 = str_field(entry, "shasum").or_else(|| {
            resolved
                .and_then(|r| r.split_once('#'))
                .map(|(_, f)| f)
                .filter(|f| f.len() == 40)
        });
        out.push(NpmPackage {
            name,
            alias,
            version,
            source,
            integrity: integrity_of(
                label,
                &format!("dependency {path:?}"),
                str_field(entry, "integrity"),
                sha1,
            )?,
            path: path.clone(),
            optional: flag(entry, "optional"),
            dev: flag(entry, "dev"),
            in_bundle: flag(entry, "bundled"),
            os: string_list(entry.get("os")),
            cpu: string_list(entry.get("cpu")),
            libc: string_list(entry.get("libc")),
        });
        if let Some(nested) = entry.get("dependencies") {
            let Some(nested) = nested.as_object() else {
                return Err(PackageError::file(
                    label,
                    format!("dependency {path:?}: \"dependencies\" is not an object"),
                ));
            };
            parse_v1_deps(label, nested, &format!("{path}/"), out, depth + 1)?;
        }
    }
    Ok(())
}

/// Unquotes a yarn v1 token: `"a b"` → `a b` (JSON escapes), bare tokens as they are.
fn yarn_unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        serde_json::from_str::<String>(s).unwrap_or_else(|_| s[1..s.len() - 1].to_string())
    } else {
        s.to_string()
    }
}

/// Splits a yarn header (`"a@^1", a@~1.2`) at commas outside quotes.
fn yarn_split_specs(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in header.chars() {
        if quoted {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            ',' => out.push(yarn_unquote(&std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    out.push(yarn_unquote(&cur));
    out.retain(|s| !s.is_empty());
    out
}

/// Splits `key value` of a yarn field line; the key may be quoted.
fn yarn_field(line: &str) -> (String, String) {
    let line = line.trim();
    if line.starts_with('"') {
        let mut escaped = false;
        for (i, c) in line.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return (yarn_unquote(&line[..=i]), yarn_unquote(&line[i + 1..]));
            }
        }
        return (yarn_unquote(line), String::new());
    }
    match line.split_once(char::is_whitespace) {
        Some((k, v)) => (k.to_string(), yarn_unquote(v)),
        None => (line.to_string(), String::new()),
    }
}

struct YarnEntry {
    key: String,
    line: usize,
    specs: Vec<String>,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
}

/// Parses a yarn v1 `yarn.lock`. A yarn 2+ (berry, YAML) lock is refused with
/// a message saying so. Sorted by key.
pub fn parse_yarn_lock(path_label: &str, text: &str) -> Result<Vec<NpmPackage>, PackageError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries: Vec<YarnEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            if trimmed.starts_with("__metadata:") {
                return Err(PackageError::at(
                    path_label,
                    lineno,
                    "this is a yarn 2+ (berry) lockfile; only yarn v1 lockfiles are supported",
                ));
            }
            let Some(header) = trimmed.strip_suffix(':') else {
                return Err(PackageError::at(
                    path_label,
                    lineno,
                    format!("expected an entry header ending in ':', found {trimmed:?}"),
                ));
            };
            entries.push(YarnEntry {
                key: header.to_string(),
                line: lineno,
                specs: yarn_split_specs(header),
                version: None,
                resolved: None,
                integrity: None,
            });
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            return Err(PackageError::at(
                path_label,
                lineno,
                "indented line before any entry",
            ));
        };
        if indent > 2 {
            // Nested blocks (dependencies, optionalDependencies) are not needed here.
            continue;
        }
        let (key, value) = yarn_field(trimmed);
        match key.as_str() {
            "version" => entry.version = Some(value),
            "resolved" => entry.resolved = Some(value),
            "integrity" => entry.integrity = Some(value),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let err = |m: String| PackageError::at(path_label, e.line, m);
        let Some(first) = e.specs.first() else {
            return Err(err("entry header without a package".into()));
        };
        let Some((installed_as, range)) = split_name_range(first) else {
            return Err(err(format!("cannot read the package name in {first:?}")));
        };
        let (name, alias) = match split_npm_alias(range) {
            Some((real, _)) => (real.to_string(), Some(installed_as.to_string())),
            None => (installed_as.to_string(), None),
        };
        let Some(version) = e.version else {
            return Err(err(format!("entry {:?} has no version", e.key)));
        };
        let source = match &e.resolved {
            Some(r) => NpmSource::classify(r),
            None => match NpmSource::classify(range) {
                s @ (NpmSource::Git { .. } | NpmSource::File { .. } | NpmSource::Link { .. }) => s,
                _ => NpmSource::Unknown,
            },
        };
        let sha1 = e
            .resolved
            .as_deref()
            .and_then(|r| r.split_once('#'))
            .map(|(_, f)| f)
            .filter(|f| f.len() == 40);
        let integrity = integrity_of(
            path_label,
            &format!("entry {:?}", e.key),
            e.integrity.as_deref(),
            sha1,
        )
        .map_err(|mut x| {
            x.line = Some(e.line);
            x
        })?;
        out.push(NpmPackage {
            name,
            alias,
            version,
            source,
            integrity,
            path: e.key,
            optional: false,
            dev: false,
            in_bundle: false,
            os: Vec::new(),
            cpu: Vec::new(),
            libc: Vec::new(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
