//! Digest pins: a digest-pinned reference (`FROM python@sha256:…`) names an image by its
//! registry manifest digest, which an engine only knows for images it pulled. An image that
//! arrived through `docker load` has no repository digest, so the builder would go to the
//! registry for it. offpack therefore sends the engine a copy of the Dockerfile in which each such
//! reference names a local "pin tag" instead, and carries the image under that tag too; the same
//! rewrite on both sides of the air gap keeps the builder's cache keys equal.

use std::collections::BTreeMap;
use std::ops::Range;

use offpack_ref::ImageRef;

use crate::parser::{
    Dockerfile, builder_flag_words, is_comment, is_split_space, trim_continuation, trim_newline,
};
use crate::resolve::{ImageUse, Resolved, UseKind};

/// What a pin tag starts with; the manifest digest's hex follows.
pub const PIN_TAG_PREFIX: &str = "offpack-pin-sha256-";

/// Why a Dockerfile's digest-pinned references cannot be rewritten to pin tags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PinError {
    /// 1-based line of the instruction.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// The local tag standing for a digest-pinned reference: `<familiar repository>:offpack-pin-sha256-<hex>`
/// (`python:offpack-pin-sha256-7cc4…`); any tag written beside the digest is dropped, as the digest
/// alone decides the image. `None` without a SHA-256 digest (a pin tag must stay within Docker's
/// 128 characters, and SHA-256 is the only algorithm registries use for manifests).
pub fn pin_tag(reference: &ImageRef) -> Option<String> {
    let hex = reference.digest.as_deref()?.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some(format!(
        "{}:{PIN_TAG_PREFIX}{hex}",
        reference.familiar_name()
    ))
}

/// The Dockerfile text with every digest-pinned reference of the needed stages (`FROM`,
/// `COPY --from=`, `RUN --mount=…,from=`, also inside the `ONBUILD` triggers a needed stage
/// runs) replaced by its [`pin_tag`]; every other byte (comments, continuations, the escape
/// directive, line endings) is left as it is. Text without such references comes back unchanged.
///
/// `df` and `resolved` must come from `source`. A digest reached through a build argument
/// (`FROM ${BASE}`) is an error naming the line: only a reference written out can be replaced.
pub fn rewrite_pins(
    source: &str,
    df: &Dockerfile,
    resolved: &Resolved,
) -> Result<String, PinError> {
    let mut by_line: BTreeMap<usize, Vec<&ImageUse>> = BTreeMap::new();
    for used in &resolved.image_uses {
        if used.reference.digest.is_some() && used.kind != UseKind::Frontend {
            by_line.entry(used.line).or_default().push(used);
        }
    }
    if by_line.is_empty() {
        return Ok(source.to_string());
    }
    // The parser counts lines after a byte order mark, so offsets here do too.
    let bom = if source.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let lines = physical_lines(&source[bom..], bom);
    let escape = df.directives.escape;

    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for (line, uses) in by_line {
        let logical = LogicalLine::at(&lines, line, escape).ok_or_else(|| PinError {
            line,
            message: "the Dockerfile changed while it was read (this line is not an instruction any more); run the command again".into(),
        })?;
        for used in uses {
            let pin = pin_tag(&used.reference).ok_or_else(|| PinError {
                line,
                message: format!(
                    "`{}` is pinned with a digest that is not SHA-256, which offpack cannot give a local tag; pin it with its sha256 digest",
                    used.written
                ),
            })?;
            let spans = reference_spans(&logical.text, used, escape)?;
            for span in spans {
                let in_source = logical.source_range(span).ok_or_else(|| PinError {
                    line,
                    message: format!(
                        "`{}` is split over several lines; write the reference on one line so offpack can replace it with the local tag {pin}",
                        used.written
                    ),
                })?;
                edits.push((in_source, pin.clone()));
            }
        }
    }
    edits.sort_by_key(|(range, _)| (range.start, range.end));
    edits.dedup();
    let mut out = String::with_capacity(source.len() + edits.len() * 24);
    let mut copied = 0;
    for (range, replacement) in edits {
        // Two different references never share bytes; an overlap would mean the text and the
        // parse disagree, and the first replacement wins rather than corrupting the line.
        if range.start < copied {
            continue;
        }
        out.push_str(&source[copied..range.start]);
        out.push_str(&replacement);
        copied = range.end;
    }
    out.push_str(&source[copied..]);
    Ok(out)
}

