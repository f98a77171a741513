//! A plain YAML tree the loader works on, built from serde_norway's `Value`.
//!
//! Mapping keys are strings and mappings are sorted maps: compose-go works on Go maps, so
//! no Compose rule depends on key order, and sorted maps keep every output stable.

use std::collections::BTreeMap;

use serde_norway::Value;

/// A YAML node after tags, merge keys and key conversion have been dealt with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// A YAML number, already spelled the way Go's `fmt.Sprint` spells it (compose stringifies
    /// numbers that way, e.g. build arg `VERSION: 1.10` becomes `"1.1"`).
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

impl Node {
    pub(crate) fn as_map(&self) -> Option<&BTreeMap<String, Node>> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_map_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Go's `fmt.Sprint` rendering of a scalar, `None` for collections and null.
    pub(crate) fn scalar_string(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Num(n) => Some(n.clone()),
            Node::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Num(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// A dotted field path (`services.web.build`) used for rule lookup and error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<String>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub(crate) fn of(parts: &[&str]) -> Self {
        FieldPath(parts.iter().map(|p| p.to_string()).collect())
    }

    pub(crate) fn child(&self, part: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(part.to_string());
        FieldPath(parts)
    }

    pub(crate) fn parts(&self) -> &[String] {
        &self.0
    }

    /// Whether the path matches a dotted pattern where `*` matches any one segment.
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        let pattern: Vec<&str> = pattern.split('.').collect();
        pattern.len() == self.0.len()
            && pattern
                .iter()
                .zip(&self.0)
                .all(|(want, have)| *want == "*" || want == have)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for part in &self.0 {
            if part.starts_with('[') {
                write!(f, "{part}")?;
            } else {
                if !first {
                    write!(f, ".")?;
                }
                write!(f, "{part}")?;
            }
            first = false;
        }
        Ok(())
    }
}

/// A document converted from YAML, with the paths that carried `!reset` or `!override`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub(crate) root: Node,
    /// Paths whose earlier definition (from previous files or an extended service) must be
    /// dropped before this document is merged in.
    pub(crate) reset_paths: Vec<Vec<String>>,
}

/// Converts one parsed YAML document: records and strips `!reset`/`!override`, applies `<<`
/// merge keys (also chained anchors) and turns scalar keys into strings.
pub(crate) fn convert_document(value: Value) -> Result<Document, String> {
    let mut reset_paths = Vec::new();
    let stripped = strip_tags(value, &mut Vec::new(), &mut reset_paths);
    let root = match stripped {
        Some(v) => to_node(v, &FieldPath::root())?,
        None => Node::Null,
    };
    Ok(Document { root, reset_paths })
}

/// Removes `!reset` nodes and unwraps `!override` ones, recording their paths; the path of
/// anything under a `<<` merge key is that of the mapping it is merged into (as compose-go).
fn strip_tags(
    value: Value,
    path: &mut Vec<String>,
    resets: &mut Vec<Vec<String>>,
) -> Option<Value> {
    match value {
        Value::Tagged(tagged) => {
            if tagged.tag == "reset" {
                resets.push(path.clone());
                None
            } else if tagged.tag == "override" {
                resets.push(path.clone());
                strip_tags(tagged.value, path, resets)
            } else {
                strip_tags(tagged.value, path, resets)
            }
        }
        Value::Mapping(mapping) => {
            let mut out = serde_norway::Mapping::new();
            for (key, child) in mapping {
                let segment = key_segment(&key);
                let is_merge = segment.as_deref() == Some("<<");
                if !is_merge {
                    path.push(segment.unwrap_or_default());
                }
                let kept = strip_tags(child, path, resets);
                if !is_merge {
                    path.pop();
                }
                if let Some(kept) = kept {
                    out.insert(key, kept);
                }
            }
            Some(Value::Mapping(out))
        }
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                path.push(format!("[{index}]"));
                let kept = strip_tags(item, path, resets);
                path.pop();
                if let Some(kept) = kept {
                    out.push(kept);
                }
            }
            Some(Value::Sequence(out))
        }
        other => Some(other),
    }
}

fn key_segment(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(go_number(n)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_string()),
        Value::Tagged(t) => key_segment(&t.value),
        _ => None,
    }
}

fn to_node(value: Value, path: &FieldPath) -> Result<Node, String> {
    Ok(match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => Node::Num(go_number(&n)),
        Value::String(s) => Node::Str(s),
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                out.push(to_node(item, &path.child(&format!("[{index}]")))?);
            }
            Node::Seq(out)
        }
        Value::Mapping(mapping) => {
            let mut own = BTreeMap::new();
            let mut merged_in: Vec<Value> = Vec::new();
            for (key, child) in mapping {
                let Some(name) = key_segment(&key) else {
                    let at = if path.parts().is_empty() {
                        "at top level".to_string()
                    } else {
                        format!("in {path}")
                    };
                    return Err(format!("a mapping key {at} is not a string"));
                };
                if name == "<<" {
                    match child {
                        Value::Sequence(sources) => merged_in.extend(sources),
                        other => merged_in.push(other),
                    }
                    continue;
                }
                let converted = to_node(child, &path.child(&name))?;
                own.insert(name, converted);
            }
            // Earlier merge sources win over later ones; the mapping's own keys win over all.
            for source in merged_in {
                match to_node(source, path)? {
                    Node::Map(entries) => {
                        for (k, v) in entries {
                            own.entry(k).or_insert(v);
                        }
                    }
                    Node::Null => {}
                    other => {
                        return Err(format!(
                            "in {path}: a `<<` merge key must name a mapping (or a list of mappings), not {}",
                            other.kind()
                        ));
                    }
                }
            }
            Node::Map(own)
        }
        Value::Tagged(tagged) => to_node(tagged.value, path)?,
    })
}

