//! Variable substitution in strings, as compose-go's `template` package does it.
//!
//! Supported: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`,
//! `${VAR?msg}`, `${VAR:+alt}`, `${VAR+alt}`, nested defaults. A `${` that starts no valid
//! form is an error; a `$` before anything else stays literal. The default/alternative/message
//! text is itself substituted, only when it is used.

use std::collections::BTreeSet;

/// Why a string could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// A `${` opens no valid substitution; carries the whole string.
    Invalid(String),
    /// `${VAR?msg}`/`${VAR:?msg}` with VAR unset (or empty for `:?`).
    MissingRequired { variable: String, reason: String },
    /// Defaults nest `${` deeper than [`MAX_NESTING`].
    TooDeep,
}

/// The deepest nesting of `${VAR:-${...}}` accepted. compose-go has no limit (Go stacks grow);
/// here each level is a native stack frame, and real files nest two or three levels.
pub(crate) const MAX_NESTING: usize = 64;

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Invalid(template) => write!(
                f,
                "invalid interpolation format in {:?}; write `$$` for a literal `$`",
                excerpt(template)
            ),
            TemplateError::MissingRequired { variable, reason } if reason.is_empty() => {
                write!(f, "required variable {variable} is missing a value")
            }
            TemplateError::MissingRequired { variable, reason } => {
                write!(
                    f,
                    "required variable {variable} is missing a value: {reason}"
                )
            }
            TemplateError::TooDeep => write!(
                f,
                "interpolation nests `${{...}}` more than {MAX_NESTING} levels deep"
            ),
        }
    }
}

/// The start of a long string, enough to find it in a file.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Looks variables up and remembers the ones used while unset (compose warns about those).
pub(crate) struct Resolver<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) unset: BTreeSet<String>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Resolver {
            lookup,
            unset: BTreeSet::new(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// Substitutes every variable reference in `template`.
    pub(crate) fn substitute(&mut self, template: &str) -> Result<String, TemplateError> {
        self.substitute_nested(template, 0)
    }

    /// [`Resolver::substitute`] for a default, alternative or message `depth` levels deep.
    fn substitute_nested(&mut self, template: &str, depth: usize) -> Result<String, TemplateError> {
        if depth > MAX_NESTING {
            return Err(TemplateError::TooDeep);
        }
        let bytes = template.as_bytes();
        let mut out = String::with_capacity(template.len());
        let mut literal_start = 0;
        let mut line: Option<Line> = None;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push_str(&template[literal_start..i]);
                    out.push('$');
                    i += 2;
                    literal_start = i;
                }
                Some(c) if is_name_start(*c) => {
                    out.push_str(&template[literal_start..i]);
                    let end = name_end(bytes, i + 1);
                    let name = &template[i + 1..end];
                    out.push_str(&self.plain(name));
                    i = end;
                    literal_start = i;
                }
                Some(b'{') => {
                    out.push_str(&template[literal_start..i]);
                    let current = match line {
                        Some(current) if i < current.end => current,
                        _ => Line::rest_of(template, i),
                    };
                    line = Some(current);
                    let (value, next) = self.braced(template, i, current.last_close, depth)?;
                    out.push_str(&value);
                    i = next;
                    literal_start = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(&template[literal_start..]);
        Ok(out)
    }

    fn plain(&mut self, name: &str) -> String {
        match self.get(name) {
            Some(v) => v,
            None => {
                self.unset.insert(name.to_string());
                String::new()
            }
        }
    }

    /// Handles the `${...}` starting at `start`, whose line's last `}` is at `line_last_close`;
    /// returns the value and the index after it.
    fn braced(
        &mut self,
        template: &str,
        start: usize,
        line_last_close: Option<usize>,
        depth: usize,
    ) -> Result<(String, usize), TemplateError> {
        let bytes = template.as_bytes();
        let invalid = || TemplateError::Invalid(template.to_string());
        let name_start = start + 2;
        if !bytes.get(name_start).is_some_and(|c| is_name_start(*c)) {
            return Err(invalid());
        }
        let name_stop = name_end(bytes, name_start);
        let name = &template[name_start..name_stop];
        if bytes.get(name_stop) == Some(&b'}') {
            return Ok((self.plain(name), name_stop + 1));
        }
        let rest = &template[name_stop..];
        let op = [":-", ":?", ":+", "-", "?", "+"]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(invalid)?;
        let op_end = name_stop + op.len();
        // compose-go's pattern matches up to the last `}` on the same line ...
        let last_close = line_last_close
            .filter(|close| *close >= op_end)
            .ok_or_else(invalid)?;
        let matched = &template[start..=last_close];
        // ... then cuts it at the brace closing the first `${`; compose-go substitutes the
        // remainder on its own, which is what the caller's loop does when it goes on after
        // the cut (the remainder holds no newline and ends at the same last `}`).
        let own_end = first_closing_brace(matched).map_or(last_close, |close| start + close);
        let argument = template.get(op_end..own_end).ok_or_else(invalid)?;
        let value = self.apply(name, op, argument, depth)?;
        Ok((value, own_end + 1))
    }

    fn apply(
        &mut self,
        name: &str,
        op: &str,
        argument: &str,
        depth: usize,
    ) -> Result<String, TemplateError> {
        let value = self.get(name);
        match op {
            ":-" => match value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => self.substitute_nested(argument, depth + 1),
            },
            "-" => match value {
                Some(v) => Ok(v),
                None => self.substitute_nested(argument, depth + 1),
            },
            ":+" => match value {
                Some(v) if !v.is_empty() => self.substitute_nested(argument, depth + 1),
                Some(v) => Ok(v),
                None => Ok(String::new()),
            },
            "+" => match value {
                Some(_) => self.substitute_nested(argument, depth + 1),
                None => Ok(String::new()),
            },
            ":?" => match value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(TemplateError::MissingRequired {
                    variable: name.to_string(),
                    reason: self.substitute_nested(argument, depth + 1)?,
                }),
            },
            _ => match value {
                Some(v) => Ok(v),
                None => Err(TemplateError::MissingRequired {
                    variable: name.to_string(),
                    reason: self.substitute_nested(argument, depth + 1)?,
                }),
            },
        }
    }
}

