//! Finding the files, building the environment, and loading/merging the model
//! (includes, extends, overrides) the way compose-go does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dotenv;
use crate::error::{ComposeError, Result};
use crate::field_lines::{self, FieldLocations, FileLines};
use crate::merge::{self, SOURCE_MARKER};
use crate::model;
use crate::node::{self, Document, FieldPath, Node};
use crate::paths::{expand_home, is_remote_context, join_clean};
use crate::template::{Resolver, TemplateError};
use crate::validate;
use crate::yaml_depth;
use crate::{LoadOptions, Project};

/// Compose file names looked for, in order of preference.
pub(crate) const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// Override file names looked for next to the chosen file, in order of preference.
pub(crate) const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What `serde_norway` says when a document nests deeper than [`yaml_depth::MAX_DEPTH`].
const RECURSION_LIMIT: &str = "recursion limit exceeded";

pub(crate) fn load(opts: &LoadOptions) -> Result<Project> {
    let cwd = &opts.working_dir;
    if !cwd.is_absolute() {
        return Err(ComposeError::new(format!(
            "the working directory {} is not absolute",
            cwd.display()
        ))
        .hint("pass the current directory as an absolute path"));
    }
    let home = opts.environment.get("HOME").cloned();
    let project_dir_opt = opts.project_directory.as_ref().map(|p| {
        join_clean(
            cwd,
            Path::new(&expand_home(&p.to_string_lossy(), home.as_deref())),
        )
    });
    let mut explicit_files = Vec::new();
    for file in &opts.files {
        if file.as_os_str() == "-" {
            return Err(ComposeError::new(
                "reading the Compose file from standard input is not supported",
            )
            .hint("write it to a file and pass that file with -f"));
        }
        explicit_files.push(join_clean(cwd, file));
    }

    let mut session = Session {
        warnings: Vec::new(),
        unset: BTreeSet::new(),
        files: Vec::new(),
        lines: BTreeMap::new(),
        home,
    };
    let mut env = opts.environment.clone();

    // compose reads .env twice: once from where it stands now (it may set COMPOSE_FILE), once
    // more from the project directory found; values already known are kept.
    let first_dir = project_dir_opt
        .clone()
        .or_else(|| {
            explicit_files
                .first()
                .and_then(|f| f.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| cwd.clone());
    let first_env_files = session.env_files(cwd, &first_dir, &opts.env_files, &opts.environment)?;
    session.merge_env_files(&mut env, &first_env_files)?;

    let files = if !explicit_files.is_empty() {
        for file in &explicit_files {
            offpack_fs::check_regular_or_absent(file, offpack_fs::COMPOSE_FILE)
                .map_err(ComposeError::unreadable)?;
            if !file.is_file() {
                return Err(ComposeError::new("compose file not found")
                    .in_file(file)
                    .hint("check the -f path"));
            }
        }
        explicit_files
    } else if let Some(list) = env.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        compose_file_env(
            cwd,
            list,
            env.get("COMPOSE_PATH_SEPARATOR").map(String::as_str),
        )?
    } else {
        session.discover(project_dir_opt.as_deref().unwrap_or(cwd))?
    };
    let project_dir = match project_dir_opt {
        Some(dir) => dir,
        None => files
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.clone()),
    };
    if project_dir != first_dir {
        let second_env_files =
            session.env_files(cwd, &project_dir, &opts.env_files, &opts.environment)?;
        session.merge_env_files(&mut env, &second_env_files)?;
    }

    let profiles: Vec<String> = if opts.profiles.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        opts.profiles.clone()
    };

    let mut documents = Vec::new();
    for file in &files {
        documents.push((file.clone(), session.read_documents(file)?));
    }
    let name = session.project_name(opts, &env, &documents, &project_dir)?;
    env.insert("COMPOSE_PROJECT_NAME".to_string(), name.clone());

    let context = Context {
        working_dir: project_dir.clone(),
        env,
    };
    let mut dict = Node::Map(BTreeMap::new());
    let chain: Vec<PathBuf> = Vec::new();
    for (file, (lines, docs)) in documents {
        session.note_file(&file);
        for doc in docs {
            dict =
                session.process_document(&file, &lines, doc, &context, dict, &chain, Mode::FULL)?;
        }
    }
    session.finish_model(&mut dict, &project_dir);
    if dict.as_map().is_none_or(|m| m.is_empty()) {
        return Err(ComposeError::new("empty compose file")
            .in_file(files.first().map(PathBuf::as_path).unwrap_or(cwd))
            .hint("declare at least one service under `services:`"));
    }

    let services = model::services(&dict, &context.env, &profiles, &mut session.warnings)?;
    let mut warnings = session.warnings;
    for variable in &session.unset {
        warnings.push(format!(
            "The \"{variable}\" variable is not set. Defaulting to a blank string."
        ));
    }
    let field_locations = FieldLocations::of_files(session.files.iter().filter_map(|file| {
        let lines = session.lines.get(file)?;
        Some((file.as_path(), lines))
    }));
    Ok(Project {
        name,
        project_directory: project_dir,
        files: session.files,
        services,
        warnings,
        field_locations,
    })
}

