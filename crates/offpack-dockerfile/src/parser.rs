//! Dockerfile parsing with BuildKit's rules (`frontend/dockerfile/parser` and
//! `frontend/dockerfile/instructions`): parser directives, line continuations,
//! heredocs, builder flags, JSON vs shell form, stages and global `ARG`s.

use serde::Serialize;

use crate::lexer::{Env, Lexer};

/// A value with the 1-based line it was written on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line number.
    pub line: usize,
}

/// A parse failure, located at the (first) line of the offending instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, in BuildKit's words where it has some.
    pub message: String,
}

/// A parsed Dockerfile: directives, global `ARG`s (before the first `FROM`) and stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// `ARG`s declared before the first `FROM`, in order.
    pub global_args: Vec<ArgDecl>,
    /// Build stages in file order.
    pub stages: Vec<Stage>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// The `syntax` directive's value as written (a frontend image, maybe followed by options).
    pub syntax: Option<Located<String>>,
    /// The escape token: `\` (default) or `` ` ``.
    pub escape: char,
    /// The `check` directive's value.
    pub check: Option<String>,
}

/// One `ARG` key, with its default as written (quotes and `$` not yet processed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// Variable name.
    pub name: String,
    /// Default value as written, `None` for `ARG NAME`.
    pub default: Option<String>,
    /// 1-based line of the `ARG` instruction.
    pub line: usize,
}

/// A build stage: one `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// 0-based position in the file (what `--from=<n>` refers to).
    pub index: usize,
    /// The `AS` name, lowercased as BuildKit does.
    pub name: Option<String>,
    /// The raw `FROM` operand before argument expansion; its line is the `FROM` line.
    pub base: Located<String>,
    /// The raw `--platform` value.
    pub platform: Option<String>,
    /// Instructions after `FROM`, in order.
    pub instructions: Vec<Instruction>,
}

/// A heredoc attached to an instruction (`RUN <<EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// Delimiter word, quotes removed.
    pub name: String,
    /// File descriptor prefix (`3<<EOF`), 0 when none.
    pub file_descriptor: u32,
    /// False when the delimiter was quoted (content is not expanded).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
    /// Body lines with their line endings, terminator excluded.
    pub content: String,
}

/// One instruction after line continuations and heredocs are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// 1-based first line.
    pub line: usize,
    /// 1-based last line (including heredoc bodies).
    pub end_line: usize,
    /// Keyword, uppercased.
    pub keyword: String,
    /// Builder flags (`--from=x` → `("from", Some("x"))`, `--link` → `("link", None)`).
    pub flags: Vec<(String, Option<String>)>,
    /// Arguments as BuildKit's parser yields them: the JSON array for exec form; one
    /// string for shell-form `RUN`/`CMD`/`ENTRYPOINT`/`SHELL` and single-value
    /// instructions; whitespace-split words for `FROM`/`COPY`/`ADD`/`VOLUME`/`EXPOSE`;
    /// `key, value, separator` triples for `ENV`/`LABEL`; the trigger keyword and its
    /// arguments for `ONBUILD`.
    pub args: Vec<String>,
    /// True when the arguments were a JSON array (exec form).
    pub json: bool,
    /// The logical line after joining continuations (heredoc bodies excluded).
    pub original: String,
    /// Heredocs, in the order their delimiters appear.
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    /// The value of the last `--name=value` flag.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Values of every `--name=value` occurrence (for repeatable flags like `--mount`).
    pub fn flag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

