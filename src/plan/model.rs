//! The plan's data model: what `offpack plan --json` prints (schema in docs/plan-schema.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use offpack_dockerfile::{BuildKitFeature, Builder};
use serde::Serialize;

/// Version of the plan's JSON schema (see docs/plan-schema.md). Bumped on incompatible changes.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// Everything the far side needs for one compose project, and what will break offline.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// [`PLAN_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Compose project name (what built images are named after).
    pub project: String,
    /// Absolute project directory; every other path in the plan is relative to it when inside it.
    pub project_directory: PathBuf,
    /// Compose files read, in load order.
    pub compose_files: Vec<PathBuf>,
    /// The builder the plan is for: it decides which stages are built, so which images are needed.
    pub builder: Builder,
    /// Every service, active or not, sorted by name.
    pub services: Vec<ServicePlan>,
    /// Every image the active services need from outside the project, each once, sorted by
    /// reference. Images the project builds itself are not here.
    pub images: Vec<PlannedImage>,
    /// Offline lints, sorted by service, file, line and code.
    pub findings: Vec<PlanFinding>,
    /// What compose itself would warn about while loading the project.
    pub warnings: Vec<String>,
}

/// How compose gets a service's image on `up`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Acquire {
    /// Pulled from a registry when missing: the bundle carries it.
    Pull,
    /// Built from the service's `build:` (or from another service's build of the same image).
    Build,
    /// `pull_policy: never` without `build:`: must already be in the engine; never pulled.
    Local,
}

/// One service of the project.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub name: String,
    /// Selected by the profiles, or required by a selected service.
    pub active: bool,
    /// `profiles:` of the service.
    pub profiles: Vec<String>,
    /// The image the service runs: its `image:` or, for a built service, `<project>-<service>`.
    pub image: String,
    /// Whether `image` was written in the compose file (else it is compose's default name).
    pub image_from_compose: bool,
    /// How compose gets `image`.
    pub acquire: Acquire,
    /// The service whose build produces `image` when it is not this one's (`image:` shared with a built service).
    pub built_by: Option<String>,
    /// `platform:` as written.
    pub platform: Option<String>,
    /// Platforms the plan resolved images for: `platform:`, else `build.platforms`, else the default.
    pub platforms: Vec<String>,
    /// `pull_policy:` (compose's spelling: `if_not_present` is `missing`).
    pub pull_policy: Option<String>,
    pub build: Option<BuildPlan>,
}

/// A service's build, as the plan's builder will run it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    /// The builder that will build it.
    pub builder: Builder,
    /// BuildKit-only features the classic builder would meet building the target (every stage up
    /// to it, and what its parser rejects anywhere in the file): why the build needs BuildKit.
    /// Empty when the classic builder can build it too. The same whichever builder is planned.
    pub needs_buildkit: Vec<BuildKitFeature>,
    /// Local context directory, or the remote context as written.
    pub context: String,
    /// Dockerfile path, or `(dockerfile_inline)`.
    pub dockerfile: String,
    pub target: Option<String>,
    /// `build.platforms` as written.
    pub platforms: Vec<String>,
    /// Build args passed to the build (compose's, after interpolation).
    pub build_args: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    /// `additional_contexts` (named build contexts): name → local path, `docker-image://ref`, ….
    pub additional_contexts: BTreeMap<String, String>,
    /// `ssh` ids the build uses (noted, never copied).
    pub ssh: Vec<String>,
    /// Build secret names (noted, never copied).
    pub secrets: Vec<String>,
    /// Stages the target needs, in file order (name, or index when unnamed).
    pub stages: Vec<String>,
    /// External images the build needs, in file order (additional contexts last): those of the
    /// stages BuildKit builds, or under the classic builder those of every stage up to the target.
    pub images: Vec<ImageSource>,
    /// The `# syntax=` frontend image BuildKit needs.
    pub frontend: Option<ImageSource>,
    /// Package manifests and lockfiles in the context, sorted by path.
    pub package_files: Vec<PackageFile>,
    /// `RUN` steps that install Python/Node packages.
    pub install_steps: Vec<InstallStep>,
}

/// One use of an external image by a build.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSource {
    /// As Docker shows it (`node:18`).
    pub reference: String,
    /// As Docker resolves it: after build args were substituted (the additional context's value for `additional-context`).
    pub written: String,
    /// `from`, `copy-from`, `mount-from`, `frontend` or `additional-context`.
    pub kind: String,
    /// The Dockerfile (or, for `additional-context`, the compose file) naming it.
    pub file: String,
    /// 1-based line in `file` (0 when the compose file's line is not known).
    pub line: usize,
    /// Platforms it is needed for.
    pub platforms: Vec<String>,
    /// Other names the bundle carries the image under (the plain name of a mirror-prefixed one).
    pub aliases: Vec<String>,
    /// The active service whose build produces this image (then it is not pulled).
    pub built_by: Option<String>,
}

