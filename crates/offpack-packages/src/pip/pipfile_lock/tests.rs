use super::*;
use crate::pip::lockfile::requirements_for_pip;

/// `pipenv lock` of bottle 0.13.4 and six 1.16.0 (tests/fixtures/packages/pipenv/README.md).
const LOCK: &str = include_str!("../../../../../tests/fixtures/packages/pipenv/Pipfile.lock");
/// `pipenv lock` of every kind of entry: the project itself, a local path, a git repository, a
/// direct URL, a second index, a develop section repeating a default package.
const KINDS: &str =
    include_str!("../../../../../tests/fixtures/packages/pipenv/kinds/Pipfile.lock");

const BOTTLE_WHEEL: &str = "045684fbd2764eac9cdeb824861d1551d113e8b683d8d26e296898d3dd99a12e";
const BOTTLE_SDIST: &str = "787e78327e12b227938de02248333d788cfe45987edca735f8f88e03472c3f47";

fn find<'a>(locked: &'a [LockedDistribution], name: &str) -> &'a LockedDistribution {
    locked
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no {name} in {locked:#?}"))
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn index_entries_carry_version_hashes_markers_and_line() {
    let locked = parse("Pipfile.lock", LOCK).unwrap();
    assert_eq!(locked.len(), 2);
    let bottle = find(&locked, "bottle");
    assert_eq!(bottle.version, "0.13.4");
    assert_eq!(bottle.sha256, [BOTTLE_WHEEL, BOTTLE_SDIST]);
    assert_eq!(bottle.marker, None);
    assert_eq!(bottle.source, LockedSource::Index);
    assert_eq!(bottle.line, line_of(LOCK, "\"bottle\": {"));
    let six = find(&locked, "six");
    assert_eq!(six.version, "1.16.0");
    assert_eq!(six.sha256.len(), 2);
    assert_eq!(
        six.marker.as_deref(),
        Some(
            "python_version >= '2.7' and python_version != '3.0' and python_version != '3.1' \
             and python_version != '3.2'"
        )
    );
    assert_eq!(six.line, line_of(LOCK, "\"six\": {"));
    assert!(six.line > bottle.line);
}

#[test]
fn the_requirements_pip_resolves_pin_every_index_entry_with_its_hashes() {
    let locked = parse("Pipfile.lock", LOCK).unwrap();
    let text = requirements_for_pip(&locked);
    assert!(
        text.starts_with(&format!(
            "bottle==0.13.4 --hash=sha256:{BOTTLE_WHEEL} --hash=sha256:{BOTTLE_SDIST}\n"
        )),
        "{text}"
    );
    let parsed = crate::pip::requirements::parse("requirements.txt", &text).unwrap();
    assert_eq!(parsed.requirements().count(), 2);
}

#[test]
fn git_file_and_path_entries_are_named_the_project_itself_is_not_carried() {
    let locked = parse("kinds/Pipfile.lock", KINDS).unwrap();
    let source = |name: &str| find(&locked, name).source.clone();
    assert_eq!(source("kinds-app"), LockedSource::Project);
    assert_eq!(
        source("localpkg"),
        LockedSource::NotCarried("a local path (./vendor/localpkg)".into())
    );
    assert_eq!(
        source("gitdep"),
        LockedSource::NotCarried("a git repository (file:///tmp/gitdep)".into())
    );
    let LockedSource::NotCarried(why) = source("docopt") else {
        panic!("docopt is a direct URL");
    };
    assert!(
        why.starts_with("a direct URL (https://files.pythonhosted.org/"),
        "{why}"
    );
    for name in ["kinds-app", "localpkg", "gitdep", "docopt"] {
        let dist = find(&locked, name);
        assert_eq!(dist.version, "", "{name}");
        assert!(dist.sha256.is_empty(), "{name}");
        assert_eq!(dist.line, line_of(KINDS, &format!("\"{name}\": {{")));
    }
    // An entry of a second index is an index entry like the others.
    assert_eq!(source("six"), LockedSource::Index);
    // zope.interface's platform wheels, and the setuptools it needs (written without "index").
    assert_eq!(find(&locked, "zope.interface").sha256.len(), 36);
    assert_eq!(find(&locked, "setuptools").source, LockedSource::Index);
    // develop: bottle is added, six (the same pin as in default) is not repeated.
    let names: Vec<&str> = locked.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "docopt",
            "gitdep",
            "kinds-app",
            "localpkg",
            "setuptools",
            "six",
            "zope.interface",
            "bottle"
        ]
    );
    let bottle = find(&locked, "bottle");
    assert_eq!(bottle.line, line_of(KINDS, "\"bottle\": {"));
    let requirements = requirements_for_pip(&locked);
    assert_eq!(requirements.lines().count(), 4, "{requirements}");
    assert!(!requirements.contains("gitdep"), "{requirements}");
}

