//! One module per subcommand: each turns its arguments into a request, runs one job of
//! `crate::ops` and renders the result. [`main`] parses the arguments, runs the subcommand and
//! prints its error.

mod bundle;
mod doctor;
mod inspect;
mod inventory;
mod keygen;
mod load;
mod plan;
mod push;
mod rebuild;
mod serve;
mod verify;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, CliReporter, Command, Output};
use crate::error::failure_kind;
use crate::reporter::Reporter;

/// Runs one subcommand.
pub async fn run(command: Command, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    match command {
        Command::Plan(args) => plan::run(args, output),
        Command::Bundle(args) => bundle::run(args, output, reporter).await,
        Command::Verify(args) => verify::run(args, output, reporter).await,
        Command::Inspect(args) => inspect::run(args, output),
        Command::Load(args) => load::run(args, output, reporter).await,
        Command::Rebuild(args) => rebuild::run(args, output, reporter).await,
        Command::Inventory(args) => inventory::run(args).await,
        Command::Keygen(args) => keygen::run(args, output),
        Command::Doctor(args) => doctor::run(args, output).await,
        Command::Serve(args) => serve::run(args, output, reporter).await,
        Command::Push(args) => push::run(args, output, reporter),
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
    let result = runtime.block_on(run(cli.command, output, &reporter));
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
