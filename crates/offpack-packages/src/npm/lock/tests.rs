use super::*;

const I_A: &str = "sha512-H0D8ktokFpR1CXnubPWC8tXX0o4YM13gWrxU0FYOD1MChgxlK/CNVgJSql50IQVG82n7u86MEs/HlXsmUv6adQ==";
const I_B: &str = "sha512-Umd2iCLuYk1I/OFexcp5y9YCy39MIVelFlVpkfIu+Me173sY0f9BxZNw77CFhlHUSpNsEbexRMSP4E3zxqPo2g==";
const I_C: &str = "sha512-rMKNsr63tCuqHLAkPUAcy04/zkTXsCh5pSeZqt/1QVItiCJZiy+mZPnVFWwAySSAXXXDhovVbCrLgdN+mONa3A==";
const SHA1_D: &str = "3c363836cf4e16666669a25da280a1865c2d2874";
const SHA1_B64: &str = "PDY4Ns9OFmZmaaJdooChhlwtKHQ=";

pub(crate) fn fill(s: &str) -> String {
    s.replace("@IA@", I_A)
        .replace("@IB@", I_B)
        .replace("@IC@", I_C)
        .replace("@SHA1D@", SHA1_D)
        .replace("@SHA1B64@", SHA1_B64)
}

fn by_path<'a>(pkgs: &'a [NpmPackage], path: &str) -> &'a NpmPackage {
    pkgs.iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
}

pub(crate) const V1: &str = r#"{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 1,
  "requires": true,
  "dependencies": {
    "@babel/code-frame": {
      "version": "7.12.13",
      "resolved": "https://registry.npmjs.org/@babel/code-frame/-/code-frame-7.12.13.tgz",
      "integrity": "@IA@",
      "dev": true,
      "requires": {
        "@babel/highlight": "^7.12.13"
      }
    },
    "debug": {
      "version": "2.6.9",
      "resolved": "https://registry.npmjs.org/debug/-/debug-2.6.9.tgz",
      "integrity": "@IB@",
      "requires": {
        "ms": "2.0.0"
      },
      "dependencies": {
        "ms": {
          "version": "2.0.0",
          "resolved": "https://registry.npmjs.org/ms/-/ms-2.0.0.tgz",
          "integrity": "@IC@"
        }
      }
    },
    "fsevents": {
      "version": "2.3.2",
      "resolved": "https://registry.npmjs.org/fsevents/-/fsevents-2.3.2.tgz",
      "integrity": "@IA@",
      "optional": true
    },
    "pad": {
      "version": "npm:left-pad@1.3.0",
      "resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
      "integrity": "@IB@"
    },
    "mylib": {
      "version": "github:someone/mylib#0123456789abcdef0123456789abcdef01234567",
      "from": "github:someone/mylib"
    },
    "local": {
      "version": "file:../local"
    },
    "old": {
      "version": "1.0.0",
      "resolved": "https://registry.npmjs.org/old/-/old-1.0.0.tgz",
      "shasum": "@SHA1D@"
    },
    "tarball": {
      "version": "https://example.invalid/tarball.tgz",
      "resolved": "https://example.invalid/tarball.tgz"
    }
  }
}
"#;

#[test]
fn lockfile_v1() {
    let pkgs = parse_package_lock("package-lock.json", &fill(V1)).unwrap();
    assert_eq!(pkgs.len(), 9);
    let cf = by_path(&pkgs, "node_modules/@babel/code-frame");
    assert_eq!(cf.name, "@babel/code-frame");
    assert_eq!(cf.version, "7.12.13");
    assert!(cf.dev && !cf.optional);
    assert_eq!(
        cf.source,
        NpmSource::Registry {
            resolved: "https://registry.npmjs.org/@babel/code-frame/-/code-frame-7.12.13.tgz"
                .into()
        }
    );
    assert_eq!(cf.integrity.as_ref().unwrap().to_string(), I_A);
    let ms = by_path(&pkgs, "node_modules/debug/node_modules/ms");
    assert_eq!((ms.name.as_str(), ms.version.as_str()), ("ms", "2.0.0"));
    assert!(by_path(&pkgs, "node_modules/fsevents").optional);
    let pad = by_path(&pkgs, "node_modules/pad");
    assert_eq!(pad.name, "left-pad");
    assert_eq!(pad.alias.as_deref(), Some("pad"));
    assert_eq!(pad.version, "1.3.0");
    assert!(
        matches!(&by_path(&pkgs, "node_modules/mylib").source, NpmSource::Git { spec } if spec.starts_with("github:someone/mylib#"))
    );
    assert_eq!(
        by_path(&pkgs, "node_modules/local").source,
        NpmSource::File {
            spec: "file:../local".into()
        }
    );
    let old = by_path(&pkgs, "node_modules/old");
    assert_eq!(old.integrity.as_ref().unwrap().best().algorithm, "sha1");
    assert_eq!(
        by_path(&pkgs, "node_modules/tarball").source,
        NpmSource::Remote {
            url: "https://example.invalid/tarball.tgz".into()
        }
    );
}