fn compose_file_env(cwd: &Path, list: &str, separator: Option<&str>) -> Result<Vec<PathBuf>> {
    let separator = separator.filter(|s| !s.is_empty()).unwrap_or(":");
    let mut files = Vec::new();
    for entry in list.split(separator).filter(|e| !e.is_empty()) {
        let file = join_clean(cwd, Path::new(entry));
        offpack_fs::check_regular_or_absent(&file, offpack_fs::COMPOSE_FILE)
            .map_err(ComposeError::unreadable)?;
        if !file.is_file() {
            return Err(ComposeError::new(format!(
                "COMPOSE_FILE names {entry}, which does not exist"
            ))
            .in_file(&file)
            .hint("fix COMPOSE_FILE in the environment or .env, or pass -f"));
        }
        files.push(file);
    }
    Ok(files)
}

/// Where relative paths resolve and which variables interpolate, for one load (the main
/// project, an included project, or a file reached through `extends`).
#[derive(Clone)]
struct Context {
    working_dir: PathBuf,
    env: BTreeMap<String, String>,
}

#[derive(Clone, Copy)]
struct Mode {
    include: bool,
    extends: bool,
    validate: bool,
}

impl Mode {
    const FULL: Mode = Mode {
        include: true,
        extends: true,
        validate: true,
    };
    /// A file read for `extends: {file: ...}`: its own includes and extends are not applied
    /// (extends are followed one service at a time) and it need not be valid on its own.
    const EXTENDS_BASE: Mode = Mode {
        include: false,
        extends: false,
        validate: false,
    };
}

struct Session {
    warnings: Vec<String>,
    unset: BTreeSet<String>,
    files: Vec<PathBuf>,
    /// Where services and their fields are written in each compose file read.
    lines: BTreeMap<PathBuf, FileLines>,
    home: Option<String>,
}

impl Session {
    fn note_file(&mut self, file: &Path) {
        if !self.files.iter().any(|f| f == file) {
            self.files.push(file.to_path_buf());
        }
    }

    fn warn(&mut self, warning: String) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// `--env-file`s (relative to the working directory), else `<dir>/.env` when it exists
    /// and `COMPOSE_DISABLE_ENV_FILE` is not true.
    fn env_files(
        &self,
        cwd: &Path,
        dir: &Path,
        explicit: &[PathBuf],
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<PathBuf>> {
        if !explicit.is_empty() {
            return Ok(explicit.iter().map(|f| join_clean(cwd, f)).collect());
        }
        if let Some(value) = env.get("COMPOSE_DISABLE_ENV_FILE") {
            match parse_go_bool(value) {
                Some(true) => return Ok(Vec::new()),
                Some(false) => {}
                None => {
                    return Err(ComposeError::new(format!(
                        "COMPOSE_DISABLE_ENV_FILE={value:?} is not a boolean"
                    ))
                    .hint("set it to true or false"));
                }
            }
        }
        let default = dir.join(".env");
        Ok(if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        })
    }

    /// Adds the variables of `files` to `env`; values already in `env` win.
    fn merge_env_files(
        &mut self,
        env: &mut BTreeMap<String, String>,
        files: &[PathBuf],
    ) -> Result<()> {
        let from_files = self.read_env_files(env, files)?;
        for (key, value) in from_files {
            env.entry(key).or_insert(value);
        }
        Ok(())
    }

