//! Times writing and verifying a bundle from one input file:
//! `cargo run --release -p offpack-bundle --example bench-write -- FILE [LEVEL] [THREADS]`.

use std::time::Instant;

use offpack_bundle::{BundleWriter, Manifest, WriteOptions, verify};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .ok_or("usage: bench-write FILE [LEVEL] [THREADS]")?;
    let level = args.next().map_or(Ok(3), |s| s.parse())?;
    let threads = args.next().map_or(Ok(0), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("bench.offpack");
    let size = std::fs::metadata(&input)?.len();
    let started = Instant::now();
    let mut w = BundleWriter::create(&out, WriteOptions { level, threads })?;
    w.add_blob(size, std::fs::File::open(&input)?)?;
    let written = w.finish(Manifest::new("bench", "bench"))?;
    let write_time = started.elapsed();
    let started = Instant::now();
    verify(&out, &mut |_| {})?;
    let verify_time = started.elapsed();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "level {level} threads {threads}: {:.1} MiB → {:.1} MiB; write {:.2}s ({:.0} MiB/s), verify {:.2}s ({:.0} MiB/s)",
        mib(size),
        mib(written.size),
        write_time.as_secs_f64(),
        mib(size) / write_time.as_secs_f64(),
        verify_time.as_secs_f64(),
        mib(size) / verify_time.as_secs_f64()
    );
    Ok(())
}
