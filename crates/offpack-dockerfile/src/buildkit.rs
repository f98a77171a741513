//! Dockerfile features only BuildKit builds, and which of them the Dockerfile frontend built into
//! Docker Engine 20.10 does not know yet.
//!
//! Minimum frontend versions are the first `docker/dockerfile` release that has the feature in
//! its stable channel, from moby/buildkit's `frontend/dockerfile/docs/reference.md` and checked
//! against the release tags (`dockerfile/1.N.0`: the flag in `instructions/parse.go`, and no
//! `dfexcludepatterns` / `dfparents` / `dfrunsecurity` build tag guarding it). The reference's
//! "1.1" for `ADD --keep-git-dir` is wrong: the flag first appears in `dockerfile/1.5.0`, where
//! `ADD <git ref>` still requires the labs channel; both are stable from 1.6 (decision 0080).
//! What the built-in frontend of Docker Engine 20.10.24 (BuildKit 0.8) accepts was measured over
//! `POST /build?version=2`: `RUN --mount` and `COPY/ADD --chmod=<octal>` work, the others fail
//! with `Unknown flag: …`, and heredocs with `unknown instruction`.

use serde::Serialize;

use crate::parser::{Dockerfile, Instruction, onbuild_trigger};

/// The Dockerfile syntax the frontend built into Docker Engine 20.10 understands (BuildKit 0.8's
/// built-in frontend, the equivalent of `docker/dockerfile:1.2`).
pub const DOCKER_20_10_FRONTEND: &str = "1.2";

/// A Dockerfile feature the classic builder cannot build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildKitFeature {
    /// 1-based line of the instruction using it.
    pub line: usize,
    /// Index of the stage the instruction is in.
    pub stage: usize,
    /// What it is, as people write it: `RUN --mount`, `COPY --link`, `RUN heredoc`, ….
    pub feature: &'static str,
    /// The `docker/dockerfile` version that first has it, when the frontend built into Docker
    /// Engine 20.10 ([`DOCKER_20_10_FRONTEND`]) rejects it: `1.4`, or `1.14-labs` for a feature
    /// only the labs channel has.
    pub needs_frontend: Option<&'static str>,
}

/// Every BuildKit-only feature of the Dockerfile, in file order. `ONBUILD` triggers count at the
/// `ONBUILD` line of the stage that declares them.
pub fn buildkit_features(df: &Dockerfile) -> Vec<BuildKitFeature> {
    let mut features = Vec::new();
    for stage in &df.stages {
        for instruction in &stage.instructions {
            let trigger;
            let instruction = if instruction.keyword == "ONBUILD" {
                match onbuild_trigger(instruction, df.directives.escape) {
                    Some(parsed) => {
                        trigger = parsed;
                        &trigger
                    }
                    None => continue,
                }
            } else {
                instruction
            };
            for (feature, needs_frontend) in instruction_features(instruction) {
                features.push(BuildKitFeature {
                    line: instruction.line,
                    stage: stage.index,
                    feature,
                    needs_frontend,
                });
            }
        }
    }
    features
}

/// The features one instruction uses, each once.
fn instruction_features(instruction: &Instruction) -> Vec<(&'static str, Option<&'static str>)> {
    let keyword = instruction.keyword.as_str();
    let mut found: Vec<(&'static str, Option<&'static str>)> = Vec::new();
    let mut add = |feature: &'static str, needs: Option<&'static str>| {
        if !found.iter().any(|(f, _)| *f == feature) {
            found.push((feature, needs));
        }
    };
    if !instruction.heredocs.is_empty() {
        match keyword {
            "RUN" => add("RUN heredoc", Some("1.4")),
            "COPY" => add("COPY heredoc", Some("1.4")),
            "ADD" => add("ADD heredoc", Some("1.4")),
            _ => {}
        }
    }
    for (name, value) in &instruction.flags {
        match (keyword, name.as_str()) {
            ("RUN", "mount") => add("RUN --mount", None),
            ("RUN", "network") => add("RUN --network", Some("1.3")),
            ("RUN", "security") => add("RUN --security", Some("1.20")),
            ("RUN", "device") => add("RUN --device", Some("1.14-labs")),
            ("COPY", "link") => add("COPY --link", Some("1.4")),
            ("ADD", "link") => add("ADD --link", Some("1.4")),
            ("COPY", "chmod") => add("COPY --chmod", chmod_needs(value.as_deref())),
            ("ADD", "chmod") => add("ADD --chmod", chmod_needs(value.as_deref())),
            ("ADD", "checksum") => add("ADD --checksum", Some("1.6")),
            ("ADD", "keep-git-dir") => add("ADD --keep-git-dir", Some("1.6")),
            ("ADD", "unpack") => add("ADD --unpack", Some("1.17")),
            ("COPY", "parents") => add("COPY --parents", Some("1.20")),
            ("COPY", "exclude") => add("COPY --exclude", Some("1.19")),
            ("ADD", "exclude") => add("ADD --exclude", Some("1.19")),
            _ => {}
        }
    }
    found
}

