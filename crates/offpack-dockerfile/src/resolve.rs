//! Which images building a target needs, following BuildKit's Dockerfile
//! frontend (`dockerfile2llb`): global `ARG` expansion in `FROM`, stage lookup,
//! `COPY --from` / `RUN --mount=from=` dependencies and reachability from the
//! target; plus offline lints.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::buildkit::{BuildKitFeature, buildkit_features};
use crate::lexer::{Env, Lexer};
use crate::parser::{Dockerfile, Instruction, Stage, onbuild_trigger};
use crate::run::{self, PackageInstall};
use offpack_ref::ImageRef;

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct ResolveOptions<'a> {
    /// `--target` stage name; `None` builds the last stage.
    pub target: Option<&'a str>,
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// Platform being built for, e.g. `linux/amd64` (feeds `TARGETPLATFORM`, `TARGETARCH`, …).
    pub target_platform: &'a str,
    /// Platform of the builder (feeds `BUILDPLATFORM`, `BUILDARCH`, …).
    pub build_platform: &'a str,
}

/// How an image is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UseKind {
    /// `FROM image`.
    From,
    /// `COPY --from=image`.
    CopyFrom,
    /// `RUN --mount=…,from=image`.
    MountFrom,
    /// `# syntax=image` (the BuildKit frontend itself).
    Frontend,
}

/// One external image the build pulls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUse {
    /// Normalized reference (`docker.io/library/node:18`).
    pub reference: ImageRef,
    /// The reference text Docker resolves, after `ARG` expansion (`node:18`).
    pub written: String,
    /// 1-based line of the instruction (or directive) naming it.
    pub line: usize,
    /// How it is used.
    pub kind: UseKind,
    /// Index of the stage using it (0 for the frontend).
    pub stage: usize,
    /// `FROM --platform` after expansion; `None` means the target platform.
    pub platform: Option<String>,
}

/// A `RUN` instruction of a needed stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStep {
    /// Stage index.
    pub stage: usize,
    /// 1-based first line.
    pub line: usize,
    /// The command: shell-form text, or exec-form words joined by spaces.
    pub command: String,
    /// Heredoc bodies attached to the step, in order.
    pub heredocs: Vec<String>,
    /// Python/Node package installs offpack can serve.
    pub installs: Vec<PackageInstall>,
}

/// `COPY`/`ADD` sources of a needed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySources {
    /// Stage index.
    pub stage: usize,
    /// 1-based line.
    pub line: usize,
    /// `COPY` or `ADD`.
    pub keyword: String,
    /// `--from` value as written; `None` means the build context.
    pub from: Option<String>,
    /// Source paths as written (heredoc sources excluded).
    pub sources: Vec<String>,
    /// Destination as written.
    pub destination: String,
}

/// The rule an offline-readiness finding breaks. Each has a stable code that is never reused
/// (decision 0032); callers match on the variant, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingCode {
    /// `OP001`: a registry mirror host written in front of a Docker Hub library image.
    MirrorPrefix,
    /// `OP002`: an image without a digest whose tag is missing or `latest`.
    Unpinned,
    /// `OP003`: a `RUN` that needs a network offpack does not serve.
    NetworkRun,
    /// `OP004`: a `# syntax=` frontend BuildKit pulls.
    Frontend,
    /// `OP005`: an `ADD` that downloads at build time.
    RemoteAdd,
}

impl FindingCode {
    /// The stable code (`OP001`…).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::MirrorPrefix => "OP001",
            FindingCode::Unpinned => "OP002",
            FindingCode::NetworkRun => "OP003",
            FindingCode::Frontend => "OP004",
            FindingCode::RemoteAdd => "OP005",
        }
    }
}

impl Serialize for FindingCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What in the Dockerfile a finding is about: with its line, what tells two findings of one
/// rule apart and ties a finding to the image it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Subject {
    /// An external image a `FROM`, `COPY --from` or `RUN --mount from=` uses, as Docker resolves
    /// it (after build-arg substitution, [`ImageUse::written`]).
    Image(String),
    /// The `# syntax=` frontend image, as written.
    Frontend(String),
    /// The `RUN` instruction on the finding's line.
    Run,
    /// A remote `ADD` source, as written.
    AddSource(String),
}

/// An offline-readiness finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule, with its stable code (`OP003`).
    pub code: FindingCode,
    /// What the finding is about.
    pub subject: Subject,
    /// 1-based line.
    pub line: usize,
    /// What will break.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Everything building the target needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// Index of the target stage.
    pub target_stage: usize,
    /// Stages reachable from the target, in file order (BuildKit builds only these).
    pub stages_needed: Vec<usize>,
    /// External images of the needed stages, first use of each reference.
    pub images: Vec<ImageUse>,
    /// Every use of an external image by the needed stages, in stage order, not deduplicated:
    /// what has to be found in the text to rewrite a reference (`crate::rewrite_pins`).
    pub image_uses: Vec<ImageUse>,
    /// External images of every stage up to and including the target: what the
    /// classic (non-BuildKit) builder pulls, since it builds all of them.
    pub classic_builder_images: Vec<ImageUse>,
    /// The `# syntax=` frontend image.
    pub frontend: Option<ImageUse>,
    /// `RUN` steps of the needed stages.
    pub run_steps: Vec<RunStep>,
    /// `COPY`/`ADD` sources of the needed stages.
    pub copy_sources: Vec<CopySources>,
    /// Offline lints for the needed stages and the frontend.
    pub findings: Vec<Finding>,
    /// BuildKit-only features of the needed stages: why building the target needs BuildKit.
    pub buildkit_features: Vec<BuildKitFeature>,
    /// BuildKit-only features the classic builder meets: those in every stage up to the target
    /// (it builds them all), and those its parser rejects anywhere in the file (every feature
    /// with [`BuildKitFeature::needs_frontend`]: unknown flags and heredocs). `RUN --mount` and
    /// `--chmod` after the target pass, since it only refuses them when it runs the step.
    pub classic_builder_features: Vec<BuildKitFeature>,
    /// Features anywhere in the file that the frontend built into Docker Engine 20.10 rejects: a
    /// Dockerfile frontend parses the whole file, so a stage the target does not reach counts.
    pub frontend_features: Vec<BuildKitFeature>,
}

