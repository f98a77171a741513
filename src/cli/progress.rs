//! Progress as the user sees it: indicatif bars on a terminal, JSON lines with `--json`,
//! plain lines when stderr is not a terminal, nothing but warnings with `--quiet`.
//! The `--json` event lines are described in docs/progress-events.md.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use offpack_bundle::{escape_controls, escape_controls_in_lines};

use super::Output;
use crate::reporter::{BuildStep, Reporter, TaskId};

enum Mode {
    Bars(MultiProgress),
    JsonLines,
    Plain,
    Quiet,
}

/// What kind of work a task is, as `--json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bytes,
    Wait,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bytes => "bytes",
            Kind::Wait => "wait",
        }
    }
}

struct Task {
    label: String,
    parent: Option<TaskId>,
    bar: Option<ProgressBar>,
}

pub struct CliReporter {
    mode: Mode,
    next: AtomicU64,
    tasks: Mutex<HashMap<TaskId, Task>>,
}

const BAR_TEMPLATE: &str =
    "{spinner:.green} {msg:32!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}";
const COUNTER_TEMPLATE: &str = "{spinner:.green} {msg:32!} {bytes} {bytes_per_sec} {elapsed}";
/// An image's line: its bytes come in jumps (a layer at a time) while other images' come, so
/// neither a rate nor an ETA of its own would mean much; the total line has them.
const PART_TEMPLATE: &str =
    "{spinner:.green} {msg:32!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {percent:>3}%";
