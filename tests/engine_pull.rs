//! `offpack bundle` pulls what the engine lacks, with the engine's pull and the user's registry
//! credentials, from the local registries `scripts/test-env` starts on 127.0.0.1
//! (5000: open; 5001: htpasswd, user `offpack`, password `offpack-test`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Builds a tiny image `FROM scratch` under `name` and pushes it to its registry, then removes it
/// from the engine so that only the registry has it.
fn publish_tiny_image(name: &str, docker_config: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), format!("hello from {name}\n")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    ok(Command::new("docker")
        .args(["build", "-q", "-t", name])
        .arg(dir.path()));
    let mut push = Command::new("docker");
    if let Some(config) = docker_config {
        push.arg("--config").arg(config);
    }
    ok(push.args(["push", name]));
    ok(Command::new("docker").args(["rmi", name]));
    assert!(!image_exists(name));
}

fn project_using(image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n  app:\n    image: {image}\n"),
    )
    .unwrap();
    dir
}

fn login_config(registry: &str) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    // base64("offpack:offpack-test")
    let doc = format!(r#"{{"auths":{{"{registry}":{{"auth":"b2ZmcGFjazpvZmZwYWNrLXRlc3Q="}}}}}}"#);
    std::fs::write(config.path().join("config.json"), doc).unwrap();
    config
}

#[test]
fn bundle_pulls_a_missing_image_from_an_open_registry() {
    require_engine();
    let image = "127.0.0.1:5000/offpack-test/open:1";
    publish_tiny_image(image, None);
    let project = project_using(image);
    let bundle = project.path().join("b.offpack");
    ok(offpack(project.path()).args(["bundle", "-o"]).arg(&bundle));
    assert!(image_exists(image), "the engine pulled it");
    let out = ok(offpack(project.path())
        .args(["inspect", "--json"])
        .arg(&bundle));
    assert!(
        stdout(&out).contains(image),
        "the bundle records the pulled name"
    );
    let _ = Command::new("docker").args(["rmi", image]).output();
}

#[test]
fn bundle_pulls_with_saved_credentials_and_explains_a_refusal() {
    require_engine();
    let registry = "127.0.0.1:5001";
    let image = "127.0.0.1:5001/offpack-test/private:1";
    let config = login_config(registry);
    publish_tiny_image(image, Some(config.path()));
    let project = project_using(image);
    let bundle = project.path().join("b.offpack");

    let empty = tempfile::tempdir().unwrap();
    let refused = run(offpack(project.path())
        .env("DOCKER_CONFIG", empty.path())
        .args(["bundle", "-o"])
        .arg(&bundle));
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(
        message.contains(image) && message.contains("docker login"),
        "{message}"
    );
    assert!(
        !bundle.exists(),
        "a failed bundle leaves nothing at the target path"
    );

    ok(offpack(project.path())
        .env("DOCKER_CONFIG", config.path())
        .args(["bundle", "-o"])
        .arg(&bundle));
    assert!(image_exists(image));
    let written = std::fs::read(&bundle).unwrap();
    assert!(
        !String::from_utf8_lossy(&written).contains("b2ZmcGFjazpvZmZwYWNrLXRlc3Q"),
        "no credentials in the bundle"
    );
    let _ = Command::new("docker").args(["rmi", image]).output();
}

#[test]
fn an_image_no_registry_has_is_named_in_the_error() {
    require_engine();
    let image = "127.0.0.1:5000/offpack-test/nowhere:404";
    let project = project_using(image);
    let bundle = project.path().join("b.offpack");
    let out = run(offpack(project.path()).args(["bundle", "-o"]).arg(&bundle));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(image), "{}", stderr(&out));
    assert!(!bundle.exists());
    let out = run(offpack(project.path())
        .args(["bundle", "--pull", "never", "-o"])
        .arg(&bundle));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pull never"), "{}", stderr(&out));
}