/// Why the build graph cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; stages in this Dockerfile: {}", if available.is_empty() { "(none named)".to_string() } else { available.join(", ") })]
    UnknownTarget {
        /// The requested target.
        target: String,
        /// Stage names that exist.
        available: Vec<String>,
    },
    /// The Dockerfile has no `FROM`.
    #[error("the Dockerfile has no FROM instruction, so there is no stage to build")]
    NoStages,
    /// An error located at a Dockerfile line.
    #[error("line {line}: {message}")]
    At {
        /// 1-based line.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

fn at(line: usize, message: impl Into<String>) -> ResolveError {
    ResolveError::At {
        line,
        message: message.into(),
    }
}

/// Where a stage's filesystem comes from.
#[derive(Debug, Clone)]
enum Source {
    Stage(usize),
    Scratch,
    Image {
        written: String,
        reference: ImageRef,
        implicit_tag: bool,
    },
}

#[derive(Debug, Clone)]
struct Dependency {
    source: Source,
    line: usize,
    kind: UseKind,
}

#[derive(Debug)]
struct StageGraph {
    base: Source,
    from_line: usize,
    platform: Option<String>,
    deps: Vec<Dependency>,
}

/// Resolves what building `opts.target` needs.
pub fn resolve(df: &Dockerfile, opts: &ResolveOptions) -> Result<Resolved, ResolveError> {
    let Some(last) = df.stages.last() else {
        return Err(ResolveError::NoStages);
    };
    let lexer = Lexer::new(df.directives.escape);
    let target_stage = match opts.target {
        None => df.stages.len() - 1,
        Some(target) => find_stage(df, target).ok_or_else(|| ResolveError::UnknownTarget {
            target: target.to_string(),
            available: df.stages.iter().filter_map(|s| s.name.clone()).collect(),
        })?,
    };
    let target_name = opts
        .target
        .map(str::to_string)
        .or_else(|| last.name.clone())
        .unwrap_or_else(|| "default".to_string());
    let global_env = global_args(df, opts, &lexer, &target_name)?;

    let mut graphs = Vec::with_capacity(df.stages.len());
    for (position, stage) in df.stages.iter().enumerate() {
        graphs.push(stage_graph(df, position, stage, &lexer, &global_env)?);
    }
    check_cycles(df, &graphs)?;

    let mut reachable = BTreeSet::new();
    mark_reachable(target_stage, &graphs, &mut reachable);
    let stages_needed: Vec<usize> = reachable.into_iter().collect();

    let image_uses = collect_uses(&graphs, stages_needed.iter().copied());
    let images = first_uses(image_uses.clone());
    let classic_builder_images = first_uses(collect_uses(&graphs, 0..=target_stage));
    let frontend = frontend(df)?;

    let mut findings = Vec::new();
    if let Some(frontend) = &frontend {
        findings.push(Finding {
            code: FindingCode::Frontend,
            subject: Subject::Frontend(frontend.written.clone()),
            line: frontend.line,
            message: format!(
                "the `# syntax={}` directive makes BuildKit pull the frontend image {} before it reads the Dockerfile",
                frontend.written, frontend.reference
            ),
            fix: format!(
                "carry {} in the bundle, or remove the directive to use the builder's built-in Dockerfile frontend",
                frontend.reference.familiar()
            ),
        });
    }
    for &index in &stages_needed {
        if let Some(graph) = graphs.get(index) {
            image_findings(graph, &mut findings);
        }
    }

    let mut run_steps = Vec::new();
    let mut copy_sources = Vec::new();
    for &index in &stages_needed {
        let Some(stage) = df.stages.get(index) else {
            continue;
        };
        for instruction in &stage.instructions {
            match instruction.keyword.as_str() {
                "RUN" => run_steps.push(run_step(index, instruction, &mut findings)),
                "COPY" | "ADD" => {
                    if let Some(sources) = copy_step(index, instruction, &mut findings) {
                        copy_sources.push(sources);
                    }
                }
                _ => {}
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.code));

    let features = buildkit_features(df);
    let select = |keep: &dyn Fn(&BuildKitFeature) -> bool| -> Vec<BuildKitFeature> {
        features.iter().filter(|f| keep(f)).cloned().collect()
    };
    let buildkit_features = select(&|f| stages_needed.contains(&f.stage));
    let classic_builder_features =
        select(&|f| f.stage <= target_stage || f.needs_frontend.is_some());
    let frontend_features = select(&|f| f.needs_frontend.is_some());

    Ok(Resolved {
        target_stage,
        stages_needed,
        images,
        image_uses,
        classic_builder_images,
        frontend,
        run_steps,
        copy_sources,
        findings,
        buildkit_features,
        classic_builder_features,
        frontend_features,
    })
}

impl Resolved {
    /// The external image a needed stage starts from, following `FROM <stage>` chains: the
    /// image whose interpreter a `RUN` of that stage uses. `None` for `FROM scratch`.
    pub fn base_image(&self, df: &Dockerfile, stage: usize) -> Option<&ImageUse> {
        let mut current = stage;
        // A chain is at most as long as the file has stages; the bound also stops a cycle.
        for _ in 0..=df.stages.len() {
            if let Some(found) = self
                .image_uses
                .iter()
                .find(|u| u.kind == UseKind::From && u.stage == current)
            {
                return Some(found);
            }
            let base = df.stages.get(current)?;
            match find_stage(df, &base.base.value) {
                Some(parent) if parent < current => current = parent,
                _ => return None,
            }
        }
        None
    }
}

fn find_stage(df: &Dockerfile, name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    df.stages
        .iter()
        .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// `os/arch[/variant]`, normalized like containerd's `platforms.Normalize`: (os, arch, variant),
/// the variant empty where none is meant (`arm64` and `arm64/v8` alike), `v7` for a bare `arm`.
pub fn platform_parts(platform: &str) -> (String, String, String) {
    let mut parts = platform.split('/').map(|p| p.trim().to_lowercase());
    let os = parts
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "linux".into());
    let arch = parts.next().unwrap_or_default();
    let variant = parts.next().unwrap_or_default();
    let (arch, variant) = match (arch.as_str(), variant.as_str()) {
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64".to_string(), String::new()),
        ("aarch64" | "arm64", "v8" | "8" | "") => ("arm64".to_string(), String::new()),
        ("armhf", _) => ("arm".to_string(), "v7".to_string()),
        ("armel", _) => ("arm".to_string(), "v6".to_string()),
        ("arm", "") => ("arm".to_string(), "v7".to_string()),
        ("arm", v) => (
            "arm".to_string(),
            if v.starts_with('v') {
                v.to_string()
            } else {
                format!("v{v}")
            },
        ),
        ("i386", _) => ("386".to_string(), String::new()),
        (a, v) => (a.to_string(), v.to_string()),
    };
    (os, arch, variant)
}

fn format_platform(os: &str, arch: &str, variant: &str) -> String {
    if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    }
}

/// The automatic platform args and global `ARG`s (BuildKit `defaultArgs` + `buildMetaArgs`).
fn global_args(
    df: &Dockerfile,
    opts: &ResolveOptions,
    lexer: &Lexer,
    target_name: &str,
) -> Result<Env, ResolveError> {
    let (bos, barch, bvariant) = platform_parts(opts.build_platform);
    let (tos, tarch, tvariant) = platform_parts(opts.target_platform);
    let defaults = [
        ("BUILDPLATFORM", format_platform(&bos, &barch, &bvariant)),
        ("BUILDOS", bos),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", barch),
        ("BUILDVARIANT", bvariant),
        ("TARGETPLATFORM", format_platform(&tos, &tarch, &tvariant)),
        ("TARGETOS", tos),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", tarch),
        ("TARGETVARIANT", tvariant),
        ("TARGETSTAGE", target_name.to_string()),
    ];
    let mut env = Env::new();
    for (key, value) in defaults {
        let value = opts.build_args.get(key).cloned().unwrap_or(value);
        env.insert(key.to_string(), value);
    }
    for decl in &df.global_args {
        let value = match (opts.build_args.get(&decl.name), &decl.default) {
            (Some(value), _) => value.clone(),
            (None, Some(default)) => lexer
                .process_word(default, &env)
                .map_err(|e| at(decl.line, format!("ARG {}: {e}", decl.name)))?,
            (None, None) => continue,
        };
        env.insert(decl.name.clone(), value);
    }
    Ok(env)
}

fn parse_image(written: &str, line: usize, what: &str) -> Result<Source, ResolveError> {
    match ImageRef::parse_with_implicit_tag(written) {
        Ok((reference, implicit_tag)) => Ok(Source::Image {
            written: written.to_string(),
            reference,
            implicit_tag,
        }),
        Err(e) => Err(at(
            line,
            format!(
                "{what} names {written:?}, which is not a valid image reference ({}); fix the reference or the build arg that produces it",
                e.reason
            ),
        )),
    }
}

fn stage_graph(
    df: &Dockerfile,
    position: usize,
    stage: &Stage,
    lexer: &Lexer,
    env: &Env,
) -> Result<StageGraph, ResolveError> {
    let line = stage.base.line;
    let base_text = lexer
        .process_word(&stage.base.value, env)
        .map_err(|e| at(line, format!("FROM {}: {e}", stage.base.value)))?;
    if base_text.is_empty() {
        return Err(at(
            line,
            format!(
                "base name ({}) should not be blank; set the build arg it uses or give the ARG a default",
                stage.base.value
            ),
        ));
    }
    let platform = match &stage.platform {
        None => None,
        Some(raw) => {
            let value = lexer.process_word(raw, env).map_err(|e| {
                at(
                    line,
                    format!("failed to process arguments for platform {raw}: {e}"),
                )
            })?;
            if value.is_empty() {
                return Err(at(
                    line,
                    format!("empty platform value from expression {raw}"),
                ));
            }
            if value.split('/').count() > 3 || value.split('/').any(str::is_empty) {
                return Err(at(
                    line,
                    format!("failed to parse platform {raw}: {value:?} is not os/arch[/variant]"),
                ));
            }
            Some(value)
        }
    };
    // BuildKit matches the expanded FROM operand exactly against earlier stage
    // names (which are lowercased), so `FROM Builder` is an image, not a stage.
    let earlier_stages = df.stages.get(..position).unwrap_or_default();
    let base = match earlier_stages
        .iter()
        .rposition(|s| s.name.as_deref() == Some(base_text.as_str()))
    {
        Some(earlier) => Source::Stage(earlier),
        None if base_text == "scratch" => Source::Scratch,
        None => parse_image(&base_text, line, "FROM")?,
    };

    // BuildKit runs the ONBUILD triggers of a base *stage* in the child stage, so
    // their `COPY --from` and `RUN --mount` sources belong to the child.
    let triggers: Vec<Instruction> = match base {
        Source::Stage(index) => df
            .stages
            .get(index)
            .map(|base_stage| {
                base_stage
                    .instructions
                    .iter()
                    .filter(|i| i.keyword == "ONBUILD")
                    .filter_map(|i| onbuild_trigger(i, df.directives.escape))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut deps = Vec::new();
    for instruction in triggers.iter().chain(&stage.instructions) {
        match instruction.keyword.as_str() {
            "COPY" => {
                if let Some(from) = instruction.flag("from").filter(|f| !f.is_empty()) {
                    deps.push(Dependency {
                        source: copy_from_source(df, from, instruction.line, lexer)?,
                        line: instruction.line,
                        kind: UseKind::CopyFrom,
                    });
                }
            }
            "RUN" => {
                for mount in instruction.flag_values("mount") {
                    if let Some(source) = mount_source(df, mount, instruction.line)? {
                        deps.push(Dependency {
                            source,
                            line: instruction.line,
                            kind: UseKind::MountFrom,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(StageGraph {
        base,
        from_line: line,
        platform,
        deps,
    })
}

fn copy_from_source(
    df: &Dockerfile,
    from: &str,
    line: usize,
    lexer: &Lexer,
) -> Result<Source, ResolveError> {
    let unexpanded = lexer.process_word(from, &Env::new()).unwrap_or_default();
    if unexpanded != from {
        return Err(at(
            line,
            format!(
                "--from={from}: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
            ),
        ));
    }
    if let Some(index) = go_atoi(from) {
        return match usize::try_from(index).ok().filter(|i| *i < df.stages.len()) {
            Some(index) => Ok(Source::Stage(index)),
            None => Err(at(
                line,
                format!(
                    "invalid stage index {index}: --from refers to stages by position starting at 0, and this Dockerfile has {} stage(s)",
                    df.stages.len()
                ),
            )),
        };
    }
    match find_stage(df, from) {
        Some(index) => Ok(Source::Stage(index)),
        None if from == "scratch" => Ok(Source::Scratch),
        None => parse_image(from, line, "COPY --from"),
    }
}

/// Go's `strconv.Atoi` acceptance: optional sign and ASCII digits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The `from=` of one `--mount` value (BuildKit `parseMount` without an expander,
/// then `detectRunMount`): a stage name or an image; `None` for no source.
fn mount_source(df: &Dockerfile, mount: &str, line: usize) -> Result<Option<Source>, ResolveError> {
    let fields = csv_fields(mount)
        .map_err(|e| at(line, format!("failed to parse csv mounts {mount:?}: {e}")))?;
    let mut from = None;
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key.to_lowercase().as_str() {
            "from" => {
                if value.find('$').is_some_and(|i| i + 1 != value.len()) {
                    return Err(at(
                        line,
                        "'from' doesn't support variable expansion, define alias stage instead",
                    ));
                }
                from = Some(value.to_string());
            }
            "type" => {
                let kind = value.to_lowercase();
                if !matches!(kind.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(at(
                        line,
                        format!(
                            "unsupported mount type {value:?}; use bind, cache, tmpfs, secret or ssh"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    let Some(from) = from.filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    match find_stage(df, &from) {
        Some(index) => Ok(Some(Source::Stage(index))),
        None if from == "scratch" => Ok(None),
        None => parse_image(&from, line, "RUN --mount from").map(Some),
    }
}

/// Go `encoding/csv` reading of a single record (what `csvvalue.Fields` does).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

fn stage_label(df: &Dockerfile, index: usize) -> String {
    df.stages
        .get(index)
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| format!("stage-{index}"))
}

/// BuildKit `validateCircularDependency`.
fn check_cycles(df: &Dockerfile, graphs: &[StageGraph]) -> Result<(), ResolveError> {
    fn edges(graph: &StageGraph) -> impl Iterator<Item = usize> + '_ {
        let base = match graph.base {
            Source::Stage(i) => Some(i),
            _ => None,
        };
        base.into_iter()
            .chain(graph.deps.iter().filter_map(|d| match d.source {
                Source::Stage(i) => Some(i),
                _ => None,
            }))
    }
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; graphs.len()];
    for start in 0..graphs.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(start, edges(&graphs[start]).collect())];
        state[start] = 1;
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) if next < graphs.len() => match state[next] {
                    1 => {
                        let line = df.stages.get(next).map_or(0, |s| s.base.line);
                        return Err(at(
                            line,
                            format!(
                                "circular dependency detected on stage: {}; a stage cannot use itself through FROM, COPY --from or RUN --mount",
                                stage_label(df, next)
                            ),
                        ));
                    }
                    0 => {
                        state[next] = 1;
                        stack.push((next, edges(&graphs[next]).collect()));
                    }
                    _ => {}
                },
                Some(_) => {}
                None => {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    Ok(())
}

fn mark_reachable(start: usize, graphs: &[StageGraph], seen: &mut BTreeSet<usize>) {
    let mut todo = vec![start];
    while let Some(index) = todo.pop() {
        let Some(graph) = graphs.get(index) else {
            continue;
        };
        if !seen.insert(index) {
            continue;
        }
        if let Source::Stage(base) = graph.base {
            todo.push(base);
        }
        todo.extend(graph.deps.iter().filter_map(|d| match d.source {
            Source::Stage(i) => Some(i),
            _ => None,
        }));
    }
}

/// Every external image the `stages` use, in order.
fn collect_uses(graphs: &[StageGraph], stages: impl Iterator<Item = usize>) -> Vec<ImageUse> {
    let mut images: Vec<ImageUse> = Vec::new();
    for index in stages {
        let Some(graph) = graphs.get(index) else {
            continue;
        };
        let uses = std::iter::once((&graph.base, graph.from_line, UseKind::From))
            .chain(graph.deps.iter().map(|d| (&d.source, d.line, d.kind)));
        for (source, line, kind) in uses {
            if let Source::Image {
                written, reference, ..
            } = source
            {
                images.push(ImageUse {
                    reference: reference.clone(),
                    written: written.clone(),
                    line,
                    kind,
                    stage: index,
                    platform: if kind == UseKind::From {
                        graph.platform.clone()
                    } else {
                        None
                    },
                });
            }
        }
    }
    images
}

/// The first use of each reference.
fn first_uses(uses: Vec<ImageUse>) -> Vec<ImageUse> {
    let mut seen = BTreeSet::new();
    uses.into_iter()
        .filter(|u| seen.insert(u.reference.to_string()))
        .collect()
}

fn frontend(df: &Dockerfile) -> Result<Option<ImageUse>, ResolveError> {
    let Some(syntax) = &df.directives.syntax else {
        return Ok(None);
    };
    let image = syntax.value.split(' ').next().unwrap_or_default();
    let Source::Image {
        written, reference, ..
    } = parse_image(image, syntax.line, "# syntax=")?
    else {
        return Ok(None);
    };
    Ok(Some(ImageUse {
        reference,
        written,
        line: syntax.line,
        kind: UseKind::Frontend,
        stage: 0,
        platform: None,
    }))
}

fn image_findings(graph: &StageGraph, findings: &mut Vec<Finding>) {
    let uses = std::iter::once((&graph.base, graph.from_line))
        .chain(graph.deps.iter().map(|d| (&d.source, d.line)));
    for (source, line) in uses {
        let Source::Image {
            written,
            reference,
            implicit_tag,
        } = source
        else {
            continue;
        };
        if let Some(name) = reference.path.strip_prefix("library/")
            && !name.contains('/')
            && reference.domain != "docker.io"
            && !reference.domain.is_empty()
        {
            let mut hub = name.to_string();
            if let Some(tag) = &reference.tag {
                hub.push(':');
                hub.push_str(tag);
            }
            if let Some(digest) = &reference.digest {
                hub.push('@');
                hub.push_str(digest);
            }
            findings.push(Finding {
                code: FindingCode::MirrorPrefix,
                subject: Subject::Image(written.clone()),
                line,
                message: format!(
                    "`{written}` hard-codes the registry mirror {} for the Docker Hub image `{hub}`; builds elsewhere (and the offline side) look for an image by that mirror's name",
                    reference.domain
                ),
                fix: format!(
                    "write `{hub}` and configure the mirror as `registry-mirrors` in the Docker daemon's daemon.json instead"
                ),
            });
        }
        if reference.digest.is_none()
            && (*implicit_tag || reference.tag.as_deref() == Some("latest"))
        {
            findings.push(Finding {
                code: FindingCode::Unpinned,
                subject: Subject::Image(written.clone()),
                line,
                message: format!(
                    "`{written}` is not pinned ({}); what it resolves to changes over time, so the bundle and a later rebuild may disagree",
                    if *implicit_tag { "no tag, so `latest`" } else { "`latest`" }
                ),
                fix: format!(
                    "pin a version tag, ideally with its digest, e.g. `{}:<version>@sha256:<digest>`",
                    reference.familiar().split(':').next().unwrap_or_default()
                ),
            });
        }
    }
}

fn run_step(stage: usize, instruction: &Instruction, findings: &mut Vec<Finding>) -> RunStep {
    let command = instruction.args.join(" ");
    let heredocs: Vec<String> = instruction
        .heredocs
        .iter()
        .map(|h| h.content.clone())
        .collect();
    let mut analysis = if instruction.json {
        run::analyze_exec(&instruction.args)
    } else {
        run::analyze_script(&command)
    };
    // A heredoc is the script when the command only feeds it to a shell (`RUN <<EOF`,
    // `RUN bash <<EOF`); other heredocs are data (`RUN python3 <<EOF`).
    let non_heredoc_words: Vec<&str> = command
        .split_whitespace()
        .filter(|w| !w.contains("<<") && !w.starts_with('-'))
        .collect();
    let heredoc_is_script = !instruction.json
        && (non_heredoc_words.is_empty()
            || (non_heredoc_words.len() == 1 && run::is_shell(non_heredoc_words[0])));
    if heredoc_is_script {
        for body in &heredocs {
            let more = run::analyze_script(body);
            analysis.installs.extend(more.installs);
            analysis.network.extend(more.network);
        }
    }
    let mut commands: Vec<String> = Vec::new();
    let mut hints: Vec<&str> = Vec::new();
    for network in &analysis.network {
        let what = format!("`{}`", network.what);
        if !commands.contains(&what) {
            commands.push(what);
        }
        if !network.hint.is_empty() && !hints.contains(&network.hint) {
            hints.push(network.hint);
        }
    }
    if !commands.is_empty() {
        // The general advice follows the specific hints as an alternative, and must read as a
        // sentence on its own when there are none (`yarn dlx` has no specific advice).
        let general = "move the step into a base image built on the networked side and carried in the bundle, or leave it and everything before it unchanged so the cached layer is reused";
        let fix = if hints.is_empty() {
            general.to_string()
        } else {
            format!("{}; or {general}", hints.join("; "))
        };
        findings.push(Finding {
            code: FindingCode::NetworkRun,
            subject: Subject::Run,
            line: instruction.line,
            message: format!(
                "RUN needs the network ({}), which offpack cannot serve offline: this step works offline only if its layer is reused from cache",
                commands.join(", ")
            ),
            fix,
        });
    }
    RunStep {
        stage,
        line: instruction.line,
        command,
        heredocs,
        installs: analysis.installs,
    }
}

fn copy_step(
    stage: usize,
    instruction: &Instruction,
    findings: &mut Vec<Finding>,
) -> Option<CopySources> {
    let (destination, sources) = instruction.args.split_last()?;
    let heredoc_names: Vec<&str> = instruction
        .heredocs
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    let sources: Vec<String> = sources
        .iter()
        .filter(|s| {
            !crate::parser::heredoc_from_word(s)
                .ok()
                .flatten()
                .is_some_and(|h| heredoc_names.contains(&h.name.as_str()))
        })
        .cloned()
        .collect();
    if instruction.keyword == "ADD" {
        for source in &sources {
            if let Some(kind) = remote_source_kind(source) {
                findings.push(Finding {
                    code: FindingCode::RemoteAdd,
                    subject: Subject::AddSource(source.clone()),
                    line: instruction.line,
                    message: format!("ADD {source} downloads {kind} at build time, which fails offline"),
                    fix: "download it on the networked side into the build context and COPY it instead".into(),
                });
            }
        }
    }
    Some(CopySources {
        stage,
        line: instruction.line,
        keyword: instruction.keyword.clone(),
        from: instruction
            .flag("from")
            .filter(|f| !f.is_empty())
            .map(str::to_string),
        sources,
        destination: destination.clone(),
    })
}

/// `ADD` sources BuildKit fetches from the network: URLs and Git repositories.
fn remote_source_kind(source: &str) -> Option<&'static str> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("git@") || lower.starts_with("git://") || lower.starts_with("ssh://") {
        return Some("a Git repository");
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let path = lower.split(['#', '?']).next().unwrap_or_default();
        if path.ends_with(".git") || lower.contains(".git#") {
            return Some("a Git repository");
        }
        return Some("a URL");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn resolve_with(
        src: &str,
        target: Option<&str>,
        args: &[(&str, &str)],
    ) -> Result<Resolved, ResolveError> {
        let df = parse(src).unwrap_or_else(|e| panic!("{e}"));
        let build_args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(
            &df,
            &ResolveOptions {
                target,
                build_args: &build_args,
                target_platform: "linux/amd64",
                build_platform: "linux/amd64",
            },
        )
    }

    fn ok(src: &str) -> Resolved {
        resolve_with(src, None, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refs(images: &[ImageUse]) -> Vec<String> {
        images.iter().map(|i| i.reference.to_string()).collect()
    }

    fn codes(r: &Resolved) -> Vec<(&'static str, usize)> {
        r.findings
            .iter()
            .map(|f| (f.code.as_str(), f.line))
            .collect()
    }

    const MULTI: &str = "\
ARG NODE=18
FROM node:${NODE}-alpine AS deps
RUN npm ci
FROM python:3.12-slim AS Backend
COPY requirements.txt .
RUN pip install -r requirements.txt
FROM golang:1.22 AS tools
FROM deps AS web
COPY --from=Backend /app /app
";

    #[test]
    fn target_reachability_skips_unused_stages() {
        let r = ok(MULTI);
        assert_eq!(r.target_stage, 3);
        assert_eq!(r.stages_needed, [0, 1, 3]);
        assert_eq!(
            refs(&r.images),
            [
                "docker.io/library/node:18-alpine",
                "docker.io/library/python:3.12-slim"
            ]
        );
        assert_eq!(r.images[0].written, "node:18-alpine");
        assert_eq!((r.images[0].line, r.images[0].kind), (2, UseKind::From));
        assert_eq!(
            r.classic_builder_images.len(),
            3,
            "the classic builder builds every stage up to the target"
        );

        let r = resolve_with(MULTI, Some("BACKEND"), &[("NODE", "20")]).unwrap();
        assert_eq!(r.stages_needed, [1]);
        assert_eq!(refs(&r.images), ["docker.io/library/python:3.12-slim"]);
        assert_eq!(r.run_steps.len(), 1);
        assert!(
            matches!(&r.run_steps[0].installs[0], PackageInstall::Pip { requirement_files, .. } if requirement_files == &["requirements.txt"])
        );
        assert_eq!(r.copy_sources[0].sources, ["requirements.txt"]);
        assert_eq!(r.copy_sources[0].destination, ".");
    }

    #[test]
    fn buildkit_features_follow_the_stages_each_builder_meets() {
        let src = "\
FROM python:3.11-slim AS base
RUN --mount=type=cache,target=/root/.cache pip install x
FROM base AS dev
RUN --mount=type=cache,target=/var/cache/apt apt-get install -y vim
COPY --link . /app
FROM base AS prod
COPY --chmod=755 run.sh /run.sh
FROM prod AS debug
RUN --mount=type=cache,target=/c true
RUN --network=none true
";
        let r = resolve_with(src, Some("prod"), &[]).unwrap();
        let lines = |features: &[BuildKitFeature]| -> Vec<(usize, &str)> {
            features.iter().map(|f| (f.line, f.feature)).collect()
        };
        assert_eq!(r.stages_needed, [0, 2]);
        assert_eq!(
            lines(&r.buildkit_features),
            [(2, "RUN --mount"), (7, "COPY --chmod")]
        );
        assert_eq!(
            lines(&r.classic_builder_features),
            [
                (2, "RUN --mount"),
                (4, "RUN --mount"),
                (5, "COPY --link"),
                (7, "COPY --chmod"),
                (10, "RUN --network")
            ],
            "dev is built by the classic builder; debug's --mount is never run, its --network never parses"
        );
        assert_eq!(
            lines(&r.frontend_features),
            [(5, "COPY --link"), (10, "RUN --network")]
        );
        assert!(ok("FROM alpine:3\nRUN true\n").buildkit_features.is_empty());
    }

    #[test]
    fn build_args_override_global_defaults() {
        let r = resolve_with(MULTI, Some("deps"), &[("NODE", "20")]).unwrap();
        assert_eq!(refs(&r.images), ["docker.io/library/node:20-alpine"]);
    }

    #[test]
    fn unknown_target_lists_stage_names() {
        let e = resolve_with(MULTI, Some("frontend"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "target stage \"frontend\" could not be found; stages in this Dockerfile: deps, backend, tools, web"
        );
    }

    #[test]
    fn expansion_rules_in_from() {
        let src = "\
ARG REGISTRY
ARG IMAGE=${REGISTRY:+$REGISTRY/}app
ARG TAG
FROM ${IMAGE}:${TAG:-1.0}
";
        assert_eq!(refs(&ok(src).images), ["docker.io/library/app:1.0"]);
        let r = resolve_with(src, None, &[("REGISTRY", "reg.local:5000"), ("TAG", "2")]).unwrap();
        assert_eq!(refs(&r.images), ["reg.local:5000/app:2"]);
        let e = resolve_with("ARG V\nFROM ${V:?required}\n", None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: FROM ${V:?required}: failed to process \"${V:?required}\": V: required"
        );
        let e = resolve_with("ARG V\nFROM $V\n", None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: base name ($V) should not be blank")
        );
    }

    #[test]
    fn stage_args_are_not_visible_in_from() {
        let e = resolve_with("FROM alpine\nARG X=node\nFROM $X\n", None, &[]).unwrap_err();
        assert!(e.to_string().contains("should not be blank"));
        // A build arg only reaches FROM through a global ARG declaration.
        let e = resolve_with(
            "FROM alpine\nARG X=node\nFROM alpine:$X\n",
            None,
            &[("X", "3")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"alpine:\""), "{e}");
    }

    #[test]
    fn platform_args() {
        let src = "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM alpine:3.19-$TARGETARCH${TARGETVARIANT:+-$TARGETVARIANT}\nCOPY --from=build /x /x\n";
        let df = parse(src).unwrap();
        let args = BTreeMap::new();
        let r = resolve(
            &df,
            &ResolveOptions {
                target: None,
                build_args: &args,
                target_platform: "linux/arm/v7",
                build_platform: "linux/x86_64",
            },
        )
        .unwrap();
        assert_eq!(
            refs(&r.images),
            [
                "docker.io/library/golang:1.22",
                "docker.io/library/alpine:3.19-arm-v7"
            ]
        );
        assert_eq!(r.images[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(r.images[1].platform, None);
        let e = resolve_with("FROM --platform=$NOPE alpine\n", None, &[]).unwrap_err();
        assert!(e.to_string().contains("empty platform value"));
    }

    #[test]
    fn scratch_stage_refs_and_case_rules() {
        let r = ok("FROM scratch AS base\nFROM base\nCOPY --from=scratch / /\nCOPY --from= a b\n");
        assert_eq!(
            r.copy_sources[1].from, None,
            "an empty --from is the build context"
        );
        assert!(r.images.is_empty());
        assert_eq!(r.stages_needed, [0, 1]);
        // FROM matches stage names exactly; an uppercase operand is an (invalid) image.
        let e = resolve_with("FROM alpine AS builder\nFROM Builder\n", None, &[]).unwrap_err();
        assert!(e.to_string().contains("must be lowercase"), "{e}");
        // A stage name used before it is defined is an image.
        let r = ok("FROM later\nFROM alpine AS later\nFROM alpine\n");
        assert_eq!(r.stages_needed, [2]);
        let r = resolve_with("FROM later\nFROM alpine AS later\n", Some("later"), &[]).unwrap();
        assert_eq!(r.stages_needed, [1]);
    }

    #[test]
    fn copy_from_index_name_and_image() {
        let src = "\
FROM golang:1.22 AS build
FROM alpine:3.19
COPY --from=0 /bin/app /app
COPY --from=BUILD /x /x
COPY --from=nginx:1.25 /etc/nginx/nginx.conf /etc/nginx/
RUN --mount=type=cache,target=/root/.cache --mount=type=bind,from=busybox:1.36,source=/bin,target=/b true
";
        let r = ok(src);
        assert_eq!(r.stages_needed, [0, 1]);
        assert_eq!(
            refs(&r.images),
            [
                "docker.io/library/golang:1.22",
                "docker.io/library/alpine:3.19",
                "docker.io/library/nginx:1.25",
                "docker.io/library/busybox:1.36"
            ]
        );
        assert_eq!((r.images[2].kind, r.images[2].line), (UseKind::CopyFrom, 5));
        assert_eq!(
            (r.images[3].kind, r.images[3].line),
            (UseKind::MountFrom, 6)
        );
        assert_eq!(r.copy_sources[2].from.as_deref(), Some("nginx:1.25"));
    }

    #[test]
    fn onbuild_triggers_of_a_base_stage_add_dependencies() {
        let src = "\
FROM golang:1.22 AS tools
FROM alpine:3.19 AS base
ONBUILD COPY --from=tools /go/bin /usr/local/bin
ONBUILD RUN --mount=from=busybox:1.36,target=/b true
FROM base
";
        let r = ok(src);
        assert_eq!(r.stages_needed, [0, 1, 2]);
        assert_eq!(
            refs(&r.images),
            [
                "docker.io/library/golang:1.22",
                "docker.io/library/alpine:3.19",
                "docker.io/library/busybox:1.36"
            ]
        );
        assert_eq!(r.images[2].line, 4);
        let r = resolve_with(src, Some("base"), &[]).unwrap();
        assert_eq!(
            r.stages_needed,
            [1],
            "triggers do not run in the stage that declares them"
        );
    }

    #[test]
    fn mount_from_stage_makes_it_needed() {
        let r = ok(
            "FROM alpine AS assets\nFROM python:3.12\nRUN --mount=type=bind,from=assets,target=/a \"--mount=type=cache,target=/c\" ls\n",
        );
        assert_eq!(r.stages_needed, [0, 1]);
    }

    #[test]
    fn from_errors() {
        let e = resolve_with("FROM alpine\nCOPY --from=$X a b\n", None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: --from=$X: variable expansion is not supported")
        );
        let e = resolve_with("FROM alpine\nCOPY --from=3 a b\n", None, &[]).unwrap_err();
        assert!(e.to_string().starts_with("line 2: invalid stage index 3"));
        let e = resolve_with("FROM alpine\nCOPY --from=-1 a b\n", None, &[]).unwrap_err();
        assert!(e.to_string().contains("invalid stage index -1"));
        let e = resolve_with(
            "FROM alpine\nRUN --mount=from=$X,target=/x true\n",
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("doesn't support variable expansion"));
        let e = resolve_with("FROM alpine\nRUN --mount=type=nfs true\n", None, &[]).unwrap_err();
        assert!(e.to_string().contains("unsupported mount type"));
        let e = resolve_with(
            "FROM alpine\nRUN --mount=type=bind,from=a\\\"b,target=/x true\n",
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("csv"));
        let e = resolve_with(
            "FROM alpine AS a\nCOPY --from=b x y\nFROM alpine AS b\nCOPY --from=a x y\n",
            None,
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("circular dependency detected on stage"),
            "{e}"
        );
        let e = resolve_with("FROM alpine\nCOPY --from=0 x y\n", None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("circular dependency detected on stage: stage-0")
        );
    }

    #[test]
    fn invalid_reference_names_line_and_reference_even_in_unused_stage() {
        let e = resolve_with("FROM Alpine:3 AS unused\nFROM alpine\n", None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: FROM names \"Alpine:3\", which is not a valid image reference (repository name must be lowercase); fix the reference or the build arg that produces it"
        );
        let e = resolve_with("FROM alpine\nCOPY --from=bad@@ref a b\n", None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: COPY --from names \"bad@@ref\"")
        );
    }

    #[test]
    fn frontend_image_and_finding() {
        let r = ok("# syntax=docker/dockerfile:1.7 opt=1\nFROM alpine:3.19\n");
        let frontend = r.frontend.as_ref().unwrap();
        assert_eq!(
            frontend.reference.to_string(),
            "docker.io/docker/dockerfile:1.7"
        );
        assert_eq!(frontend.kind, UseKind::Frontend);
        assert_eq!(codes(&r), [("OP004", 1)]);
        assert!(!refs(&r.images).contains(&frontend.reference.to_string()));
        let e = resolve_with("# syntax=Bad/Frontend\nFROM alpine:3\n", None, &[]).unwrap_err();
        assert!(e.to_string().starts_with("line 1: # syntax= names"));
    }

    #[test]
    fn network_run_fix_reads_as_a_sentence_with_or_without_specific_advice() {
        let r = ok("FROM node:18.20\nRUN yarn dlx create-vite app\nRUN apt-get update\n");
        assert_eq!(codes(&r), [("OP003", 2), ("OP003", 3)]);
        assert!(
            r.findings[0]
                .fix
                .starts_with("move the step into a base image"),
            "{}",
            r.findings[0].fix
        );
        assert!(
            r.findings[1].fix.contains("mirrors); or move the step"),
            "{}",
            r.findings[1].fix
        );
    }

    #[test]
    fn mirror_prefix_finding() {
        let r = ok(
            "FROM mirror.gcr.io/library/node:18\nCOPY --from=registry.example.com:5000/library/busybox:1.36 /bin/sh /sh\n",
        );
        let mirror: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.code == FindingCode::MirrorPrefix)
            .collect();
        assert_eq!(mirror.len(), 2);
        assert_eq!(mirror[0].line, 1);
        assert!(mirror[0].fix.starts_with("write `node:18`"));
        assert!(mirror[0].fix.contains("registry-mirrors"));
        assert_eq!(mirror[1].line, 2);
        let r = ok(
            "FROM docker.io/library/node:18\nFROM ghcr.io/library-org/x:1\nFROM ghcr.io/me/library/x:1\n",
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn unpinned_base_finding() {
        let digest = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";
        let r = ok(&format!(
            "FROM node\nFROM redis:latest\nFROM alpine@{digest}\nFROM node:18\n"
        ));
        assert_eq!(r.stages_needed, [3]);
        let r = resolve_with(&format!("FROM node AS a\nFROM redis:latest AS b\nFROM alpine@{digest} AS c\nFROM node:18\nCOPY --from=a / /\nCOPY --from=b / /\nCOPY --from=c / /\n"), None, &[]).unwrap();
        assert_eq!(codes(&r), [("OP002", 1), ("OP002", 2)]);
        assert!(r.findings[0].message.contains("no tag"));
    }

    #[test]
    fn network_run_finding_with_heredoc() {
        let src = "\
FROM debian:12
RUN apt-get update && apt-get install -y curl
RUN <<EOF
set -e
git clone https://example.com/x.git
pip install -r requirements.txt
EOF
RUN python3 <<EOF
print('curl is only a word here')
EOF
RUN [\"npm\", \"ci\"]
";
        let r = ok(src);
        assert_eq!(codes(&r), [("OP003", 2), ("OP003", 3)]);
        assert!(
            r.findings[0]
                .message
                .contains("(`apt-get update`, `apt-get install`)")
        );
        assert!(
            r.findings[0]
                .fix
                .starts_with("install the OS packages in a base image")
        );
        assert!(
            r.findings[0]
                .message
                .contains("works offline only if its layer is reused from cache")
        );
        assert_eq!(r.run_steps.len(), 4);
        assert_eq!(
            r.run_steps[1].installs.len(),
            1,
            "pip inside the heredoc script is found"
        );
        assert!(r.run_steps[2].installs.is_empty());
        assert_eq!(
            r.run_steps[3].installs,
            [PackageInstall::Npm {
                tool: "npm".into(),
                command: "ci".into()
            }]
        );
        assert_eq!(r.run_steps[3].command, "npm ci");
    }

    #[test]
    fn add_url_finding_and_heredoc_sources() {
        let r = ok(
            "FROM alpine:3\nADD https://example.com/a.tgz /a/\nADD git@github.com:me/repo.git /src\nADD https://github.com/moby/buildkit.git#v0.12 /bk\nCOPY <<EOF ./local /dst/\nx\nEOF\n",
        );
        assert_eq!(codes(&r), [("OP005", 2), ("OP005", 3), ("OP005", 4)]);
        assert!(r.findings[0].message.contains("a URL"));
        assert!(r.findings[1].message.contains("Git"));
        assert!(r.findings[2].message.contains("Git"));
        assert_eq!(r.copy_sources[3].sources, ["./local"]);
    }

    #[test]
    fn findings_only_for_needed_stages() {
        let r =
            ok("FROM alpine AS unused\nRUN apk add git\nADD https://x/y /y\nFROM alpine:3.19\n");
        assert!(
            r.findings.iter().all(|f| f.line == 0 || f.line > 3),
            "{:?}",
            r.findings
        );
        assert_eq!(codes(&r), Vec::<(&str, usize)>::new());
    }

    #[test]
    fn no_stages_is_an_error() {
        let df = parse("ARG X=1\n").unwrap();
        let args = BTreeMap::new();
        let opts = ResolveOptions {
            target: None,
            build_args: &args,
            target_platform: "linux/amd64",
            build_platform: "linux/amd64",
        };
        assert_eq!(resolve(&df, &opts).unwrap_err(), ResolveError::NoStages);
    }

    #[test]
    fn csv_fields_like_go() {
        assert_eq!(
            csv_fields("a=1,\"b=2,3\",c").unwrap(),
            ["a=1", "b=2,3", "c"]
        );
        assert_eq!(csv_fields("").unwrap(), [""]);
        assert!(csv_fields("a\"b").is_err());
    }
}
