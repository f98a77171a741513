//! Registry credentials from the user's Docker config, the way the docker CLI finds them.
//! They are handed to the engine for a pull and never written anywhere.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use bollard::auth::DockerCredentials;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

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
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match offpack_fs::read_to_string(&path, offpack_fs::DOCKER_CONFIG) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let config: DockerConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let host = registry_host(reference);
    let host = host.as_str();
    let keys: Vec<String> = if host == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    };
    let helper = keys
        .iter()
        .find_map(|k| config.cred_helpers.get(k).cloned())
        .or(config.creds_store.clone());
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
        if let Some(creds) = from_entry(entry, host)? {
            return Ok(Some(creds));
        }
    }
    match helper {
        Some(helper) => from_helper(&helper, &keys[0], host),
        None => Ok(None),
    }
}

fn from_entry(entry: &AuthEntry, host: &str) -> Result<Option<DockerCredentials>> {
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = decode_base64(auth)
                .with_context(|| format!("the saved login for {host} is not valid base64"))?;
            match decoded.split_once(':') {
                Some((u, p)) => (u.to_string(), p.to_string()),
                None => bail!("the saved login for {host} has no `user:password`"),
            }
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ if entry.identity_token.is_some() => (String::new(), String::new()),
        _ => return Ok(None),
    };
    Ok(Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        identitytoken: entry.identity_token.clone(),
        serveraddress: Some(host.to_string()),
        ..Default::default()
    }))
}

fn from_helper(helper: &str, server: &str, host: &str) -> Result<Option<DockerCredentials>> {
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => return Ok(None),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .with_context(|| format!("talking to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{program} answered something other than credentials"))?;
    Ok(Some(DockerCredentials {
        username: Some(answer.username),
        password: Some(answer.secret),
        serveraddress: Some(host.to_string()),
        ..Default::default()
    }))
}

fn decode_base64(text: &str) -> Result<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    Ok(String::from_utf8(bytes)?)
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

    #[test]
    fn decodes_saved_login() {
        assert_eq!(
            decode_base64("b2ZmcGFjazpvZmZwYWNrLXRlc3Q=").unwrap(),
            "offpack:offpack-test"
        );
    }
}
