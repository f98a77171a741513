//! The build context the engine receives: the context directory as a tar, filtered by
//! `.dockerignore` with the docker CLI's rules.
//!
//! The tar is what the builder hashes for `COPY`/`ADD` cache keys, so it is made the same way on
//! both sides of the air gap: entries in name order, owner 0:0 with no user or group names, file
//! modes and times as on disk, symlinks stored as links.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use globset::{Glob, GlobMatcher};

/// One line of a `.dockerignore`.
#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobMatcher,
    exception: bool,
}

/// `.dockerignore` rules: the last matching line decides; a line matches a path when it matches
/// the path or one of its parent directories (moby's patternmatcher semantics).
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text; `source` names the file in errors.
    pub fn parse(text: &str, source: &Path) -> Result<DockerIgnore> {
        let mut patterns = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = Glob::new(&pattern)
                .and_then(|g| {
                    globset::GlobBuilder::new(g.glob())
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                })
                .with_context(|| {
                    format!(
                        "{}:{}: invalid pattern `{line}`",
                        source.display(),
                        number + 1
                    )
                })?;
            patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exception,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Always keeps these paths (the docker CLI sends the Dockerfile and `.dockerignore` even when
    /// a pattern excludes them).
    pub fn keep(&mut self, path: &str) {
        if let Ok(glob) = globset::GlobBuilder::new(&escape_glob(path))
            .literal_separator(true)
            .build()
        {
            self.patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exception: true,
            });
        }
    }

    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether the relative, `/`-separated `path` is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception != excluded {
                continue;
            }
            let mut matched = pattern.matcher.is_match(path);
            if !matched {
                let mut prefix = String::new();
                for part in path.split('/') {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    if prefix.len() < path.len() && pattern.matcher.is_match(&prefix) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// `filepath.Clean` of a pattern, without a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn escape_glob(path: &str) -> String {
    path.chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// The Dockerfile's place in the context tar and, when offpack supplies its bytes, those bytes.
///
/// offpack supplies them when the Dockerfile lives outside the context, when it is inline in the
/// compose file, and when the engine must get other text than the user's file (digest references
/// rewritten to pin tags, `offpack_dockerfile::rewrite_pins`): the user's file is never changed,
/// the context stream carries the bytes under the Dockerfile's name instead.
#[derive(Debug, Clone)]
pub struct DockerfileInContext {
    /// The Dockerfile's entry name in the context tar (what the build request names).
    pub name: String,
    /// The bytes sent under `name`; `None` streams the file `name` of the context directory.
    pub contents: Option<Vec<u8>>,
}

/// The name a Dockerfile outside the context (or inline) gets in the context tar.
const OUTSIDE_NAME: &str = ".offpack.Dockerfile";

/// The mode the tar header gives a Dockerfile whose bytes offpack supplies.
const SUPPLIED_MODE: u32 = 0o644;

impl DockerfileInContext {
    /// Places the Dockerfile at `path` (absolute) for a context at `context` (absolute).
    pub fn for_path(context: &Path, path: &Path) -> Result<DockerfileInContext> {
        match path.strip_prefix(context) {
            Ok(relative) => Ok(DockerfileInContext {
                name: slash_path(relative),
                contents: None,
            }),
            Err(_) => {
                let bytes = offpack_fs::read(path, offpack_fs::DOCKERFILE)?;
                Ok(DockerfileInContext {
                    name: OUTSIDE_NAME.into(),
                    contents: Some(bytes),
                })
            }
        }
    }

    pub fn inline(text: &str) -> DockerfileInContext {
        DockerfileInContext {
            name: OUTSIDE_NAME.into(),
            contents: Some(text.as_bytes().to_vec()),
        }
    }

    /// The same place in the context, with `bytes` sent instead of the file's own (the
    /// Dockerfile with its digest pins rewritten).
    pub fn with_contents(self, bytes: Vec<u8>) -> DockerfileInContext {
        DockerfileInContext {
            name: self.name,
            contents: Some(bytes),
        }
    }

    /// The bytes the engine gets as the Dockerfile.
    pub fn read(&self, context: &Path) -> Result<Vec<u8>> {
        match &self.contents {
            Some(bytes) => Ok(bytes.clone()),
            None => Ok(offpack_fs::read(
                &context.join(&self.name),
                offpack_fs::DOCKERFILE,
            )?),
        }
    }

    /// The permission bits the Dockerfile's tar header carries (the builder copies them with
    /// `COPY . .`).
    pub fn mode(&self, context: &Path) -> Result<u32> {
        match &self.contents {
            Some(_) => Ok(SUPPLIED_MODE),
            None => {
                let path = context.join(&self.name);
                let (file, _) = offpack_fs::open_regular(&path, offpack_fs::DOCKERFILE)?;
                let metadata = file
                    .metadata()
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(permission_bits(&metadata))
            }
        }
    }
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The mode bits a builder takes from a tar header (the file type is in the entry type).
pub(crate) fn permission_bits(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o7777
}

/// What a context entry is.
pub(crate) enum EntryKind {
    Dir,
    File,
    /// A symbolic link, stored as a link to this target.
    Symlink(PathBuf),
}

/// One entry of the build context after `.dockerignore`, other than the Dockerfile.
pub(crate) struct ContextEntry<'a> {
    /// Relative, `/`-separated name (no trailing `/` for directories).
    pub name: String,
    /// The entry on disk.
    pub path: &'a Path,
    pub metadata: std::fs::Metadata,
    pub kind: EntryKind,
}

/// Walks the context directory as the context tar holds it: `.dockerignore` applied (the
/// Dockerfile and `.dockerignore` itself always kept), entries in name order, links not followed,
/// the Dockerfile left out (it goes first, separately). `visit` sees each entry; a special file
/// (FIFO, socket, device) is an error naming it. Returns the number of entries.
///
/// The one walker for everything that must see the context as the builder does: the tar
/// ([`write_context`]) and the build-inputs digest (`super::inputs`).
pub(crate) fn walk_context(
    context: &Path,
    dockerfile: &DockerfileInContext,
    mut visit: impl FnMut(ContextEntry<'_>) -> Result<()>,
) -> Result<u64> {
    let ignore_path = context.join(".dockerignore");
    let mut ignore = match offpack_fs::read_to_string(&ignore_path, offpack_fs::DOCKERIGNORE) {
        Ok(text) => DockerIgnore::parse(&text, &ignore_path)?,
        Err(e) if e.is_not_found() => DockerIgnore::default(),
        Err(e) => return Err(e.into()),
    };
    ignore.keep(".dockerignore");
    ignore.keep(&dockerfile.name);
    let descend_into_excluded = ignore.has_exceptions();

    let mut count = 0u64;
    let mut walk = walkdir::WalkDir::new(context)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry =
            entry.with_context(|| format!("reading the build context {}", context.display()))?;
        let relative: PathBuf = match entry.path().strip_prefix(context) {
            Ok(r) if r.as_os_str().is_empty() => continue,
            Ok(r) => r.to_path_buf(),
            Err(_) => continue,
        };
        let name = slash_path(&relative);
        // The Dockerfile entry is written first, from disk or from the supplied bytes; a file
        // of that name in the context must not add a second entry the builder might read.
        if name == dockerfile.name {
            continue;
        }
        if ignore.excludes(&name) {
            if entry.file_type().is_dir() && !descend_into_excluded {
                walk.skip_current_dir();
            }
            continue;
        }
        let metadata = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let kind = if metadata.file_type().is_symlink() {
            EntryKind::Symlink(fs_err::read_link(entry.path())?)
        } else if metadata.is_dir() {
            EntryKind::Dir
        } else if metadata.is_file() {
            EntryKind::File
        } else {
            bail!(
                "{} is neither a file, a directory nor a link; remove it from the build context or list it in .dockerignore",
                entry.path().display()
            );
        };
        visit(ContextEntry {
            name,
            path: entry.path(),
            metadata,
            kind,
        })?;
        count += 1;
    }
    Ok(count)
}

/// Files of the context sent with other bytes than the directory holds: the package files a
/// far-side rebuild points at offpack's package server (decision 0085). Context path → bytes.
pub type ContextOverrides = std::collections::BTreeMap<String, Vec<u8>>;

/// Writes the context directory as a tar to `out`, leaving out what `.dockerignore` excludes;
/// a file named in `overrides` is sent with those bytes (its mode and owner stay the file's).
pub fn write_context(
    context: &Path,
    dockerfile: &DockerfileInContext,
    overrides: &ContextOverrides,
    out: impl Write,
) -> Result<u64> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    // BuildKit takes a context whose first header is PAX or GNU long-name for a bare Dockerfile
    // (docs/engine-support.md): the Dockerfile goes first, under a plain ustar header.
    match &dockerfile.contents {
        None => {
            let path = context.join(&dockerfile.name);
            // Streamed, but opened like any Dockerfile: a FIFO must fail, not block the build.
            let (file, _) = offpack_fs::open_regular(&path, offpack_fs::DOCKERFILE)?;
            let metadata = file.metadata()?;
            let mut header = context_header(&metadata);
            tar.append_data(&mut header, &dockerfile.name, file)
                .with_context(|| format!("adding {} to the build context", path.display()))?;
        }
        Some(bytes) => {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(SUPPLIED_MODE);
            tar.append_data(&mut header, &dockerfile.name, bytes.as_slice())?;
        }
    }
    let count = walk_context(context, dockerfile, |entry| {
        let mut header = context_header(&entry.metadata);
        let added = match &entry.kind {
            EntryKind::Symlink(target) => {
                header.set_size(0);
                tar.append_link(&mut header, &entry.name, target)
            }
            EntryKind::Dir => {
                tar.append_data(&mut header, format!("{}/", entry.name), std::io::empty())
            }
            EntryKind::File => match overrides.get(&entry.name) {
                Some(bytes) => {
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, &entry.name, bytes.as_slice())
                }
                None => {
                    let file = fs_err::File::open(entry.path)?;
                    tar.append_data(&mut header, &entry.name, file)
                }
            },
        };
        added.with_context(|| format!("adding {} to the build context", entry.path.display()))
    })?;
    tar.into_inner()?.flush()?;
    Ok(count + 1)
}

