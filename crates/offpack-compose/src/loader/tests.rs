//! End-to-end tests of `load()` on small projects written to temporary directories.

use super::*;
use crate::{BuildContext, DockerfileSource, LoadOptions, Project, load as load_project};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).expect("mkdir");
        }
        fs_err::write(&path, text).expect("write");
        path
    }

    /// Options for running in `rel` (relative to the fixture root).
    fn opts_in(&self, rel: &str) -> LoadOptions {
        let dir = self.path(rel);
        fs_err::create_dir_all(&dir).expect("mkdir");
        LoadOptions {
            working_dir: dir,
            ..LoadOptions::default()
        }
    }
}

fn ok(opts: &LoadOptions) -> Project {
    load_project(opts).unwrap_or_else(|e| panic!("load failed: {e}"))
}

fn err(opts: &LoadOptions) -> String {
    match load_project(opts) {
        Ok(p) => panic!("expected an error, got {p:#?}"),
        Err(e) => e.to_string(),
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image(p: &Project, service: &str) -> Option<String> {
    p.services.get(service).and_then(|s| s.image.clone())
}

fn build(p: &Project, service: &str) -> crate::Build {
    p.services
        .get(service)
        .and_then(|s| s.build.clone())
        .unwrap_or_else(|| panic!("{service} has no build"))
}

// ---- 1. discovery -------------------------------------------------------------------------

#[test]
fn discovers_compose_yaml_and_its_override() {
    let f = Fixture::new();
    let main = f.write("shop/compose.yaml", "services:\n  web: {image: web:1}\n");
    let over = f.write(
        "shop/compose.override.yaml",
        "services:\n  web: {image: web:2}\n",
    );
    let p = ok(&f.opts_in("shop"));
    assert_eq!(p.files, vec![main, over]);
    assert_eq!(image(&p, "web").as_deref(), Some("web:2"));
    assert_eq!(p.project_directory, f.path("shop"));
    assert_eq!(p.name, "shop");
}

#[test]
fn discovery_searches_parent_directories() {
    let f = Fixture::new();
    let main = f.write(
        "shop/docker-compose.yml",
        "services:\n  web: {image: web}\n",
    );
    let over = f.write(
        "shop/docker-compose.override.yml",
        "services:\n  db: {image: db}\n",
    );
    let p = ok(&f.opts_in("shop/src/deep"));
    assert_eq!(p.files, vec![main, over]);
    assert_eq!(p.project_directory, f.path("shop"));
    assert_eq!(p.services.len(), 2);
}

#[test]
fn discovery_prefers_compose_yaml_and_warns_about_others() {
    let f = Fixture::new();
    let preferred = f.write("p/compose.yaml", "services:\n  a: {image: a}\n");
    f.write("p/docker-compose.yml", "services:\n  b: {image: b}\n");
    let p = ok(&f.opts_in("p"));
    assert_eq!(p.files, vec![preferred]);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("multiple config files")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn no_compose_file_names_what_was_looked_for() {
    let f = Fixture::new();
    let opts = f.opts_in("empty");
    let e = err(&opts);
    assert!(
        e.contains("compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml"),
        "{e}"
    );
    assert!(e.contains(&opts.working_dir.display().to_string()), "{e}");
    assert!(e.contains("-f"), "{e}");
}

#[test]
fn explicit_files_are_relative_to_the_working_dir_and_merge_in_order() {
    let f = Fixture::new();
    let a = f.write(
        "deploy/base.yml",
        "services:\n  web: {image: a, build: ./app}\n",
    );
    let b = f.write("deploy/prod.yml", "services:\n  web: {image: b}\n");
    let mut opts = f.opts_in(".");
    opts.files = vec!["deploy/base.yml".into(), "deploy/prod.yml".into()];
    let p = ok(&opts);
    assert_eq!(p.files, vec![a, b]);
    assert_eq!(image(&p, "web").as_deref(), Some("b"));
    assert_eq!(p.project_directory, f.path("deploy"));
    assert_eq!(
        build(&p, "web").context,
        BuildContext::Local(f.path("deploy/app"))
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    let f = Fixture::new();
    let mut opts = f.opts_in(".");
    opts.files = vec!["nope.yml".into()];
    let e = err(&opts);
    assert!(e.contains("nope.yml") && e.contains("not found"), "{e}");
}

#[test]
fn compose_file_variable_from_environment_or_dotenv() {
    let f = Fixture::new();
    f.write("p/one.yml", "services:\n  a: {image: one}\n");
    f.write("p/two.yml", "services:\n  a: {image: two}\n");
    let mut opts = f.opts_in("p");
    opts.environment = env(&[("COMPOSE_FILE", "one.yml:two.yml")]);
    assert_eq!(image(&ok(&opts), "a").as_deref(), Some("two"));

    opts.environment = env(&[
        ("COMPOSE_FILE", "two.yml;one.yml"),
        ("COMPOSE_PATH_SEPARATOR", ";"),
    ]);
    assert_eq!(image(&ok(&opts), "a").as_deref(), Some("one"));

    opts.environment.clear();
    f.write("p/.env", "COMPOSE_FILE=one.yml\n");
    assert_eq!(image(&ok(&opts), "a").as_deref(), Some("one"));

    opts.environment = env(&[("COMPOSE_FILE", "missing.yml")]);
    let e = err(&opts);
    assert!(
        e.contains("COMPOSE_FILE") && e.contains("missing.yml"),
        "{e}"
    );
}

#[test]
fn project_directory_option_sets_discovery_start_and_base() {
    let f = Fixture::new();
    f.write("proj/compose.yaml", "services:\n  web: {build: .}\n");
    let mut opts = f.opts_in("elsewhere");
    opts.project_directory = Some("../proj".into());
    let p = ok(&opts);
    assert_eq!(p.project_directory, f.path("proj"));
    assert_eq!(
        build(&p, "web").context,
        BuildContext::Local(f.path("proj"))
    );
}

#[test]
fn stdin_is_refused() {
    let f = Fixture::new();
    let mut opts = f.opts_in(".");
    opts.files = vec!["-".into()];
    assert!(err(&opts).contains("standard input"));
}

// ---- 2. .env --------------------------------------------------------------------------------

#[test]
fn dotenv_feeds_interpolation_and_process_env_wins() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: \"${REG}/web:${TAG}\"}\n",
    );
    f.write("p/.env", "REG=registry.local\nTAG=from-file\n");
    let mut opts = f.opts_in("p");
    assert_eq!(
        image(&ok(&opts), "web").as_deref(),
        Some("registry.local/web:from-file")
    );
    opts.environment = env(&[("TAG", "from-process")]);
    assert_eq!(
        image(&ok(&opts), "web").as_deref(),
        Some("registry.local/web:from-process")
    );
}

#[test]
fn env_files_replace_dotenv_and_later_files_win() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: \"web:${TAG}-${ONLY_DOTENV:-none}\"}\n",
    );
    f.write("p/.env", "TAG=dotenv\nONLY_DOTENV=yes\n");
    f.write("p/env/a.env", "TAG=a\n");
    f.write("p/env/b.env", "TAG=b\n");
    let mut opts = f.opts_in("p");
    opts.env_files = vec!["env/a.env".into(), "env/b.env".into()];
    assert_eq!(image(&ok(&opts), "web").as_deref(), Some("web:b-none"));
    opts.env_files = vec!["env/missing.env".into()];
    let e = err(&opts);
    assert!(
        e.contains("missing.env") && e.contains("env file not found"),
        "{e}"
    );
}

