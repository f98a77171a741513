//! The package request file: what a far-side `rebuild` could not find in its
//! store, written so that a networked machine can fetch it
//! (`offpack bundle --packages-for REQUEST`). JSON, `offpack_request: 1`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PackageError;

/// The request format this crate reads and writes.
pub const REQUEST_FORMAT: u64 = 1;

/// A package request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRequest {
    /// Always [`REQUEST_FORMAT`].
    pub offpack_request: u64,
    /// The Compose project name.
    pub project: String,
    /// When it was written (RFC 3339, as the caller formats it).
    pub created: String,
    /// Python packages, per service.
    #[serde(default)]
    pub python: Vec<PythonRequest>,
    /// npm tarballs.
    #[serde(default)]
    pub npm: Vec<NpmRequestEntry>,
}

/// The Python packages one service needs: its requirement files as they are
/// now, so the networked side can resolve them in the same base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonRequest {
    /// Compose service.
    pub service: String,
    /// The base image reference the install runs in.
    pub image: String,
    /// Its image id (`sha256:…`).
    pub image_id: String,
    /// Target platform, e.g. `linux/amd64`.
    pub platform: String,
    /// Requirement files (context-relative paths) with their content: those below and every
    /// file they include.
    #[serde(default)]
    pub files: Vec<RequestFile>,
    /// The files the install step gives to `-r`, of `files`.
    #[serde(default)]
    pub requirement_files: Vec<String>,
    /// The files the install step gives to `-c`, of `files`.
    #[serde(default)]
    pub constraint_files: Vec<String>,
    /// Requirements given on the command line (`pip install flask==2.0`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// What the far side knew to be missing (`name==version`), for the report.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// A file carried in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFile {
    /// Context-relative path.
    pub path: String,
    /// The file's text.
    pub content: String,
}

/// One npm tarball a service needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpmRequestEntry {
    /// Compose service.
    pub service: String,
    /// Package name (real name, aliases resolved).
    pub name: String,
    /// Exact version.
    pub version: String,
    /// The lock's `resolved` URL.
    pub resolved: String,
    /// The lock's integrity (SRI), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

impl PackageRequest {
    /// An empty request for `project`.
    pub fn new(project: &str, created: &str) -> PackageRequest {
        PackageRequest {
            offpack_request: REQUEST_FORMAT,
            project: project.to_string(),
            created: created.to_string(),
            python: Vec::new(),
            npm: Vec::new(),
        }
    }

    /// True when nothing is requested.
    pub fn is_empty(&self) -> bool {
        self.python.is_empty() && self.npm.is_empty()
    }

    /// Reads a request; `path_label` names the file in errors. The format
    /// number is checked first, so another program's JSON or a newer format
    /// gets a clear message; unknown fields are ignored.
    pub fn from_json(path_label: &str, text: &str) -> Result<PackageRequest, PackageError> {
        let json_err = |e: serde_json::Error| PackageError {
            file: path_label.to_string(),
            line: Some(e.line()).filter(|l| *l > 0),
            message: format!("not a valid package request: {e}"),
        };
        let value: Value = serde_json::from_str(text).map_err(json_err)?;
        match value.get("offpack_request").map(Value::as_u64) {
            None => {
                return Err(PackageError::file(
                    path_label,
                    "not an offpack package request (no \"offpack_request\" field)",
                ));
            }
            Some(Some(REQUEST_FORMAT)) => {}
            Some(_) => {
                let shown = value
                    .get("offpack_request")
                    .map(Value::to_string)
                    .unwrap_or_default();
                return Err(PackageError::file(
                    path_label,
                    format!(
                        "package request format {shown} is not supported (this offpack reads format {REQUEST_FORMAT})"
                    ),
                ));
            }
        }
        serde_json::from_value(value).map_err(json_err)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PackageRequest {
        let mut r = PackageRequest::new("shop", "2026-12-04T19:00:00Z");
        r.python.push(PythonRequest {
            service: "backend".into(),
            image: "python:3.11-slim".into(),
            image_id: "sha256:00".into(),
            platform: "linux/amd64".into(),
            files: vec![RequestFile {
                path: "backend/requirements.txt".into(),
                content: "flask==3.0.0\n".into(),
            }],
            requirement_files: vec!["backend/requirements.txt".into()],
            constraint_files: Vec::new(),
            packages: vec!["gunicorn".into()],
            missing: vec!["flask==3.0.0".into()],
        });
        r.npm.push(NpmRequestEntry {
            service: "web".into(),
            name: "@s/util".into(),
            version: "1.0.0".into(),
            resolved: "https://registry.npmjs.org/@s/util/-/util-1.0.0.tgz".into(),
            integrity: Some("sha512-AA==".into()),
        });
        r
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let text = r.to_json();
        assert!(text.contains("\"offpack_request\": 1"));
        assert_eq!(PackageRequest::from_json("req.json", &text).unwrap(), r);
        assert!(!r.is_empty());
        assert!(PackageRequest::new("p", "t").is_empty());
    }

    #[test]
    fn ignores_unknown_fields_and_defaults_lists() {
        let r = PackageRequest::from_json(
            "req.json",
            r#"{"offpack_request": 1, "project": "p", "created": "t", "future": true,
                "npm": [{"service": "web", "name": "a", "version": "1", "resolved": "u", "extra": 1}]}"#,
        )
        .unwrap();
        assert!(r.python.is_empty());
        assert_eq!(r.npm[0].integrity, None);
    }

    #[test]
    fn errors_are_clear() {
        let e = |t: &str| {
            PackageRequest::from_json("req.json", t)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(r#"{"project": "p"}"#),
            "req.json: not an offpack package request (no \"offpack_request\" field)"
        );
        assert_eq!(
            e(r#"{"offpack_request": 2}"#),
            "req.json: package request format 2 is not supported (this offpack reads format 1)"
        );
        assert!(e(r#"{"offpack_request": "1"}"#).contains("format \"1\" is not supported"));
        assert!(e("{").starts_with("req.json:1: not a valid package request"));
        assert!(e(r#"{"offpack_request": 1, "project": "p"}"#).contains("missing field `created`"));
    }
}
