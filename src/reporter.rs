//! Progress reporting. Library code reports through [`Reporter`] and never prints; only the CLI
//! decides how progress looks (bars on a terminal, JSON lines for scripts, nothing when quiet).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use offpack_bundle::Digest;

/// One step of an image build (a Dockerfile instruction other than `FROM`), as the builder ran it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildStep {
    /// The builder's name for it: `[build 4/6] RUN npm ci` (BuildKit), `[4/6] RUN npm ci` (classic).
    pub name: String,
    /// The builder took it from its cache.
    pub cached: bool,
    /// How long it ran; 0 when cached.
    pub seconds: f64,
}

/// A handle to one unit of long work (an image being pulled, a bundle being written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId(pub u64);

pub trait Reporter: Send + Sync {
    /// Starts a task; `total` is in bytes when known.
    fn start(&self, label: &str, total: Option<u64>) -> TaskId;
    /// Starts a task that is one part of `parent` (one image of an export whose total `parent`
    /// counts); shown with it.
    fn start_part(&self, parent: TaskId, label: &str, total: Option<u64>) -> TaskId {
        let _ = parent;
        self.start(label, total)
    }
    /// Starts work that has no bytes to count (the engine importing what it was sent): shown
    /// as a spinner with the time it takes. End it with [`Reporter::finish`].
    fn start_wait(&self, label: &str) -> TaskId {
        self.start(label, None)
    }
    /// Sets the task's total in bytes, when it becomes known or an estimate proves short.
    fn set_total(&self, task: TaskId, total: u64) {
        let _ = (task, total);
    }
    /// Sets how many bytes of the task are done.
    fn progress(&self, task: TaskId, done: u64);
    /// Ends a task with a one-line outcome.
    fn finish(&self, task: TaskId, outcome: &str);
    /// A step worth telling the user about (not an error).
    fn step(&self, message: &str);
    /// Something the user should look at; the command goes on.
    fn warn(&self, message: &str);
    /// A build step finished (ran or came from cache).
    fn build_step(&self, step: &BuildStep) {
        let _ = step;
    }
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

/// `1.5 GiB`-style sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How far one image of an [`ImageProgress`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageStatus {
    /// Bytes of the image's blobs that have passed.
    pub done: u64,
    /// The image's bytes: the given total (an estimate, or exact), raised to `done` when it
    /// proves short, and equal to `done` once every blob has passed.
    pub total: u64,
    /// Every blob of the image has passed.
    pub complete: bool,
}

/// Per-image progress of work that moves blobs one after the other (an engine's export, a load
/// stream): which blobs each image is made of, and how many bytes of each have passed. A blob
/// that several images share counts for each of them. A pure ledger: a blocking thread feeds it,
/// [`ImageTasks`] reports it.
#[derive(Debug, Default)]
pub struct ImageProgress {
    images: Vec<ImageEntry>,
    /// Bytes passed per blob, and whether all of it has.
    passed: HashMap<Digest, (u64, bool)>,
}

#[derive(Debug)]
struct ImageEntry {
    label: String,
    blobs: Vec<Digest>,
    total: u64,
}

impl ImageProgress {
    pub fn new() -> ImageProgress {
        ImageProgress::default()
    }