/// The line around a position: where it ends and its last `}`. Found once per line, since
/// compose-go's pattern reaches to the last `}` on the line and searching again for every `${`
/// would be quadratic in the line's length.
#[derive(Clone, Copy)]
struct Line {
    end: usize,
    last_close: Option<usize>,
}

impl Line {
    /// The rest of the line from `from`: a `}` before `from` is never wanted by a `${` after it.
    fn rest_of(template: &str, from: usize) -> Line {
        let end = template[from..]
            .find('\n')
            .map_or(template.len(), |p| from + p);
        Line {
            end,
            last_close: template[from..end].rfind('}').map(|p| from + p),
        }
    }
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn name_end(bytes: &[u8], from: usize) -> usize {
    let mut end = from;
    while end < bytes.len() && (bytes[end] == b'_' || bytes[end].is_ascii_alphanumeric()) {
        end += 1;
    }
    end
}

/// compose-go's brace counter: the character right after each `{` is skipped.
fn first_closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0i64;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if bytes[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env() -> BTreeMap<String, String> {
        [
            ("FOO", "first"),
            ("BAR", ""),
            ("TAG", "1.2"),
            ("lower", "l"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn sub(template: &str) -> Result<String, TemplateError> {
        let env = env();
        let lookup = move |k: &str| env.get(k).cloned();
        Resolver::new(&lookup).substitute(template)
    }

    fn ok(template: &str) -> String {
        sub(template).unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    #[test]
    fn plain_forms() {
        assert_eq!(ok("app:$TAG"), "app:1.2");
        assert_eq!(ok("app:${TAG}"), "app:1.2");
        assert_eq!(ok("${lower}"), "l");
        assert_eq!(ok("$FOO-$FOO"), "first-first");
        assert_eq!(ok("${FOO}bar"), "firstbar");
        assert_eq!(ok("$FOObar"), "");
        assert_eq!(ok("no vars"), "no vars");
    }

    #[test]
    fn escapes_and_literal_dollars() {
        assert_eq!(ok("$$FOO"), "$FOO");
        assert_eq!(ok("$${FOO}"), "${FOO}");
        assert_eq!(ok("cost: 5$"), "cost: 5$");
        assert_eq!(ok("$1 and $ alone"), "$1 and $ alone");
        assert_eq!(ok("$$$FOO"), "$first");
    }

    #[test]
    fn defaults() {
        assert_eq!(ok("${MISSING:-dflt}"), "dflt");
        assert_eq!(ok("${BAR:-dflt}"), "dflt");
        assert_eq!(ok("${BAR-dflt}"), "");
        assert_eq!(ok("${MISSING-dflt}"), "dflt");
        assert_eq!(ok("${FOO:-dflt}"), "first");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("${MISSING:-a b:c-d}"), "a b:c-d");
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${FOO:+alt}"), "alt");
        assert_eq!(ok("${BAR:+alt}"), "");
        assert_eq!(ok("${BAR+alt}"), "alt");
        assert_eq!(ok("${MISSING+alt}"), "");
        assert_eq!(ok("${FOO+$TAG}"), "1.2");
    }

    #[test]
    fn nested_and_several() {
        assert_eq!(ok("${MISSING:-${FOO}}"), "first");
        assert_eq!(ok("${MISSING:-${NOPE:-x}}"), "x");
        assert_eq!(ok("${A:-${B:-${C:-deep}}}"), "deep");
        assert_eq!(ok("${MISSING:-x} and ${FOO}"), "x and first");
        assert_eq!(ok("${MISSING:-a}-${NOPE:-b}"), "a-b");
        assert_eq!(ok("${MISSING:-x}}"), "x}");
        assert_eq!(ok("${MISSING:-{x}}"), "{x}");
    }

    #[test]
    fn required() {
        assert_eq!(ok("${FOO:?must}"), "first");
        assert_eq!(ok("${BAR?must}"), "");
        assert_eq!(
            sub("${BAR:?set BAR please}"),
            Err(TemplateError::MissingRequired {
                variable: "BAR".into(),
                reason: "set BAR please".into()
            })
        );
        assert_eq!(
            sub("x ${MISSING?}"),
            Err(TemplateError::MissingRequired {
                variable: "MISSING".into(),
                reason: String::new()
            })
        );
        // The message itself is interpolated.
        assert_eq!(
            sub("${MISSING:?need $FOO}"),
            Err(TemplateError::MissingRequired {
                variable: "MISSING".into(),
                reason: "need first".into()
            })
        );
        // Unused required branches do not fail.
        assert_eq!(ok("${FOO:-${MISSING:?never}}"), "first");
    }

    #[test]
    fn invalid_templates() {
        for bad in [
            "${}",
            "${1ABC}",
            "${FOO BAR}",
            "${FOO",
            "${FOO:-x",
            "${FOO:-x\n}",
            "${FOO/x}",
        ] {
            assert_eq!(
                sub(bad),
                Err(TemplateError::Invalid(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn unset_variables_are_collected() {
        let env = env();
        let lookup = move |k: &str| env.get(k).cloned();
        let mut resolver = Resolver::new(&lookup);
        assert_eq!(
            resolver.substitute("$NOPE ${ALSO} ${WITH:-d}").ok(),
            Some("  d".into())
        );
        assert_eq!(
            resolver.unset.iter().cloned().collect::<Vec<_>>(),
            vec!["ALSO".to_string(), "NOPE".to_string()]
        );
    }

    /// Cases from compose-go's own template tests.
    #[test]
    fn compose_go_cases() {
        let env: BTreeMap<String, String> =
            [("FOO", "first"), ("BAR", ""), ("JSON", "{\"json\":2}")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let lookup = move |k: &str| env.get(k).cloned();
        let run = |t: &str| Resolver::new(&lookup).substitute(t);
        for same in ["a $ string", "^REGEX$", "$}", "$", "foo"] {
            assert_eq!(run(same).as_deref(), Ok(same));
        }
        for bad in ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}"] {
            assert!(matches!(run(bad), Err(TemplateError::Invalid(_))), "{bad}");
        }
        let cases = [
            ("$${foo}", "${foo}"),
            ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
            (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
            ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
            ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
            ("${FOO?bar-baz}", "first"),
            ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
            ("ok ${missing:-{\"json\":1}}", "ok {\"json\":1}"),
            ("ok ${JSON-{\"json\":1}}", "ok {\"json\":2}"),
        ];
        for (template, expected) in cases {
            assert_eq!(run(template).as_deref(), Ok(expected), "{template}");
        }
        assert_eq!(
            run("not ok ${UNSET_VAR?Mandatory Variable ${FOO}}").map_err(|e| e.to_string()),
            Err(
                "required variable UNSET_VAR is missing a value: Mandatory Variable first"
                    .to_string()
            )
        );
    }

    #[test]
    fn nesting_up_to_the_limit_works_and_deeper_fails() {
        let nested = |depth: usize| format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        assert_eq!(ok(&nested(MAX_NESTING)), "x");
        assert_eq!(sub(&nested(MAX_NESTING + 1)), Err(TemplateError::TooDeep));
        // Once overflowed the stack (issue 16).
        assert_eq!(sub(&nested(30_000)), Err(TemplateError::TooDeep));
        // An unclosed nest fails the same way, whatever the braces after it.
        assert_eq!(
            sub(&"${A:-".repeat(30_000)),
            Err(TemplateError::Invalid("${A:-".repeat(30_000)))
        );
        assert!(matches!(
            sub(&format!("{}}}", "${A:-".repeat(30_000))),
            Err(TemplateError::Invalid(_))
        ));
    }

    #[test]
    fn many_substitutions_on_one_line_take_linear_time() {
        // Each `${` once searched the rest of its line and substituted the rest of the line
        // recursively: a stack overflow and quadratic time for a long line.
        let line = "${MISSING:-x}".repeat(200_000);
        let started = std::time::Instant::now();
        assert_eq!(ok(&line), "x".repeat(200_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(ok("ünïcode ${MISSING:-é} €$FOO"), "ünïcode é €first");
    }
}
