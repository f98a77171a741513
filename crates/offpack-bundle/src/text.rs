//! Showing text a bundle carries (names, paths, tags) on a terminal.

use std::borrow::Cow;

/// `text` with every character that could move the cursor, recolour, retitle or reorder a terminal
/// written as a Rust escape (`\u{1b}`, `\n`, `\r`, ...): C0 and C1 control characters, and the
/// bidirectional overrides that make text read differently from what it is. A bundle's names are
/// the sender's data; printed raw, they could fake lines of offpack's output or hide what they are.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, needs_escape)
}

/// [`escape_controls`] for offpack's own multi-line text: keeps line breaks and tabs (names in it
/// must have been escaped with [`escape_controls`] already).
pub fn escape_controls_in_lines(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && c != '\t' && needs_escape(c))
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("shop:1.0-é"), "shop:1.0-é");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\u{1b}[2Jb\nc\rd\te\u{7f}\u{9b}"),
            "a\\u{1b}[2Jb\\nc\\rd\\te\\u{7f}\\u{9b}"
        );
        assert_eq!(escape_controls("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(
            escape_controls_in_lines("line 1\n\tline \u{1b}2\r"),
            "line 1\n\tline \\u{1b}2\\r"
        );
    }
}
