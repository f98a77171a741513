//! What the package server says: PEP 503 pages, PEP 691 JSON, npm packuments, and how a request
//! path names a package. Pure functions, no I/O.
//!
//! Everything in this file marked `replaced by offpack_packages::…` mirrors the signature of the
//! pure crate `offpack-packages`, which was written in parallel: at integration these private
//! copies are deleted and the callers in `serve.rs` use the crate (one file to swap).

use serde_json::{Value, json};

/// A file of a Python project page.
// replaced by offpack_packages::pip::index::IndexFile at integration
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    pub url: String,
    pub sha256_hex: String,
    pub requires_python: Option<String>,
}

/// PEP 503 name normalization: lower case, runs of `-`, `_`, `.` become one `-`.
// replaced by offpack_packages::pip::names::normalize at integration
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// The PEP 503 root page: one link per project.
// replaced by offpack_packages::pip::index::render_root at integration
pub fn render_root(projects: &[&str]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
    );
    for name in projects {
        let name = html_escape(name);
        html.push_str(&format!("    <a href=\"{name}/\">{name}</a>\n"));
    }
    html.push_str("  </body>\n</html>\n");
    html
}

/// The PEP 503 page of project `name`: one link per file, with its `#sha256=` fragment.
// replaced by offpack_packages::pip::index::render_project at integration
pub fn render_project(name: &str, files: &[IndexFile]) -> String {
    let title = html_escape(name);
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n    <h1>Links for {title}</h1>\n"
    );
    for file in files {
        let href = html_escape(&format!("{}#sha256={}", file.url, file.sha256_hex));
        let requires = match &file.requires_python {
            Some(r) => format!(" data-requires-python=\"{}\"", html_escape(r)),
            None => String::new(),
        };
        html.push_str(&format!(
            "    <a href=\"{href}\"{requires}>{}</a><br/>\n",
            html_escape(&file.filename)
        ));
    }
    html.push_str("  </body>\n</html>\n");
    html
}

/// The PEP 691 JSON root (`application/vnd.pypi.simple.v1+json`). Not in `offpack-packages`:
/// stays here.
pub fn render_root_json(projects: &[&str]) -> Value {
    json!({
        "meta": {"api-version": "1.0"},
        "projects": projects.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
    })
}

/// The PEP 691 JSON page of project `name`. Not in `offpack-packages`: stays here.
pub fn render_project_json(name: &str, files: &[IndexFile]) -> Value {
    let files: Vec<Value> = files
        .iter()
        .map(|file| {
            let mut entry = json!({
                "filename": file.filename,
                "url": file.url,
                "hashes": {"sha256": file.sha256_hex},
            });
            if let Some(r) = &file.requires_python {
                entry["requires-python"] = json!(r);
            }
            entry
        })
        .collect();
    json!({"meta": {"api-version": "1.0"}, "name": name, "files": files})
}

/// Escapes what is not unreserved (RFC 3986) in a URL path segment. Stays here.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// What an npm client asks for.
// replaced by offpack_packages::npm::registry::NpmRoute at integration
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpmRoute {
    Packument(String),
    Tarball { name: String, filename: String },
}

/// One version of a packument.
// replaced by offpack_packages::npm::registry::PackumentVersion at integration
#[derive(Debug, Clone)]
pub struct PackumentVersion {
    pub version: String,
    /// The version's package.json.
    pub manifest: Value,
    pub tarball_url: String,
    pub integrity: Option<String>,
    pub shasum: Option<String>,
}

/// Where the registry serves `name`'s tarball of `version`: `/<name>/-/<unscoped>-<version>.tgz`.
// replaced by offpack_packages::npm::registry::tarball_path at integration
pub fn tarball_path(name: &str, version: &str) -> String {
    let unscoped = name.rsplit('/').next().unwrap_or(name);
    format!("/{name}/-/{unscoped}-{version}.tgz")
}

