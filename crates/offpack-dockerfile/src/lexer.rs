//! The subset of BuildKit's shell lexer (`frontend/dockerfile/shell/lex.go`) that
//! decides what a Dockerfile word means: quotes, the escape token, and `$VAR`
//! expansion with the `${VAR:-default}` family of modifiers.

use std::collections::BTreeMap;

/// The deepest nesting of `${VAR:-${...}}` (and quotes inside it) accepted. BuildKit has no
/// limit (Go stacks grow); here each level is native stack, and line continuations let a
/// single instruction nest without end.
pub(crate) const MAX_NESTING: usize = 64;

/// Variables visible to an expansion.
pub(crate) type Env = BTreeMap<String, String>;

/// Lexer settings; the flags mirror BuildKit's `Lex` fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape tokens in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
        }
    }

    /// Expands one word (BuildKit `ProcessWord`): the result keeps spaces.
    pub(crate) fn process_word(&self, word: &str, env: &Env) -> Result<String, String> {
        let mut state = State::new(self, word, env);
        let (result, _) = state
            .process_stop_on(None, self.raw_escapes)
            .map_err(|e| format!("failed to process {:?}: {e}", excerpt(word)))?;
        Ok(result)
    }

    /// Expands and splits into words (BuildKit `ProcessWords`).
    pub(crate) fn process_words(&self, word: &str, env: &Env) -> Result<Vec<String>, String> {
        let mut state = State::new(self, word, env);
        let (_, words) = state
            .process_stop_on(None, self.raw_escapes)
            .map_err(|e| format!("failed to process {:?}: {e}", excerpt(word)))?;
        Ok(words)
    }
}

/// The start of a long word, enough to find it in the Dockerfile.
fn excerpt(word: &str) -> String {
    const SHOWN: usize = 200;
    match word.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &word[..cut]),
        None => word.to_string(),
    }
}

struct State<'a> {
    lexer: Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a Env,
    raw_escapes: bool,
    /// How many `process_stop_on` calls are under way.
    depth: usize,
}

/// Splits expansion results into words the way BuildKit's `wordsStruct` does.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

