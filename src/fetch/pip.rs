//! Python wheels for a service, resolved by pip inside the service's own image.
//!
//! Which files pip picks depends on the interpreter and the platform that will install them
//! (`cp311` and `manylinux_2_17_x86_64` wheels, environment markers, sdists built into wheels by
//! the image's compiler), so the resolution runs where the build will: `python3 -m pip wheel` in a
//! throwaway container of the image, with the requirement files mounted read-only and an output
//! directory the wheels land in. pip itself enforces `--hash` pins (hash-checking mode).
//!
//! The index pip uses is the one the networked side sets for offpack: `PIP_INDEX_URL`,
//! `PIP_EXTRA_INDEX_URL` and `PIP_TRUSTED_HOST` of offpack's own environment reach the container,
//! no other `PIP_*` variable does (the host's pip configuration is not the image's). The container
//! runs on the engine's default network, so the engine's host must reach the index.
//!
//! The result is cached under a key over everything that decides it (the image's ID, the
//! platform, the files' paths and contents, the arguments, the index settings): a second call with
//! the same inputs starts no container. Requirements that are not pinned are therefore resolved
//! once per set of inputs, not at every bundle.

use std::path::{Component, Path};

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::Digest;
use offpack_packages::pip::names::WheelName;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::{Bind, Engine, RunSpec};
use crate::fetch::cache::{FetchedPackage, PackageCache};
use crate::reporter::Reporter;

/// The cache record kind of a resolution's result.
const RESOLUTION_KIND: &str = "pip-resolution";
/// Bump when what a key covers or what pip is asked changes.
const KEY_FORMAT: u32 = 1;
/// Where the requirement files are inside the container.
const REQ_DIR: &str = "/offpack/req";
/// Where pip writes the wheels inside the container.
const WHEEL_DIR: &str = "/offpack/wheels";
/// The variables of offpack's environment that reach pip: the networked side's index settings.
const INDEX_VARIABLES: [&str; 3] = ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"];
/// How many of pip's last lines an error quotes.
const ERROR_LINES: usize = 15;

/// One service's pip install, to resolve into wheels.
#[derive(Debug, Clone, Default)]
pub struct PipJob {
    /// An image the engine has (the build stage's base, where `pip install` will run).
    pub image: String,
    /// The image's platform (`linux/amd64`), for the key and the wheels' description.
    pub platform: String,
    /// Every requirement file the install reads (the roots and what they include), by relative
    /// path, with its content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Files given to `-r`.
    pub root_files: Vec<String>,
    /// Files given to `-c`.
    pub constraint_files: Vec<String>,
    /// Requirements given on the command line.
    pub packages: Vec<String>,
    /// `pip wheel --no-deps`: the files pin every distribution already (a lock file's).
    pub no_deps: bool,
    /// Who needs it, for messages: `service backend, Dockerfile:8`.
    pub label: String,
}

/// One wheel of a cached resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedWheel {
    filename: String,
    sha256: String,
    size: u64,
}

