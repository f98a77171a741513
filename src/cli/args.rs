use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ops::builder::BuilderChoice;
use crate::ops::bundle::BundleRequest;
use crate::ops::pull_policy::PullPolicy;
use crate::ops::push::{Compression, PushRequest};
use crate::ops::rebuild::RebuildRequest;
use crate::ops::serve_registry::RegistryServeRequest;
use crate::project::ProjectOptions;

/// Carry a Docker Compose project across an air gap and keep it rebuildable there.
///
/// On the networked side: `offpack plan` shows what the project needs, `offpack bundle -o shop.offpack`
/// writes it into one checksummed file, `offpack verify shop.offpack` checks it before it leaves.
/// On the air-gapped side: `offpack verify`, `offpack load shop.offpack`, `offpack rebuild backend`,
/// then `docker compose up -d` starts the project without pulling anything.
#[derive(Debug, Parser)]
#[command(
    name = "offpack",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Print the result as one JSON document on stdout (progress events go to stderr as JSON lines).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print no progress, only the result and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the far side will need: every image, the Dockerfile stages and base images of
    /// each built service, and the mistakes that break builds offline. Reads files only.
    Plan(PlanArgs),
    /// Write the compose project's images into one checksummed bundle file (networked side).
    /// Pulls missing images and builds services whose image is missing, then streams the
    /// engine's image export into the bundle. Also writes `<bundle>.sha256`.
    Bundle(BundleArgs),
    /// Check every byte of a bundle: its checksum file, each blob's digest, the index and the manifest.
    /// Exits 1 when anything is corrupt, naming what.
    Verify(VerifyArgs),
    /// Show what a bundle holds (project, images, sizes) without reading it all.
    Inspect(InspectArgs),
    /// Load a bundle's images into the engine (air-gapped side), skipping those already present.
    ///
    /// The bundle's index, metadata and signature are checked before the engine is asked anything,
    /// every blob as it streams, and the .sha256 file beside it alongside: a bundle that fails a
    /// check loads nothing and retags nothing.
    Load(LoadArgs),
    /// Rebuild a service's image from its Dockerfile using the loaded images as cache, without any
    /// registry, and tag it the way docker compose names it so that `docker compose up` uses it.
    Rebuild(RebuildArgs),
    /// Make a key pair for signing bundles: NAME.key (keep it secret) and NAME.pub (give it to the far side).
    Keygen(KeygenArgs),
    /// Print the images and layers this engine holds, as JSON, for `offpack bundle --have`
    /// on the networked side: `offpack inventory > have.json`.
    Inventory(InventoryArgs),
    /// Show what this machine's Docker Engine supports (version, API, storage, builders, registries).
    Doctor(DoctorArgs),
    /// Serve a bundle's Python wheels and npm tarballs (or, without BUNDLE, those `load` put in
    /// the package store) as a pip index and an npm registry over plain HTTP, until stopped
    /// (Ctrl-C, SIGTERM). Read-only. With --registry: the bundle's images, as a registry
    /// (`docker pull 127.0.0.1:5000/library/python:3.11-slim`, or a registry mirror).
    Serve(ServeArgs),
    /// Push a bundle's images into a registry (e.g. the site's, behind the gap), blob by blob
    /// from the bundle, no engine needed: names are rewritten under HOST[:PORT][/PREFIX], the
    /// mapping and the registry-mirror / hosts.toml settings are printed. A second run sends
    /// only what the registry lacks.
    Push(PushArgs),
}

