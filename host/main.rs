//! imgkit: move container images between engines and image archives.
//!
//! `main` only parses, runs and maps the outcome to an exit code; the commands live in
//! `commands/`, error rendering in `diagnostics`.

mod cli;
mod commands;
mod containerd;
mod diagnostics;
mod dockerfiles;
mod endpoint;
mod engine_args;
mod global;
mod guard;
#[cfg(test)]
mod layering;
mod pipeline;
mod plan;
mod plugin_args;
mod progress;
mod registry;
mod rename;
mod selection;
mod skip;
mod stores;
mod table;
mod transfer;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

/// jq programs allocate and free several values per field of every record; mimalloc does that
/// in about half the CPU time of the system allocator (see `scripts/bench-filter`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Internal entry points, kept out of clap so that help, completions and man pages never
    // show them: `__parse ARGS…` (the docs test) and `__man DIR` (`just man`).
    let mut argv = std::env::args_os();
    match argv.nth(1).as_ref().and_then(|a| a.to_str()) {
        Some("__parse") => {
            return commands::parse::run(&argv.collect::<Vec<_>>(), cli::Cli::command());
        }
        Some("__man") => {
            return commands::man::run(&argv.collect::<Vec<_>>(), cli::Cli::command())
                .unwrap_or_else(|err| diagnostics::report(&err, &global::GlobalArgs::default()));
        }
        _ => {}
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let global = cli.global.clone();
    match cli.run() {
        Ok(code) => code,
        Err(err) => diagnostics::report(&err, &global),
    }
}

/// A command line clap refuses: clap's own text, or with `--json` (one JSON document, as every
/// error) the same object `diagnostics::report` prints. Help and version are not errors.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !wants_json {
        e.exit();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let hints: Vec<String> = lines
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "{}",
        serde_json::json!({"error": message, "causes": [], "hints": hints})
    );
    ExitCode::from(diagnostics::EXIT_ERROR)
}
