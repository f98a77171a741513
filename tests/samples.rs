//! Issue 18, test 8: the example project and three public sample projects (tests/samples/, each
//! with a SOURCE.md saying where it comes from and what changed) through the whole loop, on the
//! real engine:
//!
//! 1. networked side: `offpack plan`, then `offpack bundle -o B` (under `build_network()`, so no
//!    network cut of another test overlaps it);
//! 2. the wipe: the project's own images (built images, stage carriers) leave the engine; the base
//!    images stay (see [`wipe`]);
//! 3. far side: `offpack load B` gives back every wiped image with the ID it had; a source change;
//!    then, with the build containers' network cut (and the cut proven), `offpack rebuild --up`
//!    rebuilds every built service from the loaded layers and starts the project;
//! 4. the services answer (over HTTP on a loopback port, or a command in a container), and the
//!    answer shows the source change; `docker-compose down` and the project's images go.
//!
//! Each project runs under its own compose project name (`offpack-samples-<name>`), so its images
//! and containers never collide with another test's. The samples run one at a time (a process-wide
//! lock): their builds share two cores with everything else, and a failure's log stays readable.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::offline::{build_network, cut_build_network, run_within};
use common::*;

/// Long enough for a cold bundle of the slowest sample (pip and npm installs, a Go build) on a
/// loaded two-core machine; a hang fails the test instead of stalling the suite.
const BUNDLE_LIMIT: Duration = Duration::from_secs(1200);
/// The far side builds from cache only: minutes would already mean a step ran that should not.
const REBUILD_LIMIT: Duration = Duration::from_secs(600);
const SHORT_LIMIT: Duration = Duration::from_secs(300);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One project and what the test does with it.
struct Sample {
    /// Directory under the repository root.
    dir: &'static str,
    /// Part of the compose project name.
    name: &'static str,
    /// The services with a `build:`, each rebuilt on the far side.
    built: &'static [&'static str],
    /// Edits of the copy before anything runs: `(file, text, replacement)`. Only published host
    /// ports: other tests share this machine's ports, so each becomes a free loopback port.
    ports: &'static [(&'static str, &'static str, &'static str)],
    /// The far side's source change, `(file, text, replacement)`: the answer must show it.
    change: (&'static str, &'static str, &'static str),
    /// The built service whose build context holds the changed file.
    changed: &'static str,
    /// How the project shows it works after `rebuild --up`.
    checks: &'static [Check],
    /// Python and npm packages the bundle must carry, each exactly once (PEP 503 names for pip).
    packages: &'static [&'static str],
}

enum Check {
    /// GET `path` on the loopback port published for the container port `port` of `service`;
    /// the body must contain `contains`.
    Http {
        service: &'static str,
        port: u16,
        path: &'static str,
        contains: &'static str,
    },
    /// `docker-compose exec -T service command...` must succeed and print `contains`.
    Exec {
        service: &'static str,
        command: &'static [&'static str],
        contains: &'static str,
    },
}

const FAR_SIDE: &str = "changed on the far side";

#[test]
fn example_shop_through_the_whole_loop() {
    round_trip(&Sample {
        dir: "examples/shop",
        name: "shop",
        packages: &["bottle", "redis", "async-timeout"],
        built: &["frontend", "backend"],
        ports: &[
            (
                "compose.yaml",
                "\"127.0.0.1:${SHOP_HTTP_PORT:-8080}:3000\"",
                "\"127.0.0.1::3000\"",
            ),
            (
                "compose.yaml",
                "\"127.0.0.1:${SHOP_API_PORT:-8000}:8000\"",
                "\"127.0.0.1::8000\"",
            ),
        ],
        change: (
            "frontend/src/index.html",
            "</body>",
            "<p>changed on the far side</p></body>",
        ),
        changed: "frontend",
        checks: &[
            Check::Http {
                service: "frontend",
                port: 3000,
                path: "/api/health",
                contains: "",
            },
            Check::Http {
                service: "frontend",
                port: 3000,
                path: "/",
                contains: FAR_SIDE,
            },
        ],
    });
}

