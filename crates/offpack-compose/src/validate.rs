//! The part of the Compose JSON schema that protects what offpack reads: known top-level,
//! service and build keys (a typo such as `biuld:` is an error, as in compose), and the
//! types of the fields the model is built from.

use std::collections::BTreeMap;

use crate::merge::SOURCE_MARKER;
use crate::node::{FieldPath, Node};

const TOP_LEVEL: &[&str] = &[
    "configs", "include", "models", "name", "networks", "secrets", "services", "version", "volumes",
];

const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "entitlements",
    "args",
    "ssh",
    "labels",
    "cache_from",
    "cache_to",
    "no_cache",
    "no_cache_filter",
    "additional_contexts",
    "network",
    "provenance",
    "sbom",
    "pull",
    "target",
    "shm_size",
    "extra_hosts",
    "isolation",
    "privileged",
    "secrets",
    "tags",
    "ulimits",
    "platforms",
];

fn unknown_key(path: &FieldPath, key: &str, allowed: &[&str]) -> String {
    let hint = closest(key, allowed)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    format!(
        "{path}: unknown key `{key}` (Compose allows only its own keys and `x-` extensions here){hint}"
    )
}

/// A known key at edit distance 1 or 2, to suggest for a typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A validation failure: the message starts with the field path; `service` names the service
/// at fault, if any, so the caller can point at its line.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) service: Option<String>,
    pub(crate) message: String,
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid {
            service: None,
            message,
        }
    }
}

/// Checks a merged model; the error names the field path.
pub(crate) fn validate(root: &Node) -> Result<(), Invalid> {
    let root_path = FieldPath::root();
    let Node::Map(top) = root else {
        return Err(format!("the top level must be a mapping, not {}", root.kind()).into());
    };
    for key in top.keys() {
        if !key.starts_with("x-") && !TOP_LEVEL.contains(&key.as_str()) {
            return Err(unknown_key(&root_path, key, TOP_LEVEL)
                .replacen(": ", "", 1)
                .into());
        }
    }
    if let Some(name) = top.get("name") {
        expect_string(name, &FieldPath::of(&["name"]))?;
    }
    match top.get("services") {
        None | Some(Node::Null) => Ok(()),
        Some(Node::Map(services)) => {
            for (name, service) in services {
                validate_service(name, service).map_err(|message| Invalid {
                    service: Some(name.clone()),
                    message,
                })?;
            }
            Ok(())
        }
        Some(other) => Err(format!("services must be a mapping, not {}", other.kind()).into()),
    }
}

fn validate_service(name: &str, service: &Node) -> Result<(), String> {
    let path = FieldPath::of(&["services", name]);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "{path}: invalid service name {name:?}; use only letters, digits, `.`, `_` and `-`"
        ));
    }
    let Node::Map(fields) = service else {
        return Err(format!("{path} must be a mapping, not {}", service.kind()));
    };
    for key in fields.keys() {
        if key != SOURCE_MARKER && !key.starts_with("x-") && !SERVICE_KEYS.contains(&key.as_str()) {
            return Err(unknown_key(&path, key, SERVICE_KEYS));
        }
    }
    for key in ["image", "platform", "pull_policy", "container_name"] {
        if let Some(value) = fields.get(key) {
            expect_string(value, &path.child(key))?;
        }
    }
    if let Some(profiles) = fields.get("profiles") {
        expect_string_list(profiles, &path.child("profiles"))?;
    }
    if let Some(depends_on) = fields.get("depends_on") {
        validate_depends_on(depends_on, &path.child("depends_on"))?;
    }
    if let Some(build) = fields.get("build") {
        validate_build(build, &path.child("build"))?;
    }
    Ok(())
}