#[test]
fn dotenv_can_set_project_name_and_profiles() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: w}\n  debug: {image: d, profiles: [dbg]}\n  other: {image: o, profiles: [x]}\n",
    );
    f.write(
        "p/.env",
        "COMPOSE_PROJECT_NAME=fromenv\nCOMPOSE_PROFILES=dbg, y\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(p.name, "fromenv");
    assert!(p.services["debug"].active);
    assert!(!p.services["other"].active);
}

#[test]
fn disabled_dotenv_is_ignored() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: \"w:${TAG:-default}\"}\n",
    );
    f.write("p/.env", "TAG=file\n");
    let mut opts = f.opts_in("p");
    opts.environment = env(&[("COMPOSE_DISABLE_ENV_FILE", "true")]);
    assert_eq!(image(&ok(&opts), "web").as_deref(), Some("w:default"));
}

#[test]
fn dotenv_errors_name_the_file_and_line() {
    let f = Fixture::new();
    f.write("p/compose.yaml", "services:\n  web: {image: w}\n");
    let dotenv = f.write("p/.env", "OK=1\nBAD KEY=2\n");
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains(&dotenv.display().to_string()) && e.contains("line 2"),
        "{e}"
    );
}

// ---- 3. interpolation -------------------------------------------------------------------

#[test]
fn missing_required_variable_names_variable_file_and_field() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "services:\n  backend:\n    build:\n      context: .\n      args:\n        - TOKEN=${TOKEN:?set TOKEN to the API token}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains("services.backend.build.args[0]"), "{e}");
    assert!(
        e.contains("TOKEN") && e.contains("set TOKEN to the API token"),
        "{e}"
    );
}