fn known_flags(keyword: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match keyword {
        "ADD" => &[
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", String),
            ("unpack", Bool),
            ("exclude", Strings),
        ],
        "COPY" => &[
            ("chown", String),
            ("from", String),
            ("chmod", String),
            ("link", Bool),
            ("exclude", Strings),
            ("parents", Bool),
        ],
        "FROM" => &[("platform", String)],
        "RUN" => &[
            ("mount", Strings),
            ("network", String),
            ("security", String),
            ("device", Strings),
        ],
        "HEALTHCHECK" => &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
        _ => &[],
    }
}

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Longest physical line (newline included) BuildKit's scanner accepts.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Parses a Dockerfile the way BuildKit's Dockerfile frontend does.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    // BuildKit reads lines with a bufio.Scanner, whose default buffer is 64 KiB.
    if let Some(long) = lines.iter().position(|l| l.len() > MAX_LINE_BYTES) {
        return Err(ParseError {
            line: long + 1,
            message: format!(
                "dockerfile line greater than max allowed size of {}",
                MAX_LINE_BYTES - 1
            ),
        });
    }
    let mut directive_parser = DirectiveParser::default();
    let mut directives = Directives {
        syntax: None,
        escape: '\\',
        check: None,
    };
    let mut instructions = Vec::new();
    let mut next = 0usize;

    while next < lines.len() {
        let raw = lines[next];
        next += 1;
        let start_line = next;
        let token = trim_newline(raw).trim_start();
        directive_parser.feed(token, start_line, &mut directives)?;
        let (mut text, mut ended) = trim_continuation(strip_comment(token), directives.escape);
        if ended && text.is_empty() {
            continue;
        }
        let mut logical = text.to_string();
        while !ended && next < lines.len() {
            let raw = lines[next];
            next += 1;
            let token = trim_newline(raw);
            directive_parser.feed(token, next, &mut directives)?;
            if is_comment(raw) || token.trim_start().is_empty() {
                continue;
            }
            (text, ended) = trim_continuation(token, directives.escape);
            logical.push_str(text);
        }

        let mut instruction =
            parse_line(&logical, directives.escape).map_err(|message| ParseError {
                line: start_line,
                message,
            })?;
        instruction.line = start_line;
        if can_contain_heredoc(&instruction) && logical.contains("<<") {
            let heredocs = heredocs_from_line(&logical).map_err(|message| ParseError {
                line: start_line,
                message,
            })?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                while next < lines.len() {
                    let body_line = lines[next];
                    next += 1;
                    let mut candidate = trim_newline(body_line);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(body_line);
                }
                if !terminated {
                    return Err(ParseError {
                        line: start_line,
                        message: format!("unterminated heredoc {:?}", heredoc.name),
                    });
                }
                instruction.heredocs.push(heredoc);
            }
        }
        instruction.end_line = next.max(start_line);
        instructions.push(instruction);
    }

    if instructions.is_empty() {
        return Err(ParseError {
            line: lines.len().max(1),
            message: "file with no instructions".into(),
        });
    }
    if let Some(first) = lines.first()
        && first.starts_with("#!")
        && directives.syntax.is_none()
    {
        directives.syntax = syntax_after_shebang(&lines);
    }
    build_stages(directives, instructions)
}

/// BuildKit's directive parser: directives are only recognised until the first
/// line that is not one (an instruction, a plain comment or an empty line).
#[derive(Default)]
struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    fn feed(&mut self, line: &str, line_no: usize, out: &mut Directives) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        if self.seen.contains(&key) {
            return Err(ParseError {
                line: line_no,
                message: format!("only one {key} parser directive can be used"),
            });
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                out.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError {
                            line: line_no,
                            message: format!(
                                "invalid escape token '{value}' does not match ` or \\"
                            ),
                        });
                    }
                }
            }
            "syntax" => {
                out.syntax = Some(Located {
                    value,
                    line: line_no,
                })
            }
            _ => out.check = Some(value),
        }
        Ok(())
    }
}

/// `#` + optional space + `key = value` with a known key (case-insensitive).
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let key = rest[..key_len].to_ascii_lowercase();
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() || !matches!(key.as_str(), "syntax" | "escape" | "check") {
        return None;
    }
    Some((key, value.to_string()))
}

/// BuildKit's `DetectSyntax` skips a `#!` first line before looking for `# syntax=`.
fn syntax_after_shebang(lines: &[&str]) -> Option<Located<String>> {
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let (key, value) = parse_directive(trim_newline(raw))?;
        if key == "syntax" {
            return Some(Located { value, line: i + 1 });
        }
    }
    None
}

pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

pub(crate) fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn strip_comment(token: &str) -> &str {
    if is_comment(token) { "" } else { token }
}