#[test]
fn a_develop_pin_other_than_defaults_is_kept() {
    let text = r#"{
    "_meta": {"sources": []},
    "default": {"six": {"version": "==1.16.0"}},
    "develop": {"Six": {"version": "==1.17.0"}, "six": {"version": "==1.16.0"}}
}"#;
    let locked = parse("Pipfile.lock", text).unwrap();
    let pins: Vec<(&str, &str, usize)> = locked
        .iter()
        .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
        .collect();
    assert_eq!(pins, [("six", "1.16.0", 3), ("Six", "1.17.0", 4)]);
}

#[test]
fn lines_are_found_for_escaped_and_repeated_keys() {
    let text = "{\"default\": {\n\"a\\u0062\": {\"version\": \"==1\"},\n\"x\": {\"markers\": \"\\\"default\\\": {\", \"version\": \"==2\"},\n\"y\": {\"version\": \"==3\"},\n\"y\": {\"version\": \"==4\"}}}";
    let locked = parse("Pipfile.lock", text).unwrap();
    let lines: Vec<(&str, &str, usize)> = locked
        .iter()
        .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
        .collect();
    // A key given twice is read as JSON readers do: the last one.
    assert_eq!(lines, [("ab", "1", 2), ("x", "2", 3), ("y", "4", 5)]);
}

#[test]
fn bad_input_is_an_error_naming_file_and_line() {
    let err = parse("app/Pipfile.lock", "{\n  \"default\": {\n    \"six\": \n}").unwrap_err();
    assert_eq!(err.file, "app/Pipfile.lock");
    assert_eq!(err.line, Some(4));
    assert!(err.message.starts_with("not valid JSON"), "{err}");

    let cases: [(&str, Option<usize>, &str); 9] = [
        ("[]", None, "not a Pipfile.lock: the JSON is not an object"),
        ("{\"name\": \"x\"}", None, "none of"),
        ("{\"default\": []}", None, "\"default\" is not an object"),
        (
            "{\"default\": {\n\"six\": 1}}",
            Some(2),
            "entry of six is not an object",
        ),
        (
            "{\"default\": {\n\"six\": {\"version\": 1}}}",
            Some(2),
            "\"version\" of six is not a string",
        ),
        (
            "{\"default\": {\"a\": {\"version\": \"==1\"}, \n\"six\": {\"version\": \">=1\"}}}",
            Some(2),
            "six is pinned as \">=1\"",
        ),
        (
            "{\"develop\": {\n\n\"six\": {\"hashes\": []}}}",
            Some(3),
            "six has no pinned version",
        ),
        (
            "{\"default\": {\"six\": {\"version\": \"==1\", \"hashes\": \"sha256:00\"}}}",
            Some(1),
            "\"hashes\" of six is not a list",
        ),
        (
            "{\"default\": {\"six\": {\"version\": \"==1\", \"hashes\": [\"sha256:zz\"]}}}",
            Some(1),
            "six has a malformed hash",
        ),
    ];
    for (text, line, message) in cases {
        let err = parse("Pipfile.lock", text).unwrap_err();
        assert_eq!(err.line, line, "{text}: {err}");
        assert!(err.message.contains(message), "{text}: {err}");
    }
}

