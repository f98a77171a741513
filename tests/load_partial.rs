//! `offpack load` loads only what is missing, and `--service` only what those services need.

mod common;

use std::process::Command;

use common::*;

fn two_service_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta"] {
        let ctx = dir.path().join(name);
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("hello.txt"), format!("hello from {name}\n")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY hello.txt /hello.txt\n",
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  alpha:\n    build: ./alpha\n  beta:\n    build: ./beta\n",
    )
    .unwrap();
    dir
}

fn loaded(out: &std::process::Output) -> (Vec<String>, Vec<String>) {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load --json");
    let names = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    (names("loaded"), names("already_present"))
}

fn remove(images: &[&str]) {
    for image in images {
        let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    }
}

#[test]
fn loads_only_missing_images_and_only_for_the_named_services() {
    require_engine();
    let project = two_service_project();
    let dir = project.path();
    let env = [("COMPOSE_PROJECT_NAME", "offpack-partial")];
    ok(offpack(dir)
        .envs(env)
        .args(["bundle", "--build", "-o", "p.offpack"]));
    let alpha = [
        "offpack-partial-alpha:latest",
        "offpack-partial_alpha:latest",
    ];
    let beta = ["offpack-partial-beta:latest", "offpack-partial_beta:latest"];

    // Some present: only beta is streamed.
    remove(&beta);
    let (done, present) = loaded(&ok(offpack(dir).args(["load", "--json", "p.offpack"])));
    assert_eq!(done, vec!["offpack-partial-beta:latest"]);
    assert_eq!(present, vec!["offpack-partial-alpha:latest"]);
    assert!(beta.iter().all(|i| image_exists(i)), "every name restored");

    // --service: only what that service needs.
    remove(&alpha);
    remove(&beta);
    let (done, _) = loaded(&ok(offpack(dir).args([
        "load",
        "--json",
        "--service",
        "alpha",
        "p.offpack",
    ])));
    assert_eq!(done, vec!["offpack-partial-alpha:latest"]);
    assert!(alpha.iter().all(|i| image_exists(i)));
    assert!(
        beta.iter().all(|i| !image_exists(i)),
        "beta was not asked for"
    );

    // A rebuilt image keeps its name: loading the bundle again never moves it back.
    std::fs::write(dir.join("alpha/hello.txt"), "changed on the far side\n").unwrap();
    ok(offpack(dir).envs(env).args(["rebuild", "alpha"]));
    let rebuilt = image_id(alpha[0]).unwrap();
    let out = ok(offpack(dir).args(["load", "--json", "p.offpack"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        image_id(alpha[0]),
        Some(rebuilt),
        "the rebuilt alpha keeps its name: {report}"
    );
    assert!(
        report["kept"]
            .as_array()
            .is_some_and(|k| k.iter().any(|n| n == alpha[0])),
        "{report}"
    );
    assert!(beta.iter().all(|i| image_exists(i)), "beta is loaded");

    let out = run(offpack(dir).args(["load", "--service", "gamma", "p.offpack"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("gamma") && stderr(&out).contains("alpha"),
        "{}",
        stderr(&out)
    );
    remove(&alpha);
    remove(&beta);
}
