//! The build-inputs digest: one SHA-256 over everything that decides what a build of a service
//! produces, so that `rebuild --changed` can tell, without building, whether a service's image is
//! still what its inputs make, and the bundle can record what it built from.
//!
//! The canonical encoding is docs/decisions/0082-build-inputs-digest.md. It sees the build context
//! exactly as the builder does, through the walker that writes the context tar
//! ([`super::context::walk_context`]): the same `.dockerignore` rules and file set, each entry's
//! name, kind, permission bits, link target and content hash; never times, owners or the order a
//! directory lists its entries in, which differ between two copies of one project.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use offpack_bundle::Digest;
use offpack_dockerfile::Builder;
use sha2::{Digest as _, Sha256};

use super::context::{DockerfileInContext, EntryKind, permission_bits, walk_context};

/// The image label holding the build-inputs digest of the build that made the image.
pub const INPUTS_LABEL: &str = "dev.offpack.build-inputs";

/// What the encoding starts with; a new version changes every digest on purpose.
const DOMAIN: &[u8] = b"offpack-build-inputs/1";

/// Everything that decides what a build produces.
#[derive(Debug, Clone, Copy)]
pub struct BuildInputs<'a> {
    /// The builder that builds it.
    pub builder: Builder,
    /// The Dockerfile's bytes as the engine gets them (after `rewrite_pins`).
    pub dockerfile: &'a [u8],
    /// The build context directory.
    pub context_dir: &'a Path,
    /// The Dockerfile's name in the context (the walk leaves it out; its bytes are `dockerfile`).
    pub dockerfile_in_context: &'a DockerfileInContext,
    /// Build arguments (compose `build.args`, and offpack's own such as `BUILDKIT_INLINE_CACHE`).
    pub build_args: &'a BTreeMap<String, String>,
    /// Labels the build sets on the image (compose `build.labels`), without [`INPUTS_LABEL`]:
    /// they change the image ID as an argument does.
    pub labels: &'a BTreeMap<String, String>,
    /// `--target` stage.
    pub target: Option<&'a str>,
    /// Target platform (`linux/amd64`).
    pub platform: Option<&'a str>,
    /// `RUN` network mode (compose `build.network`).
    pub network: Option<&'a str>,
    /// Every external image the build uses (bases, `COPY --from`, `RUN --mount from=`, the
    /// `# syntax` frontend), reference as the Dockerfile resolves it → the image ID the engine has.
    pub images: &'a BTreeMap<String, Digest>,
}

/// The build-inputs digest of `inputs` (decision 0082). Files are hashed as they are read, never
/// held whole; an unreadable entry or a special file is an error naming it.
pub fn build_inputs_digest(inputs: &BuildInputs) -> Result<Digest> {
    let mut out = Encoder(Sha256::new());
    out.bytes(DOMAIN);

    out.field("builder");
    out.str(inputs.builder.as_str());

    out.field("dockerfile");
    out.str(&inputs.dockerfile_in_context.name);
    out.u32(inputs.dockerfile_in_context.mode(inputs.context_dir)?);
    out.bytes(&Sha256::digest(inputs.dockerfile));

    out.field("context");
    let mut buffer = vec![0u8; 64 * 1024];
    let mut counted = 0u64;
    walk_context(inputs.context_dir, inputs.dockerfile_in_context, |entry| {
        if is_offpack_output(&entry.name) {
            // A bundle written into (or copied next to) the project is no input of the build.
            return Ok(());
        }
        counted += 1;
        out.str(&entry.name);
        out.u32(permission_bits(&entry.metadata));
        match &entry.kind {
            EntryKind::Dir => out.str("dir"),
            EntryKind::Symlink(target) => {
                out.str("link");
                out.bytes(target.as_os_str().as_bytes());
            }
            EntryKind::File => {
                out.str("file");
                out.bytes(&file_sha256(entry.path, &mut buffer)?);
            }
        }
        Ok(())
    })?;
    out.u64(counted);

    out.field("args");
    out.map(inputs.build_args);
    out.field("labels");
    out.map(inputs.labels);
    out.field("target");
    out.option(inputs.target);
    out.field("platform");
    out.option(inputs.platform);
    out.field("network");
    out.option(inputs.network);

    out.field("images");
    out.u64(inputs.images.len() as u64);
    for (reference, id) in inputs.images {
        out.str(reference);
        out.str(&id.to_string());
    }

    let hex = hex::encode(out.0.finalize());
    Digest::from_hex(&hex).context("hashing the build inputs")
}

