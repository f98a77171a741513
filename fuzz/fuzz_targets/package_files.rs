//! Any text is read as a requirements file (and rewritten for an index), a uv.lock, a
//! Pipfile.lock and a poetry.lock with its pyproject.toml (each rewritten for offpack's server), a
//! package-lock.json, a yarn.lock, a package request and an environment marker; the lock entries
//! are filtered for a platform and their `resolved` URLs rewritten. Errors are fine, panics are
//! not.
#![no_main]

mod small_stack;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use offpack_packages::npm::{lock, platform::NpmTarget, rewrite};
use offpack_packages::pip::lockfile::requirements_for_pip;
use offpack_packages::pip::markers::{MarkerEnvironment, evaluate};
use offpack_packages::pip::{pipfile_lock, poetry_lock, requirements, uv_lock};
use offpack_packages::request::PackageRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    small_stack::run(move || read_all_ways(&text));
});

fn read_all_ways(text: &str) {
    // A lock's markers are evaluated on the far side: any text, on a small stack.
    let _ = evaluate(
        text,
        &MarkerEnvironment::for_platform("linux/amd64", Some("3.11")),
    );
    if let Ok(parsed) = requirements::parse("requirements.txt", text) {
        let hashes: BTreeMap<String, Vec<String>> = parsed
            .requirements()
            .map(|r| (r.normalized.clone(), vec!["0".repeat(64)]))
            .collect();
        let rewritten = requirements::rewrite_for_index(
            text,
            "http://172.17.0.1:3149/simple/",
            "172.17.0.1:3149",
            &hashes,
        );
        // What offpack sends must still be a requirements file.
        requirements::parse("requirements.txt", &rewritten).expect("a rewritten file parses");
    }
    if let Ok(locked) = uv_lock::parse("uv.lock", text) {
        let pinned = requirements_for_pip(&locked);
        // What the networked side gives pip must be a requirements file.
        requirements::parse("uv.lock.requirements.txt", &pinned)
            .expect("pinned requirements parse");
        let rewritten = uv_lock::rewrite_for_server_with_built(
            "uv.lock",
            text,
            "http://172.17.0.1:3149",
            &|hex| Some(format!("{hex}.whl")),
            &|name, version| {
                vec![uv_lock::BuiltWheel {
                    sha256: "0".repeat(64),
                    filename: format!("{name}-{version}-py3-none-any.whl"),
                }]
            },
        )
        .expect("a lock that parsed rewrites");
        uv_lock::parse("uv.lock", &rewritten).expect("a rewritten lock parses");
    }
    if let Ok(locked) = poetry_lock::parse("poetry.lock", text) {
        let pinned = requirements_for_pip(&locked);
        requirements::parse("poetry.lock.requirements.txt", &pinned)
            .expect("pinned requirements parse");
        let _ = poetry_lock::sdist_only("poetry.lock", text).expect("a lock that parsed reads");
    }
    // The text as a project file (its rewrite checks that it still parses), and the lock rewritten
    // for it (the text again, as a lock) parses as one.
    if let Ok(project) =
        poetry_lock::rewrite_pyproject_for_server("pyproject.toml", text, "http://x:1/simple/")
    {
        if let Ok(lock) = poetry_lock::rewrite_lock_for_server(
            "poetry.lock",
            text,
            text,
            &project,
            &|name, version| {
                vec![uv_lock::BuiltWheel {
                    sha256: "0".repeat(64),
                    filename: format!("{name}-{version}-py3-none-any.whl"),
                }]
            },
        ) && poetry_lock::parse("poetry.lock", text).is_ok()
        {
            poetry_lock::parse("poetry.lock", &lock).expect("a rewritten lock parses");
        }
    }
    let target = NpmTarget::from_platform("linux/amd64", Some("glibc"));
    for entries in [
        lock::parse_package_lock("package-lock.json", text),
        lock::parse_yarn_lock("yarn.lock", text),
    ]
    .into_iter()
    .flatten()
    {
        let urls: BTreeMap<String, String> = entries
            .iter()
            .filter(|e| e.installs_on(&target))
            .filter_map(|e| {
                e.source
                    .url()
                    .map(|u| (u.to_string(), "http://x/t.tgz".to_string()))
            })
            .collect();
        let _ = rewrite::rewrite_resolved(text, &urls);
    }
    if let Ok(locked) = pipfile_lock::parse("Pipfile.lock", text) {
        // What the networked side resolves must be a requirements file pip reads.
        requirements::parse("requirements.txt", &requirements_for_pip(&locked))
            .expect("the requirements of a Pipfile.lock parse");
    }
    if let Ok(rewritten) =
        pipfile_lock::rewrite_for_server("Pipfile.lock", text, "http://172.17.0.1:3149/simple/")
    {
        // What offpack sends must still be a lock with the same pins.
        let pins = |t: &str| {
            pipfile_lock::parse("Pipfile.lock", t).map(|locked| {
                locked
                    .into_iter()
                    .map(|d| (d.name, d.version, d.sha256, d.marker, d.source))
                    .collect::<Vec<_>>()
            })
        };
        if let Ok(before) = pins(text) {
            assert_eq!(pins(&rewritten).expect("a rewritten lock parses"), before);
        }
    }
    let _ = PackageRequest::from_json("offpack-request.json", text);
}
