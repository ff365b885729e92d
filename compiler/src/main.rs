//! The `resnetc` command line.

mod cli;

fn main() -> std::process::ExitCode {
    resnetc_runtime::io::quiet_on_closed_pipe();
    cli::main()
}
