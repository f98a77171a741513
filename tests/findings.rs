//! How findings reach people: `offpack bundle` prints each as a one-line warning, `offpack plan`
//! as an entry of its findings list; both come from the one renderer and name the file and line.

mod common;

use common::*;

const FINDING: &str = "service image `redis` is not pinned (no tag, so `latest`): the far side may get another image than the one tested";
const FIX: &str = "pin the digest the plan resolves it to: `redis:<version>@sha256:<digest>`; after `offpack bundle`, \
                   `docker image inspect --format '{{index .RepoDigests 0}}' redis:latest` prints it";

fn unpinned_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  cache:\n    image: redis\n",
    )
    .unwrap();
    dir
}

#[test]
fn bundle_warns_with_each_finding_on_one_line_before_it_checks_the_output() {
    let dir = unpinned_project();
    let missing = dir.path().join("no-such-dir/shop.offpack");
    let out = run(offpack_isolated(dir.path())
        .args(["bundle", "-o"])
        .arg(&missing));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let expected = format!("warning: OP002 compose.yaml:3: {FINDING} (fix: {FIX})\n");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!missing.exists());
}

#[test]
fn plan_lists_each_finding_with_severity_service_and_fix() {
    let dir = unpinned_project();
    let human = stdout(&ok(offpack_isolated(dir.path()).arg("plan")));
    let expected = format!(
        "findings (0 error(s), 1 warning(s)):\n  OP002 warning [cache] compose.yaml:3: {FINDING}\n      fix: {FIX}\n"
    );
    assert!(human.contains(&expected), "{human}");
    let json: serde_json::Value =
        serde_json::from_slice(&ok(offpack_isolated(dir.path()).args(["plan", "--json"])).stdout)
            .unwrap();
    let finding = &json["findings"][0];
    assert_eq!(finding["code"], "OP002");
    assert_eq!(finding["line"], 3);
    assert_eq!(finding["message"], FINDING);
    assert!(
        finding.get("subject").is_none(),
        "the subject is internal: {finding}"
    );
}
