//! The command line: argument definitions, output and progress bars. With `commands`, the only
//! place that prints; it runs nothing itself (`commands::main` parses and dispatches).

mod args;
mod progress;

pub use args::PushArgs;
pub use args::{
    BundleArgs, Cli, Command, DoctorArgs, InspectArgs, InventoryArgs, KeygenArgs, LoadArgs,
    PlanArgs, ProjectArgs, RebuildArgs, ServeArgs, VerifyArgs,
};
pub use progress::CliReporter;

use std::io::Write;

use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Prints a command's result: the JSON document with `--json`, else the human text.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let _ = serde_json::to_writer_pretty(&mut stdout, value);
            let _ = writeln!(stdout);
        } else {
            // Names from a bundle are escaped where they are formatted; this catches any other
            // control character before it reaches the terminal.
            let text = human();
            let text = offpack_bundle::escape_controls_in_lines(&text);
            if !text.is_empty() {
                let _ = write!(stdout, "{text}");
                if !text.ends_with('\n') {
                    let _ = writeln!(stdout);
                }
            }
        }
    }
}
