//! pip requirements files, read the way pip 23 reads them
//! (`pip/_internal/req/req_file.py`): `\` continuations are joined first
//! (a comment line ends a continuation), comments (`#` at the start or after
//! whitespace) are dropped, then each logical line is either a requirement
//! (tokens up to the first one starting with `-`, then per-requirement options
//! such as `--hash`) or a line of options (`-r`, `-c`, `-e`, `--index-url`, …).

use std::collections::BTreeMap;

use super::names::{WheelName, normalize, sdist_name};
use crate::PackageError;

/// A parsed requirements file, entries in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequirementFile {
    /// Requirements, includes and options, in the order they appear.
    pub entries: Vec<Entry>,
}

/// One item of a requirements file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A requirement (including `-e`/`--editable` ones, marked `editable`).
    Requirement(Requirement),
    /// `-r FILE` (constraint false) or `-c FILE` (constraint true); the path as written.
    Include {
        /// True for `-c`/`--constraint`.
        constraint: bool,
        /// The path or URL as written (relative to the including file).
        path: String,
        /// 1-based line of the option.
        line: usize,
    },
    /// Any other option, with its canonical long name (`--index-url`, `--pre`, …).
    Option {
        /// Canonical long name with dashes, e.g. `--index-url`.
        name: String,
        /// Its value, `None` for flags.
        value: Option<String>,
        /// 1-based line of the option.
        line: usize,
    },
}

/// One requirement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The logical line (continuations joined, comment removed, trimmed).
    pub raw: String,
    /// 1-based line where the requirement starts.
    pub line: usize,
    /// 1-based last physical line (differs from `line` with `\` continuations).
    pub end_line: usize,
    /// Project name as written; for a URL or path without a known name (`.`,
    /// `./pkg`, a VCS URL without `#egg=`) it is empty.
    pub name: String,
    /// PEP 503 normalized `name`.
    pub normalized: String,
    /// Extras, e.g. `["security"]` for `requests[security]`.
    pub extras: Vec<String>,
    /// Version specifier as written, trimmed (`==1.0`, `>=1,<2`, empty for none).
    pub specifier: String,
    /// PEP 508 environment marker after `;`, trimmed.
    pub marker: Option<String>,
    /// `--hash` values as written, e.g. `sha256:0123…`.
    pub hashes: Vec<String>,
    /// `name @ URL`, a URL, a local path (`.`, `./pkg`, `pkg.whl`) or the `-e` value.
    pub url: Option<String>,
    /// True for `-e`/`--editable`.
    pub editable: bool,
}

impl RequirementFile {
    /// The requirements (including editable ones), in file order.
    pub fn requirements(&self) -> impl Iterator<Item = &Requirement> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Requirement(r) => Some(r),
            _ => None,
        })
    }

    /// The `-r` (constraint false) and `-c` (constraint true) paths, in file order.
    pub fn includes(&self) -> impl Iterator<Item = (bool, &str)> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Include {
                constraint, path, ..
            } => Some((*constraint, path.as_str())),
            _ => None,
        })
    }

    /// The values of option `name` (canonical long form, e.g. `--index-url`).
    pub fn option_values<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.entries.iter().filter_map(move |e| match e {
            Entry::Option { name: n, value, .. } if n == name => Some(value.as_deref()),
            _ => None,
        })
    }
}

impl Requirement {
    /// The exact version of `==X` (one clause, no wildcard), else `None`.
    pub fn pinned_version(&self) -> Option<&str> {
        let spec = self.specifier.trim();
        let spec = spec
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or(spec)
            .trim();
        let version = spec.strip_prefix("==")?;
        if version.starts_with('=') || version.contains(',') || version.contains('*') {
            return None;
        }
        let version = version.trim();
        (!version.is_empty()).then_some(version)
    }
}

/// A logical line: continuations joined, with its physical line span (0-based, inclusive).
struct LogicalLine {
    first: usize,
    last: usize,
    text: String,
}