#[test]
fn unset_variables_become_empty_with_a_warning() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: \"web:${TAG}\", platform: \"$$PLATFORM\"}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(image(&p, "web").as_deref(), Some("web:"));
    assert_eq!(p.services["web"].platform.as_deref(), Some("$PLATFORM"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("\"TAG\" variable is not set")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn project_name_is_available_for_interpolation_and_keys_are_not_interpolated() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web:\n    image: \"${COMPOSE_PROJECT_NAME}/web\"\n    build:\n      context: .\n      args:\n        ${KEY}: v\n",
    );
    let mut opts = f.opts_in("p");
    opts.project_name = Some("named".into());
    opts.environment = env(&[("KEY", "NOT_USED")]);
    let p = ok(&opts);
    assert_eq!(image(&p, "web").as_deref(), Some("named/web"));
    assert_eq!(
        build(&p, "web").args.keys().cloned().collect::<Vec<_>>(),
        vec!["${KEY}".to_string()]
    );
}

#[test]
fn invalid_interpolation_is_an_error_with_advice() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: \"price-${}\"}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.contains("services.web.image") && e.contains("$$"), "{e}");
}

#[test]
fn extension_fields_are_interpolated_too() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "x-needs: ${MUST:?x- fields are interpolated}\nservices:\n  web: {image: w}\n",
    );
    assert!(err(&f.opts_in("p")).contains("x-needs"));
}

// ---- 4. project name ----------------------------------------------------------------------

#[test]
fn project_name_precedence_and_normalization() {
    let f = Fixture::new();
    f.write("My Shop.V2/compose.yaml", "services:\n  web: {image: w}\n");
    let mut opts = f.opts_in("My Shop.V2");
    assert_eq!(ok(&opts).name, "myshopv2");

    f.write(
        "My Shop.V2/compose.yaml",
        "name: \"Shop ${STAGE:-dev}\"\nservices:\n  web: {image: w}\n",
    );
    assert_eq!(ok(&opts).name, "shopdev");

    opts.environment = env(&[("COMPOSE_PROJECT_NAME", "fromenv")]);
    assert_eq!(ok(&opts).name, "fromenv");

    opts.project_name = Some("cli".into());
    assert_eq!(ok(&opts).name, "cli");

    opts.project_name = Some("Bad Name".into());
    let e = err(&opts);
    assert!(
        e.contains("invalid project name") && e.contains("badname"),
        "{e}"
    );
}

#[test]
fn last_name_among_files_wins() {
    let f = Fixture::new();
    f.write("p/a.yml", "name: first\nservices:\n  web: {image: w}\n");
    f.write("p/b.yml", "name: second\n");
    let mut opts = f.opts_in("p");
    opts.files = vec!["a.yml".into(), "b.yml".into()];
    assert_eq!(ok(&opts).name, "second");
}

#[test]
fn image_name_defaults_to_project_dash_service() {
    let f = Fixture::new();
    f.write(
        "shop/compose.yaml",
        "services:\n  api: {build: .}\n  db: {image: postgres:16}\n",
    );
    let p = ok(&f.opts_in("shop"));
    assert_eq!(p.services["api"].image_name(&p.name), "shop-api");
    assert_eq!(p.services["db"].image_name(&p.name), "postgres:16");
}

// ---- 5. merging files -----------------------------------------------------------------------

#[test]
fn override_files_merge_build_args_reset_and_override() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web:\n    image: w\n    profiles: [a]\n    depends_on: [db]\n    build:\n      context: .\n      args: [A=1, B=2]\n      cache_from: [c1]\n      target: dev\n  db: {image: db}\n",
    );
    f.write(
        "p/compose.override.yaml",
        "services:\n  web:\n    profiles: !override [b]\n    depends_on:\n      cache: {condition: service_started}\n    build:\n      args: {A: 10, C: 3}\n      cache_from: [c2]\n      target: !reset null\n  cache: {image: redis}\n",
    );
    let mut opts = f.opts_in("p");
    opts.profiles = vec!["b".into()];
    let p = ok(&opts);
    let web = &p.services["web"];
    assert_eq!(web.profiles, vec!["b".to_string()]);
    assert_eq!(web.depends_on, vec!["cache".to_string(), "db".to_string()]);
    let b = build(&p, "web");
    assert_eq!(b.args, env(&[("A", "10"), ("B", "2"), ("C", "3")]));
    assert_eq!(b.cache_from, vec!["c1".to_string(), "c2".to_string()]);
    assert_eq!(b.target, None);
}