/// A package manifest or lockfile found in a build context.
#[derive(Debug, Clone, Serialize)]
pub struct PackageFile {
    /// Relative to the build context, `/`-separated.
    pub path: String,
    /// `pip` or `npm`.
    pub manager: String,
}

/// A `RUN` step that installs packages offpack can serve offline.
#[derive(Debug, Clone, Serialize)]
pub struct InstallStep {
    pub line: usize,
    pub command: String,
    /// What it installs, one entry per install command: `pip -r requirements.txt`, `npm ci`, ….
    pub installs: Vec<String>,
}

/// Why an image is in the plan; an image with several roles gets the first in this order.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ImageRole {
    /// A base or helper image of a build.
    Build,
    /// A service's own `image:` (pulled, not built).
    Service,
    /// The `# syntax=` frontend.
    Frontend,
}

/// One image to carry, with every service that needs it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    /// As Docker shows it (`node:18`, `ghcr.io/o/x:1`, `name@sha256:…`).
    pub reference: String,
    pub role: ImageRole,
    /// Other names the bundle must carry it under.
    pub aliases: BTreeSet<String>,
    /// Platforms it is needed for.
    pub platforms: BTreeSet<String>,
    /// Active services that need it.
    pub used_by: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Will break offline.
    Error,
    /// May break offline, or gives the far side something other than what was tested.
    Warning,
}

/// The rule a finding breaks: the Dockerfile's rules, then the plan's own. Each has a stable code
/// (`OP001`…) that is never reused (decision 0032) and is what the JSON shows; declared in code
/// order, so that sorting by the variant sorts by the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// A rule of the Dockerfile crate (`OP001`–`OP005`).
    Dockerfile(offpack_dockerfile::FindingCode),
    /// `OP006`: `cache_from` naming the image the service builds.
    CacheFromItself,
    /// `OP007`: a remote build context or additional context.
    RemoteContext,
    /// `OP008`: a `pull_policy` that makes `up` pull or rebuild a loaded image.
    PullPolicy,
    /// `OP009`: a Dockerfile or build context outside the project directory.
    OutsideProject,
    /// `OP010`: a BuildKit-only Dockerfile feature in a build planned for the classic builder.
    NeedsBuildKit,
    /// `OP011`: a Dockerfile feature the frontend built into Docker Engine 20.10 rejects, without
    /// a `# syntax=` line naming a newer one.
    NeedsNewerFrontend,
}

impl Code {
    /// `OP002` for an image: the plan adds the digest to pin to the Dockerfile crate's fix.
    pub const UNPINNED: Code = Code::Dockerfile(offpack_dockerfile::FindingCode::Unpinned);

    /// The stable code (`OP001`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Dockerfile(code) => code.as_str(),
            Code::CacheFromItself => "OP006",
            Code::RemoteContext => "OP007",
            Code::PullPolicy => "OP008",
            Code::OutsideProject => "OP009",
            Code::NeedsBuildKit => "OP010",
            Code::NeedsNewerFrontend => "OP011",
        }
    }

    /// How bad a finding of this rule is unless the case says otherwise (OP008 depends on the
    /// policy and on whether compose can fall back to building).
    pub fn default_severity(self) -> Severity {
        use offpack_dockerfile::FindingCode as Dockerfile;
        match self {
            Code::Dockerfile(Dockerfile::Unpinned | Dockerfile::NetworkRun) => Severity::Warning,
            Code::Dockerfile(
                Dockerfile::MirrorPrefix | Dockerfile::Frontend | Dockerfile::RemoteAdd,
            ) => Severity::Error,
            Code::CacheFromItself | Code::RemoteContext | Code::NeedsBuildKit => Severity::Error,
            Code::PullPolicy | Code::OutsideProject | Code::NeedsNewerFrontend => Severity::Warning,
        }
    }
}