fn is_comment_line(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips the line terminator (`\n`, `\r\n`) of a physical line.
fn content(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// pip's `join_lines`: a line ending in `\` continues (the backslashes are
/// stripped); a comment line is never continued and ends a pending one.
fn logical_lines(physical: &[&str]) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut pending: Option<LogicalLine> = None;
    for (i, raw) in physical.iter().enumerate() {
        let line = content(raw);
        let comment = is_comment_line(line);
        if !line.ends_with('\\') || comment {
            let piece = if comment {
                format!(" {line}")
            } else {
                line.to_string()
            };
            match pending.take() {
                Some(mut p) => {
                    p.text.push_str(&piece);
                    p.last = i;
                    out.push(p);
                }
                None => out.push(LogicalLine {
                    first: i,
                    last: i,
                    text: piece,
                }),
            }
        } else {
            // Python's str.strip("\\") strips backslashes at both ends.
            let piece = line.trim_matches('\\');
            match &mut pending {
                Some(p) => {
                    p.text.push_str(piece);
                    p.last = i;
                }
                None => {
                    pending = Some(LogicalLine {
                        first: i,
                        last: i,
                        text: piece.to_string(),
                    })
                }
            }
        }
    }
    out.extend(pending);
    out
}

/// Byte offset where a comment starts (`#` at the start or after whitespace).
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let hash = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))?;
    // The comment swallows the whitespace before it, as pip's `(^|\s+)#.*$`.
    let mut start = hash;
    while start > 0 && bytes[start - 1].is_ascii_whitespace() {
        start -= 1;
    }
    Some(start)
}

fn strip_comment(line: &str) -> &str {
    match comment_start(line) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// pip's `break_args_options`: tokens (split on single spaces) up to the
/// first starting with `-` are the requirement, the rest options.
fn break_args_options(line: &str) -> (String, String) {
    let tokens: Vec<&str> = line.split(' ').collect();
    let split = tokens
        .iter()
        .position(|t| t.starts_with('-'))
        .unwrap_or(tokens.len());
    (tokens[..split].join(" "), tokens[split..].join(" "))
}

/// A small `shlex.split`: whitespace separates, quotes group, `\` escapes.
fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_token = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_token = true;
                cur.push(c);
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OptKind {
    /// Allowed on an options line.
    File,
    /// Per-requirement option (`--hash`, …).
    Req,
}

struct OptSpec {
    long: &'static str,
    short: Option<char>,
    takes_value: bool,
    kind: OptKind,
}

const fn opt(long: &'static str, short: Option<char>, takes_value: bool, kind: OptKind) -> OptSpec {
    OptSpec {
        long,
        short,
        takes_value,
        kind,
    }
}

/// The options pip accepts in a requirements file (`SUPPORTED_OPTIONS` and
/// `SUPPORTED_OPTIONS_REQ`).
const OPTIONS: &[OptSpec] = &[
    opt("--requirement", Some('r'), true, OptKind::File),
    opt("--constraint", Some('c'), true, OptKind::File),
    opt("--editable", Some('e'), true, OptKind::File),
    opt("--index-url", Some('i'), true, OptKind::File),
    opt("--extra-index-url", None, true, OptKind::File),
    opt("--no-index", None, false, OptKind::File),
    opt("--find-links", Some('f'), true, OptKind::File),
    opt("--no-binary", None, true, OptKind::File),
    opt("--only-binary", None, true, OptKind::File),
    opt("--prefer-binary", None, false, OptKind::File),
    opt("--require-hashes", None, false, OptKind::File),
    opt("--pre", None, false, OptKind::File),
    opt("--trusted-host", None, true, OptKind::File),
    opt("--use-feature", None, true, OptKind::File),
    opt("--hash", None, true, OptKind::Req),
    opt("--global-option", None, true, OptKind::Req),
    opt("--config-settings", Some('C'), true, OptKind::Req),
    opt("--install-option", None, true, OptKind::Req),
];

/// Parses option tokens as optparse does: `--long=v`, `--long v`, `-xv`,
/// `-x v`, unique prefixes of long names. Positional leftovers are ignored, as pip does.
fn parse_options(tokens: &[String]) -> Result<Vec<(&'static OptSpec, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        i += 1;
        let (spec, inline) = if let Some(long) = tok.strip_prefix("--") {
            if long.is_empty() {
                // optparse: `--` ends the options.
                break;
            }
            let (key, inline) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            let key = format!("--{key}");
            let spec = match OPTIONS.iter().find(|o| o.long == key) {
                Some(s) => s,
                None => {
                    let candidates: Vec<&OptSpec> = OPTIONS
                        .iter()
                        .filter(|o| o.long.starts_with(&key))
                        .collect();
                    match candidates.as_slice() {
                        [one] => *one,
                        [] => return Err(format!("unknown option {key}")),
                        many => {
                            let names: Vec<&str> = many.iter().map(|o| o.long).collect();
                            return Err(format!(
                                "ambiguous option {key} (could be {})",
                                names.join(", ")
                            ));
                        }
                    }
                }
            };
            if !spec.takes_value && inline.is_some() {
                return Err(format!("option {} takes no value", spec.long));
            }
            (spec, inline)
        } else if let Some(short) = tok.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut cs = short.chars();
            let c = cs.next().unwrap_or('-');
            let Some(spec) = OPTIONS.iter().find(|o| o.short == Some(c)) else {
                return Err(format!("unknown option -{c}"));
            };
            let rest = cs.as_str();
            (spec, (!rest.is_empty()).then(|| rest.to_string()))
        } else {
            // A positional token on an options line: optparse keeps it, pip ignores it.
            continue;
        };
        let value = if spec.takes_value {
            match inline {
                Some(v) => Some(v),
                None => {
                    let Some(v) = tokens.get(i) else {
                        return Err(format!("option {} needs a value", spec.long));
                    };
                    i += 1;
                    Some(v.clone())
                }
            }
        } else {
            None
        };
        out.push((spec, value));
    }
    Ok(out)
}

