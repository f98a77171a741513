//! Times writing and verifying a bundle.
//!
//! `cargo run --release -p offpack-bundle --example bench-write -- FILE [LEVEL] [THREADS]`
//!   writes a bundle from FILE, then verifies it. If FILE ends in `.tar` (e.g. `docker save` output), each of its
//!   regular files becomes one blob of unknown digest (what `offpack bundle` does with a legacy export);
//!   otherwise the whole file is one blob. Prints `write N.NNs` and `verify N.NNs`.
//! `... --example bench-write -- verify BUNDLE`: only verifies an existing bundle (with its sidecar if any).
//!
//! Compare with `zstd -T0 -3 < FILE > f.zst` and `zstd -dc f.zst | openssl dgst -sha256` on the same input.

use std::time::Instant;

use offpack_bundle::{BundleWriter, Manifest, WriteOptions, verify};

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name; 100 ticks per second.
    (ticks(11) + ticks(12)) / 100.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-write FILE [LEVEL] [THREADS] | bench-write verify BUNDLE";
    let first = args.next().ok_or(usage)?;
    if first == "verify" {
        let bundle = std::path::PathBuf::from(args.next().ok_or(usage)?);
        let started = Instant::now();
        let cpu = cpu_seconds();
        let report = verify(&bundle, &mut |_| {})?;
        let t = started.elapsed().as_secs_f64();
        println!(
            "verify {t:.2}s ({:.0} MiB/s of tar, {:.2}s CPU), sidecar {:?}",
            mib(report.uncompressed) / t,
            cpu_seconds() - cpu,
            report.sidecar
        );
        return Ok(());
    }
    let input = first;
    let level = args.next().map_or(Ok(3), |s| s.parse())?;
    let threads = args.next().map_or(Ok(0), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("bench.offpack");
    let size = std::fs::metadata(&input)?.len();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut w = BundleWriter::create(
        &out,
        WriteOptions {
            level,
            threads,
            ..WriteOptions::default()
        },
    )?;
    let mut blobs = 0usize;
    let is_tar = input.ends_with(".tar");
    if is_tar {
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(&input)?,
        ));
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                let len = entry.header().size()?;
                w.add_blob(len, entry)?;
                blobs += 1;
            }
        }
    } else {
        w.add_blob(size, std::fs::File::open(&input)?)?;
        blobs = 1;
    }
    // Where the write phase goes: streaming the blobs, then finish() (the frames still in flight,
    // the sidecar hash catching up, fsync and rename).
    let streamed = started.elapsed();
    let written = w.finish(Manifest::new("bench", "bench"))?;
    let write_time = started.elapsed();
    let write_cpu = cpu_seconds() - cpu;
    let started = Instant::now();
    let cpu = cpu_seconds();
    verify(&out, &mut |_| {})?;
    let verify_time = started.elapsed();
    let verify_cpu = cpu_seconds() - cpu;
    println!(
        "level {level} threads {threads}: {:.1} MiB ({blobs} blobs) → {:.1} MiB; write {:.2}s ({:.0} MiB/s, {write_cpu:.2}s CPU) of which finish {:.2}s, verify {:.2}s ({:.0} MiB/s, {verify_cpu:.2}s CPU)",
        mib(size),
        mib(written.size),
        write_time.as_secs_f64(),
        mib(size) / write_time.as_secs_f64(),
        (write_time - streamed).as_secs_f64(),
        verify_time.as_secs_f64(),
        mib(size) / verify_time.as_secs_f64()
    );
    if let Some(keep) = std::env::var_os("BENCH_KEEP") {
        std::fs::copy(&out, &keep)?;
        let mut side = keep.clone();
        side.push(".sha256");
        std::fs::copy(dir.path().join("bench.offpack.sha256"), side)?;
    }
    Ok(())
}