/// Spells a YAML number the way Go's `fmt.Sprint` does (`%v`): integers in decimal, floats in
/// the shortest form with an exponent below 1e-4 and from 1e21 on.
pub(crate) fn go_number(n: &serde_norway::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    go_float(n.as_f64().unwrap_or(f64::NAN))
}

pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7" or "-1e21".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, digits_part) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = digits_part.chars().filter(|c| *c != '.').collect();
    // Go's %v is %g with the shortest precision: exponent form when exp < -4 || exp >= 21.
    if !(-4..21).contains(&exponent) {
        let mut out = String::from(sign);
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let esign = if exponent < 0 { '-' } else { '+' };
        out.push_str(&format!("e{esign}{:02}", exponent.abs()));
        return out;
    }
    let mut out = String::from(sign);
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Document {
        let value: Value = serde_norway::from_str(src).expect("test YAML parses");
        convert_document(value).expect("test YAML converts")
    }

    fn map_get<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
        let mut cur = node;
        for part in path {
            cur = cur.as_map()?.get(*part)?;
        }
        Some(cur)
    }

    #[test]
    fn go_float_matches_fmt_sprint() {
        assert_eq!(go_float(1.1), "1.1");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1000.0), "1000");
        assert_eq!(go_float(1e20), "100000000000000000000");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_float(123456.789), "123456.789");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn numbers_become_go_strings() {
        let d = doc("a: 1.10\nb: 3\nc: 1e3\n");
        assert_eq!(map_get(&d.root, &["a"]), Some(&Node::Num("1.1".into())));
        assert_eq!(map_get(&d.root, &["b"]), Some(&Node::Num("3".into())));
        assert_eq!(map_get(&d.root, &["c"]), Some(&Node::Num("1000".into())));
    }

    #[test]
    fn merge_key_single_and_list_and_chained() {
        let d = doc(
            "x-a: &a {image: a, platform: p}\nx-b: &b {image: b, pull_policy: never}\n\
             x-c: &c {<<: *a, target: t}\n\
             s1: {<<: *a, image: own}\ns2: {<<: [*a, *b]}\ns3: {<<: *c}\n",
        );
        assert_eq!(
            map_get(&d.root, &["s1", "image"]),
            Some(&Node::Str("own".into()))
        );
        assert_eq!(
            map_get(&d.root, &["s1", "platform"]),
            Some(&Node::Str("p".into()))
        );
        assert_eq!(
            map_get(&d.root, &["s2", "image"]),
            Some(&Node::Str("a".into()))
        );
        assert_eq!(
            map_get(&d.root, &["s2", "pull_policy"]),
            Some(&Node::Str("never".into()))
        );
        assert_eq!(
            map_get(&d.root, &["s3", "platform"]),
            Some(&Node::Str("p".into()))
        );
        assert_eq!(
            map_get(&d.root, &["s3", "target"]),
            Some(&Node::Str("t".into()))
        );
        assert!(map_get(&d.root, &["s3", "<<"]).is_none());
    }

    #[test]
    fn merge_key_of_scalar_is_an_error() {
        let value: Value = serde_norway::from_str("s: {<<: 3}\n").expect("parses");
        let err = convert_document(value).expect_err("scalar merge must fail");
        assert!(err.contains("in s"), "{err}");
    }

    #[test]
    fn reset_and_override_tags_are_recorded() {
        let d = doc(
            "services:\n  web:\n    build: !reset null\n    profiles: !override [a]\n    ports: [!reset 1, 2]\n",
        );
        assert!(map_get(&d.root, &["services", "web", "build"]).is_none());
        assert_eq!(
            map_get(&d.root, &["services", "web", "profiles"]),
            Some(&Node::Seq(vec![Node::Str("a".into())]))
        );
        assert_eq!(
            map_get(&d.root, &["services", "web", "ports"]),
            Some(&Node::Seq(vec![Node::Num("2".into())]))
        );
        let mut paths = d.reset_paths.clone();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                vec!["services".to_string(), "web".into(), "build".into()],
                vec![
                    "services".to_string(),
                    "web".into(),
                    "ports".into(),
                    "[0]".into()
                ],
                vec!["services".to_string(), "web".into(), "profiles".into()],
            ]
        );
    }

    #[test]
    fn scalar_keys_become_strings() {
        let d = doc("1: a\ntrue: b\n");
        assert_eq!(map_get(&d.root, &["1"]), Some(&Node::Str("a".into())));
        assert_eq!(map_get(&d.root, &["true"]), Some(&Node::Str("b".into())));
    }

    #[test]
    fn path_matching_and_display() {
        let p = FieldPath::of(&["services", "web", "build"]);
        assert!(p.matches("services.*.build"));
        assert!(!p.matches("services.*"));
        assert_eq!(
            p.child("args").child("[0]").to_string(),
            "services.web.build.args[0]"
        );
    }
}
