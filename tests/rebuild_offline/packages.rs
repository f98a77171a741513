//! Issue 19: a changed requirements file or lock file rebuilds offline from the packages the
//! bundle carried, with the Dockerfile unchanged (decision 0085). Networked side with real PyPI
//! (Python) or the fixture npm registry playing the public one (npm); far side with the build
//! network cut except offpack's package port.

use super::*;
use crate::common::npm_registry::{NpmFixtureRegistry, fixture_packages_dir, npm_install};

fn packages_of(case: &Case, bundle: &Path) -> Vec<Value> {
    let mut cmd = case.offpack();
    cmd.args(["inspect", "--json"]).arg(bundle);
    let out = case.ok(&mut cmd);
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("inspect --json");
    doc["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("`inspect --json` lists no packages: {doc}"))
        .clone()
}

fn field<'a>(package: &'a Value, name: &str) -> &'a str {
    package[name].as_str().unwrap_or_default()
}

/// `docker run --rm IMAGE`: what the app prints.
fn run_image(case: &Case, image: &str) -> String {
    let out = case.docker(&["run", "--rm", "--network", "none", image]);
    assert!(out.status.success(), "the rebuilt image does not run");
    stdout(&out)
}

fn append(case: &Case, relative: &str, lines: &str) {
    let path = case.path().join(relative);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(lines);
    case.change(relative, text.trim_end());
}

const SIX: &str =
    "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n";
const IDNA: &str =
    "idna==3.7 --hash=sha256:82fee1fc78add43492d3a1898bfa6d8a904cc97d8427f683ed8e798d07761aa0\n";