#[test]
fn a_lock_cannot_smuggle_anything_into_the_requirements_pip_resolves() {
    let hash = "0".repeat(64);
    let cases = [
        // Found by the fuzzer: a name pip reads as a name and a specifier.
        (
            r#""bott<=le": {"version": "==0.13.4"}"#,
            "\"bott<=le\" is not a Python project name",
        ),
        (r#""a b": {"git": "x"}"#, "is not a Python project name"),
        (
            r#""six": {"version": "==1.0 --index-url http://evil/"}"#,
            "six is pinned to \"1.0 --index-url http://evil/\", not a version",
        ),
        (
            r#""six": {"version": "==1.0", "markers": "python_version >= '3'\n--index-url http://evil/"}"#,
            "the markers of six are not a marker pip reads",
        ),
        (
            r#""six": {"version": "==1.0", "markers": "python_version >= '3' # comment"}"#,
            "the markers of six are not a marker pip reads",
        ),
        (
            r#""six": {"version": "==1.0", "markers": "python_version >= '3' \\"}"#,
            "the markers of six are not a marker pip reads",
        ),
        (
            &format!(
                r#""six": {{"version": "==1.0", "markers": "os_name == 'posix' --hash=sha256:{hash}"}}"#
            ),
            "does not make a requirement pip reads as that pin",
        ),
        (
            r#""six": {"version": "==1.0", "markers": "python_version >= '3' -r other.txt"}"#,
            "does not make a requirement pip reads as that pin",
        ),
    ];
    for (entry, message) in cases {
        let text = format!("{{\"default\": {{\n{entry}}}}}");
        let err = parse("Pipfile.lock", &text).unwrap_err();
        assert_eq!(err.line, Some(2), "{text}: {err}");
        assert!(err.message.contains(message), "{text}: {err}");
    }
}

#[test]
fn a_url_named_in_a_reason_leaves_its_credentials_out() {
    let text = r#"{"default": {
        "a": {"git": "https://user:t0ken@git.example/a.git", "ref": "abc"},
        "b": {"file": "https://t0ken@files.example/b-1.0.tar.gz?x=@y", "version": ">=1"},
        "c": {"git": "git+ssh://git@git.example:org/c.git"}
    }}"#;
    let reasons: Vec<String> = parse("Pipfile.lock", text)
        .unwrap()
        .into_iter()
        .map(|d| match d.source {
            LockedSource::NotCarried(why) => why,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "a git repository (https://git.example/a.git)",
            "a direct URL (https://files.example/b-1.0.tar.gz?x=@y)",
            "a git repository (git+ssh://git.example:org/c.git)",
        ]
    );
}

#[test]
fn hashes_of_other_algorithms_are_left_out_and_triple_equals_is_a_pin() {
    let text = r#"{"default": {"a": {"version": "===1.0", "hashes": ["md5:00", "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"]}}}"#;
    let locked = parse("Pipfile.lock", text).unwrap();
    assert_eq!(locked[0].version, "1.0");
    assert_eq!(
        locked[0].sha256,
        ["abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"]
    );
}

#[test]
fn a_rewritten_lock_names_the_server_and_keeps_the_rest() {
    let url = "http://172.17.0.1:3149/simple/";
    let rewritten = rewrite_for_server("Pipfile.lock", LOCK, url).unwrap();
    let expected = LOCK
        .replace("\"https://pypi.org/simple\"", &format!("\"{url}\""))
        .replace("\"verify_ssl\": true", "\"verify_ssl\": false");
    assert_eq!(rewritten, expected);
    // Every source of a lock with two.
    let rewritten = rewrite_for_server("Pipfile.lock", KINDS, url).unwrap();
    let lock: Value = serde_json::from_str(&rewritten).unwrap();
    let sources = lock["_meta"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for (source, name) in sources.iter().zip(["pypi", "second"]) {
        assert_eq!(source["name"], name);
        assert_eq!(source["url"], url);
        assert_eq!(source["verify_ssl"], false);
    }
    assert_eq!(
        parse("Pipfile.lock", &rewritten).unwrap(),
        parse("Pipfile.lock", KINDS).unwrap()
    );
}

#[test]
fn written_as_pipenv_writes_it() {
    // pipenv's own output, unchanged when nothing is to change (its sources already the server's).
    let url = "https://pypi.org/simple";
    let once = rewrite_for_server("Pipfile.lock", KINDS, url).unwrap();
    assert_eq!(
        once,
        KINDS.replace("\"verify_ssl\": true", "\"verify_ssl\": false")
    );
    assert_eq!(
        rewrite_for_server("Pipfile.lock", &once, url).unwrap(),
        once
    );
    // Python's json.dumps(sort_keys=True, indent=4, ensure_ascii=True), measured.
    let text = "{\"_meta\": {\"sources\": [{\"url\": \"x\"}]}, \"b\": [], \"a\": {\"é\\n\\u0001\\u007f𝄞/\": [1, 2.5, null, {}]}}";
    let expected = r#"{
    "_meta": {
        "sources": [
            {
                "url": "http://s/simple/",
                "verify_ssl": false
            }
        ]
    },
    "a": {
        "\u00e9\n\u0001\u007f\ud834\udd1e/": [
            1,
            2.5,
            null,
            {}
        ]
    },
    "b": []
}
"#;
    assert_eq!(
        rewrite_for_server("Pipfile.lock", text, "http://s/simple/").unwrap(),
        expected
    );
    // A lock with Windows line endings keeps them, as pipenv does.
    let crlf = LOCK.replace('\n', "\r\n");
    let rewritten = rewrite_for_server("Pipfile.lock", &crlf, "http://s/simple/").unwrap();
    assert!(rewritten.ends_with("}\r\n"));
    assert_eq!(
        rewritten.matches('\n').count(),
        rewritten.matches("\r\n").count()
    );
}