#[test]
fn reset_removes_a_whole_service_and_multi_document_files_merge() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: w}\n  old: {image: o}\n---\nservices:\n  web: {image: w2}\n  old: !reset\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(image(&p, "web").as_deref(), Some("w2"));
    assert!(!p.services.contains_key("old"));
}

#[test]
fn conflicting_forms_name_the_file() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: w, volumes: ['./data:/data']}\n",
    );
    let over = f.write(
        "p/compose.override.yaml",
        "services:\n  web: {volumes: {data: /data}}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains(&over.display().to_string()) && e.contains("services.web.volumes"),
        "{e}"
    );
}

#[test]
fn obsolete_version_warns() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "version: '3.8'\nservices:\n  web: {image: w}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("`version` is obsolete")),
        "{:?}",
        p.warnings
    );
}

// ---- 6. profiles ------------------------------------------------------------------------

#[test]
fn profiles_select_services() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: w}\n  tools: {image: t, profiles: [tools]}\n  debug: {image: d, profiles: [debug, tools]}\n",
    );
    let mut opts = f.opts_in("p");
    let active = |p: &Project| {
        p.services
            .values()
            .filter(|s| s.active)
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(active(&ok(&opts)), vec!["web".to_string()]);
    opts.profiles = vec!["debug".into()];
    assert_eq!(
        active(&ok(&opts)),
        vec!["debug".to_string(), "web".to_string()]
    );
    opts.profiles = vec!["*".into()];
    assert_eq!(active(&ok(&opts)).len(), 3);
    opts.profiles.clear();
    opts.environment = env(&[("COMPOSE_PROFILES", "tools")]);
    assert_eq!(active(&ok(&opts)).len(), 3);
    // --profile wins over COMPOSE_PROFILES.
    opts.profiles = vec!["none".into()];
    assert_eq!(active(&ok(&opts)), vec!["web".to_string()]);
}

#[test]
fn dependencies_of_active_services_become_active() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web:\n    image: w\n    depends_on:\n      db: {condition: service_healthy}\n      metrics: {condition: service_started, required: false}\n  db: {image: d, profiles: [data], depends_on: [migrate]}\n  migrate: {build: ., profiles: [ops]}\n  metrics: {image: m, profiles: [obs]}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert!(p.services["db"].active);
    assert!(p.services["migrate"].active);
    assert!(!p.services["metrics"].active);
    assert!(
        p.warnings.iter().any(|w| w.contains("\"db\"")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn undefined_dependency_is_an_error() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "services:\n  db: {image: d}\n  web: {image: w, depends_on: [dbb]}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.starts_with(&format!("{}:3: ", file.display())), "{e}");
    assert!(
        e.contains("services.web.depends_on") && e.contains("\"dbb\""),
        "{e}"
    );
}

#[test]
fn inactive_services_are_not_checked_for_image_or_build() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: w}\n  half: {profiles: [later]}\n",
    );
    assert!(!ok(&f.opts_in("p")).services["half"].active);
    f.write("p/compose.yaml", "services:\n  web: {command: [x]}\n");
    let e = err(&f.opts_in("p"));
    assert!(e.contains("neither an image nor a build context"), "{e}");
}

// ---- 7. anchors, merge keys, extensions ------------------------------------------------

#[test]
fn anchors_merge_keys_and_extension_fields() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "x-build: &build\n  context: ./app\n  args: {COMMON: '1'}\nx-img: &img {platform: linux/amd64}\nx-pull: &pull {pull_policy: never}\nservices:\n  web:\n    <<: [*img, *pull]\n    x-owner: team\n    build:\n      <<: *build\n      target: web\n  worker:\n    <<: *img\n    build: *build\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(p.services.len(), 2);
    let web = &p.services["web"];
    assert_eq!(web.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(web.pull_policy.as_deref(), Some("never"));
    let b = build(&p, "web");
    assert_eq!(b.context, BuildContext::Local(f.path("p/app")));
    assert_eq!(b.target.as_deref(), Some("web"));
    assert_eq!(b.args, env(&[("COMMON", "1")]));
    assert_eq!(
        build(&p, "worker").context,
        BuildContext::Local(f.path("p/app"))
    );
}

#[test]
fn yaml_errors_carry_line_and_column() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "services:\n  web:\n    image: [unclosed\n",
    );
    let e = load_project(&f.opts_in("p")).expect_err("bad yaml");
    assert_eq!(e.file(), Some(file.as_path()));
    assert!(e.line().is_some(), "{e}");
    let e = err(&f.opts_in("p"));
    assert!(e.contains("invalid YAML"), "{e}");
    f.write(
        "p/compose.yaml",
        "services:\n  web: {image: a}\n  web: {image: b}\n",
    );
    assert!(err(&f.opts_in("p")).contains("duplicate"));
}

