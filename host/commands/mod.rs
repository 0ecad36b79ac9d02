//! One module per subcommand; `run` dispatches.

pub(crate) mod completions;
pub(crate) mod filter;
pub(crate) mod plugin;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Completions(args) => completions::run(&args, global),
        Command::Filter(args) => filter::run(&args, global),
        Command::Plugin(args) => plugin::run(&args, global),
    }
}
