//! A cheap look at how deep a YAML text nests its flow collections (`[...]`, `{...}`, JSON),
//! before the parser sees it.
//!
//! Why: libyaml's scanner (under `serde_norway`) keeps one possible simple key per flow level and
//! walks all of them for every token, so a document nesting 100,000 `[` takes minutes to scan,
//! and `serde_norway` refuses anything deeper than 128 levels only after the whole document is
//! scanned. Refusing the same documents here keeps that to one linear pass.
//!
//! The count errs low, never high: a bracket is counted only where YAML would open a collection
//! (anywhere inside a flow collection, at the start of a value outside one), quoted scalars,
//! comments and block scalars are skipped, and when unsure a bracket is not counted. A document
//! refused here nests deeper than the parser accepts anyway.

/// The deepest nesting `serde_norway` accepts (its deserializer's recursion limit).
pub(crate) const MAX_DEPTH: usize = 128;

/// Where a flow collection opens more than [`MAX_DEPTH`] levels deep: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Checks that `text` never nests flow collections more than [`MAX_DEPTH`] deep.
pub(crate) fn check(text: &str) -> Result<(), TooDeep> {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
        line: 1,
        column: 1,
    };
    let mut depth = 0usize;
    // True where a value may start: a bracket or a quote there opens a collection or a scalar.
    let mut value_start = true;
    // Indentation of the current line, for block scalars.
    let mut indent = 0usize;
    let mut line_start = true;
    while let Some(c) = scan.peek(0).map(char::from) {
        if line_start {
            indent = scan.skip_while(|c| c == b' ');
            line_start = false;
            value_start = true;
            continue;
        }
        match c {
            '\n' => {
                scan.next();
                line_start = true;
            }
            ' ' | '\t' | '\r' => {
                scan.next();
            }
            '#' if scan.after_space_or_line_start() => scan.skip_line(),
            '[' | '{' if depth > 0 || value_start => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep {
                        line: scan.line,
                        column: scan.column,
                    });
                }
                scan.next();
                value_start = true;
            }
            ']' | '}' if depth > 0 => {
                depth -= 1;
                scan.next();
                value_start = false;
            }
            ',' if depth > 0 => {
                scan.next();
                value_start = true;
            }
            '"' | '\'' if value_start => {
                scan.skip_quoted(c as u8);
                value_start = false;
            }
            '|' | '>' if depth == 0 && value_start => {
                scan.skip_line();
                scan.skip_block_scalar(indent);
            }
            ':' | '-' | '?' if (c == ':' && depth > 0) || scan.space_or_end_at(1) => {
                scan.next();
                value_start = true;
            }
            _ => {
                scan.next();
                value_start = false;
            }
        }
    }
    Ok(())
}

/// Bytes: every character that matters is ASCII, and no byte of a multibyte character is.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
    /// In characters.
    column: usize,
}

impl Scan<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.at + ahead).copied()
    }

    fn space_or_end_at(&self, ahead: usize) -> bool {
        matches!(self.peek(ahead), None | Some(b' ' | b'\t' | b'\n' | b'\r'))
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if c & 0xC0 != 0x80 {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        let mut skipped = 0;
        while self.peek(0).is_some_and(&keep) {
            self.next();
            skipped += 1;
        }
        skipped
    }

    fn after_space_or_line_start(&self) -> bool {
        self.at == 0 || matches!(self.bytes[self.at - 1], b' ' | b'\t' | b'\n' | b'\r')
    }

    /// Up to the end of the line, without the newline.
    fn skip_line(&mut self) {
        self.skip_while(|c| c != b'\n');
    }

    /// A quoted scalar, which may span lines: `\` escapes in double quotes, `''` in single ones.
    fn skip_quoted(&mut self, quote: u8) {
        self.next();
        while let Some(c) = self.next() {
            if quote == b'"' && c == b'\\' {
                self.next();
            } else if c == quote {
                if quote == b'\'' && self.peek(0) == Some(b'\'') {
                    self.next();
                } else {
                    return;
                }
            }
        }
    }

    /// The lines of a block scalar (`|`, `>`) whose header line is indented by `indent`: every
    /// following line that is blank or indented more. Stops before the newline of the last one.
    fn skip_block_scalar(&mut self, indent: usize) {
        while self.peek(0) == Some(b'\n') {
            let mut ahead = 1;
            while self.peek(ahead) == Some(b' ') {
                ahead += 1;
            }
            let blank = matches!(self.peek(ahead), None | Some(b'\n' | b'\r'));
            if !blank && ahead - 1 <= indent {
                return;
            }
            self.next();
            self.skip_line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check(text).is_ok()
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_the_bracket_too_deep() {
        let n = 100_000;
        for text in [
            format!("services: {}{}\n", "[".repeat(n), "]".repeat(n)),
            format!("services: {}1{}\n", "{a: ".repeat(n), "}".repeat(n)),
            format!(
                "{{\"services\": {}1{}}}\n",
                "{\"a\": ".repeat(n),
                "}".repeat(n)
            ),
            format!("x: 1\nservices:\n  - {}\n", "[\n".repeat(n)),
        ] {
            let started = std::time::Instant::now();
            let err = check(&text).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            assert!(err.line >= 1 && err.column >= 1, "{err:?}");
        }
        assert_eq!(
            check(&format!("a: {}", "[".repeat(200))),
            Err(TooDeep {
                line: 1,
                column: 4 + MAX_DEPTH
            })
        );
    }

    #[test]
    fn nesting_up_to_the_limit_passes() {
        let n = MAX_DEPTH;
        assert!(depth_ok(&format!(
            "a: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        )));
        // Closed collections do not add up.
        let many = format!("a: {}\n", "[[1], [2]], ".repeat(1000));
        assert!(depth_ok(&format!("list: [{many}]")));
    }

    #[test]
    fn brackets_that_open_nothing_are_not_counted() {
        let n = 1000;
        let brackets = "[".repeat(n);
        for text in [
            // Inside plain scalars outside flow collections.
            format!("command: echo {brackets}\n"),
            // Quoted, also across lines and with escapes.
            format!("a: \"x\\\" {brackets}\"\nb: '{brackets}'' {brackets}'\n"),
            format!("a: [\"{brackets}\", '{brackets}']\n"),
            // Comments.
            format!("a: 1 # {brackets}\n# {brackets}\n"),
            // Block scalars, with deeper and blank lines.
            format!("a: |\n  {brackets}\n\n    {brackets}\nb: >-\n   {brackets}\nc: 1\n"),
            format!("- |\n  {brackets}\n- 2\n"),
            // A plain scalar with `-` or `:` inside.
            format!("a: x-{brackets}\nb: http://x:{brackets}\n"),
        ] {
            assert!(depth_ok(&text), "{text}");
        }
    }

    #[test]
    fn a_block_scalar_ends_at_a_line_indented_no_deeper() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("a: |\n  text\nb: {deep}\n")).is_err());
        assert!(check(&format!("x:\n  a: |\n    text\n  b: {deep}\n")).is_err());
    }
}