/// Where the compose project is, with the same options as `docker compose`.
#[derive(Debug, Clone, Args, Default)]
pub struct ProjectArgs {
    /// Compose file (repeatable; later files override earlier ones). Default: compose.yaml,
    /// compose.yml, docker-compose.yaml or docker-compose.yml, plus its override file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project directory (default: the directory of the first compose file).
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the top-level `name:`, or the directory name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Environment file instead of `.env` (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Activate a profile (repeatable; also COMPOSE_PROFILES).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

impl ProjectArgs {
    /// The options as the project loader takes them.
    pub fn options(&self) -> ProjectOptions {
        ProjectOptions {
            files: self.files.clone(),
            project_directory: self.project_directory.clone(),
            project_name: self.project_name.clone(),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The builder to plan for: BuildKit builds only the stages a target reaches, the classic
    /// builder every stage up to it, so they need different images. `plan` does not contact the
    /// engine, so `auto` plans for BuildKit (what Docker ≥ 20.10 on Linux has).
    #[arg(long, value_enum, default_value_t = BuilderChoice::Auto)]
    pub builder: BuilderChoice,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Bundle file to write (written atomically: nothing appears there unless the bundle is complete).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace an existing file at the output path (or at its `.sha256` or parts) that is not an
    /// offpack bundle. Never needed to replace an earlier bundle; never allowed for the project's
    /// own files, keys or inventory, nor for anything but a regular file.
    #[arg(long)]
    pub force: bool,
    /// When to pull images of the plan.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Build every built service first, even if its image exists.
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Do not build services; their images are bundled only if the engine already has them.
    #[arg(long)]
    pub no_build: bool,
    /// Bundle images for this platform (repeatable), e.g. `linux/arm64`. Default: the engine's own.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Write only what the far side lacks: `have.json` from `offpack inventory` on the far side.
    #[arg(long, value_name = "HAVE_JSON")]
    pub have: Option<PathBuf>,
    /// Sign the bundle with this secret key (from `offpack keygen`); the far side checks it with
    /// `offpack verify --key KEY.pub`.
    #[arg(long, value_name = "KEY_FILE")]
    pub sign: Option<PathBuf>,
    /// Write the bundle in parts of at most SIZE (e.g. `4G`; FAT32 holds files up to 4 GiB − 1):
    /// FILE.001, FILE.002, … `cat` joins them; verify and load read the parts directly.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split: Option<u64>,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// The builder for the built services: `auto` is BuildKit when the engine has it, else the
    /// classic builder. A Dockerfile that needs BuildKit is never sent to the classic builder.
    #[arg(long, value_enum, default_value_t = BuilderChoice::Auto)]
    pub builder: BuilderChoice,
    /// Write the bundle even when the proof fails: rebuilding each built service the way the
    /// far side will must take every step from cache and give the same image. The failures
    /// are still reported.
    #[arg(long)]
    pub no_proof: bool,
    /// Also carry the packages of this requirements file or lock file (package-lock.json,
    /// npm-shrinkwrap.json, yarn.lock), for changes the far side plans to make; repeatable.
    /// A requirements file is resolved in the image of every service step that runs pip.
    #[arg(long = "packages", value_name = "FILE")]
    pub packages: Vec<PathBuf>,
    /// Write a bundle of packages only, those a far-side `offpack rebuild` found missing and
    /// wrote into REQUEST (`offpack-request.json`); no compose project is read. `offpack load`
    /// adds them on the far side.
    #[arg(long, value_name = "REQUEST", conflicts_with_all = ["packages", "have", "build", "no_build", "no_proof"])]
    pub packages_for: Option<PathBuf>,
    /// Take the images services run from their registries, not from the engine: the registry's
    /// manifests, index and compressed layers are carried byte for byte, so repository digests
    /// (and `x@sha256:…` references) stay valid behind the gap. Images builds use, and built
    /// images, still come from the engine. Credentials come from the Docker config.
    #[arg(long, conflicts_with = "have")]
    pub from_registry: bool,
    /// With --from-registry: trust the CA certificates of this PEM file too (besides the system's).
    #[arg(long, value_name = "PEM", requires = "from_registry")]
    pub registry_ca_file: Option<PathBuf>,
    /// With --from-registry: speak plain HTTP to this registry (HOST[:PORT]; repeatable).
    #[arg(long, value_name = "HOST", requires = "from_registry")]
    pub insecure_registry: Vec<String>,
}

impl BundleArgs {
    pub fn request(&self) -> BundleRequest {
        BundleRequest {
            project: self.project.options(),
            output: self.output.clone(),
            force: self.force,
            pull: self.pull,
            build: self.build,
            no_build: self.no_build,
            platforms: self.platforms.clone(),
            have: self.have.clone(),
            sign: self.sign.clone(),
            split: self.split,
            level: self.level,
            builder: self.builder,
            no_proof: self.no_proof,
            packages: self.packages.clone(),
            from_registry: self
                .from_registry
                .then(|| crate::fetch::registry::RegistryAccess {
                    ca_file: self.registry_ca_file.clone(),
                    insecure: self.insecure_registry.iter().cloned().collect(),
                }),
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle file (a split bundle: its base name or its first part).
    pub bundle: PathBuf,
    /// Also require a valid signature by this public key (from `offpack keygen`). Set
    /// OFFPACK_KEY once to make every `verify` and `load` on this machine require it.
    #[arg(long, value_name = "PUBLIC_KEY_FILE", env = "OFFPACK_KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Base name of the key files: writes NAME.key (secret, mode 0600) and NAME.pub.
    #[arg(short, long, value_name = "NAME")]
    pub output: PathBuf,
}

/// Sizes like `4G`, `500M`, `4GiB`, `1000000`.
fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a size like 4G, 500M or 4GiB: {e}"))?;
    let bytes = size.as_u64();
    if bytes < offpack_bundle::MIN_PART_SIZE {
        return Err(format!(
            "parts must be at least {} bytes",
            offpack_bundle::MIN_PART_SIZE
        ));
    }
    Ok(bytes)
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle file.
    pub bundle: PathBuf,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The bundle file (a split bundle: its base name or its first part).
    pub bundle: PathBuf,
    /// Load only a bundle validly signed by this public key (from `offpack keygen`); an unsigned
    /// bundle or another signer is refused before anything reaches the engine. Set OFFPACK_KEY
    /// once (e.g. in /etc/environment) to require this on every load of this machine.
    #[arg(long, value_name = "PUBLIC_KEY_FILE", env = "OFFPACK_KEY")]
    pub key: Option<PathBuf>,
    /// Load only the images these services need (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Load into containerd (a Kubernetes node's, or a standalone one) through its API instead
    /// of the Docker Engine: the blobs into its content store, each image unpacked into the
    /// snapshotter, a fully qualified name per tag (docker.io/library/redis:7) for the kubelet.
    #[arg(long)]
    pub containerd: bool,
    /// containerd's socket.
    #[arg(
        long,
        value_name = "SOCKET",
        default_value = "/run/containerd/containerd.sock",
        requires = "containerd"
    )]
    pub address: PathBuf,
    /// The containerd namespace the images go into (k8s.io is the kubelet's).
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "k8s.io",
        requires = "containerd"
    )]
    pub namespace: String,
    /// The snapshotter the images are unpacked into: the one the node's runtime uses.
    #[arg(
        long,
        value_name = "SNAPSHOTTER",
        default_value = "overlayfs",
        requires = "containerd"
    )]
    pub snapshotter: String,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The services to rebuild; none means every active service that has a `build:` section.
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Do not use any cache (needs every RUN step to work offline).
    #[arg(long)]
    pub no_cache: bool,
    /// The builder: `auto` is BuildKit when the engine has it, else the classic builder. A
    /// Dockerfile that needs BuildKit is never sent to the classic builder.
    #[arg(long, value_enum, default_value_t = BuilderChoice::Auto)]
    pub builder: BuilderChoice,
    /// Build only the services whose build inputs (Dockerfile, context, args, base images)
    /// changed since their image was built; say so for the others.
    #[arg(long)]
    pub changed: bool,
    /// Afterwards start the rebuilt services with docker compose (`up -d`, never building or
    /// pulling), with the same compose files, project name and profiles.
    #[arg(long)]
    pub up: bool,
    /// When a changed requirements or lock file needs packages no loaded bundle carries, the
    /// rebuild stops and writes here what `offpack bundle --packages-for` must carry.
    #[arg(long, value_name = "FILE", default_value = "offpack-request.json")]
    pub request_file: PathBuf,
}