/// A ustar header with the file's mode, size and time, owned by 0:0 without names.
fn context_header(metadata: &std::fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_metadata_in_mode(metadata, tar::HeaderMode::Complete);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("").ok();
    header.set_groupname("").ok();
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn patterns_are_anchored_at_the_context_root() {
        let rules = ignore("*.pyc\nnode_modules\n");
        assert!(rules.excludes("a.pyc"));
        assert!(
            !rules.excludes("src/a.pyc"),
            "`*` does not cross directories"
        );
        assert!(rules.excludes("node_modules"));
        assert!(
            rules.excludes("node_modules/x/index.js"),
            "a matching parent excludes its contents"
        );
        assert!(!rules.excludes("src/node_modules"));
    }

    #[test]
    fn double_star_and_exceptions_follow_the_last_match() {
        let rules = ignore("**/*.log\n!keep.log\n# comment\n/tmp/\n");
        assert!(rules.excludes("a/b/c.log"));
        assert!(rules.excludes("c.log"));
        assert!(!rules.excludes("keep.log"));
        assert!(rules.excludes("tmp/x"));
    }

    #[test]
    fn dockerfile_is_kept_even_when_excluded() {
        let mut rules = ignore("*\n");
        rules.keep("Dockerfile");
        rules.keep(".dockerignore");
        assert!(!rules.excludes("Dockerfile"));
        assert!(rules.excludes("app.py"));
    }

    #[test]
    fn context_tar_is_filtered_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs_err::write(root.join(".dockerignore"), "secret\n*.tmp\n").unwrap();
        fs_err::write(root.join("b.txt"), "b").unwrap();
        fs_err::write(root.join("a.tmp"), "x").unwrap();
        fs_err::create_dir(root.join("secret")).unwrap();
        fs_err::write(root.join("secret/key"), "k").unwrap();
        let mut out = Vec::new();
        let dockerfile = DockerfileInContext::for_path(root, &root.join("Dockerfile")).unwrap();
        write_context(root, &dockerfile, &ContextOverrides::new(), &mut out).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["Dockerfile", ".dockerignore", "b.txt"],
            "the Dockerfile comes first"
        );
    }
    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut body).unwrap();
                (name, body)
            })
            .collect()
    }

    #[test]
    fn supplied_bytes_replace_the_dockerfile_in_the_stream_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir(root.join("docker")).unwrap();
        fs_err::write(root.join("docker/Dockerfile"), "FROM a@sha256:x\n").unwrap();
        fs_err::write(root.join("app.py"), "x").unwrap();
        let dockerfile = DockerfileInContext::for_path(root, &root.join("docker/Dockerfile"))
            .unwrap()
            .with_contents(b"FROM a:offpack-pin\n".to_vec());
        assert_eq!(dockerfile.read(root).unwrap(), b"FROM a:offpack-pin\n");
        let mut out = Vec::new();
        write_context(root, &dockerfile, &ContextOverrides::new(), &mut out).unwrap();
        let entries = entries(&out);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["docker/Dockerfile", "app.py", "docker/"]);
        assert_eq!(entries[0].1, b"FROM a:offpack-pin\n");
        let mut header = tar::Archive::new(out.as_slice());
        let first = header.entries().unwrap().next().unwrap().unwrap();
        assert!(first.header().as_ustar().is_some(), "a plain ustar header");
        assert_eq!(
            fs_err::read_to_string(root.join("docker/Dockerfile")).unwrap(),
            "FROM a@sha256:x\n",
            "the user's file is untouched"
        );
    }

    #[test]
    fn an_override_replaces_a_file_in_the_stream_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs_err::write(root.join("requirements.txt"), "bottle==0.13.4\n").unwrap();
        let dockerfile = DockerfileInContext::for_path(root, &root.join("Dockerfile")).unwrap();
        let overrides = ContextOverrides::from([(
            "requirements.txt".to_string(),
            b"--index-url http://x/simple/\nbottle==0.13.4\n".to_vec(),
        )]);
        let mut out = Vec::new();
        write_context(root, &dockerfile, &overrides, &mut out).unwrap();
        let sent = entries(&out);
        assert_eq!(sent[1].0, "requirements.txt");
        assert_eq!(sent[1].1, overrides["requirements.txt"]);
        assert_eq!(
            fs_err::read_to_string(root.join("requirements.txt")).unwrap(),
            "bottle==0.13.4\n"
        );
    }

    /// A FIFO in a context once blocked the build forever: the Dockerfile and `.dockerignore`
    /// were opened as they came, and a special file elsewhere had no clear error.
    #[test]
    fn special_files_in_the_context_fail_at_once_naming_the_file() {
        let fifo = |path: &Path| {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                path,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .unwrap()
        };
        for special in ["Dockerfile", ".dockerignore", "data/pipe"] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs_err::create_dir(root.join("data")).unwrap();
            if special != "Dockerfile" {
                fs_err::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
            }
            fifo(&root.join(special));
            let dockerfile = DockerfileInContext {
                name: "Dockerfile".into(),
                contents: None,
            };
            let err = write_context(root, &dockerfile, &ContextOverrides::new(), &mut Vec::new())
                .unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains(special), "{special}: {message}");
        }
    }
}
