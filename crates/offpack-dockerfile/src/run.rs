//! What a `RUN` step's shell command does with the network: package installs
//! offpack can serve offline (pip, npm) and downloads it cannot.
//!
//! This is a deliberately simple shell reader: it splits on `&&`, `||`, `;`, `|`,
//! `&` and newlines, removes quotes, and skips `VAR=value`, `sudo`, `env` and
//! shell keywords before looking at the command name. It does not run or expand
//! anything.

use serde::Serialize;

/// A package installation offpack can serve from its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "manager", rename_all = "lowercase")]
pub enum PackageInstall {
    /// `pip install …`, `python -m pip install …`, `uv pip install …`.
    Pip {
        /// `pip`, or `uv` for `uv pip install`.
        tool: String,
        /// `-r FILE` / `--requirement FILE`, as written (relative to the RUN's workdir).
        requirement_files: Vec<String>,
        /// `-c FILE` / `--constraint FILE`.
        constraint_files: Vec<String>,
        /// Positional requirements (`flask==3.0`, `.`, `-e ./pkg` paths), quotes removed.
        packages: Vec<String>,
    },
    /// `uv sync`, `pipenv install` / `pipenv sync`: an install from the project's lock file.
    #[serde(rename = "python-lock")]
    PythonLock {
        /// `uv` or `pipenv`.
        tool: String,
        /// `sync` or `install`.
        command: String,
    },
    /// `npm ci`, `npm install`, `yarn [install|add]`, `pnpm install`.
    Npm {
        /// `npm`, `yarn` or `pnpm`.
        tool: String,
        /// `ci` or `install`.
        command: String,
    },
}

/// A command that needs a network offpack does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkUse {
    /// Short form of what was run, e.g. `apt-get install`.
    pub what: String,
    /// Extra advice specific to the tool ("" when none).
    pub hint: &'static str,
}

/// Analysis of one shell script.
#[derive(Debug, Default)]
pub(crate) struct RunAnalysis {
    pub installs: Vec<PackageInstall>,
    pub network: Vec<NetworkUse>,
}

/// Analyses a shell script (a shell-form `RUN`, a `sh -c` argument or a heredoc body).
pub(crate) fn analyze_script(script: &str) -> RunAnalysis {
    let mut analysis = RunAnalysis::default();
    for words in simple_commands(script) {
        analyze_words(&words, &mut analysis);
    }
    analysis
}

/// Analyses an exec-form command (`RUN ["pip", "install", "x"]`).
pub(crate) fn analyze_exec(words: &[String]) -> RunAnalysis {
    let mut analysis = RunAnalysis::default();
    if let [shell, flag, script, ..] = words
        && is_shell(shell)
        && flag.starts_with('-')
        && flag.contains('c')
    {
        return analyze_script(script);
    }
    analyze_words(words, &mut analysis);
    analysis
}

pub(crate) fn is_shell(word: &str) -> bool {
    matches!(
        basename(word),
        "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh"
    )
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Splits a script into simple commands of unquoted words.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut has_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |word: &mut String, has_word: &mut bool, words: &mut Vec<String>| {
        if *has_word {
            words.push(std::mem::take(word));
            *has_word = false;
        }
    };
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(escaped) => {
                    word.push(escaped);
                    has_word = true;
                }
            },
            '\'' => {
                has_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                has_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                if !matches!(next, '"' | '\\' | '$' | '`') {
                                    word.push('\\');
                                }
                                word.push(next);
                            }
                        }
                        _ => word.push(c),
                    }
                }
            }
            '#' if !has_word => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut has_word, &mut words);
                commands.push(std::mem::take(&mut words));
            }
            ';' | '&' | '|' | '\n' | '(' | ')' | '{' | '}'
                if !(matches!(ch, '{' | '}') && has_word) =>
            {
                end_word(&mut word, &mut has_word, &mut words);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut has_word, &mut words),
            c => {
                word.push(c);
                has_word = true;
            }
        }
    }
    end_word(&mut word, &mut has_word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// Drops what precedes the real command: assignments, `sudo`, `env`, keywords.
fn command_words(words: &[String]) -> &[String] {
    let mut rest = words;
    loop {
        let Some((first, tail)) = rest.split_first() else {
            return rest;
        };
        let is_assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let skip = is_assignment
            || matches!(
                first.as_str(),
                "sudo"
                    | "env"
                    | "exec"
                    | "time"
                    | "nice"
                    | "nohup"
                    | "command"
                    | "then"
                    | "do"
                    | "else"
                    | "if"
                    | "while"
                    | "until"
                    | "!"
                    | "xargs"
            )
            || (first.starts_with('-') && rest.len() < words.len());
        if !skip {
            return rest;
        }
        rest = tail;
    }
}

/// The first word that is not an option, and the words after it.
fn subcommand<'a>(
    args: &'a [String],
    options_with_values: &[&str],
) -> Option<(&'a str, &'a [String])> {
    let mut i = 0;
    while let Some(word) = args.get(i) {
        if word.starts_with('-') {
            i += if options_with_values.contains(&word.as_str()) {
                2
            } else {
                1
            };
            continue;
        }
        return Some((word.as_str(), args.get(i + 1..).unwrap_or_default()));
    }
    None
}

