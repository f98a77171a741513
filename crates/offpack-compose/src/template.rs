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
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Invalid(template) => write!(
                f,
                "invalid interpolation format in {template:?}; write `$$` for a literal `$`"
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
        }
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
        let bytes = template.as_bytes();
        let mut out = String::with_capacity(template.len());
        let mut literal_start = 0;
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
                    let (value, next) = self.braced(template, i)?;
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

    /// Handles the `${...}` starting at `start`; returns the value and the index after it.
    fn braced(&mut self, template: &str, start: usize) -> Result<(String, usize), TemplateError> {
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
        let line_end = template[op_end..]
            .find('\n')
            .map_or(template.len(), |p| op_end + p);
        let last_close = template[op_end..line_end]
            .rfind('}')
            .map(|p| op_end + p)
            .ok_or_else(invalid)?;
        let matched = &template[start..=last_close];
        // ... then cuts it at the brace closing the first `${`; the remainder is substituted
        // on its own and appended.
        let (own_end, remainder) = match first_closing_brace(matched) {
            Some(close) => (start + close, &template[start + close + 1..=last_close]),
            None => (last_close, ""),
        };
        let argument = template.get(op_end..own_end).ok_or_else(invalid)?;
        let value = self.apply(name, op, argument)?;
        let tail = self.substitute(remainder)?;
        Ok((value + &tail, last_close + 1))
    }

    fn apply(&mut self, name: &str, op: &str, argument: &str) -> Result<String, TemplateError> {
        let value = self.get(name);
        match op {
            ":-" => match value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => self.substitute(argument),
            },
            "-" => match value {
                Some(v) => Ok(v),
                None => self.substitute(argument),
            },
            ":+" => match value {
                Some(v) if !v.is_empty() => self.substitute(argument),
                Some(v) => Ok(v),
                None => Ok(String::new()),
            },
            "+" => match value {
                Some(_) => self.substitute(argument),
                None => Ok(String::new()),
            },
            ":?" => match value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(TemplateError::MissingRequired {
                    variable: name.to_string(),
                    reason: self.substitute(argument)?,
                }),
            },
            _ => match value {
                Some(v) => Ok(v),
                None => Err(TemplateError::MissingRequired {
                    variable: name.to_string(),
                    reason: self.substitute(argument)?,
                }),
            },
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
    fn multibyte_text_is_kept() {
        assert_eq!(ok("ünïcode ${MISSING:-é} €$FOO"), "ünïcode é €first");
    }
}
