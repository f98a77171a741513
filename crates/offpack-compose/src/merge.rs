//! Merging Compose models (override files, `extends`, `include` conflicts) by the rules of
//! the Compose Specification as compose-go implements them.

use std::collections::BTreeMap;

use crate::node::{FieldPath, Node};

/// Key, inside a build mapping, that carries where the build was first declared.
/// Starts with NUL so it cannot clash with anything a user writes.
pub(crate) const SOURCE_MARKER: &str = "\u{0}source";

/// Merges `over` onto `base` at `path`.
pub(crate) fn merge(base: Node, over: Node, path: &FieldPath) -> Result<Node, String> {
    if let Some(rule) = special_rule(path) {
        return rule(base, over, path);
    }
    match (base, over) {
        (base, Node::Null) => Ok(base),
        (Node::Map(base), Node::Map(over)) => Ok(Node::Map(merge_mappings(base, over, path)?)),
        (Node::Seq(mut base), Node::Seq(over)) => {
            base.extend(over);
            Ok(Node::Seq(base))
        }
        (Node::Map(_), _) | (Node::Seq(_), _) => Err(format!(
            "cannot override {path}: one file has a {} here, another has something else",
            "mapping or list"
        )),
        (_, over) => Ok(over),
    }
}

type Rule = fn(Node, Node, &FieldPath) -> Result<Node, String>;

fn special_rule(path: &FieldPath) -> Option<Rule> {
    const TO_SEQUENCE: &[&str] = &[
        "networks.*.labels",
        "volumes.*.labels",
        "services.*.annotations",
        "services.*.build.args",
        "services.*.build.additional_contexts",
        "services.*.build.labels",
        "services.*.deploy.labels",
        "services.*.dns",
        "services.*.dns_opt",
        "services.*.dns_search",
        "services.*.env_file",
        "services.*.label_file",
        "services.*.environment",
        "services.*.labels",
        "services.*.volumes.*.volume.labels",
        "services.*.sysctls",
        "services.*.tmpfs",
    ];
    const REPLACE: &[&str] = &[
        "services.*.command",
        "services.*.entrypoint",
        "services.*.healthcheck.test",
        "services.*.ulimits.*",
    ];
    if TO_SEQUENCE.iter().any(|p| path.matches(p)) {
        return Some(merge_to_sequence);
    }
    if REPLACE.iter().any(|p| path.matches(p)) {
        return Some(|_, over, _| Ok(over));
    }
    if path.matches("services.*.build") {
        return Some(merge_build);
    }
    if path.matches("services.*.depends_on") {
        return Some(merge_depends_on);
    }
    if path.matches("services.*.networks") || path.matches("services.*.models") {
        return Some(|base, over, path| {
            let base = into_mapping(base, None);
            let over = into_mapping(over, None);
            Ok(Node::Map(merge_mappings(base, over, path)?))
        });
    }
    if path.matches("services.*.build.extra_hosts") || path.matches("services.*.extra_hosts") {
        return Some(merge_extra_hosts);
    }
    if path.matches("services.*.logging") {
        return Some(merge_logging);
    }
    None
}

fn merge_mappings(
    mut base: BTreeMap<String, Node>,
    over: BTreeMap<String, Node>,
    path: &FieldPath,
) -> Result<BTreeMap<String, Node>, String> {
    for (key, value) in over {
        match base.remove(&key) {
            None => {
                base.insert(key, value);
            }
            // The first declaration of a build keeps its place (see SOURCE_MARKER).
            Some(existing) if key == SOURCE_MARKER => {
                base.insert(key, existing);
            }
            Some(existing) => {
                let merged = merge(existing, value, &path.child(&key))?;
                base.insert(key, merged);
            }
        }
    }
    Ok(base)
}

/// `KEY: value` mappings and `KEY=value` lists merge as lists of `KEY=value` strings (map
/// entries sorted); duplicates are removed later by [`enforce_unicity`].
fn merge_to_sequence(base: Node, over: Node, _: &FieldPath) -> Result<Node, String> {
    let mut items = into_sequence(base);
    items.extend(into_sequence(over));
    Ok(Node::Seq(items))
}

pub(crate) fn into_sequence(node: Node) -> Vec<Node> {
    match node {
        Node::Map(entries) => {
            let mut items = Vec::new();
            for (key, value) in entries {
                match value {
                    Node::Null => items.push(Node::Str(key)),
                    Node::Seq(values) => {
                        for v in values {
                            items.push(Node::Str(format!("{key}={}", go_sprint(&v))));
                        }
                    }
                    other => items.push(Node::Str(format!("{key}={}", go_sprint(&other)))),
                }
            }
            items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            items
        }
        Node::Seq(items) => items,
        Node::Str(s) => vec![Node::Str(s)],
        _ => Vec::new(),
    }
}

