//! Python project names (PEP 503) and distribution file names (PEP 427 wheels, sdists).

/// PEP 503 normalized name: runs of `-`, `_`, `.` become one `-`, lowercase.
/// `Foo.Bar__baz` → `foo-bar-baz`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// The parts of a wheel file name (PEP 427):
/// `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`, where each tag
/// part may be a compressed set joined by `.` (`py2.py3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// The distribution name as written in the file name (`_` for `-` usually).
    pub name: String,
    /// [`normalize`]d name.
    pub normalized: String,
    /// Version as written.
    pub version: String,
    /// Optional build tag (starts with a digit).
    pub build: Option<String>,
    /// Python tags, e.g. `["py2", "py3"]` or `["cp311"]`.
    pub python_tags: Vec<String>,
    /// ABI tags, e.g. `["none"]`, `["cp311"]`.
    pub abi_tags: Vec<String>,
    /// Platform tags, e.g. `["any"]` or `["manylinux_2_17_x86_64", "manylinux2014_x86_64"]`.
    pub platform_tags: Vec<String>,
}

impl WheelName {
    /// Parses a wheel file name; `None` when it is not one (wrong suffix, wrong
    /// number of parts, an empty part, a build tag not starting with a digit).
    pub fn parse(filename: &str) -> Option<WheelName> {
        let stem = strip_suffix_ignore_case(filename, ".whl")?;
        if stem.contains('/') || stem.contains('\\') {
            return None;
        }
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat) = match parts.as_slice() {
            [n, v, p, a, pl] => (*n, *v, None, *p, *a, *pl),
            [n, v, b, p, a, pl] => (*n, *v, Some(*b), *p, *a, *pl),
            _ => return None,
        };
        if [name, version, py, abi, plat].iter().any(|s| s.is_empty()) {
            return None;
        }
        if let Some(b) = build
            && !b.starts_with(|c: char| c.is_ascii_digit())
        {
            return None;
        }
        let tags = |s: &str| -> Option<Vec<String>> {
            let v: Vec<String> = s.split('.').map(str::to_string).collect();
            if v.iter().any(|t| t.is_empty()) {
                None
            } else {
                Some(v)
            }
        };
        Some(WheelName {
            name: name.to_string(),
            normalized: normalize(name),
            version: version.to_string(),
            build: build.map(str::to_string),
            python_tags: tags(py)?,
            abi_tags: tags(abi)?,
            platform_tags: tags(plat)?,
        })
    }

    /// True when the wheel runs on any platform (`-any`).
    pub fn is_universal_platform(&self) -> bool {
        self.platform_tags.iter().all(|t| t == "any")
    }
}

const SDIST_SUFFIXES: &[&str] = &[".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];

/// Splits an sdist file name (`name-1.0.tar.gz`, `name-1.0.zip`, …) into
/// `(name, version)`: at the last `-` followed by a digit. `None` when the
/// suffix is not an sdist's or no such `-` exists.
pub fn sdist_name(filename: &str) -> Option<(String, String)> {
    if filename.contains('/') || filename.contains('\\') {
        return None;
    }
    let stem = SDIST_SUFFIXES
        .iter()
        .find_map(|suffix| strip_suffix_ignore_case(filename, suffix))?;
    let split = stem
        .char_indices()
        .filter(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)
        .next_back()?;
    let (name, version) = (&stem[..split], &stem[split + 1..]);
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some((name.to_string(), version.to_string()))
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    if !s.is_char_boundary(cut) || !s[cut..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    Some(&s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_pep_503() {
        assert_eq!(normalize("Django"), "django");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("Foo.Bar__baz--Qux"), "foo-bar-baz-qux");
        assert_eq!(normalize("typing_extensions"), "typing-extensions");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn parses_universal_wheel() {
        let w = WheelName::parse("six-1.16.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(w.name, "six");
        assert_eq!(w.version, "1.16.0");
        assert_eq!(w.build, None);
        assert_eq!(w.python_tags, ["py2", "py3"]);
        assert_eq!(w.abi_tags, ["none"]);
        assert_eq!(w.platform_tags, ["any"]);
        assert!(w.is_universal_platform());
    }

    #[test]
    fn parses_platform_wheel_with_compressed_tags() {
        let w = WheelName::parse(
            "charset_normalizer-3.3.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.name, "charset_normalizer");
        assert_eq!(w.normalized, "charset-normalizer");
        assert_eq!(w.python_tags, ["cp311"]);
        assert_eq!(w.abi_tags, ["cp311"]);
        assert_eq!(
            w.platform_tags,
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        assert!(!w.is_universal_platform());
    }

    #[test]
    fn parses_build_tag() {
        let w = WheelName::parse("pkg-1.0-1local-py3-none-any.whl").unwrap();
        assert_eq!(w.build.as_deref(), Some("1local"));
        assert_eq!(w.version, "1.0");
    }

    #[test]
    fn rejects_non_wheels() {
        for bad in [
            "six-1.16.0.tar.gz",
            "six-1.16.0-py3-none.whl",
            "a-b-c-d-e-f-g.whl",
            "pkg-1.0-x1-py3-none-any.whl",
            "pkg--py3-none-any.whl",
            "pkg-1.0-py3..py2-none-any.whl",
            "dir/pkg-1.0-py3-none-any.whl",
            ".whl",
            "é.whl",
        ] {
            assert_eq!(WheelName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn splits_sdist_names() {
        assert_eq!(
            sdist_name("requests-2.31.0.tar.gz"),
            Some(("requests".into(), "2.31.0".into()))
        );
        assert_eq!(
            sdist_name("python-dateutil-2.8.2.tar.gz"),
            Some(("python-dateutil".into(), "2.8.2".into()))
        );
        assert_eq!(
            sdist_name("pkg-2-1.0.zip"),
            Some(("pkg-2".into(), "1.0".into()))
        );
        assert_eq!(
            sdist_name("Foo_Bar-1.0rc1.TAR.GZ"),
            Some(("Foo_Bar".into(), "1.0rc1".into()))
        );
        assert_eq!(sdist_name("noversion.tar.gz"), None);
        assert_eq!(sdist_name("pkg-abc.tar.gz"), None);
        assert_eq!(sdist_name("pkg-1.0.whl"), None);
        assert_eq!(sdist_name("-1.0.tar.gz"), None);
    }
}
