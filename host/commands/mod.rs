//! One module per subcommand; `run` dispatches.

pub(crate) mod completions;
pub(crate) mod engines;
pub(crate) mod explain;
pub(crate) mod filter;
pub(crate) mod inspect;
pub(crate) mod load;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod parse;
pub(crate) mod plugin;
pub(crate) mod run;
pub(crate) mod save;
pub(crate) mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    crate::engine_args::set_verbose(global.verbose > 0);
    match cli.command {
        Command::Completions(args) => completions::run(&args, global),
        Command::Filter(args) => filter::run(&args, global),
        Command::Save(args) => save::run(&args, global),
        Command::Load(args) => load::run(&args, global),
        Command::Run(args) => run::run(&args, global),
        Command::Verify(args) => verify::run(&args, global),
        Command::Inspect(args) => inspect::run(&args, global),
        Command::Ls(args) => ls::run(&args, global),
        Command::Engines(args) => engines::run(&args, global),
        Command::Explain(args) => explain::run(&args, global),
        Command::Plugin(args) => plugin::run(&args, global),
    }
}
