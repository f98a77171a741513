//! `Engine::run_to_completion` against the real engine: exit codes and output, and the container
//! removed however the run ends (including a caller dropping the future mid-run). Runs in
//! `python:3.11-slim` (made by `scripts/test-env up`); needs no network.

mod common;

use std::time::Duration;

use offpack::engine::{Bind, Engine, RUN_LABEL, RunSpec};

const IMAGE: &str = "python:3.11-slim";

async fn engine() -> Engine {
    common::engine_with_image(IMAGE).await
}

/// Containers labelled for `purpose`, running or not.
fn containers(purpose: &str) -> String {
    let out = common::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={RUN_LABEL}={purpose}"),
    ]);
    common::stdout(&out).trim().to_string()
}

fn spec(purpose: &str, script: &str) -> RunSpec {
    RunSpec {
        image: IMAGE.into(),
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        purpose: format!("{purpose}-{}", std::process::id()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_run_returns_its_exit_code_and_output_and_leaves_no_container() {
    let engine = engine().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from the host\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut ok = spec(
        "offpack-h4-test-ok",
        "cat /in/in.txt; echo to-stderr >&2; echo $GREETING; id -u; echo made > /out/file",
    );
    ok.env = vec![("GREETING".into(), "hello".into())];
    ok.user = Some(format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    ));
    ok.binds = vec![
        Bind {
            host: dir.path().to_path_buf(),
            container: "/in".into(),
            read_only: true,
        },
        Bind {
            host: out.path().to_path_buf(),
            container: "/out".into(),
            read_only: false,
        },
    ];
    let outcome = engine.run_to_completion(&ok).await.unwrap();
    assert_eq!(outcome.exit_code, 0, "{}", outcome.logs);
    assert!(outcome.logs.contains("from the host"), "{}", outcome.logs);
    assert!(outcome.logs.contains("to-stderr"), "{}", outcome.logs);
    assert!(outcome.logs.contains("hello"), "{}", outcome.logs);
    assert!(
        outcome
            .logs
            .contains(&rustix::process::getuid().as_raw().to_string()),
        "{}",
        outcome.logs
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("file")).unwrap(),
        "made\n"
    );
    assert_eq!(containers(&ok.purpose), "");

    let failing = spec("offpack-h4-test-fail", "echo before; exit 3");
    let outcome = engine.run_to_completion(&failing).await.unwrap();
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(outcome.tail(1), "before");
    assert_eq!(containers(&failing.purpose), "");

    let absent = RunSpec {
        image: "offpack-h4-test/absent:none".into(),
        ..spec("offpack-h4-test-absent", "true")
    };
    let err = engine.run_to_completion(&absent).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("offpack-h4-test/absent:none"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_dropped_run_removes_its_container() {
    let engine = engine().await;
    let sleeper = spec("offpack-h4-test-drop", "sleep 120");
    let run = engine.run_to_completion(&sleeper);
    // The caller gives up (as a Ctrl-C handler's select! does) while the command runs.
    let given_up = tokio::time::timeout(Duration::from_secs(4), run).await;
    assert!(given_up.is_err(), "the sleep ended early: {given_up:?}");
    assert_eq!(containers(&sleeper.purpose), "", "the container stayed");
}