/// Resolves `job` into wheels for the image's interpreter and platform, in the cache; returns
/// them sorted by file name. A failure of pip is an error naming the job's label with pip's last
/// lines (`No matching distribution found for foo==9.9`, a hash mismatch).
pub async fn resolve_in_image(
    engine: &Engine,
    job: &PipJob,
    cache: &PackageCache,
    reporter: &dyn Reporter,
) -> Result<Vec<FetchedPackage>> {
    check_job(job)?;
    let image = engine
        .image(&job.image)
        .await?
        .ok_or_else(|| anyhow!("{}: the engine has no image {}", job.label, job.image))?;
    let index_env = index_env(std::env::vars());
    let key = resolution_key(image.id.hex(), job, &index_env);
    if let Some(wheels) = cached_resolution(cache, &key, job)? {
        reporter.step(&format!(
            "pip wheels of {}: {} from the cache",
            job.label,
            wheels.len()
        ));
        return Ok(wheels);
    }

    let work = tempfile::tempdir().context("cannot create a temporary directory for pip")?;
    let req_dir = work.path().join("req");
    let wheel_dir = work.path().join("wheels");
    fs_err::create_dir_all(&wheel_dir)?;
    for (path, content) in &job.files {
        let target = req_dir.join(path);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&target, content)?;
    }
    // An empty directory still mounts when the job has only positional requirements.
    fs_err::create_dir_all(&req_dir)?;

    let mut env: Vec<(String, String)> = vec![("HOME".into(), "/tmp".into())];
    env.extend(index_env.iter().cloned());
    let spec = RunSpec {
        // The ID, so that a tag moved meanwhile does not change what runs.
        image: image.id.to_string(),
        cmd: pip_command(job),
        env,
        binds: vec![
            Bind {
                host: req_dir.clone(),
                container: REQ_DIR.into(),
                read_only: true,
            },
            Bind {
                host: wheel_dir.clone(),
                container: WHEEL_DIR.into(),
                read_only: false,
            },
        ],
        // The host's user, so that the wheels are files this process can read and remove.
        user: Some(format!(
            "{}:{}",
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw()
        )),
        working_dir: Some("/tmp".into()),
        purpose: "pip-wheel".into(),
    };
    let task = reporter.start_wait(&format!("pip wheel for {}", job.label));
    let outcome = engine
        .run_to_completion(&spec)
        .await
        .with_context(|| format!("{}: cannot run pip in {}", job.label, job.image))?;
    if outcome.exit_code != 0 {
        reporter.finish(task, "failed");
        bail!(
            "{}: pip could not fetch the packages (in {}, exit code {}):\n{}",
            job.label,
            job.image,
            outcome.exit_code,
            outcome.tail(ERROR_LINES)
        );
    }

    let mut wheels = Vec::new();
    let mut record = Vec::new();
    for entry in fs_err::read_dir(&wheel_dir)? {
        let entry = entry?;
        let filename = entry.file_name().to_string_lossy().into_owned();
        let Some(wheel) = WheelName::parse(&filename) else {
            reporter.warn(&format!(
                "{}: pip left {filename}, which is not a wheel; not carried",
                job.label
            ));
            continue;
        };
        let (digest, size) = cache.put_file(&entry.path())?;
        record.push(CachedWheel {
            filename: filename.clone(),
            sha256: digest.hex().to_string(),
            size,
        });
        wheels.push(fetched(
            cache,
            &job.platform,
            &wheel,
            &filename,
            digest,
            size,
        ));
    }
    wheels.sort_by(|a, b| a.package.filename.cmp(&b.package.filename));
    record.sort_by(|a, b| a.filename.cmp(&b.filename));
    cache.put_key(RESOLUTION_KIND, &key, &serde_json::to_vec(&record)?)?;
    reporter.finish(task, &format!("{} wheels", wheels.len()));
    Ok(wheels)
}

/// The files given to `-r` and `-c` are among the job's files, and every path stays inside the
/// directory they are mounted in.
fn check_job(job: &PipJob) -> Result<()> {
    for (path, _) in &job.files {
        let p = Path::new(path);
        let inside = !path.is_empty()
            && p.components().all(|c| matches!(c, Component::Normal(_)))
            && !path.contains('\0');
        if !inside {
            bail!(
                "{}: the requirement file path {path:?} is not a relative path inside the build context",
                job.label
            );
        }
    }
    for name in job.root_files.iter().chain(&job.constraint_files) {
        if !job.files.iter().any(|(path, _)| path == name) {
            bail!(
                "{}: the requirement file {name} is not among the files given",
                job.label
            );
        }
    }
    if job.root_files.is_empty() && job.packages.is_empty() {
        bail!("{}: nothing for pip to fetch", job.label);
    }
    Ok(())
}

/// `python3 -m pip wheel …` as the container runs it.
fn pip_command(job: &PipJob) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "python3",
        "-m",
        "pip",
        "wheel",
        "--wheel-dir",
        WHEEL_DIR,
        "--no-cache-dir",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        "--no-input",
    ]
    .map(String::from)
    .to_vec();
    if job.no_deps {
        cmd.push("--no-deps".into());
    }
    for root in &job.root_files {
        cmd.push("-r".into());
        cmd.push(format!("{REQ_DIR}/{root}"));
    }
    for constraint in &job.constraint_files {
        cmd.push("-c".into());
        cmd.push(format!("{REQ_DIR}/{constraint}"));
    }
    cmd.extend(job.packages.iter().cloned());
    cmd
}

/// The index settings of `vars` (offpack's environment) that pip in the container gets, sorted.
fn index_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vars
        .filter(|(name, value)| INDEX_VARIABLES.contains(&name.as_str()) && !value.is_empty())
        .collect();
    env.sort();
    env
}