#[test]
fn python_requirements_change_rebuilds_offline_from_carried_wheels() {
    let mut case = Case::new("py-packages", "../packages/python");
    let manifest = case.bundle_with(&["--packages", "planned-requirements.txt"]);
    let bundle = case.bundle.clone();

    // Each package once, resolved for the image's Python (3.11, glibc, x86_64), the sdist built.
    let packages = packages_of(&case, &bundle);
    let names: Vec<String> = packages
        .iter()
        .map(|p| field(p, "name").to_lowercase())
        .collect();
    for wanted in ["bottle", "markupsafe", "docopt", "six"] {
        assert_eq!(
            names.iter().filter(|n| *n == wanted).count(),
            1,
            "{wanted} carried once: {packages:?}"
        );
    }
    let markupsafe = packages
        .iter()
        .find(|p| field(p, "name").eq_ignore_ascii_case("markupsafe"))
        .unwrap();
    assert!(
        field(markupsafe, "filename").contains("cp311-cp311-manylinux"),
        "the platform wheel is the image's (cp311, manylinux), not the host's: {markupsafe}"
    );
    let docopt = packages
        .iter()
        .find(|p| field(p, "name") == "docopt")
        .unwrap();
    assert!(
        field(docopt, "filename").ends_with(".whl"),
        "the sdist-only package is carried as a wheel built on the networked side: {docopt}"
    );
    assert!(
        packages.iter().all(|p| p["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "api"))),
        "{packages:?}"
    );

    let api = case.image_of("api");
    let cut = case.far_side(&manifest);

    // An app code change: the install step stays cached, the image holds no trace of offpack.
    append(&case, "api/app.py", "print('code change')\n");
    let reports = case.rebuild(&["api"]);
    only(&reports, "api").assert_ran_exactly(&["COPY . ."]);
    let requirements_in_image = case.docker(&["run", "--rm", &api, "cat", "requirements.txt"]);
    assert!(
        !stdout(&requirements_in_image).contains("offpack"),
        "an unchanged requirements file is sent as it is"
    );

    // A requirements change to a version `--packages` carried: the install step runs, from offpack.
    append(&case, "api/requirements.txt", SIX);
    let reports = case.rebuild(&["api"]);
    let report = only(&reports, "api");
    assert!(
        report.ran().iter().any(|s| s.contains("pip install")),
        "the install step ran: {:?}",
        report.steps
    );
    let printed = run_image(&case, &api);
    for line in [
        "bottle 0.13.4",
        "MarkupSafe 2.1.5",
        "docopt 0.6.2",
        "six 1.16.0",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    let env = case.docker(&["image", "inspect", "--format", "{{json .Config.Env}}", &api]);
    assert!(
        !stdout(&env).to_lowercase().contains("offpack"),
        "no offpack setting in the image's environment: {}",
        stdout(&env)
    );
    // Rebuilt again with nothing changed: the rewritten file is the same, so every step is cached.
    let reports = case.rebuild(&["api"]);
    only(&reports, "api").assert_all_cached();

    // A package no bundle carried: named before anything is built, with a request for it.
    append(&case, "api/requirements.txt", IDNA);
    let cut = missing_package_loop(
        &mut case,
        cut,
        "api",
        "idna==3.7 (requirements.txt:",
        "bottle",
        "pip install",
        &api,
    );

    // A package file changed in the far side's store is named before anything is built.
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(case.state.path().join("packages/index.json"))
            .expect("store index"),
    )
    .expect("store index is JSON");
    let six = index
        .as_array()
        .expect("index lists packages")
        .iter()
        .find(|p| field(p, "name") == "six")
        .expect("six is in the store");
    let hex = field(six, "digest")
        .trim_start_matches("sha256:")
        .to_string();
    let blob = case.state.path().join("packages/blobs/sha256").join(&hex);
    let mut bytes = std::fs::read(&blob).expect("read blob");
    bytes[100] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    case.change("api/requirements.txt", &format!("bottle==0.13.4 --hash=sha256:045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e\n{SIX}"));
    let mut cmd = case.offpack();
    cmd.args(["rebuild", "api"]);
    let out = case.run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a corrupt store fails the check"
    );
    let err = stderr(&out);
    assert!(err.contains("six") && err.contains(&hex[..12]), "{err}");
    drop(cut);
}

/// The fixture web service: `npm ci` from its lock, the Dockerfile as users write it.
const WEB_DOCKERFILE: &str = "FROM node:18-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
CMD [\"node\", \"index.js\"]
";

/// Prints `path version` for every package npm installed.
const WEB_INDEX: &str = "const lock = require('./node_modules/.package-lock.json');
for (const [path, meta] of Object.entries(lock.packages)) console.log(path, meta.version);
";

/// The packages a lock installs on linux/x64, as `node_modules/… version` lines, sorted.
fn lock_tree(lock: &Path) -> Vec<String> {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(lock).expect("lock")).expect("lock JSON");
    let mut tree: Vec<String> = doc["packages"]
        .as_object()
        .expect("lockfileVersion 3 packages")
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .filter(|(_, meta)| {
            let allows = |key: &str, value: &str| {
                meta[key]
                    .as_array()
                    .is_none_or(|list| list.iter().any(|v| v == value))
            };
            allows("os", "linux") && allows("cpu", "x64")
        })
        .map(|(path, meta)| format!("{path} {}", meta["version"].as_str().unwrap_or_default()))
        .collect();
    tree.sort();
    tree
}

fn npm_app(registry: &NpmFixtureRegistry, dir: &Path, dependencies: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let deps: serde_json::Map<String, Value> = dependencies
        .iter()
        .map(|(name, range)| (name.to_string(), Value::from(*range)))
        .collect();
    let manifest = serde_json::json!({
        "name": "offpack-fixture-web",
        "version": "1.0.0",
        "private": true,
        "dependencies": deps,
    });
    std::fs::write(
        dir.join("package.json"),
        serde_json::to_string_pretty(&manifest).expect("JSON"),
    )
    .expect("write package.json");
    npm_install(registry, dir);
    std::fs::remove_dir_all(dir.join("node_modules")).expect("remove node_modules");
}

#[test]
fn npm_lock_change_rebuilds_offline_with_the_identical_tree() {
    let mut case = Case::new("npm-packages", "../packages/empty");
    // Plays registry.npmjs.org on the networked side, where the bundle's own build runs `npm ci`
    // against it, so it listens where build containers reach the host.
    let registry = NpmFixtureRegistry::start_at(&fixture_packages_dir(), default_bridge().gateway);
    let web = case.path().join("web");
    npm_app(
        &registry,
        &web,
        &[
            ("@offpack-fixture/util", "1.0.0"),
            ("offpack-fixture-native", "1.0.0"),
            ("offpack-fixture-base", "1.0.0"),
        ],
    );
    std::fs::write(web.join("Dockerfile"), WEB_DOCKERFILE).expect("Dockerfile");
    std::fs::write(web.join("index.js"), WEB_INDEX).expect("index.js");
    std::fs::write(web.join(".dockerignore"), "node_modules\n").expect(".dockerignore");
    std::fs::write(
        case.path().join("compose.yaml"),
        "services:\n  web:\n    build: ./web\n",
    )
    .expect("compose.yaml");
    // The change the far side plans: base 1.1.0, and a new package.
    let next = case.path().join("next");
    npm_app(
        &registry,
        &next,
        &[
            ("@offpack-fixture/util", "1.0.0"),
            ("offpack-fixture-native", "1.0.0"),
            ("offpack-fixture-base", "1.1.0"),
            ("offpack-fixture-right", "1.0.0"),
        ],
    );

    let manifest = case.bundle_with(&["--packages", "next/package-lock.json"]);
    let packages = packages_of(&case, &case.bundle);
    let carried: Vec<String> = packages
        .iter()
        .map(|p| format!("{}@{}", field(p, "name"), field(p, "version")))
        .collect();
    for wanted in [
        "offpack-fixture-base@1.0.0",
        "offpack-fixture-base@1.1.0",
        "offpack-fixture-left@1.0.0",
        "offpack-fixture-right@1.0.0",
        "@offpack-fixture/util@1.0.0",
        "@offpack-fixture/native-linux-x64@1.0.0",
    ] {
        assert_eq!(
            carried.iter().filter(|c| *c == wanted).count(),
            1,
            "{wanted} carried once: {carried:?}"
        );
    }
    assert!(
        !carried.iter().any(|c| c.contains("darwin")),
        "a platform package of another platform is left out: {carried:?}"
    );
    assert!(
        packages
            .iter()
            .all(|p| field(p, "integrity").starts_with("sha512-")),
        "{packages:?}"
    );
    drop(registry);

    let image = case.image_of("web");
    let cut = case.far_side(&manifest);
    for file in ["package.json", "package-lock.json"] {
        let text = std::fs::read_to_string(next.join(file)).expect("next");
        std::fs::write(web.join(file), text).expect("write");
    }
    let reports = case.rebuild(&["web"]);
    let report = only(&reports, "web");
    assert!(
        report.ran().iter().any(|s| s.contains("npm ci")),
        "npm ci ran: {:?}",
        report.steps
    );
    let out = case.docker(&["run", "--rm", "--network", "none", &image]);
    assert!(out.status.success());
    let mut installed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    installed.sort();
    assert_eq!(
        installed,
        lock_tree(&next.join("package-lock.json")),
        "npm ci behind the gap installed exactly the lock's tree"
    );
    drop(cut);
}

#[test]
fn a_tarball_that_does_not_match_its_integrity_fails_the_bundle_naming_it() {
    let case = Case::new("npm-corrupt", "../packages/empty");
    let registry = NpmFixtureRegistry::start_at(&fixture_packages_dir(), default_bridge().gateway);
    let web = case.path().join("web");
    npm_app(&registry, &web, &[("offpack-fixture-left", "1.0.0")]);
    std::fs::write(web.join("Dockerfile"), WEB_DOCKERFILE).expect("Dockerfile");
    std::fs::write(web.join("index.js"), WEB_INDEX).expect("index.js");
    std::fs::write(
        case.path().join("compose.yaml"),
        "services:\n  web:\n    build: ./web\n",
    )
    .expect("compose.yaml");
    registry.corrupt("offpack-fixture-left", "1.0.0");
    let _net = build_network();
    // A cache of its own: another test's good copy of the tarball must not answer for it.
    let cache = tempfile::tempdir().expect("tempdir");
    let mut cmd = case.offpack();
    cmd.env("OFFPACK_CACHE", cache.path())
        .args(["bundle", "-o"])
        .arg(&case.bundle);
    let out = case.run(&mut cmd);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("offpack-fixture-left@1.0.0") && err.contains("integrity"),
        "{err}"
    );
    assert!(!case.bundle.exists(), "no bundle is written");
}