const WAIT_TEMPLATE: &str = "{spinner:.green} {msg} {elapsed}";

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn part_style() -> ProgressStyle {
    ProgressStyle::with_template(PART_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn counter_style() -> ProgressStyle {
    ProgressStyle::with_template(COUNTER_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn wait_style() -> ProgressStyle {
    ProgressStyle::with_template(WAIT_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_spinner())
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
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Removes bars still drawn (on error paths).
    pub fn clear(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for (_, task) in tasks.drain() {
                if let Some(bar) = task.bar {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn event(&self, value: serde_json::Value) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{value}");
    }

    fn plain(&self, line: &str) {
        let line = &*escape_controls_in_lines(line);
        match &self.mode {
            Mode::Bars(multi) => {
                let _ = multi.println(line);
            }
            Mode::Plain => eprintln!("{line}"),
            _ => {}
        }
    }

    fn open(&self, label: &str, total: Option<u64>, parent: Option<TaskId>, kind: Kind) -> TaskId {
        let task = TaskId(self.next.fetch_add(1, Ordering::Relaxed));
        // A label is one line (the JSON events carry it as it is).
        let shown = escape_controls(label);
        let mut bar = None;
        match &self.mode {
            Mode::Bars(multi) => {
                let new = match (kind, total) {
                    (Kind::Wait, _) => ProgressBar::new_spinner().with_style(wait_style()),
                    (Kind::Bytes, Some(total)) if parent.is_some() => {
                        ProgressBar::new(total).with_style(part_style())
                    }
                    (Kind::Bytes, Some(total)) => ProgressBar::new(total).with_style(bar_style()),
                    (Kind::Bytes, None) => ProgressBar::no_length().with_style(counter_style()),
                };
                // An image's line goes above the total's, which stays at the bottom.
                let parent_bar = parent.and_then(|p| {
                    self.tasks
                        .lock()
                        .ok()
                        .and_then(|tasks| tasks.get(&p).and_then(|t| t.bar.clone()))
                });
                let new = match parent_bar {
                    Some(parent_bar) => multi.insert_before(&parent_bar, new),
                    None => multi.add(new),
                };
                new.set_message(if parent.is_some() {
                    format!("  {shown}")
                } else {
                    shown.to_string()
                });
                new.enable_steady_tick(Duration::from_millis(120));
                bar = Some(new);
            }
            Mode::JsonLines => self.event(serde_json::json!({
                "event": "start",
                "task": task.0,
                "label": label,
                "total": total,
                "parent": parent.map(|p| p.0),
                "kind": kind.name(),
            })),
            // An image's line comes when it ends; the whole's comes now.
            Mode::Plain if parent.is_none() => eprintln!("{shown} ..."),
            Mode::Plain | Mode::Quiet => {}
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(
                task,
                Task {
                    label: label.to_string(),
                    parent,
                    bar,
                },
            );
        }
        task
    }
}

impl Reporter for CliReporter {
    fn start(&self, label: &str, total: Option<u64>) -> TaskId {
        self.open(label, total, None, Kind::Bytes)
    }

    fn start_part(&self, parent: TaskId, label: &str, total: Option<u64>) -> TaskId {
        self.open(label, total, Some(parent), Kind::Bytes)
    }

    fn start_wait(&self, label: &str) -> TaskId {
        self.open(label, None, None, Kind::Wait)
    }

    fn set_total(&self, task: TaskId, total: u64) {
        match &self.mode {
            Mode::Bars(_) => {
                if let Ok(tasks) = self.tasks.lock()
                    && let Some(state) = tasks.get(&task)
                    && let Some(bar) = &state.bar
                {
                    if bar.length().is_none() {
                        bar.set_style(if state.parent.is_some() {
                            part_style()
                        } else {
                            bar_style()
                        });
                    }
                    bar.set_length(total);
                }
            }
            Mode::JsonLines => {
                self.event(serde_json::json!({"event": "total", "task": task.0, "total": total}))
            }
            _ => {}
        }
    }

    fn progress(&self, task: TaskId, done: u64) {
        match &self.mode {
            Mode::Bars(_) => {
                if let Ok(tasks) = self.tasks.lock()
                    && let Some(bar) = tasks.get(&task).and_then(|t| t.bar.as_ref())
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
        let Some(state) = self.tasks.lock().ok().and_then(|mut t| t.remove(&task)) else {
            return;
        };
        let indent = if state.parent.is_some() { "    " } else { "  " };
        match &self.mode {
            Mode::Bars(_) => {
                if let Some(bar) = state.bar {
                    bar.finish_and_clear();
                }
                self.plain(&format!(
                    "{indent}{}: {outcome}",
                    escape_controls(&state.label)
                ));
            }
            Mode::JsonLines => self.event(serde_json::json!({
                "event": "finish",
                "task": task.0,
                "label": state.label,
                "outcome": outcome,
            })),
            Mode::Plain => eprintln!(
                "{}",
                escape_controls_in_lines(&format!(
                    "{indent}{}: {outcome}",
                    escape_controls(&state.label)
                ))
            ),
            Mode::Quiet => {}
        }
    }

    fn step(&self, message: &str) {
        match &self.mode {
            Mode::JsonLines => self.event(serde_json::json!({"event": "step", "message": message})),
            _ => self.plain(message),
        }
    }

    fn build_step(&self, step: &BuildStep) {
        match &self.mode {
            Mode::JsonLines => self.event(serde_json::json!({
                "event": "build_step",
                "name": step.name,
                "cached": step.cached,
                "seconds": step.seconds,
            })),
            _ => self.plain(&build_step_line(step)),
        }
    }

    fn warn(&self, message: &str) {
        match &self.mode {
            Mode::JsonLines => {
                self.event(serde_json::json!({"event": "warning", "message": message}))
            }
            Mode::Bars(multi) => {
                let _ = multi.println(format!("warning: {}", escape_controls_in_lines(message)));
            }
            _ => eprintln!("warning: {}", escape_controls_in_lines(message)),
        }
    }
}

/// A finished build step for people: `  cached  [build 4/6] RUN npm ci`, `  1.2 s   [build 5/6] COPY . .`.
fn build_step_line(step: &BuildStep) -> String {
    let took = if step.cached {
        "cached".to_string()
    } else {
        format!("{:.1} s", step.seconds)
    };
    format!("  {took:<7} {}", escape_controls(&step.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_step_is_one_aligned_line() {
        let step = |name: &str, cached, seconds| BuildStep {
            name: name.to_string(),
            cached,
            seconds,
        };
        assert_eq!(
            build_step_line(&step("[build 4/6] RUN npm ci", true, 0.0)),
            "  cached  [build 4/6] RUN npm ci"
        );
        assert_eq!(
            build_step_line(&step("[build 5/6] COPY . .", false, 1.234)),
            "  1.2 s   [build 5/6] COPY . ."
        );
        assert_eq!(
            build_step_line(&step("[2/2] RUN make", false, 1234.0)),
            "  1234.0 s [2/2] RUN make"
        );
        // A name is one line, whatever the Dockerfile held.
        assert_eq!(
            build_step_line(&step("[2/2] RUN a\u{1b}b\nc", false, 0.0)),
            "  0.0 s   [2/2] RUN a\\u{1b}b\\nc"
        );
    }
}
