//! The settings that make an image's original name resolve through the registry it was pushed
//! into: Docker's `daemon.json` `registry-mirrors` and containerd's `hosts.toml` files. Pure
//! text; nothing is installed.

use serde::Serialize;

use crate::Target;

/// The mirror settings for one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorSettings {
    /// `/etc/docker/daemon.json` keys for Docker Hub images, when Docker can use the target as
    /// a mirror (it mirrors Docker Hub alone, and only at a registry's root).
    pub docker_daemon_json: Option<serde_json::Value>,
    /// What Docker users do when `docker_daemon_json` is not enough (or is `None`).
    pub docker_notes: Vec<String>,
    /// One `hosts.toml` per original registry.
    pub containerd: Vec<HostsToml>,
}

/// A containerd `hosts.toml` for one original registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostsToml {
    /// The original registry (`docker.io`, `ghcr.io`).
    pub upstream: String,
    /// Where the file goes: `/etc/containerd/certs.d/<upstream>/hosts.toml`.
    pub path: String,
    /// The file.
    pub content: String,
}

/// The settings for images of the original registries `upstreams` pushed under `target`;
/// `insecure` when it speaks plain HTTP, `ca_file` the CA a client must trust for it.
pub fn settings(
    target: &Target,
    upstreams: &[String],
    insecure: bool,
    ca_file: Option<&str>,
) -> MirrorSettings {
    let scheme = if insecure { "http" } else { "https" };
    let mut upstreams: Vec<&String> = upstreams.iter().collect();
    upstreams.sort();
    upstreams.dedup();
    let mut docker_notes = Vec::new();
    let hub = upstreams.iter().any(|u| u.as_str() == "docker.io");
    let docker_daemon_json = if hub && target.prefix.is_empty() {
        let mut doc = serde_json::json!({
            "registry-mirrors": [format!("{scheme}://{}", target.host)],
        });
        if insecure {
            doc["insecure-registries"] = serde_json::json!([target.host]);
        }
        if ca_file.is_some() {
            docker_notes.push(format!(
                "copy the CA certificate to /etc/docker/certs.d/{}/ca.crt on each host",
                target.host
            ));
        }
        docker_notes.push(
            "merge into /etc/docker/daemon.json and restart dockerd; Docker then pulls Docker \
             Hub names through the mirror"
                .to_string(),
        );
        Some(doc)
    } else {
        if hub {
            docker_notes.push(format!(
                "Docker's registry-mirrors take a registry root, not a path: push with \
                 --registry {} (no prefix) to use it as a mirror, or use the pushed names",
                target.host
            ));
        }
        None
    };
    for other in upstreams.iter().filter(|u| u.as_str() != "docker.io") {
        docker_notes.push(format!(
            "Docker mirrors Docker Hub alone: images of {other} are pulled by their pushed names \
             (see the mapping)"
        ));
    }
    let containerd = upstreams
        .iter()
        .map(|upstream| {
            let server = if upstream.as_str() == "docker.io" {
                "https://registry-1.docker.io".to_string()
            } else {
                format!("https://{upstream}")
            };
            let (url, override_path) = if target.prefix.is_empty() {
                (format!("{scheme}://{}", target.host), false)
            } else {
                // With a prefix, containerd must be told the full path: it appends only the
                // repository and /manifests/… to a host URL whose path it does not own.
                (format!("{scheme}://{}/v2/{}", target.host, target.prefix), true)
            };
            let mut content = format!(
                "# offpack push: pull {upstream} images through {target}\n\
                 server = \"{server}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            );
            if override_path {
                content.push_str("  override_path = true\n");
            }
            if let Some(ca) = ca_file {
                content.push_str(&format!("  ca = \"{}\"\n", ca.replace('\\', "\\\\").replace('"', "\\\"")));
            }
            HostsToml {
                upstream: upstream.to_string(),
                path: format!("/etc/containerd/certs.d/{upstream}/hosts.toml"),
                content,
            }
        })
        .collect();
    MirrorSettings {
        docker_daemon_json,
        docker_notes,
        containerd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_at_the_root_over_plain_http() {
        let target = Target::parse("10.0.0.5:5000").unwrap();
        let s = settings(&target, &["docker.io".into()], true, None);
        insta::assert_json_snapshot!(s);
    }

    #[test]
    fn prefix_and_two_registries_with_a_ca() {
        let target = Target::parse("registry.site/mirror").unwrap();
        let s = settings(
            &target,
            &["ghcr.io".into(), "docker.io".into(), "ghcr.io".into()],
            false,
            Some("/etc/containerd/certs.d/registry.site/ca.crt"),
        );
        assert!(s.docker_daemon_json.is_none());
        insta::assert_json_snapshot!(s);
        insta::assert_snapshot!(s.containerd[0].content);
    }
}
