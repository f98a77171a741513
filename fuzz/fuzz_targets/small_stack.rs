//! Runs each input on a thread with a small stack, so that recursion without a limit overflows
//! (a crash the fuzzer reports) at the depths a fuzzer's inputs reach, not only at the 100,000
//! levels that overflow the main thread's 8 MiB.

/// Enough for every limit the parsers keep (64 substitution levels, 128 YAML levels), with room
/// to spare under AddressSanitizer: 128 levels reached through YAML aliases (`x: &a [*a]`) take
/// more than 512 KiB there, since each alias adds a deserializer's frames per level; 1 MiB was
/// measured to suffice. Still a quarter of the main thread's 8 MiB, where the real binary parses.
const STACK: usize = 2 * 1024 * 1024;

pub fn run(work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(work)
        .expect("cannot start a thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}