/// Go's `%v` for a decoded YAML value, as far as compose ever prints one.
fn go_sprint(node: &Node) -> String {
    match node {
        Node::Null => "<nil>".to_string(),
        Node::Seq(items) => {
            let inner: Vec<String> = items.iter().map(go_sprint).collect();
            format!("[{}]", inner.join(" "))
        }
        Node::Map(entries) => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_sprint(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
        scalar => scalar.scalar_string().unwrap_or_default(),
    }
}

fn into_mapping(node: Node, default: Option<&Node>) -> BTreeMap<String, Node> {
    match node {
        Node::Map(m) => m,
        Node::Seq(items) => items
            .into_iter()
            .filter_map(|item| item.scalar_string())
            .map(|name| (name, default.cloned().unwrap_or(Node::Null)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn build_mapping(node: Node) -> BTreeMap<String, Node> {
    match node {
        Node::Str(context) => BTreeMap::from([("context".to_string(), Node::Str(context))]),
        Node::Map(m) => m,
        _ => BTreeMap::new(),
    }
}

fn merge_build(base: Node, over: Node, path: &FieldPath) -> Result<Node, String> {
    Ok(Node::Map(merge_mappings(
        build_mapping(base),
        build_mapping(over),
        path,
    )?))
}

pub(crate) fn depends_on_default() -> Node {
    Node::Map(BTreeMap::from([
        ("condition".to_string(), Node::Str("service_started".into())),
        ("required".to_string(), Node::Bool(true)),
    ]))
}

fn merge_depends_on(base: Node, over: Node, path: &FieldPath) -> Result<Node, String> {
    let default = depends_on_default();
    let base = into_mapping(base, Some(&default));
    let over = into_mapping(over, Some(&default));
    Ok(Node::Map(merge_mappings(base, over, path)?))
}

fn merge_extra_hosts(base: Node, over: Node, _: &FieldPath) -> Result<Node, String> {
    let mut items = into_sequence(base);
    for item in into_sequence(over) {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    Ok(Node::Seq(items))
}

fn merge_logging(base: Node, over: Node, path: &FieldPath) -> Result<Node, String> {
    match (base, over) {
        (Node::Map(base), Node::Map(over)) => {
            let same_driver = match (base.get("driver"), over.get("driver")) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if same_driver {
                Ok(Node::Map(merge_mappings(base, over, path)?))
            } else {
                Ok(Node::Map(over))
            }
        }
        (base, Node::Null) => Ok(base),
        (_, over) => Ok(over),
    }
}

/// Lists whose entries must be unique by key: a later entry replaces an earlier one in place.
const UNIQUE_BY_KEY: &[&str] = &[
    "networks.*.labels",
    "networks.*.ipam.options",
    "services.*.annotations",
    "services.*.build.args",
    "services.*.build.additional_contexts",
    "services.*.build.tags",
    "services.*.build.labels",
    "services.*.cap_add",
    "services.*.cap_drop",
    "services.*.deploy.labels",
    "services.*.dns",
    "services.*.dns_opt",
    "services.*.dns_search",
    "services.*.environment",
    "services.*.labels",
    "services.*.links",
    "services.*.networks.*.aliases",
    "services.*.networks.*.link_local_ips",
    "services.*.profiles",
    "services.*.sysctls",
    "services.*.tmpfs",
];

/// Removes redefinitions from lists that compose treats as keyed sets.
pub(crate) fn enforce_unicity(node: &mut Node, path: &FieldPath) -> Result<(), String> {
    match node {
        Node::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                enforce_unicity(value, &path.child(key))?;
            }
        }
        Node::Seq(items) if UNIQUE_BY_KEY.iter().any(|p| path.matches(p)) => {
            let mut kept: Vec<Node> = Vec::with_capacity(items.len());
            let mut positions: BTreeMap<String, usize> = BTreeMap::new();
            for (index, item) in std::mem::take(items).into_iter().enumerate() {
                let Node::Str(text) = &item else {
                    return Err(format!(
                        "{}: expected a string, found {}",
                        path.child(&format!("[{index}]")),
                        item.kind()
                    ));
                };
                let key = text
                    .split_once('=')
                    .map_or(text.as_str(), |(k, _)| k)
                    .to_string();
                match positions.get(&key) {
                    Some(&at) => kept[at] = item,
                    None => {
                        positions.insert(key, kept.len());
                        kept.push(item);
                    }
                }
            }
            *items = kept;
        }
        _ => {}
    }
    Ok(())
}

/// Drops from `target` every value whose path was marked `!reset`/`!override` (list items
/// are left alone, as compose-go does).
pub(crate) fn apply_resets(target: &mut Node, reset_paths: &[Vec<String>]) {
    for path in reset_paths {
        if path.iter().any(|p| p.starts_with('[')) {
            continue;
        }
        remove_at(target, path);
    }
}

fn remove_at(node: &mut Node, path: &[String]) {
    let Some(map) = node.as_map_mut() else {
        return;
    };
    match path {
        [last] => {
            map.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(child) = map.get_mut(first) {
                remove_at(child, rest);
            }
        }
        [] => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::convert_document;

    fn yaml(src: &str) -> Node {
        let value: serde_norway::Value = serde_norway::from_str(src).expect("test YAML parses");
        convert_document(value).expect("converts").root
    }

    fn merged(a: &str, b: &str) -> Node {
        let mut out = merge(yaml(a), yaml(b), &FieldPath::root()).expect("merges");
        enforce_unicity(&mut out, &FieldPath::root()).expect("unique");
        out
    }

    #[test]
    fn mappings_merge_and_scalars_override() {
        assert_eq!(
            merged(
                "services: {web: {image: a, platform: p}}",
                "services: {web: {image: b}, db: {image: d}}"
            ),
            yaml("services: {web: {image: b, platform: p}, db: {image: d}}")
        );
    }

    #[test]
    fn build_args_merge_from_list_and_map() {
        assert_eq!(
            merged(
                "services: {web: {build: {args: [A=1, B=2, C]}}}",
                "services: {web: {build: {args: {A: 3, D: null}}}}"
            ),
            yaml("services: {web: {build: {args: [A=3, B=2, C, D]}}}")
        );
    }

    #[test]
    fn build_short_form_merges_with_long_form() {
        assert_eq!(
            merged(
                "services: {web: {build: ./app}}",
                "services: {web: {build: {target: prod}}}"
            ),
            yaml("services: {web: {build: {context: ./app, target: prod}}}")
        );
        assert_eq!(
            merged(
                "services: {web: {build: {context: a, target: t}}}",
                "services: {web: {build: b}}"
            ),
            yaml("services: {web: {build: {context: b, target: t}}}")
        );
    }

    #[test]
    fn cache_from_appends_and_profiles_are_a_set() {
        assert_eq!(
            merged(
                "services: {web: {profiles: [a, b], build: {cache_from: [x]}}}",
                "services: {web: {profiles: [b, c], build: {cache_from: [y, x]}}}"
            ),
            yaml("services: {web: {profiles: [a, b, c], build: {cache_from: [x, y, x]}}}")
        );
    }

    #[test]
    fn depends_on_merges_short_and_long_forms() {
        assert_eq!(
            merged(
                "services: {web: {depends_on: [db]}}",
                "services: {web: {depends_on: {cache: {condition: service_healthy}}}}"
            ),
            yaml(
                "services: {web: {depends_on: {db: {condition: service_started, required: true}, \
                 cache: {condition: service_healthy}}}}"
            )
        );
    }

    #[test]
    fn commands_are_replaced_not_appended() {
        assert_eq!(
            merged(
                "services: {web: {command: [a, b]}}",
                "services: {web: {command: [c]}}"
            ),
            yaml("services: {web: {command: [c]}}")
        );
    }

    #[test]
    fn type_conflicts_are_errors() {
        let err = merge(
            yaml("services: {web: {build: {args: [A]}, labels: {a: b}, ports: [1]}}"),
            yaml("services: {web: {ports: {a: b}}}"),
            &FieldPath::root(),
        )
        .expect_err("list vs mapping");
        assert!(err.contains("services.web.ports"), "{err}");
    }

    #[test]
    fn resets_remove_earlier_values() {
        let mut base = yaml("services: {web: {image: a, build: {context: ., args: [A=1]}}}");
        apply_resets(
            &mut base,
            &[vec![
                "services".into(),
                "web".into(),
                "build".into(),
                "args".into(),
            ]],
        );
        assert_eq!(
            base,
            yaml("services: {web: {image: a, build: {context: .}}}")
        );
    }

    #[test]
    fn source_marker_keeps_first_declaration() {
        let mut base = yaml("services: {web: {build: {context: a}}}");
        let mut over = yaml("services: {web: {build: {context: b}}}");
        for (node, file) in [(&mut base, "one"), (&mut over, "two")] {
            if let Some(Node::Map(b)) = node
                .as_map_mut()
                .and_then(|m| m.get_mut("services"))
                .and_then(|m| m.as_map_mut())
                .and_then(|m| m.get_mut("web"))
                .and_then(|m| m.as_map_mut())
                .and_then(|m| m.get_mut("build"))
            {
                b.insert(SOURCE_MARKER.into(), Node::Str(file.into()));
            }
        }
        let out = merge(base, over, &FieldPath::root()).expect("merges");
        let build = yaml("{context: b}");
        let mut build = build.as_map().cloned().unwrap_or_default();
        build.insert(SOURCE_MARKER.into(), Node::Str("one".into()));
        assert_eq!(
            out.as_map()
                .and_then(|m| m.get("services"))
                .and_then(|s| s.as_map())
                .and_then(|s| s.get("web")),
            Some(&Node::Map(BTreeMap::from([(
                "build".to_string(),
                Node::Map(build)
            )])))
        );
    }
}