impl RebuildArgs {
    pub fn request(&self) -> RebuildRequest {
        RebuildRequest {
            project: self.project.options(),
            services: self.services.clone(),
            no_cache: self.no_cache,
            builder: self.builder,
            changed: self.changed,
            up: self.up,
            request_file: self.request_file.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct InventoryArgs {}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check that the engine reaches this registry (repeatable), e.g. `127.0.0.1:5000` or `docker.io`.
    #[arg(long = "registry", value_name = "HOST[:PORT]")]
    pub registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The bundle whose packages to serve (checked first). Default: the package store,
    /// `$OFFPACK_HOME/packages` or `~/.local/share/offpack/packages`.
    pub bundle: Option<PathBuf>,
    /// The address to listen on (`0.0.0.0`: every interface, e.g. for build containers).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    pub host: std::net::IpAddr,
    /// The port to listen on; 0 picks a free one (printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Print `export PIP_INDEX_URL=…`, `export PIP_TRUSTED_HOST=…` and
    /// `export npm_config_registry=…` lines on stdout (for `eval`), the rest on stderr.
    #[arg(long)]
    pub print_env: bool,
    /// Serve only a bundle validly signed by this public key (from `offpack keygen`).
    #[arg(long, value_name = "PUBLIC_KEY_FILE", env = "OFFPACK_KEY")]
    pub key: Option<PathBuf>,
    /// Serve the bundle's images instead, read-only, as a registry (the OCI distribution API)
    /// that engines, containerd and skopeo pull from or use as a mirror.
    #[arg(long, requires = "bundle", conflicts_with_all = ["host", "port", "print_env"])]
    pub registry: bool,
    /// With --registry: the address to listen on (port 0: any free port). An address other than
    /// loopback lets every host that reaches it pull the bundle's images.
    #[arg(long, value_name = "HOST:PORT", requires = "registry", default_value = crate::ops::serve_registry::DEFAULT_ADDR)]
    pub addr: std::net::SocketAddr,
}

impl ServeArgs {
    /// The request of `serve --registry`; `None` without `--registry`.
    pub fn registry_request(&self) -> Option<RegistryServeRequest> {
        let bundle = self.bundle.clone().filter(|_| self.registry)?;
        Some(RegistryServeRequest {
            bundle,
            key: self.key.clone(),
            addr: self.addr,
        })
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The bundle file (a split bundle: its base name or its first part).
    pub bundle: PathBuf,
    /// The registry and an optional repository prefix: `HOST[:PORT][/PREFIX]`
    /// (`python:3.11-slim` goes to `HOST/PREFIX/library/python:3.11-slim`).
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]")]
    pub registry: String,
    /// Trust the CA certificates of this PEM file too (besides the system's CAs).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP to the registry (no TLS).
    #[arg(long)]
    pub insecure: bool,
    /// Layer compression in the registry: gzip (every engine pulls it), zstd (smaller; only
    /// when every puller accepts it), none.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// Also write the mapping (original name → pushed name and digest, mirror settings) to
    /// this JSON file.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Push only a bundle validly signed by this public key (from `offpack keygen`).
    #[arg(long, value_name = "PUBLIC_KEY_FILE", env = "OFFPACK_KEY")]
    pub key: Option<PathBuf>,
}

impl From<PushArgs> for PushRequest {
    fn from(args: PushArgs) -> PushRequest {
        PushRequest {
            bundle: args.bundle,
            key: args.key,
            registry: args.registry,
            ca_file: args.ca_file,
            insecure: args.insecure,
            compression: args.compression,
            mapping: args.mapping,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use offpack_dockerfile::Builder;

    use super::*;

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["offpack"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
    }

    #[test]
    fn builder_defaults_to_auto_and_reaches_each_request() {
        let Command::Plan(plan) = parse(&["plan"]) else {
            panic!("not plan")
        };
        assert_eq!(plan.builder, BuilderChoice::Auto);
        let Command::Bundle(bundle) = parse(&[
            "bundle",
            "-o",
            "x.offpack",
            "--builder",
            "classic",
            "--no-proof",
        ]) else {
            panic!("not bundle")
        };
        let request = bundle.request();
        assert_eq!(request.builder, BuilderChoice::Fixed(Builder::Classic));
        assert!(request.no_proof);
        let Command::Rebuild(rebuild) = parse(&[
            "rebuild",
            "--builder",
            "buildkit",
            "--changed",
            "--up",
            "web",
        ]) else {
            panic!("not rebuild")
        };
        let request = rebuild.request();
        assert_eq!(request.builder, BuilderChoice::Fixed(Builder::BuildKit));
        assert!(request.changed && request.up && !request.no_cache);
        assert_eq!(request.services, ["web"]);
        assert!(Cli::try_parse_from(["offpack", "plan", "--builder", "kaniko"]).is_err());
    }
}
