//! `imgkit completions SHELL`: completion scripts generated from the clap definitions.

use std::io::{self, Write};
use std::process::ExitCode;

use clap_complete::Shell;

use crate::global::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  imgkit completions bash > ~/.local/share/bash-completion/completions/imgkit
  imgkit completions zsh > \"${fpath[1]}/_imgkit\"
  imgkit completions powershell >> $PROFILE")]
pub(crate) struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `cli` is imgkit's command line, as `cli.rs` declares it.
pub(crate) fn run(
    args: &Args,
    _global: &GlobalArgs,
    cli: &mut clap::Command,
) -> anyhow::Result<ExitCode> {
    // Render first: clap_complete panics on a write error, and `| head` closes stdout.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, cli, "imgkit", &mut script);
    io::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