pub(crate) const V3: &str = r#"{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "app",
      "version": "1.0.0",
      "workspaces": ["packages/*"],
      "dependencies": {
        "@offpack-fixture/util": "^1.0.0",
        "pad": "npm:left-pad@^1.3.0"
      },
      "optionalDependencies": {
        "@esbuild/linux-x64": "0.19.0"
      }
    },
    "node_modules/@esbuild/darwin-arm64": {
      "version": "0.19.0",
      "resolved": "https://registry.npmjs.org/@esbuild/darwin-arm64/-/darwin-arm64-0.19.0.tgz",
      "integrity": "@IA@",
      "cpu": ["arm64"],
      "optional": true,
      "os": ["darwin"],
      "engines": {"node": ">=12"}
    },
    "node_modules/@esbuild/linux-x64": {
      "version": "0.19.0",
      "resolved": "https://registry.npmjs.org/@esbuild/linux-x64/-/linux-x64-0.19.0.tgz",
      "integrity": "@IB@",
      "cpu": ["x64"],
      "optional": true,
      "os": ["linux"]
    },
    "node_modules/@offpack-fixture/util": {
      "version": "1.0.0",
      "resolved": "http://127.0.0.1:4873/@offpack-fixture/util/-/util-1.0.0.tgz",
      "integrity": "@IC@"
    },
    "node_modules/pad": {
      "name": "left-pad",
      "version": "1.3.0",
      "resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
      "integrity": "sha1-@SHA1B64@ @IA@",
      "deprecated": "use String.prototype.padStart()"
    },
    "node_modules/a/node_modules/b": {
      "version": "2.0.0",
      "resolved": "https://registry.npmjs.org/b/-/b-2.0.0.tgz",
      "integrity": "@IB@",
      "dev": true
    },
    "node_modules/c": {
      "version": "1.0.0",
      "resolved": "https://registry.npmjs.org/c/-/c-1.0.0.tgz",
      "integrity": "@IC@",
      "devOptional": true
    },
    "node_modules/c/node_modules/d": {
      "version": "1.0.0",
      "inBundle": true
    },
    "node_modules/ws-a": {
      "resolved": "packages/ws-a",
      "link": true
    },
    "packages/ws-a": {
      "name": "ws-a",
      "version": "0.0.1"
    },
    "node_modules/gitdep": {
      "version": "1.0.0",
      "resolved": "git+ssh://git@github.com/someone/gitdep.git#0123456789abcdef0123456789abcdef01234567"
    },
    "node_modules/localdep": {
      "version": "1.0.0",
      "resolved": "file:../localdep-1.0.0.tgz"
    }
  }
}
"#;

#[test]
fn lockfile_v3_and_v2() {
    for (label, text) in [
        ("package-lock.json", fill(V3)),
        (
            "npm-shrinkwrap.json",
            fill(V3).replace("\"lockfileVersion\": 3", "\"lockfileVersion\": 2"),
        ),
    ] {
        let pkgs = parse_package_lock(label, &text).unwrap();
        assert_eq!(pkgs.len(), 11, "{label}");
        let linux = by_path(&pkgs, "node_modules/@esbuild/linux-x64");
        assert_eq!(linux.name, "@esbuild/linux-x64");
        assert!(linux.optional);
        assert_eq!(linux.os, ["linux"]);
        assert_eq!(linux.cpu, ["x64"]);
        let darwin = by_path(&pkgs, "node_modules/@esbuild/darwin-arm64");
        let amd64 = crate::npm::NpmTarget::from_platform("linux/amd64", Some("glibc"));
        assert!(linux.installs_on(&amd64));
        assert!(!darwin.installs_on(&amd64));

        let util = by_path(&pkgs, "node_modules/@offpack-fixture/util");
        assert_eq!(util.name, "@offpack-fixture/util");
        assert!(matches!(util.source, NpmSource::Registry { .. }));

        let pad = by_path(&pkgs, "node_modules/pad");
        assert_eq!(pad.name, "left-pad");
        assert_eq!(pad.alias.as_deref(), Some("pad"));
        let i = pad.integrity.as_ref().unwrap();
        assert_eq!(i.hashes().len(), 2);
        assert_eq!(i.best().algorithm, "sha512");
        assert!(i.matches("sha1", &hex::decode(SHA1_D).unwrap()));

        let b = by_path(&pkgs, "node_modules/a/node_modules/b");
        assert!(b.dev && !b.optional);
        let c = by_path(&pkgs, "node_modules/c");
        assert!(c.optional && !c.dev);
        let d = by_path(&pkgs, "node_modules/c/node_modules/d");
        assert!(d.in_bundle);
        assert_eq!(d.source, NpmSource::Unknown);
        assert_eq!(
            by_path(&pkgs, "node_modules/ws-a").source,
            NpmSource::Link {
                path: "packages/ws-a".into()
            }
        );
        let ws = by_path(&pkgs, "packages/ws-a");
        assert_eq!(ws.name, "ws-a");
        assert!(matches!(ws.source, NpmSource::Link { .. }));
        assert!(matches!(
            by_path(&pkgs, "node_modules/gitdep").source,
            NpmSource::Git { .. }
        ));
        assert!(matches!(
            by_path(&pkgs, "node_modules/localdep").source,
            NpmSource::File { .. }
        ));
        assert!(!pkgs.iter().any(|p| p.path.is_empty()));
    }
}

