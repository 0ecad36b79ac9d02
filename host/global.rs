//! The options every command accepts, on their own so that the command line (`cli.rs`) and the
//! commands (`commands/`) both use them without importing each other.

use clap::Args;

/// Options every command accepts.
#[derive(Debug, Clone, Default, Args)]
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