/// Parses a requirements file. `path_label` names the file in errors
/// (`requirements.txt:4: unknown option --foo`).
pub fn parse(path_label: &str, text: &str) -> Result<RequirementFile, PackageError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let physical: Vec<&str> = text.split_inclusive('\n').collect();
    let mut entries = Vec::new();
    for logical in logical_lines(&physical) {
        let lineno = logical.first + 1;
        let err = |m: String| PackageError::at(path_label, lineno, m);
        let line = strip_comment(&logical.text).trim();
        if line.is_empty() {
            continue;
        }
        let (args, opts) = break_args_options(line);
        let tokens = shell_split(&opts).map_err(err)?;
        let options = parse_options(&tokens).map_err(err)?;
        if !args.trim().is_empty() {
            let mut req = parse_requirement(args.trim()).map_err(err)?;
            req.raw = line.to_string();
            req.line = lineno;
            req.end_line = logical.last + 1;
            for (spec, value) in options {
                // File-level options on a requirement line are ignored by pip.
                if spec.long == "--hash" {
                    let value = value.unwrap_or_default();
                    let Some((algorithm, _)) = value.split_once(':') else {
                        return Err(err(format!(
                            "--hash {value:?} is not of the form algorithm:hexdigest"
                        )));
                    };
                    // pip's STRONG_HASHES.
                    if !["sha256", "sha384", "sha512"].contains(&algorithm) {
                        return Err(err(format!(
                            "--hash algorithm {algorithm:?} is not allowed (pip allows sha256, sha384, sha512)"
                        )));
                    }
                    req.hashes.push(value);
                }
            }
            entries.push(Entry::Requirement(req));
            continue;
        }
        for (spec, value) in options {
            let value_or_err = |what: &str| -> Result<String, PackageError> {
                match value.clone() {
                    Some(v) if !v.trim().is_empty() => Ok(v),
                    _ => Err(err(format!("{} needs {what}", spec.long))),
                }
            };
            match spec.long {
                "--requirement" | "--constraint" => entries.push(Entry::Include {
                    constraint: spec.long == "--constraint",
                    path: value_or_err("a file")?,
                    line: lineno,
                }),
                "--editable" => {
                    let target = value_or_err("a path or URL")?;
                    entries.push(Entry::Requirement(editable_requirement(
                        line,
                        lineno,
                        logical.last + 1,
                        target,
                    )))
                }
                _ => {
                    if spec.kind == OptKind::File && spec.takes_value {
                        value_or_err("a value")?;
                    }
                    entries.push(Entry::Option {
                        name: spec.long.to_string(),
                        value,
                        line: lineno,
                    })
                }
            }
        }
    }
    Ok(RequirementFile { entries })
}

