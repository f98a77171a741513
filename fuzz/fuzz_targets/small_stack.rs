//! Runs each input on a thread with a small stack, so that recursion without a limit overflows
//! (a crash the fuzzer reports) at the depths a fuzzer's inputs reach, not only at the 100,000
//! levels that overflow the main thread's 8 MiB.

/// Enough for every limit the parsers keep (64 substitution levels, 128 YAML levels).
const STACK: usize = 512 * 1024;

pub fn run(work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(work)
        .expect("cannot start a thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}
