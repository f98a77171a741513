//! Progress as the user sees it: indicatif bars on a terminal, JSON lines with `--json`,
//! nothing with `--quiet` or when stderr is not a terminal (then only steps and warnings).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Output;
use crate::reporter::{Reporter, TaskId};

enum Mode {
    Bars(MultiProgress),
    JsonLines,
    Plain,
    Quiet,
}

pub struct CliReporter {
    mode: Mode,
    next: AtomicU64,
    bars: Mutex<HashMap<TaskId, ProgressBar>>,
}

impl CliReporter {
    pub fn new(output: Output) -> CliReporter {
        let mode = if output.json {
            Mode::JsonLines
        } else if output.quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Mode::Plain
        };
        CliReporter {
            mode,
            next: AtomicU64::new(0),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Removes bars still drawn (on error paths).
    pub fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
        }
    }

    fn event(&self, value: serde_json::Value) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{value}");
    }

    fn plain(&self, line: &str) {
        match &self.mode {
            Mode::Bars(multi) => {
                let _ = multi.println(line);
            }
            Mode::Plain => eprintln!("{line}"),
            _ => {}
        }
    }
}

impl Reporter for CliReporter {
    fn start(&self, label: &str, total: Option<u64>) -> TaskId {
        let task = TaskId(self.next.fetch_add(1, Ordering::Relaxed));
        match &self.mode {
            Mode::Bars(multi) => {
                let bar = match total {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(
                            "{spinner:.green} {msg:32!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::no_length().with_style(
                        ProgressStyle::with_template("{spinner:.green} {msg:32!} {bytes} {bytes_per_sec} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                let bar = multi.add(bar);
                bar.set_message(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(task, bar);
                }
            }
            Mode::JsonLines => self.event(serde_json::json!({"event": "start", "task": task.0, "label": label, "total": total})),
            Mode::Plain => eprintln!("{label} ..."),
            Mode::Quiet => {}
        }
        task
    }

    fn progress(&self, task: TaskId, done: u64) {
        match &self.mode {
            Mode::Bars(_) => {
                if let Ok(bars) = self.bars.lock()
                    && let Some(bar) = bars.get(&task)
                {
                    bar.set_position(done);
                }
            }
            Mode::JsonLines => {
                self.event(serde_json::json!({"event": "progress", "task": task.0, "done": done}))
            }
            _ => {}
        }
    }

    fn finish(&self, task: TaskId, outcome: &str) {
        match &self.mode {
            Mode::Bars(_) => {
                if let Ok(mut bars) = self.bars.lock()
                    && let Some(bar) = bars.remove(&task)
                {
                    let label = bar.message();
                    bar.finish_and_clear();
                    self.plain(&format!("  {label}: {outcome}"));
                }
            }
            Mode::JsonLines => self
                .event(serde_json::json!({"event": "finish", "task": task.0, "outcome": outcome})),
            Mode::Plain => eprintln!("  {outcome}"),
            Mode::Quiet => {}
        }
    }

    fn step(&self, message: &str) {
        match &self.mode {
            Mode::JsonLines => self.event(serde_json::json!({"event": "step", "message": message})),
            _ => self.plain(message),
        }
    }

    fn warn(&self, message: &str) {
        match &self.mode {
            Mode::JsonLines => {
                self.event(serde_json::json!({"event": "warning", "message": message}))
            }
            Mode::Bars(multi) => {
                let _ = multi.println(format!("warning: {message}"));
            }
            _ => eprintln!("warning: {message}"),
        }
    }
}
