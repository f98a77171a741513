//! PEP 503 "simple" index pages, as pip reads them.

use super::names::normalize;

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

/// The root page `/simple/`: one link per project, to `<normalized>/`, sorted
/// by normalized name and without duplicates.
pub fn render_root(projects: &[&str]) -> String {
    let mut names: Vec<String> = projects.iter().map(|p| normalize(p)).collect();
    names.sort();
    names.dedup();
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
}