/// docker/awesome-compose nginx-golang: a multi-stage Go build (`golang:1.13` → `scratch`) behind
/// nginx. The change is in the build stage's source, so the far side rebuilds that stage from the
/// loaded stage carrier and the final `COPY --from`.
#[test]
fn awesome_compose_nginx_golang_through_the_whole_loop() {
    round_trip(&Sample {
        dir: "tests/samples/nginx-golang",
        name: "nginx-golang",
        packages: &[],
        built: &["frontend", "backend"],
        ports: &[("compose.yaml", "- 80:80", "- \"127.0.0.1::80\"")],
        change: (
            "backend/main.go",
            "Hello from Docker!",
            "Hello from Docker, changed on the far side!",
        ),
        changed: "backend",
        checks: &[Check::Http {
            service: "frontend",
            port: 80,
            path: "/",
            contains: FAR_SIDE,
        }],
    });
}

/// dockersamples/docker-init-demos, Python: what `docker init` writes, with
/// `RUN --mount=type=cache` and `--mount=type=bind` (BuildKit only).
#[test]
fn docker_init_python_through_the_whole_loop() {
    round_trip(&Sample {
        dir: "tests/samples/docker-init-python",
        name: "docker-init-python",
        packages: &["flask", "werkzeug", "jinja2"],
        built: &["app"],
        ports: &[("compose.yaml", "\"8080:8080\"", "\"127.0.0.1::8080\"")],
        change: (
            "app.py",
            "Hello from Docker!",
            "Hello from Docker, changed on the far side!",
        ),
        changed: "app",
        checks: &[Check::Http {
            service: "app",
            port: 8080,
            path: "/",
            contains: FAR_SIDE,
        }],
    });
}

/// dockersamples/python-flask-redis: Flask and Redis, packages from PyPI in a plain `RUN`, an
/// untagged `redis` image. The app listens on 5000 while the sample publishes 8000 (upstream's
/// mistake, kept), so the check asks it from inside its container; the count proves Redis answers.
#[test]
fn python_flask_redis_through_the_whole_loop() {
    round_trip(&Sample {
        dir: "tests/samples/python-flask-redis",
        name: "python-flask-redis",
        packages: &["flask", "redis"],
        built: &["web"],
        ports: &[
            ("docker-compose.yml", "'8000:8000'", "'127.0.0.1::8000'"),
            ("docker-compose.yml", "'6379:6379'", "'127.0.0.1::6379'"),
        ],
        change: (
            "app.py",
            "This webpage has been viewed",
            "This webpage (changed on the far side) has been viewed",
        ),
        changed: "web",
        checks: &[Check::Exec {
            service: "web",
            command: &[
                "python3",
                "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:5000/').read().decode())",
            ],
            contains: FAR_SIDE,
        }],
    });
}

