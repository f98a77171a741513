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

/// Counts bytes read through it and reports them, throttled to every `REPORT_EVERY` bytes.
pub struct ProgressReader<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
    task: TaskId,
    done: u64,
    reported: u64,
}

const REPORT_EVERY: u64 = 1 << 20;

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, reporter: &'a dyn Reporter, task: TaskId) -> Self {
        Self {
            inner,
            reporter,
            task,
            done: 0,
            reported: 0,
        }
    }
    pub fn bytes(&self) -> u64 {
        self.done
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= REPORT_EVERY || n == 0 {
            self.reported = self.done;
            self.reporter.progress(self.task, self.done);
        }
        Ok(n)
    }
}
