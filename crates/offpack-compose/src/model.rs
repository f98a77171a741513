//! Turning the merged YAML model into [`Service`]s, and choosing the active ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::error::{ComposeError, Result};
use crate::merge::{SOURCE_MARKER, depends_on_default};
use crate::node::{FieldPath, Node};
use crate::paths::{is_remote_context, join_clean};
use crate::{Build, BuildContext, DockerfileSource, Location, Service};

struct Dependency {
    name: String,
    required: bool,
}

/// Builds every service, then marks active ones: those the profiles select, plus (for
/// offpack, which must carry everything `up` could need) the required dependencies of
/// active services.
pub(crate) fn services(
    dict: &Node,
    env: &BTreeMap<String, String>,
    profiles: &[String],
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, Service>> {
    let empty = BTreeMap::new();
    let raw = match dict.as_map().and_then(|m| m.get("services")) {
        Some(Node::Map(s)) => s,
        _ => &empty,
    };
    let mut services = BTreeMap::new();
    let mut dependencies: BTreeMap<String, Vec<Dependency>> = BTreeMap::new();
    let mut sources: BTreeMap<String, Location> = BTreeMap::new();
    for (name, node) in raw {
        let Some(fields) = node.as_map() else {
            return Err(field_error(
                &FieldPath::of(&["services", name]),
                "must be a mapping",
            ));
        };
        let source = location(fields.get(SOURCE_MARKER));
        let (service, deps) = service(name, fields, env).map_err(|e| locate(e, &source))?;
        sources.insert(name.clone(), source);
        dependencies.insert(name.clone(), deps);
        services.insert(name.clone(), service);
    }

    let selected = |s: &Service| {
        s.profiles.is_empty() || profiles.iter().any(|p| p == "*" || s.profiles.contains(p))
    };
    let mut active: BTreeSet<String> = services
        .values()
        .filter(|s| selected(s))
        .map(|s| s.name.clone())
        .collect();
    let mut queue: Vec<String> = active.iter().cloned().collect();
    while let Some(name) = queue.pop() {
        for dep in dependencies
            .get(&name)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(target) = services.get(&dep.name) else {
                let err = field_error(
                    &FieldPath::of(&["services", &name, "depends_on"]),
                    &format!(
                        "service {name:?} depends on undefined service {:?}",
                        dep.name
                    ),
                )
                .hint("define that service or remove the dependency");
                return Err(match sources.get(&name) {
                    Some(source) => locate(err, source),
                    None => err,
                });
            };
            if active.contains(&dep.name) || !dep.required {
                continue;
            }
            warnings.push(format!(
                "service {name:?} depends on {:?}, whose profiles {:?} are not enabled; offpack treats it as active (docker compose would refuse to start {name:?})",
                dep.name, target.profiles
            ));
            active.insert(dep.name.clone());
            queue.push(dep.name.clone());
        }
    }
    for (name, service) in services.iter_mut() {
        service.active = active.contains(name);
        if service.active {
            check_active(service).map_err(|e| match sources.get(name) {
                Some(source) => locate(e, source),
                None => e,
            })?;
        }
    }
    Ok(services)
}

fn check_active(service: &Service) -> Result<()> {
    let path = FieldPath::of(&["services", &service.name]);
    if service.image.is_none() && service.build.is_none() {
        return Err(field_error(
            &path,
            &format!(
                "service {:?} has neither an image nor a build context specified",
                service.name
            ),
        )
        .hint("add `image:` or `build:`"));
    }
    if let (Some(build), Some(platform)) = (&service.build, &service.platform) {
        if !build.platforms.is_empty() && !build.platforms.contains(platform) {
            return Err(field_error(
                &path.child("build").child("platforms"),
                &format!("must include the service platform {platform:?}"),
            )
            .in_file(&build.source.file)
            .at_line(build.source.line));
        }
    }
    Ok(())
}

fn locate(err: ComposeError, source: &Location) -> ComposeError {
    if source.file.as_os_str().is_empty() {
        return err;
    }
    err.in_file(&source.file).at_line(source.line)
}

fn field_error(path: &FieldPath, message: &str) -> ComposeError {
    ComposeError::new(message).field(path.to_string())
}