fn round_trip(sample: &Sample) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    // The base images every sample starts from (made from Debian packages; see scripts/test-env).
    ok(Command::new("bash")
        .args(["scripts/test-env", "up"])
        .current_dir(repo_root()));

    let project_name = format!("offpack-samples-{}", sample.name);
    let work = tempfile::tempdir().expect("tempdir");
    let project = work.path().join(sample.name);
    copy_tree(&repo_root().join(sample.dir), &project);
    for edit in sample.ports {
        replace_in(&project, *edit);
    }
    let bundle = work.path().join(format!("{}.offpack", sample.name));
    let _cleanup = Cleanup {
        dir: project.clone(),
        project: project_name.clone(),
    };
    // `offpack SUBCOMMAND -p NAME ARGS...`
    // The far side's package store: the test's own, never the user's.
    let offpack_home = work.path().join("offpack-home");
    let offpack_p = |args: &[&str]| {
        let mut cmd = offpack(&project);
        cmd.env("OFFPACK_HOME", &offpack_home);
        cmd.arg(args[0])
            .args(["-p", &project_name])
            .args(&args[1..]);
        cmd
    };

    // Networked side.
    let plan = ok(&mut offpack_p(&["plan", "--json"]));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan --json");
    for service in sample.built {
        let found = plan["services"]
            .as_array()
            .expect("plan lists services")
            .iter()
            .find(|s| s["name"] == *service)
            .unwrap_or_else(|| panic!("the plan lists service {service}: {plan}"));
        assert_eq!(found["acquire"], "build", "{service} is built: {found}");
    }
    {
        let _net = build_network();
        let mut bundle_cmd = offpack_p(&["bundle", "-o"]);
        bundle_cmd.arg(&bundle);
        must(run_within(&mut bundle_cmd, BUNDLE_LIMIT), "offpack bundle");
    }
    let carried = images_of(&bundle, &project);
    let packages = packages_of(&bundle, &project);
    for wanted in sample.packages {
        assert_eq!(
            packages.iter().filter(|p| p == wanted).count(),
            1,
            "the bundle carries {wanted} once: {packages:?}"
        );
    }
    let own = |image: &str| {
        image.starts_with(&format!("{project_name}-"))
            || image.starts_with(&format!("{project_name}_"))
            || image.starts_with(&format!("offpack-cache/{project_name}-"))
    };
    for service in sample.built {
        assert!(
            carried.iter().any(|i| own(i) && i.contains(service)),
            "the bundle carries the image of {service}: {carried:?}"
        );
    }
    let ids: Vec<(String, String)> = carried
        .iter()
        .map(|i| {
            let id = image_id(i).unwrap_or_else(|| panic!("{i} is in the engine after bundle"));
            (i.clone(), id)
        })
        .collect();

    // The air gap.
    let wiped: Vec<String> = carried.iter().filter(|i| own(i)).cloned().collect();
    wipe(&wiped);

    // Far side.
    must(
        run_within(
            offpack(&project).args(["load", "--json"]).arg(&bundle),
            SHORT_LIMIT,
        ),
        "offpack load",
    );
    for (image, id) in &ids {
        assert_eq!(
            image_id(image).as_deref(),
            Some(id.as_str()),
            "{image} is in the engine after load, with the ID it had when bundled"
        );
    }
    // The change carries a per-run nonce: a build cache record of an earlier run's identical
    // change (left when that run's far side did not get to prune) would make it look cached.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let (file, text, replacement) = sample.change;
    let replacement = replacement.replace(FAR_SIDE, &format!("{FAR_SIDE} (run {nonce})"));
    replace_in(&project, (file, text, &replacement));

    let rebuilt = {
        let _cut = cut_build_network();
        must(
            run_within(
                &mut offpack_p(&["rebuild", "--up", "--json"]),
                REBUILD_LIMIT,
            ),
            "offpack rebuild --up (build network cut)",
        )
    };
    let rebuilt: serde_json::Value =
        serde_json::from_slice(&rebuilt.stdout).expect("rebuild --json prints one JSON document");
    let reports = service_reports(&rebuilt);
    for service in sample.built {
        let report = reports
            .iter()
            .find(|r| r["service"] == *service)
            .unwrap_or_else(|| panic!("rebuild reports service {service}: {rebuilt}"));
        assert_eq!(report["builder"], "buildkit", "{service}: {report}");
        assert!(
            report["cached_steps"].as_u64().unwrap_or(0) >= 1,
            "{service}: the steps before the change come from the loaded layers: {report}"
        );
        let steps = report["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{service}: rebuild reports its steps: {report}"));
        let ran: Vec<&str> = steps
            .iter()
            .filter(|s| s["cached"] == false)
            .map(|s| s["name"].as_str().unwrap_or("?"))
            .collect();
        if *service == sample.changed {
            assert!(
                !ran.is_empty(),
                "{service}: the changed source is built, not taken from cache: {report}"
            );
        } else {
            // A RUN step of an unchanged service that ran offline would be one that cannot
            // (its packages come from the network); every one must come from the loaded layers.
            assert!(
                !ran.iter().any(|name| name.contains("RUN ")),
                "{service} is unchanged, yet RUN steps ran: {ran:?}"
            );
        }
    }

    for check in sample.checks {
        answer(&project, &project_name, check);
    }
}