fn has_flag(args: &[String], flags: &[&str]) -> bool {
    args.iter().any(|a| flags.contains(&a.as_str()))
}

fn analyze_words(words: &[String], out: &mut RunAnalysis) {
    let words = command_words(words);
    let Some((program, args)) = words.split_first() else {
        return;
    };
    let name = basename(program);
    let mut network =
        |what: String, hint: &'static str| out.network.push(NetworkUse { what, hint });
    let sub = subcommand(args, &[]);
    let sub_name = sub.map(|(s, _)| s).unwrap_or_default();

    if is_pip(name) {
        if let Some(install) = pip_install("pip", args) {
            out.installs.push(install);
        }
        return;
    }
    if name.starts_with("python") && args.first().is_some_and(|a| a == "-m") {
        if args.get(1).is_some_and(|m| m == "pip")
            && let Some(install) = pip_install("pip", args.get(2..).unwrap_or_default())
        {
            out.installs.push(install);
        }
        return;
    }
    match name {
        "uv" if sub_name == "pip" => {
            if let Some((_, rest)) = sub
                && let Some(install) = pip_install("uv", rest)
            {
                out.installs.push(install);
            }
        }
        "uv" if sub_name == "sync" => out.installs.push(python_lock("uv", "sync")),
        "pipenv" if sub_name == "sync" => out.installs.push(python_lock("pipenv", "sync")),
        // Both install what poetry.lock pins (`sync` also removes what it does not).
        "poetry" if matches!(sub_name, "install" | "sync") => {
            out.installs.push(python_lock("poetry", sub_name))
        }
        // Without package names it installs the lock; with them it resolves and locks anew.
        "pipenv"
            if sub_name == "install"
                && sub.is_some_and(|(_, rest)| rest.iter().all(|a| a.starts_with('-'))) =>
        {
            out.installs.push(python_lock("pipenv", "install"))
        }
        "npm" => match subcommand(args, &["--prefix", "-C", "--workspace", "-w"]).map(|(s, _)| s) {
            Some("ci" | "clean-install" | "install-clean" | "isntall-clean") => {
                out.installs.push(npm("npm", "ci"))
            }
            Some(
                "install" | "i" | "in" | "ins" | "inst" | "insta" | "instal" | "isnt" | "isnta"
                | "isntal" | "isntall" | "add",
            ) => out.installs.push(npm("npm", "install")),
            _ => {}
        },
        "yarn" => match sub_name {
            "" | "install" | "add" => out.installs.push(npm("yarn", "install")),
            "set" | "dlx" => network(format!("yarn {sub_name}"), ""),
            _ => {}
        },
        "pnpm" => match sub_name {
            "install" | "i" | "add" => out.installs.push(npm("pnpm", "install")),
            "fetch" | "dlx" => network(format!("pnpm {sub_name}"), ""),
            _ => {}
        },
        "apt-get" | "apt" | "aptitude"
            if matches!(
                sub_name,
                "install"
                    | "update"
                    | "upgrade"
                    | "dist-upgrade"
                    | "full-upgrade"
                    | "build-dep"
                    | "source"
                    | "download"
            ) =>
        {
            network(format!("{name} {sub_name}"), HINT_OS_PACKAGES)
        }
        "apk"
            if matches!(sub_name, "add" | "update" | "upgrade" | "fetch")
                && !has_flag(args, &["--no-network"]) =>
        {
            network(format!("apk {sub_name}"), HINT_OS_PACKAGES)
        }
        "yum" | "dnf" | "microdnf" | "tdnf"
            if matches!(
                sub_name,
                "install"
                    | "update"
                    | "upgrade"
                    | "makecache"
                    | "groupinstall"
                    | "reinstall"
                    | "downgrade"
                    | "distro-sync"
            ) =>
        {
            network(format!("{name} {sub_name}"), HINT_OS_PACKAGES)
        }
        "zypper"
            if matches!(
                sub_name,
                "install" | "in" | "refresh" | "ref" | "update" | "up" | "dist-upgrade" | "dup"
            ) =>
        {
            network(format!("zypper {sub_name}"), HINT_OS_PACKAGES)
        }
        "pacman" if args.iter().any(|a| a.starts_with("-S")) => {
            network("pacman -S".into(), HINT_OS_PACKAGES)
        }
        "curl" | "wget" => network(name.to_string(), HINT_DOWNLOAD),
        "git"
            if matches!(
                sub_name,
                "clone" | "fetch" | "pull" | "submodule" | "ls-remote"
            ) =>
        {
            network(format!("git {sub_name}"), HINT_DOWNLOAD)
        }
        "go" => match sub {
            Some(("mod", rest)) if rest.first().is_some_and(|s| s == "download") => {
                network("go mod download".into(), HINT_GO)
            }
            Some(("get", _)) => network("go get".into(), HINT_GO),
            Some(("install", rest)) if rest.iter().any(|a| a.contains('@')) => {
                network("go install pkg@version".into(), HINT_GO)
            }
            _ => {}
        },
        "cargo" => match sub_name {
            "fetch" | "install" => network(format!("cargo {sub_name}"), HINT_CARGO),
            "build" | "b" | "run" | "r" | "test" | "t" | "check" | "c"
                if !has_flag(args, &["--offline", "--frozen"]) =>
            {
                network(format!("cargo {sub_name}"), HINT_CARGO)
            }
            _ => {}
        },
        "gem" if sub_name == "install" && !has_flag(args, &["--local", "-l"]) => {
            network("gem install".into(), "")
        }
        "bundle" | "bundler"
            if matches!(sub_name, "install" | "update") && !has_flag(args, &["--local"]) =>
        {
            network(format!("bundle {sub_name}"), "")
        }
        "composer"
            if matches!(
                sub_name,
                "install" | "update" | "require" | "create-project"
            ) =>
        {
            network(format!("composer {sub_name}"), "")
        }
        "poetry" if matches!(sub_name, "add" | "update" | "lock") => {
            network(format!("poetry {sub_name}"), HINT_PYTHON_TOOLS)
        }
        "pipenv" if matches!(sub_name, "install" | "update") => {
            network(format!("pipenv {sub_name}"), HINT_PYTHON_TOOLS)
        }
        "uv" if matches!(sub_name, "add" | "tool" | "run" | "lock") => {
            network(format!("uv {sub_name}"), HINT_PYTHON_TOOLS)
        }
        "conda" | "mamba" | "micromamba" if matches!(sub_name, "install" | "create" | "update") => {
            network(format!("{name} {sub_name}"), "")
        }
        "npx" | "bunx" => network(name.to_string(), HINT_NPX),
        "corepack" if matches!(sub_name, "prepare" | "install" | "use" | "up") => {
            network(format!("corepack {sub_name}"), HINT_NPX)
        }
        "bun" if matches!(sub_name, "install" | "i" | "add") => {
            network(format!("bun {sub_name}"), "")
        }
        "mvn" | "mvnw" | "gradle" | "gradlew" | "sbt" => network(name.to_string(), ""),
        "dotnet" if matches!(sub_name, "restore" | "build" | "publish" | "add" | "tool") => {
            network(format!("dotnet {sub_name}"), "")
        }
        "pecl" | "cpanm" | "luarocks" | "opam" if sub_name == "install" || name == "cpanm" => {
            network(format!("{name} {sub_name}").trim().to_string(), "")
        }
        "add-apt-repository" => network(name.to_string(), HINT_OS_PACKAGES),
        _ => {}
    }
}

