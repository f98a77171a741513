//! Points the `resolved` URLs of a package-lock / npm-shrinkwrap / yarn.lock
//! at offpack's registry by textual replacement, so every other byte (and so
//! the formatting npm and yarn wrote) stays as it was.

use std::collections::BTreeMap;

/// The new URL for an old one: the exact string, or, for a URL with a
/// `#fragment` (yarn's `#sha1`), its base with the fragment kept.
fn lookup(old: &str, urls: &BTreeMap<String, String>) -> Option<String> {
    if let Some(new) = urls.get(old) {
        return Some(new.clone());
    }
    let (base, fragment) = old.split_once('#')?;
    urls.get(base).map(|new| format!("{new}#{fragment}"))
}

/// Replaces each `resolved` value found in `urls` (old → new). JSON locks
/// (text starting with `{`) are scanned token by token, so only the value of
/// a `"resolved"` key changes; yarn.lock lines `resolved "…"` are rewritten in place.
/// Values not in `urls` and everything else are left byte for byte.
pub fn rewrite_resolved(text: &str, urls: &BTreeMap<String, String>) -> String {
    if text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
    {
        rewrite_json(text, urls)
    } else {
        rewrite_yarn(text, urls)
    }
}

/// End (exclusive) of the JSON string starting at `start` (a `"`), if closed.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn rewrite_json(text: &str, urls: &BTreeMap<String, String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(end) = string_end(bytes, i) else {
            break;
        };
        let is_key = &text[i..end] == "\"resolved\"";
        i = end;
        if !is_key {
            continue;
        }
        let colon = skip_ws(bytes, end);
        if bytes.get(colon) != Some(&b':') {
            continue;
        }
        let vstart = skip_ws(bytes, colon + 1);
        if bytes.get(vstart) != Some(&b'"') {
            continue;
        }
        let Some(vend) = string_end(bytes, vstart) else {
            break;
        };
        i = vend;
        let Ok(old) = serde_json::from_str::<String>(&text[vstart..vend]) else {
            continue;
        };
        if let Some(new) = lookup(&old, urls) {
            out.push_str(&text[copied..vstart]);
            out.push_str(&serde_json::Value::String(new).to_string());
            copied = vend;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn rewrite_yarn(text: &str, urls: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body_len = line.trim_end_matches(['\n', '\r']).len();
        let (body, eol) = line.split_at(body_len);
        let trimmed = body.trim_start();
        let indent = &body[..body.len() - trimmed.len()];
        let rest = trimmed
            .strip_prefix("resolved")
            .or_else(|| trimmed.strip_prefix("\"resolved\""));
        let replaced = rest.filter(|r| r.starts_with([' ', '\t'])).and_then(|r| {
            let key = &trimmed[..trimmed.len() - r.len()];
            let value = r.trim();
            let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
            let old = if quoted {
                serde_json::from_str::<String>(value).ok()?
            } else {
                value.to_string()
            };
            let new = lookup(&old, urls)?;
            let new = if quoted {
                serde_json::Value::String(new).to_string()
            } else {
                new
            };
            Some(format!("{indent}{key} {new}"))
        });
        match replaced {
            Some(r) => {
                out.push_str(&r);
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npm::lock::tests::{V1, V3, YARN};
    use crate::npm::lock::{NpmSource, parse_package_lock, parse_yarn_lock};
    use crate::npm::registry::tarball_path;

    fn fill(s: &str) -> String {
        crate::npm::lock::tests::fill(s)
    }

    /// Maps every registry URL of `pkgs` to offpack's registry.
    fn urls_for(pkgs: &[crate::npm::NpmPackage]) -> BTreeMap<String, String> {
        pkgs.iter()
            .filter_map(|p| match &p.source {
                NpmSource::Registry { resolved } => Some((
                    resolved.split('#').next().unwrap_or(resolved).to_string(),
                    format!(
                        "http://172.17.0.1:3149{}",
                        tarball_path(&p.name, &p.version)
                    ),
                )),
                _ => None,
            })
            .collect()
    }

    fn check_round_trip(
        text: &str,
        parse: fn(&str, &str) -> Result<Vec<crate::npm::NpmPackage>, crate::PackageError>,
    ) {
        let before = parse("lock", text).unwrap();
        let urls = urls_for(&before);
        assert!(!urls.is_empty());
        let out = rewrite_resolved(text, &urls);
        let after = parse("lock", &out).unwrap();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (&b.name, &b.version, &b.integrity, &b.path),
                (&a.name, &a.version, &a.integrity, &a.path)
            );
            match (&b.source, &a.source) {
                (NpmSource::Registry { resolved: old }, NpmSource::Registry { resolved: new }) => {
                    let expected = format!(
                        "http://172.17.0.1:3149{}",
                        tarball_path(&b.name, &b.version)
                    );
                    assert!(new.starts_with(&expected), "{new} vs {expected}");
                    // yarn's #sha1 fragment is kept.
                    assert_eq!(
                        old.split_once('#').map(|x| x.1),
                        new.split_once('#').map(|x| x.1)
                    );
                }
                (x, y) => assert_eq!(x, y),
            }
        }
        // Lines without a replaced URL are byte-identical.
        let old_lines: Vec<&str> = text.split_inclusive('\n').collect();
        let new_lines: Vec<&str> = out.split_inclusive('\n').collect();
        assert_eq!(old_lines.len(), new_lines.len());
        for (o, n) in old_lines.iter().zip(&new_lines) {
            if o != n {
                assert!(
                    o.contains("resolved") && n.contains("http://172.17.0.1:3149/"),
                    "{o:?} -> {n:?}"
                );
            }
        }
        // Rewriting again with the same map changes nothing more.
        assert_eq!(rewrite_resolved(&out, &urls), out);
    }

    #[test]
    fn round_trips_v1_v3_and_yarn() {
        check_round_trip(&fill(V1), parse_package_lock);
        check_round_trip(&fill(V3), parse_package_lock);
        check_round_trip(&fill(YARN), parse_yarn_lock);
        check_round_trip(&fill(YARN).replace('\n', "\r\n"), parse_yarn_lock);
    }

    #[test]
    fn json_replaces_only_resolved_values() {
        let text = "{\n  \"resolved\": \"https://r/a/-/a-1.tgz\",\n  \"x\": \"resolved\",\n  \"y\": [\"resolved\", \"https://r/a/-/a-1.tgz\"],\n  \"z\": {\"resolved\"  :  \"https://r/a/-/a-1.tgz\"},\n  \"w\": \"\\\"resolved\\\": \\\"https://r/a/-/a-1.tgz\"\n}";
        let urls: BTreeMap<String, String> = [(
            "https://r/a/-/a-1.tgz".to_string(),
            "http://g/a/-/a-1.tgz".to_string(),
        )]
        .into();
        let out = rewrite_resolved(text, &urls);
        assert_eq!(
            out,
            text.replacen(
                "\"resolved\": \"https://r/a/-/a-1.tgz\"",
                "\"resolved\": \"http://g/a/-/a-1.tgz\"",
                1
            )
            .replace(
                "\"resolved\"  :  \"https://r/a/-/a-1.tgz\"",
                "\"resolved\"  :  \"http://g/a/-/a-1.tgz\""
            )
        );
    }

    #[test]
    fn yarn_unquoted_values_stay_unquoted() {
        let text = "a@1:\n  version \"1\"\n  resolved https://r/a/-/a-1.tgz#abc\n";
        let urls: BTreeMap<String, String> = [(
            "https://r/a/-/a-1.tgz".to_string(),
            "http://g/a/-/a-1.tgz".to_string(),
        )]
        .into();
        assert_eq!(
            rewrite_resolved(text, &urls),
            "a@1:\n  version \"1\"\n  resolved http://g/a/-/a-1.tgz#abc\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let urls: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
            let _ = rewrite_resolved(&s, &urls);
            let _ = rewrite_resolved(&format!("{{\"resolved\": \"a\", {s}"), &urls);
        }
    }
}