    /// Adds an image made of `blobs` (a blob listed twice counts once), whose bytes are about
    /// `total`; returns its index.
    pub fn add_image(
        &mut self,
        label: &str,
        blobs: impl IntoIterator<Item = Digest>,
        total: u64,
    ) -> usize {
        let mut unique = Vec::new();
        for blob in blobs {
            if !unique.contains(&blob) {
                unique.push(blob);
            }
        }
        self.images.push(ImageEntry {
            label: label.to_string(),
            blobs: unique,
            total,
        });
        self.images.len() - 1
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn label(&self, image: usize) -> &str {
        &self.images[image].label
    }

    /// `bytes` of `blob` have passed so far (it is still passing).
    pub fn blob_bytes(&mut self, blob: &Digest, bytes: u64) {
        let entry = self.passed.entry(blob.clone()).or_insert((0, false));
        if !entry.1 {
            entry.0 = bytes;
        }
    }

    /// All `size` bytes of `blob` have passed.
    pub fn blob_done(&mut self, blob: &Digest, size: u64) {
        self.passed.insert(blob.clone(), (size, true));
    }

    /// An estimate of the bytes of all the images' blobs, each blob once, from the images'
    /// totals: an image built on another one here (it holds all of that one's blobs but its
    /// config) adds what its total exceeds the largest such base's. An image with no base here
    /// counts whole, even if it shares layers with others (a base that is not itself an image
    /// here): then the estimate is high.
    pub fn unique_estimate(&self) -> u64 {
        let mut order: Vec<&ImageEntry> = self.images.iter().collect();
        order.sort_by_key(|i| i.blobs.len());
        let mut sum = 0u64;
        for (i, image) in order.iter().enumerate() {
            let base = order[..i]
                .iter()
                .filter(|b| b.blobs.iter().filter(|d| !image.blobs.contains(d)).count() <= 1)
                .map(|b| b.total)
                .max()
                .unwrap_or(0);
            sum += image.total.saturating_sub(base);
        }
        sum
    }

    pub fn status(&self, image: usize) -> ImageStatus {
        let entry = &self.images[image];
        let mut done = 0;
        let mut complete = true;
        for blob in &entry.blobs {
            match self.passed.get(blob) {
                Some(&(bytes, finished)) => {
                    done += bytes;
                    complete &= finished;
                }
                None => complete = false,
            }
        }
        let total = if complete {
            done
        } else {
            entry.total.max(done)
        };
        ImageStatus {
            done,
            total,
            complete,
        }
    }
}

/// The tasks of an [`ImageProgress`]: one per image, started as parts of a total task, each
/// finished once its image is complete; reports only what changed.
pub struct ImageTasks<'a> {
    reporter: &'a dyn Reporter,
    total: TaskId,
    /// The total's length as last reported, when it has one.
    total_len: Option<u64>,
    images: Vec<ImageTask>,
    total_done: Option<u64>,
}

struct ImageTask {
    task: TaskId,
    reported: Option<ImageStatus>,
    finished: bool,
}