fn validate_depends_on(node: &Node, path: &FieldPath) -> Result<(), String> {
    match node {
        Node::Seq(_) => expect_string_list(node, path),
        Node::Map(entries) => {
            for (name, entry) in entries {
                if !matches!(entry, Node::Map(_)) {
                    return Err(format!(
                        "{} must be a mapping (condition, required, restart), not {}",
                        path.child(name),
                        entry.kind()
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "{path} must be a list or a mapping, not {}",
            other.kind()
        )),
    }
}

fn validate_build(node: &Node, path: &FieldPath) -> Result<(), String> {
    let fields = match node {
        Node::Str(_) => return Ok(()),
        Node::Map(fields) => fields,
        other => {
            return Err(format!(
                "{path} must be a context path or a mapping, not {}",
                other.kind()
            ));
        }
    };
    for key in fields.keys() {
        if key != SOURCE_MARKER && !key.starts_with("x-") && !BUILD_KEYS.contains(&key.as_str()) {
            return Err(unknown_key(path, key, BUILD_KEYS));
        }
    }
    for key in [
        "context",
        "dockerfile",
        "dockerfile_inline",
        "target",
        "network",
    ] {
        if let Some(value) = fields.get(key) {
            expect_string(value, &path.child(key))?;
        }
    }
    for key in ["cache_from", "cache_to", "platforms", "tags"] {
        if let Some(value) = fields.get(key) {
            expect_string_list(value, &path.child(key))?;
        }
    }
    for key in ["args", "labels", "ssh", "additional_contexts"] {
        if let Some(value) = fields.get(key) {
            expect_list_or_dict(value, &path.child(key))?;
        }
    }
    if let Some(Node::Seq(items)) = fields.get("additional_contexts") {
        for (i, item) in items.iter().enumerate() {
            if item.as_str().is_some_and(|s| !s.contains('=')) {
                return Err(format!(
                    "{} must be name=context",
                    path.child("additional_contexts").child(&format!("[{i}]"))
                ));
            }
        }
    }
    if let Some(secrets) = fields.get("secrets") {
        let secrets_path = path.child("secrets");
        let Node::Seq(items) = secrets else {
            return Err(format!(
                "{secrets_path} must be a list, not {}",
                secrets.kind()
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = secrets_path.child(&format!("[{i}]"));
            match item {
                Node::Str(_) => {}
                Node::Map(m) if m.get("source").and_then(Node::as_str).is_some() => {}
                other => {
                    return Err(format!(
                        "{item_path} must be a secret name or a mapping with `source`, not {}",
                        other.kind()
                    ));
                }
            }
        }
    }
    if let Some(hosts) = fields.get("extra_hosts") {
        let hosts_path = path.child("extra_hosts");
        match hosts {
            Node::Seq(_) => expect_string_list(hosts, &hosts_path)?,
            Node::Map(entries) => check_host_map(entries, &hosts_path)?,
            other => {
                return Err(format!(
                    "{hosts_path} must be a list or a mapping, not {}",
                    other.kind()
                ));
            }
        }
    }
    Ok(())
}

fn check_host_map(entries: &BTreeMap<String, Node>, path: &FieldPath) -> Result<(), String> {
    for (host, ip) in entries {
        match ip {
            Node::Str(_) | Node::Null => {}
            Node::Seq(_) => expect_string_list(ip, &path.child(host))?,
            other => {
                return Err(format!(
                    "{} must be an IP address, not {}",
                    path.child(host),
                    other.kind()
                ));
            }
        }
    }
    Ok(())
}

fn expect_string(node: &Node, path: &FieldPath) -> Result<(), String> {
    match node {
        Node::Str(_) => Ok(()),
        other => Err(format!(
            "{path} must be a string, not {}; quote the value",
            other.kind()
        )),
    }
}

fn expect_string_list(node: &Node, path: &FieldPath) -> Result<(), String> {
    let Node::Seq(items) = node else {
        return Err(format!(
            "{path} must be a list of strings, not {}",
            node.kind()
        ));
    };
    for (i, item) in items.iter().enumerate() {
        expect_string(item, &path.child(&format!("[{i}]")))?;
    }
    Ok(())
}

fn expect_list_or_dict(node: &Node, path: &FieldPath) -> Result<(), String> {
    match node {
        Node::Seq(_) => expect_string_list(node, path),
        Node::Map(entries) => {
            for (key, value) in entries {
                if matches!(value, Node::Seq(_) | Node::Map(_)) {
                    return Err(format!(
                        "{} must be a string, number, boolean or null, not {}",
                        path.child(key),
                        value.kind()
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "{path} must be a list or a mapping, not {}",
            other.kind()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::convert_document;

    fn check(src: &str) -> Result<(), String> {
        let value: serde_norway::Value = serde_norway::from_str(src).expect("test YAML parses");
        validate(&convert_document(value).expect("converts").root).map_err(|e| e.message)
    }

    #[test]
    fn accepts_a_realistic_file() {
        check(
            "name: shop\nx-common: &c {restart: always}\nservices:\n  web:\n    <<: *c\n    build:\n      context: .\n      args: [A=1]\n      x-note: hi\n    image: shop/web\n    depends_on: {db: {condition: service_healthy}}\n    x-meta: 1\n  db: {image: postgres, profiles: [db]}\nvolumes: {data: {}}\n",
        )
        .expect("valid");
    }

    #[test]
    fn rejects_typos_with_a_suggestion() {
        let err = check("services:\n  web:\n    biuld: .\n").expect_err("typo");
        assert!(err.contains("services.web: unknown key `biuld`"), "{err}");
        assert!(err.contains("did you mean `build`"), "{err}");
        let err = check("services:\n  web:\n    build: {contxt: .}\n").expect_err("typo");
        assert!(
            err.contains("services.web.build: unknown key `contxt`"),
            "{err}"
        );
        let err = check("servics: {}\n").expect_err("typo");
        assert!(err.contains("did you mean `services`"), "{err}");
    }

    #[test]
    fn rejects_wrong_types() {
        let err = check("services:\n  web:\n    image: 1.5\n").expect_err("number image");
        assert!(err.contains("services.web.image must be a string"), "{err}");
        let err = check("services:\n  web:\n    build: {args: {A: [1]}}\n").expect_err("list arg");
        assert!(err.contains("services.web.build.args.A"), "{err}");
        let err = check("services:\n  web:\n").expect_err("null service");
        assert!(err.contains("services.web must be a mapping"), "{err}");
        let err = check("services:\n  web:\n    profiles: dev\n").expect_err("profiles string");
        assert!(
            err.contains("services.web.profiles must be a list"),
            "{err}"
        );
        let err = check("services:\n  web:\n    build: {additional_contexts: [base]}\n")
            .expect_err("context without name");
        assert!(
            err.contains("additional_contexts[0] must be name=context"),
            "{err}"
        );
        let err = check("services:\n  'bad name': {image: x}\n").expect_err("name");
        assert!(err.contains("invalid service name"), "{err}");
    }
}
