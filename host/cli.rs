//! The command line, declared with clap's derive API: the doc comments are the help text.

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// Move container images between engines and image archives — list, select with jq or a
/// sandboxed WASM filter, and stream save → load with progress and verification.
#[derive(Debug, Parser)]
#[command(name = "imgkit", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Examples:
  imgkit filter -r -f default.jq < listing.jsonl   the guide's jq step, without jq
  imgkit completions bash > /etc/bash_completion.d/imgkit")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Print machine-readable JSON instead of human output (one schema per command).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Say more: -v shows every engine command line imgkit runs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a jq program over JSON input, exactly as `jq` would (in-process, no jq needed).
    Filter(commands::filter::Args),
    /// Check WASM filter plugins: `imgkit plugin check FILE.wasm` validates one and runs it on a
    /// sample listing.
    Plugin(commands::plugin::Args),
    /// Print a shell completion script.
    Completions(commands::completions::Args),
}
