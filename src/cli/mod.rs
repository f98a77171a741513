//! The command line: argument parsing, output and progress. The only place that prints.

mod args;
mod progress;

pub use args::{
    BundleArgs, Cli, Command, DoctorArgs, InspectArgs, InventoryArgs, KeygenArgs, LoadArgs,
    PlanArgs, ProjectArgs, PullPolicy, RebuildArgs, VerifyArgs,
};
pub use progress::CliReporter;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::error::failure_kind;

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

/// Runs offpack with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let output = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let reporter = CliReporter::new(output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(crate::commands::run(cli.command, output, &reporter));
    reporter.clear();
    match result {
        Ok(code) => code,
        Err(err) => {
            let kind = failure_kind(&err);
            if output.json {
                let doc = serde_json::json!({
                    "error": format!("{err:#}"),
                    "exit_code": kind.exit_code(),
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            eprintln!(
                "error: {}",
                offpack_bundle::escape_controls_in_lines(&format_error(&err))
            );
            ExitCode::from(kind.exit_code())
        }
    }
}

/// The error and its causes, one per line, without repeating a cause its parent already quotes.
fn format_error(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str("\n  caused by: ");
            text.push_str(&cause);
        }
    }
    text
}