// ---- 8. build -------------------------------------------------------------------------------

#[test]
fn build_long_form_is_resolved() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "services:\n  api:\n    image: shop/api\n    build:\n      context: ./api\n      dockerfile: docker/Dockerfile.prod\n      target: runtime\n      args:\n        - VERSION=1.10\n        - FROM_ENV\n        - NOT_SET\n        - EMPTY=\n      platforms: [linux/amd64]\n      cache_from: [shop/api:cache]\n      cache_to: [type=inline]\n      additional_contexts:\n        - base=../base\n        - img=docker-image://alpine:3\n      ssh: [default, key=~/.ssh/id]\n      secrets: [npmrc, {source: token, target: t}]\n      labels: [org.label=x, bare]\n      network: host\n      extra_hosts: ['db=10.0.0.2', 'cache:10.0.0.3,10.0.0.4', 'v6=[::1]']\n      tags: [shop/api:latest]\n",
    );
    let mut opts = f.opts_in("p");
    opts.environment = env(&[("FROM_ENV", "env-value")]);
    let p = ok(&opts);
    let b = build(&p, "api");
    assert_eq!(b.context, BuildContext::Local(f.path("p/api")));
    assert_eq!(
        b.dockerfile,
        DockerfileSource::Path(f.path("p/api/docker/Dockerfile.prod"))
    );
    assert_eq!(b.target.as_deref(), Some("runtime"));
    assert_eq!(
        b.args,
        env(&[
            ("EMPTY", ""),
            ("FROM_ENV", "env-value"),
            ("VERSION", "1.10")
        ])
    );
    assert_eq!(b.platforms, vec!["linux/amd64".to_string()]);
    assert_eq!(b.cache_from, vec!["shop/api:cache".to_string()]);
    assert_eq!(b.cache_to, vec!["type=inline".to_string()]);
    assert_eq!(
        b.additional_contexts,
        env(&[
            ("base", &f.path("base").display().to_string()),
            ("img", "docker-image://alpine:3")
        ])
    );
    assert_eq!(b.ssh, vec!["default".to_string(), "key".to_string()]);
    assert_eq!(b.secrets, vec!["npmrc".to_string(), "token".to_string()]);
    assert_eq!(b.labels, env(&[("bare", ""), ("org.label", "x")]));
    assert_eq!(b.network.as_deref(), Some("host"));
    assert_eq!(
        b.extra_hosts,
        vec![
            "cache:10.0.0.3".to_string(),
            "cache:10.0.0.4".into(),
            "db:10.0.0.2".into(),
            "v6:::1".into()
        ]
    );
    assert_eq!(b.tags, vec!["shop/api:latest".to_string()]);
    assert_eq!(b.source.file, file);
    assert_eq!(b.source.line, Some(4));
}

#[test]
fn build_short_form_inline_and_stringified_args() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a: {build: .}\n  b:\n    build:\n      dockerfile_inline: |\n        FROM alpine\n      args: {INT: 3, FLOAT: 1.10, BOOL: true, NULL_ARG: null, STR: 'x'}\n",
    );
    let mut opts = f.opts_in("p");
    opts.environment = env(&[("NULL_ARG", "resolved")]);
    let p = ok(&opts);
    let a = build(&p, "a");
    assert_eq!(a.context, BuildContext::Local(f.path("p")));
    assert_eq!(a.dockerfile, DockerfileSource::Path(f.path("p/Dockerfile")));
    let b = build(&p, "b");
    assert_eq!(
        b.dockerfile,
        DockerfileSource::Inline("FROM alpine\n".into())
    );
    assert_eq!(
        b.args,
        env(&[
            ("BOOL", "true"),
            ("FLOAT", "1.1"),
            ("INT", "3"),
            ("NULL_ARG", "resolved"),
            ("STR", "x")
        ])
    );
}

#[test]
fn remote_build_contexts_are_kept_as_written() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a: {build: 'https://github.com/org/repo.git#main:app'}\n  b: {build: 'git@github.com:org/repo.git'}\n  c: {build: {context: 'github.com/org/repo', dockerfile: sub/Dockerfile}}\n  d: {build: 'http://example.invalid/ctx.tar.gz'}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(
        build(&p, "a").context,
        BuildContext::Remote("https://github.com/org/repo.git#main:app".into())
    );
    assert_eq!(
        build(&p, "b").context,
        BuildContext::Remote("git@github.com:org/repo.git".into())
    );
    let c = build(&p, "c");
    assert_eq!(
        c.context,
        BuildContext::Remote("github.com/org/repo".into())
    );
    assert_eq!(
        c.dockerfile,
        DockerfileSource::Path("sub/Dockerfile".into())
    );
    assert_eq!(
        build(&p, "d").context,
        BuildContext::Remote("http://example.invalid/ctx.tar.gz".into())
    );
}