/// The npm route a request path names: `/<name>`, `/@scope%2fname`, `/@scope/name` (packument),
/// `/<name>/-/<file>.tgz`, `/@scope/name/-/<file>.tgz`, `/@scope%2fname/-/<file>.tgz` (tarball).
/// `None` for anything else, for a name npm could not publish (`.`, `..`, empty) and for a
/// path that is not valid percent-encoded UTF-8.
// replaced by offpack_packages::npm::registry::parse_request_path at integration
pub fn parse_request_path(path: &str) -> Option<NpmRoute> {
    let path = path.strip_prefix('/')?;
    let segments: Vec<String> = path.split('/').map(percent_decode).collect::<Option<_>>()?;
    // A decoded segment may hold the scope's `/` (`@scope%2fname`): split again.
    let parts: Vec<&str> = segments.iter().flat_map(|s| s.split('/')).collect();
    let (name, rest) = match parts.as_slice() {
        [scope, name, rest @ ..] if scope.starts_with('@') => (format!("{scope}/{name}"), rest),
        [name, rest @ ..] => ((*name).to_owned(), rest),
        [] => return None,
    };
    if !valid_npm_name(&name) {
        return None;
    }
    match rest {
        [] => Some(NpmRoute::Packument(name)),
        ["-", file] if file.ends_with(".tgz") && valid_segment(file) => Some(NpmRoute::Tarball {
            name,
            filename: (*file).to_owned(),
        }),
        _ => None,
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['\\', '\0'])
        && !s.contains(char::is_control)
}

fn valid_npm_name(name: &str) -> bool {
    let (scope, bare) = match name.split_once('/') {
        Some((scope, bare)) => (Some(scope), bare),
        None => (None, name),
    };
    let scope_ok = scope.is_none_or(|s| s.len() > 1 && valid_segment(&s[1..]));
    scope_ok && valid_segment(bare) && !bare.starts_with('@')
}

