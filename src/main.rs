use std::process::ExitCode;

fn main() -> ExitCode {
    offpack::cli::main()
}