impl<'a> ImageTasks<'a> {
    /// Starts a task per image of `progress` under `total`, a task started with `total_len` as
    /// its total (raised when the bytes pass it).
    pub fn start(
        reporter: &'a dyn Reporter,
        total: TaskId,
        total_len: Option<u64>,
        progress: &ImageProgress,
    ) -> ImageTasks<'a> {
        let images = (0..progress.len())
            .map(|i| {
                let status = progress.status(i);
                ImageTask {
                    task: reporter.start_part(total, progress.label(i), Some(status.total)),
                    reported: Some(status),
                    finished: false,
                }
            })
            .collect();
        ImageTasks {
            reporter,
            total,
            total_len,
            images,
            total_done: Some(0),
        }
    }

    /// Reports what changed since the last call; finishes the tasks of images now complete with
    /// `outcome` (and the image's size).
    pub fn report(&mut self, progress: &ImageProgress, total_done: u64, outcome: &str) {
        for (i, image) in self.images.iter_mut().enumerate() {
            if image.finished {
                continue;
            }
            let status = progress.status(i);
            let before = image.reported.replace(status);
            if before.map(|b| b.total) != Some(status.total) {
                self.reporter.set_total(image.task, status.total);
            }
            if before.map(|b| b.done) != Some(status.done) {
                self.reporter.progress(image.task, status.done);
            }
            if status.complete {
                image.finished = true;
                self.reporter.finish(
                    image.task,
                    &format!("{outcome} ({})", human_bytes(status.done)),
                );
            }
        }
        if self.total_len.is_some_and(|len| total_done > len) {
            self.total_len = Some(total_done);
            self.reporter.set_total(self.total, total_done);
        }
        if self.total_done != Some(total_done) {
            self.total_done = Some(total_done);
            self.reporter.progress(self.total, total_done);
        }
    }

    /// Reports every 200 ms what the blocking thread put in `progress`, and the total's bytes
    /// from `total_done`. Never returns: race it against the work (`tokio::select!`).
    pub async fn report_every_200ms(
        &mut self,
        progress: &Mutex<ImageProgress>,
        total_done: &AtomicU64,
        outcome: &str,
    ) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let done = total_done.load(Ordering::Relaxed);
            if let Ok(progress) = progress.lock() {
                self.report(&progress, done, outcome);
            }
        }
    }

    /// The work is over: a last report, then every task still open (an image whose blobs did
    /// not all pass, e.g. a layer the engine already held) ends, and the total ends full at
    /// `total_done`.
    pub fn finish(mut self, progress: &ImageProgress, total_done: u64, outcome: &str) {
        self.report(progress, total_done, outcome);
        for (i, image) in self.images.iter().enumerate() {
            if !image.finished {
                let status = progress.status(i);
                self.reporter.set_total(image.task, status.done);
                self.reporter.finish(
                    image.task,
                    &format!("{outcome} ({})", human_bytes(status.done)),
                );
            }
        }
        // `report` told the total its bytes; now it ends full.
        if self.total_len != Some(total_done) {
            self.reporter.set_total(self.total, total_done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(name: &str) -> Digest {
        Digest::of_bytes(name.as_bytes())
    }

    #[test]
    fn human_bytes_uses_binary_units_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }

    /// Two images sharing a base layer, as an export or a load sees them.
    fn two_images() -> ImageProgress {
        let mut ledger = ImageProgress::new();
        ledger.add_image("base:1", [digest("base-config"), digest("base")], 100);
        ledger.add_image(
            "app:1",
            [
                digest("app-config"),
                digest("base"),
                digest("app"),
                digest("base"),
            ],
            130,
        );
        ledger
    }

    #[test]
    fn a_shared_blob_counts_for_each_image() {
        let mut ledger = two_images();
        ledger.blob_bytes(&digest("base"), 40);
        assert_eq!(
            ledger.status(0),
            ImageStatus {
                done: 40,
                total: 100,
                complete: false
            }
        );
        assert_eq!(ledger.status(1).done, 40);
        ledger.blob_done(&digest("base"), 90);
        ledger.blob_done(&digest("base-config"), 2);
        assert_eq!(
            ledger.status(0),
            ImageStatus {
                done: 92,
                total: 92,
                complete: true
            },
            "a complete image's total is what passed"
        );
        assert_eq!(
            ledger.status(1),
            ImageStatus {
                done: 90,
                total: 130,
                complete: false
            },
            "a layer listed twice in an image counts once"
        );
    }

    #[test]
    fn an_estimate_that_proves_short_grows() {
        let mut ledger = two_images();
        ledger.blob_done(&digest("base"), 120);
        assert_eq!(ledger.status(0).total, 120);
        assert!(!ledger.status(0).complete);
        ledger.blob_done(&digest("app"), 30);
        ledger.blob_done(&digest("app-config"), 1);
        assert_eq!(
            ledger.status(1),
            ImageStatus {
                done: 151,
                total: 151,
                complete: true
            }
        );
    }

    #[test]
    fn partial_bytes_after_the_end_change_nothing() {
        let mut ledger = two_images();
        ledger.blob_done(&digest("base"), 90);
        ledger.blob_bytes(&digest("base"), 10);
        assert_eq!(ledger.status(0).done, 90);
        ledger.blob_bytes(&digest("unknown"), 10);
        assert_eq!(ledger.status(1).done, 90, "blobs of no image are ignored");
    }

    /// Records what it is told, one line per call.
    #[derive(Default)]
    struct Recorder {
        next: AtomicU64,
        lines: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn push(&self, line: String) {
            self.lines.lock().unwrap().push(line);
        }
        fn text(&self) -> String {
            self.lines.lock().unwrap().join("\n")
        }
    }

    impl Reporter for Recorder {
        fn start(&self, label: &str, total: Option<u64>) -> TaskId {
            let task = TaskId(self.next.fetch_add(1, Ordering::Relaxed));
            self.push(format!("start {} {label} total={total:?}", task.0));
            task
        }
        fn start_part(&self, parent: TaskId, label: &str, total: Option<u64>) -> TaskId {
            let task = TaskId(self.next.fetch_add(1, Ordering::Relaxed));
            self.push(format!(
                "start {} {label} total={total:?} parent={}",
                task.0, parent.0
            ));
            task
        }
        fn set_total(&self, task: TaskId, total: u64) {
            self.push(format!("total {} {total}", task.0));
        }
        fn progress(&self, task: TaskId, done: u64) {
            self.push(format!("progress {} {done}", task.0));
        }
        fn finish(&self, task: TaskId, outcome: &str) {
            self.push(format!("finish {} {outcome}", task.0));
        }
        fn step(&self, message: &str) {
            self.push(format!("step {message}"));
        }
        fn warn(&self, message: &str) {
            self.push(format!("warn {message}"));
        }
    }

    #[test]
    fn image_tasks_report_changes_and_end_every_task() {
        let recorder = Recorder::default();
        let mut ledger = two_images();
        let total = recorder.start("export 2 images", None);
        let mut tasks = ImageTasks::start(&recorder, total, None, &ledger);
        ledger.blob_bytes(&digest("base"), 50);
        tasks.report(&ledger, 60, "exported");
        tasks.report(&ledger, 60, "exported");
        ledger.blob_done(&digest("base"), 90);
        ledger.blob_done(&digest("base-config"), 2);
        tasks.report(&ledger, 200, "exported");
        ledger.blob_done(&digest("app-config"), 1);
        // `app` never passes (an engine that already holds it): the end still ends its task.
        tasks.finish(&ledger, 250, "exported");
        insta::assert_snapshot!(recorder.text());
    }

    #[test]
    fn a_total_shorter_than_its_bytes_grows() {
        let recorder = Recorder::default();
        let mut ledger = two_images();
        let total = recorder.start("load 2 images", Some(100));
        let mut tasks = ImageTasks::start(&recorder, total, Some(100), &ledger);
        ledger.blob_bytes(&digest("base"), 50);
        tasks.report(&ledger, 50, "streamed");
        tasks.report(&ledger, 120, "streamed");
        let text = recorder.text();
        assert!(!text.contains("total 0 50"), "{text}");
        assert!(text.ends_with("total 0 120\nprogress 0 120"), "{text}");
    }

    #[test]
    fn unique_estimate_counts_a_shared_base_once() {
        // base:1 is 100 bytes; app:1 adds its config and one layer to base's layer: 30 bytes.
        assert_eq!(two_images().unique_estimate(), 130);
        // Two more images on the same base, each adding 50 bytes: 100 + 30 + 50 + 50.
        let mut ledger = two_images();
        for name in ["web", "worker"] {
            ledger.add_image(
                name,
                [
                    digest(&format!("{name}-config")),
                    digest("base"),
                    digest(name),
                ],
                150,
            );
        }
        assert_eq!(ledger.unique_estimate(), 230);
        // Without their base among them, images sharing a layer count whole.
        let mut ledger = ImageProgress::new();
        let layers = |name: &str| {
            [
                digest(&format!("{name}-config")),
                digest(name),
                digest("shared"),
            ]
        };
        ledger.add_image("a", layers("a"), 100);
        ledger.add_image("b", layers("b"), 100);
        assert_eq!(ledger.unique_estimate(), 200);
        // An image with the same layers as another (a new label) adds what its total exceeds.
        ledger.add_image(
            "a2",
            [digest("a2-config"), digest("a"), digest("shared")],
            101,
        );
        assert_eq!(ledger.unique_estimate(), 201);
        // An image smaller than what its shared blobs were given adds nothing.
        let mut ledger = ImageProgress::new();
        ledger.add_image("big", [digest("x")], 100);
        ledger.add_image("small", [digest("x"), digest("y")], 10);
        assert_eq!(ledger.unique_estimate(), 100);
        assert_eq!(ImageProgress::new().unique_estimate(), 0);
    }

    #[test]
    fn silent_reporter_takes_the_extended_calls() {
        let silent = SilentReporter::default();
        let total = silent.start("t", None);
        let part = silent.start_part(total, "p", Some(1));
        let wait = silent.start_wait("w");
        assert_ne!(total, part);
        assert_ne!(part, wait);
        silent.set_total(part, 2);
    }
}