/// `--chmod` takes an octal mode since 1.2; symbolic modes (`+x`, `u=rwx`) came with 1.14 (20.10's
/// built-in frontend builds `--chmod=u+x` without applying it: the file stays 644). A mode from a
/// variable cannot be told apart here, so it is taken as octal.
fn chmod_needs(value: Option<&str>) -> Option<&'static str> {
    let value = value.unwrap_or_default();
    let octal = value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if octal || value.contains('$') {
        None
    } else {
        Some("1.14")
    }
}

/// The newest frontend version `features` need, as a `docker/dockerfile` tag (`1.20`, or
/// `1.20-labs` when one of them is only in the labs channel); `None` when the frontend built into
/// Docker Engine 20.10 builds them all.
pub fn newest_frontend_needed<'a>(
    features: impl IntoIterator<Item = &'a BuildKitFeature>,
) -> Option<String> {
    let mut newest: Option<(u32, u32)> = None;
    let mut labs = false;
    for needed in features.into_iter().filter_map(|f| f.needs_frontend) {
        let (number, is_labs) = match needed.strip_suffix("-labs") {
            Some(number) => (number, true),
            None => (needed, false),
        };
        labs |= is_labs;
        let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        newest = Some(newest.map_or(version, |n| n.max(version)));
    }
    newest.map(|(major, minor)| format!("{major}.{minor}{}", if labs { "-labs" } else { "" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn features(src: &str) -> Vec<(usize, &'static str, Option<&'static str>)> {
        buildkit_features(&parse(src).unwrap())
            .into_iter()
            .map(|f| (f.line, f.feature, f.needs_frontend))
            .collect()
    }

    #[test]
    fn run_flags() {
        assert_eq!(
            features(concat!(
                "FROM alpine:3\n",
                "RUN --mount=type=cache,target=/c --mount=type=bind,target=/b true\n",
                "RUN --network=none true\n",
                "RUN --security=insecure true\n",
                "RUN --device=x true\n",
                "RUN true\n",
            )),
            [
                (2, "RUN --mount", None),
                (3, "RUN --network", Some("1.3")),
                (4, "RUN --security", Some("1.20")),
                (5, "RUN --device", Some("1.14-labs")),
            ]
        );
    }

    #[test]
    fn copy_and_add_flags() {
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(
            features(&format!(
                "FROM alpine:3\n\
                 COPY --link --chmod=755 a /a\n\
                 ADD --link a /a\n\
                 COPY --chmod=u+x a /a\n\
                 ADD --chmod=$MODE --checksum={digest} https://x/y /y\n\
                 ADD --keep-git-dir=true https://github.com/moby/buildkit.git /bk\n\
                 COPY --parents --exclude=*.md a/b /dst/\n\
                 ADD --exclude=*.md --unpack=true a.tar /dst/\n\
                 COPY --chown=1:1 --from=build a /a\n"
            )),
            [
                (2, "COPY --link", Some("1.4")),
                (2, "COPY --chmod", None),
                (3, "ADD --link", Some("1.4")),
                (4, "COPY --chmod", Some("1.14")),
                (5, "ADD --chmod", None),
                (5, "ADD --checksum", Some("1.6")),
                (6, "ADD --keep-git-dir", Some("1.6")),
                (7, "COPY --parents", Some("1.20")),
                (7, "COPY --exclude", Some("1.19")),
                (8, "ADD --exclude", Some("1.19")),
                (8, "ADD --unpack", Some("1.17")),
            ]
        );
    }

    #[test]
    fn heredocs_and_onbuild_triggers_with_their_stage() {
        let df = parse(concat!(
            "FROM alpine:3 AS base\n",
            "ONBUILD RUN --mount=type=cache,target=/c true\n",
            "RUN <<EOF\n",
            "true\n",
            "EOF\n",
            "FROM base\n",
            "COPY <<EOF /etc/x\n",
            "x\n",
            "EOF\n",
            "RUN cat <<'EOF'\n",
            "EOF\n",
            "RUN [\"echo\", \"<<EOF\"]\n",
        ))
        .unwrap();
        let found: Vec<(usize, usize, &str)> = buildkit_features(&df)
            .iter()
            .map(|f| (f.line, f.stage, f.feature))
            .collect();
        assert_eq!(
            found,
            [
                (2, 0, "RUN --mount"),
                (3, 0, "RUN heredoc"),
                (7, 1, "COPY heredoc"),
                (10, 1, "RUN heredoc"),
            ]
        );
    }

    #[test]
    fn a_plain_dockerfile_has_none() {
        assert!(
            features("FROM python:3.11-slim\nCOPY --chown=1 . /app\nRUN pip install x\n")
                .is_empty()
        );
    }

    #[test]
    fn newest_frontend_compares_versions_numerically() {
        let feature = |needs| BuildKitFeature {
            line: 1,
            stage: 0,
            feature: "x",
            needs_frontend: needs,
        };
        let all = [feature(Some("1.4")), feature(Some("1.19")), feature(None)];
        assert_eq!(newest_frontend_needed(&all).as_deref(), Some("1.19"));
        let labs = [feature(Some("1.14-labs")), feature(Some("1.4"))];
        assert_eq!(newest_frontend_needed(&labs).as_deref(), Some("1.14-labs"));
        assert_eq!(newest_frontend_needed(&[feature(None)]), None);
    }
}
