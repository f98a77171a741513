//! The engine I/O both jobs share: a blocking copy (the engine's export into the bundle writer,
//! the bundle's blobs into the engine's load stream) on a thread of its own, with a progress line
//! per image and a total, and a way to stop it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use offpack_bundle::Digest;
use tokio::task::JoinHandle;

use crate::reporter::{ImageProgress, ImageTasks, Reporter, TaskId, human_bytes};

/// What the copying thread tells the progress lines, and how it learns it must stop.
#[derive(Clone)]
pub struct CopySink {
    ledger: Arc<Mutex<ImageProgress>>,
    bytes: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
}

impl CopySink {
    /// Every byte of `blob` passed.
    pub fn blob_done(&self, blob: &Digest, size: u64) {
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.blob_done(blob, size);
        }
    }

    /// `passed` bytes of `blob` passed so far.
    pub fn blob_bytes(&self, blob: &Digest, passed: u64) {
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.blob_bytes(blob, passed);
        }
    }

    /// The copy's bytes so far, for the total.
    pub fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Makes the copy fail at its next read of a [`CopySink::reader`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// `inner`, counting its bytes for the total and failing once the copy is cancelled.
    pub fn reader<R>(&self, inner: R) -> Cancellable<R> {
        Cancellable {
            inner,
            sink: self.clone(),
        }
    }
}

/// A reader that fails once its copy is cancelled (on Ctrl-C), ending the copy that reads it.
pub struct Cancellable<R> {
    inner: R,
    sink: CopySink,
}

impl<R: std::io::Read> std::io::Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sink.cancelled.load(Ordering::Relaxed) {
            // Not `ErrorKind::Interrupted`: readers retry on that one.
            return Err(std::io::Error::other("interrupted by the user"));
        }
        let n = self.inner.read(buf)?;
        self.sink.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A copy's progress: a total task and a task per image of its ledger.
pub struct ImageCopy<'a> {
    reporter: &'a dyn Reporter,
    task: TaskId,
    /// Until the copy ends.
    image_tasks: Option<ImageTasks<'a>>,
    sink: CopySink,
    /// What the lines say of bytes that passed ("exported", "streamed").
    outcome: &'static str,
}

impl<'a> ImageCopy<'a> {
    /// Starts the total task `label` (of `estimate` bytes, when known) and a task per image of
    /// `ledger`.
    pub fn start(
        reporter: &'a dyn Reporter,
        label: &str,
        estimate: Option<u64>,
        ledger: ImageProgress,
        outcome: &'static str,
    ) -> ImageCopy<'a> {
        let task = reporter.start(label, estimate);
        let image_tasks = ImageTasks::start(reporter, task, estimate, &ledger);
        ImageCopy {
            reporter,
            task,
            image_tasks: Some(image_tasks),
            sink: CopySink {
                ledger: Arc::new(Mutex::new(ledger)),
                bytes: Arc::new(AtomicU64::new(0)),
                cancelled: Arc::new(AtomicBool::new(false)),
            },
            outcome,
        }
    }

    pub fn sink(&self) -> CopySink {
        self.sink.clone()
    }

    /// Runs `copy` on a blocking thread, with the sink it reports to.
    pub fn spawn<T: Send + 'static>(
        &self,
        copy: impl FnOnce(CopySink) -> Result<T> + Send + 'static,
    ) -> JoinHandle<Result<T>> {
        let sink = self.sink();
        tokio::task::spawn_blocking(move || copy(sink))
    }

    /// Reports the copy's progress every 200 ms until [`ImageCopy::finish`]. Never returns: race
    /// it against the copy (`tokio::select!`).
    pub async fn report(&mut self) -> Infallible {
        match self.image_tasks.as_mut() {
            Some(tasks) => {
                tasks
                    .report_every_200ms(&self.sink.ledger, &self.sink.bytes, self.outcome)
                    .await
            }
            None => std::future::pending().await,
        }
    }

    /// The copy went through, `bytes` in all: every image's task and the total end. Later calls
    /// do nothing.
    pub fn finish(&mut self, bytes: u64) {
        let Some(tasks) = self.image_tasks.take() else {
            return;
        };
        if let Ok(ledger) = self.sink.ledger.lock() {
            tasks.finish(&ledger, bytes, self.outcome);
        }
        self.reporter.finish(
            self.task,
            &format!("{} {}", human_bytes(bytes), self.outcome),
        );
    }
}