#[test]
fn lock_errors() {
    let e = |t: &str| {
        parse_package_lock("package-lock.json", t)
            .unwrap_err()
            .to_string()
    };
    assert!(e("{").starts_with("package-lock.json:1: not valid JSON"));
    assert_eq!(
        e("[]"),
        "package-lock.json: not a lock file (expected a JSON object)"
    );
    assert!(e("{}").contains("not a package-lock"));
    assert!(e(r#"{"lockfileVersion": 3}"#).contains("without a \"packages\" map"));
    assert!(e(r#"{"lockfileVersion": 1, "dependencies": []}"#).contains("not an object"));
    assert!(
        e(r#"{"lockfileVersion": 3, "packages": {"node_modules/a": 1}}"#)
            .contains("node_modules/a")
    );
    // A hex digest where base64 belongs is refused, naming the entry.
    assert!(
        e(&fill(&V3.replace("sha1-@SHA1B64@", "sha1-@SHA1D@")))
            .contains("packages[\"node_modules/pad\"]: unreadable integrity")
    );
    assert!(
        e(r#"{"lockfileVersion": 3, "packages": {"node_modules/a": {"version": "1.0.0", "integrity": "sha512-xx"}}}"#)
            .contains("unreadable integrity")
    );
    assert!(
        e(r#"{"lockfileVersion": 0, "dependencies": {}}"#)
            .contains("unsupported lockfileVersion 0")
    );
    // A v2 lock without `packages` is read from its v1 section.
    let v2 = fill(V1).replace("\"lockfileVersion\": 1", "\"lockfileVersion\": 2");
    assert_eq!(parse_package_lock("p", &v2).unwrap().len(), 9);
    // An empty v1 lock is fine.
    assert!(
        parse_package_lock("p", r#"{"lockfileVersion": 1}"#)
            .unwrap()
            .is_empty()
    );
}

pub(crate) const YARN: &str = r#"# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


"@babel/code-frame@^7.0.0", "@babel/code-frame@^7.10.4":
  version "7.12.13"
  resolved "https://registry.yarnpkg.com/@babel/code-frame/-/code-frame-7.12.13.tgz#dcfc826beef65e75c50e21d3837d7d95798dd658"
  integrity @IA@
  dependencies:
    "@babel/highlight" "^7.12.13"

debug@2.6.9, debug@^2.2.0:
  version "2.6.9"
  resolved "https://registry.yarnpkg.com/debug/-/debug-2.6.9.tgz#5d128515df134ff327e90a4c93f4e077a536341f"
  integrity @IB@
  dependencies:
    ms "2.0.0"

old@^1.0.0:
  version "1.0.0"
  resolved "https://registry.yarnpkg.com/old/-/old-1.0.0.tgz#@SHA1D@"

"string-width-cjs@npm:string-width@^4.2.0":
  version "4.2.3"
  resolved "https://registry.yarnpkg.com/string-width/-/string-width-4.2.3.tgz#269c7117d27b05ad2e536830a8ec895ef9c6d010"
  integrity @IC@

"mylib@github:someone/mylib":
  version "1.0.0"
  resolved "https://codeload.github.com/someone/mylib/tar.gz/0123456789abcdef0123456789abcdef01234567"

"gitdep@git+https://example.invalid/gitdep.git#v1":
  version "1.0.0"
  resolved "git+https://example.invalid/gitdep.git#0123456789abcdef0123456789abcdef01234567"

"local@file:../local":
  version "0.0.1"
"#;

#[test]
fn yarn_v1() {
    let pkgs = parse_yarn_lock("yarn.lock", &fill(YARN)).unwrap();
    assert_eq!(pkgs.len(), 7);
    let cf = &pkgs[0];
    assert_eq!(
        cf.path,
        "\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\""
    );
    assert_eq!(cf.name, "@babel/code-frame");
    assert_eq!(cf.version, "7.12.13");
    assert_eq!(
        cf.source.url(),
        Some(
            "https://registry.yarnpkg.com/@babel/code-frame/-/code-frame-7.12.13.tgz#dcfc826beef65e75c50e21d3837d7d95798dd658"
        )
    );
    assert!(matches!(cf.source, NpmSource::Registry { .. }));
    assert_eq!(cf.integrity.as_ref().unwrap().to_string(), I_A);

    let get = |name: &str| pkgs.iter().find(|p| p.name == name).unwrap();
    assert_eq!(get("debug").version, "2.6.9");
    // No integrity line: the sha1 of the resolved fragment stands in.
    let old = get("old");
    assert_eq!(old.integrity.as_ref().unwrap().best().algorithm, "sha1");
    assert!(
        old.integrity
            .as_ref()
            .unwrap()
            .matches("sha1", &hex::decode(SHA1_D).unwrap())
    );
    let sw = get("string-width");
    assert_eq!(sw.alias.as_deref(), Some("string-width-cjs"));
    assert_eq!(sw.version, "4.2.3");
    assert!(matches!(get("mylib").source, NpmSource::Remote { .. }));
    assert!(matches!(get("gitdep").source, NpmSource::Git { .. }));
    assert_eq!(
        get("local").source,
        NpmSource::File {
            spec: "file:../local".into()
        }
    );
}

#[test]
fn yarn_errors() {
    let e = |t: &str| parse_yarn_lock("yarn.lock", t).unwrap_err().to_string();
    assert_eq!(
        e("__metadata:\n  version: 6\n"),
        "yarn.lock:1: this is a yarn 2+ (berry) lockfile; only yarn v1 lockfiles are supported"
    );
    assert!(e("  version \"1\"\n").starts_with("yarn.lock:1: indented line before any entry"));
    assert!(e("a@1:\n  version \"1\"\nb@1\n").starts_with("yarn.lock:3: expected an entry header"));
    assert!(
        e("# c\na@1:\n  resolved \"x\"\n").starts_with("yarn.lock:2: entry \"a@1\" has no version")
    );
    assert!(e("a@1:\n  version \"1\"\n  integrity sha512-zz\n").starts_with("yarn.lock:1: entry"));
    assert!(e("\"\":\n  version \"1\"\n").contains("without a package"));
    assert!(parse_yarn_lock("yarn.lock", "").unwrap().is_empty());
}

#[test]
fn classifies_sources() {
    use NpmSource as S;
    assert!(matches!(
        S::classify("https://r.example/a/-/a-1.0.0.tgz"),
        S::Registry { .. }
    ));
    assert!(matches!(
        S::classify("http://127.0.0.1:1/@s/a/-/a-1.0.0.tgz"),
        S::Registry { .. }
    ));
    assert!(matches!(
        S::classify("https://r.example/a/-/a-1.0.0.tgz#abc"),
        S::Registry { .. }
    ));
    assert!(matches!(
        S::classify("https://example.invalid/a.tgz"),
        S::Remote { .. }
    ));
    assert!(matches!(
        S::classify("https://r.example/a/-/a-1.0.0.zip"),
        S::Remote { .. }
    ));
    for g in [
        "git+https://h/r.git",
        "git://h/r.git",
        "github:a/b",
        "git+ssh://git@h/r.git",
    ] {
        assert!(matches!(S::classify(g), S::Git { .. }), "{g}");
    }
    assert!(matches!(S::classify("file:../x"), S::File { .. }));
    assert!(matches!(S::classify("link:../x"), S::Link { .. }));
    assert_eq!(S::classify("1.2.3"), S::Unknown);
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = parse_package_lock("p", &s);
        let _ = parse_yarn_lock("y", &s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let s = String::from_utf8_lossy(&b);
        let _ = parse_package_lock("p", &s);
        let _ = parse_yarn_lock("y", &s);
    }

    #[test]
    fn yarn_like_text_never_panics(lines in proptest::collection::vec("[ @a-z\":,^#./0-9]{0,30}", 0..20)) {
        let _ = parse_yarn_lock("y", &lines.join("\n"));
    }
}