#[test]
fn a_lock_without_sources_gets_one_for_the_server() {
    for meta in ["{}", "{\"sources\": []}"] {
        let text = format!("{{\"_meta\": {meta}, \"default\": {{}}}}");
        let rewritten = rewrite_for_server("Pipfile.lock", &text, "http://s/simple/").unwrap();
        let lock: Value = serde_json::from_str(&rewritten).unwrap();
        assert_eq!(
            lock["_meta"]["sources"],
            serde_json::json!([{"name": "pypi", "url": "http://s/simple/", "verify_ssl": false}])
        );
    }
}

#[test]
fn a_rewrite_of_a_malformed_lock_is_an_error() {
    let cases = [
        ("{\"_meta\": ", "not valid JSON"),
        ("[1]", "not an object"),
        ("{\"default\": {}}", "no \"_meta\" object"),
        ("{\"_meta\": {\"sources\": {}}}", "not a list of sources"),
        ("{\"_meta\": {\"sources\": [\"x\"]}}", "is not an object"),
    ];
    for (text, message) in cases {
        let err = rewrite_for_server("lock/Pipfile.lock", text, "http://s/simple/").unwrap_err();
        assert_eq!(err.file, "lock/Pipfile.lock");
        assert!(err.message.contains(message), "{text}: {err}");
    }
}

proptest::proptest! {
    /// Any edit of a real lock is read or refused, never a panic; what is rewritten reads back
    /// as the same distributions (lines aside: the layout is pipenv's now).
    #[test]
    fn edited_locks_never_panic(at in 0usize..2300, cut in 0usize..40, insert in "[{}\\[\\]\":,a-z0-9\\\\ \n]{0,12}") {
        let mut text = LOCK.to_string();
        let at = text.floor_char_boundary(at.min(text.len()));
        let end = text.floor_char_boundary((at + cut).min(text.len()));
        text.replace_range(at..end, &insert);
        let parsed = parse("Pipfile.lock", &text);
        if let Ok(rewritten) = rewrite_for_server("Pipfile.lock", &text, "http://s/simple/") {
            if let Ok(parsed) = parsed {
                let without_lines = |locked: Vec<LockedDistribution>| {
                    locked.into_iter().map(|d| LockedDistribution { line: 0, ..d }).collect::<Vec<_>>()
                };
                let again = parse("Pipfile.lock", &rewritten).unwrap();
                proptest::prop_assert_eq!(without_lines(again), without_lines(parsed));
            }
        }
    }
}

#[test]
fn a_built_wheel_is_allowed_next_to_the_hashes_the_lock_pins() {
    let built = "ab".repeat(32);
    let rewritten = rewrite_for_server_with_hashes(
        "Pipfile.lock",
        LOCK,
        "http://s/simple/",
        &|name, version| {
            if (name, version) == ("bottle", "0.13.4") {
                vec![built.clone(), BOTTLE_WHEEL.to_string()]
            } else {
                Vec::new()
            }
        },
    )
    .unwrap();
    let locked = parse("Pipfile.lock", &rewritten).unwrap();
    let bottle = find(&locked, "bottle");
    assert!(bottle.sha256.contains(&built), "{bottle:?}");
    // A hash the entry has already is not repeated; other entries keep theirs.
    assert_eq!(
        bottle.sha256.iter().filter(|h| *h == BOTTLE_WHEEL).count(),
        1
    );
    assert_eq!(
        find(&locked, "six").sha256,
        find(&parse("Pipfile.lock", LOCK).unwrap(), "six").sha256
    );
}

#[test]
fn the_python_version_the_lock_was_made_for() {
    assert_eq!(required_python_version(LOCK).as_deref(), Some("3.11"));
    let full = r#"{"_meta": {"requires": {"python_full_version": "3.12.4"}}, "default": {}}"#;
    assert_eq!(required_python_version(full).as_deref(), Some("3.12"));
    for none in [
        r#"{"_meta": {"requires": {}}, "default": {}}"#,
        r#"{"_meta": {"requires": {"python_version": ">=3.8"}}}"#,
        r#"{"_meta": {"requires": {"python_version": 3.11}}}"#,
        "not json",
    ] {
        assert_eq!(required_python_version(none), None, "{none}");
    }
}