fn empty_requirement() -> Requirement {
    Requirement {
        raw: String::new(),
        line: 0,
        end_line: 0,
        name: String::new(),
        normalized: String::new(),
        extras: Vec::new(),
        specifier: String::new(),
        marker: None,
        hashes: Vec::new(),
        url: None,
        editable: false,
    }
}

fn editable_requirement(raw: &str, line: usize, end_line: usize, target: String) -> Requirement {
    let (target_no_extras, extras) = split_path_extras(&target);
    let name = egg_name(&target).unwrap_or_default();
    Requirement {
        raw: raw.to_string(),
        line,
        end_line,
        normalized: normalize(&name),
        name,
        extras: if is_url(&target) { Vec::new() } else { extras },
        url: Some(if is_url(&target) {
            target
        } else {
            target_no_extras
        }),
        editable: true,
        ..empty_requirement()
    }
}

/// `scheme:` with a scheme pip knows as a URL (`http`, `git+https`, `file`, …).
fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    let known = ["http", "https", "file", "ftp"];
    let vcs = ["git", "hg", "svn", "bzr"];
    let base = scheme.split('+').next().unwrap_or("");
    (known.contains(&scheme.as_str()) || vcs.contains(&base))
        && (rest.starts_with("//") || scheme == "file")
}

/// `#egg=name` (or `&egg=`) of a URL, without extras.
fn egg_name(url: &str) -> Option<String> {
    let (_, fragment) = url.split_once('#')?;
    fragment.split('&').find_map(|kv| {
        let v = kv.strip_prefix("egg=")?;
        let v = v.split('[').next().unwrap_or(v).trim();
        (!v.is_empty()).then(|| v.to_string())
    })
}

const ARCHIVE_SUFFIXES: &[&str] = &[
    ".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar",
];

fn looks_like_path(s: &str) -> bool {
    let before_at = s.split('@').next().unwrap_or(s);
    s.starts_with('.')
        || s.starts_with('/')
        || s.starts_with('~')
        || before_at.contains('/')
        || before_at.contains('\\')
        || ARCHIVE_SUFFIXES.iter().any(|suf| {
            strip_extras_str(before_at)
                .to_ascii_lowercase()
                .ends_with(suf)
        })
}

fn strip_extras_str(s: &str) -> &str {
    match s.rfind('[') {
        Some(i) if s.trim_end().ends_with(']') => &s[..i],
        _ => s,
    }
}

/// `./pkg[a,b]` → (`./pkg`, [a, b]).
fn split_path_extras(s: &str) -> (String, Vec<String>) {
    let base = strip_extras_str(s);
    if base.len() == s.len() {
        return (s.to_string(), Vec::new());
    }
    let inner = s[base.len() + 1..].trim_end();
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    (base.to_string(), split_extras(inner))
}

