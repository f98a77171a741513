//! `offpack bundle --packages-for REQUEST`: a bundle of packages only, those a far-side rebuild
//! found missing. The request file says everything needed (the requirements files, the image and
//! platform to resolve them for, the npm tarballs and their integrity), so no compose project is
//! read: the loop "we need one more package behind the gap" is one command on each side.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use offpack_bundle::{BundleWriter, Manifest, WriteOptions};
use offpack_packages::request::PackageRequest;

use super::export::Bundled;
use super::packages::{
    PackageWork, add_packages, fetch_npm_work, fetch_pip_work, lock_job, merge_fetched,
};
use super::{BundleRequest, signing_key, target};
use crate::engine::Engine;
use crate::fetch::npm::NpmFetch;
use crate::fetch::pip::PipJob;
use crate::packages::python_lock;
use crate::reporter::Reporter;

/// Writes the package bundle `request_file` asks for at `request.output`.
pub async fn bundle_packages_for(
    request: &BundleRequest,
    request_file: &Path,
    reporter: &dyn Reporter,
) -> Result<Bundled> {
    let started = Instant::now();
    let text = offpack_fs::read_to_string(request_file, offpack_fs::REQUEST_FILE)?;
    let asked = PackageRequest::from_json(&request_file.display().to_string(), &text)?;
    // The request file is this run's input: the output must never replace it.
    let project = offpack_compose::Project {
        name: asked.project.clone(),
        project_directory: std::path::PathBuf::from("."),
        files: vec![std::path::absolute(request_file)?],
        services: Default::default(),
        warnings: Vec::new(),
        field_locations: Default::default(),
    };
    target::check(request, &project)?;
    let sign = signing_key(request)?;

    let mut work = PackageWork::default();
    for python in &asked.python {
        let label = format!("service {} of the request", python.service);
        // A lock file (`uv.lock`) asked for as it is: resolved pinned, without dependencies.
        let lock = python
            .requirement_files
            .iter()
            .find_map(|path| python_lock::tool_of_lock(path).map(|tool| (tool, path)));
        if let Some((tool, path)) = lock {
            let text = python
                .files
                .iter()
                .find(|f| &f.path == path)
                .map(|f| f.content.as_str())
                .unwrap_or_default();
            let (job, warnings) =
                lock_job(tool, path, text, &python.image, &python.platform, &label)?;
            for warning in warnings {
                reporter.warn(&warning);
            }
            if let Some(job) = job {
                work.pip.push((job, vec![python.service.clone()]));
            }
            continue;
        }
        let job = PipJob {
            image: python.image.clone(),
            platform: python.platform.clone(),
            files: python
                .files
                .iter()
                .map(|f| (f.path.clone(), f.content.clone().into_bytes()))
                .collect(),
            root_files: python.requirement_files.clone(),
            constraint_files: python.constraint_files.clone(),
            packages: python.packages.clone(),
            no_deps: false,
            label,
        };
        work.pip.push((job, vec![python.service.clone()]));
    }
    for npm in &asked.npm {
        work.npm.push((
            NpmFetch {
                name: npm.name.clone(),
                version: npm.version.clone(),
                url: npm.resolved.clone(),
                integrity: npm.integrity.clone(),
            },
            vec![npm.service.clone()],
        ));
    }
    if work.is_empty() {
        return Err(anyhow!(
            "{} asks for no packages: nothing to bundle",
            request_file.display()
        ));
    }
    let engine = Engine::connect().await?;
    for python in &asked.python {
        let image = engine.image(&python.image).await?;
        match image {
            None => {
                reporter.step(&format!("pulling {} to resolve in", python.image));
                engine.pull(&python.image, reporter).await?;
            }
            Some(info) if !python.image_id.is_empty() && info.id.to_string() != python.image_id => {
                reporter.warn(&format!(
                    "{} here is {}, the far side's is {}: the packages are resolved for this one's \
                     interpreter; make sure both sides use the same image",
                    python.image, info.id, python.image_id
                ));
            }
            Some(_) => {}
        }
    }
    let mut fetched = fetch_npm_work(&work, reporter)?;
    fetched.extend(fetch_pip_work(&engine, &work, reporter).await?);
    let fetched = merge_fetched(fetched);

    let _target_lock = target::claim(request, &project, reporter)?;
    let output = request.output.clone();
    let level = request.level;
    let project_name = asked.project.clone();
    let count = fetched.len();
    let written = tokio::task::spawn_blocking(move || {
        let mut writer = BundleWriter::create(
            &output,
            WriteOptions {
                level,
                threads: 0,
                split: None,
                sign,
            },
        )
        .with_context(|| format!("cannot create the bundle {}", output.display()))?;
        let packages = add_packages(&mut writer, &fetched)?;
        let mut manifest = Manifest::new(env!("CARGO_PKG_VERSION"), &project_name);
        manifest.packages = packages;
        anyhow::Ok(writer.finish(manifest)?)
    })
    .await
    .context("writing the package bundle stopped")??;
    Ok(Bundled {
        path: written.path,
        sha256: written.sha256,
        size: written.size,
        uncompressed: written.uncompressed,
        images: 0,
        layers: 0,
        layers_left_out: 0,
        blobs: written.blobs,
        packages: count,
        exported: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}
