//! Any bytes as `compose.yaml` (with a small `.env` and Dockerfile beside it) load to a project or
//! a clear error; panics are not allowed.
#![no_main]

mod small_stack;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use offpack_compose::{LoadOptions, load};

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    small_stack::run(move || load_in_a_project(&data));
});

fn load_in_a_project(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path();
    if std::fs::write(root.join("compose.yaml"), data).is_err()
        || std::fs::write(
            root.join(".env"),
            "TAG=1.25\nexport REGISTRY=registry.example:5000\n",
        )
        .is_err()
        || std::fs::write(root.join("Dockerfile"), "FROM alpine:3.20\n").is_err()
    {
        return;
    }
    let environment: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())]
        .into_iter()
        .collect();
    for profiles in [Vec::new(), vec!["*".to_string()]] {
        let _ = load(&LoadOptions {
            working_dir: root.to_path_buf(),
            profiles,
            environment: environment.clone(),
            ..LoadOptions::default()
        });
    }
}