fn split_extras(inner: &str) -> Vec<String> {
    inner
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The name of a local archive from its file name, when it has one.
fn archive_name(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    if let Some(w) = WheelName::parse(file) {
        return w.name;
    }
    sdist_name(file).map(|(n, _)| n).unwrap_or_default()
}

/// Parses the requirement part of a line (before its options).
fn parse_requirement(s: &str) -> Result<Requirement, String> {
    if is_url(s) {
        // pip splits a URL's marker at "; " (a URL may contain ';').
        let (url, marker) = match s.split_once("; ") {
            Some((u, m)) => (u.trim(), Some(m.trim().to_string())),
            None => (s, None),
        };
        let name = egg_name(url).unwrap_or_default();
        return Ok(Requirement {
            normalized: normalize(&name),
            name,
            url: Some(url.to_string()),
            marker: marker.filter(|m| !m.is_empty()),
            ..empty_requirement()
        });
    }
    // pip splits the marker off before deciding whether the rest is a path.
    if looks_like_path(s.split(';').next().unwrap_or(s).trim()) {
        let (path, marker) = match s.split_once(';') {
            Some((p, m)) => (p.trim(), Some(m.trim().to_string())),
            None => (s, None),
        };
        let (path, extras) = split_path_extras(path);
        let name = archive_name(&path);
        return Ok(Requirement {
            normalized: normalize(&name),
            name,
            extras,
            url: Some(path),
            marker: marker.filter(|m| !m.is_empty()),
            ..empty_requirement()
        });
    }
    // PEP 508: name [extras] (@ url | specifier) [; marker]
    let name_end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    let name = &s[..name_end];
    let valid_name = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_name {
        return Err(format!(
            "invalid requirement {s:?}: expected a project name"
        ));
    }
    let mut rest = s[name_end..].trim_start();
    let mut extras = Vec::new();
    if let Some(after) = rest.strip_prefix('[') {
        let Some(close) = after.find(']') else {
            return Err(format!("invalid requirement {s:?}: unclosed extras '['"));
        };
        extras = split_extras(&after[..close]);
        if extras.iter().any(|e| !e.chars().all(is_name_char)) {
            return Err(format!("invalid requirement {s:?}: bad extra name"));
        }
        rest = after[close + 1..].trim_start();
    }
    let mut req = Requirement {
        name: name.to_string(),
        normalized: normalize(name),
        extras,
        ..empty_requirement()
    };
    if let Some(after) = rest.strip_prefix('@') {
        let after = after.trim_start();
        let url_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let url = &after[..url_end];
        if url.is_empty() {
            return Err(format!(
                "invalid requirement {s:?}: expected a URL after '@'"
            ));
        }
        let tail = after[url_end..].trim();
        if !tail.is_empty() {
            let Some(m) = tail.strip_prefix(';') else {
                return Err(format!(
                    "invalid requirement {s:?}: unexpected {tail:?} after the URL"
                ));
            };
            req.marker = Some(m.trim().to_string()).filter(|m| !m.is_empty());
        }
        req.url = Some(url.to_string());
        return Ok(req);
    }
    let (spec, marker) = match rest.split_once(';') {
        Some((sp, m)) => (sp.trim(), Some(m.trim().to_string())),
        None => (rest.trim(), None),
    };
    if let Some(m) = &marker
        && m.is_empty()
    {
        return Err(format!("invalid requirement {s:?}: empty marker after ';'"));
    }
    check_specifier(spec).map_err(|why| format!("invalid requirement {s:?}: {why}"))?;
    req.specifier = spec.to_string();
    req.marker = marker;
    Ok(req)
}

/// A version specifier set: comma-separated `op version` clauses, optionally in parentheses.
fn check_specifier(spec: &str) -> Result<(), String> {
    let inner = match spec.strip_prefix('(') {
        Some(s) => s
            .strip_suffix(')')
            .ok_or_else(|| "unclosed '('".to_string())?,
        None => spec,
    };
    if inner.trim().is_empty() {
        return Ok(());
    }
    for clause in inner.split(',') {
        let clause = clause.trim();
        let op_len = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"]
            .iter()
            .find(|op| clause.starts_with(*op))
            .map(|op| op.len())
            .ok_or_else(|| format!("expected a version operator, found {clause:?}"))?;
        let version = clause[op_len..].trim();
        if version.is_empty()
            || !version.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '+' | '!' | '_' | '-')
            })
        {
            return Err(format!("invalid version in {clause:?}"));
        }
    }
    Ok(())
}

