//! `HOST[:PORT][/PREFIX]`: the registry a bundle is pushed into, and where each image lands there.

use std::fmt;

use anyhow::{Result, bail};
use offpack_ref::ImageRef;

/// A registry and an optional repository prefix under it, e.g. `registry.site:5000/mirror`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host and port, e.g. `127.0.0.1:5000`.
    pub host: String,
    /// Repository path prefix without slashes at either end; empty for none.
    pub prefix: String,
}

impl Target {
    /// Parses `HOST[:PORT][/PREFIX]`. The host must be one Docker reads as a registry (it has a
    /// `.` or a `:` or is `localhost`), otherwise `HOST/x` would name a Docker Hub repository.
    pub fn parse(text: &str) -> Result<Target> {
        if let Some((scheme, _)) = text.split_once("://") {
            bail!(
                "registry `{text}`: write it without `{scheme}://` (HOST[:PORT][/PREFIX]); \
                 plain HTTP is chosen with --insecure"
            );
        }
        let text = text.trim_end_matches('/');
        let (host, prefix) = match text.split_once('/') {
            Some((host, prefix)) => (host, prefix),
            None => (text, ""),
        };
        if host.is_empty() {
            bail!("registry `{text}`: no host (expected HOST[:PORT][/PREFIX])");
        }
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            bail!(
                "registry `{text}`: Docker would read `{host}/…` as a Docker Hub repository; \
                 write the host with its domain or port (e.g. `{host}:5000`)"
            );
        }
        let target = Target {
            host: host.to_string(),
            prefix: prefix.to_string(),
        };
        // The name grammar is the reference parser's: a name under the target must parse and
        // stay on this host.
        let probe = format!("{}/x:t", target.repository_base());
        match ImageRef::parse(&probe) {
            Ok(r) if r.domain == target.host => Ok(target),
            Ok(_) => bail!("registry `{text}`: `{host}` is not read as a registry host"),
            Err(e) => bail!(
                "registry `{text}` is not a valid registry and prefix: {}",
                e.reason
            ),
        }
    }

    /// `HOST/PREFIX` (or `HOST`): what every pushed repository starts with.
    pub fn repository_base(&self) -> String {
        if self.prefix.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.prefix)
        }
    }

    /// The repository path (no host) that an image of `original` gets under the target:
    /// PREFIX, then the original path as its registry knows it. The original registry is
    /// dropped, as a mirror serves a path unchanged (`docker.io/library/python` →
    /// `PREFIX/library/python`, `ghcr.io/a/b` → `PREFIX/a/b`): that is what lets a Docker
    /// `registry-mirrors` entry or a containerd `hosts.toml` resolve the original name through
    /// the target. Two originals that differ only in their registry land on the same
    /// repository; the caller refuses that.
    pub fn repository(&self, original: &ImageRef) -> String {
        if self.prefix.is_empty() {
            original.path.clone()
        } else {
            format!("{}/{}", self.prefix, original.path)
        }
    }

    /// `original` rewritten under the target, keeping its tag (a digest is dropped: a pushed
    /// image's manifest is a new one). Fails when the result is not a valid reference (too
    /// long a name).
    pub fn rewrite(&self, original: &ImageRef) -> Result<ImageRef> {
        let text = format!("{}/{}", self.host, self.repository(original));
        match ImageRef::parse(&text) {
            Ok(mut r) => {
                r.tag = original.tag.clone();
                Ok(r)
            }
            Err(e) => bail!(
                "{} cannot be named under {self}: {}",
                original.familiar(),
                e.reason
            ),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(target: &str, original: &str) -> String {
        let target = Target::parse(target).unwrap();
        let r = target.rewrite(&ImageRef::parse(original).unwrap()).unwrap();
        format!("{}:{}", r.name(), r.tag.unwrap_or_default())
    }

    #[test]
    fn parses_host_port_and_prefix() {
        let t = Target::parse("127.0.0.1:5000").unwrap();
        assert_eq!((t.host.as_str(), t.prefix.as_str()), ("127.0.0.1:5000", ""));
        let t = Target::parse("registry.site/team/mirror/").unwrap();
        assert_eq!(t.host, "registry.site");
        assert_eq!(t.prefix, "team/mirror");
        assert_eq!(t.to_string(), "registry.site/team/mirror");
        assert!(Target::parse("localhost/x").is_ok());
    }

    #[test]
    fn refuses_what_is_no_registry() {
        let err = |s: &str| Target::parse(s).unwrap_err().to_string();
        assert!(
            err("https://r.site").contains("--insecure"),
            "{}",
            err("https://r.site")
        );
        assert!(err("registry/x").contains("Docker Hub"));
        assert!(err("").contains("no host"));
        assert!(err("r.site/Upper").contains("lowercase"));
        assert!(err("r.site//x").contains("not a valid"));
    }

    #[test]
    fn rewrites_under_the_target_dropping_the_original_registry() {
        assert_eq!(
            rewrite("127.0.0.1:5000", "python:3.11-slim"),
            "127.0.0.1:5000/library/python:3.11-slim"
        );
        assert_eq!(
            rewrite("r.site:5000/mirror", "docker.io/library/python:3.11-slim"),
            "r.site:5000/mirror/library/python:3.11-slim"
        );
        assert_eq!(rewrite("r.site/p", "ghcr.io/a/b:1"), "r.site/p/a/b:1");
        assert_eq!(rewrite("r.site", "app"), "r.site/library/app:latest");
        assert_eq!(
            rewrite("r.site", "localhost:5000/team/app:2"),
            "r.site/team/app:2"
        );
        let pinned = Target::parse("r.site")
            .unwrap()
            .rewrite(&ImageRef::parse(&format!("redis@sha256:{}", "a".repeat(64))).unwrap())
            .unwrap();
        assert_eq!((pinned.tag, pinned.digest), (None, None));
    }

    #[test]
    fn a_name_too_long_under_the_prefix_is_an_error() {
        let target = Target::parse(&format!("r.site/{}", "p".repeat(250))).unwrap();
        let err = target
            .rewrite(&ImageRef::parse("python:3").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("255"), "{err}");
    }
}
