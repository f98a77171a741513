//! `.env` files as compose reads them (compose-go's `dotenv` parser).
//!
//! `KEY=VAL`, `KEY: VAL`, `export KEY=VAL`, `#` comments, a bare `KEY` (takes the value from
//! the environment when set), unquoted values (cut at ` #`, trimmed, interpolated), single
//! quotes (literal), double quotes (escapes, then interpolation), multi-line quoted values.

use std::collections::{BTreeMap, BTreeSet};

use crate::template::{Resolver, TemplateError};

/// Parses `.env` text. `lookup` answers variables from outside the file (the process
/// environment and earlier files); values defined earlier in this file come next.
/// Unset variables used by values are added to `unset`.
pub(crate) fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut BTreeMap<String, String>,
    unset: &mut BTreeSet<String>,
) -> Result<(), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser { line: 1 };
    let mut rest = text;
    loop {
        rest = parser.statement_start(rest);
        if rest.is_empty() {
            return Ok(());
        }
        let (key, after, inherited) = parser.key_name(rest)?;
        if key.contains(' ') {
            return Err(format!("line {}: key cannot contain a space", parser.line));
        }
        if inherited {
            if let Some(value) = lookup(&key) {
                out.insert(key, value);
            }
            rest = after;
            continue;
        }
        let (value, after) = parser.value(
            after,
            &|k: &str| lookup(k).or_else(|| out.get(k).cloned()),
            unset,
        )?;
        out.insert(key, value);
        rest = after;
    }
}

struct Parser {
    line: usize,
}

fn is_inline_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl Parser {
    /// Skips blank space and comment lines.
    fn statement_start<'t>(&mut self, mut src: &'t str) -> &'t str {
        loop {
            let Some(pos) = src.find(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                !c.is_whitespace()
            }) else {
                return "";
            };
            src = &src[pos..];
            if !src.starts_with('#') {
                return src;
            }
            match src.find('\n') {
                Some(nl) => src = &src[nl..],
                None => return "",
            }
        }
    }

    fn key_name<'t>(&mut self, src: &'t str) -> Result<(String, &'t str, bool), String> {
        let mut src = src;
        if let Some(after) = src.strip_prefix("export") {
            if after.starts_with(is_inline_space) {
                src = after.trim_start_matches(is_inline_space);
            }
        }
        let mut key_end = None;
        for (i, c) in src.char_indices() {
            if is_inline_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    key_end = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() => {}
                // Environment files hold secrets: errors name the line, never show its text.
                c => {
                    return Err(format!(
                        "line {}: unexpected character {c:?} in a variable name",
                        self.line
                    ));
                }
            }
        }
        let (key, rest, inherited) = match key_end {
            Some((i, sep)) => (&src[..i], &src[i + sep.len_utf8()..], sep == '\n'),
            // A last line holding only a name: compose treats it as `KEY=` with nothing after.
            None => (src, "", false),
        };
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        let key = key.trim_end().to_string();
        Ok((key, rest.trim_start_matches(is_inline_space), inherited))
    }

    fn value<'t>(
        &mut self,
        src: &'t str,
        lookup: &dyn Fn(&str) -> Option<String>,
        unset: &mut BTreeSet<String>,
    ) -> Result<(String, &'t str), String> {
        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (line, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = line.split_once(" #").map_or(line, |(v, _)| v).trim_end();
                return Ok((expand(value, lookup, unset, self.line)?, rest));
            }
        };
        let mut chars = String::new();
        let mut escaped = false;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            let value = if quote == '"' {
                expand(&expand_escapes(&chars), lookup, unset, self.line)?
            } else {
                chars
            };
            return Ok((value, &src[i + c.len_utf8()..]));
        }
        Err(format!("line {}: unterminated quoted value", self.line))
    }
}

fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut BTreeSet<String>,
    line: usize,
) -> Result<String, String> {
    let mut resolver = Resolver::new(lookup);
    let result = resolver.substitute(value).map_err(|e| {
        let line = line.saturating_sub(1).max(1);
        match e {
            // It would quote the value, which may be a secret.
            TemplateError::Invalid(_) => {
                format!("line {line}: invalid interpolation format; write `$$` for a literal `$`")
            }
            e => format!("line {line}: {e}"),
        }
    });
    unset.extend(resolver.unset);
    result
}