    fn read_env_files(
        &mut self,
        outside: &BTreeMap<String, String>,
        files: &[PathBuf],
    ) -> Result<BTreeMap<String, String>> {
        let mut from_files = BTreeMap::new();
        for file in files {
            if !file.exists() {
                return Err(ComposeError::new("env file not found")
                    .in_file(file)
                    .hint("check the --env-file or env_file path"));
            }
            if file.is_dir() {
                return Err(ComposeError::new("env file is a directory").in_file(file));
            }
            let text = offpack_fs::read_to_string(file, offpack_fs::ENV_FILE)
                .map_err(ComposeError::unreadable)?;
            let lookup = |k: &str| outside.get(k).cloned();
            dotenv::parse(&text, &lookup, &mut from_files, &mut self.unset).map_err(|e| {
                ComposeError::new(e)
                    .in_file(file)
                    .hint("fix the .env syntax")
            })?;
        }
        Ok(from_files)
    }

    /// Looks for a Compose file in `start` and its parents, plus its override file.
    fn discover(&mut self, start: &Path) -> Result<Vec<PathBuf>> {
        let mut dir = Some(start);
        while let Some(current) = dir {
            let found: Vec<PathBuf> = DEFAULT_FILES
                .iter()
                .map(|n| current.join(n))
                .filter(|p| p.is_file())
                .collect();
            if let Some(first) = found.first() {
                if found.len() > 1 {
                    self.warn(format!(
                        "Found multiple config files with supported names: {}; using {}",
                        join_display(&found),
                        first.display()
                    ));
                }
                let mut files = vec![first.clone()];
                let overrides: Vec<PathBuf> = OVERRIDE_FILES
                    .iter()
                    .map(|n| current.join(n))
                    .filter(|p| p.is_file())
                    .collect();
                if let Some(over) = overrides.first() {
                    if overrides.len() > 1 {
                        self.warn(format!(
                            "Found multiple override files with supported names: {}; using {}",
                            join_display(&overrides),
                            over.display()
                        ));
                    }
                    files.push(over.clone());
                }
                return Ok(files);
            }
            dir = current.parent();
        }
        Err(ComposeError::new(format!(
            "no Compose file found: looked for {} in {} and its parent directories",
            DEFAULT_FILES.join(", "),
            start.display()
        ))
        .hint("run from the project directory, or pass -f <file> or --project-directory"))
    }

    /// Reads and parses every YAML document of `file`.
    fn read_documents(&mut self, file: &Path) -> Result<(FileLines, Vec<Document>)> {
        let text = offpack_fs::read_to_string(file, offpack_fs::COMPOSE_FILE)
            .map_err(ComposeError::unreadable)?;
        if let Err(at) = yaml_depth::check(&text) {
            return Err(ComposeError::new(format!(
                "invalid YAML: collections nest more than {} levels deep",
                yaml_depth::MAX_DEPTH
            ))
            .in_file(file)
            .at(at.line, at.column)
            .hint("flatten the YAML"));
        }
        let mut documents = Vec::new();
        for raw in serde_norway::Deserializer::from_str(&text) {
            let value = serde_norway::Value::deserialize(raw).map_err(|e| {
                let mut message = e.to_string();
                if let Some(at) = e.location() {
                    // The location is shown in front already.
                    let repeated = format!(" at line {} column {}", at.line(), at.column());
                    message = message.replacen(&repeated, "", 1);
                }
                let err = if message == RECURSION_LIMIT {
                    // Only reachable through aliases: plain nesting past the limit is refused
                    // above, before parsing.
                    ComposeError::new(format!(
                        "invalid YAML: nests more than {} levels deep once aliases (*name) are \
                         expanded; an alias inside the node its own anchor (&name) marks repeats \
                         forever",
                        yaml_depth::MAX_DEPTH
                    ))
                    .in_file(file)
                    .hint("an alias can only repeat a node that ends before it")
                } else {
                    ComposeError::new(format!("invalid YAML: {message}"))
                        .in_file(file)
                        .hint("fix the YAML syntax")
                };
                match e.location() {
                    Some(at) => err.at(at.line(), at.column()),
                    None => err,
                }
            })?;
            if value.is_null() {
                continue;
            }
            let document =
                node::convert_document(value).map_err(|e| ComposeError::new(e).in_file(file))?;
            documents.push(document);
        }
        let lines = field_lines::scan(&text);
        self.lines.insert(file.to_path_buf(), lines.clone());
        Ok((lines, documents))
    }