/// Whether the context entry `name` (`/`-separated) is one of offpack's own files: a bundle
/// (`*.offpack`, its parts `*.offpack.001`…, its `.sha256`) or a bundle writer's lock or temporary
/// file. Users write bundles into the project directory and carry them next to it; counting them
/// would make every bundle look like a change to `rebuild --changed`, and give a no-change rebuild
/// another inputs label, so another image ID.
fn is_offpack_output(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    let part_number = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    file.ends_with(".offpack")
        || file.ends_with(".offpack.sha256")
        || file.ends_with(".offpack-lock")
        || file
            .rsplit_once(".offpack.")
            .is_some_and(|(_, rest)| part_number(rest))
        || (file.starts_with('.')
            && (file.ends_with(".partial") || file.ends_with(".sha256-partial")))
}

fn file_sha256(path: &Path, buffer: &mut [u8]) -> Result<[u8; 32]> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

/// The canonical encoding: every value length-prefixed, so no two different inputs encode alike.
struct Encoder(Sha256);

impl Encoder {
    fn u32(&mut self, value: u32) {
        self.0.update(value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.update(value.to_le_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.0.update(value);
    }

    fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// A section name, so that a value can never be read as belonging to another section.
    fn field(&mut self, name: &str) {
        self.str(name);
    }

    fn option(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update([0u8]),
            Some(value) => {
                self.0.update([1u8]);
                self.str(value);
            }
        }
    }

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.u64(map.len() as u64);
        for (key, value) in map {
            self.str(key);
            self.str(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    const DOCKERFILE: &[u8] = b"FROM python:3.11-slim\nCOPY . /app\n";

    fn tree(root: &Path, modified: SystemTime) {
        let write = |name: &str, text: &str| {
            let path = root.join(name);
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent).unwrap();
            }
            fs_err::write(&path, text).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        };
        write("Dockerfile", std::str::from_utf8(DOCKERFILE).unwrap());
        write(".dockerignore", "*.log\nsecret/\n");
        write("app/main.py", "print('hi')\n");
        write("app/util.py", "X = 1\n");
        write("requirements.txt", "flask==3.0.0\n");
        std::os::unix::fs::symlink("app/main.py", root.join("main.py")).unwrap();
    }

    struct Case {
        args: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        images: BTreeMap<String, Digest>,
        dockerfile: Vec<u8>,
        builder: Builder,
    }

    impl Case {
        fn new() -> Case {
            Case {
                args: [("BUILDKIT_INLINE_CACHE".to_string(), "1".to_string())]
                    .into_iter()
                    .collect(),
                labels: BTreeMap::new(),
                images: [(
                    "docker.io/library/python:3.11-slim".to_string(),
                    Digest::of_bytes(b"python image config"),
                )]
                .into_iter()
                .collect(),
                dockerfile: DOCKERFILE.to_vec(),
                builder: Builder::BuildKit,
            }
        }

        fn digest(&self, root: &Path) -> Digest {
            let in_context = DockerfileInContext::for_path(root, &root.join("Dockerfile")).unwrap();
            build_inputs_digest(&BuildInputs {
                builder: self.builder,
                dockerfile: &self.dockerfile,
                context_dir: root,
                dockerfile_in_context: &in_context,
                build_args: &self.args,
                labels: &self.labels,
                target: None,
                platform: Some("linux/amd64"),
                network: None,
                images: &self.images,
            })
            .unwrap()
        }
    }

    fn project() -> (tempfile::TempDir, Digest) {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let digest = Case::new().digest(dir.path());
        (dir, digest)
    }

    #[test]
    fn same_tree_elsewhere_with_other_times_has_the_same_digest() {
        let (_first, digest) = project();
        let second = tempfile::tempdir().unwrap();
        tree(
            second.path(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(42),
        );
        assert_eq!(Case::new().digest(second.path()), digest);
    }

    #[test]
    fn a_changed_byte_or_a_new_file_changes_it() {
        let (dir, digest) = project();
        fs_err::write(dir.path().join("app/util.py"), "X = 2\n").unwrap();
        let changed = Case::new().digest(dir.path());
        assert_ne!(changed, digest);
        fs_err::write(dir.path().join("app/new.py"), "").unwrap();
        assert_ne!(Case::new().digest(dir.path()), changed);
    }

    #[test]
    fn bundles_and_their_files_are_not_inputs() {
        for name in [
            "shop.offpack",
            "out/shop.offpack.sha256",
            "shop.offpack.001",
            ".shop.offpack-lock",
            ".shop.offpack.x1Y2z3.partial",
        ] {
            assert!(is_offpack_output(name), "{name}");
        }
        for name in [
            "app.py",
            "offpack.json",
            "shop.offpack.txt",
            "notes.partial",
        ] {
            assert!(!is_offpack_output(name), "{name}");
        }
    }

    #[test]
    fn a_bundle_written_into_the_context_changes_nothing() {
        let (dir, before) = project();
        std::fs::write(dir.path().join("shop.offpack"), b"bundle").unwrap();
        std::fs::write(dir.path().join("shop.offpack.sha256"), b"sum").unwrap();
        assert_eq!(Case::new().digest(dir.path()), before);
    }

    #[test]
    fn excluded_files_do_not_count() {
        let (dir, digest) = project();
        fs_err::write(dir.path().join("debug.log"), "noise").unwrap();
        fs_err::create_dir(dir.path().join("secret")).unwrap();
        fs_err::write(dir.path().join("secret/key"), "k").unwrap();
        assert_eq!(Case::new().digest(dir.path()), digest);
    }

    #[test]
    fn mode_link_target_and_empty_directory_count() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, digest) = project();
        let script = dir.path().join("app/main.py");
        fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let executable = Case::new().digest(dir.path());
        assert_ne!(executable, digest, "the builder copies the mode");
        fs_err::remove_file(dir.path().join("main.py")).unwrap();
        std::os::unix::fs::symlink("app/util.py", dir.path().join("main.py")).unwrap();
        let relinked = Case::new().digest(dir.path());
        assert_ne!(relinked, executable);
        fs_err::create_dir(dir.path().join("empty")).unwrap();
        assert_ne!(Case::new().digest(dir.path()), relinked);
    }

