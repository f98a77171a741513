//! Registry credentials from the user's Docker config, the way the docker CLI finds them.
//! They are handed to the engine for a pull and never written anywhere.

use anyhow::Result;
use bollard::auth::DockerCredentials;

/// The registry host that holds `reference` (`docker.io` when none is written), as Docker
/// normalizes references.
pub fn registry_host(reference: &str) -> String {
    offpack_ref::ImageRef::parse(reference)
        .map(|r| r.domain)
        .unwrap_or_else(|_| "docker.io".to_string())
}

/// Credentials for the registry of `reference` from `~/.docker/config.json` (or `$DOCKER_CONFIG`),
/// including credential helpers; `None` when the user has none for that registry.
pub fn registry_credentials(reference: &str) -> Result<Option<DockerCredentials>> {
    let host = registry_host(reference);
    Ok(
        offpack_registry::credentials::lookup(&host)?.map(|c| DockerCredentials {
            username: Some(c.username),
            password: Some(c.password),
            identitytoken: c.identity_token,
            serveraddress: Some(host),
            ..Default::default()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_host_follows_docker_rules() {
        assert_eq!(registry_host("node:18"), "docker.io");
        assert_eq!(registry_host("library/node"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("localhost/app"), "localhost");
        assert_eq!(registry_host("ghcr.io/o/app"), "ghcr.io");
    }
}
