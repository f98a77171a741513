//! Registry logins from the user's Docker config, found the way the docker CLI finds them:
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), its `auths`, then `credHelpers`
//! and `credsStore` (`docker-credential-<helper> get`). Used for engine pulls and for pushes;
//! never written anywhere.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A saved login for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (empty with an identity token alone).
    pub username: String,
    /// Password or access token.
    pub password: String,
    /// An OAuth refresh token (`identitytoken`) saved by `docker login` for some registries.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

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

/// The Docker config file the docker CLI reads: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The saved login for registry `host` (`docker.io`, `127.0.0.1:5000`), including credential
/// helpers; `None` when the user has none for it.
pub fn lookup(host: &str) -> Result<Option<Credentials>> {
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
    let keys = config_keys(host);
    let helper = keys
        .iter()
        .find_map(|k| config.cred_helpers.get(k).cloned())
        .or(config.creds_store.clone());
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k))
        && let Some(creds) = from_entry(entry, host)?
    {
        return Ok(Some(creds));
    }
    match helper {
        Some(helper) => from_helper(&helper, &keys[0]),
        None => Ok(None),
    }
}

/// Where the docker CLI files the login for `host`, the preferred key first. Docker Hub's is
/// filed under its v1 address whichever of its names (the reference's `docker.io`, the API's
/// `registry-1.docker.io`) the caller has.
fn config_keys(host: &str) -> Vec<String> {
    if is_docker_hub(host) {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

fn from_entry(entry: &AuthEntry, host: &str) -> Result<Option<Credentials>> {
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
    Ok(Some(Credentials {
        username,
        password,
        identity_token: entry.identity_token.clone(),
    }))
}

fn from_helper(helper: &str, server: &str) -> Result<Option<Credentials>> {
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
    Ok(Some(from_helper_answer(answer)))
}

/// A helper answers `<token>` as the user name when its secret is an identity token (the docker
/// CLI's convention), which is exchanged for a Bearer token, never sent as Basic.
fn from_helper_answer(answer: HelperAnswer) -> Credentials {
    if answer.username == "<token>" {
        Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(answer.secret),
        }
    } else {
        Credentials {
            username: answer.username,
            password: answer.secret,
            identity_token: None,
        }
    }
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
    fn docker_hub_logins_are_found_under_every_name_of_the_hub() {
        for host in ["docker.io", "registry-1.docker.io", "index.docker.io"] {
            assert_eq!(
                config_keys(host)[0],
                "https://index.docker.io/v1/",
                "{host}"
            );
        }
        assert_eq!(config_keys("127.0.0.1:5000")[0], "127.0.0.1:5000");
    }

    #[test]
    fn a_helpers_token_user_is_an_identity_token() {
        let c = from_helper_answer(HelperAnswer {
            username: "<token>".into(),
            secret: "refresh".into(),
        });
        assert_eq!(c.identity_token.as_deref(), Some("refresh"));
        assert!(c.username.is_empty() && c.password.is_empty());
        let c = from_helper_answer(HelperAnswer {
            username: "ci".into(),
            secret: "pw".into(),
        });
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ci", "pw"));
        assert_eq!(c.identity_token, None);
    }

    #[test]
    fn decodes_saved_login() {
        assert_eq!(
            decode_base64("b2ZmcGFjazpvZmZwYWNrLXRlc3Q=").unwrap(),
            "offpack:offpack-test"
        );
    }

    #[test]
    fn entry_forms() {
        let entry = AuthEntry {
            auth: Some("b2ZmcGFjazpvZmZwYWNrLXRlc3Q=".into()),
            ..Default::default()
        };
        let c = from_entry(&entry, "h").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("offpack", "offpack-test")
        );
        let entry = AuthEntry {
            identity_token: Some("tok".into()),
            ..Default::default()
        };
        let c = from_entry(&entry, "h").unwrap().unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("tok"));
        assert!(from_entry(&AuthEntry::default(), "h").unwrap().is_none());
        let bad = AuthEntry {
            auth: Some("bm9jb2xvbg==".into()),
            ..Default::default()
        };
        assert!(
            from_entry(&bad, "h")
                .unwrap_err()
                .to_string()
                .contains("user:password")
        );
    }
}