impl From<offpack_dockerfile::FindingCode> for Code {
    fn from(code: offpack_dockerfile::FindingCode) -> Code {
        Code::Dockerfile(code)
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a finding is about, within its service and place: the key for telling findings apart
/// and for tying a finding to the image it names (never the message, which is for people).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A field of the service in its compose file (`image`, `pull_policy`, `build.context`,
    /// `build.dockerfile`), with the entry for a list or map field (`build.cache_from`,
    /// `build.additional_contexts`).
    ComposeField {
        field: &'static str,
        entry: Option<String>,
    },
    /// Something in the service's Dockerfile.
    Dockerfile(offpack_dockerfile::Subject),
    /// A BuildKit-only feature on the finding's line of the service's Dockerfile (`RUN --mount`).
    BuildKitFeature(&'static str),
}

impl Subject {
    /// A whole field of the service (`image`, `pull_policy`, …).
    pub fn field(field: &'static str) -> Subject {
        Subject::ComposeField { field, entry: None }
    }

    /// One entry of a list or map field of the service.
    pub fn entry(field: &'static str, entry: &str) -> Subject {
        Subject::ComposeField {
            field,
            entry: Some(entry.to_string()),
        }
    }

    /// An external image a Dockerfile uses, as Docker resolves it.
    pub fn dockerfile_image(written: &str) -> Subject {
        Subject::Dockerfile(offpack_dockerfile::Subject::Image(written.to_string()))
    }
}

/// One lint result.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFinding {
    /// The rule; shown as its stable code (`OP001`…).
    pub code: Code,
    /// What the finding is about; not in the JSON (the message says it for people).
    #[serde(skip)]
    pub subject: Subject,
    pub severity: Severity,
    pub service: String,
    /// Dockerfile or compose file at fault, relative to the project directory when inside it.
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

/// How a finding is laid out for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingLayout {
    /// One line, for the warnings `offpack bundle` prints: `OP002 compose.yaml:3: … (fix: …)`.
    Line,
    /// An indented entry of `offpack plan`'s findings list, with its severity and service, and
    /// the fix on a line of its own.
    ListEntry,
}

impl PlanFinding {
    /// The finding as people read it; the one place findings are formatted.
    pub fn render(&self, layout: FindingLayout) -> String {
        let place = match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{}:{line}", file.display()),
            (Some(file), None) => file.display().to_string(),
            (None, _) => match layout {
                FindingLayout::Line => format!("service {}", self.service),
                // The list names the service on every entry already.
                FindingLayout::ListEntry => "compose file".to_string(),
            },
        };
        let code = self.code.as_str();
        match layout {
            FindingLayout::Line => format!("{code} {place}: {} (fix: {})", self.message, self.fix),
            FindingLayout::ListEntry => {
                let severity = match self.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                format!(
                    "  {code} {severity} [{}] {place}: {}\n      fix: {}\n",
                    self.service, self.message, self.fix
                )
            }
        }
    }
}

/// One image a service needs, before services are merged into [`Plan::images`].
#[derive(Debug, Clone)]
pub struct NeededImage {
    pub reference: String,
    pub role: ImageRole,
    pub aliases: Vec<String>,
    pub platforms: Vec<String>,
}

impl ServicePlan {
    /// The images this service needs from outside the project: its `image:` when it is pulled
    /// (or taken from the engine), else the external images and frontend of its build.
    pub fn images_needed(&self) -> Vec<NeededImage> {
        match &self.build {
            None if self.acquire == Acquire::Build => Vec::new(),
            None => vec![NeededImage {
                reference: self.image.clone(),
                role: ImageRole::Service,
                aliases: Vec::new(),
                platforms: self.platforms.clone(),
            }],
            Some(build) => build
                .images
                .iter()
                .filter(|i| i.built_by.is_none())
                .map(|i| (i, ImageRole::Build))
                .chain(build.frontend.iter().map(|f| (f, ImageRole::Frontend)))
                .map(|(i, role)| NeededImage {
                    reference: i.reference.clone(),
                    role,
                    aliases: i.aliases.clone(),
                    platforms: i.platforms.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(file: Option<&str>, line: Option<usize>) -> PlanFinding {
        PlanFinding {
            code: Code::PullPolicy,
            subject: Subject::field("pull_policy"),
            severity: Severity::Error,
            service: "feed".into(),
            file: file.map(PathBuf::from),
            line,
            message: "it pulls".into(),
            fix: "set `pull_policy: missing`".into(),
        }
    }

    #[test]
    fn a_finding_renders_as_a_line_and_as_a_list_entry() {
        let at_line = finding(Some("compose.yaml"), Some(3));
        assert_eq!(
            at_line.render(FindingLayout::Line),
            "OP008 compose.yaml:3: it pulls (fix: set `pull_policy: missing`)"
        );
        assert_eq!(
            at_line.render(FindingLayout::ListEntry),
            "  OP008 error [feed] compose.yaml:3: it pulls\n      fix: set `pull_policy: missing`\n"
        );
        let nowhere = finding(None, None);
        assert!(
            nowhere
                .render(FindingLayout::Line)
                .starts_with("OP008 service feed: ")
        );
        assert!(
            nowhere
                .render(FindingLayout::ListEntry)
                .starts_with("  OP008 error [feed] compose file: ")
        );
    }

    #[test]
    fn codes_sort_and_serialize_as_their_stable_strings() {
        use offpack_dockerfile::FindingCode;
        let mut codes = [
            Code::OutsideProject,
            Code::NeedsNewerFrontend,
            Code::NeedsBuildKit,
            Code::CacheFromItself,
            Code::from(FindingCode::RemoteAdd),
            Code::from(FindingCode::MirrorPrefix),
            Code::PullPolicy,
            Code::UNPINNED,
        ];
        codes.sort();
        let strings: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings,
            [
                "OP001", "OP002", "OP005", "OP006", "OP008", "OP009", "OP010", "OP011"
            ]
        );
        assert_eq!(serde_json::to_string(&Code::UNPINNED).unwrap(), "\"OP002\"");
    }
}
