//! Docker image references, normalized the way the Docker CLI, the engine and
//! BuildKit do it (`github.com/distribution/reference`: `ParseNormalizedNamed`
//! followed by `TagNameOnly`). The one parser for references in offpack: the
//! Dockerfile crate, the bundle crate and the engine access all split names here.

#![warn(missing_docs)]

use std::fmt;

use serde::Serialize;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// Longest repository path distribution/reference accepts.
const MAX_PATH_LEN: usize = 255;

/// A fully normalized image reference, e.g. `docker.io/library/node:18`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ImageRef {
    /// Registry host (and port), e.g. `docker.io`, `localhost:5000`. Empty only for
    /// the odd names distribution/reference accepts without any domain.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/node`.
    pub path: String,
    /// Tag; `latest` is filled in when the reference names neither a tag nor a digest.
    pub tag: Option<String>,
    /// Content digest, e.g. `sha256:…` (validated).
    pub digest: Option<String>,
}

/// Why a string is not a valid image reference. The message matches Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct RefError {
    /// The string that was parsed.
    pub input: String,
    /// Docker's reason, e.g. `repository name must be lowercase`.
    pub reason: String,
}

impl ImageRef {
    /// Parses and normalizes a reference as Docker does: `node` →
    /// `docker.io/library/node:latest`, `index.docker.io/x` → `docker.io/library/x:latest`,
    /// `host:5000/x/y:t` stays on `host:5000`; `name:tag@digest` keeps both.
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let (reference, _) = Self::parse_with_implicit_tag(s)?;
        Ok(reference)
    }

    /// Like [`ImageRef::parse`], also telling whether the `latest` tag was filled in
    /// because the input named neither tag nor digest.
    pub fn parse_with_implicit_tag(s: &str) -> Result<(ImageRef, bool), RefError> {
        let err = |reason: &str| RefError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if is_identifier(s) {
            return Err(err(
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(err("repository name must be lowercase"));
        }
        let full = format!("{domain}/{remainder}");
        let parts = match match_reference(&full) {
            Some(parts) => parts,
            None => {
                let lower = full.to_lowercase();
                if lower != full && match_reference(&lower).is_some() {
                    return Err(err("repository name must be lowercase"));
                }
                return Err(err("invalid reference format"));
            }
        };
        if parts.path.len() > MAX_PATH_LEN {
            return Err(err("repository name must not be more than 255 characters"));
        }
        if let Some(digest) = parts.digest {
            validate_digest(digest).map_err(err)?;
        }
        let implicit = parts.tag.is_none() && parts.digest.is_none();
        let tag = match parts.tag {
            Some(tag) => Some(tag.to_string()),
            None if implicit => Some(DEFAULT_TAG.to_string()),
            None => None,
        };
        Ok((
            ImageRef {
                domain: parts.domain.to_string(),
                path: parts.path.to_string(),
                tag,
                digest: parts.digest.map(str::to_string),
            },
            implicit,
        ))
    }

    /// The repository without tag or digest, fully qualified: `docker.io/library/node`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The repository as Docker shows it, without tag or digest: `node`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as Docker shows it: `node:18`, `localhost:5000/x:1`, `user/app:2`.
    pub fn familiar(&self) -> String {
        let mut name = self.familiar_name();
        self.push_tag_and_digest(&mut name);
        name
    }

    /// True for official Docker Hub images (`docker.io/library/<name>`).
    pub fn is_docker_hub_library(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
            && self
                .path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .is_some_and(|rest| !rest.contains('/'))
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }
}

impl fmt::Display for ImageRef {
    /// Fully qualified: `docker.io/library/node:18`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

/// `[a-f0-9]{64}`: an image ID, which Docker refuses as a repository name.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// distribution/reference `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (
            DEFAULT_DOMAIN.to_string(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, mut remote) = if maybe_domain == "localhost" {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN.to_string(), maybe_remote.to_string())
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else {
        (DEFAULT_DOMAIN.to_string(), name.to_string())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

struct RefParts<'a> {
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Matches distribution/reference's anchored `ReferenceRegexp`
/// (`name[:tag][@digest]`) without a regex engine. Neither name nor tag may
/// contain `@`, and a tag contains neither `/` nor `:`, so the splits below are
/// the only ones the regex could choose.
fn match_reference(s: &str) -> Option<RefParts<'_>> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((name_tag, digest)) => {
            if !is_digest_pattern(digest) {
                return None;
            }
            (name_tag, Some(digest))
        }
        None => (s, None),
    };
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&name_tag[..colon], Some(&name_tag[colon + 1..]))
        }
        _ => (name_tag, None),
    };
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return None;
    }
    if let Some((domain, path)) = name.split_once('/')
        && is_domain_and_port(domain)
        && is_remote_name(path)
    {
        return Some(RefParts {
            domain,
            path,
            tag,
            digest,
        });
    }
    if is_remote_name(name) {
        return Some(RefParts {
            domain: "",
            path: name,
            tag,
            digest,
        });
    }
    None
}