#[test]
fn uv_lock_change_rebuilds_offline_from_carried_wheels() {
    let mut case = Case::new("uv-packages", "uv-packages");
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
        .to_string();
    let template =
        std::fs::read_to_string(case.path().join("app/Dockerfile.in")).expect("read Dockerfile.in");
    std::fs::write(
        case.path().join("app/Dockerfile"),
        template.replace("@RUN_ID@", &run_id),
    )
    .expect("write Dockerfile");
    let manifest = case.bundle_with(&["--packages", "planned/uv.lock"]);

    let docopt = assert_carried_from_lock(&case, "planned/uv.lock");
    let docopt = &docopt;

    let app = case.image_of("app");
    let cut = case.far_side(&manifest);

    // An app code change: `uv sync` stays cached.
    append(&case, "app/app.py", "print('code change')\n");
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_ran_exactly(&["COPY app.py ."]);

    // The planned project: `uv sync` runs again, from offpack, and installs six.
    for file in ["pyproject.toml", "uv.lock"] {
        let text = std::fs::read_to_string(case.path().join("planned").join(file)).expect("read");
        case.change(&format!("app/{file}"), text.trim_end());
    }
    let reports = case.rebuild(&["app"]);
    let report = only(&reports, "app");
    assert!(
        report.ran().iter().any(|s| s.contains("uv sync")),
        "the uv step ran: {:?}",
        report.steps
    );
    let printed = run_image(&case, &app);
    for line in [
        "bottle 0.13.4",
        "MarkupSafe 3.0.2",
        "six 1.17.0",
        "docopt 0.6.2",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    let lock_in_image = stdout(&case.docker(&["run", "--rm", &app, "cat", "uv.lock"]));
    assert!(
        lock_in_image.contains(&format!(":{PACKAGE_PORT}/files/")),
        "the lock the image holds is the rewritten one (docs/packages.md)"
    );
    assert!(
        lock_in_image.contains(&format!(
            "/files/{}/{}",
            field(docopt, "digest").trim_start_matches("sha256:"),
            field(docopt, "filename")
        )),
        "the wheel built from docopt's sdist is added to the lock: {lock_in_image}"
    );
    // Again with nothing changed: the rewritten lock is the same, every step is cached.
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_all_cached();

    // A lock naming a package no bundle carried (`later/`: idna added): named with its line,
    // before anything is built, and asked for in the request file.
    for file in ["pyproject.toml", "uv.lock"] {
        let text = std::fs::read_to_string(case.path().join("later").join(file)).expect("read");
        case.change(&format!("app/{file}"), text.trim_end());
    }
    let idna_line = std::fs::read_to_string(case.path().join("app/uv.lock"))
        .expect("lock")
        .lines()
        .position(|l| l == "name = \"idna\"")
        .expect("idna's block")
        + 1;
    let cut = missing_package_loop(
        &mut case,
        cut,
        "app",
        &format!("idna==3.7 (uv.lock:{idna_line})"),
        "six",
        "uv sync",
        &app,
    );
    drop(cut);
}

/// `app/Dockerfile` from `app/Dockerfile.in` with a run ID (see the fixture's `Dockerfile.in`).
fn write_dockerfile_with_run_id(case: &Case) {
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
        .to_string();
    let template =
        std::fs::read_to_string(case.path().join("app/Dockerfile.in")).expect("read Dockerfile.in");
    std::fs::write(
        case.path().join("app/Dockerfile"),
        template.replace("@RUN_ID@", &run_id),
    )
    .expect("write Dockerfile");
}

/// The project of `from` (`planned`, `later`) copied into `app/`: the Pipfile with a per-run
/// change (a TOML comment, which pipenv's hash of the Pipfile ignores, so the lock's `_meta.hash`
/// still matches under `--deploy`), the lock as pipenv wrote it (JSON has no comments).
fn use_pipenv_project(case: &Case, from: &str) {
    let pipfile = std::fs::read_to_string(case.path().join(from).join("Pipfile")).expect("read");
    case.change("app/Pipfile", pipfile.trim_end());
    std::fs::copy(
        case.path().join(from).join("Pipfile.lock"),
        case.path().join("app/Pipfile.lock"),
    )
    .expect("copy Pipfile.lock");
}

#[test]
fn pipenv_lock_change_rebuilds_offline_from_carried_wheels() {
    let mut case = Case::new("pipenv-packages", "pipenv-packages");
    write_dockerfile_with_run_id(&case);
    let manifest = case.bundle_with(&["--packages", "planned/Pipfile.lock"]);

    let docopt = assert_carried_from_lock(&case, "planned/Pipfile.lock");
    let planned_lock =
        std::fs::read_to_string(case.path().join("planned/Pipfile.lock")).expect("lock");
    let docopt_hex = field(&docopt, "digest")
        .trim_start_matches("sha256:")
        .to_string();
    assert!(
        !planned_lock.contains(&docopt_hex),
        "the built wheel's hash is not one the lock pins"
    );

    let app = case.image_of("app");
    let cut = case.far_side(&manifest);

    // An app code change: `pipenv install` stays cached.
    append(&case, "app/app.py", "print('code change')\n");
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_ran_exactly(&["COPY app.py ."]);

    // The planned project: `pipenv install` runs again, from offpack, and installs six and docopt.
    use_pipenv_project(&case, "planned");
    let reports = case.rebuild(&["app"]);
    let report = only(&reports, "app");
    assert!(
        report.ran().iter().any(|s| s.contains("pipenv install")),
        "the pipenv step ran: {:?}",
        report.steps
    );
    let printed = run_image(&case, &app);
    for line in [
        "bottle 0.13.4",
        "MarkupSafe 3.0.2",
        "six 1.17.0",
        "docopt 0.6.2",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    // The lock the image holds is the one sent (docs/packages.md): its source is the server's
    // simple index, and docopt's entry also allows the built wheel.
    let lock_in_image = stdout(&case.docker(&["run", "--rm", &app, "cat", "Pipfile.lock"]));
    assert!(
        lock_in_image.contains(&format!(":{PACKAGE_PORT}/simple/\"")),
        "{lock_in_image}"
    );
    assert!(
        lock_in_image.contains("\"verify_ssl\": false"),
        "{lock_in_image}"
    );
    assert!(
        lock_in_image.contains(&format!("\"sha256:{docopt_hex}\"")),
        "the built wheel's hash is added to docopt's entry: {lock_in_image}"
    );
    assert!(!lock_in_image.contains("pypi.org"), "{lock_in_image}");
    // Again with nothing changed: the rewritten lock is the same, every step is cached.
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_all_cached();

    // A lock naming a package no bundle carried (`later/`: idna added): named with its line,
    // before anything is built, and asked for in the request file.
    use_pipenv_project(&case, "later");
    let idna_line = std::fs::read_to_string(case.path().join("app/Pipfile.lock"))
        .expect("lock")
        .lines()
        .position(|l| l.trim() == "\"idna\": {")
        .expect("idna's entry")
        + 1;
    let cut = missing_package_loop(
        &mut case,
        cut,
        "app",
        &format!("idna==3.7 (Pipfile.lock:{idna_line})"),
        "six",
        "pipenv install",
        &app,
    );
    drop(cut);
}

/// The far side's loop for a package file naming a package no bundle carried (idna 3.7): `rebuild
/// SERVICE` exits 2 naming `expected` (package, file and line) and not `carried` (one it has), and
/// writes the request file; on the networked side `bundle --packages-for` makes a package bundle
/// carrying idna; behind the cut again, `load` adds it, `rebuild` runs the step named `step` and
/// `image` imports idna. `cut` is the far side's cut, held on entry; the new one is returned.
fn missing_package_loop(
    case: &mut Case,
    cut: NetworkCut,
    service: &str,
    expected: &str,
    carried: &str,
    step: &str,
    image: &str,
) -> NetworkCut {
    let mut cmd = case.offpack();
    cmd.args(["rebuild", service]);
    let out = case.run(&mut cmd);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing package exits 2: {err}"
    );
    assert!(err.contains(expected), "{err}");
    assert!(err.contains("offpack-request.json"), "{err}");
    assert!(
        !err.contains(carried),
        "only the missing package is named: {err}"
    );
    let request = case.path().join("offpack-request.json");
    assert!(request.is_file(), "the request file is written");
    drop(cut);

    // Networked side: the request's lock resolved in the image; far side: loaded, rebuilt.
    let more = case.path().join("more.offpack");
    {
        let _net = build_network();
        let mut cmd = case.offpack();
        cmd.args(["bundle", "--packages-for"])
            .arg(&request)
            .arg("-o")
            .arg(&more);
        case.ok(&mut cmd);
    }
    assert!(
        packages_of(case, &more)
            .iter()
            .any(|p| field(p, "name") == "idna"),
        "the package bundle carries idna"
    );
    let cut = cut_build_network();
    cut.allow_host_port(PACKAGE_PORT);
    let mut cmd = case.offpack();
    cmd.arg("load").arg(&more);
    case.ok(&mut cmd);
    let reports = case.rebuild(&[service]);
    assert!(
        only(&reports, service)
            .ran()
            .iter()
            .any(|s| s.contains(step)),
        "{step} ran: {reports:?}"
    );
    let printed = run_image(case, image);
    assert!(printed.contains("idna 3.7"), "{printed}");
    cut
}

/// The bundle's packages for a lock fixture (bottle, MarkupSafe, six, docopt): the lock's wheels
/// for the image's Python (cp311, manylinux x86_64), each once, the very files the lock `planned`
/// pins (the installer checks their hashes), and for docopt, which the lock pins as an sdist only,
/// the wheel built from it. Returns docopt's entry.
fn assert_carried_from_lock(case: &Case, planned: &str) -> Value {
    let packages = packages_of(case, &case.bundle);
    let planned_lock = std::fs::read_to_string(case.path().join(planned)).expect("lock");
    for wanted in ["bottle", "markupsafe", "six"] {
        let found: Vec<&Value> = packages
            .iter()
            .filter(|p| field(p, "name").eq_ignore_ascii_case(wanted))
            .collect();
        assert_eq!(found.len(), 1, "{wanted} carried once: {packages:?}");
        let hex = field(found[0], "digest").trim_start_matches("sha256:");
        assert!(
            planned_lock.contains(&format!("sha256:{hex}")),
            "{wanted}'s file is one {planned} pins: {}",
            found[0]
        );
    }
    let markupsafe = packages
        .iter()
        .find(|p| field(p, "name").eq_ignore_ascii_case("markupsafe"))
        .expect("markupsafe");
    assert!(
        field(markupsafe, "filename").contains("cp311-cp311-manylinux"),
        "{markupsafe}"
    );
    let docopt = packages
        .iter()
        .find(|p| field(p, "name") == "docopt")
        .expect("docopt")
        .clone();
    assert!(field(&docopt, "filename").ends_with(".whl"), "{docopt}");
    docopt
}

/// The project of `from` (`planned`, `later`) copied into `app/`: the pyproject.toml with a
/// per-run change (a TOML comment, which poetry's content-hash ignores, so the lock still matches
/// it), the lock as poetry wrote it.
fn use_poetry_project(case: &Case, from: &str) {
    let project =
        std::fs::read_to_string(case.path().join(from).join("pyproject.toml")).expect("read");
    case.change("app/pyproject.toml", project.trim_end());
    std::fs::copy(
        case.path().join(from).join("poetry.lock"),
        case.path().join("app/poetry.lock"),
    )
    .expect("copy poetry.lock");
}

#[test]
fn poetry_lock_change_rebuilds_offline_from_carried_wheels() {
    let mut case = Case::new("poetry-packages", "poetry-packages");
    write_dockerfile_with_run_id(&case);
    let manifest = case.bundle_with(&["--packages", "planned/poetry.lock"]);

    let docopt = assert_carried_from_lock(&case, "planned/poetry.lock");
    let docopt = &docopt;
    let planned_lock =
        std::fs::read_to_string(case.path().join("planned/poetry.lock")).expect("lock");
    let docopt_hex = field(docopt, "digest")
        .trim_start_matches("sha256:")
        .to_string();
    assert!(
        !planned_lock.contains(&docopt_hex),
        "the built wheel's hash is not one the lock lists"
    );

    let app = case.image_of("app");
    let cut = case.far_side(&manifest);

    // An app code change: `poetry install` stays cached.
    append(&case, "app/app.py", "print('code change')\n");
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_ran_exactly(&["COPY app.py ."]);

    // The planned project: `poetry install` runs again, from offpack, and installs six and docopt.
    use_poetry_project(&case, "planned");
    let reports = case.rebuild(&["app"]);
    let report = only(&reports, "app");
    assert!(
        report.ran().iter().any(|s| s.contains("poetry install")),
        "the poetry step ran: {:?}",
        report.steps
    );
    let printed = run_image(&case, &app);
    for line in [
        "bottle 0.13.4",
        "MarkupSafe 3.0.2",
        "six 1.17.0",
        "docopt 0.6.2",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    // The files the image holds are the ones sent (docs/packages.md): pyproject.toml with
    // offpack's primary source, and a lock whose content-hash poetry accepted for it, docopt's
    // entry also listing the built wheel.
    let project_in_image = stdout(&case.docker(&["run", "--rm", &app, "cat", "pyproject.toml"]));
    assert!(
        project_in_image.contains("[[tool.poetry.source]]\nname = \"offpack\"\nurl = \"http://")
            && project_in_image.contains(&format!(
                ":{PACKAGE_PORT}/simple/\"\npriority = \"primary\""
            )),
        "{project_in_image}"
    );
    let lock_in_image = stdout(&case.docker(&["run", "--rm", &app, "cat", "poetry.lock"]));
    assert!(
        lock_in_image.contains(&format!(
            "{{file = \"{}\", hash = \"sha256:{docopt_hex}\"}}",
            field(docopt, "filename")
        )),
        "the built wheel is added to docopt's files: {lock_in_image}"
    );
    assert!(
        !lock_in_image.contains(
            "content-hash = \"7078830d328cf7263e38a92b71176981b96f4d3740271a6965f7d268fb0272a7\""
        ),
        "the content-hash is the rewritten project's: {lock_in_image}"
    );
    // Again with nothing changed: the rewritten files are the same, every step is cached.
    let reports = case.rebuild(&["app"]);
    only(&reports, "app").assert_all_cached();

    // A lock naming a package no bundle carried (`later/`: idna added): named with its line,
    // before anything is built, and asked for in the request file.
    use_poetry_project(&case, "later");
    let idna_line = std::fs::read_to_string(case.path().join("app/poetry.lock"))
        .expect("lock")
        .lines()
        .position(|l| l.trim() == "name = \"idna\"")
        .expect("idna's entry")
        + 1;
    let cut = missing_package_loop(
        &mut case,
        cut,
        "app",
        &format!("idna==3.7 (poetry.lock:{idna_line})"),
        "six",
        "poetry install",
        &app,
    );
    drop(cut);
}