const HINT_OS_PACKAGES: &str = "install the OS packages in a base image built on the networked side (offpack does not carry distribution package mirrors)";
const HINT_DOWNLOAD: &str =
    "download the file on the networked side into the build context and COPY it";
const HINT_GO: &str = "vendor the modules (`go mod vendor`) and build with `-mod=vendor`";
const HINT_CARGO: &str = "vendor the crates (`cargo vendor`) and build with `--offline`";
const HINT_PYTHON_TOOLS: &str =
    "export a requirements.txt and use `pip install -r`, which offpack serves";
const HINT_NPX: &str =
    "add the package to package.json so `npm ci` installs it, which offpack serves";

fn is_pip(name: &str) -> bool {
    name.strip_prefix("pip")
        .is_some_and(|version| version.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn python_lock(tool: &str, command: &str) -> PackageInstall {
    PackageInstall::PythonLock {
        tool: tool.to_string(),
        command: command.to_string(),
    }
}

fn npm(tool: &str, command: &str) -> PackageInstall {
    PackageInstall::Npm {
        tool: tool.to_string(),
        command: command.to_string(),
    }
}

/// pip options that take a value in the next word.
const PIP_VALUE_OPTIONS: &[&str] = &[
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--trusted-host",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
    "--progress-bar",
    "--cache-dir",
    "--src",
    "--upgrade-strategy",
    "--log",
    "--proxy",
    "--retries",
    "--timeout",
    "--exists-action",
    "--cert",
    "--client-cert",
    "--global-option",
    "--install-option",
    "--config-settings",
    "-C",
    "--report",
    "--root-user-action",
    "--python",
    "--keyring-provider",
];

/// Parses `pip [global options] install [options] [requirements]`.
fn pip_install(tool: &str, args: &[String]) -> Option<PackageInstall> {
    let (sub, rest) = subcommand(args, PIP_VALUE_OPTIONS)?;
    if sub != "install" {
        return None;
    }
    let mut requirement_files = Vec::new();
    let mut constraint_files = Vec::new();
    let mut packages = Vec::new();
    let mut i = 0;
    while let Some(word) = rest.get(i) {
        i += 1;
        let value_of = |short: &str, long: &str, i: &mut usize| -> Option<String> {
            if word == short || word == long {
                let value = rest.get(*i).cloned();
                *i += 1;
                return value;
            }
            if let Some(v) = word.strip_prefix(&format!("{long}=")) {
                return Some(v.to_string());
            }
            word.strip_prefix(short)
                .filter(|v| !v.is_empty() && !short.is_empty())
                .map(str::to_string)
        };
        if let Some(file) = value_of("-r", "--requirement", &mut i) {
            requirement_files.push(file);
        } else if let Some(file) = value_of("-c", "--constraint", &mut i) {
            constraint_files.push(file);
        } else if let Some(path) = value_of("-e", "--editable", &mut i) {
            packages.push(path);
        } else if PIP_VALUE_OPTIONS.contains(&word.as_str()) {
            i += 1;
        } else if !word.starts_with('-') {
            packages.push(word.clone());
        }
    }
    Some(PackageInstall::Pip {
        tool: tool.to_string(),
        requirement_files,
        constraint_files,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pip(reqs: &[&str], packages: &[&str]) -> PackageInstall {
        PackageInstall::Pip {
            tool: "pip".into(),
            requirement_files: reqs.iter().map(|s| s.to_string()).collect(),
            constraint_files: vec![],
            packages: packages.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn network(script: &str) -> Vec<String> {
        analyze_script(script)
            .network
            .into_iter()
            .map(|n| n.what)
            .collect()
    }

    #[test]
    fn pip_installs_in_chains() {
        let a = analyze_script(
            "set -eux; pip install --no-cache-dir -r requirements.txt && python3 -m pip install 'flask==3.0' gunicorn\n",
        );
        assert_eq!(
            a.installs,
            [
                pip(&["requirements.txt"], &[]),
                pip(&[], &["flask==3.0", "gunicorn"])
            ]
        );
        assert!(a.network.is_empty());
    }

    #[test]
    fn pip_option_forms() {
        let a = analyze_script(
            "pip3 install -rreq/base.txt --requirement=req/dev.txt -c constraints.txt -i https://x/simple -e ./lib .",
        );
        assert_eq!(
            a.installs,
            [PackageInstall::Pip {
                tool: "pip".into(),
                requirement_files: vec!["req/base.txt".into(), "req/dev.txt".into()],
                constraint_files: vec!["constraints.txt".into()],
                packages: vec!["./lib".into(), ".".into()],
            }]
        );
        assert!(
            analyze_script("pip --version && pip freeze")
                .installs
                .is_empty()
        );
        let a = analyze_script("uv pip install --system -r requirements.txt");
        assert!(matches!(&a.installs[0], PackageInstall::Pip { tool, .. } if tool == "uv"));
    }

    #[test]
    fn python_lock_installs() {
        let lock = |tool: &str, command: &str| python_lock(tool, command);
        let a = analyze_script(
            "uv sync --frozen --no-dev --no-install-project --no-editable && uv sync --locked",
        );
        assert_eq!(a.installs, [lock("uv", "sync"), lock("uv", "sync")]);
        assert!(a.network.is_empty(), "{:?}", a.network);
        let a = analyze_script(
            "pipenv install --deploy --system; pipenv sync --dev; PIPENV_VENV_IN_PROJECT=1 pipenv install",
        );
        assert_eq!(
            a.installs,
            [
                lock("pipenv", "install"),
                lock("pipenv", "sync"),
                lock("pipenv", "install")
            ]
        );
        assert!(a.network.is_empty(), "{:?}", a.network);
        let a = analyze_script("poetry install --no-root --only main && poetry sync");
        assert_eq!(
            a.installs,
            [lock("poetry", "install"), lock("poetry", "sync")]
        );
        assert!(a.network.is_empty(), "{:?}", a.network);
        // Adding a package or locking anew needs the index.
        assert_eq!(
            network("pipenv install flask && uv lock && uv add six && poetry lock && poetry add x"),
            [
                "pipenv install",
                "uv lock",
                "uv add",
                "poetry lock",
                "poetry add"
            ]
        );
        assert!(analyze_script("pipenv install flask").installs.is_empty());
    }

    #[test]
    fn npm_family() {
        let cmds = |s: &str| {
            analyze_script(s)
                .installs
                .into_iter()
                .map(|i| match i {
                    PackageInstall::Npm { tool, command } => format!("{tool} {command}"),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(cmds("npm ci --omit=dev && npm run build"), ["npm ci"]);
        assert_eq!(
            cmds("npm i -g typescript; yarn; pnpm install --frozen-lockfile"),
            ["npm install", "yarn install", "pnpm install"]
        );
        assert_eq!(cmds("NODE_ENV=production npm --prefix /app ci"), ["npm ci"]);
    }

    #[test]
    fn network_commands_are_found() {
        assert_eq!(
            network(
                "apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*"
            ),
            ["apt-get update", "apt-get install"]
        );
        assert_eq!(network("apk add --no-cache git"), ["apk add"]);
        assert_eq!(network("sudo -E dnf -y install gcc"), ["dnf install"]);
        assert_eq!(network("curl -fsSL https://x | sh"), ["curl"]);
        assert_eq!(network("git clone https://x/y.git /src"), ["git clone"]);
        assert_eq!(
            network("go mod download && go build ./..."),
            ["go mod download"]
        );
        assert_eq!(network("cargo build --release"), ["cargo build"]);
        assert!(network("cargo build --release --offline").is_empty());
        assert_eq!(
            network("gem install bundler && composer install"),
            ["gem install", "composer install"]
        );
        assert_eq!(network("if true; then wget -q x; fi"), ["wget"]);
        assert!(network("echo apt-get install x # wget").is_empty());
        assert!(network("pip install x && npm ci && apk info").is_empty());
    }

    #[test]
    fn exec_form_and_sh_c() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = analyze_exec(&words(&["pip", "install", "-r", "r.txt"]));
        assert_eq!(a.installs, [pip(&["r.txt"], &[])]);
        let a = analyze_exec(&words(&["/bin/sh", "-c", "apt-get update"]));
        assert_eq!(a.network[0].what, "apt-get update");
    }
}
