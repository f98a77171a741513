//! A `Pipfile.lock` installed by the real pipenv from what `offpack serve` serves, with no other
//! network: the networked side bundles the lock's pins (`offpack bundle --packages-for`, pip in
//! `python:3.11-slim`, from PyPI); the far side serves that bundle and rewrites the lock's sources
//! (`offpack_packages::pip::pipfile_lock::rewrite_for_server`), and `pipenv install --deploy` runs
//! in a network namespace whose only interface is loopback, so PyPI cannot answer and nothing
//! leaves the host.
//!
//! Fails, never skips, without the engine, `python:3.11-slim`, root (for the namespace) or pipenv
//! (`scripts/test-env up` installs it into `$OFFPACK_TEST_CACHE/pipenv`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use common::offline::run_within;
use common::{ok, stderr, stdout};
use offpack_packages::pip::lockfile::{LockedSource, requirements_for_pip};
use offpack_packages::pip::pipfile_lock;
use serde_json::json;

const IMAGE: &str = "python:3.11-slim";
/// Where offpack serves inside the namespace: the default bridge's gateway, where a rebuild serves
/// build steps, and an address pip does not trust over plain HTTP by itself (it does 127.0.0.0/8),
/// so the lock's `verify_ssl: false` is what lets pipenv use it.
const SERVE_HOST: &str = "172.17.0.1";
const PIPENV_LIMIT: Duration = Duration::from_secs(300);

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("tests/fixtures/packages/pipenv")
        .join(name)
}

/// The pipenv `scripts/test-env` installs (`OFFPACK_TEST_PIPENV` names another).
fn pipenv_program() -> PathBuf {
    let program = match std::env::var_os("OFFPACK_TEST_PIPENV") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(
            std::env::var_os("OFFPACK_TEST_CACHE").unwrap_or("/var/cache/offpack-test".into()),
        )
        .join("pipenv/bin/pipenv"),
    };
    assert!(
        program.is_file(),
        "pipenv is not at {}: run `scripts/test-env up` (or `scripts/test-env pipenv`)",
        program.display()
    );
    program
}

/// A network namespace with loopback only (and [`SERVE_HOST`] on it), alive while this lives:
/// its first process sleeps, and every command runs in it through `nsenter`.
struct Namespace {
    holder: Child,
}

impl Namespace {
    fn new() -> Namespace {
        let script = format!(
            "ip link set lo up && ip addr add {SERVE_HOST}/32 dev lo && echo ready && exec sleep 3600"
        );
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line, "ready\n",
            "cannot make a network namespace (this test runs as root)"
        );
        Namespace { holder }
    }

    /// `cmd` (program, arguments, environment, directory) run inside the namespace.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut inside = Command::new("nsenter");
        inside
            .arg(format!("--net=/proc/{}/ns/net", self.holder.id()))
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            inside.current_dir(dir);
        }
        inside
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(program);
        cmd.args(args);
        stdout(&ok(&mut self.wrap(&cmd)))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// pipenv with nothing of this machine's settings or caches: its home, caches and the project's
/// venv (`.venv`) are under `home` and `project`, so every file comes from the index.
fn pipenv(project: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(pipenv_program());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("PIP_")
            || key_text.starts_with("PIPENV_")
            || key_text.starts_with("VIRTUALENV_")
            || key_text.to_ascii_lowercase().ends_with("_proxy")
            || key_text == "VIRTUAL_ENV"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(project)
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("PIPENV_VENV_IN_PROJECT", "1")
        .env("PIPENV_IGNORE_VIRTUALENVS", "1")
        .env("PIPENV_NOSPIN", "1")
        .env("PIPENV_YES", "1")
        // virtualenv (which pipenv makes the venv with) otherwise starts a background
        // `pip download pip setuptools` from PyPI to refresh its seed wheels (measured: the only
        // outside lookups of the install, DNS for pypi.org); it has nothing to do with the lock.
        .env("VIRTUALENV_NO_PERIODIC_UPDATE", "1");
    cmd
}

