//! `imgkit __parse ARGS…` (internal, not in help or completions): parses ARGS as an imgkit
//! command line with clap's full rules and runs nothing. The docs test feeds it every `imgkit …`
//! line of README.md and docs/, so an example naming a flag that does not exist fails the tests
//! rather than a reader.

use std::ffi::OsString;
use std::process::ExitCode;

/// `cli` is imgkit's command line, as `cli.rs` declares it.
pub(crate) fn run(args: &[OsString], cli: clap::Command) -> ExitCode {
    let argv = std::iter::once(OsString::from("imgkit")).chain(args.iter().cloned());
    match cli.try_get_matches_from(argv) {
        Ok(_) => ExitCode::SUCCESS,
        // --help and --version parse fine; print nothing.
        Err(e) if !e.use_stderr() => ExitCode::SUCCESS,
        Err(e) => {
            // clap's own rendering and exit code (2), as the real command line would show it.
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}