/// Shell-style escapes inside double quotes: `\n \t \r \a \b \f \v \\ \"`, `\0NNN` octal,
/// and `\$` (kept as `$$` so interpolation leaves a literal `$`).
fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(e @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\' | '$')) => {
                chars.next();
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '$' => out.push_str("$$"),
                    other => out.push(other),
                }
            }
            Some('0') => {
                chars.next();
                let mut digits = String::new();
                while digits.len() < 3 {
                    match chars.peek() {
                        Some(d) if d.is_ascii_digit() => {
                            digits.push(*d);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                // Go's UnquoteChar needs exactly three octal digits; anything else stays as written.
                match u32::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|_| digits.len() == 3)
                {
                    Some(code) if code <= 255 => out.push(char::from(code as u8)),
                    _ => {
                        out.push_str("\\0");
                        out.push_str(&digits);
                    }
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(
        text: &str,
        outside: &[(&str, &str)],
    ) -> Result<BTreeMap<String, String>, String> {
        let outside: BTreeMap<String, String> = outside
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| outside.get(k).cloned();
        let mut out = BTreeMap::new();
        let mut unset = BTreeSet::new();
        parse(text, &lookup, &mut out, &mut unset)?;
        Ok(out)
    }

    fn get(map: &BTreeMap<String, String>, key: &str) -> String {
        map.get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} missing from {map:?}"))
    }

    #[test]
    fn plain_export_comments_and_yaml_style() {
        let env = parse_with(
            "# comment\n\nA=1\nexport B=two\n  C = spaced  \nD: colon\nE=\nexported=x\n",
            &[],
        )
        .expect("parses");
        assert_eq!(get(&env, "A"), "1");
        assert_eq!(get(&env, "B"), "two");
        assert_eq!(get(&env, "C"), "spaced");
        assert_eq!(get(&env, "D"), "colon");
        assert_eq!(get(&env, "E"), "");
        assert_eq!(get(&env, "exported"), "x");
    }

    #[test]
    fn unquoted_inline_comments() {
        let env = parse_with("A=value # note\nB=val#ue\nC=#x\n", &[]).expect("parses");
        assert_eq!(get(&env, "A"), "value");
        assert_eq!(get(&env, "B"), "val#ue");
        assert_eq!(get(&env, "C"), "#x");
    }

    #[test]
    fn single_quotes_are_literal() {
        let env = parse_with("A='$HOME \\n # x'\nB='it\\'s'\n", &[("HOME", "/h")]).expect("parses");
        assert_eq!(get(&env, "A"), "$HOME \\n # x");
        assert_eq!(get(&env, "B"), "it's");
    }

    #[test]
    fn double_quotes_escape_and_interpolate() {
        let env = parse_with(
            "BASE=/srv\nA=\"line1\\nline2\"\nB=\"${BASE}/app\"\nC=\"say \\\"hi\\\"\"\nD=\"\\$BASE\"\nE=\"tab\\there\" # c\n",
            &[],
        )
        .expect("parses");
        assert_eq!(get(&env, "A"), "line1\nline2");
        assert_eq!(get(&env, "B"), "/srv/app");
        assert_eq!(get(&env, "C"), "say \"hi\"");
        assert_eq!(get(&env, "D"), "$BASE");
        assert_eq!(get(&env, "E"), "tab\there");
    }

    #[test]
    fn multi_line_quoted_values() {
        let env = parse_with("KEY=\"first\nsecond\"\nNEXT='a\nb'\nLAST=1\n", &[]).expect("parses");
        assert_eq!(get(&env, "KEY"), "first\nsecond");
        assert_eq!(get(&env, "NEXT"), "a\nb");
        assert_eq!(get(&env, "LAST"), "1");
    }

    #[test]
    fn interpolation_prefers_outside_values_and_defaults() {
        let env = parse_with(
            "A=file\nB=$A-${MISSING:-dflt}\nC=${OUT}\n",
            &[("A", "process"), ("OUT", "o")],
        )
        .expect("parses");
        assert_eq!(get(&env, "A"), "file");
        assert_eq!(get(&env, "B"), "process-dflt");
        assert_eq!(get(&env, "C"), "o");
    }

    #[test]
    fn bare_key_inherits_from_outside() {
        let env = parse_with("FROM_ENV\nNOT_SET\nX=1\n", &[("FROM_ENV", "yes")]).expect("parses");
        assert_eq!(get(&env, "FROM_ENV"), "yes");
        assert!(!env.contains_key("NOT_SET"));
        assert_eq!(get(&env, "X"), "1");
    }

    #[test]
    fn crlf_and_bom() {
        let env = parse_with("\u{feff}A=1\r\nB=2\r\n", &[]).expect("parses");
        assert_eq!(get(&env, "A"), "1");
        assert_eq!(get(&env, "B"), "2");
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_with("A=1\nB C=2\n", &[]).expect_err("space in key");
        assert!(err.contains("line 2"), "{err}");
        let err = parse_with("A=1\nB=\"open\n", &[]).expect_err("unterminated");
        assert!(err.contains("unterminated"), "{err}");
        let err = parse_with("A$=1\n", &[]).expect_err("bad char");
        assert!(err.contains("unexpected character"), "{err}");
        let err = parse_with("A=${X:?X is required}\n", &[]).expect_err("required");
        assert!(err.contains("X is required"), "{err}");
    }

    #[test]
    fn octal_escape() {
        assert_eq!(expand_escapes("\\0101"), "A");
        assert_eq!(expand_escapes("\\q"), "\\q");
    }
}