/// Removes a trailing escape token (plus trailing blanks) that continues the
/// line; an escaped escape token (`\\`) does not continue it. Returns the text
/// and whether the logical line ends here.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Go's `unicode.IsSpace` subset used by `reWhitespace` (`[\t\v\f\r ]+`).
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_whitespace_words(s: &str) -> Vec<String> {
    s.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses one logical line into an instruction (BuildKit `newNodeFromLine` plus
/// the argument checks of `instructions.Parse`).
fn parse_line(line: &str, escape: char) -> Result<Instruction, String> {
    let trimmed = line.trim();
    let (command, rest) = match trimmed.find(is_split_space) {
        Some(i) => (
            &trimmed[..i],
            trimmed[i..].trim_start_matches(is_split_space),
        ),
        None => (trimmed, ""),
    };
    let keyword = command.to_ascii_uppercase();
    if !INSTRUCTIONS.contains(&keyword.as_str()) {
        return Err(format!("unknown instruction: {command}"));
    }
    let (rest, raw_flags) = extract_builder_flags(rest, escape);
    let rest = rest.trim();
    let flags = if keyword == "ARG" {
        raw_flags.iter().map(|f| split_flag(f)).collect()
    } else {
        check_flags(&keyword, &raw_flags)?
    };
    let (args, json) = parse_args(&keyword, rest, escape)?;
    validate_args(&keyword, &args)?;
    Ok(Instruction {
        line: 0,
        end_line: 0,
        keyword,
        flags,
        args,
        json,
        original: line.to_string(),
        heredocs: Vec::new(),
    })
}

/// The instruction an `ONBUILD` line triggers, parsed with its own flags.
pub(crate) fn onbuild_trigger(onbuild: &Instruction, escape: char) -> Option<Instruction> {
    let text = onbuild.original.trim_start();
    let keyword_len = "ONBUILD".len();
    let head = text.get(..keyword_len)?;
    if !head.eq_ignore_ascii_case("ONBUILD") {
        return None;
    }
    let expression = text.get(keyword_len..)?.trim_start();
    let mut trigger = parse_line(expression, escape).ok()?;
    trigger.line = onbuild.line;
    trigger.end_line = onbuild.end_line;
    Some(trigger)
}

fn split_flag(raw: &str) -> (String, Option<String>) {
    let body = raw.strip_prefix("--").unwrap_or(raw);
    match body.split_once('=') {
        Some((name, value)) => (name.to_string(), Some(value.to_string())),
        None => (body.to_string(), None),
    }
}

/// BuildKit `BFlags.Parse`.
fn check_flags(
    keyword: &str,
    raw_flags: &[String],
) -> Result<Vec<(String, Option<String>)>, String> {
    let known = known_flags(keyword);
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for raw in raw_flags {
        if !raw.starts_with("--") {
            return Err(format!("arg should start with -- : {raw}"));
        }
        let (name, value) = split_flag(raw);
        let Some((_, kind)) = known.iter().find(|(n, _)| *n == name) else {
            return Err(format!("unknown flag: --{name}"));
        };
        if *kind != FlagKind::Strings && flags.iter().any(|(n, _)| *n == name) {
            return Err(format!("duplicate flag specified: --{name}"));
        }
        match (kind, value.as_deref()) {
            (FlagKind::Bool, Some("")) => return Err(format!("missing a value on flag: --{name}")),
            (FlagKind::Bool, Some(v))
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
            {
                return Err(format!(
                    "expecting boolean value for flag --{name}, not: {v}"
                ));
            }
            (FlagKind::String | FlagKind::Strings, None) => {
                return Err(format!("missing a value on flag: --{name}"));
            }
            _ => {}
        }
        flags.push((name, value));
    }
    Ok(flags)
}

/// BuildKit `extractBuilderFlags`: leading `--words` (quotes and escapes
/// processed) up to the first word that does not start with `--`.
fn extract_builder_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    let (rest, words) = builder_flag_words(line, escape);
    (
        line.get(rest..).unwrap_or_default(),
        words.into_iter().map(|w| w.text).collect(),
    )
}

/// One builder flag as written: its byte range in the line and its text after quotes and
/// escapes are processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagWord {
    /// Byte range of the word as written.
    pub(crate) span: std::ops::Range<usize>,
    /// The word after quote and escape processing (`--from=x`).
    pub(crate) text: String,
}

/// [`extract_builder_flags`] with where each word was written, so that a flag's value can be
/// replaced in the text: the byte offset where the arguments start, and the flags.
pub(crate) fn builder_flag_words(line: &str, escape: char) -> (usize, Vec<FlagWord>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
            i += 1;
        }
        let Some(&(start, c)) = chars.get(i) else {
            return (line.len(), words);
        };
        if c != '-' || chars.get(i + 1).map(|(_, c)| *c) != Some('-') {
            return (start, words);
        }
        word.clear();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        loop {
            let Some(&(pos, ch)) = chars.get(i) else {
                if word != "--" && (blank_ok || !word.is_empty()) {
                    words.push(FlagWord {
                        span: start..line.len(),
                        text: word.clone(),
                    });
                }
                return (line.len(), words);
            };
            i += 1;
            match quote {
                None if ch.is_whitespace() => {
                    if word == "--" {
                        return (pos, words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(FlagWord {
                            span: start..pos,
                            text: word.clone(),
                        });
                    }
                    break;
                }
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == escape => match chars.get(i) {
                    None => quote = None,
                    Some(&(_, escaped)) => {
                        word.push(escaped);
                        i += 1;
                    }
                },
                _ => word.push(ch),
            }
        }
    }
}

