//! One module per subcommand: each runs the library's steps and prints its result.

mod bundle;
mod bundle_target;
mod doctor;
mod inspect;
mod inventory;
mod keygen;
mod load;
mod plan;
mod rebuild;
mod verify;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Command, Output};
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
    }
}