/// The first line of the lines offpack prepends, also how a rewritten file is recognised.
pub const REWRITE_MARKER: &str = "# offpack: packages served from the bundle";

/// Drops the three lines a previous [`rewrite_for_index`] prepended, so
/// rewriting an already rewritten file does not stack them.
fn strip_previous_rewrite(body: &str) -> &str {
    let mut rest = body;
    for prefix in [REWRITE_MARKER, "--index-url ", "--trusted-host "] {
        let Some((line, tail)) = rest.split_once('\n') else {
            return body;
        };
        if !line.starts_with(prefix)
            || (prefix == REWRITE_MARKER && content(line) != REWRITE_MARKER)
        {
            return body;
        }
        rest = tail;
    }
    rest
}

/// Points a requirements file at offpack's index: prepends
/// `# offpack: packages served from the bundle`, `--index-url INDEX` and
/// `--trusted-host HOST`, and for each requirement that already carries
/// `--hash` and whose normalized name is in `extra_hashes`, appends
/// `--hash=sha256:<hex>` for each hex not already there (on its last physical
/// line, before a comment or a trailing `\`). Every other byte is kept.
pub fn rewrite_for_index(
    text: &str,
    index_url: &str,
    trusted_host: &str,
    extra_hashes: &BTreeMap<String, Vec<String>>,
) -> String {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let body = strip_previous_rewrite(body);
    let physical: Vec<&str> = body.split_inclusive('\n').collect();
    let eol = match physical.first() {
        Some(first) if first.ends_with("\r\n") => "\r\n",
        _ => "\n",
    };
    // Insertions per physical line: (byte offset, text).
    let mut inserts: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    for logical in logical_lines(&physical) {
        let line = strip_comment(&logical.text).trim();
        if line.is_empty() {
            continue;
        }
        let (args, opts) = break_args_options(line);
        if args.trim().is_empty() {
            continue;
        }
        let Ok(req) = parse_requirement(args.trim()) else {
            continue;
        };
        let Some(wanted) = extra_hashes.get(&req.normalized) else {
            continue;
        };
        let Ok(tokens) = shell_split(&opts) else {
            continue;
        };
        let Ok(options) = parse_options(&tokens) else {
            continue;
        };
        let present: Vec<String> = options
            .into_iter()
            .filter(|(spec, _)| spec.long == "--hash")
            .filter_map(|(_, v)| v.map(|v| v.to_ascii_lowercase()))
            .collect();
        if present.is_empty() {
            continue;
        }
        let mut added = String::new();
        let mut seen = present.clone();
        for hex in wanted {
            let h = format!("sha256:{}", hex.to_ascii_lowercase());
            if !seen.contains(&h) {
                added.push_str(&format!(" --hash={h}"));
                seen.push(h);
            }
        }
        if added.is_empty() {
            continue;
        }
        // The last physical line of the requirement that is not a comment line.
        let Some(target) = (logical.first..=logical.last)
            .rev()
            .find(|&i| !is_comment_line(content(physical[i])))
        else {
            continue;
        };
        let c = content(physical[target]);
        let mut at = comment_start(c).unwrap_or(c.len());
        let before = &c[..at];
        let trimmed = before.trim_end_matches('\\');
        if trimmed.len() != before.len() {
            at = trimmed.trim_end().len();
        }
        inserts.insert(target, (at, added));
    }
    let mut out = String::with_capacity(body.len() + 200);
    out.push_str(bom);
    out.push_str(REWRITE_MARKER);
    out.push_str(eol);
    out.push_str(&format!("--index-url {index_url}{eol}"));
    out.push_str(&format!("--trusted-host {trusted_host}{eol}"));
    for (i, line) in physical.iter().enumerate() {
        match inserts.get(&i) {
            Some((at, added)) => {
                out.push_str(&line[..*at]);
                out.push_str(added);
                out.push_str(&line[*at..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests;