impl<'a> State<'a> {
    fn new(lexer: &Lexer, word: &str, env: &'a Env) -> State<'a> {
        State {
            lexer: *lexer,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: lexer.raw_escapes,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        // The word itself is the first level.
        if self.depth > MAX_NESTING {
            return Err(format!(
                "substitutions nest more than {MAX_NESTING} levels deep"
            ));
        }
        let saved_raw = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let outcome = self.process_stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved_raw;
        outcome
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' => Some(self.process_single_quote()?),
                '"' => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(text) = special {
                result.push_str(&text);
                if ch == '$' {
                    words.add_string(&text);
                } else {
                    words.add_raw_string(&text);
                }
                continue;
            }
            self.next();
            if ch == self.lexer.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(escaped) => {
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    }
                }
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.process_dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut result = String::from("<<");
        while let Some(ch) = self.peek().filter(|c| *c == ' ' || *c == '\t') {
            result.push(ch);
            self.next();
        }
        result
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                let mut modifier = String::from(ch);
                let op = if null_is_unset {
                    let op = self.next().ok_or("syntax error: missing '}'")?;
                    modifier.push(op);
                    op
                } else {
                    ch
                };
                let pattern_op = op == '#' || op == '%';
                if null_is_unset && pattern_op {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let (word, _) = self.process_stop_on(Some('}'), pattern_op).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.lookup(&name);
                if self.lexer.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty_counts_as_unset = |v: &Option<String>| match v {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if empty_counts_as_unset(&value) {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty_counts_as_unset(&value) {
                        String::new()
                    } else {
                        word
                    }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        Ok(trim_pattern(&value, &pattern, op == '#', greedy))
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.lookup(&name);
                if self.lexer.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                Ok(replace_pattern(
                    &value.unwrap_or_default(),
                    &pattern,
                    &replacement,
                    replace_all,
                ))
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Shell glob (`*`, `?`, `\\x` literal) match of the whole `text`. Iterative
/// with single-star backtracking, so hostile patterns cannot blow up.
fn glob_matches(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') => {
                p += 1;
                t += 1;
                continue;
            }
            Some(c) => {
                let (literal, width) = match (c, pattern.get(p + 1)) {
                    ('\\', Some(escaped)) => (*escaped, 2),
                    _ => (*c, 1),
                };
                if text.get(t) == Some(&literal) {
                    p += width;
                    t += 1;
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|c| *c == '*')
}

/// `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`.
fn trim_pattern(value: &str, pattern: &str, prefix: bool, greedy: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let mut cuts: Vec<usize> = (0..=text.len()).collect();
    if greedy == prefix {
        cuts.reverse();
    }
    for cut in cuts {
        let (matched, kept) = if prefix {
            (&text[..cut], &text[cut..])
        } else {
            (&text[cut..], &text[..cut])
        };
        if glob_matches(&pattern, matched) {
            return kept.iter().collect();
        }
    }
    value.to_string()
}

/// `${v/p/r}` and `${v//p/r}`: longest match at the leftmost position.
fn replace_pattern(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut start = 0;
    let mut replaced = false;
    while start <= text.len() {
        if replaced && !all {
            break;
        }
        let found = (start + 1..=text.len())
            .rev()
            .find(|&end| glob_matches(&pattern, &text[start..end]));
        match found {
            Some(end) => {
                out.push_str(replacement);
                start = end;
                replaced = true;
            }
            None => {
                if let Some(ch) = text.get(start) {
                    out.push(*ch);
                }
                start += 1;
            }
        }
    }
    if start < text.len() {
        out.extend(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(s: &str, e: &Env) -> Result<String, String> {
        Lexer::new('\\').process_word(s, e)
    }

    #[test]
    fn nesting_has_a_limit() {
        let env = Env::new();
        let lexer = Lexer::new('\\');
        let nested = |depth: usize| format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        assert_eq!(lexer.process_word(&nested(MAX_NESTING), &env).unwrap(), "x");
        // Line continuations made this a stack overflow.
        for depth in [MAX_NESTING + 1, 100_000] {
            let err = lexer.process_word(&nested(depth), &env).unwrap_err();
            assert!(err.contains("nest more than"), "{}", &err[err.len() - 80..]);
        }
        let quoted = format!("{}x{}", "${A:-\"".repeat(100_000), "\"}".repeat(100_000));
        assert!(lexer.process_word(&quoted, &env).is_err());
    }

    #[test]
    fn expands_variables_and_default_modifiers() {
        let e = env(&[("V", "node"), ("EMPTY", "")]);
        assert_eq!(word("$V:18", &e).unwrap(), "node:18");
        assert_eq!(word("${V}-slim", &e).unwrap(), "node-slim");
        assert_eq!(word("${UNSET:-alpine}", &e).unwrap(), "alpine");
        assert_eq!(word("${EMPTY:-alpine}", &e).unwrap(), "alpine");
        assert_eq!(word("${EMPTY-alpine}", &e).unwrap(), "");
        assert_eq!(word("${V:+set}", &e).unwrap(), "set");
        assert_eq!(word("${EMPTY:+set}", &e).unwrap(), "");
        assert_eq!(word("${EMPTY+set}", &e).unwrap(), "set");
        assert_eq!(word("${UNSET+set}", &e).unwrap(), "");
        assert_eq!(word("$UNSET", &e).unwrap(), "");
        assert_eq!(word("${UNSET:-${V}}", &e).unwrap(), "node");
    }

    #[test]
    fn required_variables_fail_with_the_message() {
        let e = env(&[("EMPTY", "")]);
        assert!(
            word("${UNSET:?set IMAGE}", &e)
                .unwrap_err()
                .contains("UNSET: set IMAGE")
        );
        assert!(
            word("${UNSET?}", &e)
                .unwrap_err()
                .contains("is not allowed to be unset")
        );
        assert!(
            word("${EMPTY:?}", &e)
                .unwrap_err()
                .contains("is not allowed to be empty")
        );
        assert_eq!(word("${EMPTY?}", &e).unwrap(), "");
    }

    #[test]
    fn quotes_and_escapes() {
        let e = env(&[("V", "x")]);
        assert_eq!(word("'$V'", &e).unwrap(), "$V");
        assert_eq!(word("\"$V\"", &e).unwrap(), "x");
        assert_eq!(word("\\$V", &e).unwrap(), "$V");
        assert_eq!(Lexer::new('`').process_word("`$V", &e).unwrap(), "$V");
        assert!(word("'open", &e).is_err());
        assert!(word("${V", &e).unwrap_err().contains("missing '}'"));
        assert!(word("${}", &e).unwrap_err().contains("bad substitution"));
    }

    #[test]
    fn pattern_modifiers() {
        let e = env(&[("P", "linux/arm64/v8")]);
        assert_eq!(word("${P#*/}", &e).unwrap(), "arm64/v8");
        assert_eq!(word("${P##*/}", &e).unwrap(), "v8");
        assert_eq!(word("${P%/*}", &e).unwrap(), "linux/arm64");
        assert_eq!(word("${P%%/*}", &e).unwrap(), "linux");
        assert_eq!(word("${P/\\//-}", &e).unwrap(), "linux-arm64/v8");
        assert_eq!(word("${P//\\//-}", &e).unwrap(), "linux-arm64-v8");
        assert!(word("${P:#x}", &e).is_err());
    }

    #[test]
    fn skip_unset_keeps_references() {
        let lexer = Lexer {
            skip_unset_env: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lexer.process_word("$A ${B} ${C:-d}", &Env::new()).unwrap(),
            "$A ${B} ${C:-d}"
        );
    }

    #[test]
    fn words_split_on_unquoted_space() {
        let words = Lexer::new('\\')
            .process_words("a \"b c\" <<EOF  << 'X'", &Env::new())
            .unwrap();
        assert_eq!(words, ["a", "b c", "<<EOF", "<< X"]);
    }
}
