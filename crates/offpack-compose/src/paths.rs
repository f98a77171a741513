//! Lexical path helpers (no file system access).

use std::path::{Component, Path, PathBuf};

/// Joins `path` onto `base` unless it is absolute, then removes `.` and `..` lexically,
/// like Go's `filepath.Join`.
pub(crate) fn join_clean(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    clean(&joined)
}

pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let at_root = out.parent().is_none() && out.has_root();
                if !at_root && !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `~` and `~/...` become the home directory (from the `HOME` the caller passed).
pub(crate) fn expand_home(path: &str, home: Option<&str>) -> String {
    match home {
        Some(home) if path == "~" => home.to_string(),
        Some(home) if path.starts_with("~/") => format!("{home}{}", &path[1..]),
        _ => path.to_string(),
    }
}

/// Whether a build context is not a local directory (compose-go's rules).
pub(crate) fn is_remote_context(context: &str) -> bool {
    context.contains("://")
        || context.starts_with("service:")
        || [
            "https://",
            "http://",
            "git://",
            "ssh://",
            "github.com/",
            "git@",
        ]
        .iter()
        .any(|prefix| context.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_clean() {
        let base = Path::new("/proj/app");
        assert_eq!(
            join_clean(base, Path::new("./web")),
            PathBuf::from("/proj/app/web")
        );
        assert_eq!(
            join_clean(base, Path::new("../lib/./x")),
            PathBuf::from("/proj/lib/x")
        );
        assert_eq!(
            join_clean(base, Path::new("/abs/../y")),
            PathBuf::from("/y")
        );
        assert_eq!(join_clean(base, Path::new(".")), PathBuf::from("/proj/app"));
        assert_eq!(
            join_clean(Path::new("/"), Path::new("../..")),
            PathBuf::from("/")
        );
    }

    #[test]
    fn home_expansion() {
        assert_eq!(expand_home("~/src", Some("/home/u")), "/home/u/src");
        assert_eq!(expand_home("~", Some("/home/u")), "/home/u");
        assert_eq!(expand_home("~other/x", Some("/home/u")), "~other/x");
        assert_eq!(expand_home("~/x", None), "~/x");
    }

    #[test]
    fn remote_contexts() {
        for remote in [
            "https://github.com/docker/app.git#main",
            "http://example.invalid/ctx.tar.gz",
            "git@github.com:org/repo.git",
            "github.com/org/repo",
            "git://host/repo",
            "ssh://git@host/repo.git",
            "docker-image://alpine",
            "service:base",
        ] {
            assert!(is_remote_context(remote), "{remote}");
        }
        for local in [".", "./app", "/abs", "app.git", "github.company/x"] {
            assert!(!is_remote_context(local), "{local}");
        }
    }
}