/// `[\w][\w.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match bytes.split_first() {
        Some((first, rest)) => {
            word(*first)
                && rest.len() <= 127
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// `pathComponent(/pathComponent)*`
fn is_remote_name(name: &str) -> bool {
    name.split('/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if expect_alnum {
            if !alnum(bytes[i]) {
                return false;
            }
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
        } else {
            let rest = &bytes[i..];
            let sep_len = if rest.starts_with(b"__") {
                2
            } else if rest[0] == b'.' || rest[0] == b'_' {
                1
            } else if rest[0] == b'-' {
                rest.iter().take_while(|&&b| b == b'-').count()
            } else {
                return false;
            };
            i += sep_len;
            expect_alnum = true;
        }
    }
    !bytes.is_empty() && !expect_alnum
}

/// `host(:port)?` where host is a DNS name (components of letters, digits and
/// inner hyphens) or a bracketed IPv6 address.
fn is_domain_and_port(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return false;
        };
        let inner = &rest[..close];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let after = &rest[close + 1..];
        if after.is_empty() {
            return true;
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(host) => host.split('.').all(|component| {
            let bytes = component.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                }
                _ => false,
            }
        }),
    }
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`
fn is_digest_pattern(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let bytes = part.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest `Digest.Validate` for the algorithms Docker registers.
fn validate_digest(digest: &str) -> Result<(), &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("invalid checksum digest format");
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != expected_len {
        return Err("invalid checksum digest length");
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("invalid checksum digest format");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    fn full(s: &str) -> String {
        match ImageRef::parse(s) {
            Ok(r) => r.to_string(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn familiar_names_are_normalized_to_docker_hub() {
        assert_eq!(full("node"), "docker.io/library/node:latest");
        assert_eq!(full("node:18"), "docker.io/library/node:18");
        assert_eq!(full("docker.io/node:18"), "docker.io/library/node:18");
        assert_eq!(
            full("index.docker.io/library/debian"),
            "docker.io/library/debian:latest"
        );
        assert_eq!(
            full("index.docker.io/debian"),
            "docker.io/library/debian:latest"
        );
        assert_eq!(full("docker/migrator"), "docker.io/docker/migrator:latest");
        assert_eq!(full("library/foo/bar"), "docker.io/library/foo/bar:latest");
        assert_eq!(full("test_com/foo"), "docker.io/test_com/foo:latest");
        assert_eq!(full("192.168.0.1"), "docker.io/library/192.168.0.1:latest");
        assert_eq!(full("192.168.0.1:80"), "docker.io/library/192.168.0.1:80");
    }

    #[test]
    fn registries_with_hosts_and_ports_keep_their_domain() {
        let r = ImageRef::parse("host:5000/x/y:t").unwrap();
        assert_eq!((r.domain.as_str(), r.path.as_str()), ("host:5000", "x/y"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(full("localhost/fooo"), "localhost/fooo:latest");
        assert_eq!(full("LOCALDOMAIN/fooo/bar"), "LOCALDOMAIN/fooo/bar:latest");
        assert_eq!(full("Foo/bar"), "Foo/bar:latest");
        assert_eq!(
            full("127.0.0.1:5000/library/debian"),
            "127.0.0.1:5000/library/debian:latest"
        );
        assert_eq!(
            full("[fc00::1]:5000/docker/docker"),
            "[fc00::1]:5000/docker/docker:latest"
        );
        assert_eq!(
            full("xn--n3h.com:18080/foo"),
            "xn--n3h.com:18080/foo:latest"
        );
        assert_eq!(
            full("docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"),
            "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest"
        );
    }

    #[test]
    fn familiar_form_matches_docker_ui() {
        let fam = |s: &str| ImageRef::parse(s).unwrap().familiar();
        assert_eq!(fam("docker.io/library/node:18"), "node:18");
        assert_eq!(fam("node"), "node:latest");
        assert_eq!(fam("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(fam("docker.io/library/foo/bar"), "library/foo/bar:latest");
        assert_eq!(fam("nonlibrary/ubuntu"), "nonlibrary/ubuntu:latest");
        assert_eq!(
            fam(&format!("busybox@{DIGEST}")),
            format!("busybox@{DIGEST}")
        );
    }

    #[test]
    fn digests_are_validated_and_tag_with_digest_is_kept() {
        let r = ImageRef::parse(&format!("busybox:1.36@{DIGEST}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        let r = ImageRef::parse(&format!("busybox@{DIGEST}")).unwrap();
        assert_eq!(
            r.tag, None,
            "no latest is filled in when a digest pins the image"
        );
        let short = ImageRef::parse("busybox@sha256:7cc4b5aefd1d0cadf8d97d4350462ba5").unwrap_err();
        assert_eq!(short.reason, "invalid checksum digest length");
        let upper = ImageRef::parse(&format!(
            "busybox@{}",
            DIGEST.to_uppercase().replace("SHA", "sha")
        ))
        .unwrap_err();
        assert_eq!(upper.reason, "invalid checksum digest format");
        let algo = ImageRef::parse("busybox@md5:7cc4b5aefd1d0cadf8d97d4350462ba5").unwrap_err();
        assert_eq!(algo.reason, "unsupported digest algorithm");
    }

    #[test]
    fn invalid_references_are_rejected_with_dockers_reason() {
        for bad in [
            "https://github.com/docker/docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "",
            "node:",
            "node:-bad",
            "a/b:c:d",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(
            ImageRef::parse("docker/Docker").unwrap_err().reason,
            "repository name must be lowercase"
        );
        assert_eq!(
            ImageRef::parse("docker.io/docker/Docker")
                .unwrap_err()
                .reason,
            "repository name must be lowercase"
        );
        assert!(
            ImageRef::parse("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a")
                .unwrap_err()
                .reason
                .contains("64-byte hexadecimal")
        );
        let long = format!("a/{}", "b".repeat(300));
        assert!(ImageRef::parse(&long).unwrap_err().reason.contains("255"));
    }

    #[test]
    fn tags_allow_128_characters() {
        assert!(ImageRef::parse(&format!("node:{}", "a".repeat(128))).is_ok());
        assert!(ImageRef::parse(&format!("node:{}", "a".repeat(129))).is_err());
    }

    #[test]
    fn path_component_separators_follow_the_grammar() {
        assert!(ImageRef::parse("a__b").is_ok());
        assert!(ImageRef::parse("a---b").is_ok());
        assert!(ImageRef::parse("a___b").is_err());
        assert!(ImageRef::parse("a._b").is_err());
        assert!(ImageRef::parse("ab.").is_err());
    }

    /// The cases the hand-written splitters (engine `split_tag`, bundle `tag_of` /
    /// `fully_qualified`, plan `pin_fix`) handled before they were replaced by this type.
    #[test]
    fn splits_what_the_old_splitters_split() {
        let split = |s: &str| {
            let r = ImageRef::parse(s).unwrap();
            (r.familiar_name(), r.tag, r.digest)
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(split("node:18"), ("node".into(), some("18"), None));
        assert_eq!(split("node"), ("node".into(), some("latest"), None));
        assert_eq!(
            split("localhost:5000/app"),
            ("localhost:5000/app".into(), some("latest"), None)
        );
        assert_eq!(
            split("localhost:5000/app:v1"),
            ("localhost:5000/app".into(), some("v1"), None)
        );
        assert_eq!(
            split(&format!("node:18@{DIGEST}")),
            ("node".into(), some("18"), some(DIGEST))
        );
        assert_eq!(
            split(&format!("redis@{DIGEST}")),
            ("redis".into(), None, some(DIGEST))
        );
        assert_eq!(
            split("reg.local:5000/a/b:1"),
            ("reg.local:5000/a/b".into(), some("1"), None)
        );
        assert_eq!(
            split("localhost/app"),
            ("localhost/app".into(), some("latest"), None)
        );
        assert_eq!(
            split("docker.io/python"),
            ("python".into(), some("latest"), None)
        );
        assert_eq!(
            split("bitnami/redis:7"),
            ("bitnami/redis".into(), some("7"), None)
        );
        assert_eq!(full("reg.local:5000/a/b:1"), "reg.local:5000/a/b:1");
        assert_eq!(
            full(&format!("redis@{DIGEST}")),
            format!("docker.io/library/redis@{DIGEST}")
        );
    }

    #[test]
    fn implicit_latest_is_told_apart_from_a_written_one() {
        assert!(ImageRef::parse_with_implicit_tag("redis").unwrap().1);
        assert!(!ImageRef::parse_with_implicit_tag("redis:latest").unwrap().1);
        assert!(
            !ImageRef::parse_with_implicit_tag(&format!("redis@{DIGEST}"))
                .unwrap()
                .1
        );
    }

    #[test]
    fn docker_hub_library_detection() {
        assert!(ImageRef::parse("node:18").unwrap().is_docker_hub_library());
        assert!(
            !ImageRef::parse("bitnami/redis")
                .unwrap()
                .is_docker_hub_library()
        );
        assert!(
            !ImageRef::parse("mirror.example.com/library/node")
                .unwrap()
                .is_docker_hub_library()
        );
    }
}
