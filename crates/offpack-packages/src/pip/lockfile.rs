//! What the Python lock files offpack reads have in common (`uv.lock`, `Pipfile.lock`): a list
//! of pinned distributions with their hashes. Each format's module parses its file into
//! [`LockedDistribution`]s and rewrites it for offpack's server; this module turns the list into
//! a requirements file with `--hash` pins, so the networked side resolves a lock with the same
//! `pip wheel` run in the step's image as a requirements file (pip checks the hashes and skips
//! what the image's environment markers exclude).

use crate::pip::names::normalize;

/// One pinned distribution of a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDistribution {
    /// The project name as the lock writes it.
    pub name: String,
    /// The exact version pinned.
    pub version: String,
    /// SHA-256 hex digests (lower case, no `sha256:` prefix) of the files the lock allows.
    pub sha256: Vec<String>,
    /// A PEP 508 marker saying when the distribution is installed (`None`: always).
    pub marker: Option<String>,
    /// 1-based line of the entry in the lock file, for messages.
    pub line: usize,
    /// Where the lock takes it from.
    pub source: LockedSource,
}

/// Where a locked distribution comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockedSource {
    /// A package index (PyPI or a configured one): offpack carries and serves its files.
    Index,
    /// The project itself or a member of its workspace (built from the context): nothing to carry.
    Project,
    /// A source offpack does not carry (a git repository, a direct URL, a local path), and why.
    NotCarried(String),
}

impl LockedDistribution {
    /// The PEP 503 normalized name.
    pub fn normalized(&self) -> String {
        normalize(&self.name)
    }
}

/// A requirements file pinning every index distribution of `locked` with its version, marker and
/// hashes, one per line (`name==1.0 ; marker --hash=sha256:…`); distributions from other sources
/// are left out (the caller names them). Entries without a hash are written without one: pip's
/// hash-checking mode would reject the whole file, so the lock's other pins stay unchecked then.
pub fn requirements_for_pip(locked: &[LockedDistribution]) -> String {
    let index: Vec<&LockedDistribution> = locked
        .iter()
        .filter(|d| d.source == LockedSource::Index)
        .collect();
    let all_hashed = index.iter().all(|d| !d.sha256.is_empty());
    let mut out = String::new();
    for dist in index {
        out.push_str(&dist.name);
        out.push_str("==");
        out.push_str(&dist.version);
        if let Some(marker) = &dist.marker {
            out.push_str(" ; ");
            out.push_str(marker);
        }
        if all_hashed {
            for hash in &dist.sha256 {
                out.push_str(" --hash=sha256:");
                out.push_str(hash);
            }
        }
        out.push('\n');
    }
    out
}

/// The hex digest of `sha256:HEX`, lower case; `None` for another algorithm or a malformed one.
pub(crate) fn sha256_hex(hash: &str) -> Option<&str> {
    let hex = hash.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// The 1-based line of byte `offset` of `text` (a TOML lock's span), for messages.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Appends `s` as a JSON string the way Python's `json` module writes it with
/// `ensure_ascii=True` (pipenv writes its lock so, and poetry hashes its content so).
pub(crate) fn write_python_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(
        name: &str,
        version: &str,
        hashes: &[&str],
        marker: Option<&str>,
    ) -> LockedDistribution {
        LockedDistribution {
            name: name.into(),
            version: version.into(),
            sha256: hashes.iter().map(|h| h.to_string()).collect(),
            marker: marker.map(str::to_string),
            line: 1,
            source: LockedSource::Index,
        }
    }

    #[test]
    fn index_distributions_become_hash_pinned_requirements() {
        let project = LockedDistribution {
            source: LockedSource::Project,
            ..dist("app", "0.1.0", &[], None)
        };
        let git = LockedDistribution {
            source: LockedSource::NotCarried("a git repository".into()),
            ..dist("tool", "1.0", &[], None)
        };
        let text = requirements_for_pip(&[
            dist("bottle", "0.12.25", &["aa", "bb"], None),
            project,
            dist(
                "colorama",
                "0.4.6",
                &["cc"],
                Some("sys_platform == 'win32'"),
            ),
            git,
        ]);
        assert_eq!(
            text,
            "bottle==0.12.25 --hash=sha256:aa --hash=sha256:bb\n\
             colorama==0.4.6 ; sys_platform == 'win32' --hash=sha256:cc\n"
        );
        let parsed = crate::pip::requirements::parse("lock", &text).expect("pip-readable");
        assert_eq!(parsed.requirements().count(), 2);
    }

    #[test]
    fn one_unhashed_entry_drops_hash_checking_for_all() {
        let text =
            requirements_for_pip(&[dist("a", "1", &["aa"], None), dist("b", "2", &[], None)]);
        assert_eq!(text, "a==1\nb==2\n");
    }
}