/// Decodes `%XX` escapes of a path segment; `None` for a bad escape or bytes that are not
/// UTF-8. Not in `offpack-packages`: stays here.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The packument of `name`: every version with its manifest and `dist`, `dist-tags.latest` the
/// highest release (a pre-release only when there is no release).
// replaced by offpack_packages::npm::registry::render_packument at integration
pub fn render_packument(name: &str, versions: &[PackumentVersion]) -> Value {
    let mut map = serde_json::Map::new();
    for v in versions {
        let mut manifest = match &v.manifest {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        manifest.insert("name".into(), json!(name));
        manifest.insert("version".into(), json!(v.version));
        manifest.insert("_id".into(), json!(format!("{name}@{}", v.version)));
        let mut dist = serde_json::Map::new();
        dist.insert("tarball".into(), json!(v.tarball_url));
        if let Some(integrity) = &v.integrity {
            dist.insert("integrity".into(), json!(integrity));
        }
        if let Some(shasum) = &v.shasum {
            dist.insert("shasum".into(), json!(shasum));
        }
        manifest.insert("dist".into(), Value::Object(dist));
        map.insert(v.version.clone(), Value::Object(manifest));
    }
    let latest = versions
        .iter()
        .map(|v| v.version.as_str())
        .max_by(|a, b| version_key(a).cmp(&version_key(b)));
    let mut packument = json!({"name": name, "versions": map});
    if let Some(latest) = latest {
        packument["dist-tags"] = json!({"latest": latest});
    } else {
        packument["dist-tags"] = json!({});
    }
    packument
}

/// Orders versions for `latest`: any release above every pre-release (`-…`, as npm's
/// `latest` tag is a release when there is one), then numerically.
fn version_key(version: &str) -> (bool, Vec<u64>, String) {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version.split('+').next().unwrap_or(version), None),
    };
    let numbers = core
        .split('.')
        .map(|n| n.parse::<u64>().unwrap_or(0))
        .collect();
    (pre.is_none(), numbers, pre.unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_pep_503() {
        assert_eq!(normalize("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize("FRIENDLY._-BARD"), "friendly-bard");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("six"), "six");
    }

    #[test]
    fn project_page_links_files_with_their_hash_escaped() {
        let html = render_project(
            "a&b",
            &[IndexFile {
                filename: "a_b-1.0-py3-none-any.whl".into(),
                url: "/files/ab/a_b-1.0-py3-none-any.whl".into(),
                sha256_hex: "ab".into(),
                requires_python: Some(">=3.8".into()),
            }],
        );
        assert!(html.contains("<title>Links for a&amp;b</title>"));
        assert!(html.contains(
            "<a href=\"/files/ab/a_b-1.0-py3-none-any.whl#sha256=ab\" data-requires-python=\"&gt;=3.8\">a_b-1.0-py3-none-any.whl</a>"
        ));
        assert!(render_root(&["six", "x<y"]).contains("<a href=\"x&lt;y/\">x&lt;y</a>"));
    }

    #[test]
    fn npm_paths_name_packuments_and_tarballs() {
        let p = |s: &str| NpmRoute::Packument(s.to_owned());
        let t = |n: &str, f: &str| NpmRoute::Tarball {
            name: n.to_owned(),
            filename: f.to_owned(),
        };
        assert_eq!(parse_request_path("/left-pad"), Some(p("left-pad")));
        assert_eq!(parse_request_path("/@scope%2fname"), Some(p("@scope/name")));
        assert_eq!(parse_request_path("/@scope%2Fname"), Some(p("@scope/name")));
        assert_eq!(parse_request_path("/@scope/name"), Some(p("@scope/name")));
        assert_eq!(
            parse_request_path("/left-pad/-/left-pad-1.3.0.tgz"),
            Some(t("left-pad", "left-pad-1.3.0.tgz"))
        );
        assert_eq!(
            parse_request_path("/@scope/name/-/name-1.0.0.tgz"),
            Some(t("@scope/name", "name-1.0.0.tgz"))
        );
        assert_eq!(
            parse_request_path("/@scope%2fname/-/name-1.0.0.tgz"),
            Some(t("@scope/name", "name-1.0.0.tgz"))
        );
        for bad in [
            "/",
            "",
            "/..",
            "/a/-/..",
            "/a/-/x.zip",
            "/a/b",
            "/@scope",
            "/%zz",
            "/%ff",
            "/a/-/b/c.tgz",
            "/@/x",
        ] {
            assert_eq!(parse_request_path(bad), None, "{bad}");
        }
        assert_eq!(tarball_path("@s/n", "1.0.0"), "/@s/n/-/n-1.0.0.tgz");
        assert_eq!(tarball_path("n", "1.0.0"), "/n/-/n-1.0.0.tgz");
    }

    #[test]
    fn packument_has_every_version_and_the_highest_release_as_latest() {
        let v = |version: &str| PackumentVersion {
            version: version.into(),
            manifest: json!({"name": "x", "version": version, "dependencies": {"y": "^1"}}),
            tarball_url: format!("http://h/x/-/x-{version}.tgz"),
            integrity: Some("sha512-abc".into()),
            shasum: None,
        };
        let doc = render_packument("x", &[v("1.10.0"), v("2.0.0-beta.1"), v("1.9.0")]);
        assert_eq!(doc["dist-tags"]["latest"], "1.10.0");
        assert_eq!(
            doc["versions"]["1.9.0"]["dist"]["tarball"],
            "http://h/x/-/x-1.9.0.tgz"
        );
        assert_eq!(doc["versions"]["1.9.0"]["dist"]["integrity"], "sha512-abc");
        assert_eq!(doc["versions"]["1.9.0"]["dependencies"]["y"], "^1");
        assert_eq!(render_packument("x", &[])["dist-tags"], json!({}));
    }
}
