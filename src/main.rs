use std::process::ExitCode;

fn main() -> ExitCode {
    offpack::commands::main()
}
