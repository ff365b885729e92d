//! The `resnetc` command line.

mod cli;

fn main() -> std::process::ExitCode {
    quiet_on_closed_pipe();
    cli::main()
}

/// Restores the default SIGPIPE action, so that `... | head` ends the program quietly
/// instead of a panic on the next write (Rust ignores SIGPIPE by default).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: resetting a signal to its default action before any thread is started.
        unsafe { signal(SIGPIPE, SIG_DFL) };
    }
}