    #[test]
    fn args_images_builder_labels_and_dockerfile_count() {
        let (dir, digest) = project();
        let mut case = Case::new();
        case.args.insert("VERSION".into(), "2".into());
        assert_ne!(case.digest(dir.path()), digest);

        let mut case = Case::new();
        case.images.insert(
            "docker.io/library/python:3.11-slim".into(),
            Digest::of_bytes(b"a newer python"),
        );
        assert_ne!(case.digest(dir.path()), digest);

        let mut case = Case::new();
        case.builder = Builder::Classic;
        assert_ne!(case.digest(dir.path()), digest);

        let mut case = Case::new();
        case.labels.insert("team".into(), "web".into());
        assert_ne!(case.digest(dir.path()), digest);

        let mut case = Case::new();
        case.dockerfile = b"FROM python:offpack-pin-sha256-00\nCOPY . /app\n".to_vec();
        assert_ne!(case.digest(dir.path()), digest, "the bytes as sent count");
    }

    #[test]
    fn an_argument_cannot_pass_for_another() {
        let (dir, _) = project();
        let mut one = Case::new();
        one.args = [("A".to_string(), "1B=2".to_string())]
            .into_iter()
            .collect();
        let mut two = Case::new();
        two.args = [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
        ]
        .into_iter()
        .collect();
        assert_ne!(one.digest(dir.path()), two.digest(dir.path()));
    }

    #[test]
    fn special_files_are_named() {
        let (dir, _) = project();
        let fifo = dir.path().join("app/pipe");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let in_context =
            DockerfileInContext::for_path(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        let case = Case::new();
        let err = build_inputs_digest(&BuildInputs {
            builder: case.builder,
            dockerfile: &case.dockerfile,
            context_dir: dir.path(),
            dockerfile_in_context: &in_context,
            build_args: &case.args,
            labels: &case.labels,
            target: None,
            platform: None,
            network: None,
            images: &case.images,
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("app/pipe"), "{err:#}");
    }
}
