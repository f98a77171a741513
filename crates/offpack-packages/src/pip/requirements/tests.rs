use super::*;

fn reqs(file: &RequirementFile) -> Vec<&Requirement> {
    file.entries
        .iter()
        .filter_map(|e| match e {
            Entry::Requirement(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn one(line: &str) -> Requirement {
    let f = parse("r.txt", line).unwrap();
    let r = reqs(&f);
    assert_eq!(r.len(), 1, "{line}");
    r[0].clone()
}

const REAL: &str = "\
# Production dependencies
--index-url https://pypi.org/simple
--extra-index-url https://example.invalid/simple
--trusted-host example.invalid

-r base.txt
--constraint constraints.txt
Django==4.2.7  # LTS
requests[security,socks] >= 2.31, < 3 ; python_version >= \"3.8\"
six==1.16.0 \\
    --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926 \\
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
pip @ https://example.invalid/pip-23.0-py3-none-any.whl ; sys_platform == 'linux'
-e git+https://example.invalid/repo.git#egg=mypkg
.
./local/pkg[extra]
./dist/thing-1.0-py3-none-any.whl
--pre
--prefer-binary
--no-binary :all:
--only-binary=numpy
--find-links ./wheels
--require-hashes
";

#[test]
fn parses_a_real_looking_file() {
    let f = parse("requirements.txt", REAL).unwrap();
    let e = &f.entries;
    assert_eq!(
        e[0],
        Entry::Option {
            name: "--index-url".into(),
            value: Some("https://pypi.org/simple".into()),
            line: 2
        }
    );
    assert!(matches!(&e[1], Entry::Option { name, .. } if name == "--extra-index-url"));
    assert!(
        matches!(&e[2], Entry::Option { name, value: Some(v), .. } if name == "--trusted-host" && v == "example.invalid")
    );
    assert_eq!(
        e[3],
        Entry::Include {
            constraint: false,
            path: "base.txt".into(),
            line: 6
        }
    );
    assert_eq!(
        e[4],
        Entry::Include {
            constraint: true,
            path: "constraints.txt".into(),
            line: 7
        }
    );
    let r = reqs(&f);
    assert_eq!(r[0].name, "Django");
    assert_eq!(r[0].normalized, "django");
    assert_eq!(r[0].pinned_version(), Some("4.2.7"));
    assert_eq!(r[0].raw, "Django==4.2.7");
    assert_eq!(r[0].line, 8);

    assert_eq!(r[1].name, "requests");
    assert_eq!(r[1].extras, ["security", "socks"]);
    assert_eq!(r[1].specifier, ">= 2.31, < 3");
    assert_eq!(r[1].marker.as_deref(), Some("python_version >= \"3.8\""));
    assert_eq!(r[1].pinned_version(), None);

    assert_eq!(r[2].name, "six");
    assert_eq!(r[2].line, 10);
    assert_eq!(r[2].end_line, 12);
    assert_eq!(r[2].hashes.len(), 2);
    assert!(r[2].hashes[0].starts_with("sha256:1e61"));

    assert_eq!(r[3].name, "pip");
    assert_eq!(
        r[3].url.as_deref(),
        Some("https://example.invalid/pip-23.0-py3-none-any.whl")
    );
    assert_eq!(r[3].marker.as_deref(), Some("sys_platform == 'linux'"));

    assert!(r[4].editable);
    assert_eq!(r[4].name, "mypkg");
    assert_eq!(
        r[4].url.as_deref(),
        Some("git+https://example.invalid/repo.git#egg=mypkg")
    );

    assert_eq!(r[5].url.as_deref(), Some("."));
    assert_eq!(r[5].name, "");
    assert_eq!(r[6].url.as_deref(), Some("./local/pkg"));
    assert_eq!(r[6].extras, ["extra"]);
    assert_eq!(r[7].name, "thing");
    assert_eq!(
        r[7].url.as_deref(),
        Some("./dist/thing-1.0-py3-none-any.whl")
    );

    let names: Vec<(&str, Option<&str>)> = e
        .iter()
        .filter_map(|x| match x {
            Entry::Option { name, value, line } if *line >= 17 => {
                Some((name.as_str(), value.as_deref()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            ("--pre", None),
            ("--prefer-binary", None),
            ("--no-binary", Some(":all:")),
            ("--only-binary", Some("numpy")),
            ("--find-links", Some("./wheels")),
            ("--require-hashes", None),
        ]
    );
}

#[test]
fn option_forms() {
    let f = parse(
        "r.txt",
        "-i https://a/simple\n-rbase.txt\n--requirement=other.txt\n-c c.txt\n--index https://b/\n-f x -f y\n-C key=value\n",
    )
    .unwrap();
    assert!(
        matches!(&f.entries[0], Entry::Option { name, value: Some(v), .. } if name == "--index-url" && v == "https://a/simple")
    );
    assert!(
        matches!(&f.entries[1], Entry::Include { path, constraint: false, .. } if path == "base.txt")
    );
    assert!(matches!(&f.entries[2], Entry::Include { path, .. } if path == "other.txt"));
    assert!(
        matches!(&f.entries[3], Entry::Include { path, constraint: true, .. } if path == "c.txt")
    );
    // optparse accepts unique prefixes of long options.
    assert!(matches!(&f.entries[4], Entry::Option { name, .. } if name == "--index-url"));
    assert!(matches!(&f.entries[5], Entry::Option { value: Some(v), .. } if v == "x"));
    assert!(matches!(&f.entries[6], Entry::Option { value: Some(v), .. } if v == "y"));
    assert_eq!(f.entries.len(), 8);
}

#[test]
fn comments_and_blank_lines() {
    let f = parse(
        "r.txt",
        "\n   \n# comment\n  # indented comment\nflask # trailing\nhttps://x/a.whl#sha256=00\n",
    )
    .unwrap();
    let r = reqs(&f);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].name, "flask");
    assert_eq!(r[0].line, 5);
    // `#` without whitespace before it is part of the URL.
    assert_eq!(r[1].url.as_deref(), Some("https://x/a.whl#sha256=00"));
}

#[test]
fn continuation_ended_by_comment_line() {
    let f = parse("r.txt", "flask==2.0 \\\n# a comment\nsix\n").unwrap();
    let r = reqs(&f);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].pinned_version(), Some("2.0"));
    assert_eq!(r[0].end_line, 2);
    assert_eq!(r[1].line, 3);
}

#[test]
fn continuation_at_end_of_file_and_crlf() {
    let f = parse("r.txt", "a==1\r\nb \\\r\n  ==2 \\").unwrap();
    let r = reqs(&f);
    assert_eq!(r[0].pinned_version(), Some("1"));
    assert_eq!(r[1].name, "b");
    assert_eq!(r[1].pinned_version(), Some("2"));
    assert_eq!(r[1].line, 2);
}

#[test]
fn hash_option_forms() {
    let r = one("a==1 --hash sha256:aa --hash=sha256:bb");
    assert_eq!(r.hashes, ["sha256:aa", "sha256:bb"]);
}

#[test]
fn pinned_versions() {
    assert_eq!(one("a==1.0").pinned_version(), Some("1.0"));
    assert_eq!(one("a == 1.0").pinned_version(), Some("1.0"));
    assert_eq!(one("a (==1.0)").pinned_version(), Some("1.0"));
    assert_eq!(one("a==1.*").pinned_version(), None);
    assert_eq!(one("a===1.0").pinned_version(), None);
    assert_eq!(one("a==1.0,!=1.1").pinned_version(), None);
    assert_eq!(one("a>=1.0").pinned_version(), None);
    assert_eq!(one("a").pinned_version(), None);
    assert_eq!(
        one("a==1.0; python_version<'3.12'").pinned_version(),
        Some("1.0")
    );
}

#[test]
fn marker_and_urls() {
    let r = one("b;python_version<\"3\"");
    assert_eq!(r.name, "b");
    assert_eq!(r.marker.as_deref(), Some("python_version<\"3\""));
    let r = one("pkg[x] @ file:///tmp/pkg ; os_name == 'posix'");
    assert_eq!(r.extras, ["x"]);
    assert_eq!(r.url.as_deref(), Some("file:///tmp/pkg"));
    let r = one("git+https://h/r.git@v1#egg=foo[bar]; python_version > '3'");
    assert_eq!(r.name, "foo");
    assert_eq!(r.marker.as_deref(), Some("python_version > '3'"));
    // A '/' in a marker does not make the line a path.
    let r = one("pkg>=1; sys_platform == 'a/b'");
    assert_eq!(r.name, "pkg");
    assert_eq!(r.url, None);
    let r = one("./pkg-1.0.tar.gz; python_version > '3'");
    assert_eq!(r.url.as_deref(), Some("./pkg-1.0.tar.gz"));
    assert_eq!(r.name, "pkg");
    assert_eq!(r.marker.as_deref(), Some("python_version > '3'"));
    let r = one("-e ./src/pkg[dev]");
    assert!(r.editable);
    assert_eq!(r.url.as_deref(), Some("./src/pkg"));
    assert_eq!(r.extras, ["dev"]);
}

fn err(text: &str) -> String {
    parse("requirements.txt", text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_and_line() {
    assert_eq!(
        err("a\nb\n\n--foo\n"),
        "requirements.txt:4: unknown option --foo"
    );
    assert_eq!(
        err("-r\n"),
        "requirements.txt:1: option --requirement needs a value"
    );
    assert_eq!(
        err("-r ''\n"),
        "requirements.txt:1: --requirement needs a file"
    );
    assert!(err("x\n-c\n").starts_with("requirements.txt:2: "));
    assert!(err("foo bar\n").starts_with("requirements.txt:1: invalid requirement"));
    assert!(err("foo[bar\n").contains("unclosed extras"));
    assert!(err("foo @\n").contains("URL"));
    assert!(err("-x\n").contains("unknown option -x"));
    assert!(err("--pre=1\n").contains("takes no value"));
    assert!(err("--index-url 'x\n").contains("quotation"));
    assert!(err("a==1 --hash=abc\n").contains("algorithm:hexdigest"));
    assert!(err("--pr\n").contains("ambiguous"));
    assert!(err("a==1 --hash=md5:00\n").contains("not allowed"));
    assert!(err("a==1;\n").contains("empty marker"));
    assert!(err("==1\n").contains("project name"));
    assert!(err("a =! 1\n").contains("operator"));
    assert!(err("a==\n").contains("invalid version"));
}

#[test]
fn lenient_where_pip_is() {
    // Positional leftovers on option lines and file options on requirement lines are ignored.
    let f = parse("r.txt", "--pre ignored\nflask --pre\n").unwrap();
    assert_eq!(f.entries.len(), 2);
    // A BOM at the start is dropped, as pip's auto_decode does.
    let f = parse("r.txt", "\u{feff}flask\n").unwrap();
    assert_eq!(reqs(&f)[0].name, "flask");
    // Unicode in comments is fine.
    assert_eq!(
        reqs(&parse("r.txt", "# ünïcødé ✓\nflask\n").unwrap()).len(),
        1
    );
    // Unicode outside comments errors instead of panicking.
    assert!(parse("r.txt", "flåsk\n").is_err());
    assert!(parse("r.txt", "é==1 ; ü\n").is_err());
}

#[test]
fn huge_input_does_not_panic() {
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("pkg{i}==1.{i} \\\n  --hash=sha256:{i:064x}\n"));
    }
    let f = parse("r.txt", &text).unwrap();
    assert_eq!(f.entries.len(), 20_000);
    let long = "a".repeat(1_000_000);
    assert!(parse("r.txt", &long).is_ok());
    let _ = parse("r.txt", &"\\\n".repeat(100_000));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = parse("r.txt", &s);
        let mut h = BTreeMap::new();
        h.insert("a".to_string(), vec!["ff".to_string()]);
        let _ = rewrite_for_index(&s, "http://h/simple/", "h", &h);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let s = String::from_utf8_lossy(&b);
        let _ = parse("r.txt", &s);
        let mut h = BTreeMap::new();
        h.insert("a".to_string(), vec!["ff".to_string()]);
        let _ = rewrite_for_index(&s, "http://h/simple/", "h", &h);
    }

    #[test]
    fn line_like_text_never_panics(lines in proptest::collection::vec("[-a-z=<>.;@#\\[\\]\\\\ :/'\"]{0,30}", 0..20)) {
        let s = lines.join("\n");
        let _ = parse("r.txt", &s);
        let mut h = BTreeMap::new();
        h.insert("a".to_string(), vec!["ff".to_string()]);
        let out = rewrite_for_index(&s, "http://h/simple/", "h", &h);
        proptest::prop_assert!(out.ends_with(&s) || out.len() > s.len());
    }
}

fn hashes(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(n, hs)| (n.to_string(), hs.iter().map(|h| h.to_string()).collect()))
        .collect()
}

#[test]
fn rewrite_prepends_three_lines_and_keeps_the_rest() {
    let out = rewrite_for_index(
        REAL,
        "http://172.17.0.1:3149/simple/",
        "172.17.0.1:3149",
        &BTreeMap::new(),
    );
    assert_eq!(
        out,
        format!(
            "# offpack: packages served from the bundle\n--index-url http://172.17.0.1:3149/simple/\n--trusted-host 172.17.0.1:3149\n{REAL}"
        )
    );
    let f = parse("r.txt", &out).unwrap();
    assert!(
        matches!(&f.entries[0], Entry::Option { name, value: Some(v), line: 2 } if name == "--index-url" && v == "http://172.17.0.1:3149/simple/")
    );
    assert!(
        matches!(&f.entries[1], Entry::Option { name, value: Some(v), line: 3 } if name == "--trusted-host" && v == "172.17.0.1:3149")
    );
}

#[test]
fn rewrite_appends_hashes_on_continued_requirement() {
    let extra = hashes(&[
        (
            "six",
            &[
                "ABCD",
                "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
            ],
        ),
        ("django", &["ee"]),
    ]);
    let out = rewrite_for_index(REAL, "http://g:1/simple/", "g:1", &extra);
    let lines: Vec<&str> = out.lines().skip(3).collect();
    let orig: Vec<&str> = REAL.lines().collect();
    assert_eq!(lines.len(), orig.len());
    for (i, (a, b)) in lines.iter().zip(&orig).enumerate() {
        if i == 11 {
            assert_eq!(
                *a,
                "    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254 --hash=sha256:abcd"
            );
        } else {
            // Django has no --hash, so it is left alone; everything else is byte-identical.
            assert_eq!(a, b, "line {}", i + 1);
        }
    }
    let f = parse("r.txt", &out).unwrap();
    let six = reqs(&f).into_iter().find(|r| r.name == "six").unwrap();
    assert_eq!(six.hashes.len(), 3);
    assert_eq!(six.hashes[2], "sha256:abcd");
    // Deterministic and idempotent in its hashes.
    assert_eq!(
        out,
        rewrite_for_index(REAL, "http://g:1/simple/", "g:1", &extra)
    );
}

#[test]
fn rewrite_inserts_before_comment_and_backslash() {
    let text = "a==1 --hash=sha256:11  # pinned\nb==2 --hash=sha256:22 \\\n  # trailing comment line\nA_b==3 --hash=sha256:33\\\n";
    let extra = hashes(&[("a", &["99"]), ("b", &["88"]), ("a-b", &["77"])]);
    let out = rewrite_for_index(text, "http://g/simple/", "g", &extra);
    let body: Vec<&str> = out.split_inclusive('\n').skip(3).collect();
    assert_eq!(
        body[0],
        "a==1 --hash=sha256:11 --hash=sha256:99  # pinned\n"
    );
    assert_eq!(body[1], "b==2 --hash=sha256:22 --hash=sha256:88 \\\n");
    assert_eq!(body[2], "  # trailing comment line\n");
    assert_eq!(body[3], "A_b==3 --hash=sha256:33 --hash=sha256:77\\\n");
    let f = parse("r.txt", &out).unwrap();
    let r = reqs(&f);
    assert_eq!(r[0].hashes, ["sha256:11", "sha256:99"]);
    assert_eq!(r[1].hashes, ["sha256:22", "sha256:88"]);
    assert_eq!(r[2].hashes, ["sha256:33", "sha256:77"]);
}

#[test]
fn rewrite_keeps_crlf_and_bom() {
    let text = "\u{feff}a==1 --hash=sha256:11\r\nb\r\n";
    let out = rewrite_for_index(text, "http://g/simple/", "g", &hashes(&[("a", &["22"])]));
    assert_eq!(
        out,
        "\u{feff}# offpack: packages served from the bundle\r\n--index-url http://g/simple/\r\n--trusted-host g\r\na==1 --hash=sha256:11 --hash=sha256:22\r\nb\r\n"
    );
}

#[test]
fn rewrite_of_empty_file() {
    assert_eq!(
        rewrite_for_index("", "http://g/simple/", "g", &BTreeMap::new()),
        "# offpack: packages served from the bundle\n--index-url http://g/simple/\n--trusted-host g\n"
    );
}

#[test]
fn rewrite_of_a_rewritten_file_does_not_stack() {
    let extra = hashes(&[("a", &["22"])]);
    let once = rewrite_for_index("a==1 --hash=sha256:11\n", "http://g/simple/", "g", &extra);
    let twice = rewrite_for_index(&once, "http://h/simple/", "h", &extra);
    assert_eq!(
        twice,
        "# offpack: packages served from the bundle\n--index-url http://h/simple/\n--trusted-host h\na==1 --hash=sha256:11 --hash=sha256:22\n"
    );
    // A file that merely starts with a comment keeps it.
    let text =
        "# offpack: packages served from the bundle, and more\n--index-url x\n--trusted-host y\n";
    assert!(rewrite_for_index(text, "u", "h", &BTreeMap::new()).ends_with(text));
}

#[test]
fn file_helpers() {
    let f = parse("requirements.txt", REAL).unwrap();
    assert_eq!(f.requirements().count(), 8);
    assert_eq!(
        f.includes().collect::<Vec<_>>(),
        [(false, "base.txt"), (true, "constraints.txt")]
    );
    assert_eq!(
        f.option_values("--index-url").collect::<Vec<_>>(),
        [Some("https://pypi.org/simple")]
    );
}