/// Where `used` is written in its instruction's logical line: the byte ranges to replace.
fn reference_spans(
    logical: &str,
    used: &ImageUse,
    escape: char,
) -> Result<Vec<Range<usize>>, PinError> {
    let line = used.line;
    let written = used.written.as_str();
    let not_found = || PinError {
        line,
        message: format!(
            "`{written}` is written with quotes or escape characters that offpack cannot rewrite; write the reference plainly so offpack can replace its digest with a local tag"
        ),
    };
    let (keyword, rest) = split_keyword(logical, 0);
    // An `ONBUILD` trigger of a base stage runs in the stage built on it, with its own flags.
    let (keyword, rest) = if logical[keyword.clone()].eq_ignore_ascii_case("ONBUILD") {
        split_keyword(logical, rest)
    } else {
        (keyword, rest)
    };
    let (arguments, flags) = builder_flag_words(&logical[rest..], escape);
    let arguments = rest + arguments;
    let flags = flags.into_iter().map(|mut flag| {
        flag.span = flag.span.start + rest..flag.span.end + rest;
        flag
    });
    let keyword = &logical[keyword];
    let mut spans = Vec::new();
    match used.kind {
        UseKind::From if keyword.eq_ignore_ascii_case("FROM") => {
            let text = &logical[arguments..];
            let start = arguments + (text.len() - text.trim_start_matches(is_split_space).len());
            let base = logical[start..]
                .split(is_split_space)
                .next()
                .unwrap_or_default();
            if base.contains('$') {
                return Err(PinError {
                    line,
                    message: format!(
                        "`FROM {base}` reaches the digest-pinned image `{written}` through a build argument, so offpack cannot replace the digest with the local tag the far side's engine has; write the reference in the FROM line itself (or pin it with a tag instead of a digest)"
                    ),
                });
            }
            let at = base.find(written).ok_or_else(not_found)?;
            spans.push(start + at..start + at + written.len());
        }
        UseKind::CopyFrom => {
            for flag in flags {
                if flag.text.strip_prefix("--from=") == Some(written) {
                    let raw = &logical[flag.span.clone()];
                    let at = raw.find(written).ok_or_else(not_found)?;
                    spans.push(flag.span.start + at..flag.span.start + at + written.len());
                }
            }
        }
        UseKind::MountFrom => {
            for flag in flags.filter(|f| f.text.starts_with("--mount=")) {
                let raw = &logical[flag.span.clone()];
                for (at, _) in raw.match_indices(written) {
                    let before = raw[..at].to_ascii_lowercase();
                    let after = raw[at + written.len()..].chars().next();
                    if before.ends_with("from=")
                        && after.is_none_or(|c| matches!(c, ',' | '"' | '\'') || c.is_whitespace())
                    {
                        spans.push(flag.span.start + at..flag.span.start + at + written.len());
                    }
                }
            }
        }
        UseKind::From | UseKind::Frontend => {}
    }
    if spans.is_empty() {
        return Err(not_found());
    }
    Ok(spans)
}

/// The keyword's range in `text` from `from`, and where what follows it starts.
fn split_keyword(text: &str, from: usize) -> (Range<usize>, usize) {
    let rest = &text[from..];
    let start = from + (rest.len() - rest.trim_start().len());
    let end = text[start..]
        .find(is_split_space)
        .map_or(text.len(), |i| start + i);
    let after = &text[end..];
    (
        start..end,
        end + (after.len() - after.trim_start_matches(is_split_space).len()),
    )
}

/// The physical lines with the byte offset each starts at in the whole source.
fn physical_lines(text: &str, base: usize) -> Vec<(usize, &str)> {
    let mut offset = base;
    text.split_inclusive('\n')
        .map(|line| {
            let start = offset;
            offset += line.len();
            (start, line)
        })
        .collect()
}

/// An instruction's logical line, joined from its physical lines as the parser joins them, with
/// where each piece lies in the source.
struct LogicalLine {
    text: String,
    /// `(offset in text, offset in the source, length)` of each piece.
    pieces: Vec<(usize, usize, usize)>,
}