#[test]
fn build_errors_name_the_field() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a:\n    build:\n      dockerfile: D\n      dockerfile_inline: FROM x\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains("services.a.build") && e.contains("dockerfile_inline"),
        "{e}"
    );
    f.write(
        "p/compose.yaml",
        "services:\n  a:\n    build:\n      args: ['A =1']\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains("services.a.build.args[0]") && e.contains("trailing space"),
        "{e}"
    );
    let file = f.write("p/compose.yaml", "services:\n  a:\n    biuld: .\n");
    let e = err(&f.opts_in("p"));
    assert!(
        e.starts_with(&format!("{}:2: services.a: unknown key", file.display())),
        "{e}"
    );
    assert!(e.contains("did you mean `build`"), "{e}");
}

// ---- 9. extends and include -------------------------------------------------------------

#[test]
fn extends_in_the_same_file_and_chained() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  base:\n    image: base\n    build: {context: ., args: [A=1]}\n    profiles: [never]\n  mid:\n    extends: base\n    build: {args: [B=2]}\n  top:\n    extends: {service: mid}\n    image: top\n    build: {target: !reset null, args: !override [C=3]}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(build(&p, "mid").args, env(&[("A", "1"), ("B", "2")]));
    assert_eq!(image(&p, "top").as_deref(), Some("top"));
    assert_eq!(build(&p, "top").args, env(&[("C", "3")]));
    assert_eq!(p.services["mid"].profiles, vec!["never".to_string()]);
}

#[test]
fn extends_from_another_file_resolves_paths_against_that_file() {
    let f = Fixture::new();
    let common = f.write(
        "p/common/services.yml",
        "services:\n  app:\n    build:\n      context: ./app\n      dockerfile: Dockerfile.dev\n  deeper:\n    extends: {file: more/base.yml, service: root}\n",
    );
    let more = f.write(
        "p/common/more/base.yml",
        "services:\n  root:\n    build: ../../root-ctx\n",
    );
    f.write(
        "p/compose.yaml",
        "services:\n  web:\n    extends: {file: common/services.yml, service: app}\n  other:\n    extends: {file: common/services.yml, service: deeper}\n",
    );
    let p = ok(&f.opts_in("p"));
    let web = build(&p, "web");
    assert_eq!(web.context, BuildContext::Local(f.path("p/common/app")));
    assert_eq!(
        web.dockerfile,
        DockerfileSource::Path(f.path("p/common/app/Dockerfile.dev"))
    );
    assert_eq!(web.source.file, common);
    assert_eq!(
        build(&p, "other").context,
        BuildContext::Local(f.path("p/root-ctx"))
    );
    assert!(
        p.files.contains(&common) && p.files.contains(&more),
        "{:?}",
        p.files
    );
}

#[test]
fn extends_errors() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a: {extends: b, image: x}\n  b: {extends: a}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains("circular extends") && e.contains("services.a.extends"),
        "{e}"
    );
    f.write("p/compose.yaml", "services:\n  a: {extends: nope}\n");
    let e = err(&f.opts_in("p"));
    assert!(e.contains("\"nope\" not found"), "{e}");
    f.write(
        "p/compose.yaml",
        "services:\n  a: {extends: {file: other.yml, service: x}}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.contains("other.yml") && e.contains("not found"), "{e}");
}

