//! The "simple" repository API as pip reads it: PEP 503 HTML pages, PEP 691 JSON pages, and
//! the percent-encoding of the names and file names in their URLs.

use serde_json::{Value, json};

use super::names::normalize;

/// The PEP 691 JSON media type (pip ≥ 22.2 asks for it first, HTML second).
pub const JSON_MEDIA_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// One file on a project page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The distribution's file name (the link text).
    pub filename: String,
    /// Where pip downloads it from (relative or absolute), without fragment.
    pub url: String,
    /// Lowercase hex sha256 of the file, added as `#sha256=` so pip checks it.
    pub sha256_hex: String,
    /// The wheel's `Requires-Python`, e.g. `>=3.8`, when known.
    pub requires_python: Option<String>,
}

/// Escapes text for HTML text and double-quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// The projects of the root page: [`normalize`]d, sorted, without duplicates.
fn root_names(projects: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = projects.iter().map(|p| normalize(p)).collect();
    names.sort();
    names.dedup();
    names
}

/// The root page `/simple/`: one link per project, to `<normalized>/`, sorted
/// by normalized name and without duplicates.
pub fn render_root(projects: &[&str]) -> String {
    let names = root_names(projects);
    let mut out = String::from(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
    );
    for name in names {
        let n = html_escape(&name);
        out.push_str(&format!("    <a href=\"{n}/\">{n}</a><br/>\n"));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// A project page `/simple/<normalized>/`: one anchor per file with
/// `#sha256=` and, when known, `data-requires-python` (HTML-escaped, so `<`
/// and `>` become `&lt;` / `&gt;` as PEP 503 asks).
pub fn render_project(name: &str, files: &[IndexFile]) -> String {
    let title = html_escape(name);
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n    <h1>Links for {title}</h1>\n"
    );
    for f in files {
        let href = html_escape(&format!("{}#sha256={}", f.url, f.sha256_hex));
        let rp = match &f.requires_python {
            Some(rp) => format!(" data-requires-python=\"{}\"", html_escape(rp)),
            None => String::new(),
        };
        out.push_str(&format!(
            "    <a href=\"{href}\"{rp}>{}</a><br/>\n",
            html_escape(&f.filename)
        ));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// The PEP 691 root (`/simple/` as [`JSON_MEDIA_TYPE`]): the same projects as [`render_root`].
pub fn render_root_json(projects: &[&str]) -> Value {
    let projects: Vec<Value> = root_names(projects)
        .into_iter()
        .map(|name| json!({ "name": name }))
        .collect();
    json!({ "meta": { "api-version": "1.0" }, "projects": projects })
}

/// The PEP 691 page of project `name` (its normalized name): the same files as
/// [`render_project`], each with its `sha256` and, when known, `requires-python`.
pub fn render_project_json(name: &str, files: &[IndexFile]) -> Value {
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            let mut entry = json!({
                "filename": f.filename,
                "url": f.url,
                "hashes": { "sha256": f.sha256_hex },
            });
            if let Some(rp) = &f.requires_python {
                entry["requires-python"] = json!(rp);
            }
            entry
        })
        .collect();
    json!({ "meta": { "api-version": "1.0" }, "name": name, "files": files })
}

/// Escapes every byte that is not unreserved (RFC 3986: `A-Z a-z 0-9 - . _ ~`) as `%XX`, so a
/// file name (`a+b.whl`, `x y.tar.gz`) is one path segment of a link.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes the `%XX` escapes of a path segment (either case of hex digit). `None` for a `%`
/// without two hex digits after it, or bytes that are not UTF-8.
pub fn percent_decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lists_normalized_sorted_unique() {
        let html = render_root(&["Zope.Interface", "django", "Django"]);
        let django = html.find("<a href=\"django/\">django</a>").unwrap();
        let zope = html
            .find("<a href=\"zope-interface/\">zope-interface</a>")
            .unwrap();
        assert!(django < zope);
        assert_eq!(html.matches("django/").count(), 1);
        assert!(html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn project_page_has_hashes_and_escaped_requires_python() {
        let html = render_project(
            "six",
            &[
                IndexFile {
                    filename: "six-1.16.0-py2.py3-none-any.whl".into(),
                    url: "/files/abc/six-1.16.0-py2.py3-none-any.whl".into(),
                    sha256_hex: "abc".into(),
                    requires_python: Some(">=2.7, !=3.0.*".into()),
                },
                IndexFile {
                    filename: "a&b.whl".into(),
                    url: "/files/def/a&b.whl".into(),
                    sha256_hex: "def".into(),
                    requires_python: None,
                },
            ],
        );
        assert!(html.contains(
            "<a href=\"/files/abc/six-1.16.0-py2.py3-none-any.whl#sha256=abc\" data-requires-python=\"&gt;=2.7, !=3.0.*\">six-1.16.0-py2.py3-none-any.whl</a>"
        ));
        assert!(html.contains("<a href=\"/files/def/a&amp;b.whl#sha256=def\">a&amp;b.whl</a>"));
        assert!(html.contains("<title>Links for six</title>"));
    }

    #[test]
    fn escapes_quotes() {
        assert_eq!(html_escape("<\"'&>"), "&lt;&quot;&#x27;&amp;&gt;");
    }

    #[test]
    fn json_root_lists_the_same_projects_as_the_html_root() {
        let doc = render_root_json(&["Zope.Interface", "django", "Django"]);
        assert_eq!(
            doc,
            json!({
                "meta": {"api-version": "1.0"},
                "projects": [{"name": "django"}, {"name": "zope-interface"}],
            })
        );
    }

    #[test]
    fn json_project_page_has_hashes_and_requires_python() {
        let doc = render_project_json(
            "six",
            &[
                IndexFile {
                    filename: "six-1.16.0-py2.py3-none-any.whl".into(),
                    url: "/files/abc/six-1.16.0-py2.py3-none-any.whl".into(),
                    sha256_hex: "abc".into(),
                    requires_python: Some(">=2.7".into()),
                },
                IndexFile {
                    filename: "six-1.16.0.tar.gz".into(),
                    url: "/files/def/six-1.16.0.tar.gz".into(),
                    sha256_hex: "def".into(),
                    requires_python: None,
                },
            ],
        );
        assert_eq!(doc["meta"]["api-version"], "1.0");
        assert_eq!(doc["name"], "six");
        assert_eq!(
            doc["files"][0],
            json!({
                "filename": "six-1.16.0-py2.py3-none-any.whl",
                "url": "/files/abc/six-1.16.0-py2.py3-none-any.whl",
                "hashes": {"sha256": "abc"},
                "requires-python": ">=2.7",
            })
        );
        assert!(doc["files"][1].get("requires-python").is_none());
        assert_eq!(render_project_json("x", &[])["files"], json!([]));
    }

    #[test]
    fn percent_encoding_round_trips_and_refuses_bad_escapes() {
        assert_eq!(
            percent_encode_segment("six-1.16.0-py2.py3-none-any.whl"),
            "six-1.16.0-py2.py3-none-any.whl"
        );
        assert_eq!(percent_encode_segment("a+b c/é"), "a%2Bb%20c%2F%C3%A9");
        for text in ["a+b c/é", "", "%", "~x_y"] {
            assert_eq!(
                percent_decode_segment(&percent_encode_segment(text)).as_deref(),
                Some(text)
            );
        }
        assert_eq!(percent_decode_segment("a%5fb%5F").as_deref(), Some("a_b_"));
        for bad in ["%", "%z1", "a%2", "%+1", "%ff", "%C3"] {
            assert_eq!(percent_decode_segment(bad), None, "{bad}");
        }
    }
}
