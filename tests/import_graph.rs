//! Keeps the module graph free of circles: in the root crate's `src/` and in every
//! `crates/*/src`, no two sibling modules may use each other, directly or through others.
//!
//! A text scan, not a compiler pass: comments, strings and character literals are dropped, then
//! every path starting with `crate::` or `super::` (including `use` trees with braces) is
//! resolved against the file's module path (inline `mod name { ... }` blocks included). An edge
//! `A -> B` between siblings `A` and `B` under the same parent means code anywhere below `A` names
//! something below `B`. A child naming its parent's own items, or a parent naming its children,
//! is the ordinary shape of a module tree and is not an edge. Re-exports at a crate root
//! (`pub use module::Item;` in `lib.rs`) are followed, so `crate::Item` counts as a use of
//! `module`. Test code (`#[cfg(test)] mod tests`) is scanned like any other code: a test that
//! reaches into a sibling module ties the two modules together just as much.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn no_module_imports_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut source_dirs = vec![root.join("src")];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("read crates/")
        .map(|entry| entry.expect("read crates/ entry").path().join("src"))
        .filter(|src| src.join("lib.rs").is_file())
        .collect();
    crates.sort();
    source_dirs.extend(crates);
    assert!(
        source_dirs.len() > 1,
        "no crates found under {}",
        root.display()
    );

    let mut report = String::new();
    for src in &source_dirs {
        let graph = ModuleGraph::scan(src);
        assert!(
            !graph.edges.is_empty() || graph.modules.len() < 3,
            "{}: {} modules and no use between them, the scan is broken",
            src.display(),
            graph.modules.len()
        );
        for cycle in graph.cycles() {
            report.push_str(&graph.describe(root, &cycle));
        }
    }
    assert!(
        report.is_empty(),
        "modules import each other in a circle; move the shared piece to a module both can use \
         without the other:\n{report}"
    );
}

#[test]
fn the_scan_finds_a_circle_and_resolves_paths() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("ops/load")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "mod cli;\nmod ops;\nmod project;\nmod error;\npub use error::Failure;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("cli.rs"),
        "// use crate::error::Failure;\nuse crate::{ops::load::run, project as p};\n\
         const HELP: &str = \"crate::error\";\nconst QUOTE: char = '\"';\nconst TICK: char = '\\'';\n\
         fn f<'a>(s: &'a str) -> &'a str { \"use crate::error;\" }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("project.rs"),
        "use super::cli::Args;\nmod tests { use super::*; }\n",
    )
    .unwrap();
    std::fs::write(src.join("ops/mod.rs"), "pub mod load;\npub mod bundle {}\n").unwrap();
    std::fs::write(
        src.join("ops/load/mod.rs"),
        "use super::super::error::Failure;\nuse super::bundle;\n\
         fn f() -> crate::Failure { todo!() }\n",
    )
    .unwrap();
    std::fs::write(src.join("error.rs"), "pub struct Failure;\n").unwrap();

    let graph = ModuleGraph::scan(src);
    let edges: BTreeSet<(String, String)> = graph
        .edges
        .keys()
        .map(|(from, to)| (from.join("::"), to.join("::")))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("cli", "ops"),
        ("cli", "project"),
        ("project", "cli"),
        ("ops", "error"),
        ("ops::load", "ops::bundle"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(edges, expected);
    let cycles: Vec<Vec<String>> = graph
        .cycles()
        .iter()
        .map(|cycle| cycle.iter().map(|m| m.join("::")).collect())
        .collect();
    assert_eq!(cycles, vec![vec!["cli", "project", "cli"]]);
}

type ModulePath = Vec<String>;

struct ModuleGraph {
    /// Every module found, by its path below the crate root (the root itself is `[]`).
    modules: BTreeSet<ModulePath>,
    /// Sibling edges, with the first place each was seen (file, line).
    edges: BTreeMap<(ModulePath, ModulePath), (PathBuf, usize)>,
}

/// A path found in the source: the module it was written in and the absolute path it names.
struct Reference {
    from: ModulePath,
    to: ModulePath,
    file: PathBuf,
    line: usize,
}