/// Copies a fixture project (Pipfile and Pipfile.lock) to `dest`.
fn project_from(fixture_dir: &Path, dest: &Path) {
    fs_err::create_dir_all(dest).unwrap();
    for file in ["Pipfile", "Pipfile.lock"] {
        fs_err::copy(fixture_dir.join(file), dest.join(file)).unwrap();
    }
}

/// `offpack bundle --packages-for` of a request whose one Python request is the fixture lock's
/// pins, as `requirements_for_pip` writes them.
fn bundle_the_lock(work: &Path, lock_text: &str) -> PathBuf {
    let locked = pipfile_lock::parse("Pipfile.lock", lock_text).expect("the fixture lock parses");
    assert!(locked.iter().all(|d| d.source == LockedSource::Index));
    let requirements = requirements_for_pip(&locked);
    let platform = match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    };
    let request = json!({
        "offpack_request": 1,
        "project": "pipenv-test",
        "created": "2026-12-04T22:00:00Z",
        "python": [{
            "service": "app",
            "image": IMAGE,
            "image_id": common::image_id(IMAGE).unwrap(),
            "platform": platform,
            "files": [{"path": "Pipfile.lock.txt", "content": requirements}],
            "requirement_files": ["Pipfile.lock.txt"],
        }],
    });
    let request_file = work.join("offpack-request.json");
    fs_err::write(&request_file, request.to_string()).unwrap();
    let bundle = work.join("pkgs.offpack");
    let _network = common::offline::build_network();
    ok(common::offpack(work)
        .args(["bundle", "--packages-for"])
        .arg(&request_file)
        .arg("-o")
        .arg(&bundle));
    bundle
}

/// `offpack serve` inside the namespace; `--print-env` rather than `--json` because its human
/// stderr ends with the count of requests served.
struct Served {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr_file: PathBuf,
}

impl Served {
    fn start(ns: &Namespace, work: &Path, bundle: &Path) -> Served {
        let mut serve = common::offpack(work);
        serve
            .arg("serve")
            .arg(bundle)
            .args(["--host", SERVE_HOST, "--port", "0", "--print-env"]);
        let stderr_file = work.join("serve.stderr");
        let mut cmd = ns.wrap(&serve);
        cmd.stdout(Stdio::piped())
            .stderr(fs_err::File::create(&stderr_file).unwrap().into_parts().0);
        eprintln!("$ {cmd:?}");
        let mut child = cmd.spawn().expect("start offpack serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Served {
            child,
            stdout,
            stderr_file,
        }
    }

    /// The index URL, from the `export PIP_INDEX_URL='…'` line.
    fn index_url(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end()
            .strip_prefix("export PIP_INDEX_URL='")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap_or_else(|| panic!("not an index URL line from offpack serve: {line:?}"))
            .to_owned()
    }

