//! Claiming the bundle's output path before any slow work: the lock (one writer per target), and
//! the refusal to write over the run's own inputs, over anything that is not a regular file, or
//! (without `--force`) over a file that is not an earlier bundle. Decisions 0064 and 0065.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use offpack_bundle::{OutputRole, TargetLock};

use super::BundleRequest;
use crate::reporter::Reporter;

/// A file the run reads, and what it is to the run (for messages).
struct Input {
    path: PathBuf,
    what: String,
}

/// The checks of the output path, without taking the lock (which would leave its file behind
/// if a signal killed the run during a pull or a build): the name, whether another run is writing
/// the target now, and every existing file the bundle would replace or remove.
pub fn check(request: &BundleRequest, project: &offpack_compose::Project) -> Result<()> {
    let target = &request.output;
    if target.as_os_str().is_empty() || target.file_name().is_none() {
        bail!(
            "-o {}: give the path of the bundle file to write, e.g. -o shop.offpack",
            target.display()
        );
    }
    offpack_bundle::check_target_name(target)?;
    TargetLock::check_free(target)?;
    check_existing_outputs(request, project)
}

/// Takes the target's lock, checks the target again under it, and removes the temporary files of
/// killed runs for the same target. Hold the lock until the bundle and its sidecar are in place.
pub fn claim(
    request: &BundleRequest,
    project: &offpack_compose::Project,
    reporter: &dyn Reporter,
) -> Result<TargetLock> {
    let target = &request.output;
    let lock = TargetLock::acquire(target).map_err(|e| match e {
        offpack_bundle::BundleError::Io { .. } => {
            anyhow::Error::new(e).context(format!("cannot create the bundle {}", target.display()))
        }
        other => other.into(),
    })?;
    // Another run may have finished writing the target since the first check.
    check_existing_outputs(request, project)?;
    let removed = lock.remove_dead_partials()?;
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        reporter.warn(&format!(
            "removed {} temporary file(s) that an earlier run writing {} left when it was killed: {}",
            removed.len(),
            target.display(),
            names.join(", ")
        ));
    }
    Ok(lock)
}

fn check_existing_outputs(
    request: &BundleRequest,
    project: &offpack_compose::Project,
) -> Result<()> {
    let target = &request.output;
    let inputs = inputs(request, project);
    let inputs = inputs_by_identity(&inputs);
    let outputs = offpack_bundle::existing_outputs(target)?;
    let mut regular = Vec::new();
    for (path, role) in outputs {
        if check_not_input_nor_special(target, &path, role, &inputs)? {
            regular.push((path, role));
        }
    }
    if request.force {
        return Ok(());
    }
    // Every file is known to be regular by now: a FIFO among the parts would block the reader.
    let mut parts_are_a_bundle = None;
    for (path, role) in regular {
        let ours = match role {
            OutputRole::Part(_) => *parts_are_a_bundle
                .get_or_insert_with(|| offpack_bundle::is_offpack_output(target, &path, role)),
            _ => offpack_bundle::is_offpack_output(target, &path, role),
        };
        if !ours {
            bail!(
                "{} exists and is not {}; give --force to replace it, or choose another -o",
                as_output(target, &path, role),
                match role {
                    OutputRole::Sidecar => "a checksum file offpack wrote",
                    _ => "an offpack bundle",
                }
            );
        }
    }
    Ok(())
}

/// Every file the run reads that a user could name as the output by mistake: the compose files,
/// the environment files compose could read, the Dockerfiles and `.dockerignore`s of the builds,
/// the signing key and the inventory. Files that do not exist are left out by the caller.
fn inputs(request: &BundleRequest, project: &offpack_compose::Project) -> Vec<Input> {
    let input = |path: &Path, what: String| Input {
        path: path.to_owned(),
        what,
    };
    let mut inputs: Vec<Input> = project
        .files
        .iter()
        .map(|f| input(f, "a compose file of the project".into()))
        .collect();
    for file in &request.project.env_files {
        inputs.push(input(file, "an environment file (--env-file)".into()));
    }
    // `.env` is read from the project directory, the working directory (to find the project) and
    // beside included compose files; which one a run read does not matter here.
    let mut env_dirs: Vec<PathBuf> = vec![project.project_directory.clone(), PathBuf::from(".")];
    env_dirs.extend(
        project
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf)),
    );
    env_dirs.extend(request.project.project_directory.clone());
    for dir in env_dirs {
        inputs.push(input(
            &dir.join(".env"),
            "the project's environment file".into(),
        ));
    }
    for service in project.services.values() {
        let Some(build) = &service.build else {
            continue;
        };
        if let offpack_compose::DockerfileSource::Path(dockerfile) = &build.dockerfile {
            inputs.push(input(
                dockerfile,
                format!("the Dockerfile of service {}", service.name),
            ));
        }
        if let offpack_compose::BuildContext::Local(context) = &build.context {
            inputs.push(input(
                &context.join(".dockerignore"),
                format!("the .dockerignore of service {}", service.name),
            ));
        }
    }
    if let Some(key) = &request.sign {
        inputs.push(input(key, "the secret key (--sign)".into()));
    }
    if let Some(have) = &request.have {
        inputs.push(input(have, "the inventory (--have)".into()));
    }
    inputs
}

/// The inputs that exist, by file identity (device and inode): another spelling of a path, a
/// symbolic link or a hard link to an input is the input.
fn inputs_by_identity(inputs: &[Input]) -> HashMap<(u64, u64), &Input> {
    inputs
        .iter()
        .filter_map(|i| {
            let meta = std::fs::metadata(&i.path).ok()?;
            Some(((meta.dev(), meta.ino()), i))
        })
        .collect()
}

/// The existing file `path` that the bundle would replace as `role`, in messages.
fn as_output(target: &Path, path: &Path, role: OutputRole) -> String {
    match role {
        OutputRole::Bundle => format!("the output path {}", path.display()),
        OutputRole::Sidecar => format!(
            "{}, the checksum file of the output {},",
            path.display(),
            target.display()
        ),
        OutputRole::Part(n) => format!(
            "{}, part {n} of the split output {},",
            path.display(),
            target.display()
        ),
    }
}

/// Refuses `path` if it is one of the run's inputs or not a regular file (`--force` or not);
/// returns whether it is a file that exists.
fn check_not_input_nor_special(
    target: &Path,
    path: &Path,
    role: OutputRole,
    inputs: &HashMap<(u64, u64), &Input>,
) -> Result<bool> {
    // A dangling symbolic link is replaced by the rename like a file and points nowhere.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(false);
    };
    if let Some(input) = inputs.get(&(meta.dev(), meta.ino())) {
        bail!(
            "{} is {} ({}); offpack never writes over its own inputs: choose another -o",
            as_output(target, path, role),
            input.what,
            input.path.display()
        );
    }
    if !meta.file_type().is_file() {
        bail!(
            "{} is {}, not a regular file; offpack writes only regular files: choose another -o",
            as_output(target, path, role),
            offpack_fs::describe(meta.file_type())
        );
    }
    Ok(true)
}
