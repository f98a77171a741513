//! What offpack does when the engine answers something it cannot work with. A stand-in engine
//! on a Unix socket answers the few API calls `offpack inventory` makes, so the answer can be
//! one no real engine gives on demand.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use common::{offpack, run, stderr, stdout};

const IMAGE_ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const GOOD_LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// Serves `answer(path)` for every request on `socket`, on a thread, for as long as the test runs.
fn stand_in_engine(socket: &Path, answer: fn(&str) -> String) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            std::thread::spawn(move || serve(connection, answer));
        }
    });
}

fn serve(connection: UnixStream, answer: fn(&str) -> String) {
    let mut writer = connection.try_clone().unwrap();
    let mut reader = BufReader::new(connection);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // The calls answered here are GETs and HEADs: headers only, no body to read.
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or_default();
        let body = answer(path);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// An engine whose one image has a layer that is not a digest.
fn engine_with_a_garbage_layer(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    if path.ends_with("/_ping") {
        "OK".into()
    } else if path.ends_with("/version") {
        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24","Os":"linux","Arch":"amd64"}"#.into()
    } else if path.ends_with("/info") {
        r#"{"Driver":"overlay2","DriverStatus":[]}"#.into()
    } else if path.ends_with("/images/json") {
        format!(
            r#"[{{"Id":"{IMAGE_ID}","ParentId":"","RepoTags":["offpack-test-g-garbage:1"],"RepoDigests":[],"Created":0,"Size":1,"SharedSize":-1,"Labels":{{}},"Containers":-1}}]"#
        )
    } else if path.ends_with("/json") && path.contains("/images/") {
        format!(
            r#"{{"Id":"{IMAGE_ID}","RepoTags":["offpack-test-g-garbage:1"],"Os":"linux","Architecture":"amd64","Size":1,"RootFS":{{"Type":"layers","Layers":["{GOOD_LAYER}","layer-without-digest"]}}}}"#
        )
    } else {
        "{}".into()
    }
}

#[test]
fn inventory_refuses_an_engine_layer_that_is_not_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("engine.sock");
    stand_in_engine(&socket, engine_with_a_garbage_layer);
    let out = run(offpack(dir.path())
        .arg("inventory")
        .env("DOCKER_HOST", format!("unix://{}", socket.display())));
    assert_eq!(
        out.status.code(),
        Some(2),
        "an engine answering garbage is an environment error"
    );
    let err = stderr(&out);
    assert!(
        err.contains(IMAGE_ID) && err.contains("`layer-without-digest`"),
        "the error names the image and the value: {err}"
    );
    assert!(
        stdout(&out).is_empty(),
        "no inventory that silently lacks the layer"
    );
}

/// The inventory carried back from the far side holds what its engine answered: a layer there
/// that is not a digest is refused naming the file, before this side's engine is asked.
#[test]
fn bundle_refuses_an_inventory_layer_that_is_not_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  cache:\n    image: redis:7\n",
    )
    .unwrap();
    let have = format!(
        r#"{{"inventory_version":1,"created":"now","engine":{{"version":"20.10.24","storage_driver":"overlay2","containerd_image_store":false}},"images":[{{"id":"{IMAGE_ID}","refs":[],"layers":["{GOOD_LAYER}","layer-without-digest"]}}]}}"#
    );
    std::fs::write(dir.path().join("have.json"), have).unwrap();
    let out = run(offpack(dir.path())
        .args(["bundle", "--have", "have.json", "-o", "x.offpack"])
        .env("DOCKER_HOST", "unix:///nonexistent/offpack-test-g.sock"));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("have.json") && err.contains("layer-without-digest"),
        "{err}"
    );
    assert!(!err.contains("Docker Engine"), "{err}");
    assert!(!dir.path().join("x.offpack").exists());
}