impl ModuleGraph {
    fn scan(src: &Path) -> ModuleGraph {
        let mut files = Vec::new();
        collect_rs_files(src, &mut files);
        files.sort();
        let mut modules = BTreeSet::new();
        let mut references = Vec::new();
        let mut root_reexports = BTreeMap::new();
        for file in &files {
            let Some(module) = file_module(src, file) else {
                continue;
            };
            let text = std::fs::read_to_string(file).expect("read source file");
            let tokens = tokenize(&text);
            modules.insert(module.clone());
            scan_tokens(&tokens, &module, file, &mut modules, &mut references);
            if module.is_empty() {
                root_reexports = reexports(&tokens);
            }
        }

        let mut edges = BTreeMap::new();
        for reference in references {
            let mut to = reference.to;
            if let Some(first) = to.first()
                && let Some(module) = root_reexports.get(first)
            {
                to[0] = module.clone();
            }
            let common = reference
                .from
                .iter()
                .zip(&to)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= reference.from.len() || common >= to.len() {
                continue;
            }
            let from_child = reference.from[..=common].to_vec();
            let to_child = to[..=common].to_vec();
            if !modules.contains(&to_child) {
                continue;
            }
            edges
                .entry((from_child, to_child))
                .or_insert((reference.file, reference.line));
        }
        ModuleGraph { modules, edges }
    }

    /// One cycle per strongly connected group of modules, each as `[a, b, ..., a]`.
    fn cycles(&self) -> Vec<Vec<ModulePath>> {
        let mut next: BTreeMap<&ModulePath, Vec<&ModulePath>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            next.entry(from).or_default().push(to);
        }
        let mut cycles = Vec::new();
        let mut covered: BTreeSet<&ModulePath> = BTreeSet::new();
        for start in &self.modules {
            if covered.contains(start) {
                continue;
            }
            if let Some(cycle) = shortest_cycle_through(start, &next) {
                covered.extend(cycle.iter().copied());
                cycles.push(cycle.into_iter().cloned().collect());
            }
        }
        cycles
    }

    fn describe(&self, root: &Path, cycle: &[ModulePath]) -> String {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        let mut text = format!("  {}\n", names.join(" -> "));
        for pair in cycle.windows(2) {
            let (file, line) = &self.edges[&(pair[0].clone(), pair[1].clone())];
            let file = file.strip_prefix(root).unwrap_or(file);
            text.push_str(&format!(
                "    {} uses {}: {}:{}\n",
                pair[0].join("::"),
                pair[1].join("::"),
                file.display(),
                line
            ));
        }
        text
    }
}

/// Breadth-first search back to `start`, so the printed cycle is the shortest one.
fn shortest_cycle_through<'a>(
    start: &'a ModulePath,
    next: &BTreeMap<&'a ModulePath, Vec<&'a ModulePath>>,
) -> Option<Vec<&'a ModulePath>> {
    let mut came_from: BTreeMap<&ModulePath, &ModulePath> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for &to in next.get(module).into_iter().flatten() {
            if to == start {
                let mut between = Vec::new();
                let mut at = module;
                while at != start {
                    between.push(at);
                    at = came_from[at];
                }
                between.reverse();
                let mut cycle = vec![start];
                cycle.extend(between);
                cycle.push(start);
                return Some(cycle);
            }
            if !came_from.contains_key(to) {
                came_from.insert(to, module);
                queue.push_back(to);
            }
        }
    }
    None
}

fn collect_rs_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source directory") {
        let path = entry.expect("read directory entry").path();
        if path.is_dir() {
            collect_rs_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The module a file holds; `None` for a binary's root (`main.rs`, `bin/`), a crate of its own.
fn file_module(src: &Path, file: &Path) -> Option<ModulePath> {
    let relative = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts == ["main.rs"] || parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if !(stem == "mod" || parts.is_empty() && stem == "lib") {
        parts.push(stem.to_string());
    }
    Some(parts)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Identifiers, `::` and single punctuation with their line, without comments, strings and
/// character literals (so `"crate::x"` or a commented-out `use` is no edge).
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if (c == 'r' || c == 'b' && at(i + 1) == 'r')
            && matches!(at(i + 1 + usize::from(c == 'b')), '"' | '#')
        {
            // Raw string: r"..", r#".."#, br".."
            let mut j = i + 1 + usize::from(c == 'b');
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                // `r#ident`, a raw identifier.
                let start = j;
                while at(j).is_alphanumeric() || at(j) == '_' {
                    j += 1;
                }
                tokens.push((Token::Ident(chars[start..j].iter().collect()), line));
                i = j;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                if chars[j] == '\n' {
                    line += 1;
                }
                j += 1;
            }
            i = j;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                // Past the escaped character, which may itself be a quote: '\''.
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if c == 'b' && word == "b" && at(i) == '"' {
                continue; // b"..": the string follows
            }
            tokens.push((Token::Ident(word), line));
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

fn ident(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Ident(name), _)) => Some(name),
        _ => None,
    }
}

