//! What offpack's npm registry answers: tarball paths, the request paths npm
//! sends, and packuments (the per-package documents npm resolves against).

use serde_json::{Map, Value, json};

/// The part of a package name after its scope: `@s/pkg` → `pkg`.
pub fn unscoped(name: &str) -> &str {
    match name.strip_prefix('@') {
        Some(rest) => rest.split_once('/').map(|(_, n)| n).unwrap_or(rest),
        None => name,
    }
}

/// `/<name>/-/<unscoped-name>-<version>.tgz`, as the public registry lays tarballs out
/// (`/@s/pkg/-/pkg-1.0.0.tgz`).
pub fn tarball_path(name: &str, version: &str) -> String {
    format!("/{name}/-/{}-{version}.tgz", unscoped(name))
}

/// A request to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpmRoute {
    /// `GET /<name>` or `/@scope%2fname`: the package's document.
    Packument(String),
    /// `GET /<name>/-/<filename>.tgz`: a tarball.
    Tarball {
        /// Package name, `@scope/name` for scoped ones.
        name: String,
        /// The tarball's file name, e.g. `pkg-1.0.0.tgz`.
        filename: String,
    },
}

/// A valid name segment: npm names are URL-safe; reject anything that could
/// walk paths or is not one.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '.' | '_' | '~' | '!' | '*' | '(' | ')' | '\'')
        })
}

fn valid_name(name: &str) -> bool {
    match name.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((scope, n)) => valid_segment(scope) && valid_segment(n),
            None => false,
        },
        None => valid_segment(name),
    }
}

/// Parses a request path as npm sends it: `/pkg`, `/@scope%2fpkg` (also
/// `%2F`, `/@scope/pkg`, `%40scope`), `/pkg/-/pkg-1.0.0.tgz`,
/// `/@scope/pkg/-/pkg-1.0.0.tgz`. A query string is ignored. `None` for
/// anything else (including `/pkg/1.0.0` and path tricks).
pub fn parse_request_path(path: &str) -> Option<NpmRoute> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.strip_prefix('/')?;
    let decoded = path
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%40", "@");
    if decoded.contains('%') {
        return None;
    }
    if let Some((name, filename)) = decoded.split_once("/-/") {
        if !valid_name(name)
            || !valid_segment(filename)
            || !filename.ends_with(".tgz")
            || filename.len() <= ".tgz".len()
        {
            return None;
        }
        return Some(NpmRoute::Tarball {
            name: name.to_string(),
            filename: filename.to_string(),
        });
    }
    valid_name(&decoded).then_some(NpmRoute::Packument(decoded))
}

/// One version in a packument.
#[derive(Debug, Clone, PartialEq)]
pub struct PackumentVersion {
    /// The version (the key under `versions`).
    pub version: String,
    /// The tarball's `package.json`.
    pub manifest: Value,
    /// Where npm downloads it.
    pub tarball_url: String,
    /// SRI integrity (`sha512-…`).
    pub integrity: String,
    /// sha1 hex, when known.
    pub shasum: Option<String>,
}

/// Parses a version for ordering; npm versions are SemVer (a leading `v` or `=` is tolerated).
fn semver_of(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.trim().trim_start_matches(['v', '='])).ok()
}

/// The version `dist-tags.latest` names: the highest non-prerelease, else the
/// highest prerelease, else (nothing parses) the last one given.
pub fn latest_version<'a>(versions: impl IntoIterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let parsed: Vec<(&str, semver::Version)> = versions
        .clone()
        .into_iter()
        .filter_map(|v| semver_of(v).map(|s| (v, s)))
        .collect();
    let best = |pre: bool| {
        parsed
            .iter()
            .filter(|(_, s)| pre || s.pre.is_empty())
            .max_by(|a, b| a.1.cmp_precedence(&b.1).then_with(|| a.1.cmp(&b.1)))
            .map(|(v, _)| *v)
    };
    best(false)
        .or_else(|| best(true))
        .or_else(|| versions.into_iter().last())
}

