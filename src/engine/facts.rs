//! What the engine supports, for `offpack doctor` and for choosing how to export, load and build.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::Engine;

/// Facts about one engine, as it reports them.
#[derive(Debug, Clone, Serialize)]
pub struct EngineFacts {
    pub endpoint: String,
    pub server_version: String,
    pub api_version: String,
    pub min_api_version: String,
    /// The API version offpack negotiated and uses.
    pub client_api_version: String,
    pub os: String,
    pub arch: String,
    pub kernel: String,
    pub operating_system: String,
    pub storage_driver: String,
    /// True when images live in containerd's store (the default on fresh installs of engine 29+).
    pub containerd_image_store: bool,
    pub docker_root_dir: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    /// Builders the engine's `POST /build` accepts: `classic` always, `buildkit` from API 1.39.
    pub builders: Vec<String>,
    /// Whether the docker CLI's buildx plugin is installed on this machine.
    pub buildx_plugin: bool,
    /// Export layout of `docker save`: `legacy` (< 25) or `oci` (25+, OCI layout plus manifest.json).
    pub save_layout: String,
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub registries: Vec<RegistryCheck>,
}

/// Whether the engine can reach one registry.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryCheck {
    pub registry: String,
    pub reachable: bool,
    pub detail: String,
}

const BUILDX_PLUGIN_DIRS: &[&str] = &[
    "/usr/libexec/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
];

impl Engine {
    /// Asks the engine what it is and checks each registry in `registries`.
    pub async fn facts(&self, registries: &[String]) -> Result<EngineFacts> {
        let version = self.docker().version().await?;
        let info = self.docker().info().await?;
        let driver_status = info.driver_status.clone().unwrap_or_default();
        let containerd_image_store = driver_status.iter().any(|kv| {
            kv.first().is_some_and(|k| k == "driver-type")
                && kv.get(1).is_some_and(|v| v.contains("snapshotter"))
        });
        let api_version = version.api_version.clone().unwrap_or_default();
        let builders = if api_at_least(&api_version, 1, 39) {
            vec!["classic".to_string(), "buildkit".to_string()]
        } else {
            vec!["classic".to_string()]
        };
        let major: u32 = version
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let registry_config = info.registry_config.clone().unwrap_or_default();
        let mut checks = Vec::new();
        for registry in registries {
            checks.push(self.check_registry(registry).await);
        }
        let home_plugin = std::env::var_os("HOME")
            .map(|h| {
                Path::new(&h)
                    .join(".docker/cli-plugins/docker-buildx")
                    .exists()
            })
            .unwrap_or(false);
        Ok(EngineFacts {
            endpoint: self.endpoint().to_string(),
            server_version: version.version.unwrap_or_default(),
            api_version,
            min_api_version: version.min_api_version.unwrap_or_default(),
            client_api_version: self.docker().client_version().to_string(),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            kernel: version.kernel_version.unwrap_or_default(),
            operating_system: info.operating_system.unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
            containerd_image_store,
            docker_root_dir: info.docker_root_dir.unwrap_or_default(),
            cpus: info.ncpu.unwrap_or_default(),
            memory_bytes: info.mem_total.unwrap_or_default(),
            builders,
            buildx_plugin: home_plugin
                || BUILDX_PLUGIN_DIRS
                    .iter()
                    .any(|d| Path::new(d).join("docker-buildx").exists()),
            save_layout: if major >= 25 || containerd_image_store {
                "oci"
            } else {
                "legacy"
            }
            .to_string(),
            registry_mirrors: registry_config.mirrors.unwrap_or_default(),
            insecure_registries: registry_config.insecure_registry_cidrs.unwrap_or_default(),
            registries: checks,
        })
    }

    /// Asks the engine to look up a manifest on `registry`: any answer from the registry (even
    /// "not found" or "unauthorized") means it is reachable; a network error means it is not.
    async fn check_registry(&self, registry: &str) -> RegistryCheck {
        let probe = if registry == "docker.io" {
            "docker.io/library/hello-world:latest".to_string()
        } else {
            format!("{registry}/offpack-doctor-probe:latest")
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            self.docker().inspect_registry_image(&probe, None),
        )
        .await;
        let (reachable, detail) = match answer {
            Ok(Ok(_)) => (true, "answered".to_string()),
            Ok(Err(e)) => {
                let text = e.to_string();
                let lower = text.to_lowercase();
                let network = [
                    "connection refused",
                    "no such host",
                    "timeout",
                    "i/o timeout",
                    "network is unreachable",
                    "dial tcp",
                    "server misbehaving",
                    "no route",
                ];
                if network.iter().any(|n| lower.contains(n)) {
                    (false, text)
                } else {
                    (
                        true,
                        format!("answered: {}", text.lines().next().unwrap_or_default()),
                    )
                }
            }
            Err(_) => (false, "no answer within 10 s".to_string()),
        };
        RegistryCheck {
            registry: registry.to_string(),
            reachable,
            detail,
        }
    }
}

pub(super) fn api_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_api_versions_numerically() {
        assert!(api_at_least("1.41", 1, 39));
        assert!(api_at_least("1.100", 1, 39));
        assert!(!api_at_least("1.38", 1, 39));
        assert!(!api_at_least("", 1, 39));
    }
}