    /// SIGTERM (nsenter execs offpack, so the child is offpack); returns the requests served.
    fn terminate(mut self) -> u64 {
        ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let status = self.child.wait().unwrap();
        let err = fs_err::read_to_string(&self.stderr_file).unwrap();
        eprintln!("serve stderr:\n{err}");
        assert!(status.success(), "offpack serve exited {status}");
        err.lines()
            .find_map(|l| l.strip_prefix("stopped after "))
            .and_then(|rest| rest.strip_suffix(" requests"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no request count in {err}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn output_text(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
fn pipenv_installs_a_rewritten_lock_from_offpack_serve_with_loopback_only() {
    common::require_engine();
    assert!(
        common::image_exists(IMAGE),
        "{IMAGE} is missing: run `scripts/test-env up`"
    );
    pipenv_program();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let lock_text = fs_err::read_to_string(fixture("Pipfile.lock")).unwrap();

    // Networked side: the lock's pins, resolved by pip in the image.
    let bundle = bundle_the_lock(work, &lock_text);

    // Far side: loopback only. No route, no other interface: PyPI is not there to answer.
    let ns = Namespace::new();
    let links = ns.run("ip", &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.starts_with("1: lo:"), "{links}");
    assert_eq!(ns.run("ip", &["route", "show"]), "");
    assert_eq!(ns.run("ip", &["-6", "route", "show"]).lines().count(), 0);

    let mut served = Served::start(&ns, work, &bundle);
    let index_url = served.index_url();
    assert!(
        index_url.starts_with(&format!("http://{SERVE_HOST}:")) && index_url.ends_with("/simple/"),
        "{index_url}"
    );

    let home = work.join("home");
    let install = |project: &Path| {
        let out = run_within(
            &mut ns.wrap(&pipenv(project, &home, &["install", "--deploy"])),
            PIPENV_LIMIT,
        );
        let text = output_text(&out);
        (out.status.success(), text)
    };

    // Controls. The lock as pipenv wrote it: PyPI does not answer in here.
    let original = work.join("original");
    project_from(&fixture(""), &original);
    let (installed, text) = install(&original);
    assert!(
        !installed,
        "pipenv reached PyPI from the namespace:\n{text}"
    );
    assert!(text.contains("bottle==0.13.4"), "{text}");
    // The server's URL with `verify_ssl` left true: pip ignores a plain-HTTP index it does not
    // trust, so the rewrite must say `verify_ssl: false` (pipenv then passes `--trusted-host`).
    let untrusted = work.join("untrusted");
    project_from(&fixture(""), &untrusted);
    let rewritten = pipfile_lock::rewrite_for_server("Pipfile.lock", &lock_text, &index_url)
        .expect("the fixture lock rewrites");
    fs_err::write(
        untrusted.join("Pipfile.lock"),
        rewritten.replace("\"verify_ssl\": false", "\"verify_ssl\": true"),
    )
    .unwrap();
    let (installed, text) = install(&untrusted);
    assert!(
        !installed,
        "pip used an untrusted plain-HTTP index:\n{text}"
    );
    assert!(
        text.contains(&format!("{SERVE_HOST} is not a trusted or secure host")),
        "{text}"
    );

    // The lock as a rebuild sends it; the Pipfile as the user wrote it (pypi.org).
    let project = work.join("project");
    project_from(&fixture(""), &project);
    fs_err::write(project.join("Pipfile.lock"), &rewritten).unwrap();
    let (installed, text) = install(&project);
    assert!(installed, "pipenv install --deploy failed:\n{text}");
    // `--deploy` compares the lock's `_meta.hash` with the Pipfile, and pipenv leaves the lock
    // as it is.
    assert_eq!(
        fs_err::read_to_string(project.join("Pipfile.lock")).unwrap(),
        rewritten
    );
    let imported = ok(Command::new(project.join(".venv/bin/python")).args([
        "-c",
        "import bottle, six; print(bottle.__version__, six.__version__)",
    ]));
    assert_eq!(stdout(&imported).trim(), "0.13.4 1.16.0");

    // A lock naming a package the bundle does not carry (idna): pipenv fails with pip's own error.
    let more = work.join("not-carried");
    project_from(&fixture("not-carried"), &more);
    let more_lock = fs_err::read_to_string(more.join("Pipfile.lock")).unwrap();
    fs_err::write(
        more.join("Pipfile.lock"),
        pipfile_lock::rewrite_for_server("Pipfile.lock", &more_lock, &index_url).unwrap(),
    )
    .unwrap();
    let (installed, text) = install(&more);
    assert!(!installed, "pipenv installed idna from nowhere:\n{text}");
    assert!(
        text.contains("No matching distribution found for idna==3.7"),
        "not pip's error for the missing package:\n{text}"
    );
    assert!(!text.contains("out of date"), "{text}");

    // The server answered: index pages and wheels of bottle and six, idna's 404 (and the pages the
    // untrusted control did not ask for, since pip ignored the index).
    let requests = served.terminate();
    assert!(requests >= 5, "offpack served {requests} requests");
}