/// Replaces the first `text` in `file` of the project; the text must be there (a sample that
/// changed upstream shows up here, not as a confusing failure later).
fn replace_in(project: &Path, (file, text, replacement): (&str, &str, &str)) {
    let path = project.join(file);
    let content = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        content.contains(text),
        "{} does not contain {text:?}",
        path.display()
    );
    std::fs::write(&path, content.replacen(text, replacement, 1))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Every reference the bundle's manifest names.
/// The names of the packages a bundle carries, lowercase, one per file.
fn packages_of(bundle: &Path, dir: &Path) -> Vec<String> {
    let out = ok(offpack(dir).args(["inspect", "--json"]).arg(bundle));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    doc["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .map(|name| name.to_lowercase().replace('_', "-"))
        .collect()
}

fn images_of(bundle: &Path, dir: &Path) -> Vec<String> {
    let out = ok(offpack(dir).args(["inspect", "--json"]).arg(bundle));
    let manifest: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    manifest["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(|i| i["refs"].as_array().expect("refs").clone())
        .map(|r| r.as_str().expect("ref").to_string())
        .collect()
}

/// Removes the project's own images (its built images under both compose names and its stage
/// carriers), as on a far side that never had them.
///
/// The base images (`python:3.11-slim`, `golang:1.13`, `redis:latest`, ...) stay: other tests on
/// this engine run from them at the same time, and `scripts/test-env` made them with fixed IDs, so
/// a far side holding them has exactly the images the bundle carries; `load` then finds them
/// present, which is its ordinary path for shared bases. (tests/roundtrip.rs removes them too, under
/// its own restore.) The BuildKit build cache stays as well: `docker builder prune` cannot be
/// limited to this test's records on a shared engine; tests/rebuild_offline.rs, which may prune it,
/// covers a far side without one.
fn wipe(images: &[String]) {
    for image in images {
        let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    }
    for image in images {
        assert!(!image_exists(image), "{image} is still in the engine");
    }
}

/// The per-service reports of `rebuild --json`: the document is a list of them, or an object
/// holding the list under `services`.
fn service_reports(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc.as_array()
        .or_else(|| doc["services"].as_array())
        .unwrap_or_else(|| panic!("rebuild --json lists services: {doc}"))
        .clone()
}

fn answer(project: &Path, project_name: &str, check: &Check) {
    match check {
        Check::Http {
            service,
            port,
            path,
            contains,
        } => {
            let published =
                ok(compose(project, project_name).args(["port", service, &port.to_string()]));
            let address = stdout(&published).trim().to_string();
            assert!(
                address.starts_with("127.0.0.1:"),
                "{service}:{port} is published on loopback: {address:?}"
            );
            let url = format!("http://{address}{path}");
            let body = http_get(&url, 60)
                .unwrap_or_else(|| panic!("{service} does not answer {url} within 60 s"));
            assert!(body.contains(contains), "{url} answered {body:?}");
        }
        Check::Exec {
            service,
            command,
            contains,
        } => {
            let mut last = None;
            for _ in 0..60 {
                let out = run(compose(project, project_name)
                    .args(["exec", "-T", service])
                    .args(*command));
                if out.status.success() {
                    last = Some(out);
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let out = last.unwrap_or_else(|| panic!("{service} does not answer {command:?}"));
            assert!(
                stdout(&out).contains(contains),
                "{service} answered {:?}",
                stdout(&out)
            );
        }
    }
}

/// The command must have succeeded; returns its output.
fn must(out: Output, what: &str) -> Output {
    eprintln!(
        "{what} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed");
    out
}

/// However the test ends: the project's containers, networks and volumes go, then its images
/// (every name under its project name, and its stage carriers).
struct Cleanup {
    dir: std::path::PathBuf,
    project: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = compose(&self.dir, &self.project)
            .args(["down", "--remove-orphans", "--volumes"])
            .output();
        let listed = Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        let Ok(listed) = listed else { return };
        let mine: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|i| {
                i.starts_with(&format!("{}-", self.project))
                    || i.starts_with(&format!("{}_", self.project))
                    || i.starts_with(&format!("offpack-cache/{}-", self.project))
            })
            .map(str::to_string)
            .collect();
        if !mine.is_empty() {
            let _ = Command::new("docker").arg("rmi").args(&mine).output();
        }
    }
}