fn is(tokens: &[(Token, usize)], i: usize, token: &Token) -> bool {
    tokens.get(i).is_some_and(|(t, _)| t == token)
}

/// Finds inline modules and every `crate::`/`super::` path in one file.
fn scan_tokens(
    tokens: &[(Token, usize)],
    file_module: &ModulePath,
    file: &Path,
    modules: &mut BTreeSet<ModulePath>,
    references: &mut Vec<Reference>,
) {
    let mut module = file_module.clone();
    let mut depth = 0usize;
    // Brace depth at which each inline module opened.
    let mut inline_opened_at: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline_opened_at.last() == Some(&depth) {
                    inline_opened_at.pop();
                    module.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(name) = ident(tokens, i + 1)
                    && is(tokens, i + 2, &Token::Punct('{'))
                {
                    module.push(name.to_string());
                    modules.insert(module.clone());
                    inline_opened_at.push(depth);
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Token::Ident(word)
                if (word == "crate" || word == "super")
                    && is(tokens, i + 1, &Token::PathSep)
                    && !(i > 0 && is(tokens, i - 1, &Token::PathSep)) =>
            {
                let mut base: ModulePath = Vec::new();
                let mut j = i;
                if word == "super" {
                    let mut ups = 0;
                    while ident(tokens, j) == Some("super") && is(tokens, j + 1, &Token::PathSep) {
                        ups += 1;
                        j += 2;
                    }
                    base = module[..module.len().saturating_sub(ups)].to_vec();
                } else {
                    j += 2;
                }
                let mut paths = Vec::new();
                let end = use_tree(tokens, j, base, &mut paths);
                for to in paths {
                    references.push(Reference {
                        from: module.clone(),
                        to,
                        file: file.to_path_buf(),
                        line: *line,
                    });
                }
                i = end.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Reads a path or `use` tree starting at `i` below `prefix`; pushes each full path it names
/// and returns the index after it.
fn use_tree(
    tokens: &[(Token, usize)],
    mut i: usize,
    mut prefix: ModulePath,
    paths: &mut Vec<ModulePath>,
) -> usize {
    loop {
        if is(tokens, i, &Token::Punct('{')) {
            i += 1;
            while i < tokens.len() && !is(tokens, i, &Token::Punct('}')) {
                if is(tokens, i, &Token::Punct(',')) {
                    i += 1;
                    continue;
                }
                let next = use_tree(tokens, i, prefix.clone(), paths);
                // Skip what the tree did not consume (`as name`, `*`).
                i = next;
                while i < tokens.len()
                    && !is(tokens, i, &Token::Punct(','))
                    && !is(tokens, i, &Token::Punct('}'))
                {
                    i += 1;
                }
            }
            return i + 1;
        }
        match ident(tokens, i) {
            Some("self") => {}
            Some(name) => prefix.push(name.to_string()),
            None => {
                paths.push(prefix);
                return i;
            }
        }
        i += 1;
        if is(tokens, i, &Token::PathSep) {
            i += 1;
        } else {
            paths.push(prefix);
            return i;
        }
    }
}

/// `pub use module::{Item, ...};` at a crate root: item name → module.
fn reexports(tokens: &[(Token, usize)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for i in 0..tokens.len() {
        if ident(tokens, i) == Some("pub") && ident(tokens, i + 1) == Some("use") {
            let Some(module) = ident(tokens, i + 2) else {
                continue;
            };
            if !is(tokens, i + 3, &Token::PathSep) || module == "crate" {
                continue;
            }
            let mut paths = Vec::new();
            use_tree(tokens, i + 4, Vec::new(), &mut paths);
            for path in paths {
                if let Some(item) = path.last() {
                    map.insert(item.clone(), module.to_string());
                }
            }
        }
    }
    map
}