    /// `-p` > `COMPOSE_PROJECT_NAME` > last top-level `name:` > project directory name.
    fn project_name(
        &mut self,
        opts: &LoadOptions,
        env: &BTreeMap<String, String>,
        documents: &[(PathBuf, (FileLines, Vec<Document>))],
        project_dir: &Path,
    ) -> Result<String> {
        let imperative = opts
            .project_name
            .clone()
            .filter(|n| !n.is_empty())
            .map(|n| (n, "-p"))
            .or_else(|| {
                env.get("COMPOSE_PROJECT_NAME")
                    .filter(|n| !n.is_empty())
                    .map(|n| (n.clone(), "COMPOSE_PROJECT_NAME"))
            });
        if let Some((name, origin)) = imperative {
            if normalize_project_name(&name) != name {
                return Err(ComposeError::new(format!(
                    "invalid project name {name:?} (from {origin}): it must contain only lowercase letters, digits, `-` and `_`, and start with a letter or digit"
                ))
                .hint(format!("use {:?}", normalize_project_name(&name))));
            }
            return Ok(name);
        }
        let mut from_files = None;
        for (file, (_, docs)) in documents {
            for doc in docs {
                if let Some(name) = doc
                    .root
                    .as_map()
                    .and_then(|m| m.get("name"))
                    .and_then(Node::scalar_string)
                {
                    if !name.is_empty() {
                        from_files = Some((file.clone(), name));
                    }
                }
            }
        }
        let mut name = String::new();
        if let Some((file, raw)) = from_files {
            let lookup = |k: &str| env.get(k).cloned();
            let mut resolver = Resolver::new(&lookup);
            let interpolated = resolver
                .substitute(&raw)
                .map_err(|e| template_error(e, &file, &FieldPath::of(&["name"])))?;
            self.unset.extend(resolver.unset);
            name = normalize_project_name(&interpolated);
        }
        if name.is_empty() {
            let base = project_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name = normalize_project_name(&base);
        }
        if name.is_empty() {
            return Err(ComposeError::new("project name must not be empty")
                .hint("set `name:` in the Compose file or pass -p <name>"));
        }
        Ok(name)
    }

    /// Applies one YAML document onto the model loaded so far.
    #[allow(clippy::too_many_arguments)]
    fn process_document(
        &mut self,
        file: &Path,
        lines: &FileLines,
        doc: Document,
        ctx: &Context,
        dict: Node,
        chain: &[PathBuf],
        mode: Mode,
    ) -> Result<Node> {
        let mut dict = dict;
        let Node::Map(mut cfg) = doc.root else {
            return Err(ComposeError::new(format!(
                "the top level must be a mapping, not {}",
                doc.root.kind()
            ))
            .in_file(file));
        };
        for (key, value) in cfg.iter_mut() {
            self.interpolate(value, &FieldPath::of(&[key]), ctx, file)?;
        }
        mark_sources(&mut cfg, file, lines);
        if mode.include {
            let mut chain = chain.to_vec();
            chain.push(file.to_path_buf());
            self.apply_include(&mut cfg, file, ctx, &chain, &doc.reset_paths)?;
        }
        merge::apply_resets(&mut dict, &doc.reset_paths);
        if mode.extends {
            if let Some(services) = cfg.get_mut("services") {
                match services {
                    Node::Map(services) => {
                        let names: Vec<String> = services.keys().cloned().collect();
                        for name in names {
                            let mut trail = Vec::new();
                            self.extend_service(
                                &name,
                                services,
                                file,
                                ctx,
                                &doc.reset_paths,
                                &mut trail,
                            )?;
                        }
                    }
                    Node::Null => {}
                    other => {
                        return Err(ComposeError::new(format!(
                            "services must be a mapping, not {}",
                            other.kind()
                        ))
                        .in_file(file));
                    }
                }
            }
        }
        dict = merge::merge(dict, Node::Map(cfg), &FieldPath::root()).map_err(|e| {
            ComposeError::new(e)
                .in_file(file)
                .hint("make the files agree on the field's form")
        })?;
        merge::enforce_unicity(&mut dict, &FieldPath::root())
            .map_err(|e| ComposeError::new(e).in_file(file))?;
        if mode.validate {
            validate::validate(&dict).map_err(|invalid| {
                let line = invalid.service.and_then(|service| lines.service(&service));
                ComposeError::new(invalid.message)
                    .in_file(file)
                    .at_line(line)
            })?;
            if let Some(map) = dict.as_map_mut() {
                if map.remove("version").is_some() {
                    self.warn(format!(
                        "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                        file.display()
                    ));
                }
            }
        }
        Ok(dict)
    }