fn parse_args(keyword: &str, rest: &str, escape: char) -> Result<(Vec<String>, bool), String> {
    match keyword {
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" => {
            if rest.is_empty() {
                return Ok((Vec::new(), false));
            }
            match parse_json(rest)? {
                Some(list) => Ok((list, true)),
                None => Ok((vec![rest.to_string()], false)),
            }
        }
        "ADD" | "COPY" | "VOLUME" => match parse_json(rest)? {
            Some(list) => Ok((list, true)),
            None => Ok((split_whitespace_words(rest), false)),
        },
        "FROM" | "EXPOSE" => Ok((split_whitespace_words(rest), false)),
        "ARG" => Ok((parse_words(rest, escape), false)),
        "ENV" | "LABEL" => Ok((parse_name_val(rest, keyword, escape)?, false)),
        "HEALTHCHECK" => {
            let (typ, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if typ.is_empty() {
                return Ok((Vec::new(), false));
            }
            let (mut more, json) = parse_args("CMD", cmd.trim_start(), escape)?;
            more.insert(0, typ.to_string());
            Ok((more, json))
        }
        "ONBUILD" => {
            if rest.is_empty() {
                return Ok((Vec::new(), false));
            }
            let trigger_keyword = rest.split(is_split_space).next().unwrap_or_default();
            if trigger_keyword.eq_ignore_ascii_case("ONBUILD") {
                return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
            }
            let trigger = parse_line(rest, escape)?;
            let mut args = vec![trigger_keyword.to_string()];
            args.extend(trigger.args);
            Ok((args, trigger.json))
        }
        // MAINTAINER, USER, WORKDIR, STOPSIGNAL: the rest of the line is one value.
        _ => Ok((
            if rest.is_empty() {
                Vec::new()
            } else {
                vec![rest.to_string()]
            },
            false,
        )),
    }
}

/// The JSON (exec) form: `Some(list)` for an array of strings, `None` when the
/// text is not a JSON array (shell form), an error for a JSON array of non-strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

/// BuildKit `parseWords`: whitespace-separated words, quotes and escapes kept.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    match chars.next() {
                        None => continue,
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            quote = None;
                            continue;
                        }
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// BuildKit `parseNameVal` for `ENV`/`LABEL`: `key value` (legacy) or `k=v k2=v2`.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some((key, value)) = rest.split_once(is_split_space) else {
            return Err(format!("{keyword} must have two arguments"));
        };
        let value = value.trim_start_matches(is_split_space);
        return Ok(vec![key.to_string(), value.to_string(), String::new()]);
    }
    let mut args = Vec::new();
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