impl LogicalLine {
    /// The logical line starting at 1-based `line` (the parser's continuation rules).
    fn at(lines: &[(usize, &str)], line: usize, escape: char) -> Option<LogicalLine> {
        let mut logical = LogicalLine {
            text: String::new(),
            pieces: Vec::new(),
        };
        let (offset, raw) = *lines.get(line.checked_sub(1)?)?;
        let untrimmed = trim_newline(raw);
        let token = untrimmed.trim_start();
        if token.is_empty() || is_comment(token) {
            return None;
        }
        let (text, mut ended) = trim_continuation(token, escape);
        logical.push(offset + (untrimmed.len() - token.len()), text);
        let mut next = line;
        while !ended && next < lines.len() {
            let (offset, raw) = lines[next];
            next += 1;
            let token = trim_newline(raw);
            if is_comment(raw) || token.trim_start().is_empty() {
                continue;
            }
            let text;
            (text, ended) = trim_continuation(token, escape);
            logical.push(offset, text);
        }
        Some(logical)
    }

    fn push(&mut self, source_offset: usize, piece: &str) {
        self.pieces
            .push((self.text.len(), source_offset, piece.len()));
        self.text.push_str(piece);
    }

    /// The source range of `span`, when it lies within one physical line.
    fn source_range(&self, span: Range<usize>) -> Option<Range<usize>> {
        self.pieces.iter().find_map(|&(at, source, len)| {
            (span.start >= at && span.end <= at + len)
                .then(|| source + span.start - at..source + span.end - at)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{ResolveOptions, parse, resolve};

    const HEX: &str = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";
    const HEX2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn rewrite_with(src: &str, args: &[(&str, &str)]) -> Result<String, PinError> {
        let df = parse(src).unwrap();
        let build_args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let resolved = resolve(
            &df,
            &ResolveOptions {
                target: None,
                build_args: &build_args,
                target_platform: "linux/amd64",
                build_platform: "linux/amd64",
            },
        )
        .unwrap();
        rewrite_pins(src, &df, &resolved)
    }

    fn rewrite(src: &str) -> String {
        rewrite_with(src, &[]).unwrap()
    }

    fn pin(repo: &str, hex: &str) -> String {
        format!("{repo}:offpack-pin-sha256-{hex}")
    }

    #[test]
    fn pin_tags_use_the_familiar_repository_and_fit_a_tag() {
        let reference = ImageRef::parse(&format!("python:3.11-slim@sha256:{HEX}")).unwrap();
        let tag = pin_tag(&reference).unwrap();
        assert_eq!(tag, pin("python", HEX));
        let (_, tag_part) = tag.rsplit_once(':').unwrap();
        assert!(tag_part.len() <= 128);
        assert_eq!(
            ImageRef::parse(&tag).unwrap().tag.as_deref(),
            Some(tag_part),
            "a pin tag is a valid reference"
        );
        let reference = ImageRef::parse(&format!("localhost:5000/team/app@sha256:{HEX}")).unwrap();
        assert_eq!(
            pin_tag(&reference).unwrap(),
            pin("localhost:5000/team/app", HEX)
        );
        assert_eq!(pin_tag(&ImageRef::parse("python:3.11").unwrap()), None);
        let sha512 = format!("python@sha512:{}", "a".repeat(128));
        assert_eq!(pin_tag(&ImageRef::parse(&sha512).unwrap()), None);
    }

    #[test]
    fn nothing_to_rewrite_leaves_the_text_alone() {
        let src = "# syntax=docker/dockerfile:1\nFROM python:3.11-slim AS b\r\nFROM b\nCOPY --from=b /a /b\n";
        assert_eq!(rewrite(src), src);
    }

    #[test]
    fn from_with_platform_and_stage_name() {
        let src = format!(
            "FROM --platform=$BUILDPLATFORM golang@sha256:{HEX} AS b\nRUN go build\nFROM b\n"
        );
        assert_eq!(
            rewrite(&src),
            format!(
                "FROM --platform=$BUILDPLATFORM {} AS b\nRUN go build\nFROM b\n",
                pin("golang", HEX)
            )
        );
    }

    #[test]
    fn tag_and_digest_become_the_pin_tag() {
        let src = format!("FROM python:3.11-slim@sha256:{HEX}\nRUN true\n");
        assert_eq!(
            rewrite(&src),
            format!("FROM {}\nRUN true\n", pin("python", HEX))
        );
    }

    #[test]
    fn keywords_and_mount_keys_in_any_case() {
        let src = format!(
            "from node@sha256:{HEX} as Build\ncopy --from=redis@sha256:{HEX2} /x /x\nrun --mount=type=bind,FROM=redis@sha256:{HEX2},target=/r true\n"
        );
        assert_eq!(
            rewrite(&src),
            format!(
                "from {} as Build\ncopy --from={} /x /x\nrun --mount=type=bind,FROM={},target=/r true\n",
                pin("node", HEX),
                pin("redis", HEX2),
                pin("redis", HEX2)
            ),
            "every use is rewritten, not only the first of a reference"
        );
    }

    #[test]
    fn uppercase_digest_hex_is_not_a_reference_at_all() {
        let src = format!("FROM node@sha256:{}\n", HEX.to_uppercase());
        let df = parse(&src).unwrap();
        let args = BTreeMap::new();
        assert!(
            resolve(
                &df,
                &ResolveOptions {
                    target: None,
                    build_args: &args,
                    target_platform: "linux/amd64",
                    build_platform: "linux/amd64",
                },
            )
            .is_err(),
            "the resolver refuses it with the line, before any rewrite"
        );
    }

    #[test]
    fn continuation_lines_comments_and_escape_directive_are_kept() {
        let src = format!(
            "# escape=`\r\n# a comment\r\nFROM alpine AS tools\r\nFROM alpine\r\nRUN --mount=type=cache,target=/c `\r\n# inside\r\n    --mount=type=bind,from=busybox@sha256:{HEX},source=/bin,target=/b `\r\n    ls /b\r\nCOPY --link `\r\n  --from=busybox@sha256:{HEX} /bin/sh /sh\r\n"
        );
        let out = rewrite(&src);
        assert_eq!(
            out,
            src.replace(&format!("busybox@sha256:{HEX}"), &pin("busybox", HEX))
        );
        assert!(parse(&out).is_ok());
    }

    #[test]
    fn quoted_flags_are_rewritten_inside_their_quotes() {
        let src = format!(
            "FROM alpine\nRUN --mount=\"type=bind,from=busybox@sha256:{HEX},target=/b\" true\n"
        );
        assert_eq!(
            rewrite(&src),
            format!(
                "FROM alpine\nRUN --mount=\"type=bind,from={},target=/b\" true\n",
                pin("busybox", HEX)
            )
        );
    }

    #[test]
    fn onbuild_triggers_a_needed_stage_runs() {
        let src = format!(
            "FROM alpine AS base\nONBUILD COPY --from=busybox@sha256:{HEX} /bin/sh /sh\nFROM base\n"
        );
        assert_eq!(
            rewrite(&src),
            format!(
                "FROM alpine AS base\nONBUILD COPY --from={} /bin/sh /sh\nFROM base\n",
                pin("busybox", HEX)
            )
        );
    }

    #[test]
    fn unneeded_stages_and_byte_order_mark() {
        let src = format!("\u{feff}FROM node@sha256:{HEX} AS unused\nFROM python@sha256:{HEX2}\n");
        assert_eq!(
            rewrite(&src),
            format!(
                "\u{feff}FROM node@sha256:{HEX} AS unused\nFROM {}\n",
                pin("python", HEX2)
            )
        );
    }

    #[test]
    fn digest_through_a_build_argument_names_the_line() {
        let src = format!("ARG BASE=python@sha256:{HEX}\n\nFROM ${{BASE}}\n");
        let err = rewrite_with(&src, &[]).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("build argument"), "{err}");
        let overridden = "ARG BASE=python:3.11\nFROM ${BASE}\n";
        assert!(
            rewrite_with(overridden, &[("BASE", &format!("python@sha256:{HEX}"))]).is_err(),
            "a --build-arg that brings a digest is refused too"
        );
        assert_eq!(rewrite(overridden), overridden);
    }

    #[test]
    fn reference_split_over_lines_is_an_error() {
        // The join leaves no blank, so the parser reads one word; offpack cannot tag half of it.
        let src = format!("FROM pyth\\\non@sha256:{HEX}\n");
        let err = rewrite_with(&src, &[]).unwrap_err();
        assert_eq!(err.line, 1);
    }
}
