//! Times the npm tarball fetch of `offpack bundle` with a given number of workers (bench/run
//! packages: the parallel setting `NPM_PARALLEL` against one worker, on the same tarballs).
//!
//! `cargo run --release --example npm-fetch -- REQUEST CACHE_DIR WORKERS`
//!   fetches every npm entry of REQUEST (an `offpack bundle --packages-for` request file) into the
//!   package cache CACHE_DIR (use an empty one: a cached tarball is not requested) with WORKERS
//!   downloads at a time, and prints `fetched N tarballs with W workers in S.SSSs`.

use std::time::Instant;

use anyhow::{Context, Result};
use offpack::fetch::cache::PackageCache;
use offpack::fetch::npm::{NpmFetch, fetch_tarballs};
use offpack::reporter::SilentReporter;
use offpack_packages::request::PackageRequest;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [request, cache, workers] = args.as_slice() else {
        anyhow::bail!("usage: npm-fetch REQUEST CACHE_DIR WORKERS");
    };
    let workers: usize = workers.parse().context("WORKERS is a number")?;
    let text = fs_err::read_to_string(request)?;
    let asked = PackageRequest::from_json(request, &text)?;
    let list: Vec<NpmFetch> = asked
        .npm
        .iter()
        .map(|e| NpmFetch {
            name: e.name.clone(),
            version: e.version.clone(),
            url: e.resolved.clone(),
            integrity: e.integrity.clone(),
        })
        .collect();
    let cache = PackageCache::open(cache)?;
    let started = Instant::now();
    let fetched = fetch_tarballs(&list, &cache, workers, &SilentReporter::default())?;
    println!(
        "fetched {} tarballs with {workers} workers in {:.3}s",
        fetched.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
