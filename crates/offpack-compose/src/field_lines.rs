//! Where services and their fields are written: a scan of block-style YAML by indentation
//! (decision 0021). Flow-style YAML, anchors and merge keys are not seen; what the scan does not
//! find has no line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Location;

/// What the scan of one file found under its top-level `services:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileLines {
    services: BTreeMap<String, ServiceLines>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServiceLines {
    /// 1-based line of `<service>:`.
    line: usize,
    /// 1-based line of each `<field>:` written directly inside the service, first of each.
    fields: BTreeMap<String, usize>,
}

impl FileLines {
    /// 1-based line of `services.<service>`.
    pub(crate) fn service(&self, service: &str) -> Option<usize> {
        self.services.get(service).map(|s| s.line)
    }

    /// 1-based line of `services.<service>.<field>`.
    pub(crate) fn field(&self, service: &str, field: &str) -> Option<usize> {
        self.services.get(service)?.fields.get(field).copied()
    }
}

/// Scans `text` for `services.<service>` and `services.<service>.<field>` keys.
pub(crate) fn scan(text: &str) -> FileLines {
    let mut found = FileLines::default();
    let mut lines = text.lines().enumerate();
    if !lines
        .by_ref()
        .any(|(_, line)| key_of(line) == Some("services") && indent(line) == 0)
    {
        return found;
    }
    let mut service_indent = None;
    // The service being read (only its first declaration counts) and its fields' indent.
    let mut current: Option<&str> = None;
    let mut field_indent = None;
    for (index, line) in lines {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        if ind == 0 {
            break;
        }
        let service_level = *service_indent.get_or_insert(ind);
        if ind <= service_level {
            current = None;
            field_indent = None;
            if ind == service_level
                && let Some(key) = key_of(line)
                && !found.services.contains_key(key)
            {
                found.services.insert(
                    key.to_string(),
                    ServiceLines {
                        line: index + 1,
                        fields: BTreeMap::new(),
                    },
                );
                current = Some(key);
            }
            continue;
        }
        let Some(service) = current else {
            continue;
        };
        let level = *field_indent.get_or_insert(ind);
        if ind == level
            && let Some(key) = key_of(line)
            && let Some(lines) = found.services.get_mut(service)
        {
            lines.fields.entry(key.to_string()).or_insert(index + 1);
        }
    }
    found
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The key of a `key: value` or `key:` line, unquoted.
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (key, rest) = if let Some(quoted) = t.strip_prefix('"') {
        let end = quoted.find('"')?;
        (&quoted[..end], &quoted[end + 1..])
    } else if let Some(quoted) = t.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        (&quoted[..end], &quoted[end + 1..])
    } else {
        let end = t.find(':')?;
        (t[..end].trim_end(), &t[end..])
    };
    let after = rest.strip_prefix(':')?;
    if after.is_empty() || after.starts_with(' ') || after.starts_with('\t') {
        Some(key)
    } else {
        None
    }
}

/// Where each service of a project, and each of its fields, is written across its compose files.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldLocations {
    services: BTreeMap<String, ServiceLocations>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct ServiceLocations {
    /// The first file (in load order) that declares the service.
    declared: Option<Location>,
    /// Per field, the last file (in load order) that sets it: the one whose value wins.
    fields: BTreeMap<String, Location>,
}

impl FieldLocations {
    /// Combines the scans of the compose files, given in load order.
    pub(crate) fn of_files<'a>(files: impl IntoIterator<Item = (&'a Path, &'a FileLines)>) -> Self {
        let mut locations = FieldLocations::default();
        for (file, lines) in files {
            let at = |line: usize| Location {
                file: PathBuf::from(file),
                line: Some(line),
            };
            for (name, service) in &lines.services {
                let entry = locations.services.entry(name.clone()).or_default();
                entry.declared.get_or_insert_with(|| at(service.line));
                for (field, &line) in &service.fields {
                    entry.fields.insert(field.clone(), at(line));
                }
            }
        }
        locations
    }

    /// The locations in compose files given as text, in load order (for callers that build a
    /// [`crate::Project`] by hand, such as tests).
    pub fn of_texts<'a>(files: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Self {
        let scanned: Vec<(&Path, FileLines)> = files
            .into_iter()
            .map(|(file, text)| (file, scan(text)))
            .collect();
        Self::of_files(scanned.iter().map(|(file, lines)| (*file, lines)))
    }

    /// Where `services.<service>.<field>` is written: the last compose file (in load order) that
    /// sets the field in block style, else the first that declares the service.
    pub fn field(&self, service: &str, field: &str) -> Option<&Location> {
        let service = self.services.get(service)?;
        service.fields.get(field).or(service.declared.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_fields_are_found_by_indentation() {
        let text = "x-base: &base\n  image: nope\nservices:\n  web:\n    build: .\n    # image: old\n    image: nginx\n  \"db\":\n    <<: *base\nvolumes:\n  image:\n";
        let lines = scan(text);
        assert_eq!(lines.field("web", "image"), Some(7));
        assert_eq!(lines.field("web", "build"), Some(5));
        assert_eq!(lines.service("db"), Some(8));
        assert_eq!(lines.field("db", "image"), None);
        assert_eq!(lines.service("cache"), None);
        let flow = scan("services: {web: {image: x}}\n");
        assert_eq!(flow.service("web"), None);
    }

    #[test]
    fn build_lines() {
        let text = "# c\nservices:\n  web:\n    image: x\n\n    build: .\n  'api':\n    build:\n      context: .\nx-build:\n  build: 1\n";
        let lines = scan(text);
        assert_eq!(lines.field("web", "build"), Some(6));
        assert_eq!(lines.field("api", "build"), Some(8));
        assert_eq!(lines.field("none", "build"), None);
    }

    #[test]
    fn the_last_file_setting_a_field_wins_else_the_first_declaring_the_service() {
        let base = scan("services:\n  web:\n    image: a\n    pull_policy: always\n");
        let override_file = scan("services:\n  web:\n\n    image: b\n");
        let locations = FieldLocations::of_files([
            (Path::new("/p/compose.yaml"), &base),
            (Path::new("/p/compose.override.yaml"), &override_file),
        ]);
        let at = |field| {
            locations
                .field("web", field)
                .map(|l| (l.file.display().to_string(), l.line))
        };
        assert_eq!(
            at("image"),
            Some(("/p/compose.override.yaml".into(), Some(4)))
        );
        assert_eq!(at("pull_policy"), Some(("/p/compose.yaml".into(), Some(4))));
        assert_eq!(at("platform"), Some(("/p/compose.yaml".into(), Some(2))));
        assert_eq!(locations.field("db", "image"), None);
    }
}