fn validate_args(keyword: &str, args: &[String]) -> Result<(), String> {
    let at_least_one = || format!("{keyword} requires at least one argument");
    let exactly_one = || format!("{keyword} requires exactly one argument");
    match keyword {
        "FROM" => match args {
            [_] => Ok(()),
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                validate_stage_name(name).map(|_| ())
            }
            _ => Err("FROM requires either one or three arguments".into()),
        },
        "COPY" | "ADD" => {
            if args.len() < 2 {
                return Err(format!(
                    "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
                ));
            }
            match args
                .last()
                .and_then(|dest| heredoc_from_word(dest).ok().flatten())
            {
                Some(_) => Err(format!(
                    "{keyword} cannot accept a heredoc as a destination"
                )),
                None => Ok(()),
            }
        }
        "ENV" | "LABEL" => {
            if args.is_empty() {
                return Err(at_least_one());
            }
            if args
                .chunks(3)
                .any(|kv| kv.first().is_some_and(String::is_empty))
            {
                return Err(format!("{keyword} names can not be blank"));
            }
            Ok(())
        }
        "ARG" => {
            if args.is_empty() {
                return Err(at_least_one());
            }
            if args.iter().any(|a| a.starts_with('=')) {
                return Err("ARG names can not be blank".into());
            }
            Ok(())
        }
        "EXPOSE" | "VOLUME" | "ONBUILD" | "HEALTHCHECK" if args.is_empty() => Err(at_least_one()),
        "SHELL" if args.is_empty() => Err(at_least_one()),
        "MAINTAINER" | "USER" | "WORKDIR" | "STOPSIGNAL" if args.len() != 1 => Err(exactly_one()),
        "ONBUILD" => match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
            Some("ONBUILD") => Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
            Some(t @ ("MAINTAINER" | "FROM")) => {
                Err(format!("{t} isn't allowed as an ONBUILD trigger"))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Stage names are lowercased and must match `^[a-z][a-z0-9-_.]*$`.
fn validate_stage_name(name: &str) -> Result<String, String> {
    let lower = name.to_lowercase();
    let mut chars = lower.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(lower)
    } else {
        Err(format!(
            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
        ))
    }
}

fn can_contain_heredoc(instruction: &Instruction) -> bool {
    let keyword = if instruction.keyword == "ONBUILD" {
        match instruction.args.first() {
            Some(trigger) => trigger.to_ascii_uppercase(),
            None => return false,
        }
    } else {
        instruction.keyword.clone()
    };
    matches!(keyword.as_str(), "ADD" | "COPY" | "RUN") && !instruction.json
}

/// BuildKit `heredocsFromLine`: every word of the line of the form `[n]<<[-]WORD`.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(line, &Env::new()).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        if let Some(heredoc) = heredoc_from_word(&word)? {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// BuildKit `ParseHeredoc`: `^(\d*)<<(-?)\s*([^<]*)$`.
pub(crate) fn heredoc_from_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    let rest = after.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let file_descriptor = word[..digits].parse().unwrap_or(0);
    let lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(rest, &Env::new())?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw_words = Lexer {
        raw_quotes: true,
        ..lexer
    }
    .process_words(rest, &Env::new())?;
    let Some(raw) = raw_words.first() else {
        return Ok(None);
    };
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor,
        expand: quotes(name) == quotes(raw),
        chomp,
        content: String::new(),
    }))
}

/// Groups instructions into stages (BuildKit `instructions.Parse`).
fn build_stages(
    directives: Directives,
    instructions: Vec<Instruction>,
) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            let name = match instruction.args.as_slice() {
                [_, _, name] => Some(validate_stage_name(name).map_err(|message| ParseError {
                    line: instruction.line,
                    message,
                })?),
                _ => None,
            };
            stages.push(Stage {
                index: stages.len(),
                name,
                base: Located {
                    value: instruction.args.first().cloned().unwrap_or_default(),
                    line: instruction.line,
                },
                platform: instruction.flag("platform").map(str::to_string),
                instructions: Vec::new(),
            });
            continue;
        }
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None if instruction.keyword == "ARG" => {
                global_args.extend(arg_decls(&instruction));
            }
            None => {
                return Err(ParseError {
                    line: instruction.line,
                    message: format!(
                        "no build stage in current context: {} must come after a FROM (only ARG may come before the first FROM)",
                        instruction.keyword
                    ),
                });
            }
        }
    }
    Ok(Dockerfile {
        directives,
        global_args,
        stages,
    })
}