/// The cache key of a resolution: a sha256 over everything that decides pip's answer.
fn resolution_key(image_id: &str, job: &PipJob, index_env: &[(String, String)]) -> String {
    let mut files: Vec<(&str, String)> = job
        .files
        .iter()
        .map(|(path, content)| (path.as_str(), hex::encode(Sha256::digest(content))))
        .collect();
    files.sort();
    let doc = serde_json::json!({
        "format": KEY_FORMAT,
        "image_id": image_id,
        "platform": job.platform,
        "files": files,
        "root_files": job.root_files,
        "constraint_files": job.constraint_files,
        "packages": job.packages,
        "no_deps": job.no_deps,
        "index_env": index_env,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// The wheels of a cached resolution, if it is cached and every wheel is still in the cache.
fn cached_resolution(
    cache: &PackageCache,
    key: &str,
    job: &PipJob,
) -> Result<Option<Vec<FetchedPackage>>> {
    let Some(bytes) = cache.get_key(RESOLUTION_KIND, key)? else {
        return Ok(None);
    };
    // A record that does not read (an older offpack's, a damaged file) is a miss, not an error.
    let Ok(record) = serde_json::from_slice::<Vec<CachedWheel>>(&bytes) else {
        return Ok(None);
    };
    let mut wheels = Vec::with_capacity(record.len());
    for entry in record {
        let (Ok(digest), Some(wheel)) = (
            Digest::from_hex(&entry.sha256),
            WheelName::parse(&entry.filename),
        ) else {
            return Ok(None);
        };
        match cache.get(&digest) {
            Some((_, size)) if size == entry.size => {}
            _ => return Ok(None),
        }
        wheels.push(fetched(
            cache,
            &job.platform,
            &wheel,
            &entry.filename,
            digest,
            entry.size,
        ));
    }
    Ok(Some(wheels))
}

fn fetched(
    cache: &PackageCache,
    platform: &str,
    wheel: &WheelName,
    filename: &str,
    digest: Digest,
    size: u64,
) -> FetchedPackage {
    let target = (!wheel.is_universal_platform()).then(|| {
        format!(
            "{platform} {}-{}-{}",
            wheel.python_tags.join("."),
            wheel.abi_tags.join("."),
            wheel.platform_tags.join(".")
        )
    });
    FetchedPackage {
        path: cache.path_of(&digest),
        package: offpack_bundle::Package {
            ecosystem: "pypi".into(),
            name: wheel.name.clone(),
            version: wheel.version.clone(),
            filename: filename.to_string(),
            digest,
            size,
            services: Vec::new(),
            integrity: None,
            platform: target,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> PipJob {
        PipJob {
            image: "python:3.11-slim".into(),
            platform: "linux/amd64".into(),
            files: vec![
                ("requirements.txt".into(), b"-r base.txt\nflask\n".to_vec()),
                ("base.txt".into(), b"bottle==0.13.4\n".to_vec()),
                ("constraints.txt".into(), b"flask<3\n".to_vec()),
            ],
            root_files: vec!["requirements.txt".into()],
            constraint_files: vec!["constraints.txt".into()],
            packages: vec!["gunicorn==22.0.0".into()],
            no_deps: false,
            label: "service backend, Dockerfile:8".into(),
        }
    }

    #[test]
    fn a_platform_wheel_records_its_tags_and_a_universal_one_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(b"w");
        let filename =
            "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
        let wheel = WheelName::parse(filename).unwrap();
        let got = fetched(&cache, "linux/amd64", &wheel, filename, digest.clone(), 1);
        assert_eq!(
            (got.package.name.as_str(), got.package.version.as_str()),
            ("MarkupSafe", "2.1.5")
        );
        assert_eq!(
            got.package.platform.as_deref(),
            Some("linux/amd64 cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")
        );
        let filename = "docopt-0.6.2-py2.py3-none-any.whl";
        let wheel = WheelName::parse(filename).unwrap();
        let got = fetched(&cache, "linux/amd64", &wheel, filename, digest, 1);
        assert_eq!(got.package.platform, None);
    }

    #[test]
    fn the_command_names_roots_constraints_and_positionals() {
        let cmd = pip_command(&job()).join(" ");
        assert!(
            cmd.starts_with(
                "python3 -m pip wheel --wheel-dir /offpack/wheels --no-cache-dir --progress-bar off"
            ),
            "{cmd}"
        );
        assert!(
            cmd.ends_with(
                "-r /offpack/req/requirements.txt -c /offpack/req/constraints.txt gunicorn==22.0.0"
            ),
            "{cmd}"
        );
    }

    #[test]
    fn a_lock_is_resolved_without_dependencies() {
        let mut j = job();
        j.no_deps = true;
        let cmd = pip_command(&j).join(" ");
        assert!(
            cmd.contains(" --no-deps -r /offpack/req/requirements.txt"),
            "{cmd}"
        );
    }

    #[test]
    fn only_the_index_settings_pass_through() {
        let vars = [
            ("PIP_FIND_LINKS", "/opt/wheels"),
            ("PIP_INDEX_URL", "https://index.example/simple"),
            ("PIP_TRUSTED_HOST", "index.example"),
            ("PIP_EXTRA_INDEX_URL", ""),
            ("PIP_CERT", "/etc/ssl/x.pem"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            index_env(vars.into_iter()),
            vec![
                (
                    "PIP_INDEX_URL".to_string(),
                    "https://index.example/simple".to_string()
                ),
                ("PIP_TRUSTED_HOST".to_string(), "index.example".to_string()),
            ]
        );
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let base = resolution_key("img", &job(), &[]);
        assert_eq!(base, resolution_key("img", &job(), &[]));
        let mut changed = Vec::new();
        changed.push(resolution_key("other-img", &job(), &[]));
        changed.push(resolution_key(
            "img",
            &job(),
            &[("PIP_INDEX_URL".into(), "https://x/simple".into())],
        ));
        let mut j = job();
        j.platform = "linux/arm64".into();
        changed.push(resolution_key("img", &j, &[]));
        let mut j = job();
        j.files[1].1 = b"bottle==0.13.3\n".to_vec();
        changed.push(resolution_key("img", &j, &[]));
        let mut j = job();
        j.files[1].0 = "base2.txt".into();
        changed.push(resolution_key("img", &j, &[]));
        let mut j = job();
        j.packages.clear();
        changed.push(resolution_key("img", &j, &[]));
        let mut j = job();
        j.constraint_files.clear();
        changed.push(resolution_key("img", &j, &[]));
        let mut j = job();
        j.no_deps = true;
        changed.push(resolution_key("img", &j, &[]));
        for key in changed {
            assert_ne!(key, base);
        }
        // The order the files come in does not matter.
        let mut j = job();
        j.files.reverse();
        assert_eq!(resolution_key("img", &j, &[]), base);
    }

    #[test]
    fn jobs_are_checked() {
        assert!(check_job(&job()).is_ok());
        let mut j = job();
        j.files[0].0 = "../requirements.txt".into();
        let err = check_job(&j).unwrap_err().to_string();
        assert!(err.contains("service backend, Dockerfile:8"), "{err}");
        assert!(err.contains("../requirements.txt"), "{err}");
        let mut j = job();
        j.files[0].0 = "/etc/requirements.txt".into();
        assert!(check_job(&j).is_err());
        let mut j = job();
        j.root_files.push("missing.txt".into());
        let err = check_job(&j).unwrap_err().to_string();
        assert!(err.contains("missing.txt"), "{err}");
        let mut j = job();
        j.root_files.clear();
        j.packages.clear();
        assert!(check_job(&j).is_err());
    }

    #[test]
    fn a_cached_resolution_needs_every_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let job = job();
        assert!(cached_resolution(&cache, "k", &job).unwrap().is_none());
        let source = dir.path().join("bottle-0.13.4-py3-none-any.whl");
        fs_err::write(&source, b"wheel").unwrap();
        let (digest, size) = cache.put_file(&source).unwrap();
        let record = vec![CachedWheel {
            filename: "bottle-0.13.4-py3-none-any.whl".into(),
            sha256: digest.hex().into(),
            size,
        }];
        cache
            .put_key(RESOLUTION_KIND, "k", &serde_json::to_vec(&record).unwrap())
            .unwrap();
        let wheels = cached_resolution(&cache, "k", &job).unwrap().unwrap();
        assert_eq!(wheels.len(), 1);
        assert_eq!(wheels[0].package.name, "bottle");
        assert_eq!(wheels[0].package.version, "0.13.4");
        assert_eq!(wheels[0].package.platform, None);
        fs_err::remove_file(cache.path_of(&digest)).unwrap();
        assert!(cached_resolution(&cache, "k", &job).unwrap().is_none());
        cache.put_key(RESOLUTION_KIND, "k", b"not json").unwrap();
        assert!(cached_resolution(&cache, "k", &job).unwrap().is_none());
    }
}