fn service(
    name: &str,
    fields: &BTreeMap<String, Node>,
    env: &BTreeMap<String, String>,
) -> Result<(Service, Vec<Dependency>)> {
    let path = FieldPath::of(&["services", name]);
    let string = |key: &str| fields.get(key).and_then(Node::as_str).map(String::from);
    let profiles = string_list(fields.get("profiles"));
    let mut dependencies = dependencies(fields.get("depends_on"));
    for implicit in implicit_dependencies(fields) {
        if !dependencies.iter().any(|d| d.name == implicit) {
            dependencies.push(Dependency {
                name: implicit,
                required: true,
            });
        }
    }
    let build = match fields.get("build") {
        None | Some(Node::Null) => None,
        Some(node) => Some(build(node, &path.child("build"), env)?),
    };
    let mut depends_on: Vec<String> = dependencies.iter().map(|d| d.name.clone()).collect();
    depends_on.sort();
    Ok((
        Service {
            name: name.to_string(),
            active: false,
            profiles,
            image: string("image"),
            build,
            platform: string("platform"),
            // compose normalizes the old spelling.
            pull_policy: string("pull_policy").map(|p| {
                if p == "if_not_present" {
                    "missing".to_string()
                } else {
                    p
                }
            }),
            depends_on,
        },
        dependencies,
    ))
}

