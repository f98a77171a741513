//! Progress reporting. Library code reports through [`Reporter`] and never prints; only the CLI
//! decides how progress looks (bars on a terminal, JSON lines for scripts, nothing when quiet).

use std::sync::atomic::{AtomicU64, Ordering};

/// A handle to one unit of long work (an image being pulled, a bundle being written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId(pub u64);

pub trait Reporter: Send + Sync {
    /// Starts a task; `total` is in bytes when known.
    fn start(&self, label: &str, total: Option<u64>) -> TaskId;
    /// Sets how many bytes of the task are done.
    fn progress(&self, task: TaskId, done: u64);
    /// Ends a task with a one-line outcome.
    fn finish(&self, task: TaskId, outcome: &str);
    /// A step worth telling the user about (not an error).
    fn step(&self, message: &str);
    /// Something the user should look at; the command goes on.
    fn warn(&self, message: &str);
}

/// Reports nothing; for tests and library callers.
#[derive(Debug, Default)]
pub struct SilentReporter {
    next: AtomicU64,
}

impl Reporter for SilentReporter {
    fn start(&self, _label: &str, _total: Option<u64>) -> TaskId {
        TaskId(self.next.fetch_add(1, Ordering::Relaxed))
    }
    fn progress(&self, _task: TaskId, _done: u64) {}
    fn finish(&self, _task: TaskId, _outcome: &str) {}
    fn step(&self, _message: &str) {}
    fn warn(&self, _message: &str) {}
}

/// Reports `done` for `task` every 200 ms, for work whose bytes a blocking thread counts.
/// Never returns: race it against the work (`tokio::select!`).
pub async fn report_every_200ms(
    reporter: &dyn Reporter,
    task: TaskId,
    done: &AtomicU64,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        reporter.progress(task, done.load(Ordering::Relaxed));
    }
}