/// The keys an `ARG` instruction declares.
pub(crate) fn arg_decls(instruction: &Instruction) -> Vec<ArgDecl> {
    instruction
        .args
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((name, value)) => ArgDecl {
                name: name.to_string(),
                default: Some(value.to_string()),
                line: instruction.line,
            },
            None => ArgDecl {
                name: arg.clone(),
                default: None,
                line: instruction.line,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Dockerfile {
        match parse(src) {
            Ok(df) => df,
            Err(e) => panic!("{e}\n---\n{src}"),
        }
    }

    fn err(src: &str) -> ParseError {
        match parse(src) {
            Ok(df) => panic!("expected an error, got {df:?}"),
            Err(e) => e,
        }
    }

    fn only_instruction(src: &str) -> Instruction {
        let df = ok(src);
        let stage = &df.stages[0];
        assert_eq!(stage.instructions.len(), 1, "{:?}", stage.instructions);
        stage.instructions[0].clone()
    }

    #[test]
    fn directives_at_top_are_read_case_insensitively() {
        let df = ok("# Syntax = docker/dockerfile:1.7\n#ESCAPE=`\n# check=skip=all\nFROM alpine\n");
        let syntax = df.directives.syntax.unwrap();
        assert_eq!(
            (syntax.value.as_str(), syntax.line),
            ("docker/dockerfile:1.7", 1)
        );
        assert_eq!(df.directives.escape, '`');
        assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    }

    #[test]
    fn directives_after_comment_or_blank_line_are_comments() {
        let df = ok("# a comment\n# syntax=docker/dockerfile:1\nFROM alpine\n");
        assert_eq!(df.directives.syntax, None);
        let df = ok("\n# escape=`\nFROM alpine\nRUN a \\\n b\n");
        assert_eq!(df.directives.escape, '\\');
        assert_eq!(df.stages[0].instructions[0].args, ["a  b"]);
        let df = ok("FROM alpine\n# syntax=docker/dockerfile:1\n");
        assert_eq!(df.directives.syntax, None);
    }

    #[test]
    fn syntax_after_shebang_is_detected_like_buildkit() {
        let df = ok("#!/usr/bin/env buildctl\n# syntax=docker/dockerfile:1\nFROM alpine\n");
        assert_eq!(df.directives.syntax.unwrap().line, 2);
        let df = ok("#!/usr/bin/env buildctl\n\n# syntax=docker/dockerfile:1\nFROM alpine\n");
        assert_eq!(
            df.directives.syntax, None,
            "a blank line ends the directives"
        );
    }

    #[test]
    fn directive_errors() {
        assert_eq!(err("# escape=x\nFROM a\n").line, 1);
        let e = err("# syntax=a\n# syntax=b\nFROM a\n");
        assert_eq!(
            e.to_string(),
            "line 2: only one syntax parser directive can be used"
        );
    }

    #[test]
    fn continuations_skip_comments_and_empty_lines() {
        let i = only_instruction(
            "FROM alpine\nRUN apk add \\\n# a comment in the middle\n\n    curl \\\n  \t \n    git\n",
        );
        assert_eq!(i.args, ["apk add     curl     git"]);
        assert_eq!((i.line, i.end_line), (2, 7));
    }

    #[test]
    fn continuation_with_trailing_whitespace_crlf_and_bom() {
        let i = only_instruction("\u{feff}FROM alpine\r\nRUN echo a \\  \r\n  b\r\n");
        assert_eq!(i.args, ["echo a   b"]);
        let df = ok("\u{feff}# syntax=docker/dockerfile:1\nFROM alpine\n");
        assert!(df.directives.syntax.is_some());
    }

    #[test]
    fn escaped_escape_token_does_not_continue() {
        let df = ok("FROM alpine\nRUN echo \\\\\nRUN echo next\n");
        let args: Vec<_> = df.stages[0]
            .instructions
            .iter()
            .map(|i| i.args[0].clone())
            .collect();
        assert_eq!(args, ["echo \\\\", "echo next"]);
    }

    #[test]
    fn backtick_escape_continues_lines() {
        let df = ok(
            "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nRUN dir `\n  c:\\\nCOPY a.txt c:\\dst\\\n",
        );
        let i = &df.stages[0].instructions;
        assert_eq!(i[0].args, ["dir   c:\\"]);
        assert_eq!(i[1].args, ["a.txt", "c:\\dst\\"]);
    }

    #[test]
    fn continuation_at_end_of_file() {
        let i = only_instruction("FROM alpine\nRUN echo hi \\");
        assert_eq!(i.args, ["echo hi"], "BuildKit trims the arguments");
    }

    #[test]
    fn heredocs_become_part_of_the_instruction() {
        let df = ok(concat!(
            "FROM alpine\n",
            "RUN <<EOF\n",
            "apk add curl\n",
            "FROM not-an-instruction\n",
            "EOF\n",
            "COPY <<-\"CFG\" /etc/app.conf\n",
            "\tkey=$value\n",
            "\tCFG\n",
            "RUN 3<<'A' cat /dev/fd/3 && cat <<B\n",
            "a\n",
            "A\n",
            "b\n",
            "B\n",
        ));
        assert_eq!(df.stages.len(), 1);
        let i = &df.stages[0].instructions;
        assert_eq!(i.len(), 3);
        assert_eq!(i[0].heredocs[0].name, "EOF");
        assert_eq!(
            i[0].heredocs[0].content,
            "apk add curl\nFROM not-an-instruction\n"
        );
        assert!(i[0].heredocs[0].expand);
        assert_eq!((i[0].line, i[0].end_line), (2, 5));
        let cfg = &i[1].heredocs[0];
        assert_eq!(
            (cfg.name.as_str(), cfg.chomp, cfg.expand),
            ("CFG", true, false)
        );
        assert_eq!(i[1].args, ["<<-\"CFG\"", "/etc/app.conf"]);
        assert_eq!(i[2].heredocs.len(), 2);
        assert_eq!(i[2].heredocs[0].file_descriptor, 3);
        assert!(!i[2].heredocs[0].expand);
        assert_eq!(i[2].heredocs[1].content, "b\n");
        assert_eq!(i[2].line, 9);
    }

    #[test]
    fn heredoc_delimiter_quoting_decides_expansion() {
        let df = ok(concat!(
            "FROM a\n",
            "RUN <<ab'c'\nbody\nabc\n",
            "RUN <<ab\\'c\nbody\nab'c\n",
            "RUN <<\"x y\"\nbody\nx y\n",
            "RUN <<   SPACED > out\nSPACED\n",
            "RUN <<$VAR\n$VAR\n",
            "RUN \"<<QUOTED\"\n",
        ));
        let docs: Vec<Vec<(String, bool)>> = df.stages[0]
            .instructions
            .iter()
            .map(|i| {
                i.heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.expand))
                    .collect()
            })
            .collect();
        let one = |name: &str, expand: bool| vec![(name.to_string(), expand)];
        assert_eq!(
            docs,
            [
                one("abc", false),
                one("ab'c", true),
                one("x y", false),
                one("SPACED", true),
                one("$VAR", true),
                vec![],
            ]
        );
    }

    #[test]
    fn heredoc_errors_and_non_heredocs() {
        assert_eq!(
            err("FROM a\nRUN <<EOF\necho\n").message,
            "unterminated heredoc \"EOF\""
        );
        assert!(
            err("FROM a\nCOPY a <<EOF\nx\nEOF\n")
                .message
                .contains("heredoc as a destination")
        );
        let i = only_instruction("FROM a\nRUN [\"cat\", \"<<EOF\"]\n");
        assert!(i.heredocs.is_empty(), "exec form has no heredocs");
        let i = only_instruction("FROM a\nRUN echo '<<EOF'x\n");
        assert!(i.heredocs.is_empty());
    }

    #[test]
    fn json_and_shell_forms() {
        let df = ok(concat!(
            "FROM a\n",
            "RUN [\"echo\", \"hi there\"]\n",
            "RUN [\"not json\n",
            "CMD echo   $HOME\n",
            "COPY [\"a b\", \"/dst/\"]\n",
            "COPY  src1   src2 /dst/\n",
            "ENTRYPOINT [\"a\",\n",
        ));
        let i = &df.stages[0].instructions;
        assert_eq!(
            (i[0].args.clone(), i[0].json),
            (vec!["echo".into(), "hi there".into()], true)
        );
        assert_eq!(
            (i[1].args.clone(), i[1].json),
            (vec!["[\"not json".to_string()], false)
        );
        assert_eq!(i[2].args, ["echo   $HOME"]);
        assert_eq!(i[3].args, ["a b", "/dst/"]);
        assert_eq!(i[4].args, ["src1", "src2", "/dst/"]);
        assert_eq!(i[5].args, ["[\"a\","]);
        let e = err("FROM a\nCMD [\"a\", 1]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("strings only"));
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let i = only_instruction(
            "FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=\"type=bind,from=b,source=/x\" --network=none pip install x\n",
        );
        assert_eq!(
            i.flag_values("mount").collect::<Vec<_>>(),
            [
                "type=cache,target=/root/.cache",
                "type=bind,from=b,source=/x"
            ]
        );
        assert_eq!(i.flag("network"), Some("none"));
        assert_eq!(i.args, ["pip install x"]);
        let i = only_instruction("FROM a\ncopy --link --from=builder /a /b\n");
        assert_eq!(i.keyword, "COPY");
        assert_eq!(
            i.flags,
            [
                ("link".to_string(), None),
                ("from".to_string(), Some("builder".into()))
            ]
        );
        assert_eq!(
            err("FROM a\nCOPY --form=x a b\n").message,
            "unknown flag: --form"
        );
        assert_eq!(
            err("FROM a\nCOPY --from a b\n").message,
            "missing a value on flag: --from"
        );
        assert_eq!(
            err("FROM a\nCOPY --from=x --from=y a b\n").message,
            "duplicate flag specified: --from"
        );
        assert!(
            err("FROM a\nCOPY --link=maybe a b\n")
                .message
                .contains("expecting boolean")
        );
        assert_eq!(err("FROM a\nUSER --x=1 me\n").message, "unknown flag: --x");
        let i = only_instruction("FROM a\nRUN -- --not-a-flag\n");
        assert_eq!(i.args, ["--not-a-flag"]);
    }

    #[test]
    fn stages_names_platform_and_global_args() {
        let df = ok(concat!(
            "ARG BASE=node:18 OTHER\n",
            "ARG  \"Q=a b\"\n",
            "FROM --platform=$BUILDPLATFORM ${BASE} AS Build\n",
            "ARG STAGE_ARG=1\n",
            "from scratch\n",
        ));
        assert_eq!(df.global_args.len(), 3);
        assert_eq!(df.global_args[0].default.as_deref(), Some("node:18"));
        assert_eq!(df.global_args[1].default, None);
        assert_eq!(df.global_args[2].name, "\"Q");
        let build = &df.stages[0];
        assert_eq!(build.name.as_deref(), Some("build"));
        assert_eq!(
            build.base,
            Located {
                value: "${BASE}".into(),
                line: 3
            }
        );
        assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(build.instructions[0].keyword, "ARG");
        assert_eq!(df.stages[1].index, 1);
    }

    #[test]
    fn env_and_label_forms() {
        let df =
            ok("FROM a\nENV A=1 B=\"two words\"\nENV LEGACY \t value with spaces\nLABEL a.b=c\n");
        let i = &df.stages[0].instructions;
        assert_eq!(i[0].args, ["A", "1", "=", "B", "\"two words\"", "="]);
        assert_eq!(i[1].args, ["LEGACY", "value with spaces", ""]);
        assert_eq!(
            err("FROM a\nENV A=1 B\n").message,
            "Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
        assert_eq!(
            err("FROM a\nENV ONLY\n").message,
            "ENV must have two arguments"
        );
    }

    #[test]
    fn onbuild_keeps_trigger() {
        let i = only_instruction("FROM a\nONBUILD COPY --from=x . /app\n");
        assert_eq!(i.args, ["COPY", ".", "/app"]);
        assert!(
            err("FROM a\nONBUILD ONBUILD RUN x\n")
                .message
                .contains("Chaining")
        );
        assert!(
            err("FROM a\nONBUILD FROM b\n")
                .message
                .contains("isn't allowed")
        );
    }

    #[test]
    fn onbuild_trigger_keeps_its_flags() {
        let i = only_instruction("FROM a\n  onbuild   COPY --from=tools /bin/x /x\n");
        let trigger = onbuild_trigger(&i, '\\').unwrap();
        assert_eq!(
            (trigger.keyword.as_str(), trigger.flag("from"), trigger.line),
            ("COPY", Some("tools"), 2)
        );
    }

    #[test]
    fn structural_errors_name_the_line() {
        assert_eq!(
            err("FROM a\n\nFORM b\n").to_string(),
            "line 3: unknown instruction: FORM"
        );
        assert_eq!(err("RUN x\nFROM a\n").line, 1);
        assert_eq!(
            err("# only a comment\n\n").message,
            "file with no instructions"
        );
        assert_eq!(err("").message, "file with no instructions");
        assert_eq!(
            err("FROM a b\n").message,
            "FROM requires either one or three arguments"
        );
        assert!(
            err("FROM a AS 1st\n")
                .message
                .contains("invalid name for build stage")
        );
        assert!(err("FROM\n").message.contains("one or three"));
        assert!(
            err("FROM a\nCOPY onlyone\n")
                .message
                .contains("at least two arguments")
        );
        assert_eq!(
            err("FROM a\nWORKDIR\n").message,
            "WORKDIR requires exactly one argument"
        );
        assert_eq!(
            err("FROM a\nARG =x\n").message,
            "ARG names can not be blank"
        );
        let long = format!("FROM a\nRUN echo {}\n", "x".repeat(70_000));
        assert_eq!(err(&long).line, 2);
    }

    #[test]
    fn builder_flag_quotes_and_escapes() {
        let (rest, flags) = extract_builder_flags("--a='x y' --b=c\\ d rest of line", '\\');
        assert_eq!(flags, ["--a=x y", "--b=c d"]);
        assert_eq!(rest, "rest of line");
        let (rest, flags) = extract_builder_flags("--only", '\\');
        assert_eq!((rest, flags), ("", vec!["--only".to_string()]));
    }
}