/// A packument: `{name, versions: {v: manifest}, dist-tags: {latest}}`. Each
/// manifest is the tarball's package.json with `name` and `version` set to
/// what is served, `_id` set to `name@version` and `dist` replaced by
/// `{tarball, integrity, shasum}`.
pub fn render_packument(name: &str, versions: &[PackumentVersion]) -> Value {
    let mut map = Map::new();
    for v in versions {
        let mut manifest = match &v.manifest {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        manifest.insert("name".into(), Value::String(name.to_string()));
        manifest.insert("version".into(), Value::String(v.version.clone()));
        // Every version of a public-registry packument has it; clients may rely on it.
        manifest.insert("_id".into(), Value::String(format!("{name}@{}", v.version)));
        let mut dist = Map::new();
        dist.insert("tarball".into(), Value::String(v.tarball_url.clone()));
        dist.insert("integrity".into(), Value::String(v.integrity.clone()));
        if let Some(s) = &v.shasum {
            dist.insert("shasum".into(), Value::String(s.clone()));
        }
        manifest.insert("dist".into(), Value::Object(dist));
        map.insert(v.version.clone(), Value::Object(manifest));
    }
    let mut doc = json!({ "name": name, "versions": Value::Object(map) });
    let mut tags = Map::new();
    if let Some(latest) = latest_version(versions.iter().map(|v| v.version.as_str())) {
        tags.insert("latest".into(), Value::String(latest.to_string()));
    }
    doc["dist-tags"] = Value::Object(tags);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_paths() {
        assert_eq!(
            tarball_path("left-pad", "1.3.0"),
            "/left-pad/-/left-pad-1.3.0.tgz"
        );
        assert_eq!(
            tarball_path("@offpack-fixture/util", "1.0.0"),
            "/@offpack-fixture/util/-/util-1.0.0.tgz"
        );
        assert_eq!(unscoped("@s"), "s");
    }

    #[test]
    fn request_paths() {
        use NpmRoute::*;
        let p = |s| parse_request_path(s);
        assert_eq!(p("/left-pad"), Some(Packument("left-pad".into())));
        assert_eq!(p("/@scope%2fname"), Some(Packument("@scope/name".into())));
        assert_eq!(p("/@scope%2Fname"), Some(Packument("@scope/name".into())));
        assert_eq!(p("/@scope/name"), Some(Packument("@scope/name".into())));
        assert_eq!(
            p("/%40scope%2fname?write=true"),
            Some(Packument("@scope/name".into()))
        );
        assert_eq!(
            p("/@scope/name/-/name-1.0.0.tgz"),
            Some(Tarball {
                name: "@scope/name".into(),
                filename: "name-1.0.0.tgz".into()
            })
        );
        assert_eq!(
            p("/left-pad/-/left-pad-1.3.0.tgz"),
            Some(Tarball {
                name: "left-pad".into(),
                filename: "left-pad-1.3.0.tgz".into()
            })
        );
        for bad in [
            "",
            "/",
            "left-pad",
            "/left-pad/1.3.0",
            "/..",
            "/@scope",
            "/@scope/",
            "/a/-/..",
            "/a/-/x.zip",
            "/a/-/.tgz",
            "/a/-/b/c.tgz",
            "/a%00",
            "/a/-/../../etc/passwd.tgz",
            "/@s/n/x",
            "/é",
        ] {
            assert_eq!(parse_request_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn latest_is_highest_release() {
        assert_eq!(latest_version(["1.0.0", "1.10.0", "1.9.0"]), Some("1.10.0"));
        assert_eq!(latest_version(["1.0.0", "2.0.0-beta.1"]), Some("1.0.0"));
        assert_eq!(
            latest_version(["2.0.0-beta.1", "2.0.0-beta.10", "2.0.0-beta.2"]),
            Some("2.0.0-beta.10")
        );
        assert_eq!(latest_version(["v1.2.3", "1.2.4"]), Some("1.2.4"));
        assert_eq!(latest_version(["weird", "other"]), Some("other"));
        assert_eq!(latest_version(Vec::<&str>::new()), None);
    }

    #[test]
    fn packument() {
        let doc = render_packument(
            "@s/pkg",
            &[
                PackumentVersion {
                    version: "1.0.0".into(),
                    manifest: json!({"name": "@s/pkg", "version": "1.0.0", "dependencies": {"a": "^1"}, "dist": {"tarball": "https://elsewhere/x.tgz"}}),
                    tarball_url: "http://g/@s/pkg/-/pkg-1.0.0.tgz".into(),
                    integrity: "sha512-AA==".into(),
                    shasum: Some("ab".into()),
                },
                PackumentVersion {
                    version: "1.1.0".into(),
                    manifest: Value::Null,
                    tarball_url: "http://g/@s/pkg/-/pkg-1.1.0.tgz".into(),
                    integrity: "sha512-BB==".into(),
                    shasum: None,
                },
            ],
        );
        assert_eq!(doc["name"], "@s/pkg");
        assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
        let v1 = &doc["versions"]["1.0.0"];
        assert_eq!(v1["dependencies"]["a"], "^1");
        assert_eq!(
            v1["dist"],
            json!({"tarball": "http://g/@s/pkg/-/pkg-1.0.0.tgz", "integrity": "sha512-AA==", "shasum": "ab"})
        );
        let v2 = &doc["versions"]["1.1.0"];
        assert_eq!(v2["name"], "@s/pkg");
        assert_eq!(v2["version"], "1.1.0");
        assert_eq!(v2["_id"], "@s/pkg@1.1.0");
        assert!(v2["dist"].get("shasum").is_none());
        let empty = render_packument("x", &[]);
        assert_eq!(empty["dist-tags"], json!({}));
    }
}