#[test]
fn include_short_and_long_forms() {
    let f = Fixture::new();
    let db = f.write(
        "p/db/compose.yaml",
        "services:\n  db:\n    image: \"postgres:${PG:-15}\"\n    build: ./ctx\n",
    );
    let cache = f.write(
        "p/infra/cache.yml",
        "services:\n  cache:\n    image: \"redis:${REDIS}\"\n    build: ./r\n",
    );
    f.write("p/infra/cache.env", "REDIS=7\n");
    f.write(
        "p/compose.yaml",
        "include:\n  - db/compose.yaml\n  - path: infra/cache.yml\n    project_directory: infra/root\n    env_file: infra/cache.env\nservices:\n  web: {image: w, depends_on: [db, cache]}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(image(&p, "db").as_deref(), Some("postgres:15"));
    assert_eq!(
        build(&p, "db").context,
        BuildContext::Local(f.path("p/db/ctx"))
    );
    assert_eq!(build(&p, "db").source.file, db);
    assert_eq!(image(&p, "cache").as_deref(), Some("redis:7"));
    assert_eq!(
        build(&p, "cache").context,
        BuildContext::Local(f.path("p/infra/root/r"))
    );
    assert!(p.files.contains(&db) && p.files.contains(&cache));
    assert!(p.services.values().all(|s| s.active));
}

#[test]
fn include_uses_its_own_dotenv_but_the_parent_environment_wins() {
    let f = Fixture::new();
    f.write(
        "p/sub/compose.yaml",
        "services:\n  s: {image: \"s:${V}\"}\n",
    );
    f.write("p/sub/.env", "V=sub\n");
    f.write(
        "p/compose.yaml",
        "include: [sub/compose.yaml]\nservices:\n  web: {image: w}\n",
    );
    let mut opts = f.opts_in("p");
    assert_eq!(image(&ok(&opts), "s").as_deref(), Some("s:sub"));
    opts.environment = env(&[("V", "parent")]);
    assert_eq!(image(&ok(&opts), "s").as_deref(), Some("s:parent"));
}

#[test]
fn included_service_can_be_refined_locally_and_extended() {
    let f = Fixture::new();
    f.write(
        "p/lib/compose.yaml",
        "services:\n  api: {image: api, build: {context: ., target: dev}}\n",
    );
    f.write(
        "p/compose.yaml",
        "include: [lib/compose.yaml]\nservices:\n  api:\n    build: {target: prod}\n  api2:\n    extends: api\n",
    );
    let p = ok(&f.opts_in("p"));
    let api = build(&p, "api");
    assert_eq!(api.target.as_deref(), Some("prod"));
    assert_eq!(api.context, BuildContext::Local(f.path("p/lib")));
    assert_eq!(
        build(&p, "api2").context,
        BuildContext::Local(f.path("p/lib"))
    );
}

#[test]
fn include_cycles_and_remote_includes_are_errors() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "include: [a/compose.yaml]\nservices:\n  web: {image: w}\n",
    );
    f.write(
        "p/a/compose.yaml",
        "include: [../compose.yaml]\nservices:\n  a: {image: a}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.contains("include cycle detected"), "{e}");
    f.write(
        "p/compose.yaml",
        "include: ['oci://registry/app:1']\nservices:\n  web: {image: w}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(e.contains("not supported offline"), "{e}");
    f.write(
        "p/compose.yaml",
        "include: [missing.yaml]\nservices:\n  web: {image: w}\n",
    );
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains("include[0]") && e.contains("missing.yaml"),
        "{e}"
    );
}

// ---- output ---------------------------------------------------------------------------------

#[test]
fn json_output_is_stable_and_sorted() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  zeta: {image: z}\n  alpha:\n    build:\n      context: .\n      args: {Z: 1, A: 2}\n",
    );
    let opts = f.opts_in("p");
    let one = serde_json::to_string_pretty(&ok(&opts)).expect("json");
    let two = serde_json::to_string_pretty(&ok(&opts)).expect("json");
    assert_eq!(one, two);
    let alpha = one.find("\"alpha\"").expect("alpha");
    let zeta = one.find("\"zeta\"").expect("zeta");
    assert!(alpha < zeta);
    assert!(one.contains("\"local\""), "{one}");
}

#[test]
fn project_name_normalization() {
    assert_eq!(normalize_project_name("My_App-1.0"), "my_app-10");
    assert_eq!(normalize_project_name("__x"), "x");
    assert_eq!(normalize_project_name("ÄÖ"), "");
}

#[test]
fn reset_and_override_of_a_whole_build() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a: {image: a, build: {context: ./a, target: t, args: [X=1]}}\n  b: {image: b, build: {context: ./b, target: t}}\n",
    );
    f.write(
        "p/compose.override.yaml",
        "services:\n  a: {build: !reset null}\n  b: {build: !override {context: ./c}}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert!(p.services["a"].build.is_none());
    let b = build(&p, "b");
    assert_eq!(b.context, BuildContext::Local(f.path("p/c")));
    assert_eq!(b.target, None);
}

#[test]
fn duplicate_args_keep_the_last_value() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  a:\n    build:\n      context: .\n      args: [X=1, Y=2, X=3]\n",
    );
    assert_eq!(
        build(&ok(&f.opts_in("p")), "a").args,
        env(&[("X", "3"), ("Y", "2")])
    );
}

