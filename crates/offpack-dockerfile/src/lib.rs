//! Dockerfile analysis for offpack: parses Dockerfiles with BuildKit's rules and
//! answers "which images does building target T need, and what will break offline".
//!
//! Pure logic: every function takes text and returns data; nothing here touches
//! files, the network or the Docker engine.
//!
//! ```
//! use std::collections::BTreeMap;
//! use offpack_dockerfile::{parse, resolve, ResolveOptions};
//!
//! let df = parse("FROM python:3.12-slim\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n").unwrap();
//! let build_args = BTreeMap::new();
//! let resolved = resolve(&df, &ResolveOptions {
//!     target: None,
//!     build_args: &build_args,
//!     target_platform: "linux/amd64",
//!     build_platform: "linux/amd64",
//! }).unwrap();
//! assert_eq!(resolved.images[0].reference.to_string(), "docker.io/library/python:3.12-slim");
//! ```

#![warn(missing_docs)]

mod builder;
mod buildkit;
mod lexer;
mod parser;
mod pins;
mod resolve;
mod run;

pub use builder::Builder;
pub use buildkit::{
    BuildKitFeature, DOCKER_20_10_FRONTEND, buildkit_features, newest_frontend_needed,
};
pub use offpack_ref::{ImageRef, RefError};
pub use parser::{
    ArgDecl, Directives, Dockerfile, Heredoc, Instruction, Located, ParseError, Stage, parse,
};
pub use pins::{PIN_TAG_PREFIX, PinError, pin_tag, rewrite_pins};
pub use resolve::{
    CopySources, Finding, FindingCode, ImageUse, ResolveError, ResolveOptions, Resolved, RunStep,
    Subject, UseKind, platform_parts, resolve,
};
pub use run::PackageInstall;

#[cfg(test)]
mod never_panics {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Lines that exercise every parser path; the fuzzer splices and mutates them.
    const SEED_LINES: &[&str] = &[
        "# syntax=docker/dockerfile:1",
        "# escape=`",
        "# check=skip=all",
        "ARG BASE=node:18 V",
        "ARG TAG=${V:-1}",
        "FROM ${BASE} AS build",
        "FROM --platform=$BUILDPLATFORM golang:${TAG%.*} AS b2",
        "FROM scratch",
        "FROM build",
        "COPY --from=build /a /b",
        "COPY --from=0 /a /b",
        "COPY --from=nginx:1 /a /b",
        "FROM --platform=linux/amd64 python:3@sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa AS p",
        "COPY --from=busybox@sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa /a /b",
        "RUN --mount=type=bind,from=busybox@sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa,target=/b true",
        "COPY <<EOF /dst",
        "RUN <<-'EOT' bash",
        "EOF",
        "\tEOT",
        "RUN --mount=type=cache,from=build,target=/c pip install -r r.txt \\",
        "  && apt-get install -y curl",
        "RUN [\"npm\", \"ci\"]",
        "ADD https://example.com/x.tgz /x",
        "ENV A=1 B=\"2 3\"",
        "ONBUILD RUN echo hi",
        "HEALTHCHECK --interval=5s CMD curl -f http://localhost/",
        "  # comment inside continuation",
        "",
        "\\",
        "`",
    ];

    fn check(src: &str) {
        if let Ok(df) = parse(src) {
            let build_args: BTreeMap<String, String> = [("BASE".to_string(), "alpine".to_string())]
                .into_iter()
                .collect();
            for target in [None, Some("build"), Some("b2")] {
                if let Ok(resolved) = resolve(
                    &df,
                    &ResolveOptions {
                        target,
                        build_args: &build_args,
                        target_platform: "linux/arm64/v8",
                        build_platform: "linux/amd64",
                    },
                ) {
                    let _ = rewrite_pins(src, &df, &resolved);
                }
            }
        }
        let _ = ImageRef::parse(src);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text(src in "\\PC{0,300}") {
            check(&src);
        }

        #[test]
        fn dockerfile_alphabet(src in "[A-Za-z0-9 \\\\`$#{}:=\"'<>@/.,\\[\\]\t\r\n%?+*-]{0,300}") {
            check(&src);
        }

        #[test]
        fn spliced_seed_lines(
            picks in proptest::collection::vec((0..SEED_LINES.len(), any::<u8>(), 0usize..40), 0..25)
        ) {
            let mut src = String::new();
            for (index, mutation, at) in picks {
                let mut line = SEED_LINES[index].to_string();
                let cut = (0..=at.min(line.len())).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
                match mutation % 4 {
                    0 => line.truncate(cut),
                    1 => line.insert(cut, char::from(b"\\`$\"'{}<#\n"[usize::from(mutation) % 10])),
                    _ => {}
                }
                src.push_str(&line);
                src.push(if mutation % 7 == 0 { '\r' } else { '\n' });
            }
            check(&src);
        }
    }
}