    fn interpolate(
        &mut self,
        node: &mut Node,
        path: &FieldPath,
        ctx: &Context,
        file: &Path,
    ) -> Result<()> {
        match node {
            Node::Str(s) => {
                let lookup = |k: &str| ctx.env.get(k).cloned();
                let mut resolver = Resolver::new(&lookup);
                let value = resolver
                    .substitute(s)
                    .map_err(|e| template_error(e, file, path))?;
                self.unset.extend(resolver.unset);
                *s = value;
                if is_boolean_field(path) {
                    if let Some(b) = parse_yaml_bool(s) {
                        *node = Node::Bool(b);
                    }
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate(item, &path.child(&format!("[{i}]")), ctx, file)?;
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries.iter_mut() {
                    self.interpolate(value, &path.child(key), ctx, file)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn apply_include(
        &mut self,
        cfg: &mut BTreeMap<String, Node>,
        file: &Path,
        ctx: &Context,
        chain: &[PathBuf],
        resets: &[Vec<String>],
    ) -> Result<()> {
        let Some(include) = cfg.remove("include") else {
            return Ok(());
        };
        let entries = match include {
            Node::Seq(entries) => entries,
            Node::Null => return Ok(()),
            other => {
                return Err(
                    ComposeError::new(format!("must be a list, not {}", other.kind()))
                        .in_file(file)
                        .field("include"),
                );
            }
        };
        for (index, entry) in entries.into_iter().enumerate() {
            let field = format!("include[{index}]");
            let spec = IncludeSpec::parse(entry)
                .map_err(|e| ComposeError::new(e).in_file(file).field(&field))?;
            let mut paths = Vec::new();
            for raw in &spec.paths {
                if is_remote_context(raw) || raw.starts_with("oci://") {
                    return Err(ComposeError::new(format!(
                        "remote include {raw:?} is not supported offline"
                    ))
                    .in_file(file)
                    .field(&field)
                    .hint("copy the file into the project and include it by path"));
                }
                paths.push(join_clean(&ctx.working_dir, Path::new(&self.expand(raw))));
            }
            let Some(main) = paths.first().cloned() else {
                return Err(ComposeError::new("`path` is empty")
                    .in_file(file)
                    .field(&field));
            };
            if chain.contains(&main) {
                let mut names: Vec<String> =
                    chain.iter().map(|p| p.display().to_string()).collect();
                names.push(main.display().to_string());
                return Err(ComposeError::new(format!(
                    "include cycle detected: {}",
                    names.join(" includes ")
                ))
                .in_file(file)
                .field(&field)
                .hint("remove one of the includes"));
            }
            for path in &paths {
                if !path.is_file() {
                    return Err(ComposeError::new(format!(
                        "included file {} not found",
                        path.display()
                    ))
                    .in_file(file)
                    .field(&field));
                }
            }
            let project_dir = match &spec.project_directory {
                Some(dir) => join_clean(&ctx.working_dir, Path::new(&self.expand(dir))),
                None => main
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| ctx.working_dir.clone()),
            };
            let env_files: Vec<PathBuf> = if spec.env_files.is_empty() {
                let default = project_dir.join(".env");
                if default.is_file() {
                    vec![default]
                } else {
                    Vec::new()
                }
            } else {
                spec.env_files
                    .iter()
                    .filter(|f| f.as_str() != "/dev/null")
                    .map(|f| join_clean(&ctx.working_dir, Path::new(f)))
                    .collect()
            };
            let from_files = self
                .read_env_files(&ctx.env, &env_files)
                .map_err(|e| e.field(&field))?;
            let mut env = ctx.env.clone();
            for (key, value) in from_files {
                env.entry(key).or_insert(value);
            }
            let include_ctx = Context {
                working_dir: project_dir.clone(),
                env,
            };
            let mut imported = Node::Map(BTreeMap::new());
            for path in &paths {
                let (lines, docs) = self.read_documents(path)?;
                self.note_file(path);
                for doc in docs {
                    imported = self.process_document(
                        path,
                        &lines,
                        doc,
                        &include_ctx,
                        imported,
                        chain,
                        Mode::FULL,
                    )?;
                }
            }
            self.finish_model(&mut imported, &project_dir);
            import_resources(imported, cfg, resets)
                .map_err(|e| ComposeError::new(e).in_file(file).field(&field))?;
        }
        Ok(())
    }

    /// Resolves `extends` of service `name` (and of what it extends), in place.
    fn extend_service(
        &mut self,
        name: &str,
        services: &mut BTreeMap<String, Node>,
        file: &Path,
        ctx: &Context,
        resets: &[Vec<String>],
        trail: &mut Vec<(PathBuf, String)>,
    ) -> Result<Option<Node>> {
        let field = format!("services.{name}.extends");
        let Some(service) = services.get(name).cloned() else {
            return Ok(None);
        };
        let Node::Map(service) = service else {
            return Ok(Some(service));
        };
        let Some(extends) = service.get("extends").cloned() else {
            return Ok(Some(Node::Map(service)));
        };
        let (reference, other_file) = match &extends {
            Node::Str(s) => (s.clone(), None),
            Node::Map(m) => {
                let Some(reference) = m.get("service").and_then(Node::as_str) else {
                    return Err(ComposeError::new("`service` is required")
                        .in_file(file)
                        .field(&field));
                };
                let other = match m.get("file") {
                    None | Some(Node::Null) => None,
                    Some(Node::Str(f)) => Some(f.clone()),
                    Some(other) => {
                        return Err(ComposeError::new(format!(
                            "`file` must be a string, not {}",
                            other.kind()
                        ))
                        .in_file(file)
                        .field(&field));
                    }
                };
                (reference.to_string(), other)
            }
            other => {
                return Err(ComposeError::new(format!(
                    "must be a service name or a mapping, not {}",
                    other.kind()
                ))
                .in_file(file)
                .field(&field));
            }
        };
        let link = (file.to_path_buf(), name.to_string());
        if trail.contains(&link) {
            let mut steps: Vec<String> = trail
                .iter()
                .map(|(f, s)| format!("{s} in {}", f.display()))
                .collect();
            steps.push(format!("{name} in {}", file.display()));
            return Err(ComposeError::new(format!(
                "circular extends: {}",
                steps.join(" extends ")
            ))
            .in_file(file)
            .field(&field)
            .hint("break the loop of `extends`"));
        }
        trail.push(link);
        let base = match other_file {
            Some(other) => {
                let path = join_clean(&ctx.working_dir, Path::new(&self.expand(&other)));
                if !path.is_file() {
                    return Err(ComposeError::new(format!(
                        "extended file {} not found",
                        path.display()
                    ))
                    .in_file(file)
                    .field(&field));
                }
                let (lines, docs) = self.read_documents(&path)?;
                self.note_file(&path);
                let other_dir = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| ctx.working_dir.clone());
                let other_ctx = Context {
                    working_dir: other_dir.clone(),
                    env: ctx.env.clone(),
                };
                let mut other_dict = Node::Map(BTreeMap::new());
                let mut other_resets = Vec::new();
                for doc in docs {
                    other_resets = doc.reset_paths.clone();
                    other_dict = self.process_document(
                        &path,
                        &lines,
                        doc,
                        &other_ctx,
                        other_dict,
                        &[],
                        Mode::EXTENDS_BASE,
                    )?;
                }
                resolve_paths(&mut other_dict, &other_dir, self.home.as_deref());
                let mut other_services =
                    match other_dict.as_map_mut().and_then(|m| m.remove("services")) {
                        Some(Node::Map(s)) => s,
                        _ => {
                            return Err(ComposeError::new(format!(
                                "cannot extend service {name:?}: {} has no services section",
                                path.display()
                            ))
                            .in_file(file)
                            .field(&field));
                        }
                    };
                if !other_services.contains_key(&reference) {
                    return Err(ComposeError::new(format!(
                        "cannot extend service {name:?}: service {reference:?} not found in {}",
                        path.display()
                    ))
                    .in_file(file)
                    .field(&field));
                }
                self.extend_service(
                    &reference,
                    &mut other_services,
                    &path,
                    &other_ctx,
                    &other_resets,
                    trail,
                )?
            }
            None => {
                if !services.contains_key(&reference) {
                    return Err(ComposeError::new(format!(
                        "cannot extend service {name:?}: service {reference:?} not found"
                    ))
                    .in_file(file)
                    .field(&field)
                    .hint("extend a service of the same file, or add `file:`"));
                }
                self.extend_service(&reference, services, file, ctx, resets, trail)?
            }
        };
        trail.pop();
        let merged = match base {
            None | Some(Node::Null) => {
                let mut service = service;
                service.remove("extends");
                Node::Map(service)
            }
            Some(base) => {
                let own_source = service.get(SOURCE_MARKER).cloned();
                // `!reset` in the extending service removes what it would inherit.
                let mut wrapper = Node::Map(BTreeMap::from([(
                    "services".to_string(),
                    Node::Map(BTreeMap::from([(name.to_string(), base)])),
                )]));
                merge::apply_resets(&mut wrapper, resets);
                let base = wrapper
                    .as_map_mut()
                    .and_then(|m| m.remove("services"))
                    .and_then(|mut s| s.as_map_mut().and_then(|m| m.remove(name)))
                    .unwrap_or(Node::Map(BTreeMap::new()));
                let mut merged = merge::merge(
                    base,
                    Node::Map(service),
                    &FieldPath::of(&["services", name]),
                )
                .map_err(|e| ComposeError::new(e).in_file(file))?;
                if let Some(m) = merged.as_map_mut() {
                    m.remove("extends");
                    if let Some(own_source) = own_source {
                        m.insert(SOURCE_MARKER.to_string(), own_source);
                    }
                }
                merged
            }
        };
        services.insert(name.to_string(), merged.clone());
        Ok(Some(merged))
    }

    fn expand(&self, path: &str) -> String {
        expand_home(path, self.home.as_deref())
    }

    /// Defaults and relative paths once a project's files are all merged.
    fn finish_model(&self, dict: &mut Node, base: &Path) {
        if let Some(Node::Map(services)) = dict.as_map_mut().and_then(|m| m.get_mut("services")) {
            for service in services.values_mut() {
                if let Some(Node::Map(build)) =
                    service.as_map_mut().and_then(|m| m.get_mut("build"))
                {
                    build
                        .entry("context".to_string())
                        .or_insert_with(|| Node::Str(".".into()));
                }
            }
        }
        resolve_paths(dict, base, self.home.as_deref());
    }
}

struct IncludeSpec {
    paths: Vec<String>,
    project_directory: Option<String>,
    env_files: Vec<String>,
}

impl IncludeSpec {
    fn parse(entry: Node) -> std::result::Result<IncludeSpec, String> {
        match entry {
            Node::Str(path) => Ok(IncludeSpec {
                paths: vec![path],
                project_directory: None,
                env_files: Vec::new(),
            }),
            Node::Map(fields) => {
                for key in fields.keys() {
                    if !matches!(key.as_str(), "path" | "project_directory" | "env_file")
                        && !key.starts_with("x-")
                    {
                        return Err(format!(
                            "unknown key `{key}` (allowed: path, project_directory, env_file)"
                        ));
                    }
                }
                let paths = string_or_list(fields.get("path"), "path")?;
                if paths.is_empty() {
                    return Err("`path` is required".to_string());
                }
                let project_directory = match fields.get("project_directory") {
                    None | Some(Node::Null) => None,
                    Some(Node::Str(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(format!(
                            "`project_directory` must be a string, not {}",
                            other.kind()
                        ));
                    }
                };
                Ok(IncludeSpec {
                    paths,
                    project_directory,
                    env_files: string_or_list(fields.get("env_file"), "env_file")?,
                })
            }
            other => Err(format!("must be a path or a mapping, not {}", other.kind())),
        }
    }
}

fn string_or_list(node: Option<&Node>, what: &str) -> std::result::Result<Vec<String>, String> {
    match node {
        None | Some(Node::Null) => Ok(Vec::new()),
        Some(Node::Str(s)) => Ok(vec![s.clone()]),
        Some(Node::Seq(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("`{what}` entries must be strings"))
            })
            .collect(),
        Some(other) => Err(format!(
            "`{what}` must be a string or a list, not {}",
            other.kind()
        )),
    }
}

/// Copies resources of an included project into the including model; a resource defined on
/// both sides is merged with the including file's definition on top (compose-go today).
fn import_resources(
    imported: Node,
    cfg: &mut BTreeMap<String, Node>,
    resets: &[Vec<String>],
) -> std::result::Result<(), String> {
    let Node::Map(mut imported) = imported else {
        return Ok(());
    };
    for kind in [
        "services", "volumes", "networks", "secrets", "configs", "models",
    ] {
        let Some(Node::Map(from)) = imported.remove(kind) else {
            continue;
        };
        let mut to = match cfg.remove(kind) {
            Some(Node::Map(m)) => m,
            _ => BTreeMap::new(),
        };
        for (name, resource) in from {
            match to.remove(&name) {
                None => {
                    to.insert(name, resource);
                }
                Some(local) => {
                    let mut wrapper = Node::Map(BTreeMap::from([(
                        kind.to_string(),
                        Node::Map(BTreeMap::from([(name.clone(), resource)])),
                    )]));
                    merge::apply_resets(&mut wrapper, resets);
                    let resource = wrapper
                        .as_map_mut()
                        .and_then(|m| m.remove(kind))
                        .and_then(|mut k| k.as_map_mut().and_then(|m| m.remove(&name)))
                        .unwrap_or(Node::Null);
                    let merged = merge::merge(resource, local, &FieldPath::of(&[kind, &name]))?;
                    to.insert(name, merged);
                }
            }
        }
        cfg.insert(kind.to_string(), Node::Map(to));
    }
    Ok(())
}

/// Records in each service, and in each build mapping, the file (and line) it was declared in.
fn mark_sources(cfg: &mut BTreeMap<String, Node>, file: &Path, lines: &FileLines) {
    let Some(Node::Map(services)) = cfg.get_mut("services") else {
        return;
    };
    let location = |line: Option<usize>| {
        let mut location = BTreeMap::from([(
            "file".to_string(),
            Node::Str(file.to_string_lossy().into_owned()),
        )]);
        if let Some(line) = line {
            location.insert("line".to_string(), Node::Num(line.to_string()));
        }
        Node::Map(location)
    };
    for (name, service) in services.iter_mut() {
        let Some(service) = service.as_map_mut() else {
            continue;
        };
        let service_line = lines.service(name);
        service.insert(SOURCE_MARKER.to_string(), location(service_line));
        let Some(build) = service.get_mut("build") else {
            continue;
        };
        if let Node::Str(context) = build {
            *build = Node::Map(BTreeMap::from([(
                "context".to_string(),
                Node::Str(std::mem::take(context)),
            )]));
        }
        if let Node::Map(fields) = build {
            fields.insert(
                SOURCE_MARKER.to_string(),
                location(lines.field(name, "build")),
            );
        }
    }
}

/// Makes build contexts absolute against `base` (compose-go's relative path rules).
pub(crate) fn resolve_paths(dict: &mut Node, base: &Path, home: Option<&str>) {
    let Some(Node::Map(services)) = dict.as_map_mut().and_then(|m| m.get_mut("services")) else {
        return;
    };
    for service in services.values_mut() {
        let Some(Node::Map(build)) = service.as_map_mut().and_then(|m| m.get_mut("build")) else {
            continue;
        };
        if let Some(Node::Str(context)) = build.get_mut("context") {
            *context = resolve_context(context, base, home);
        }
        if let Some(contexts) = build.get_mut("additional_contexts") {
            if let Node::Seq(items) = contexts {
                let mut map = BTreeMap::new();
                for item in items.iter() {
                    if let Some(text) = item.scalar_string() {
                        let (k, v) = text.split_once('=').unwrap_or((text.as_str(), ""));
                        map.insert(k.to_string(), Node::Str(v.to_string()));
                    }
                }
                *contexts = Node::Map(map);
            }
            if let Node::Map(entries) = contexts {
                for value in entries.values_mut() {
                    if let Node::Str(path) = value {
                        *path = resolve_context(path, base, home);
                    }
                }
            }
        }
    }
}

fn resolve_context(context: &str, base: &Path, home: Option<&str>) -> String {
    if is_remote_context(context) || context.is_empty() {
        return context.to_string();
    }
    let expanded = expand_home(context, home);
    join_clean(base, Path::new(&expanded))
        .to_string_lossy()
        .into_owned()
}

fn template_error(e: TemplateError, file: &Path, path: &FieldPath) -> ComposeError {
    let err = ComposeError::new(e.to_string())
        .in_file(file)
        .field(path.to_string());
    match e {
        TemplateError::MissingRequired { variable, .. } => {
            err.hint(format!("set {variable} in the environment or in .env"))
        }
        TemplateError::Invalid(_) => err.hint("write `$$` for a literal `$`"),
        TemplateError::TooDeep => err.hint("nest fewer defaults"),
    }
}

fn is_boolean_field(path: &FieldPath) -> bool {
    path.matches("services.*.depends_on.*.required")
        || path.matches("services.*.depends_on.*.restart")
}

/// compose's cast for boolean fields set through a variable (YAML 1.1 words included).
fn parse_yaml_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "y" | "yes" | "on" => Some(true),
        "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// compose-go's project name normalization: lowercase, keep `[a-z0-9_-]`, no leading `_`/`-`.
pub(crate) fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

fn join_display(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