fn dependencies(node: Option<&Node>) -> Vec<Dependency> {
    match node {
        Some(Node::Seq(items)) => items
            .iter()
            .filter_map(Node::as_str)
            .map(|name| Dependency {
                name: name.to_string(),
                required: true,
            })
            .collect(),
        Some(Node::Map(entries)) => entries
            .iter()
            .map(|(name, spec)| {
                let default = depends_on_default();
                let required = spec
                    .as_map()
                    .and_then(|m| m.get("required"))
                    .or_else(|| default.as_map().and_then(|m| m.get("required")))
                    .is_none_or(|r| *r != Node::Bool(false));
                Dependency {
                    name: name.clone(),
                    required,
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Services a service needs without listing them in `depends_on`, which compose adds to it:
/// `links`, `volumes_from` (not `container:`), and `service:` in `network_mode`, `ipc`, `pid`,
/// `uts`, `cgroup`.
fn implicit_dependencies(fields: &BTreeMap<String, Node>) -> Vec<String> {
    let mut names = Vec::new();
    for link in string_list(fields.get("links")) {
        names.push(link.split(':').next().unwrap_or_default().to_string());
    }
    for namespace in ["network_mode", "ipc", "pid", "uts", "cgroup"] {
        if let Some(shared) = fields
            .get(namespace)
            .and_then(Node::as_str)
            .and_then(|v| v.strip_prefix("service:"))
        {
            names.push(shared.to_string());
        }
    }
    for volumes in string_list(fields.get("volumes_from")) {
        if !volumes.starts_with("container:") {
            names.push(volumes.split(':').next().unwrap_or_default().to_string());
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn string_list(node: Option<&Node>) -> Vec<String> {
    match node {
        Some(Node::Seq(items)) => items.iter().filter_map(Node::scalar_string).collect(),
        Some(Node::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `KEY=VAL` list or mapping into `KEY -> Some(VAL)`, `KEY` alone (or `KEY: null`) into `None`.
fn key_values(node: Option<&Node>, path: &FieldPath) -> Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    match node {
        Some(Node::Map(entries)) => {
            for (key, value) in entries {
                out.insert(key.clone(), value.scalar_string());
            }
        }
        Some(Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Some(text) = item.scalar_string() else {
                    return Err(field_error(
                        &path.child(&format!("[{i}]")),
                        "must be a KEY=VALUE string",
                    ));
                };
                let (key, value) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (text.clone(), None),
                };
                if key.ends_with(char::is_whitespace) {
                    return Err(field_error(
                        &path.child(&format!("[{i}]")),
                        &format!("{key:?} is declared with a trailing space"),
                    )
                    .hint("remove the space before `=`"));
                }
                out.insert(key, value);
            }
        }
        _ => {}
    }
    Ok(out)
}

fn build(node: &Node, path: &FieldPath, env: &BTreeMap<String, String>) -> Result<Build> {
    let empty = BTreeMap::new();
    let fields = match node {
        Node::Map(fields) => fields,
        _ => &empty,
    };
    let string = |key: &str| fields.get(key).and_then(Node::as_str).map(String::from);
    let source = location(fields.get(SOURCE_MARKER));
    let located = |e: ComposeError| locate(e, &source);

    let context_text = string("context").unwrap_or_else(|| ".".to_string());
    let context = if is_remote_context(&context_text) {
        BuildContext::Remote(context_text)
    } else {
        BuildContext::Local(PathBuf::from(context_text))
    };
    let dockerfile = match (string("dockerfile"), string("dockerfile_inline")) {
        (Some(_), Some(_)) => {
            return Err(located(field_error(
                path,
                "declares both dockerfile and dockerfile_inline",
            ))
            .hint("keep only one of them"));
        }
        (None, Some(inline)) => DockerfileSource::Inline(inline),
        (file, None) => {
            let file = file.unwrap_or_else(|| "Dockerfile".to_string());
            match &context {
                BuildContext::Local(dir) => {
                    DockerfileSource::Path(join_clean(dir, &PathBuf::from(file)))
                }
                BuildContext::Remote(_) => DockerfileSource::Path(PathBuf::from(file)),
            }
        }
    };
    let args = key_values(fields.get("args"), &path.child("args"))
        .map_err(located)?
        .into_iter()
        .filter_map(|(key, value)| match value {
            Some(v) => Some((key, v)),
            None => env.get(&key).map(|v| (key, v.clone())),
        })
        .collect();
    let labels = key_values(fields.get("labels"), &path.child("labels"))
        .map_err(located)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let additional_contexts = match fields.get("additional_contexts") {
        Some(Node::Map(entries)) => entries
            .iter()
            .filter_map(|(k, v)| v.scalar_string().map(|v| (k.clone(), v)))
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut ssh: Vec<String> = match fields.get("ssh") {
        Some(Node::Map(entries)) => entries.keys().cloned().collect(),
        Some(Node::Seq(items)) => {
            let mut ids = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let text = item.scalar_string().unwrap_or_default();
                match text.split_once('=') {
                    Some((id, _)) => ids.push(id.to_string()),
                    None if text == "default" => ids.push(text),
                    None => {
                        return Err(located(field_error(
                            &path.child("ssh").child(&format!("[{i}]")),
                            &format!("invalid ssh key {text:?}"),
                        ))
                        .hint("use `default` or `id=path`"));
                    }
                }
            }
            ids
        }
        Some(Node::Str(s)) => vec![
            s.split_once('=')
                .map_or(s.as_str(), |(id, _)| id)
                .to_string(),
        ],
        _ => Vec::new(),
    };
    ssh.sort();
    ssh.dedup();
    let secrets = match fields.get("secrets") {
        Some(Node::Seq(items)) => items
            .iter()
            .filter_map(|item| match item {
                Node::Str(name) => Some(name.clone()),
                Node::Map(m) => m.get("source").and_then(Node::as_str).map(String::from),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let extra_hosts =
        extra_hosts(fields.get("extra_hosts"), &path.child("extra_hosts")).map_err(located)?;
    Ok(Build {
        context,
        dockerfile,
        args,
        target: string("target"),
        platforms: string_list(fields.get("platforms")),
        cache_from: string_list(fields.get("cache_from")),
        cache_to: string_list(fields.get("cache_to")),
        additional_contexts,
        ssh,
        secrets,
        labels,
        network: string("network"),
        extra_hosts,
        tags: string_list(fields.get("tags")),
        source,
    })
}

fn location(marker: Option<&Node>) -> Location {
    let fields = marker.and_then(Node::as_map);
    Location {
        file: PathBuf::from(
            fields
                .and_then(|m| m.get("file"))
                .and_then(Node::as_str)
                .unwrap_or_default(),
        ),
        line: fields
            .and_then(|m| m.get("line"))
            .and_then(Node::scalar_string)
            .and_then(|l| l.parse().ok()),
    }
}

/// `host=ip`/`host:ip` lists (comma-separated IPs allowed) or `host: ip | [ips]` mappings,
/// as `host:ip` entries sorted; `[::1]` brackets removed.
fn extra_hosts(node: Option<&Node>, path: &FieldPath) -> Result<Vec<String>> {
    let mut hosts: Vec<(String, String)> = Vec::new();
    match node {
        Some(Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let text = item.scalar_string().unwrap_or_default();
                let split = text.split_once('=').or_else(|| text.split_once(':'));
                let Some((host, ips)) = split else {
                    return Err(field_error(
                        &path.child(&format!("[{i}]")),
                        &format!("invalid additional host {text:?}, missing IP"),
                    )
                    .hint("write host=ip"));
                };
                for ip in ips.split(',') {
                    hosts.push((host.to_string(), ip.to_string()));
                }
            }
        }
        Some(Node::Map(entries)) => {
            for (host, ips) in entries {
                match ips {
                    Node::Seq(list) => {
                        for ip in list {
                            hosts.push((host.clone(), ip.scalar_string().unwrap_or_default()));
                        }
                    }
                    other => hosts.push((host.clone(), other.scalar_string().unwrap_or_default())),
                }
            }
        }
        _ => {}
    }
    let mut out = Vec::new();
    for (host, ip) in hosts {
        if host.is_empty() || host.contains([':', '=']) {
            return Err(field_error(path, &format!("bad host name {host:?}")));
        }
        let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
            Some(inner) if !inner.is_empty() => inner.to_string(),
            _ => ip,
        };
        out.push(format!("{host}:{ip}"));
    }
    out.sort();
    Ok(out)
}