#[test]
fn variables_in_profiles_and_depends_on_required() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  web:\n    image: w\n    depends_on:\n      opt: {condition: service_started, required: \"${OPT_REQUIRED:-false}\"}\n  opt: {image: o, profiles: [\"${OPT_PROFILE}\"]}\n",
    );
    let mut opts = f.opts_in("p");
    opts.environment = env(&[("OPT_PROFILE", "extra")]);
    let p = ok(&opts);
    assert_eq!(p.services["opt"].profiles, vec!["extra".to_string()]);
    assert!(!p.services["opt"].active);
    opts.environment
        .insert("OPT_REQUIRED".into(), "true".into());
    assert!(ok(&opts).services["opt"].active);
}

#[test]
fn empty_compose_file_is_an_error() {
    let f = Fixture::new();
    let file = f.write("p/compose.yaml", "# nothing yet\n");
    let e = err(&f.opts_in("p"));
    assert!(
        e.contains("empty compose file") && e.contains(&file.display().to_string()),
        "{e}"
    );
}

#[test]
fn include_env_file_dev_null_skips_the_default_dotenv() {
    let f = Fixture::new();
    f.write(
        "p/sub/compose.yaml",
        "services:\n  s: {image: \"s:${V:-none}\"}\n",
    );
    f.write("p/sub/.env", "V=sub\n");
    f.write(
        "p/compose.yaml",
        "include:\n  - path: sub/compose.yaml\n    env_file: /dev/null\n",
    );
    assert_eq!(image(&ok(&f.opts_in("p")), "s").as_deref(), Some("s:none"));
}

#[test]
fn error_display_names_file_field_and_advice() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "services:\n  backend:\n    image: \"${IMAGE:?}\"\n",
    );
    let e = load_project(&f.opts_in("p")).expect_err("missing variable");
    assert_eq!(e.file(), Some(file.as_path()));
    assert_eq!(e.field_path(), Some("services.backend.image"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: services.backend.image: required variable IMAGE is missing a value (set IMAGE in the environment or in .env)",
            file.display()
        )
    );
}

#[test]
fn implicit_dependencies_and_pull_policy_normalization() {
    let f = Fixture::new();
    f.write(
        "p/compose.yaml",
        "services:\n  app:\n    image: a\n    pull_policy: if_not_present\n    network_mode: service:vpn\n    links: [db:database]\n    volumes_from: [data:ro, 'container:legacy']\n  vpn: {image: v, profiles: [net]}\n  db: {image: d, profiles: [data]}\n  data: {image: x, profiles: [data]}\n",
    );
    let p = ok(&f.opts_in("p"));
    let app = &p.services["app"];
    assert_eq!(app.pull_policy.as_deref(), Some("missing"));
    assert_eq!(
        app.depends_on,
        vec!["data".to_string(), "db".into(), "vpn".into()]
    );
    assert!(p.services.values().all(|s| s.active));
}

#[test]
fn reset_inside_an_extended_file_applies_to_its_own_base() {
    let f = Fixture::new();
    f.write(
        "p/reset.yaml",
        "services:\n  init:\n    image: alpine\n    command: sleep infinity\n    build: {context: ., target: t}\n  base:\n    extends: {service: init}\n    build: {target: !reset null}\n",
    );
    f.write(
        "p/compose.yaml",
        "services:\n  test:\n    extends: {file: reset.yaml, service: base}\n",
    );
    let p = ok(&f.opts_in("p"));
    assert_eq!(build(&p, "test").target, None);
    assert_eq!(image(&p, "test").as_deref(), Some("alpine"));
}

#[test]
fn an_alias_inside_its_own_anchor_is_named() {
    let f = Fixture::new();
    let file = f.write(
        "p/compose.yaml",
        "x-build: &build\n  context: .\n  nested: *build\nservices:\n  web: {image: w}\n",
    );
    let e = load_project(&f.opts_in("p")).expect_err("recursive alias");
    assert_eq!(e.file(), Some(file.as_path()));
    assert_eq!(e.line(), Some(1), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("nests more than 128 levels deep once aliases"),
        "{e}"
    );
    assert!(e.contains("its own anchor (&name)"), "{e}");
}

#[test]
fn alias_bombs_are_refused() {
    let f = Fixture::new();
    let mut text = String::from(
        "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..9 {
        let prev = (b'a' + level - 1) as char;
        let cur = (b'a' + level) as char;
        text.push_str(&format!("x-{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    text.push_str("services:\n  web: {image: w}\n");
    f.write("p/compose.yaml", &text);
    let e = err(&f.opts_in("p"));
    assert!(e.contains("invalid YAML"), "{e}");
}
