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

/// The Dockerfile's place in the context tar and, when it lives outside the context (or is
/// inline), the bytes to add under that name.
#[derive(Debug, Clone)]
pub struct DockerfileInContext {
    pub name: String,
    pub extra: Option<Vec<u8>>,
}

impl DockerfileInContext {
    /// Places the Dockerfile at `path` (absolute) for a context at `context` (absolute).
    pub fn for_path(context: &Path, path: &Path) -> Result<DockerfileInContext> {
        match path.strip_prefix(context) {
            Ok(relative) => Ok(DockerfileInContext {
                name: slash_path(relative),
                extra: None,
            }),
            Err(_) => {
                let bytes = offpack_fs::read(path, offpack_fs::DOCKERFILE)?;
                Ok(DockerfileInContext {
                    name: ".offpack.Dockerfile".into(),
                    extra: Some(bytes),
                })
            }
        }
    }

    pub fn inline(text: &str) -> DockerfileInContext {
        DockerfileInContext {
            name: ".offpack.Dockerfile".into(),
            extra: Some(text.as_bytes().to_vec()),
        }
    }
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes the context directory as a tar to `out`, leaving out what `.dockerignore` excludes.
pub fn write_context(
    context: &Path,
    dockerfile: &DockerfileInContext,
    out: impl Write,
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

    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut count = 0u64;
    // BuildKit takes a context whose first header is PAX or GNU long-name for a bare Dockerfile
    // (docs/engine-support.md): the Dockerfile goes first, under a plain ustar header.
    let dockerfile_on_disk = dockerfile
        .extra
        .is_none()
        .then(|| context.join(&dockerfile.name));
    if let Some(path) = &dockerfile_on_disk {
        // Streamed, but opened like any Dockerfile: a FIFO must fail, not block the build.
        let (file, _) = offpack_fs::open_regular(path, offpack_fs::DOCKERFILE)?;
        let metadata = file.metadata()?;
        let mut header = context_header(&metadata);
        tar.append_data(&mut header, &dockerfile.name, file)
            .with_context(|| format!("adding {} to the build context", path.display()))?;
        count += 1;
    }
    if let Some(bytes) = &dockerfile.extra {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, &dockerfile.name, bytes.as_slice())?;
    }
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
        if dockerfile_on_disk.is_some() && name == dockerfile.name {
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
        let mut header = context_header(&metadata);
        if metadata.file_type().is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            header.set_size(0);
            tar.append_link(&mut header, &name, &target)
                .with_context(|| {
                    format!("adding {} to the build context", entry.path().display())
                })?;
        } else if metadata.is_dir() {
            tar.append_data(&mut header, format!("{name}/"), std::io::empty())?;
        } else if metadata.is_file() {
            let file = fs_err::File::open(entry.path())?;
            tar.append_data(&mut header, &name, file).with_context(|| {
                format!("adding {} to the build context", entry.path().display())
            })?;
        } else {
            bail!(
                "{} is neither a file, a directory nor a link; remove it from the build context or list it in .dockerignore",
                entry.path().display()
            );
        }
        count += 1;
    }
    tar.into_inner()?.flush()?;
    Ok(count)
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
        write_context(root, &dockerfile, &mut out).unwrap();
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
                extra: None,
            };
            let err = write_context(root, &dockerfile, &mut Vec::new()).unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains(special), "{special}: {message}");
        }
    }
}
